"""Export and import: the JSONL format, exact round trips, idempotent merges, bad input.

Real SQLite files throughout; the CLI paths run the installed ``memory-actors``
script as a subprocess, the rest goes through the library. A real hub
process checks that imported memories are pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import HubProcess, fast_remote, hub_digest, memory, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import AsyncMemorySystem, MemorySystem
from actors.errors import InvalidImport, InvalidMemory
from actors.model import keyed_memory_id
from actors.portable import EXPORT_FORMAT, EXPORT_VERSION
from actors.system import Config

SCRIPT = str(Path(sys.executable).parent / "memory-actors")
DEADLINE = 60.0


def cli(db: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The installed console script on ``db``, as a user runs it."""
    return subprocess.run(
        [SCRIPT, "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def header(version: int = EXPORT_VERSION) -> bytes:
    return json.dumps({"format": EXPORT_FORMAT, "version": version}).encode() + b"\n"


def line(text: str, **overrides: Any) -> bytes:
    """An export line for a memory of ``text`` (``overrides`` replace fields)."""
    data = memory(text, namespace="imported").to_json()
    data["key"] = None
    data.update(overrides)
    return json.dumps(data, ensure_ascii=False).encode() + b"\n"


def seed(system: MemorySystem) -> None:
    """A bit of everything: namespaces, tags, metadata, a key, Unicode, a tombstone."""
    system.store("Deploys happen on Tuesdays", tags=["ops"], metadata={"team": "infra"})
    system.store("Prefers dark mode", namespace="users/alice/prefs", tags=["ui", "pref"])
    system.store("Café au lait, no sugar ☕", namespace="users/alice", metadata={"é": [1, 2.5]})
    system.store("The theme is solarized", namespace="users/bob", key="theme", tags=["ui"])
    gone = system.store("A secret to forget", namespace="users/alice")
    system.forget(gone.id)
    for n in range(25):
        system.store(f"note number {n}", namespace="bulk", tags=[f"n{n % 3}"])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    db = tmp_path / "source.db"
    with MemorySystem.open(db) as system:
        seed(system)
    return db


# -- the format and the round trip ----------------------------------------------------------


def test_an_export_is_a_header_then_one_memory_per_line_in_id_order(
    source: Path, tmp_path: Path
) -> None:
    """Line 1 names the format and version; then every live memory, sorted by id."""
    out = tmp_path / "out.jsonl"
    with MemorySystem.open(source) as system:
        report = system.export_memories(out)
        total = system.count().total
    first, *rest = lines_of(out)
    head = json.loads(first)
    assert head["format"] == EXPORT_FORMAT
    assert head["version"] == EXPORT_VERSION
    assert head["filters"]["include_deleted"] is False
    records = [json.loads(raw) for raw in rest]
    assert report.memories == len(records) == total == 29
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert list(records[0]) == [
        "id",
        "namespace",
        "key",
        "content",
        "content_hash",
        "tags",
        "metadata",
        "created_at",
        "updated_at",
        "version",
        "origin",
        "deleted",
    ]
    keyed = next(r for r in records if r["key"] == "theme")
    assert keyed["id"] == keyed_memory_id("users/bob", "theme")
    assert "Café au lait, no sugar ☕".encode() in out.read_bytes()  # UTF-8, not \\u escapes


def test_export_then_import_into_an_empty_file_then_export_gives_the_same_lines(
    source: Path, tmp_path: Path
) -> None:
    """The round trip is exact, tombstones included: every memory line byte for byte."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with MemorySystem.open(source) as system:
        system.export_memories(first, include_deleted=True)
    with MemorySystem.open(tmp_path / "copy.db") as system:
        report = system.import_memories(first)
        system.export_memories(second, include_deleted=True)
    assert report.inserted == report.read == 30
    assert report.skipped == 0
    assert lines_of(first)[1:] == lines_of(second)[1:]
    assert b'"deleted":true' in first.read_bytes()


def test_reimporting_changes_nothing_no_new_versions_no_outbox_rows(
    source: Path, tmp_path: Path
) -> None:
    """Idempotent: the second import reports every line unchanged and writes nothing."""
    dump, again = tmp_path / "dump.jsonl", tmp_path / "again.jsonl"
    with MemorySystem.open(source) as system:
        system.export_memories(dump, include_deleted=True)
    with MemorySystem.open(tmp_path / "copy.db") as system:
        system.import_memories(dump)
        before = system.count()
        second = system.import_memories(dump)
        after = system.count()
        system.export_memories(again, include_deleted=True)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 30)
    assert after.outbox_pending == before.outbox_pending
    assert lines_of(again)[1:] == lines_of(dump)[1:]


def test_imported_memories_are_queued_for_the_hub_like_local_writes(
    source: Path, tmp_path: Path
) -> None:
    """Every memory an import changes gets one outbox row, tombstones as deletes."""
    dump = tmp_path / "dump.jsonl"
    with MemorySystem.open(source) as system:
        system.export_memories(dump, include_deleted=True)
    with MemorySystem.open(tmp_path / "copy.db") as system:
        system.import_memories(dump)
        counts = system.count()
        forgotten = [m for m in _export(system, include_deleted=True) if m["deleted"]]
    assert counts.outbox_pending == 30
    assert len(forgotten) == 1
    assert counts.forgotten == 1


def test_a_hub_learns_the_imported_memories(source: Path, tmp_path: Path) -> None:
    """Imported into a syncing replica, the memories reach a real hub process."""
    dump = tmp_path / "dump.jsonl"
    with MemorySystem.open(source) as system:
        system.export_memories(dump, include_deleted=True)
        expected = {m["id"] for m in _export(system, include_deleted=True)}
    with HubProcess.running(tmp_path / "hub.db") as hub:
        key = hub.add_key("importer")
        config = Config(remote=fast_remote(hub.url, key))
        with MemorySystem.open(tmp_path / "synced.db", config=config) as system:
            system.import_memories(dump)
            client = hub.client(key)
            try:
                wait_until(
                    lambda: {e.id for e in hub_digest(client)} >= expected,
                    "the hub holds every imported memory",
                    describe=lambda: len(hub_digest(client)),
                )
                wait_until(lambda: system.count().outbox_pending == 0, "the outbox drains")
                deleted = {e.id for e in hub_digest(client) if e.deleted}
            finally:
                client.close()
    assert len(deleted) == 1


def _export(system: MemorySystem, **filters: Any) -> list[dict[str, Any]]:
    out = io.BytesIO()
    system.export_memories(out, **filters)
    return [json.loads(raw) for raw in out.getvalue().splitlines()[1:]]


# -- filters ------------------------------------------------------------------------------


def test_export_filters_by_namespace_prefix_tags_since_and_tombstones(source: Path) -> None:
    """Prefix by whole segments, all of the tags, updated since, tombstones only when asked."""
    with MemorySystem.open(source) as system:
        alice = _export(system, namespace_prefix="users/alice")
        assert {m["namespace"] for m in alice} == {"users/alice", "users/alice/prefs"}
        assert len(alice) == 2
        assert len(_export(system, namespace_prefix="users/alice", include_deleted=True)) == 3
        ui = _export(system, tags=["ui"])
        assert {m["content"] for m in ui} == {"Prefers dark mode", "The theme is solarized"}
        assert [m["content"] for m in _export(system, tags=["ui", "pref"])] == ["Prefers dark mode"]
        everything = _export(system, include_deleted=True)
        cut = sorted(m["updated_at"] for m in everything)[-5]
        recent = _export(system, since=cut, include_deleted=True)
        assert len(recent) == 5
        assert all(m["updated_at"] >= cut for m in recent)
        assert _export(system, since="2999-01-01") == []
        assert len(_export(system, since="2000-01-01T00:00:00Z")) == 29
        with pytest.raises(InvalidMemory, match="since"):
            _export(system, since="last tuesday")
        with pytest.raises(InvalidMemory, match="namespace_prefix"):
            _export(system, namespace_prefix="users/")


# -- merging ------------------------------------------------------------------------------


def test_import_merges_by_id_the_newer_version_wins(tmp_path: Path) -> None:
    """Last writer wins by (version, origin), in either order, even within one file."""
    memory_id = "01900000-0000-7000-8000-000000000001"
    old = line("old words", id=memory_id, version="0018bcfe5680000000a")
    new = line("new words", id=memory_id, version="0018bcfe5680000000b")
    with MemorySystem.open(tmp_path / "m.db") as system:
        report = system.import_memories(io.BytesIO(header() + new + old))
        assert system.get(memory_id).content == "new words"
        assert (report.inserted, report.unchanged) == (1, 1)
        report = system.import_memories(io.BytesIO(header() + old))
        assert report.unchanged == 1
        assert system.get(memory_id).content == "new words"


def test_import_merges_by_content_within_a_namespace_tags_united(tmp_path: Path) -> None:
    """Content already here under another id becomes the imported memory, with both tags."""
    with MemorySystem.open(tmp_path / "m.db") as system:
        mine = system.store("shared words", namespace="imported", tags=["local"])
        theirs = "01900000-0000-7000-8000-0000000000aa"
        report = system.import_memories(
            io.BytesIO(header() + line("shared words", id=theirs, tags=["remote"]))
        )
        assert report.updated == 1
        assert report.inserted == 0
        assert system.get(theirs).tags == ("local", "remote")
        with pytest.raises(KeyError):
            system.get(mine.id)
        assert system.count(namespace="imported").total == 1
        again = system.import_memories(
            io.BytesIO(header() + line("shared words", id=theirs, tags=["remote"]))
        )
        assert again.unchanged == 1


def test_import_through_the_async_facade(source: Path, tmp_path: Path) -> None:
    """AsyncMemorySystem exports and imports too, off the event loop."""
    dump = tmp_path / "dump.jsonl"

    async def main() -> tuple[int, int]:
        async with AsyncMemorySystem.open(source) as memory:
            exported = await memory.export_memories(dump, namespace_prefix="bulk")
        async with AsyncMemorySystem.open(tmp_path / "copy.db") as memory:
            imported = await memory.import_memories(dump)
        return exported.memories, imported.inserted

    assert asyncio.run(main()) == (25, 25)


# -- bad input ------------------------------------------------------------------------------

GOOD = [line(f"good line {n}") for n in range(5)]
KEYED = line("k", namespace="ns", key="theme", id="01900000-0000-7000-8000-000000000002")
BAD_LINES = {
    "malformed": (b'{"id": "01900000-0000-7000-8000-00000000000', "not JSON"),
    "wrong type": (line("x", tags="ops"), "tags must be a list of strings"),
    "array": (b"[1, 2]\n", "must be a JSON object, not an array"),
    "invalid id": (line("x", id="not-a-uuid"), "id: 'not-a-uuid' is not a memory id"),
    "key": (KEYED, "id: does not match key"),
    "utf-8": (b'{"content": "caf\xe9"}\n', "not valid UTF-8 (byte 0xe9 at column 17)"),
    "hash": (line("x", content_hash="0" * 64), "content_hash: does not match content"),
    "nan": (line("x").replace(b'"created_at": 1700000000.0', b'"created_at": NaN'), "NaN"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_a_bad_line_stops_the_import_with_its_number_and_nothing_from_it(
    kind: str, tmp_path: Path
) -> None:
    """Lines 2-4 are committed (across batches), line 5 is named, nothing after it applies."""
    bad, reason = BAD_LINES[kind]
    data = header() + b"".join(GOOD[:3]) + bad + b"".join(GOOD[3:])
    with MemorySystem.open(tmp_path / "m.db") as system:
        with pytest.raises(InvalidImport) as caught:
            system.import_memories(io.BytesIO(data), batch_size=2)
        assert caught.value.line == 5
        assert reason in str(caught.value)
        assert "line 5:" in str(caught.value)
        assert "lines 2-4 were committed" in str(caught.value)
        assert caught.value.report.inserted == 3  # type: ignore[attr-defined]
        stored = {m["content"] for m in _export(system)}
    assert stored == {"good line 0", "good line 1", "good line 2"}


def test_a_newer_format_version_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    """Version 2 is a file this code cannot read: line 1, nothing imported, exit 2."""
    dump = tmp_path / "future.jsonl"
    dump.write_bytes(header(version=EXPORT_VERSION + 1) + GOOD[0])
    result = cli(tmp_path / "m.db", "import", str(dump))
    assert result.returncode == 2
    assert result.stderr.decode().startswith(
        "error: line 1: format version 2 is newer than this memory-actors reads (1); "
        "upgrade memory-actors; nothing was imported"
    )
    assert cli(tmp_path / "m.db", "count", "--json").stdout.count(b'"total": 0') == 1


def test_a_file_that_is_not_an_export_is_refused_on_line_1(tmp_path: Path) -> None:
    """No header, no import: a plain JSONL file is not mistaken for an export."""
    with MemorySystem.open(tmp_path / "m.db") as system:
        with pytest.raises(InvalidImport, match="line 1: not an export header"):
            system.import_memories(io.BytesIO(GOOD[0] + GOOD[1]))
        with pytest.raises(InvalidImport, match="line 1: the file is empty"):
            system.import_memories(io.BytesIO(b""))


def test_cli_import_stops_at_a_bad_line_with_exit_2_and_a_json_report(tmp_path: Path) -> None:
    """The installed command: exit 2, the line on stderr, the partial report with --json."""
    dump = tmp_path / "bad.jsonl"
    dump.write_bytes(header() + GOOD[0] + BAD_LINES["key"][0] + GOOD[1])
    result = cli(tmp_path / "m.db", "import", str(dump), "--json")
    assert result.returncode == 2
    assert b"error: line 3: id: does not match key" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["line"] == 3
    assert summary["inserted"] == 1
    assert summary["last_line"] == 2


def test_cli_skip_invalid_goes_on_and_reports_each_skipped_line(tmp_path: Path) -> None:
    """--skip-invalid imports every good line and lists the bad ones with reasons."""
    dump = tmp_path / "mixed.jsonl"
    dump.write_bytes(
        header()
        + GOOD[0]
        + BAD_LINES["utf-8"][0]
        + GOOD[1]
        + b"\n"
        + BAD_LINES["invalid id"][0]
        + GOOD[2]
    )
    result = cli(tmp_path / "m.db", "import", str(dump), "--skip-invalid", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"], summary["skipped"]) == (5, 3, 2)
    assert [s["line"] for s in summary["skipped_lines"]] == [3, 6]
    assert "not valid UTF-8" in summary["skipped_lines"][0]["reason"]
    human = cli(tmp_path / "other.db", "import", str(dump), "--skip-invalid")
    assert human.returncode == 0
    assert b"skipped line 6: id: 'not-a-uuid' is not a memory id" in human.stderr
    assert b"read 5: 3 inserted, 0 updated, 0 unchanged, 2 skipped" in human.stdout


def test_cli_export_to_stdout_pipes_into_import_from_stdin(source: Path, tmp_path: Path) -> None:
    """`export -` | `import -` between two files, as real processes; the summary on stderr."""
    exported = cli(source, "export", "-", "--include-deleted")
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.strip() == b"Exported 30 memories (1 forgotten) to stdout"
    imported = cli(tmp_path / "copy.db", "import", "-", "--json", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["inserted"] == 30
    again = cli(tmp_path / "copy.db", "export", "--include-deleted")
    assert again.stdout.splitlines()[1:] == exported.stdout.splitlines()[1:]


def test_cli_export_to_a_file_prints_a_summary(source: Path, tmp_path: Path) -> None:
    """With a PATH the summary goes to stdout; --json makes it a document."""
    out = tmp_path / "alice.jsonl"
    result = cli(source, "export", str(out), "--namespace-prefix", "users/alice", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["memories"] == 2
    assert summary["path"] == str(out)
    assert len(lines_of(out)) == 3


# -- the round trip as a property ---------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda s: s.strip()
)
_entries = st.lists(
    st.tuples(
        _text,
        st.sampled_from(["default", "a", "a/b", "users/x.y"]),
        st.lists(st.from_regex(r"[a-z][a-z0-9 ]{0,8}", fullmatch=True), max_size=3),
        st.dictionaries(
            st.text(max_size=5),
            st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), _text),
        ),
        st.one_of(st.none(), _text),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_entries)
def test_any_memories_round_trip_byte_for_byte(
    entries: list[tuple[str, str, list[str], dict[str, Any], str | None, bool]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Whatever was stored (keys, Unicode, metadata, forgets), export → import → export is exact."""
    folder = tmp_path_factory.mktemp("prop")
    first, second = io.BytesIO(), io.BytesIO()
    with MemorySystem.open(folder / "a.db") as system:
        for content, namespace, tags, metadata, key, forget in entries:
            receipt = system.store(
                content, namespace=namespace, tags=tags, metadata=metadata, key=key
            )
            if forget:
                system.forget(receipt.id)
        system.export_memories(first, include_deleted=True)
    with MemorySystem.open(folder / "b.db") as system:
        system.import_memories(io.BytesIO(first.getvalue()))
        system.export_memories(second, include_deleted=True)
    assert first.getvalue().splitlines()[1:] == second.getvalue().splitlines()[1:]


def test_an_imports_result_does_not_depend_on_its_batch_size(tmp_path: Path) -> None:
    """Twins, repeated ids, older and newer versions, tombstones: one batch or one per line."""
    local_id = "01900000-0000-7000-8000-0000000000b1"
    later = "0018bcfe5680000000f"
    lines = [
        line("twin words", id="01900000-0000-7000-8000-0000000000c1", tags=["a"]),
        line("twin words", id=local_id, tags=["b"]),  # the id the twin replaced, older
        line("fresh words", id="01900000-0000-7000-8000-0000000000c2"),
        line("fresh words", id="01900000-0000-7000-8000-0000000000c2", version=later),
        line("gone", id="01900000-0000-7000-8000-0000000000c3", deleted=True, content="", tags=[]),
        line("newer words", id=local_id, version=later, tags=["c"]),
        line("twin words", id="01900000-0000-7000-8000-0000000000c4", version=later),
    ]
    seed_line = line("twin words", id=local_id, version="0018bcfe5680000000a", tags=["s"])
    exports, queues = [], []
    for size in (2000, 1):
        with MemorySystem.open(tmp_path / f"b{size}.db") as system:
            system.import_memories(io.BytesIO(header() + seed_line))
            system.import_memories(io.BytesIO(header() + b"".join(lines)), batch_size=size)
            exports.append(_export(system, include_deleted=True))
        queues.append(_queued(tmp_path / f"b{size}.db"))
    for record in exports[0] + exports[1]:
        if record["origin"] != "origin-a":  # a tag union: a new local write, stamped now
            record.update(origin="local", version="local", updated_at=0)
    assert exports[0] == exports[1]
    assert [r["id"][-2:] for r in exports[0]] == ["c2", "c3", "c4"]  # the twins became one
    # Each memory's sync state and its last outbox row: c2 inserted, then replaced by a
    # later line of the same batch, is queued once in its final state, not its first.
    assert queues[0] == queues[1]
    assert queues[0]["01900000-0000-7000-8000-0000000000c2"] == ("committed", "upsert", later)
    assert queues[0]["01900000-0000-7000-8000-0000000000c3"][:2] == ("committed", "delete")


def _queued(db: Path) -> dict[str, tuple[str, str, str]]:
    """Per memory: its sync state and the op and version of its last outbox row."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT m.id, m.sync_state, o.op, o.version, m.origin FROM memories m "
            "JOIN outbox o ON o.memory_id = m.id ORDER BY o.seq"
        ).fetchall()
    # A tag union is a new local version, stamped now: its version differs run to run.
    return {
        memory_id: (state, op, version if origin == "origin-a" else "local")
        for memory_id, state, op, version, origin in rows
    }
