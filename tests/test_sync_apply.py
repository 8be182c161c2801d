"""Applying a page of the hub's feed in bulk gives exactly what applying it one by one gives.

``LocalDatabase.apply_changes`` inserts memories new to the file in bulk and
sends the rest through ``apply_remote``; these tests apply random pages
(new memories, twins of local content, overwrites with and without the same
content, stale states, tombstones of known and unknown ids) both ways, on
copies of one file, and compare every row, the outbox and the FTS5 index.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
from hub_fixtures import memory

from actors import MemorySystem
from actors._sqlite import connect
from actors.local_db import LocalDatabase
from actors.model import HybridClock, keyed_memory_id
from actors.wire import WireMemory

NOW = 1_800_000_000.0


def _replica(path: Path, seed: int) -> LocalDatabase:
    """The database over a copy of a file: a fixed wall clock, seeded jitter, a known origin."""
    return LocalDatabase(
        connect(str(path)),
        path=str(path),
        origin="local-origin",
        clock=HybridClock(),
        new_id=lambda: pytest.fail("a pulled page mints no id"),
        wall_time=lambda: NOW,
        monotonic=lambda: 0.0,
        jitter=random.Random(seed).random,
    )


def _one_by_one(db: LocalDatabase, memories: list[WireMemory], cursor: str) -> None:
    """The reference: every pulled memory through ``apply_remote`` in one transaction."""
    with db.transaction():
        floor = db.conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        superseded: list[str] = []
        for item in memories:
            db.apply_remote(item, superseded)
        db.conn.executemany(
            "DELETE FROM outbox WHERE seq <= ? AND memory_id = ?",
            [(floor, memory_id) for memory_id in superseded],
        )
        db.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('pull_cursor', ?)", (cursor,)
        )


def _snapshot(db: LocalDatabase) -> dict[str, Any]:
    conn = db.conn
    conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    return {
        "memories": conn.execute(
            "SELECT id, namespace, content, content_hash, tags, metadata, created_at, "
            "updated_at, version, origin, deleted, sync_state, key FROM memories ORDER BY id"
        ).fetchall(),
        "outbox": sorted(
            conn.execute("SELECT memory_id, op, version, dead FROM outbox").fetchall()
        ),
        "cursor": conn.execute("SELECT value FROM meta WHERE key = 'pull_cursor'").fetchall(),
        "fts": conn.execute(
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
        kind = rng.choice(
            ["new", "new", "twin", "newer", "newer-same", "older", "tomb", "tomb", "keyed"]
        )
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
        elif kind == "keyed":
            # A keyed memory, sometimes holding a local memory's text: never its twin.
            key = f"key-{rng.randint(0, 4)}"
            text = known_text if rng.random() < 0.5 else f"keyed page {number}-{n}"
            keyed_id = keyed_memory_id("default", key)
            item = attrs.evolve(memory(text, id=keyed_id, version=ms + n, origin="hub-e"), key=key)
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
        if item.key is not None:
            unique.append(item)
            continue
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
        replica = _replica(copy, seed)
        for number, page in enumerate(pages):
            cursor = f"hub:{number}"
            if way == "bulk":
                replica.apply_changes(page, cursor)
            else:
                _one_by_one(replica, page, cursor)
        results.append(_snapshot(replica))
        replica.close()
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
    replica = _replica(path, 0)
    replica.apply_changes([revived], "hub:1")
    rows = replica.conn.execute(
        "SELECT id, tags, deleted FROM memories WHERE content = 'a fact stored twice'"
    ).fetchall()
    assert rows == [(first, '["again", "theirs"]', 0)]
    # The re-store's own queued push is superseded; the merged tags are pushed instead.
    queued = replica.conn.execute("SELECT memory_id FROM outbox WHERE memory_id = ?", (again,))
    assert queued.fetchall() == []
    _snapshot(replica)  # the FTS5 index is consistent
    replica.close()
