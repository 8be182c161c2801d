"""LocalDatabase's one way to write: the clock catch-up and the split of its errors.

The StoreActor's tests reach these through the mailbox; here two databases
share one file directly, as two processes do, so a version minted twice or a
busy error in the wrong shape shows up without any actor in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from actors._sqlite import connect, is_busy
from actors.errors import StorageBusy
from actors.local_db import DatabaseError, LocalDatabase
from actors.messages import StoreMemory
from actors.migrations import migrate
from actors.model import content_hash

#: A wall clock that never moves: every version shares one millisecond.
FROZEN = 1_800_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> str:
    """A migrated file."""
    db_path = str(tmp_path / "memory.db")
    migrate(db_path, now=lambda: FROZEN)
    return db_path


def _open(path: str, name: str, busy_timeout: float = 5.0) -> LocalDatabase:
    ids = itertools.count()
    return LocalDatabase.open(
        path,
        new_id=lambda: f"{name}-{next(ids):04d}",
        wall_time=lambda: FROZEN,
        monotonic=lambda: 0.0,
        jitter=lambda: 0.5,
        busy_timeout=busy_timeout,
    )


@pytest.fixture
def two(path: str) -> Iterator[tuple[LocalDatabase, LocalDatabase]]:
    """Two databases on one file, as two processes would hold it."""
    first, second = _open(path, "first"), _open(path, "second")
    yield first, second
    first.close()
    second.close()


def _store(text: str) -> StoreMemory:
    return StoreMemory(pykka.ThreadingFuture(), text, content_hash(text), "default", (), "{}")


def _write_then_fail(db: LocalDatabase) -> None:
    with db.transaction():
        db.apply_writes([_store("lost")], FROZEN)
        raise RuntimeError("the body failed")


def test_two_owners_of_one_file_never_mint_the_same_version(
    two: tuple[LocalDatabase, LocalDatabase],
) -> None:
    """Each transaction moves its clock past the file's: versions stay unique and ordered."""
    first, second = two
    for n in range(6):
        (first if n % 2 else second).commit_writes([_store(f"note {n}")])
    versions = [v for (v,) in first.conn.execute("SELECT version FROM memories ORDER BY rowid")]
    assert len(set(versions)) == 6
    assert versions == sorted(versions)


def test_a_failed_transaction_rolls_back_and_records_no_clock(
    two: tuple[LocalDatabase, LocalDatabase],
) -> None:
    """Nothing of a body that raises is written, the clock record included."""
    first, _ = two
    with pytest.raises(RuntimeError, match="the body failed"):
        _write_then_fail(first)
    assert first.conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    assert first.conn.execute("SELECT value FROM meta WHERE key = 'hlc'").fetchall() == []


def test_busy_is_sqlites_error_for_the_group_commit_and_ours_for_sync(path: str) -> None:
    """The batch commit leaves busy to its owner's retry; a sync write says StorageBusy."""
    db = _open(path, "db", busy_timeout=0)
    holder = connect(path, busy_timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseError) as raw:
            db.commit_writes([_store("waits")])
        assert is_busy(raw.value)
        with pytest.raises(StorageBusy, match=r"database busy during sync \(.*\); retried later"):
            db.retry_dead()
        holder.execute("ROLLBACK")
        assert db.retry_dead() == 0
    finally:
        holder.close()
        db.close()


def _marks(db: LocalDatabase) -> dict[str, str]:
    rows = db.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'commit:%'")
    return dict(rows.fetchall())


def test_each_writer_marks_its_own_commits_and_a_dead_writers_mark_goes_a_day_later(
    two: tuple[LocalDatabase, LocalDatabase], path: str
) -> None:
    """The mark that tells an ambiguous COMMIT's outcome is one row per writer: another
    process's commit never overwrites it; a writer killed leaves one row, dropped later."""
    first, second = two
    first.commit_writes([_store("first's")])
    second.commit_writes([_store("second's")])
    marks = _marks(first)
    assert len(marks) == 2
    first.commit_writes([_store("first's again")])
    after = _marks(first)
    assert after[second._mark_key] == marks[second._mark_key]
    assert after[first._mark_key] != marks[first._mark_key]
    ids = itertools.count()
    later = LocalDatabase.open(
        path,
        new_id=lambda: f"later-{next(ids):04d}",
        wall_time=lambda: FROZEN + 86_400 + 1,
        monotonic=lambda: 0.0,
        jitter=lambda: 0.5,
    )
    try:
        assert _marks(later) == {}
    finally:
        later.close()


def test_a_file_locked_throughout_the_open_says_busy(path: str) -> None:
    """Busy at open is StorageBusy: a process taking the file over tries again on it."""
    holder = connect(path, busy_timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageBusy, match=r"cannot prepare .*locked; retry shortly"):
            _open(path, "late", busy_timeout=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
