"""The ``memory-actors`` command: every command in human and ``--json`` form, and exit codes.

Most tests drive the click group in process (``CliRunner``); the ones about
the real process (console script, environment, stderr without a traceback,
files left untouched) run the installed script as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import attrs
import click
import pytest
from click.testing import CliRunner, Result
from hub_fixtures import free_port

import actors.server
from actors import (
    AskTimeout,
    InvalidMemory,
    MemoryActorsError,
    MemoryNotFound,
    MigrationFailed,
    NotADatabase,
    Overloaded,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    SystemClosed,
    Unavailable,
    __version__,
)
from actors.cli import (
    EXIT_DATABASE,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandError,
    _MemoryGroup,
    cli,
    exit_code_for,
)
from actors.migrations import LATEST_VERSION, STEPS, migrate
from actors.server import DEFAULT_HOST, DEFAULT_PORT
from actors.system import DB_ENV_VAR, Config, MemorySystem

REPO = Path(__file__).resolve().parent.parent
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
SUBPROCESS_DEADLINE = 30.0

#: What status and count say with semantic recall off, as the suite runs (tests/conftest.py).
SEMANTIC_OFF = "turned off in this process (Config.semantic=False or $MEMORY_ACTORS_SEMANTIC=off)"


def console_script() -> str:
    """The installed ``memory-actors`` script next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "memory-actors"
    if beside.exists():
        return str(beside)
    found = shutil.which("memory-actors")
    if found is None:
        pytest.fail("memory-actors is not installed (pip install -e '.[dev]')")
    return found


def invoke(db: Path | None, *args: str, stdin: bytes | None = None) -> Result:
    """Run the click group in process on ``db`` with $MEMORY_ACTORS_DB unset."""
    prefix = ["--db", str(db)] if db is not None else []
    return CliRunner(env={DB_ENV_VAR: None}).invoke(
        cli, [*prefix, *args], input=stdin, catch_exceptions=False, prog_name="memory-actors"
    )


def invoke_json(db: Path, *args: str) -> object:
    """Run a command with --json; it must succeed and print one JSON document."""
    result = invoke(db, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; its environment lacks $MEMORY_ACTORS_DB unless given."""
    base = {key: value for key, value in os.environ.items() if key != DB_ENV_VAR}
    return subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=SUBPROCESS_DEADLINE,
        check=False,
    )


def store_id(db: Path, content: str, *options: str) -> str:
    """Store through the CLI and return the id."""
    receipt = invoke_json(db, "store", content, *options)
    assert isinstance(receipt, dict)
    memory_id: str = receipt["id"]
    return memory_id


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A path for a fresh database (symlinks resolved, as --db resolves them)."""
    return Path(os.path.realpath(tmp_path)) / "memory.db"


# -- store -----------------------------------------------------------------------------------


def test_store_prints_the_new_id_and_a_duplicate_merges_tags(db: Path) -> None:
    """Human output names the id and whether it is new; a duplicate answers the same id."""
    first = invoke(db, "store", "Prefer tabs over spaces", "-t", "Style", "--tag", "b")
    assert first.exit_code == 0
    match = re.fullmatch(
        rf"Stored ({ID}) \(new\) in namespace default with tags b, style\n", first.stdout
    )
    assert match is not None, first.stdout
    assert first.stderr == ""

    again = invoke_json(db, "store", "Prefer tabs over spaces", "-t", "c")
    assert again == {
        "id": match.group(1),
        "namespace": "default",
        "duplicate": True,
        "tags": ["b", "c", "style"],
        "sync_state": "committed",
        "key": None,
        "replaced": False,
    }
    third = invoke(db, "store", "Prefer tabs over spaces", "-n", "work")
    assert re.fullmatch(rf"Stored {ID} \(new\) in namespace work\n", third.stdout)


def test_store_dash_reads_stdin_as_utf8(db: Path) -> None:
    """``store -`` stores stdin's bytes decoded as UTF-8, normalised like any content."""
    stored = invoke(db, "store", "-", "--json", stdin="  héllo\r\nwörld ✓\n".encode())
    assert stored.exit_code == 0, stored.stderr
    memory_id = json.loads(stored.stdout)["id"]
    memory = invoke_json(db, "get", memory_id)
    assert isinstance(memory, dict)
    assert memory["content"] == "héllo\nwörld ✓"


def test_store_refuses_stdin_that_is_not_utf8(db: Path) -> None:
    """Invalid UTF-8 on stdin exits 2 with the offending byte; nothing is stored."""
    result = invoke(db, "store", "-", stdin=b"ok \xff\xfe")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == (
        "error: stdin is not valid UTF-8 (byte 0xff at offset 3); nothing was stored\n"
    )
    assert result.stdout == ""
    assert invoke_json(db, "count") == _counts(db, total=0, outbox=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["store", ""], "error: content is empty (or only whitespace)\n"),
        (["store", " \t\n"], "error: content is empty (or only whitespace)\n"),
        (
            ["store", "x", "--metadata", "[1]"],
            "error: metadata must be a JSON object (a mapping), not list\n",
        ),
        (["store", "x", "-t", "a,b"], "error: tag 'a,b' contains a comma or a control character\n"),
        (
            ["store", "x", "-n", "bad ns"],
            "error: namespace 'bad ns' is invalid: use 1-64 characters from letters, digits "
            "and . _ : / -, starting with a letter or digit\n",
        ),
        (["recall", "x", "--limit", "0"], "error: limit must be between 1 and 200, got 0\n"),
        (["list", "--limit", "1000"], "error: limit must be between 1 and 200, got 1000\n"),
        (["list", "--before", "nope"], "error: 'nope' is not a memory id (a UUID)\n"),
        (["get", "nope"], "error: 'nope' is not a memory id (a UUID)\n"),
        (["forget", "nope"], "error: 'nope' is not a memory id (a UUID)\n"),
        (["recall", "  "], "error: query is empty\n"),
    ],
)
def test_invalid_input_exits_2_with_one_line_and_changes_nothing(
    db: Path, args: list[str], message: str
) -> None:
    """Each invalid argument: exit 2, one ``error:`` line on stderr, the store unchanged."""
    store_id(db, "kept")
    result = invoke(db, *args)
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == message
    assert result.stdout == ""
    assert invoke_json(db, "count") == _counts(db, total=1, outbox=1)


