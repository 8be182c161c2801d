"""Backup and restore: consistent snapshots under real writers, and restores that refuse.

A writer runs as a real OS process (``tests/backup_workers.py``) storing
``seq 0``, ``seq 1``, ... one acknowledged store at a time, so any consistent
snapshot of its file holds exactly a prefix of that sequence. The file that
``restore`` must not replace is held by a real stdio MCP server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from export_fixtures import write_synthetic_export
from hub_fixtures import wait_until
from test_mcp_stdio import INITIALIZE

from actors import Config, MemorySystem
from actors.backup import inspect_copy, restore
from actors.errors import DatabaseInUse, InvalidMemory, NotADatabase, SchemaTooNew
from actors.migrations import LATEST_VERSION

SCRIPT = str(Path(sys.executable).parent / "memory-actors")
WORKER = str(Path(__file__).with_name("backup_workers.py"))
DEADLINE = 60.0
#: Memories loaded before a backup, so that the copy takes many steps.
PRELOAD = 20_000


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def preloaded(db: Path, count: int = PRELOAD) -> Path:
    dump = db.with_suffix(".jsonl")
    with dump.open("wb") as out:
        write_synthetic_export(out, count)
    with MemorySystem.open(db) as system:
        assert system.import_memories(dump).inserted == count
    return db


def writer_seqs(db: Path) -> list[int]:
    """The ``seq N`` numbers stored in a file (a backup), sorted."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT content FROM memories WHERE namespace = 'writer' AND deleted = 0"
        ).fetchall()
    finally:
        conn.close()
    return sorted(int(content.split()[1]) for (content,) in rows)


class Writer:
    """The write-loop worker: started, watched through its status file, stopped."""

    def __init__(self, db: Path) -> None:
        self.status = db.with_name("writer.status")
        self.stop_file = db.with_name("writer.stop")
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, "write-loop", str(db), str(self.status), str(self.stop_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stored(self) -> int:
        try:
            return int(self.status.read_text(encoding="utf-8") or 0)
        except FileNotFoundError:
            return 0

    def finish(self) -> int:
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=DEADLINE)
        assert self.proc.returncode == 0, err
        stored: int = json.loads(out)["stored"]
        return stored


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    db = preloaded(tmp_path / "live.db")
    proc = Writer(db)
    try:
        wait_until(lambda: proc.stored() >= 5, "the writer is storing")
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.stop_file.touch()
            try:
                proc.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.proc.kill()


# -- backup -----------------------------------------------------------------------------------


def test_a_backup_taken_while_another_process_writes_holds_a_consistent_prefix(
    writer: Writer, tmp_path: Path
) -> None:
    """One page per step: thousands of steps, the writer commits meanwhile, no restart."""
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    # The writer owns the file; a backup runs with this process's own store (as the CLI's).
    with MemorySystem.open(live, config=Config(sharing="direct")) as system:
        before = writer.stored()
        report = system.backup(copy, pages_per_step=1)
        after = writer.stored()
    total = writer.finish()
    seqs = writer_seqs(copy)
    assert seqs == list(range(len(seqs))), "the copy holds a prefix of the writer's stores"
    assert before <= len(seqs) <= after
    assert after > before, "the writer was not blocked while the backup ran"
    assert report.pages > 1000
    assert report.facts.integrity == "ok"
    assert report.facts.memories == PRELOAD + len(seqs)
    assert total >= after
    with MemorySystem.open(copy) as system:
        assert system.count().total == PRELOAD + len(seqs)


