"""A keyword index left in many segments is merged when its file opens, a step at a time,
and again by a long-running process once its writes pause.

Real files through :class:`MemorySystem`: a file written one commit at a time
holds its FTS5 index in several segments (FTS5 merges only four of a level at
a time); the next process to open it merges them into one in bounded steps,
between the reads and writes in the StoreActor's mailbox, and every ranking
stays what it was.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from actors import Config, MemorySystem
from actors.keyword_search import MERGE_ABOVE_SEGMENTS
from actors.messages import MergeIndex

#: The quiet spell of the idle-merge tests: far longer than a store, even on a busy host.
IDLE = 0.5

WORDS = ["deploy", "cluster", "billing", "invoice", "key", "rotation", "backup", "restore"]


def _segments(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(DISTINCT segid) FROM memories_fts_idx").fetchone()
        return int(count)
    finally:
        conn.close()


def _assert_intact(path: Path) -> None:
    """SQLite's check of the whole file, and FTS5's of its index against the rows."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


def _write_in_many_commits(path: Path, count: int) -> None:
    with MemorySystem.open(path) as memory:
        for n in range(count):
            # One at a time: each store is a commit, and each commit a new segment.
            words = " ".join(WORDS[(n * k) % len(WORDS)] for k in (1, 3, 5))
            memory.store(f"note {n}: {words} number{n}", tags=[f"t{n % 3}"])


def _rankings(memory: MemorySystem) -> dict[str, list[tuple[str, float]]]:
    queries = ["deploy", "cluster key", "billing invoice rotation", "number7", "restore backup"]
    return {
        query: [(hit.id, hit.score) for hit in memory.recall(query, limit=20).hits]
        for query in queries
    }


def _wait_for_segments(path: Path, at_most: int, deadline: float = 30.0) -> int:
    ends = time.monotonic() + deadline
    while (segments := _segments(path)) > at_most and time.monotonic() < ends:
        time.sleep(0.05)
    return segments


def test_an_index_in_many_segments_is_merged_at_open_and_ranks_the_same(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    _write_in_many_commits(path, 60)
    before_segments = _segments(path)
    assert before_segments > MERGE_ABOVE_SEGMENTS  # what the test is about

    with MemorySystem.open(path) as memory:
        # Read before the merge is done, and again after: the same answers.
        early = _rankings(memory)
        assert _wait_for_segments(path, 1) == 1
        assert _rankings(memory) == early
        assert memory.count().total == 60

    _assert_intact(path)


def test_writes_during_the_merge_are_all_kept_and_found(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    _write_in_many_commits(path, 60)
    assert _segments(path) > MERGE_ABOVE_SEGMENTS

    with MemorySystem.open(path) as memory:
        # Each store is a commit of its own, queued between the merge's steps.
        stored = [memory.store(f"fresh entry {n} about rotation").id for n in range(30)]
        found = {hit.id for hit in memory.recall("fresh rotation", limit=100).hits}
        assert set(stored) <= found
        assert memory.count().total == 90
    _assert_intact(path)


def test_a_small_index_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    _write_in_many_commits(path, 3)
    segments = _segments(path)
    assert segments <= MERGE_ABOVE_SEGMENTS
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        with MemorySystem.open(path) as memory:
            assert memory.count().total == 3
            assert _segments(path) == segments
        # Nothing was written by the open: another connection saw no commit.
        assert conn.execute("PRAGMA data_version").fetchone() == (version,)
    finally:
        conn.close()


def test_a_step_that_meets_another_writers_lock_leaves_the_index_and_the_store_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    config = Config(busy_timeout=0.2, busy_retries=0)
    with MemorySystem.open(path, config=config) as memory:
        for n in range(30):
            memory.store(f"entry {n} on key rotation")  # a commit, and a segment, each
        segments = _segments(path)
        assert segments > MERGE_ABOVE_SEGMENTS
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
            store = memory._cells["store"].ref
            assert store is not None
            store.tell(MergeIndex(first=True))  # what an open in this state tells
            # Answered after the step (one mailbox): the step met the lock and gave up.
            assert memory.count().total == 30
            assert _segments(path) == segments
            assert memory.status()["actors"]["store"]["restarts"] == 0
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert memory.store("after the lock was let go").id
        assert memory.count().total == 31


def test_a_running_process_merges_the_segments_its_writes_added_once_they_pause(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.db"
    with MemorySystem.open(path, config=Config(merge_index_idle=IDLE)) as memory:
        stored = []
        for n in range(30):
            stored.append(memory.store(f"entry {n} on key rotation number{n}").id)
            if n == 14:
                # Each store a commit and a segment; a pause between two
                # bursts (not only the end) lets the merge run.
                assert _segments(path) > MERGE_ABOVE_SEGMENTS
                assert _wait_for_segments(path, 1) == 1
        early = _rankings(memory)
        assert _wait_for_segments(path, 1) == 1
        assert _rankings(memory) == early
        found = {hit.id for hit in memory.recall("rotation", limit=100).hits}
        assert found == set(stored)
    _assert_intact(path)


def test_a_process_told_to_merge_only_at_open_leaves_its_segments(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    with MemorySystem.open(path, config=Config(merge_index_idle=None)) as memory:
        for n in range(30):
            memory.store(f"entry {n} on key rotation")
        segments = _segments(path)
        assert segments > MERGE_ABOVE_SEGMENTS
        # Past the quiet spell after which the test above merges.
        time.sleep(2 * IDLE)
        assert _segments(path) == segments