def test_usage_errors_exit_2(db: Path) -> None:
    """Malformed options are click usage errors (exit 2) that name the option."""
    bad_json = invoke(db, "store", "x", "--metadata", "{")
    assert bad_json.exit_code == EXIT_USAGE
    assert "Invalid value for --metadata: not valid JSON" in bad_json.stderr
    bad_int = invoke(db, "recall", "x", "--limit", "many")
    assert bad_int.exit_code == EXIT_USAGE
    assert "'many' is not a valid integer" in bad_int.stderr
    assert invoke(db, "no-such-command").exit_code == EXIT_USAGE
    assert invoke_json(db, "count") == _counts(db, total=0, outbox=0)


# -- reads -----------------------------------------------------------------------------------


def test_recall_ranks_matches_in_human_and_json_form(db: Path) -> None:
    """recall prints a table of matches, or the RecallResult as JSON."""
    tabs = store_id(db, "The user prefers tabs over spaces", "-t", "style")
    store_id(db, "Deploys happen on Tuesdays", "-n", "work")

    found = invoke_json(db, "recall", "tabs")
    assert isinstance(found, dict)
    assert (found["query"], found["status"], found["retry_after"]) == ("tabs", "local", None)
    assert [hit["id"] for hit in found["hits"]] == [tabs]
    assert found["hits"][0]["snippet"] == "The user prefers [tabs] over spaces"
    assert found["hits"][0]["tags"] == ["style"]

    human = invoke(db, "recall", "tabs")
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[0] == "1 match for 'tabs' (local)"
    assert tabs in human.stdout
    # The table wraps cells at the console width (80 when piped).
    assert "The user prefers" in human.stdout
    assert "[tabs] over spaces" in human.stdout

    none = invoke(db, "recall", "tabs", "--namespace", "work")
    assert none.stdout.startswith("No memories match 'tabs' (local keyword search")
    only_work = invoke_json(db, "recall", "tuesdays", "-n", "work", "-l", "1")
    assert isinstance(only_work, dict)
    assert [hit["namespace"] for hit in only_work["hits"]] == ["work"]


