"""The MCP server end to end over real stdio: the installed console script, the SDK's client.

Each test launches ``memory-actors serve`` as a subprocess on its own database
file, in both protocol eras: the ``mcp.Client`` default (the stateless
2026-07-28 era, negotiated by ``server/discover``) and ``mode="legacy"`` (the
``initialize`` handshake most hosts in the field speak). After every session
the server's log must show it left on its own when stdin closed, before the
SDK's 2 s grace period would have escalated to SIGTERM.

The process-lifecycle tests speak raw JSON-RPC lines through ``subprocess``,
to hold the process handle and to send bytes the SDK client refuses to send.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations

from actors import Config, MemorySystem
from actors.migrations import LATEST_VERSION
from actors.model import MAX_CONTENT_BYTES, MAX_LIMIT
from actors.server import build_server

ERAS = [pytest.param("auto", id="new-era"), pytest.param("legacy", id="legacy-era")]
#: The protocol version each era must actually negotiate (proves both eras run).
ERA_VERSIONS = {"auto": "2026-07-28", "legacy": "2025-11-25"}
SCENARIO_DEADLINE = 30.0
EXIT_DEADLINE = 5.0

TOOLS = {
    "memory_store": ToolAnnotations(
        title="Store a memory",
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_recall": ToolAnnotations(
        title="Recall memories",
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_get": ToolAnnotations(
        title="Get a memory",
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_forget": ToolAnnotations(
        title="Forget a memory",
        read_only_hint=False,
        destructive_hint=True,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_retag": ToolAnnotations(
        title="Retag a memory",
        read_only_hint=False,
        destructive_hint=True,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_list": ToolAnnotations(
        title="List memories",
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
    "memory_count": ToolAnnotations(
        title="Count memories",
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
}
MEMORY_FIELDS = {
    "id",
    "namespace",
    "content",
    "content_hash",
    "tags",
    "metadata",
    "created_at",
    "updated_at",
    "version",
    "origin",
    "deleted",
    "sync_state",
    "sync_error",
    "key",
}
OUTPUT_FIELDS = {
    "memory_store": {"id", "duplicate", "namespace", "tags", "sync_state", "key", "replaced"},
    "memory_recall": {"query", "status", "reason", "retry_after", "hits"},
    "memory_get": MEMORY_FIELDS,
    "memory_retag": MEMORY_FIELDS,
    "memory_forget": {"id", "forgotten", "already_forgotten"},
    "memory_list": {"memories", "next_before"},
    "memory_count": {
        "total",
        "by_namespace",
        "forgotten",
        "outbox_pending",
        "dead_letters",
        "schema_version",
        "database",
        "sync",
        "semantic",
        "sharing",
    },
}
UNKNOWN_ID = "01900000-0000-7000-8000-000000000000"


def console_script() -> str:
    """The installed ``memory-actors`` script next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "memory-actors"
    if beside.exists():
        return str(beside)
    found = shutil.which("memory-actors")
    if found is None:
        pytest.fail("memory-actors is not installed (pip install -e '.[dev]')")
    return found


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one async scenario under a hard deadline."""

    async def bounded() -> None:
        with anyio.fail_after(SCENARIO_DEADLINE):
            await scenario()

    anyio.run(bounded)


@asynccontextmanager
async def stdio_session(db: Path, mode: str, log: Path) -> AsyncIterator[Client]:
    """A client on a fresh ``memory-actors serve`` subprocess; checks it exits on stdin EOF."""
    params = StdioServerParameters(
        command=console_script(), args=["-v", "--db", str(db), "serve"], env=_env()
    )
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            assert client.protocol_version == ERA_VERSIONS[mode]
            yield client
    # The SDK closes stdin, then SIGTERMs a server still alive after its grace period;
    # "stdin closed" in the log shows the server left on its own, by EOF (a timing
    # bound here only flaked on a loaded machine).
    text = log.read_text()
    assert "stdin closed; shutting down" in text, text
    assert "memory system closed" in text, text
    assert "SIGTERM" not in text, text


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MEMORY_ACTORS_DB"}
    env["PYTHONWARNINGS"] = "error"
    return env


def text_of(result: CallToolResult) -> str:
    """The one text block of a tool result."""
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def ok(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """Call a tool that must answer an error result; return its message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    assert result.structured_content is None
    return text_of(result)


