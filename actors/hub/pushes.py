"""How the hub decides a push, item by item: the same for every engine.

Last writer wins by ``(version, origin)``; a live unkeyed memory whose
content its namespace already holds under another id is a ``duplicate``;
each applied item takes the tenant's next feed position. The engines
(:mod:`actors.hub.database`, :mod:`actors.hub.postgres`) read what a push
needs of the stored memories in bulk (:class:`StoredMemory` by id, the
dedup slots' holders), let :func:`plan_push` decide, and write the
:class:`Write` list as each does best: the SQLite engine row by row, the
PostgreSQL engine a few statements a batch. So the decisions cannot drift
apart between engines.

A push may name one id twice, and its second item may meet its first one's
dedup slot: :func:`plan_push` decides each item against the state the
items before it left (it updates its copies of both maps), exactly as if
every item were written before the next one is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs

from actors.wire import ItemResult, WireMemory

__all__ = [
    "STORED_COLUMNS",
    "DedupSlot",
    "QueueChange",
    "StoredMemory",
    "Write",
    "dedup_slots",
    "distinct_runs",
    "plan_push",
    "queue_change",
    "text_changed",
]

#: (namespace, content_hash): at most one live unkeyed memory per tenant holds one.
DedupSlot: TypeAlias = tuple[str, str]

#: What a write does to the memory's place in the embedding queue.
QueueChange: TypeAlias = Literal["enqueue", "dequeue"] | None


_STORED: Final = ("rowid", "version", "origin", "content_hash", "deleted", "namespace", "key")

#: The columns of ``memories`` a push reads of a stored memory (:meth:`StoredMemory.from_row`).
STORED_COLUMNS: Final = ", ".join(_STORED)


@attrs.frozen
class StoredMemory:
    """What a push needs of a stored memory (or one written earlier in the same push).

    ``rowid`` is None for a memory this push inserted (the engine knows its
    row); ``has_vector``: its vector is stored (the engines' ``vector IS NOT NULL``).
    """

    rowid: int | None
    version: str
    origin: str
    content_hash: str
    deleted: bool
    namespace: str
    key: str | None
    has_vector: bool = False

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredMemory:
        """From the columns ``STORED_COLUMNS`` names, and optionally whether it has a vector."""
        has_vector = len(row) > len(_STORED) and bool(row[len(_STORED)])
        rowid, version, origin, content_hash, deleted, namespace, key = row[: len(_STORED)]
        return cls(
            int(rowid), version, origin, content_hash, bool(deleted), namespace, key, has_vector
        )

    @classmethod
    def written(cls, item: WireMemory, *, over: StoredMemory | None) -> StoredMemory:
        """What writing ``item`` over ``over`` (None: a new id) leaves stored."""
        return cls(
            None if over is None else over.rowid,
            item.version,
            item.origin,
            item.content_hash,
            item.deleted,
            item.namespace,
            item.key,
            # A void vector is set NULL; the same text keeps it.
            over is not None and over.has_vector and not text_changed(over, item),
        )

    @property
    def slot(self) -> DedupSlot | None:
        """The dedup slot it holds, if live and unkeyed (keyed memories are never deduplicated)."""
        if self.deleted or self.key is not None:
            return None
        return (self.namespace, self.content_hash)


@attrs.frozen
class Write:
    """An applied item: write it at feed position ``seq`` over ``stored`` (None: a new id)."""

    item: WireMemory
    seq: int
    stored: StoredMemory | None


def dedup_slots(items: Iterable[WireMemory]) -> set[DedupSlot]:
    """The dedup slots the items' live unkeyed contents would take: whose holders to read."""
    return {(i.namespace, i.content_hash) for i in items if not i.deleted and i.key is None}


def text_changed(stored: StoredMemory, item: WireMemory) -> bool:
    """Whether ``item`` leaves its stored memory's vector void (deleted, revived, new text)."""
    return item.deleted or stored.deleted or item.content_hash != stored.content_hash


def queue_change(stored: StoredMemory | None, item: WireMemory) -> QueueChange:
    """What writing ``item`` over ``stored`` does to the embedding queue.

    A deleted memory leaves it; a new live one, a revived one or new text
    enters it (again: a claim on the old text is void); the same text stays
    as it is.
    """
    if item.deleted:
        return None if stored is None else "dequeue"
    if stored is None or text_changed(stored, item):
        return "enqueue"
    return None


def plan_push(
    items: Iterable[WireMemory],
    head: int,
    stored: MutableMapping[str, StoredMemory],
    holders: MutableMapping[DedupSlot, tuple[str, str]],
) -> tuple[list[ItemResult], list[Write], int]:
    """Decide each item of one tenant's push; (results, writes in order, the new head).

    ``stored``: the tenant's stored memories by id, at least those the items
    name; ``holders``: for each slot the items' live unkeyed contents would
    take, the ``(id, version)`` holding it, if any. Both are updated as the
    items are decided (the state the writes leave).
    """
    results: list[ItemResult] = []
    writes: list[Write] = []
    seq = head
    for item in items:
        current = stored.get(item.id)
        if current is not None:
            # Last writer wins: the greater (version, origin) pair, compared as
            # strings (both engines compare bytes: PostgreSQL's columns are "C").
            incoming = (item.version, item.origin)
            if incoming == (current.version, current.origin):
                results.append(ItemResult(item.id, "unchanged", current.version))
                continue
            if incoming < (current.version, current.origin):
                results.append(ItemResult(item.id, "stale", current.version))
                continue
        written = StoredMemory.written(item, over=current)
        slot = written.slot
        holder = holders.get(slot) if slot is not None else None
        if holder is not None and holder[0] != item.id:
            results.append(ItemResult(item.id, "duplicate", holder[1], holder[0]))
            continue
        seq += 1
        writes.append(Write(item, seq, current))
        if current is not None and current.slot is not None:
            holders.pop(current.slot, None)
        if slot is not None:
            holders[slot] = (item.id, item.version)
        stored[item.id] = written
        results.append(ItemResult(item.id, "applied", item.version))
    return results, writes, seq


def distinct_runs(writes: Sequence[Write]) -> Iterator[list[Write]]:
    """``writes`` cut into consecutive runs in which no id repeats (each one row per id).

    A statement that writes many rows may write each row once; the second
    write of an id starts the next run, written after the first.
    """
    run: list[Write] = []
    ids: set[str] = set()
    for write in writes:
        if write.item.id in ids:
            yield run
            run, ids = [], set()
        run.append(write)
        ids.add(write.item.id)
    if run:
        yield run