def test_get_prints_the_memory_in_human_and_json_form(db: Path) -> None:
    """get prints fields then content, or the Memory record as JSON; unknown ids exit 3."""
    memory_id = store_id(db, "Line one\nLine [two]", "-t", "b", "-t", "a", "-m", '{"k": 1}')
    memory = invoke_json(db, "get", memory_id)
    assert isinstance(memory, dict)
    assert {key: memory[key] for key in ("id", "namespace", "content", "tags", "metadata")} == {
        "id": memory_id,
        "namespace": "default",
        "content": "Line one\nLine [two]",
        "tags": ["a", "b"],
        "metadata": {"k": 1},
    }
    assert (memory["deleted"], memory["sync_state"]) == (False, "committed")

    human = invoke(db, "get", memory_id)
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    assert lines[:4] == [
        f"id:        {memory_id}",
        "namespace: default",
        "tags:      a, b",
        'metadata:  {"k": 1}',
    ]
    assert re.fullmatch(r"created:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lines[4])
    assert lines[-3:] == ["", "Line one", "Line [two]"]

    unknown = "01900000-0000-7000-8000-000000000000"
    missing = invoke(db, "get", unknown)
    assert missing.exit_code == EXIT_NOT_FOUND
    assert missing.stderr == f"error: no memory has id {unknown}\n"


def test_forget_tombstones_and_then_get_exits_3(db: Path) -> None:
    """forget says what it did (twice is fine); the memory is then not found."""
    memory_id = store_id(db, "temporary")
    first = invoke(db, "forget", memory_id)
    assert (first.exit_code, first.stdout) == (0, f"Forgot {memory_id}\n")
    assert invoke_json(db, "forget", memory_id) == {
        "id": memory_id,
        "forgotten": True,
        "already_forgotten": True,
    }
    assert invoke(db, "forget", memory_id).stdout == f"{memory_id} was already forgotten\n"
    gone = invoke(db, "get", memory_id)
    assert gone.exit_code == EXIT_NOT_FOUND
    assert gone.stderr == f"error: memory {memory_id} was forgotten\n"
    unknown = "01900000-0000-7000-8000-000000000000"
    assert invoke(db, "forget", unknown).exit_code == EXIT_NOT_FOUND


def tags_of(memory: object) -> object:
    assert isinstance(memory, dict)
    return memory["tags"]


def test_retag_replaces_the_tags_and_refuses_to_guess(db: Path) -> None:
    """retag sets exactly the given tags (by id or key); no --tag and no --no-tags is refused."""
    memory_id = store_id(db, "standups are at ten", "-t", "meetings", "-t", "typo")
    done = invoke(db, "retag", memory_id, "-t", "Meetings", "-t", "daily")
    assert (done.exit_code, done.stdout) == (0, f"{memory_id} tags: daily, meetings\n")
    assert tags_of(invoke_json(db, "get", memory_id)) == ["daily", "meetings"]

    neither = invoke(db, "retag", memory_id)
    assert neither.exit_code == EXIT_USAGE
    assert "give the new tags with --tag (repeat it), or --no-tags" in neither.stderr
    both = invoke(db, "retag", memory_id, "-t", "x", "--no-tags")
    assert both.exit_code == EXIT_USAGE

    invoke(db, "store", "editor is helix", "--key", "editor", "-t", "tools")
    assert tags_of(invoke_json(db, "retag", "--key", "editor", "--no-tags")) == []
    unknown = "01900000-0000-7000-8000-000000000000"
    missing = invoke(db, "retag", unknown, "-t", "x")
    assert missing.exit_code == EXIT_NOT_FOUND
    assert missing.stderr == f"error: no memory has id {unknown}\n"
    assert tags_of(invoke_json(db, "get", memory_id)) == ["daily", "meetings"]


def test_list_pages_most_recent_first(db: Path) -> None:
    """list shows the newest first; --before continues from the page's next_before."""
    ids = [store_id(db, f"memory number {n}", "-t", f"t{n % 2}") for n in range(3)]
    newest_first = ids[::-1]

    page = invoke_json(db, "list", "--limit", "2")
    assert isinstance(page, dict)
    assert [m["id"] for m in page["memories"]] == newest_first[:2]
    assert page["next_before"] == newest_first[1]
    rest = invoke_json(db, "list", "--before", page["next_before"])
    assert isinstance(rest, dict)
    assert ([m["id"] for m in rest["memories"]], rest["next_before"]) == ([ids[0]], None)
    tagged = invoke_json(db, "list", "-t", "t0")
    assert isinstance(tagged, dict)
    assert [m["id"] for m in tagged["memories"]] == [ids[2], ids[0]]

    human = invoke(db, "list", "--limit", "2")
    assert human.exit_code == 0
    positions = [human.stdout.index(memory_id) for memory_id in newest_first[:2]]
    assert positions == sorted(positions)
    assert ids[0] not in human.stdout.splitlines()[-2]
    assert human.stdout.splitlines()[-1] == f"More: memory-actors list --before {newest_first[1]}"
    assert invoke(db, "list", "-n", "empty").stdout == "No memories.\n"


def test_list_recall_and_count_take_a_namespace_prefix(db: Path) -> None:
    """--namespace-prefix keeps the namespace and those below it, not a sibling; bad ones exit 2."""
    for namespace in ("users/alice", "users/alice/prefs", "users/alicex"):
        store_id(db, f"tea for {namespace}", "-n", namespace)
    page = invoke_json(db, "list", "--namespace-prefix", "users/alice")
    assert isinstance(page, dict)
    assert sorted(m["namespace"] for m in page["memories"]) == ["users/alice", "users/alice/prefs"]
    found = invoke_json(db, "recall", "tea", "--namespace-prefix", "users/alice")
    assert isinstance(found, dict)
    assert sorted(h["namespace"] for h in found["hits"]) == ["users/alice", "users/alice/prefs"]
    counts = invoke_json(db, "count", "--namespace-prefix", "users/alice")
    assert isinstance(counts, dict)
    assert counts["by_namespace"] == {"users/alice": 1, "users/alice/prefs": 1}
    bad = invoke(db, "list", "--namespace-prefix", "users//alice")
    assert bad.exit_code == EXIT_USAGE
    assert "namespace_prefix 'users//alice' has an empty segment" in bad.stderr


def _counts(db: Path, *, total: int, outbox: int, **extra: object) -> dict[str, object]:
    expected: dict[str, object] = {
        "total": total,
        "by_namespace": {"default": total} if total else {},
        "forgotten": 0,
        "outbox_pending": outbox,
        "dead_letters": 0,
        "schema_version": LATEST_VERSION,
        "database": str(db),
        "sync": "local-only: no remote configured",
        "semantic": f"semantic recall off: {SEMANTIC_OFF}",
        # The command's process opened the file alone, so it owned it.
        "sharing": "owner (0 followers)",
    }
    expected.update(extra)
    return expected


def test_count_reports_exact_numbers_in_human_and_json_form(db: Path) -> None:
    """count prints totals per namespace and the diagnostics, or the CountResult as JSON."""
    store_id(db, "one")
    store_id(db, "two", "-t", "x")
    store_id(db, "three", "-n", "work", "-t", "x")
    invoke(db, "forget", store_id(db, "four"))

    assert invoke_json(db, "count") == _counts(
        db, total=3, outbox=5, by_namespace={"default": 2, "work": 1}, forgotten=1
    )
    tagged = invoke_json(db, "count", "--tag", "x")
    assert isinstance(tagged, dict)
    assert (tagged["total"], tagged["by_namespace"]) == (2, {"default": 1, "work": 1})

    human = invoke(db, "count")
    assert human.stdout.splitlines() == [
        "total:          3",
        "  default:      2",
        "  work:         1",
        "forgotten:      1",
        "outbox pending: 5",
        "dead letters:   0",
        f"schema version: {LATEST_VERSION}",
        f"database:       {db}",
        "sync:           local-only: no remote configured",
        f"semantic:       semantic recall off: {SEMANTIC_OFF}",
        "sharing:        owner (0 followers)",
    ]


def test_status_reports_ready_actors_and_the_counts(db: Path) -> None:
    """status shows the supervisor's view plus the count diagnostics."""
    store_id(db, "one")
    data = invoke_json(db, "status")
    assert isinstance(data, dict)
    sharing = data.pop("sharing")
    assert (sharing["role"], sharing["followers"]) == ("owner", 0)
    assert isinstance(sharing["owner_pid"], int)
    assert data == {
        "state": "ready",
        "database": str(db),
        "runtime": "threaded",
        "sync": {"state": "local-only"},
        "semantic": {"enabled": False, "state": "off", "reason": SEMANTIC_OFF},
        "actors": {"store": {"status": "READY", "restarts": 0, "reason": ""}},
        "counts": _counts(db, total=1, outbox=1),
    }
    human = invoke(db, "status").stdout.splitlines()
    assert human[:3] == [
        "state:          ready",
        "runtime:        threaded",
        "actor store:    READY (0 restarts)",
    ]
    assert "total:          1" in human


def test_migrate_reports_versions_and_backups(db: Path, tmp_path: Path) -> None:
    """migrate says from/to which schema it went and where the backups are."""
    fresh = invoke(db, "migrate")
    steps = ", ".join(str(step.version) for step in STEPS)
    assert fresh.stdout == (f"Migrated {db} from schema 0 to {LATEST_VERSION} (applied {steps})\n")
    assert invoke(db, "migrate").stdout == f"{db} is at schema {LATEST_VERSION}: nothing to do\n"

    old = db.with_name("old.db")
    migrate(str(old), steps=STEPS[:1], now=time.time)
    report = invoke_json(old, "migrate")
    assert isinstance(report, dict)
    assert (report["path"], report["from_version"], report["to_version"]) == (
        str(old),
        1,
        LATEST_VERSION,
    )
    assert report["applied"] == [step.version for step in STEPS[1:]]
    # Steps 2 and 3 rewrite data, so each was preceded by a backup of the file.
    assert len(report["backups"]) == 2
    assert all(Path(backup).is_file() for backup in report["backups"])


# -- the database file -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["count"], ["migrate"], ["serve"]])
def test_a_file_that_is_not_sqlite_exits_4_and_is_left_untouched(
    tmp_path: Path, command: list[str]
) -> None:
    """Garbage bytes: exit 4, one clear line on stderr, the file byte for byte the same."""
    path = tmp_path / "garbage.db"
    garbage = b"this is not a database\x00\xff" * 100
    path.write_bytes(garbage)
    result = run_script("--db", str(path), *command)
    assert result.returncode == EXIT_DATABASE
    assert result.stderr.startswith(f"error: {path} is not a SQLite database")
    assert result.stderr.endswith("The file was not modified.\n")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


@pytest.mark.parametrize("command", [["count"], ["migrate"], ["serve"], ["serve", "--http"]])
def test_a_database_newer_than_the_code_exits_4_naming_both_versions(
    tmp_path: Path, command: list[str]
) -> None:
    """user_version 99: exit 4, the message names 99 and ours, the file is unchanged."""
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    result = run_script("--db", str(path), *command)
    assert result.returncode == EXIT_DATABASE
    assert result.stderr == (
        f"error: database schema 99 in {path} is newer than this code supports "
        f"({LATEST_VERSION}); upgrade memory-actors. The file was not modified.\n"
    )
    assert result.stdout == ""
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.db"]


def test_the_env_var_names_the_database_and_logs_go_to_stderr(tmp_path: Path) -> None:
    """$MEMORY_ACTORS_DB selects the file; --db overrides it; -v logs only to stderr."""
    from_env = tmp_path / "from-env.db"
    stored = run_script(
        "-v", "store", "hello from the environment", env={DB_ENV_VAR: str(from_env)}
    )
    assert stored.returncode == 0, stored.stderr
    assert re.fullmatch(rf"Stored {ID} \(new\) in namespace default\n", stored.stdout)
    assert f"migrated {from_env} to schema {LATEST_VERSION}" in stored.stderr
    assert from_env.is_file()

    counted = run_script("count", "--json", env={DB_ENV_VAR: str(from_env)})
    assert json.loads(counted.stdout)["total"] == 1
    other = tmp_path / "other.db"
    overridden = run_script("--db", str(other), "count", "--json", env={DB_ENV_VAR: str(from_env)})
    assert json.loads(overridden.stdout)["total"] == 0
    assert json.loads(overridden.stdout)["database"] == str(other)


# -- the rest ----------------------------------------------------------------------------------


def test_mcp_config_prints_the_checked_in_plugin_config(db: Path) -> None:
    """``mcp-config`` prints exactly mcp/memory-mcp.json; with --db the file is pinned."""
    checked_in = (REPO / "mcp" / "memory-mcp.json").read_text()
    printed = invoke(None, "mcp-config")
    assert printed.exit_code == 0
    assert printed.stdout == checked_in
    assert json.loads(checked_in) == {
        "mcpServers": {"memory": {"command": "memory-actors", "args": ["serve"]}}
    }
    assert not (REPO / "mcp" / "__init__.py").exists()
    pinned = json.loads(invoke(db, "mcp-config").stdout)
    assert pinned["mcpServers"]["memory"]["args"] == ["--db", str(db), "serve"]


def test_version_and_help_are_available_everywhere() -> None:
    """--version names the version; the group and every command have --help."""
    version = invoke(None, "--version")
    assert version.stdout == f"memory-actors, version {__version__}\n"
    top = invoke(None, "--help")
    assert top.exit_code == 0
    commands = [
        "bench",
        "count",
        "forget",
        "get",
        "list",
        "mcp-config",
        "migrate",
        "recall",
        "serve",
        "status",
        "store",
        "ui",
    ]
    for name in commands:
        assert re.search(rf"^  {name} ", top.stdout, re.MULTILINE), name
        page = invoke(None, name, "--help")
        assert page.exit_code == 0, name
        assert page.stdout.startswith(f"Usage: memory-actors {name} ")
    assert "MEMORY_ACTORS_DB" in top.stdout
    # The CLI repeats the server's defaults (to avoid importing the SDK): keep them equal.
    serve_help = invoke(None, "serve", "--help").stdout
    assert f"[default: {DEFAULT_HOST}]" in serve_help
    assert f"[default: {DEFAULT_PORT};" in serve_help


def test_the_lazy_commands_summaries_match_their_help() -> None:
    """`memory-actors --help` lists bench, bench-sync and hub from a summary kept in actors.cli."""
    group = cli
    assert isinstance(group, _MemoryGroup)
    with click.Context(group) as ctx:
        for name, lazy in _MemoryGroup.LAZY.items():
            command = group.get_command(ctx, name)
            assert command is not None
            assert command.get_short_help_str(limit=1000) == lazy.summary, name


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidMemory("x"), EXIT_USAGE),
        (MemoryNotFound("x"), EXIT_NOT_FOUND),
        (SchemaTooNew("p", 9, 3), EXIT_DATABASE),
        (NotADatabase("x"), EXIT_DATABASE),
        (MigrationFailed("x"), EXIT_DATABASE),
        (StorageError("x"), EXIT_DATABASE),
        (Unavailable("x"), EXIT_UNAVAILABLE),
        (Overloaded("x"), EXIT_UNAVAILABLE),
        (AskTimeout("x"), EXIT_UNAVAILABLE),
        (StorageBusy("x"), EXIT_UNAVAILABLE),
        (SystemClosed("x"), EXIT_FAILURE),
        (MemoryActorsError("x"), EXIT_FAILURE),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_error_maps_to_its_documented_exit_code(error: Exception, code: int) -> None:
    """The exit-code table: usage 2, not found 3, database 4, unavailable 5, else 1."""
    assert exit_code_for(error) == code