def list_tools(tmp_path: Path, mode: str) -> dict[str, Tool]:
    """What tools/list shows, by name, from a fresh server over stdio."""
    listed: dict[str, Tool] = {}

    async def scenario() -> None:
        async with stdio_session(tmp_path / "memory.db", mode, tmp_path / "server.log") as client:
            listed.update({tool.name: tool for tool in (await client.list_tools()).tools})

    run(scenario)
    return listed


@pytest.mark.parametrize("mode", ERAS)
def test_seven_tools_are_listed_with_true_annotations_and_output_schemas(
    tmp_path: Path, mode: str
) -> None:
    """tools/list shows the seven tools, each annotated, described and with an outputSchema."""
    listed = list_tools(tmp_path, mode)
    assert set(listed) == set(TOOLS)
    for name, tool in listed.items():
        assert tool.annotations == TOOLS[name]
        assert tool.description is not None
        assert len(tool.description) > 40
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert set(tool.output_schema["properties"]) == OUTPUT_FIELDS[name]
    store_input = listed["memory_store"].input_schema
    assert store_input["required"] == ["content"]
    recall_limit = listed["memory_recall"].input_schema["properties"]["limit"]
    assert (recall_limit["minimum"], recall_limit["maximum"]) == (1, MAX_LIMIT)


def _descriptions(schema: Any) -> list[str]:
    """Every ``description`` in a JSON schema, nested ones included."""
    if isinstance(schema, dict):
        own = [schema["description"]] if isinstance(schema.get("description"), str) else []
        return own + [text for value in schema.values() for text in _descriptions(value)]
    if isinstance(schema, list):
        return [text for value in schema for text in _descriptions(value)]
    return []


@pytest.mark.parametrize("mode", ERAS)
def test_tool_descriptions_read_cleanly_without_docstring_indentation(
    tmp_path: Path, mode: str
) -> None:
    """No line of a description the model reads starts with whitespace (docstrings dedented)."""
    listed = list_tools(tmp_path, mode)
    for name, tool in listed.items():
        assert tool.description is not None
        texts = [tool.description]
        texts += _descriptions(tool.input_schema) + _descriptions(tool.output_schema)
        indented = [line for text in texts for line in text.splitlines() if line[:1].isspace()]
        assert indented == [], name
        assert tool.description == tool.description.strip(), name
    assert listed["memory_forget"].description == (
        "Delete a memory for good (by id or by key): its content is erased, a tombstone is "
        "kept.\n\n"
        "Use it when the user asks to forget something or a memory is wrong.\n"
        "Forgetting an already forgotten memory succeeds (already_forgotten=true)."
    )