def test_cli_backup_while_a_process_writes_reports_integrity_and_count(
    writer: Writer, tmp_path: Path
) -> None:
    """`memory-actors backup PATH` from another process: integrity ok, the memories counted."""
    live, copy = tmp_path / "live.db", tmp_path / "nightly.db"
    result = cli(live, "backup", str(copy), "--json")
    writer.finish()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    seqs = writer_seqs(copy)
    assert seqs == list(range(len(seqs)))
    assert report["integrity"] == "ok"
    assert report["memories"] == PRELOAD + len(seqs)
    assert report["path"] == str(copy)
    assert inspect_copy(str(copy)).memories == report["memories"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    human = cli(live, "backup", str(copy))
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith(f"Backed up {live} to {copy}: ")
    assert "integrity ok" in human.stdout


def test_a_backup_refuses_to_overwrite_the_database_itself(tmp_path: Path) -> None:
    """Backing a file up onto itself would destroy it: refused, exit 2."""
    db = tmp_path / "m.db"
    with MemorySystem.open(db) as system:
        system.store("keep me")
        with pytest.raises(InvalidMemory, match="the database itself"):
            system.backup(db)
    result = cli(db, "backup", str(db))
    assert result.returncode == 2
    assert "the database itself" in result.stderr


# -- restore ------------------------------------------------------------------------------------


@pytest.fixture
def backup_file(tmp_path: Path) -> Path:
    db, copy = tmp_path / "origin.db", tmp_path / "backup.db"
    with MemorySystem.open(db) as system:
        for n in range(10):
            system.store(f"backed up {n}", tags=["b"])
        system.backup(copy)
    return copy


def _count(db: Path) -> int:
    return inspect_copy(str(db)).memories


def test_restore_into_a_new_path_needs_no_force_and_the_file_opens(
    backup_file: Path, tmp_path: Path
) -> None:
    """A restored file opens, migrates nothing, and holds the backup's memories."""
    target = tmp_path / "new" / "memory.db"
    result = cli(target, "restore", str(backup_file), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["memories"] == 10
    assert report["replaced"] is False
    with MemorySystem.open(target) as system:
        assert system.count().total == 10
        assert system.migration.applied == ()


def test_restore_refuses_to_replace_an_existing_file_without_force(
    backup_file: Path, tmp_path: Path
) -> None:
    """Exit 2 and the file untouched; --force replaces it atomically."""
    target = tmp_path / "current.db"
    with MemorySystem.open(target) as system:
        system.store("only in the current file")
    refused = cli(target, "restore", str(backup_file))
    assert refused.returncode == 2
    assert "exists" in refused.stderr
    assert "--force" in refused.stderr
    assert _count(target) == 1
    done = cli(target, "restore", str(backup_file), "--force")
    assert done.returncode == 0, done.stderr
    assert "the previous file was replaced" in done.stdout
    assert _count(target) == 10
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]


def test_restore_refuses_a_file_a_live_stdio_server_holds(
    backup_file: Path, tmp_path: Path
) -> None:
    """A real `memory-actors serve` has the file open: exit 5, even with --force."""
    target = tmp_path / "served.db"
    with MemorySystem.open(target) as system:
        system.store("served memory")
    with subprocess.Popen(
        [SCRIPT, "--db", str(target), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            _initialize(server)
            held = cli(target, "restore", str(backup_file), "--force")
            assert held.returncode == 5, held.stderr
            assert "is open in another process" in held.stderr
            assert _count(target) == 1
            with pytest.raises(DatabaseInUse):
                restore(str(backup_file), str(target), force=True)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=DEADLINE)
    assert server.returncode == 0
    done = cli(target, "restore", str(backup_file), "--force")
    assert done.returncode == 0, done.stderr
    assert _count(target) == 10


def _initialize(server: subprocess.Popen[bytes]) -> None:
    """The MCP handshake's first request: answered only once the server's store is open."""
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
    server.stdin.flush()
    answer = json.loads(server.stdout.readline())
    assert answer["id"] == 1
    assert "result" in answer


def test_restore_refuses_a_damaged_backup_and_leaves_the_target(
    backup_file: Path, tmp_path: Path
) -> None:
    """integrity_check fails: exit 4, the target as it was, no scratch file left."""
    target = tmp_path / "current.db"
    with MemorySystem.open(target) as system:
        system.store("still here")
    damaged = tmp_path / "damaged.db"
    data = bytearray(backup_file.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every b-tree page header but the first's
        data[offset : offset + 16] = b"\xa5" * 16
    damaged.write_bytes(bytes(data))
    result = cli(target, "restore", str(damaged), "--force")
    assert result.returncode == 4, result.stderr
    assert "integrity" in result.stderr or "malformed" in result.stderr
    assert _count(target) == 1
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n", encoding="utf-8")
    with pytest.raises(NotADatabase):
        restore(str(not_sqlite), str(target), force=True)
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]


def test_restore_refuses_a_backup_from_a_newer_version(backup_file: Path, tmp_path: Path) -> None:
    """A schema newer than the code: SchemaTooNew, exit 4, nothing replaced."""
    conn = sqlite3.connect(backup_file)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    target = tmp_path / "fresh.db"
    with pytest.raises(SchemaTooNew):
        restore(str(backup_file), str(target))
    assert not target.exists()
    result = cli(target, "restore", str(backup_file))
    assert result.returncode == 4
    assert "newer than this code" in result.stderr


def test_a_restored_file_starts_without_the_backed_up_sync_lease(
    backup_file: Path, tmp_path: Path
) -> None:
    """The lease row of the process that made the backup is not restored with it."""
    conn = sqlite3.connect(backup_file)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('sync_lease_holder', 'old'), "
        f"('sync_lease_expires', '{time.monotonic() + 30!r}')"
    )
    conn.commit()
    conn.close()
    target = tmp_path / "restored.db"
    restore(str(backup_file), str(target))
    conn = sqlite3.connect(target)
    try:
        keys = {k for (k,) in conn.execute("SELECT key FROM meta")}
    finally:
        conn.close()
    assert "origin" in keys
    assert not keys & {"sync_lease_holder", "sync_lease_expires"}
    assert not os.path.exists(f"{target}-wal")