# -- global options after the command ----------------------------------------------------------

HUB_ENV_VARS = ("MEMORY_ACTORS_REMOTE", "MEMORY_ACTORS_API_KEY", "MEMORY_ACTORS_API_KEY_FILE")


@attrs.frozen
class Opened:
    """What a command would open the memory system with."""

    db: str | None
    synchronous: str
    remote: str | None
    api_key: str | None


def opened_with(
    monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None
) -> Opened:
    """Run a command in process up to the point where it opens the memory system."""
    seen: list[Opened] = []

    def _serve_stdio(path: str | None, config: Config) -> NoReturn:
        record(path, config=config)

    def record(path: str | None, *, config: Config) -> NoReturn:
        remote = config.remote
        seen.append(
            Opened(
                path,
                config.synchronous,
                remote.url if remote else None,
                remote.api_key if remote else None,
            )
        )
        raise CommandError("stopped by the test before opening", EXIT_FAILURE)

    monkeypatch.setattr(MemorySystem, "open", record)
    # serve hands its settings to the server module, which opens the system first thing.
    monkeypatch.setattr(actors.server, "serve_stdio", _serve_stdio)
    unset: dict[str, str | None] = dict.fromkeys((DB_ENV_VAR, *HUB_ENV_VARS))
    result = CliRunner(env={**unset, **(env or {})}).invoke(
        cli, list(args), catch_exceptions=False, prog_name="memory-actors"
    )
    assert result.exit_code == EXIT_FAILURE, result.output
    [found] = seen
    return found


