"""Internal: the floor for ``memory-actors bench --mcp``, an MCP server whose store does nothing.

It exposes one tool with the same name, parameters, execution model (an
``async def`` run on the server's event loop, as every tool of
:mod:`actors.server` is) and answer shape (text plus structured content,
validated against the same output model) as the real ``memory_store``, and
answers a constant. The
benchmark launches it over stdio exactly as it launches ``memory-actors
serve``, so the ratio of the two isolates what storing costs on top of the
SDK and the transport.

Run: ``python -m actors.bench.noop_server``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

# The real tool's output model, so both servers validate the same structured output.
from actors.server import StoreOutput

__all__ = ["build_noop_server", "main"]

_RECEIPT = {
    "id": "01900000-0000-7000-8000-000000000000",
    "namespace": "default",
    "duplicate": False,
    "tags": [],
    "sync_state": "committed",
}
_TEXT = f"Stored {_RECEIPT['id']} (new) in namespace default; committed."


def build_noop_server() -> MCPServer:
    """An ``MCPServer`` with a ``memory_store`` tool that stores nothing."""
    server: MCPServer = MCPServer("noop", log_level="WARNING")

    @server.tool()
    async def memory_store(
        content: str,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        namespace: str | None = None,
        key: str | None = None,
    ) -> Annotated[CallToolResult, StoreOutput]:
        """Pretend to store ``content``; always answers the same receipt."""
        return CallToolResult(
            content=[TextContent(type="text", text=_TEXT)], structured_content=dict(_RECEIPT)
        )

    return server


def main() -> None:
    """Serve the no-op tool over stdio until the client closes it."""
    # Same stdout discipline as the real server: nothing buffered may reach fd 1 late.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    build_noop_server().run("stdio")


if __name__ == "__main__":
    main()