@pytest.mark.parametrize("mode", ERAS)
def test_store_dedups_and_recall_get_list_count_see_it(tmp_path: Path, mode: str) -> None:
    """A store is acknowledged with an id; a duplicate merges tags; reads see exact values."""
    db = tmp_path / "memory.db"

    async def scenario() -> None:
        async with stdio_session(db, mode, tmp_path / "server.log") as client:
            first = await client.call_tool(
                "memory_store",
                {
                    "content": "  The user prefers tabs over spaces.\r\n",
                    "tags": ["Style"],
                    "metadata": {"source": "chat"},
                },
            )
            receipt = first.structured_content
            assert receipt is not None
            memory_id = receipt["id"]
            assert receipt == {
                "id": memory_id,
                "duplicate": False,
                "namespace": "default",
                "tags": ["style"],
                "sync_state": "committed",
                "key": None,
                "replaced": False,
            }
            assert text_of(first) == (
                f"Stored {memory_id} (new) in namespace default with tags style; committed."
            )

            again = await client.call_tool(
                "memory_store",
                {"content": "The user prefers tabs over spaces.", "tags": ["editor"]},
            )
            assert again.structured_content == {
                "id": memory_id,
                "duplicate": True,
                "namespace": "default",
                "tags": ["editor", "style"],
                "sync_state": "committed",
                "key": None,
                "replaced": False,
            }
            assert text_of(again).startswith(f"Stored {memory_id} (duplicate; tags merged)")

            other = await ok(
                client,
                "memory_store",
                {"content": "Deploys happen on Tuesdays.", "namespace": "work"},
            )
            assert (other["duplicate"], other["namespace"], other["tags"]) == (False, "work", [])

            recalled = await client.call_tool("memory_recall", {"query": "tabs"})
            found = recalled.structured_content
            assert found is not None
            assert (found["query"], found["status"], found["retry_after"]) == (
                "tabs",
                "local",
                None,
            )
            assert found["reason"].startswith("local keyword search")
            assert [hit["id"] for hit in found["hits"]] == [memory_id]
            hit = found["hits"][0]
            assert hit["content"] == "The user prefers tabs over spaces."
            assert hit["snippet"] == "The user prefers [tabs] over spaces."
            assert (hit["source"], hit["namespace"], hit["tags"]) == (
                "local",
                "default",
                ["editor", "style"],
            )
            assert text_of(recalled).splitlines()[1].startswith(f"1. {memory_id} [default]")

            memory = await ok(client, "memory_get", {"id": memory_id.upper()})
            assert memory["id"] == memory_id
            assert memory["content"] == "The user prefers tabs over spaces."
            assert memory["metadata"] == {"source": "chat"}
            assert (memory["tags"], memory["deleted"]) == (["editor", "style"], False)

            page = await ok(client, "memory_list", {})
            assert [m["id"] for m in page["memories"]] == [other["id"], memory_id]
            assert page["next_before"] is None
            first_page = await ok(client, "memory_list", {"limit": 1})
            assert [m["id"] for m in first_page["memories"]] == [other["id"]]
            assert first_page["next_before"] == other["id"]
            rest = await ok(client, "memory_list", {"before": first_page["next_before"]})
            assert ([m["id"] for m in rest["memories"]], rest["next_before"]) == ([memory_id], None)
            work = await ok(client, "memory_list", {"namespace": "work"})
            assert [m["id"] for m in work["memories"]] == [other["id"]]

            counted = await client.call_tool("memory_count", {})
            assert counted.structured_content == {
                "total": 2,
                "by_namespace": {"default": 1, "work": 1},
                "forgotten": 0,
                # One outbox row per change: new, tags merged, new.
                "outbox_pending": 3,
                "dead_letters": 0,
                "schema_version": LATEST_VERSION,
                "database": str(db),
                "sync": "local-only: no remote configured",
                # The suite runs keyword-only (tests/conftest.py); off says why and how.
                "semantic": "semantic recall off: turned off in this process "
                "(Config.semantic=False or $MEMORY_ACTORS_SEMANTIC=off)",
                "sharing": "owner (0 followers)",
            }
            assert text_of(counted).startswith("2 memories (default: 1, work: 1); 0 forgotten")
            tagged = await ok(client, "memory_count", {"tags": ["editor"]})
            assert (tagged["total"], tagged["by_namespace"]) == (1, {"default": 1})

    run(scenario)


@pytest.mark.parametrize("mode", ERAS)
def test_forget_leaves_a_tombstone_and_get_then_fails(tmp_path: Path, mode: str) -> None:
    """Forget erases a memory (twice is fine); get and recall no longer find it."""

    async def scenario() -> None:
        async with stdio_session(tmp_path / "memory.db", mode, tmp_path / "server.log") as client:
            memory_id = (await ok(client, "memory_store", {"content": "ephemeral fact"}))["id"]

            forgot = await client.call_tool("memory_forget", {"id": memory_id})
            assert forgot.structured_content == {
                "id": memory_id,
                "forgotten": True,
                "already_forgotten": False,
            }
            assert text_of(forgot) == f"Forgot {memory_id}."
            twice = await ok(client, "memory_forget", {"id": memory_id})
            assert twice["already_forgotten"] is True

            message = await fails(client, "memory_get", {"id": memory_id})
            assert message.endswith(f"MemoryNotFound: memory {memory_id} was forgotten")
            assert (await ok(client, "memory_recall", {"query": "ephemeral"}))["hits"] == []
            counts = await ok(client, "memory_count", {})
            assert (counts["total"], counts["forgotten"], counts["outbox_pending"]) == (0, 1, 2)

    run(scenario)