def test_global_options_work_after_the_command_as_before_it(tmp_path: Path) -> None:
    """``store x --db P`` writes to P, as ``--db P store x`` does; ``count --db P`` reads it."""
    db = Path(os.path.realpath(tmp_path)) / "after.db"
    runner = CliRunner(env={DB_ENV_VAR: None})
    stored = runner.invoke(
        cli, ["store", "written after", "--db", str(db), "--synchronous", "NORMAL"]
    )
    assert stored.exit_code == 0, stored.output
    before = runner.invoke(cli, ["--db", str(db), "count", "--json"])
    after = runner.invoke(cli, ["count", "--json", "--db", str(db)])
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(after.stdout)["total"] == 1
    assert json.loads(after.stdout)["database"] == str(db)


def test_after_the_command_wins_over_before_it_and_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Precedence: after the command > before it > the environment > the default."""
    a, b, env_db = (str(Path(os.path.realpath(tmp_path)) / n) for n in ("a.db", "b.db", "e.db"))
    assert opened_with(monkeypatch, "--db", a, "count", "--db", b).db == b
    assert opened_with(monkeypatch, "--db", a, "count", env={DB_ENV_VAR: env_db}).db == a
    assert opened_with(monkeypatch, "count", "--db", b, env={DB_ENV_VAR: env_db}).db == b
    assert opened_with(monkeypatch, "count", env={DB_ENV_VAR: env_db}).db == env_db
    assert opened_with(monkeypatch, "status").synchronous == "FULL"
    sync = opened_with(monkeypatch, "--synchronous", "NORMAL", "status", "--synchronous", "full")
    assert sync.synchronous == "FULL"
    assert opened_with(monkeypatch, "--synchronous", "NORMAL", "list").synchronous == "NORMAL"


def test_the_hub_options_follow_the_commands_that_sync(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--remote and the key follow ``sync status``; flags beat the environment, a key its file."""
    key_file = tmp_path / "hub.key"
    key_file.write_text("mah_from_file\n", encoding="utf-8")
    hub = ("--remote", "http://127.0.0.1:9")
    after = opened_with(monkeypatch, "sync", "status", *hub, "--api-key", "mah_after")
    assert (after.remote, after.api_key) == ("http://127.0.0.1:9", "mah_after")
    before = ("--remote", "http://before:1", "--api-key", "mah_before")
    both = opened_with(monkeypatch, *before, "sync", "status", *hub, "--api-key", "mah_after")
    assert (both.remote, both.api_key) == ("http://127.0.0.1:9", "mah_after")
    from_env = {"MEMORY_ACTORS_REMOTE": "http://env:1", "MEMORY_ACTORS_API_KEY": "mah_env"}
    assert opened_with(monkeypatch, "sync", "status", env=from_env).api_key == "mah_env"
    # An explicit key file beats a key in the environment, wherever the file is given.
    for args in (
        ["sync", "status", "--api-key-file", str(key_file)],
        ["--api-key-file", str(key_file), "sync", "status"],
    ):
        assert opened_with(monkeypatch, *args, env=from_env).api_key == "mah_from_file"
    # On the command line, the key beats the key file, whichever side each is on.
    file_after = ("sync", "status", "--api-key-file", str(key_file))
    mixed = opened_with(monkeypatch, *hub, "--api-key", "mah_flag", *file_after)
    assert mixed.api_key == "mah_flag"
    serve = ("serve", "--db", str(tmp_path / "s.db"), *hub, "--api-key-file", str(key_file))
    served = opened_with(monkeypatch, *serve)
    assert (served.remote, served.api_key) == ("http://127.0.0.1:9", "mah_from_file")


