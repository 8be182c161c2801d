"""The MCP server over streamable HTTP: ``memory-actors serve --http`` as a real subprocess.

The SDK's streamable HTTP client (``mcp.Client`` given a URL) talks to it on
127.0.0.1; shutdown goes through uvicorn's own signal handling, after which the
server must close the MemorySystem and exit 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import TextContent

from actors import MemorySystem

STARTUP_DEADLINE = 20.0
EXIT_DEADLINE = 10.0
SCENARIO_DEADLINE = 30.0
ERA_VERSIONS = {"auto": "2026-07-28", "legacy": "2025-11-25"}


def console_script() -> str:
    """The installed ``memory-actors`` script next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "memory-actors"
    if beside.exists():
        return str(beside)
    found = shutil.which("memory-actors")
    if found is None:
        pytest.fail("memory-actors is not installed (pip install -e '.[dev]')")
    return found


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HttpServer:
    """``memory-actors serve --http`` on a free port, with its stdout and stderr in files."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "memory.db"
        self.log = tmp_path / "server.log"
        self.out = tmp_path / "server.out"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        env = {key: value for key, value in os.environ.items() if key != "MEMORY_ACTORS_DB"}
        with self.log.open("w") as errlog, self.out.open("w") as outlog:
            self.proc = subprocess.Popen(
                [
                    console_script(),
                    "-v",
                    "--db",
                    str(self.db),
                    "serve",
                    "--http",
                    "--port",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=outlog,
                stderr=errlog,
                env=env,
            )

    def wait_until_accepting(self) -> None:
        """Poll the port until it accepts a connection, the process dies, or the deadline passes."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                # Not listening yet; the connect attempt itself paces the loop.
                time.sleep(0.05)
        pytest.fail(f"the server did not listen within {STARTUP_DEADLINE}s:\n{self.log_text()}")

    def stop(self, signum: signal.Signals) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {EXIT_DEADLINE}s of {signum.name}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_DEADLINE)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """A listening HTTP server on a fresh database; killed if a test leaves it running."""
    server = HttpServer(tmp_path)
    try:
        server.wait_until_accepting()
        yield server
    finally:
        server.kill()


def run(scenario: Any) -> None:
    """Run one async scenario under a hard deadline."""

    async def bounded() -> None:
        with anyio.fail_after(SCENARIO_DEADLINE):
            await scenario()

    anyio.run(bounded)


@pytest.mark.parametrize(
    ("mode", "signum"),
    [("auto", signal.SIGTERM), ("legacy", signal.SIGINT)],
    ids=["new-era-SIGTERM", "legacy-era-SIGINT"],
)
def test_streamable_http_stores_recalls_counts_then_exits_cleanly_on_a_signal(
    http_server: HttpServer, mode: str, signum: signal.Signals
) -> None:
    """Store (also concurrently), recall and count over HTTP; a signal closes everything."""
    contents = [f"note {n}: the build uses ninja" for n in range(12)]

    async def scenario() -> None:
        async with Client(http_server.url, mode=mode) as client:
            assert client.protocol_version == ERA_VERSIONS[mode]
            first = await client.call_tool("memory_store", {"content": contents[0], "tags": ["b"]})
            assert not first.is_error
            assert first.structured_content is not None
            assert first.structured_content["duplicate"] is False
            assert isinstance(first.content[0], TextContent)
            assert first.content[0].text.startswith("Stored ")

            async def store(content: str) -> None:
                result = await client.call_tool("memory_store", {"content": content})
                assert not result.is_error

            # Concurrent calls run on the SDK's worker threads and share one StoreActor.
            async with anyio.create_task_group() as tg:
                for content in contents:
                    tg.start_soon(store, content)

            recalled = await client.call_tool("memory_recall", {"query": "ninja", "limit": 20})
            assert recalled.structured_content is not None
            assert recalled.structured_content["status"] == "local"
            hits = recalled.structured_content["hits"]
            assert sorted(hit["content"] for hit in hits) == sorted(contents)

            counted = await client.call_tool("memory_count", {})
            assert counted.structured_content is not None
            assert counted.structured_content["total"] == len(contents)
            assert counted.structured_content["by_namespace"] == {"default": len(contents)}
            assert counted.structured_content["database"] == str(http_server.db)

    run(scenario)
    assert http_server.stop(signum) == 0
    log = http_server.log_text()
    assert f"serving {http_server.db} at {http_server.url}" in log
    assert f"{signum.name}; shutting down" in log
    assert "memory system closed" in log
    assert "Traceback" not in log
    # HTTP mode keeps stdout quiet too: logs (uvicorn's included) go to stderr.
    assert http_server.out.read_text() == ""
    with MemorySystem.open(http_server.db) as system:
        assert system.count().total == len(contents)


def test_streamable_http_exits_promptly_with_a_session_still_open(
    http_server: HttpServer,
) -> None:
    """SIGTERM while a legacy session is open: bounded graceful shutdown, exit 0."""
    exited: list[int] = []

    async def scenario() -> None:
        async with Client(http_server.url, mode="legacy") as client:
            stored = await client.call_tool("memory_store", {"content": "open session"})
            assert not stored.is_error
            exited.append(http_server.stop(signal.SIGTERM))

    run(scenario)
    assert exited == [0]
    assert "memory system closed" in http_server.log_text()
    with MemorySystem.open(http_server.db) as system:
        assert system.count().total == 1


def test_serve_http_on_a_taken_port_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    """A port already in use: exit 1 and one ``error:`` line, not uvicorn's exit 3."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {key: value for key, value in os.environ.items() if key != "MEMORY_ACTORS_DB"}
        db = str(tmp_path / "memory.db")
        result = subprocess.run(
            [console_script(), "--db", db, "serve", "--http", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=EXIT_DEADLINE * 3,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert result.stdout == ""