@pytest.mark.parametrize("mode", ERAS)
def test_retag_replaces_the_tags_by_id_or_key_and_keeps_the_content(
    tmp_path: Path, mode: str
) -> None:
    """memory_retag removes tags a store could only add to; recall's tag filter follows."""

    async def scenario() -> None:
        async with stdio_session(tmp_path / "memory.db", mode, tmp_path / "server.log") as client:
            stored = await ok(
                client,
                "memory_store",
                {"content": "deploys go out on Tuesdays", "tags": ["ops", "wrong"]},
            )
            memory_id = stored["id"]
            retagged = await client.call_tool(
                "memory_retag", {"id": memory_id, "tags": ["Ops", "schedule"]}
            )
            assert retagged.structured_content is not None
            assert retagged.structured_content["tags"] == ["ops", "schedule"]
            assert retagged.structured_content["content"] == "deploys go out on Tuesdays"
            assert text_of(retagged) == f"Tags of {memory_id} [default]: ops, schedule."
            found = await ok(client, "memory_recall", {"query": "deploys", "tags": ["wrong"]})
            assert found["hits"] == []
            assert (await ok(client, "memory_get", {"id": memory_id}))["tags"] == [
                "ops",
                "schedule",
            ]

            await ok(client, "memory_store", {"content": "editor is helix", "key": "editor"})
            cleared = await ok(client, "memory_retag", {"key": "editor", "tags": []})
            assert (cleared["key"], cleared["tags"]) == ("editor", [])

            message = await fails(client, "memory_retag", {"id": UNKNOWN_ID, "tags": ["x"]})
            assert message.endswith(f"MemoryNotFound: no memory has id {UNKNOWN_ID}")
            message = await fails(client, "memory_retag", {"id": memory_id, "tags": [" "]})
            assert message.endswith("InvalidMemory: tags must not be empty")
            message = await fails(client, "memory_retag", {"id": memory_id})
            assert "tags\n  Field required" in message
            # The refused calls changed nothing.
            assert (await ok(client, "memory_get", {"id": memory_id}))["tags"] == [
                "ops",
                "schedule",
            ]

    run(scenario)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("memory_store", {"content": ""}, "InvalidMemory: content is empty (or only whitespace)"),
    (
        "memory_store",
        {"content": " \n\t\u3000 "},
        "InvalidMemory: content is empty (or only whitespace)",
    ),
    (
        "memory_store",
        {"content": "x" * (MAX_CONTENT_BYTES + 1)},
        f"InvalidMemory: content is {MAX_CONTENT_BYTES + 1} bytes of UTF-8; "
        f"the limit is {MAX_CONTENT_BYTES} bytes",
    ),
    ("memory_store", {}, "content\n  Field required"),
    ("memory_store", {"content": 42}, "content\n  Input should be a valid string"),
    ("memory_store", {"content": "c", "tags": [1, 2]}, "tags.0\n  Input should be a valid string"),
    ("memory_store", {"content": "c", "tags": "solo"}, "tags\n  Input should be a valid list"),
    ("memory_store", {"content": "c", "tags": [" "]}, "InvalidMemory: tags must not be empty"),
    (
        "memory_store",
        {"content": "c", "metadata": [1, 2]},
        "metadata\n  Input should be a valid dictionary",
    ),
    (
        "memory_store",
        {"content": "c", "metadata": "not json"},
        "metadata\n  Input should be a valid dictionary",
    ),
    (
        "memory_store",
        {"content": "c", "namespace": "no spaces"},
        "InvalidMemory: namespace 'no spaces' is invalid",
    ),
    ("memory_get", {"id": UNKNOWN_ID}, f"MemoryNotFound: no memory has id {UNKNOWN_ID}"),
    ("memory_forget", {"id": UNKNOWN_ID}, f"MemoryNotFound: no memory has id {UNKNOWN_ID}"),
    ("memory_get", {"id": "not-an-id"}, "InvalidMemory: 'not-an-id' is not a memory id (a UUID)"),
    (
        "memory_forget",
        {"id": "not-an-id"},
        "InvalidMemory: 'not-an-id' is not a memory id (a UUID)",
    ),
    (
        "memory_recall",
        {"query": "c", "limit": 0},
        "InvalidMemory: limit must be between 1 and 200, got 0",
    ),
    (
        "memory_recall",
        {"query": "c", "limit": 1000},
        "InvalidMemory: limit must be between 1 and 200, got 1000",
    ),
    ("memory_list", {"limit": 0}, "InvalidMemory: limit must be between 1 and 200, got 0"),
    ("memory_list", {"limit": 1000}, "InvalidMemory: limit must be between 1 and 200, got 1000"),
    ("memory_list", {"before": "nope"}, "InvalidMemory: 'nope' is not a memory id (a UUID)"),
    ("memory_recall", {"query": "   "}, "InvalidMemory: query is empty"),
    ("memory_count", {"tags": [None]}, "tags.0\n  Input should be a valid string"),
    (
        "memory_list",
        {"namespace_prefix": "users/"},
        "InvalidMemory: namespace_prefix 'users/' ends with '/'",
    ),
    (
        "memory_store",
        {"content": "x", "namespace": "users//alice"},
        "InvalidMemory: namespace 'users//alice' has an empty segment",
    ),
]