def test_local_commands_refuse_hub_options_after_them(db: Path) -> None:
    """After ``store`` a --remote would do nothing, so there it is a usage error."""
    result = invoke(db, "store", "x", "--remote", "http://127.0.0.1:9")
    assert result.exit_code == EXIT_USAGE
    assert "No such option '--remote'" in result.stderr


def test_verbose_after_the_command_counts_with_the_one_before(tmp_path: Path) -> None:
    """``store x -v`` logs info to stderr; ``-v store x -v`` is -vv (debug)."""
    db = tmp_path / "v.db"
    info = run_script("store", "hello", "--db", str(db), "-v")
    assert info.returncode == 0, info.stderr
    assert f"migrated {db} to schema {LATEST_VERSION}" in info.stderr
    assert " DEBUG " not in info.stderr
    debug = run_script("-v", "count", "--db", str(db), "-v")
    assert debug.returncode == 0, debug.stderr
    assert " DEBUG " in debug.stderr
    assert run_script("count", "--db", str(db)).stderr == ""


def test_mcp_config_pins_a_db_given_after_it(db: Path) -> None:
    """``mcp-config --db P`` pins P, like ``--db P mcp-config``."""
    pinned = json.loads(invoke(None, "mcp-config", "--db", str(db)).stdout)
    assert pinned["mcpServers"]["memory"]["args"] == ["--db", str(db), "serve"]


