"""Schema migrations by PRAGMA user_version: fresh, upgrade, refusal, concurrent startup."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors import MemorySystem, NotADatabase, SchemaTooNew
from actors.errors import MigrationFailed
from actors.migrations import LATEST_VERSION, STEPS, Step, migrate, read_version
from actors.model import format_version

WORKERS = str(Path(__file__).with_name("workers.py"))


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _make_v1_fixture(path: Path) -> None:
    """A file as the first release wrote it: schema 1, two memories and a tombstone."""
    migrate(str(path), steps=STEPS[:1], now=time.time)
    conn = sqlite3.connect(path)
    rows = [
        ("0190a2b3-0000-7000-8000-000000000001", "ancient wisdom about caching", 0),
        ("0190a2b3-0000-7000-8000-000000000002", "old note on retries", 0),
        ("0190a2b3-0000-7000-8000-000000000003", "", 1),
    ]
    with conn:
        for n, (memory_id, content, deleted) in enumerate(rows):
            conn.execute(
                "INSERT INTO memories(id, namespace, content, content_hash, created_at, "
                "updated_at, version, origin, deleted) "
                "VALUES (?, 'default', ?, ?, 1, 1, ?, 'o', ?)",
                (memory_id, content, f"hash-{memory_id}", format_version(1000, n), deleted),
            )
    conn.close()


def test_a_fresh_file_is_created_at_the_latest_version(db_path: Path) -> None:
    """Every step is applied once, in order, and recorded; no backup of an empty file."""
    with MemorySystem.open(db_path) as memory:
        report = memory.migration
    assert (report.from_version, report.to_version) == (0, LATEST_VERSION)
    assert report.applied == tuple(range(1, LATEST_VERSION + 1))
    assert report.backups == ()
    assert read_version(str(db_path)) == LATEST_VERSION
    assert _query(db_path, "PRAGMA journal_mode") == [("wal",)]
    applied = [row[0] for row in _query(db_path, "SELECT version FROM migrations ORDER BY 1")]
    assert applied == list(range(1, LATEST_VERSION + 1))


def test_an_old_file_is_upgraded_with_backups_and_its_data_kept(db_path: Path) -> None:
    """Upgrading a schema-1 file indexes old memories and queues them for sync."""
    _make_v1_fixture(db_path)
    with MemorySystem.open(db_path) as memory:
        report = memory.migration
        assert report.from_version == 1
        assert report.applied == tuple(range(2, LATEST_VERSION + 1))
        hits = memory.recall("caching").hits
        assert [hit.id for hit in hits] == ["0190a2b3-0000-7000-8000-000000000001"]
        counts = memory.count()
        assert (counts.total, counts.forgotten, counts.outbox_pending) == (2, 1, 3)
    assert len(report.backups) == 2
    for backup in report.backups:
        assert Path(backup).exists()
    # The first backup is the file exactly as it was: schema 1 with its rows.
    assert _query(Path(report.backups[0]), "PRAGMA user_version") == [(1,)]
    assert _query(Path(report.backups[0]), "SELECT count(*) FROM memories") == [(3,)]
    ops = _query(db_path, "SELECT op FROM outbox ORDER BY seq")
    assert ops == [("upsert",), ("upsert",), ("delete",)]


def test_a_database_newer_than_the_code_is_refused_and_untouched(db_path: Path) -> None:
    """SchemaTooNew names both versions; the file's bytes do not change."""
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE future(x)")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew, match=rf"schema 99 .* \({LATEST_VERSION}\); upgrade"):
        MemorySystem.open(db_path)
    assert db_path.read_bytes() == before
    assert not Path(f"{db_path}-wal").exists()


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(db_path: Path) -> None:
    """A text file at the database path is never overwritten."""
    db_path.write_bytes(b"these are my notes, not a database\n" * 10)
    before = db_path.read_bytes()
    with pytest.raises(NotADatabase, match="is not a SQLite database"):
        MemorySystem.open(db_path)
    assert db_path.read_bytes() == before


def test_a_failing_step_rolls_back_and_leaves_the_previous_version(db_path: Path) -> None:
    """A broken migration step leaves the file at the last good version."""
    broken = (*STEPS[:1], Step(2, "broken step", ("CREATE TABLE ok_table(x)", "NOT SQL")))
    with pytest.raises(MigrationFailed, match="stays at schema 1"):
        migrate(str(db_path), steps=broken, now=time.time)
    assert read_version(str(db_path)) == 1
    assert _query(db_path, "SELECT name FROM sqlite_master WHERE name = 'ok_table'") == []


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fresh", "old"])
def test_processes_starting_together_migrate_exactly_once(tmp_path: Path, start: str) -> None:
    """Six processes open one file at once: each step is applied by exactly one of them."""
    db = tmp_path / "race.db"
    if start == "old":
        _make_v1_fixture(db)
    procs = [
        subprocess.Popen(
            [sys.executable, WORKERS, "open", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    applied: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        applied.extend(json.loads(out)["applied"])
    first = 1 if start == "fresh" else 2
    assert sorted(applied) == list(range(first, LATEST_VERSION + 1))
    rows = _query(db, "SELECT version FROM migrations ORDER BY version")
    assert [row[0] for row in rows] == list(range(1, LATEST_VERSION + 1))
    assert read_version(str(db)) == LATEST_VERSION