@pytest.mark.parametrize("mode", ERAS)
def test_bad_input_is_an_error_result_and_changes_nothing(tmp_path: Path, mode: str) -> None:
    """Every invalid argument answers isError with a precise message; the store is unchanged."""

    async def scenario() -> None:
        async with stdio_session(tmp_path / "memory.db", mode, tmp_path / "server.log") as client:
            kept = await ok(client, "memory_store", {"content": "c", "tags": ["keep"]})
            before = await ok(client, "memory_count", {})
            for tool, arguments, expected in BAD_CALLS:
                message = await fails(client, tool, arguments)
                assert message.startswith(f"Error executing tool {tool}: "), message
                assert expected in message, (tool, arguments, message)
            assert await ok(client, "memory_count", {}) == before
            assert before["total"] == 1
            assert before["outbox_pending"] == 1
            page = await ok(client, "memory_list", {})
            assert [(m["id"], m["tags"]) for m in page["memories"]] == [(kept["id"], ["keep"])]

    run(scenario)


@pytest.mark.parametrize("mode", ERAS)
def test_list_recall_and_count_by_namespace_prefix_keep_only_the_subtree(
    tmp_path: Path, mode: str
) -> None:
    """namespace_prefix over stdio: users/alice and below, never the sibling users/alicex."""
    spaces = ["users/alice", "users/alice/prefs", "users/alice/prefs/ui", "users/alicex"]

    async def scenario() -> None:
        async with stdio_session(tmp_path / "memory.db", mode, tmp_path / "server.log") as client:
            for namespace in spaces:
                await ok(
                    client,
                    "memory_store",
                    {"content": f"tea for {namespace}", "namespace": namespace},
                )
            listed = await ok(client, "memory_list", {"namespace_prefix": "users/alice"})
            assert sorted(m["namespace"] for m in listed["memories"]) == spaces[:3]
            found = await ok(
                client, "memory_recall", {"query": "tea", "namespace_prefix": "users/alice"}
            )
            assert sorted(h["namespace"] for h in found["hits"]) == spaces[:3]
            counts = await ok(client, "memory_count", {"namespace_prefix": "users/alice/prefs"})
            assert counts["by_namespace"] == {"users/alice/prefs": 1, "users/alice/prefs/ui": 1}
            assert counts["total"] == 2
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            for name in ("memory_list", "memory_recall", "memory_count"):
                prefix = tools[name].input_schema["properties"]["namespace_prefix"]
                assert "not users/alicex" in prefix["description"], name

    run(scenario)


@pytest.mark.parametrize("mode", ERAS)
def test_lone_surrogate_reaching_the_tool_is_an_error_result(tmp_path: Path, mode: str) -> None:
    """In process (no JSON in between) a lone surrogate reaches the tool and is refused."""

    async def scenario(system: MemorySystem) -> None:
        async with Client(build_server(system), mode=mode) as client:
            message = await fails(client, "memory_store", {"content": "a\ud800b"})
            assert message.endswith(
                "InvalidMemory: content is not valid UTF-8 (unpaired surrogate at position 1)"
            )
            message = await fails(client, "memory_store", {"content": "c", "tags": ["\udcff"]})
            assert "InvalidMemory: a tag is not valid UTF-8" in message
            assert (await ok(client, "memory_count", {}))["total"] == 0

    with MemorySystem.open(tmp_path / "memory.db") as system:
        run(lambda: scenario(system))


class _CountingConnection(sqlite3.Connection):
    """A real connection that counts write transactions (``BEGIN IMMEDIATE``)."""

    begins: ClassVar[int] = 0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith("BEGIN IMMEDIATE"):
            _CountingConnection.begins += 1
        return super().execute(sql, parameters)


def _counting_connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=5.0, isolation_level=None, factory=_CountingConnection)


@pytest.mark.parametrize("mode", ERAS)
def test_concurrent_calls_from_one_client_share_group_commits(tmp_path: Path, mode: str) -> None:
    """32 memory_store calls in flight from one client: 32 memories, fewer transactions."""

    async def scenario(system: MemorySystem) -> None:
        async with Client(build_server(system), mode=mode) as client:
            before = _CountingConnection.begins
            async with anyio.create_task_group() as group:
                for n in range(32):
                    group.start_soon(ok, client, "memory_store", {"content": f"fact {n}"})
            transactions = _CountingConnection.begins - before
            assert (await ok(client, "memory_count", {}))["total"] == 32
            assert 1 <= transactions < 32

    config = Config(connect=_counting_connect)
    with MemorySystem.open(tmp_path / "memory.db", config=config) as system:
        run(lambda: scenario(system))