# -- serve --db over a real stdio MCP client ---------------------------------------------------

#: Makes ``import numpy`` fail in the process it runs in. An environment without
#: NumPy cannot be made here (the suite's own venv has the hub extra), so it is
#: simulated: a meta-path finder ahead of the real ones refuses the module, which is
#: what importing it, or importlib.util.find_spec, meets when it is not installed.
NO_NUMPY = """
import sys
class _NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoNumpy())
from actors.cli import main
main()
"""


def without_numpy(*args: str) -> list[str]:
    """A command line that runs ``memory-actors ARGS`` with NumPy unimportable."""
    return [sys.executable, "-c", NO_NUMPY, *args]


async def _store_and_count(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with Client(stdio_client(params)) as client:
        stored = await client.call_tool("memory_store", {"content": "Parking closes at eleven"})
        assert not stored.is_error, stored
        counted = await client.call_tool("memory_count", {})
        assert counted.structured_content is not None
        return counted.structured_content


@pytest.mark.parametrize(
    "launch",
    [
        pytest.param(lambda db: [console_script(), "serve", "--db", db], id="serve-then-db"),
        pytest.param(lambda db: [console_script(), "--db", db, "serve"], id="db-then-serve"),
        pytest.param(lambda db: without_numpy("serve", "--db", db), id="serve-without-numpy"),
    ],
)
def test_serve_takes_db_on_either_side_over_real_stdio(
    tmp_path: Path, launch: Callable[[str], list[str]]
) -> None:
    """An MCP client's ``serve --db P`` and ``--db P serve`` store in P, not $MEMORY_ACTORS_DB."""
    db = str(Path(os.path.realpath(tmp_path)) / "chosen.db")
    decoy = tmp_path / "from-env.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMORY_ACTORS_")}
    env[DB_ENV_VAR] = str(decoy)

    async def scenario() -> dict[str, Any]:
        with anyio.fail_after(SUBPROCESS_DEADLINE):
            return await _store_and_count(launch(db), env)

    counts = anyio.run(scenario)
    assert (counts["database"], counts["total"]) == (db, 1)
    assert not decoy.exists()


