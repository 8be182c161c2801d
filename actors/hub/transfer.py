"""Copy a hub to another database: ``memory-actors hub migrate-to`` (SQLite → PostgreSQL).

Through the :class:`~actors.hub.engine.HubEngine` interface on both sides,
so any engine can be the source or the target. What is copied: every API
key (its hash, creation and revocation times: keys keep working), and every
memory of every tenant, tombstones included, in feed order (each memory's
latest version, with its version and origin, so last writer wins goes on
deciding as before). Vectors are not copied: the target hub embeds its
memories again in the background, as after an embedder change.

The target gets a hub id of its own, so clients' cursors from the old hub
are refused there with ``409 cursor_reset`` and each client pulls again from
the start and reconciles with a digest (the protocol's path for a rebuilt
hub). The copy refuses a target that already holds keys or memories, and
ends with an exact count check per tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from actors.errors import StorageError
from actors.hub.backend import Cursor
from actors.hub.engines import describe_target, open_engine, prepare_target

if TYPE_CHECKING:
    from actors.hub.engine import HubEngine

__all__ = ["HubCopy", "copy_hub", "count_memories"]

#: Memories per read from the source and per transaction on the target.
PAGE = 500


@attrs.frozen
class HubCopy:
    """What :func:`copy_hub` copied: keys, tenants, memories (tombstones included)."""

    keys: int
    tenants: int
    memories: int


def count_memories(source: str, *, now: Callable[[], float]) -> int:
    """How many memories (tombstones included) ``source`` holds: a progress bar's length.

    The source is migrated first, as :func:`copy_hub` does next: a hub last served by an
    older release is counted, not refused for its schema.
    """
    prepare_target(source, now=now)
    engine = open_engine(source, new_id=_no_new_id)
    try:
        total = 0
        for tenant in engine.tenants():
            counts = engine.counts(tenant)
            total += counts.total + counts.forgotten
        return total
    finally:
        engine.close()


def copy_hub(
    source: str,
    target: str,
    *,
    now: Callable[[], float],
    new_id: Callable[[], str],
    progress: Callable[[int], None] = lambda copied: None,
) -> HubCopy:
    """Copy every key and memory of the hub ``source`` into the empty hub ``target``.

    ``progress(n)`` is called after each page of ``n`` memories. Raises
    :class:`~actors.errors.StorageError` when the target is not empty or
    when the counts differ at the end (the target then holds a partial
    copy: drop and recreate it before trying again), and our storage or
    schema errors of either database.
    """
    # The source is migrated as `hub serve` would (a no-op when it is current).
    prepare_target(source, now=now)
    prepare_target(target, now=now)
    src = open_engine(source, new_id=_no_new_id)
    try:
        dst = open_engine(target, new_id=new_id)
        try:
            if dst.list_keys() or dst.tenants():
                raise StorageError(
                    f"{describe_target(target)} already holds a hub's keys or memories; "
                    "copy into an empty database (nothing was copied)"
                )
            keys = _copy_keys(src, dst)
            tenants = src.tenants()
            copied = 0
            for tenant in tenants:
                copied += _copy_tenant(src, dst, tenant, now, progress)
            for tenant in tenants:
                before, after = src.counts(tenant), dst.counts(tenant)
                mine = (before.total, dict(before.by_namespace), before.forgotten)
                theirs = (after.total, dict(after.by_namespace), after.forgotten)
                if mine != theirs:
                    raise StorageError(
                        f"tenant {tenant!r}: the copy holds {theirs} (live, by namespace, "
                        f"forgotten) where {describe_target(source)} holds {mine}"
                    )
            return HubCopy(keys=keys, tenants=len(tenants), memories=copied)
        finally:
            dst.close()
    finally:
        src.close()


def _copy_keys(src: HubEngine, dst: HubEngine) -> int:
    keys = src.list_keys()
    for info in keys:
        stored = src.lookup_key(info.key_id)
        if stored is None:  # revoked and deleted meanwhile: nothing to copy
            continue
        dst.add_key(info.key_id, info.tenant, stored.key_hash, info.created_at)
        if info.revoked_at is not None:
            dst.revoke_key(info.key_id, info.revoked_at)
    return len(keys)


def _copy_tenant(
    src: HubEngine,
    dst: HubEngine,
    tenant: str,
    now: Callable[[], float],
    progress: Callable[[int], None],
) -> int:
    since: Cursor | None = None
    copied = 0
    while True:
        page = src.changes(tenant, since, PAGE)
        if page.changes:
            items = tuple(change.memory for change in page.changes)
            results = dst.commit_pushes([(tenant, items)], now())[0]
            refused = [r for r in results if r.status != "applied"]
            if refused:
                raise StorageError(
                    f"tenant {tenant!r}: the target did not apply {len(refused)} memories "
                    f"(first: {refused[0]}); is it really empty?"
                )
            copied += len(items)
            progress(len(items))
        since = Cursor.decode(page.next_cursor)
        if not page.has_more:
            return copied


def _no_new_id() -> str:
    # The source exists and has its id: opening it must not mint one.
    raise StorageError("the source is not a hub database that has served yet (it has no hub id)")