# -- raw JSON-RPC over the process's pipes ---------------------------------------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class RawServer:
    """``memory-actors serve`` on pipes, spoken to in newline-delimited JSON-RPC."""

    def __init__(self, db: Path, log: Path) -> None:
        self.log = log
        with log.open("w") as errlog:
            self.proc = subprocess.Popen(
                [console_script(), "-v", "--db", str(db), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errlog,
                env=_env(),
            )
        self._buffer = b""

    def send(self, message: dict[str, Any] | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message from the server, within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(remaining, 0))
            if not ready:
                pytest.fail(f"no message from the server in {timeout}s; log:\n{self.log_text()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"the server closed stdout; log:\n{self.log_text()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def initialize(self) -> None:
        self.send(INITIALIZE)
        assert self.receive()["id"] == 1
        self.send(INITIALIZED)

    def call(self, request_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
        )
        reply = self.receive()
        assert reply["id"] == request_id, reply
        result: dict[str, Any] = reply["result"]
        return result

    def wait(self, timeout: float = EXIT_DEADLINE) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
            pytest.fail(f"the server did not exit within {timeout}s; log:\n{self.log_text()}")

    def rest_of_stdout(self) -> bytes:
        assert self.proc.stdout is not None
        rest = self._buffer + self.proc.stdout.read()
        self.proc.stdout.close()
        return rest

    def log_text(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_DEADLINE)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@pytest.fixture
def raw_server(tmp_path: Path) -> Any:
    """A raw-protocol server on a fresh database, killed if a test leaves it running."""
    server = RawServer(tmp_path / "memory.db", tmp_path / "server.log")
    yield server
    server.close()


def test_server_exits_promptly_after_stdin_closes(raw_server: RawServer) -> None:
    """Closing stdin ends the server with status 0 well before a host would SIGTERM it."""
    raw_server.initialize()
    assert raw_server.call(2, "memory_count", {})["structuredContent"]["total"] == 0
    assert raw_server.proc.stdin is not None
    raw_server.proc.stdin.close()
    # Nobody signals this process: returning 0 at all means it left by itself on EOF.
    assert raw_server.wait() == 0
    assert raw_server.rest_of_stdout() == b""
    log = raw_server.log_text()
    assert "stdin closed; shutting down" in log
    assert "memory system closed" in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_closes_the_system_and_exits_on_a_signal(
    raw_server: RawServer, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGTERM or SIGINT: acknowledged writes stay, the system closes, the exit status is 0."""
    raw_server.initialize()
    stored = raw_server.call(2, "memory_store", {"content": "survives the signal"})
    assert stored["isError"] is False
    raw_server.proc.send_signal(signum)
    assert raw_server.wait() == 0
    log = raw_server.log_text()
    assert f"{signum.name}; shutting down" in log
    assert "memory system closed" in log
    assert "Traceback" not in log
    with MemorySystem.open(tmp_path / "memory.db") as system:
        assert system.get(stored["structuredContent"]["id"]).content == "survives the signal"


def test_unparseable_json_such_as_a_lone_surrogate_gets_no_reply_and_stores_nothing(
    raw_server: RawServer,
) -> None:
    """A lone surrogate is invalid JSON to the SDK's parser: the line is dropped, nothing stored.

    The SDK client cannot even send one (it refuses to serialise it), so the
    bytes go out raw. The SDK answers no JSON-RPC parse error (there is no id to
    answer), so the check is that the next reply belongs to the next request and
    that no reply for the bad one ever arrives.
    """
    raw_server.initialize()
    bad = (
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"memory_store",'
        '"arguments":{"content":"a\\ud800b"}}}'
    )
    raw_server.send(bad)
    counted = raw_server.call(3, "memory_count", {})
    assert counted["structuredContent"]["total"] == 0
    assert counted["structuredContent"]["outbox_pending"] == 0
    assert raw_server.proc.stdin is not None
    raw_server.proc.stdin.close()
    assert raw_server.wait() == 0
    assert raw_server.rest_of_stdout() == b""