def test_serve_with_no_configuration_on_a_fresh_home_makes_its_file_and_owns_it(
    tmp_path: Path,
) -> None:
    """The README's second command on a new machine: no data folder yet, no setting at all.

    The folder is made before the owner lock is taken beside the file; a folder
    not made yet once sent the first ``serve`` to direct mode, where it crashed.
    """
    home = Path(os.path.realpath(tmp_path)) / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEMORY_ACTORS_", "XDG_DATA_"))
    }
    env["HOME"] = str(home)

    async def scenario() -> dict[str, Any]:
        with anyio.fail_after(SUBPROCESS_DEADLINE):
            return await _store_and_count([console_script(), "serve"], env)

    counts = anyio.run(scenario)
    expected = home / ".local" / "share" / "memory-actors" / "memory.db"
    assert (counts["database"], counts["total"]) == (str(expected), 1)
    assert counts["sharing"].startswith("owner"), counts["sharing"]


# -- the hub's extra ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["hub", "keys", "list"], id="hub-keys"),
        pytest.param(["hub", "serve", "--port", "1"], id="hub-serve"),
        pytest.param(["bench-sync", "--resync", "1"], id="bench-sync"),
    ],
)
def test_the_hub_without_its_extra_exits_1_naming_the_install_command(
    tmp_path: Path, args: list[str]
) -> None:
    """No NumPy: one line that names memory-actors[hub] and how to install it; nothing created."""
    result = subprocess.run(
        without_numpy(*args),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=SUBPROCESS_DEADLINE,
        check=False,
    )
    assert result.returncode == EXIT_FAILURE
    assert result.stderr == (
        "Error: the hub needs the memory-actors[hub] extra (numpy is not installed): "
        'python -m pip install "memory-actors[hub]"\n'
    )
    assert list(tmp_path.iterdir()) == []


def test_the_hubs_help_answers_without_its_extra() -> None:
    """--help tells what the hub is even where it cannot run."""
    for args in (["hub", "--help"], ["hub", "serve", "--help"], ["--help"]):
        result = subprocess.run(
            without_numpy(*args), capture_output=True, text=True, timeout=SUBPROCESS_DEADLINE
        )
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_hub_serve_under_memory_actors_logs_at_its_log_level(tmp_path: Path) -> None:
    """``memory-actors hub serve --log-level info`` shows the hub's own info lines on stderr."""
    port = free_port()
    command = [console_script(), "hub", "serve", "--db", str(tmp_path / "hub.db")]
    options = ["--port", str(port), "--embedder", "none", "--log-level", "info"]
    with subprocess.Popen(
        [*command, *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + SUBPROCESS_DEADLINE
            while not _healthy(f"http://127.0.0.1:{port}/healthz"):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the hub did not serve in time"
                time.sleep(0.05)  # a poll interval of a bounded wait for another process
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=SUBPROCESS_DEADLINE)
    assert proc.returncode == 0, stderr
    assert "INFO actors.hub.service: hub store ready" in stderr, stderr


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_store_get_and_forget_by_key(tmp_path: Path) -> None:
    """--key upserts in place; get and forget take --key and --namespace instead of an id."""
    db = tmp_path / "memory.db"
    first = invoke(db, "store", "tabs", "--key", "indent", "-n", "style")
    assert first.exit_code == 0, first.stderr
    assert "(key 'indent', new) in namespace style" in first.stdout
    second = invoke_json(db, "store", "spaces", "-k", "indent", "-n", "style")
    assert isinstance(second, dict)
    assert (second["key"], second["replaced"]) == ("indent", True)
    shown = invoke(db, "get", "--key", "indent", "--namespace", "style")
    assert shown.exit_code == 0, shown.stderr
    assert "key:       indent" in shown.stdout
    assert shown.stdout.endswith("\nspaces\n")
    gone = invoke(db, "forget", "-k", "indent", "-n", "style")
    assert gone.stdout == f"Forgot {second['id']}\n"
    missing = invoke(db, "get", "-k", "indent", "-n", "style")
    assert missing.exit_code != 0
    assert "(key 'indent' in namespace 'style') was forgotten" in missing.stderr
    neither = invoke(db, "get")
    assert "name the memory: give its id, or a key" in neither.stderr
