"""Applying a page of the hub's feed in bulk gives exactly what applying it one by one gives.

``SyncStoreMixin._apply_page`` inserts memories new to the file in bulk and
sends the rest through ``_apply_remote``; these tests apply random pages
(new memories, twins of local content, overwrites with and without the same
content, stale states, tombstones of known and unknown ids) both ways, on
copies of one file, and compare every row, the outbox and the FTS5 index.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hub_fixtures import memory

from actors import MemorySystem
from actors._sqlite import connect
from actors.model import HybridClock
from actors.store_sync import SyncStoreMixin
from actors.wire import WireMemory

NOW = 1_800_000_000.0


class FixedRuntime:
    """Just what the mixin reads from a runtime: a fixed wall clock and seeded randomness."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def wall_time(self) -> float:
        return NOW

    def monotonic(self) -> float:
        return 0.0

    def rng(self, stream: str) -> random.Random:
        return self._rng


class Replica(SyncStoreMixin):
    """The mixin over a plain connection (the StoreActor's part is flushing, a no-op here)."""

    def __init__(self, path: Path, seed: int) -> None:
        self.conn: sqlite3.Connection | None = connect(str(path))
        self.clock = HybridClock()
        self.runtime = FixedRuntime(seed)  # type: ignore[assignment]
        self.origin = "local-origin"

    def _flush_for_read(self) -> None:
        pass

    def one_by_one(self, memories: list[WireMemory], cursor: str) -> None:
        def apply(db: sqlite3.Connection) -> int:
            floor = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            superseded: list[str] = []
            for item in memories:
                self._apply_remote(db, item, superseded)
            db.executemany(
                "DELETE FROM outbox WHERE seq <= ? AND memory_id = ?",
                [(floor, memory_id) for memory_id in superseded],
            )
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('pull_cursor', ?)", (cursor,)
            )
            return 0

        self._in_transaction(apply)

    def snapshot(self) -> dict[str, Any]:
        assert self.conn is not None
        db = self.conn
        db.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
        return {
            "memories": db.execute(
                "SELECT id, namespace, content, content_hash, tags, metadata, created_at, "
                "updated_at, version, origin, deleted, sync_state FROM memories ORDER BY id"
            ).fetchall(),
            "outbox": sorted(
                db.execute("SELECT memory_id, op, version, dead FROM outbox").fetchall()
            ),
            "cursor": db.execute("SELECT value FROM meta WHERE key = 'pull_cursor'").fetchall(),
            "fts": db.execute(
                "SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'shared OR page' "
                "ORDER BY rowid"
            ).fetchall(),
        }


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """A file with local memories (some forgotten), their outbox rows waiting: (path, ids)."""
    path = tmp_path_factory.mktemp("apply") / "base.db"
    with MemorySystem.open(path) as system:
        local = []
        for i in range(40):
            text = f"shared local memory {i}"
            receipt = system.store(text, tags=[f"local{i % 3}"])
            local.append((receipt.id, text))
        for memory_id, _ in local[::7]:
            system.forget(memory_id)
    return path, local


def _page(
    rng: random.Random, local: list[tuple[str, str]], number: int, seen: set[str]
) -> list[WireMemory]:
    """A random page of the feed: every case the apply distinguishes, each id once.

    ``seen`` holds the content hashes live on the "hub" so far (pages share it):
    the hub never holds one content live under two ids.
    """
    page: list[WireMemory] = []
    ms = int(NOW * 1000)
    used: set[str] = set()
    for n in range(rng.randint(5, 60)):
        kind = rng.choice(["new", "new", "twin", "newer", "newer-same", "older", "tomb", "tomb"])
        known_id, known_text = rng.choice(local)
        if kind in ("newer", "newer-same", "older", "tomb") and known_id in used:
            kind = "new"
        if kind == "new":
            text = f"page {number} memory {rng.randint(0, 30)}"
            item = memory(text, version=ms + n, origin="hub-a")
        elif kind == "twin":
            item = memory(known_text, version=ms + n, origin="hub-b", tags=("remote",))
        elif kind in ("newer", "newer-same"):
            text = known_text if kind == "newer-same" else f"rewritten page {number}-{n}"
            item = memory(text, id=known_id, version=ms + 10_000 + n, origin="hub-c", tags=("r",))
        elif kind == "older":
            item = memory(f"old page {n}", id=known_id, version=1_600_000_000_000, origin="o")
        else:
            target = known_id if rng.random() < 0.5 else None
            item = memory("", id=target, version=ms + 20_000 + n, origin="hub-d", deleted=True)
        if item.id in used:
            continue
        used.add(item.id)
        page.append(item)
    unique = []
    for item in page:
        if not item.deleted and item.content_hash in seen:
            continue
        seen.add(item.content_hash)
        unique.append(item)
    return unique


@pytest.mark.parametrize("seed", range(25))
def test_a_page_applied_in_bulk_equals_the_page_applied_one_by_one(
    base: tuple[Path, list[tuple[str, str]]], tmp_path: Path, seed: int
) -> None:
    """Same rows, versions, tags, outbox rows, cursor and FTS5 index, whatever the page."""
    path, local = base
    rng = random.Random(seed)
    live: set[str] = set()
    pages = [_page(rng, local, number, live) for number in range(2)]
    results = []
    for way in ("bulk", "one-by-one"):
        copy = tmp_path / f"{way}.db"
        shutil.copy(path, copy)
        replica = Replica(copy, seed)
        for number, page in enumerate(pages):
            cursor = f"hub:{number}"
            if way == "bulk":
                replica.sync_apply_changes(SimpleNamespace(memories=tuple(page), cursor=cursor))  # type: ignore[arg-type]
            else:
                replica.one_by_one(page, cursor)
        results.append(replica.snapshot())
        assert replica.conn is not None
        replica.conn.close()
    assert results[0] == results[1]


def test_a_memory_revived_by_a_newer_remote_state_merges_with_its_local_re_store(
    tmp_path: Path,
) -> None:
    """Forgotten here, stored again here (a new id), revived on the hub: one memory, no wedge.

    A tag change made elsewhere, after our forget by the clock, wins over the
    forget; here the same text is live again under another id. Applying the
    revival once violated the one-live-content rule and failed the page on
    every retry: the pull stopped for good.
    """
    path = tmp_path / "memory.db"
    with MemorySystem.open(path) as system:
        first = system.store("a fact stored twice", tags=["mine"]).id
        system.forget(first)
        again = system.store("a fact stored twice", tags=["again"]).id
    assert again != first
    revived = memory(
        "a fact stored twice", id=first, version=int(NOW * 1000), origin="hub", tags=("theirs",)
    )
    replica = Replica(path, 0)
    replica.sync_apply_changes(SimpleNamespace(memories=(revived,), cursor="hub:1"))  # type: ignore[arg-type]
    assert replica.conn is not None
    rows = replica.conn.execute(
        "SELECT id, tags, deleted FROM memories WHERE content = 'a fact stored twice'"
    ).fetchall()
    assert rows == [(first, '["again", "theirs"]', 0)]
    # The re-store's own queued push is superseded; the merged tags are pushed instead.
    queued = replica.conn.execute("SELECT memory_id FROM outbox WHERE memory_id = ?", (again,))
    assert queued.fetchall() == []
    replica.snapshot()  # the FTS5 index is consistent
