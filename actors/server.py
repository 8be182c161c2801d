"""The MCP server: seven memory tools over stdio and streamable HTTP (mcp 2.x ``MCPServer``).

Each tool is a module-level coroutine function of the
:class:`~actors.aio.AsyncMemorySystem` and the model's arguments
(``await memory_get(memory, id)``), so a test can call it directly.
:func:`build_server` registers them all in one place: the server's lifespan
yields the facade over the system, and the SDK injects it into each call through
``Resolve`` (the ``System`` annotation), outside the arguments the model sees.
A tool's docstring, dedented, is the description the model reads.

Every tool is an ``async def`` on the asyncio facade: it runs on the server's
event loop, with no worker-thread hop per call, and never blocks it (the
facade awaits replies that the actors settle from their threads). Calls in
flight from one client therefore reach the StoreActor together and share a
group commit. A client that cancels a call (``notifications/cancelled``)
cancels its task, and with it a write still queued (see :mod:`actors.aio`).
Each tool answers twice: ``structuredContent`` that
conforms to its advertised ``outputSchema`` (for programs) and one short text
line or block (for the model reading it). The output models restate the
records of :mod:`actors.model` with descriptions for the model;
``tests/test_mcp_tools.py`` checks that they match field for field.

Errors: every :class:`~actors.errors.MemoryActorsError` becomes a tool error
result (``isError: true``) carrying the precise message, prefixed with the
error's class name so an agent can tell "fix the argument" from "retry later".
Arguments of the wrong type never reach the facade: pydantic rejects them
first, also as an error result. Nothing stored changes on bad input.

Shutdown: ``serve_stdio`` and ``serve_http`` always close the MemorySystem on
the way out (stdin EOF, SIGINT, SIGTERM), so no actor thread outlives the
server and every acknowledged write is committed.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import FrameType
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from actors import __version__
from actors._http_serve import (
    STOP_SIGNALS,
    ServeError,
    close_quietly,
    flush_std_streams,
    install_handlers,
    line_buffer_stdout,
    serve_until_signal,
)
from actors.aio import AsyncMemorySystem
from actors.errors import MemoryActorsError
from actors.model import (
    MAX_CONTENT_BYTES,
    MAX_LIMIT,
    MAX_TAGS,
    MemorySyncState,
    RecallSource,
    RecallStatus,
)
from actors.system import Config, MemorySystem

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SERVER_NAME",
    "TOOLS",
    "ServeError",
    "build_server",
    "memory_count",
    "memory_forget",
    "memory_get",
    "memory_list",
    "memory_recall",
    "memory_retag",
    "memory_store",
    "serve_http",
    "serve_stdio",
]

logger = logging.getLogger(__name__)

SERVER_NAME = "memory"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Path of the streamable HTTP endpoint (the SDK's default).
HTTP_PATH = "/mcp"
#: Seconds uvicorn waits for open streams (an idle SSE GET never ends by itself)
#: before it closes them on shutdown; a host's SIGKILL usually follows at ~10 s.
HTTP_GRACEFUL_SHUTDOWN = 3

_INSTRUCTIONS = (
    "Persistent memory shared across your sessions. Call memory_recall before answering "
    "questions about the user, their projects or earlier decisions; call memory_store for "
    "durable facts, preferences and decisions worth remembering (one self-contained fact per "
    "memory, written so it makes sense without this conversation). Storing identical content "
    "again is safe: it returns the existing id and merges tags."
)

# -- structured output: the outputSchema each tool advertises -----------------------------


class StoreOutput(BaseModel):
    """The receipt of a store: sent only after the write is committed to disk."""

    id: str = Field(description="The memory's id; use it with memory_get/memory_forget.")
    duplicate: bool = Field(
        description="True when identical content already existed in this namespace: "
        "its id is returned and the new tags were merged into it."
    )
    namespace: str
    tags: list[str] = Field(description="All tags of the memory after the merge, normalised.")
    sync_state: MemorySyncState = Field(
        description="committed (on local disk); later sync_pending, synced or sync_failed."
    )
    key: str | None = Field(default=None, description="The key of a keyed store.")
    replaced: bool = Field(
        default=False,
        description="Keyed stores: true when a live memory under the key was replaced.",
    )


class RecallHitOutput(BaseModel):
    """One ranked match."""

    id: str
    namespace: str
    content: str
    snippet: str = Field(description="The best-matching passage, matches in [brackets].")
    tags: list[str]
    score: float = Field(description="Relevance; higher is better. Comparable within one answer.")
    source: RecallSource
    created_at: float = Field(description="Unix time in seconds.")
    sync_state: MemorySyncState | None = Field(
        default=None,
        description="committed, sync_pending, synced or sync_failed: whether the hub has it.",
    )


class RecallOutput(BaseModel):
    """Ranked matches plus the honest status of the search."""

    query: str
    status: RecallStatus = Field(
        description="local: keyword search only; complete: remote semantic results merged in; "
        "retry: the remote did not answer in time, call again after retry_after seconds."
    )
    reason: str
    retry_after: float | None
    hits: list[RecallHitOutput]


class MemoryOutput(BaseModel):
    """One stored memory."""

    id: str
    namespace: str
    content: str
    content_hash: str
    tags: list[str]
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    version: str
    origin: str
    deleted: bool
    sync_state: MemorySyncState
    sync_error: str | None = None
    key: str | None = Field(default=None, description="The key, for a keyed memory.")


class ForgetOutput(BaseModel):
    """The answer to a forget: the tombstone is committed."""

    id: str
    forgotten: bool
    already_forgotten: bool


class ListOutput(BaseModel):
    """A page of memories, most recent first."""

    memories: list[MemoryOutput]
    next_before: str | None = Field(
        description="Pass as `before` to get the next page; null when this is the last page."
    )


class CountOutput(BaseModel):
    """Counts and diagnostics."""

    total: int = Field(description="Live memories matching the filters.")
    by_namespace: dict[str, int]
    forgotten: int
    outbox_pending: int = Field(description="Changes waiting to be pushed to the remote hub.")
    dead_letters: int = Field(description="Changes the hub refused for good.")
    schema_version: int
    database: str
    sync: str
    semantic: str = Field(
        default="", description="Local semantic recall: on (model, progress) or off, and how."
    )
    sharing: str = Field(
        default="",
        description="This server's part in sharing the file with other processes: "
        "'owner (N followers)', 'follower of pid P', or 'direct: <why>'.",
    )


# -- tool arguments ---------------------------------------------------------------------

# Limits are advertised in the schema (json_schema_extra) but enforced by the facade,
# so there is one validator and one wording of each message.
_Namespace = Annotated[
    str | None,
    Field(
        description="Namespace (e.g. a project name, or a path such as users/alice/prefs): "
        "1-64 chars of letters, digits and ._:/- , no empty segment between '/'. "
        "Default: 'default'."
    ),
]
_NamespaceFilter = Annotated[
    str | None, Field(description="Only this namespace. Default: all namespaces.")
]
_NamespacePrefix = Annotated[
    str | None,
    Field(
        description="Only this namespace and those below it: users/alice covers "
        "users/alice and users/alice/prefs, not users/alicex. Default: no prefix filter."
    ),
]
_TagsFilter = Annotated[
    list[str] | None,
    Field(description="Only memories carrying every one of these tags."),
]
_MemoryId = Annotated[
    str | None,
    Field(
        description="A memory id as returned by memory_store, memory_recall or memory_list. "
        "Or give key (and namespace) instead."
    ),
]
_Key = Annotated[
    str | None,
    Field(
        description="A key of your choice (1-512 characters), e.g. 'user.preferred_editor'. "
        "Storing under an existing key in the namespace replaces that memory in place "
        "(content, tags and metadata), keeping its id.",
    ),
]
_KeyNamespace = Annotated[
    str | None,
    Field(description="With key: the namespace the key lives in. Default: 'default'."),
]


_RecallLimit = Annotated[
    int | None,
    Field(
        description=f"Maximum results, 1-{MAX_LIMIT}. Default: 10.",
        json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
    ),
]
_ListLimit = Annotated[
    int | None,
    Field(
        description=f"Maximum results, 1-{MAX_LIMIT}. Default: 20.",
        json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
    ),
]

# -- what the SDK injects (never part of the input schema) --------------------------------

#: Reports how far a tool got: ``await progress(done, message)`` with ``done`` from 0 to 1.
Progress = Callable[[float, str], Awaitable[None]]


async def _system_of(ctx: Context[AsyncMemorySystem, Any]) -> AsyncMemorySystem:
    """The asyncio facade over the system the server was built on: its lifespan yields it."""
    return ctx.request_context.lifespan_context


async def _progress_of(ctx: Context) -> Progress:
    """Progress notifications for this call, sent on the event loop the tool runs on.

    Progress is a courtesy: a failure to send it never fails the tool. The
    SDK drops it when the client asked for none (no progress token).
    """

    async def report(done: float, message: str) -> None:
        try:
            await ctx.report_progress(done, 1, message)
        except Exception as exc:
            logger.debug("progress notification not sent: %s", exc)

    return report


# Async resolvers run on the event loop: no worker-thread hop per call.
System = Annotated[AsyncMemorySystem, Resolve(_system_of)]
_Progress = Annotated[Progress, Resolve(_progress_of)]

# -- the tools: each docstring is the description the model reads ------------------------


async def memory_store(
    system: System,
    content: Annotated[
        str,
        Field(
            description="The text to remember: one self-contained fact, preference or "
            f"decision. At most {MAX_CONTENT_BYTES} bytes of UTF-8."
        ),
    ],
    tags: Annotated[
        list[str] | None,
        Field(
            description=f"Up to {MAX_TAGS} short labels for filtering, e.g. "
            "['preference', 'python']; stored lower-case."
        ),
    ] = None,
    metadata: Annotated[
        dict[str, Any] | None,
        Field(description="Any JSON object to keep with the memory (e.g. source, url)."),
    ] = None,
    namespace: _Namespace = None,
    key: _Key = None,
) -> Annotated[CallToolResult, StoreOutput]:
    """Save a memory that persists across sessions.

    The answer arrives only after the memory is committed to disk. Storing
    content identical to an existing memory in the same namespace is safe:
    it returns the existing id with duplicate=true and merges the tags.
    With a key, the memory under that key is updated in place instead.
    """
    with _tool_errors():
        receipt = await system.store(
            content, tags=tags, metadata=metadata, namespace=namespace, key=key
        )
    return _result(f"{receipt.summary()}; {receipt.sync_state}.", receipt.to_dict())


async def memory_recall(
    system: System,
    progress: _Progress,
    query: Annotated[
        str,
        Field(description="What to look for, in words likely to appear in the memory."),
    ],
    limit: _RecallLimit = None,
    tags: _TagsFilter = None,
    namespace: _NamespaceFilter = None,
    namespace_prefix: _NamespacePrefix = None,
) -> Annotated[CallToolResult, RecallOutput]:
    """Search stored memories by keywords, best matches first.

    Use it before answering anything that earlier sessions may have
    settled. status says how the search ran; on status=retry, call again
    after retry_after seconds for more complete results.
    """
    await progress(0, "searching local memories and the hub")
    with _tool_errors():
        result = await system.recall(
            query, limit=limit, tags=tags, namespace=namespace, namespace_prefix=namespace_prefix
        )
    await progress(1, f"{result.status}: {len(result.hits)} match(es)")
    if not result.hits:
        text = f"No memories match {result.query!r} ({result.status}: {result.reason})."
    else:
        lines = [f"{len(result.hits)} match(es) for {result.query!r} ({result.status}):"]
        lines += [
            f"{n}. {hit.id} [{hit.namespace}] {_one_line(hit.snippet)}"
            for n, hit in enumerate(result.hits, 1)
        ]
        text = "\n".join(lines)
    if result.status == "retry" and result.retry_after is not None:
        text += f"\nMore results may follow: call again in {result.retry_after:g}s."
    return _result(text, result.to_dict())


async def memory_get(
    system: System, id: _MemoryId = None, key: _Key = None, namespace: _KeyNamespace = None
) -> Annotated[CallToolResult, MemoryOutput]:
    """Fetch one memory by id (or by key), with its full content, tags and metadata."""
    with _tool_errors():
        memory = await system.get(id, key=key, namespace=namespace)
    tags = f" tags: {', '.join(memory.tags)}" if memory.tags else ""
    text = f"Memory {memory.id} [{memory.namespace}]{tags}\n{memory.content}"
    return _result(text, memory.to_dict())


async def memory_forget(
    system: System, id: _MemoryId = None, key: _Key = None, namespace: _KeyNamespace = None
) -> Annotated[CallToolResult, ForgetOutput]:
    """Delete a memory for good (by id or by key): its content is erased, a tombstone is kept.

    Use it when the user asks to forget something or a memory is wrong.
    Forgetting an already forgotten memory succeeds (already_forgotten=true).
    """
    with _tool_errors():
        result = await system.forget(id, key=key, namespace=namespace)
    text = (
        f"{result.id} was already forgotten."
        if result.already_forgotten
        else f"Forgot {result.id}."
    )
    return _result(text, result.to_dict())


async def memory_retag(
    system: System,
    tags: Annotated[
        list[str],
        Field(
            description=f"The memory's new tags, at most {MAX_TAGS}; they replace all its "
            "current tags ([] removes them all). Stored lower-case."
        ),
    ],
    id: _MemoryId = None,
    key: _Key = None,
    namespace: _KeyNamespace = None,
) -> Annotated[CallToolResult, MemoryOutput]:
    """Replace the tags of one memory (by id or by key); its content stays as it is.

    memory_store only adds tags to identical content; use this to remove a
    wrong tag or rename one. Answers the memory with its new tags.
    """
    with _tool_errors():
        memory = await system.set_tags(id, tags=tags, key=key, namespace=namespace)
    now = ", ".join(memory.tags) if memory.tags else "none"
    return _result(f"Tags of {memory.id} [{memory.namespace}]: {now}.", memory.to_dict())


async def memory_list(
    system: System,
    namespace: _NamespaceFilter = None,
    tags: _TagsFilter = None,
    limit: _ListLimit = None,
    before: Annotated[
        str | None,
        Field(description="Page cursor: the next_before of the previous page."),
    ] = None,
    namespace_prefix: _NamespacePrefix = None,
) -> Annotated[CallToolResult, ListOutput]:
    """Browse memories, most recent first, one page at a time.

    To continue, call again with before set to the previous answer's next_before.
    """
    with _tool_errors():
        page = await system.list(
            namespace=namespace,
            tags=tags,
            limit=limit,
            before=before,
            namespace_prefix=namespace_prefix,
        )
    lines = [f"{len(page.memories)} memor{'y' if len(page.memories) == 1 else 'ies'}:"]
    lines += [f"- {m.id} [{m.namespace}] {_one_line(m.content)}" for m in page.memories]
    if page.next_before is not None:
        lines.append(f"More: call again with before={page.next_before}")
    return _result("\n".join(lines), page.to_dict())


async def memory_count(
    system: System,
    namespace: _NamespaceFilter = None,
    tags: _TagsFilter = None,
    namespace_prefix: _NamespacePrefix = None,
) -> Annotated[CallToolResult, CountOutput]:
    """Count memories (per namespace) and report storage and sync diagnostics."""
    with _tool_errors():
        counts = await system.count(
            namespace=namespace, tags=tags, namespace_prefix=namespace_prefix
        )
    spread = ", ".join(f"{ns}: {n}" for ns, n in counts.by_namespace.items())
    text = (
        f"{counts.total} memor{'y' if counts.total == 1 else 'ies'}"
        f"{f' ({spread})' if spread else ''}; "
        f"{counts.forgotten} forgotten; {counts.outbox_pending} waiting to sync; "
        f"{counts.dead_letters} dead letters; schema {counts.schema_version}; "
        f"{counts.sync}; {counts.semantic}; database {counts.database} ({counts.sharing})"
    )
    return _result(text, counts.to_dict())


def _annotations(
    title: str, *, read_only: bool, destructive: bool = False, idempotent: bool = True
) -> ToolAnnotations:
    # Every tool touches only the local memory file (and the user's own hub).
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


#: Every tool with its annotations, in the order ``tools/list`` shows them.
TOOLS: Final[tuple[tuple[Callable[..., Awaitable[CallToolResult]], ToolAnnotations], ...]] = (
    # Idempotent: identical content in a namespace dedups to the same id.
    (memory_store, _annotations("Store a memory", read_only=False)),
    (memory_recall, _annotations("Recall memories", read_only=True)),
    (memory_get, _annotations("Get a memory", read_only=True)),
    # Idempotent: forgetting twice leaves the same tombstone.
    (memory_forget, _annotations("Forget a memory", read_only=False, destructive=True)),
    # Destructive: tags not in the new list are removed. Idempotent: same list, same tags.
    (memory_retag, _annotations("Retag a memory", read_only=False, destructive=True)),
    (memory_list, _annotations("List memories", read_only=True)),
    (memory_count, _annotations("Count memories", read_only=True)),
)


def build_server(system: MemorySystem) -> MCPServer[AsyncMemorySystem]:
    """An ``MCPServer`` exposing ``system`` as the seven :data:`TOOLS`; it never closes ``system``.

    The tools run on the server's event loop through an :class:`AsyncMemorySystem`
    wrapping ``system`` (which stays the caller's to close).
    """

    @contextlib.asynccontextmanager
    async def lifespan(server: MCPServer[AsyncMemorySystem]) -> AsyncIterator[AsyncMemorySystem]:
        # Once per process on stdio and HTTP, once per client in memory; the caller
        # that opened the system closes it (serve_stdio, serve_http, a test).
        yield AsyncMemorySystem(system)

    server: MCPServer[AsyncMemorySystem] = MCPServer(
        SERVER_NAME,
        title="Memory",
        instructions=_INSTRUCTIONS,
        version=__version__,
        # Only consulted when nobody configured logging; the CLI always has.
        log_level="WARNING",
        lifespan=lifespan,
    )
    for tool, hints in TOOLS:
        server.add_tool(
            tool,
            title=hints.title,
            # Raw docstrings would carry their source indentation into what the model reads.
            description=inspect.cleandoc(tool.__doc__ or ""),
            annotations=hints,
        )
    return server


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn our errors into tool errors the model can read; anything else stays a crash."""
    try:
        yield
    except MemoryActorsError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from exc


def _result(text: str, data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _one_line(text: str, width: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- serving ----------------------------------------------------------------------------


def serve_stdio(path: str | None, config: Config | None = None) -> None:
    """Serve over stdin/stdout until stdin closes, SIGINT or SIGTERM; then close the system.

    Raises what :meth:`MemorySystem.open` raises (``SchemaTooNew``,
    ``NotADatabase``, ...) before anything is served.
    """
    # While serving, the SDK points fd 1 at stderr; but a *buffered* print would be
    # flushed at exit onto the protocol stream and break the client.
    line_buffer_stdout()
    system = MemorySystem.open(path, config=config)
    server = build_server(system)
    stopper = _StdioStopper(system)
    previous = install_handlers(dict.fromkeys(STOP_SIGNALS, stopper.on_signal))
    logger.info("serving %s over stdio", system.path)
    try:
        server.run("stdio")
        logger.info("stdin closed; shutting down")
    finally:
        stopper.close()
        install_handlers(previous)


def serve_http(
    path: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: Config | None = None,
) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until SIGINT/SIGTERM; then close.

    Raises :class:`ServeError` if the port cannot be bound (the system is closed).
    """
    line_buffer_stdout()
    system = MemorySystem.open(path, config=config)
    server = build_server(system)

    def on_listening(bound: int) -> None:
        logger.info("serving %s at http://%s:%d%s", system.path, host, bound, HTTP_PATH)

    serve_until_signal(
        system,
        host,
        port,
        lambda bound: server.streamable_http_app(streamable_http_path=HTTP_PATH, host=host),
        graceful_shutdown=HTTP_GRACEFUL_SHUTDOWN,
        on_listening=on_listening,
    )


class _StdioStopper:
    """Closes the system once, whether stdin ends or a signal arrives.

    Runs on the main thread only (Python runs signal handlers there), so the
    ``closing`` flag needs no lock. On a signal the stdio transport cannot be
    unwound: its stdin reader is a worker thread blocked in ``readline``, and
    the event loop waits for it. So the handler closes the system (each wait
    inside is bounded by ``Config.stop_timeout``) and ends the process.
    """

    def __init__(self, system: MemorySystem) -> None:
        self.system = system
        self.closing = False

    def __repr__(self) -> str:
        return f"<_StdioStopper closing={self.closing} {self.system!r}>"

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        close_quietly(self.system)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.closing:
            # The interrupted close is bounded and will finish; exiting now would cut it short.
            logger.warning("%s during shutdown; still closing", name)
            return
        logger.info("%s; shutting down", name)
        self.close()
        flush_std_streams()
        os._exit(0)
