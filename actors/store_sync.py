"""Internal: the StoreActor's side of sync (outbox, change apply, lease, digest).

A mixin of :class:`actors.store.StoreActor`, kept apart because it is one
concern: what the SyncActor asks of the one owner of the SQLite file. Every
method here runs on the StoreActor's thread, each write in its own short
transaction (a page of changes, a batch of push outcomes), so a resync never
holds the write lock for long and local stores stay fast meanwhile.

Conflict rule (the same as the hub's): last writer wins by ``(version,
origin)``. Two extra rules make replicas converge without losing data:

- *content dedup across replicas*: a memory whose content is already live in
  the namespace under another id takes the hub's id (it is re-keyed);
- *tags only grow*: when both sides hold the same live content with
  different tags, the winner gets the union, as a new local version that is
  pushed back, so every replica ends with every tag.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from actors.errors import StorageBusy, StorageError
from actors.hub.protocol import WireMemory
from actors.messages import (
    AcquireLease,
    ApplyChanges,
    FetchOutbox,
    ReadLocalDigest,
    RecordPush,
    ReleaseLease,
    RequeueForPush,
)
from actors.model import HybridClock
from actors.runtime import Runtime
from actors.sync_model import DigestRow, OutboxEntry, PushOutcome

__all__ = ["SyncStoreMixin"]

T = TypeVar("T")

_CURSOR_KEY = "pull_cursor"
_LEASE_HOLDER = "sync_lease_holder"
_LEASE_EXPIRES = "sync_lease_expires"
_CLOCK_KEY = "hlc"
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 60.0


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return (code & 0xFF) in (5, 6)


class SyncStoreMixin:
    """Sync requests served by the StoreActor (see the module docstring)."""

    runtime: Runtime
    clock: HybridClock
    origin: str
    conn: sqlite3.Connection | None

    # Provided by StoreActor.
    _flush_for_read: Callable[[], None]
    _clock_seen = ""

    # -- plumbing -------------------------------------------------------------

    def _sync_db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StorageError("the store's connection is closed")
        return self.conn

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Acknowledged local writes commit first: sync never reorders them.
        self._flush_for_read()
        db = self._sync_db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self.sync_clock_in(db)
                result = work(db)
                self.sync_clock_out(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise StorageBusy(f"database busy during sync ({exc}); retried later") from exc
            raise StorageError(f"sync write rolled back: {exc}") from exc
        return result

    def sync_clock_in(self, db: sqlite3.Connection) -> None:
        """Inside a write transaction: catch up with the clock of every process on the file.

        Several processes may write one file, all under the file's one origin,
        each with its own hybrid logical clock. Without this, two of them could
        mint the same (version, origin) within one millisecond, and a forget
        would tie with the store it forgets (found by the lease sweep).
        """
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_CLOCK_KEY,)).fetchone()
        self._clock_seen = row[0] if row else ""
        self.clock.observe(self._clock_seen)

    def sync_clock_out(self, db: sqlite3.Connection) -> None:
        """Record this transaction's last version for the other processes."""
        version = self.clock.version
        if version != self._clock_seen:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (_CLOCK_KEY, version),
            )

    def _now(self) -> float:
        return self.runtime.wall_time()

    def _tick(self) -> str:
        return self.clock.tick(int(self._now() * 1000))

    # -- push -----------------------------------------------------------------

    def sync_fetch_outbox(self, request: FetchOutbox) -> tuple[OutboxEntry, ...]:
        self._flush_for_read()
        db = self._sync_db()
        due = db.execute(
            "SELECT memory_id, max(seq), max(attempts) FROM outbox "
            "WHERE dead = 0 AND next_attempt_at <= ? "
            "GROUP BY memory_id ORDER BY min(seq) LIMIT ?",
            (self._now(), request.limit),
        ).fetchall()
        entries = []
        for memory_id, max_seq, attempts in due:
            row = db.execute(
                "SELECT id, namespace, content, content_hash, tags, metadata, created_at, "
                "updated_at, version, origin, deleted FROM memories WHERE id = ?",
                (memory_id,),
            ).fetchone()
            if row is None:  # re-keyed away since: nothing to push
                continue
            deleted = bool(row[10])
            memory = WireMemory(
                id=row[0],
                namespace=row[1],
                content="" if deleted else row[2],
                content_hash=row[3],
                tags=() if deleted else tuple(json.loads(row[4])),
                metadata={} if deleted else json.loads(row[5]),
                created_at=row[6],
                updated_at=row[7],
                version=row[8],
                origin=row[9],
                deleted=deleted,
            )
            entries.append(OutboxEntry(memory, max_seq, attempts))
        return tuple(entries)

    def sync_record_push(self, request: RecordPush, max_attempts: int) -> int:
        outcomes: tuple[PushOutcome, ...] = request.outcomes

        def record(db: sqlite3.Connection) -> int:
            now = self._now()
            rng = self.runtime.rng("sync.backoff")
            for outcome in outcomes:
                if outcome.status == "synced":
                    self._settle_rows(db, outcome.memory_id, outcome.max_seq)
                elif outcome.status == "rekey" and outcome.canonical_id:
                    self._rekey(db, outcome.memory_id, outcome.canonical_id, outcome.hub_version)
                elif outcome.status in ("failed", "dead"):
                    attempts = (
                        db.execute(
                            "SELECT coalesce(max(attempts), 0) FROM outbox WHERE memory_id = ? "
                            "AND seq <= ? AND dead = 0",
                            (outcome.memory_id, outcome.max_seq),
                        ).fetchone()[0]
                        + 1
                    )
                    dead = outcome.status == "dead" or attempts >= max_attempts
                    if outcome.retry_in is not None:
                        # The SyncActor's schedule (RemoteConfig.backoff, max_backoff).
                        delay = outcome.retry_in
                    else:
                        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempts - 1))
                        delay *= 0.5 + rng.random()
                    db.execute(
                        "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, "
                        "dead = ? WHERE memory_id = ? AND seq <= ? AND dead = 0",
                        (
                            attempts,
                            now + delay,
                            outcome.error,
                            int(dead),
                            outcome.memory_id,
                            outcome.max_seq,
                        ),
                    )
                    if dead:
                        db.execute(
                            "UPDATE memories SET sync_state = 'sync_failed' WHERE id = ?",
                            (outcome.memory_id,),
                        )
            return len(outcomes)

        return self._in_transaction(record)

    @staticmethod
    def _settle_rows(db: sqlite3.Connection, memory_id: str, max_seq: int) -> None:
        db.execute("DELETE FROM outbox WHERE memory_id = ? AND seq <= ?", (memory_id, max_seq))
        db.execute(
            "UPDATE memories SET sync_state = 'synced' WHERE id = ? "
            "AND NOT EXISTS (SELECT 1 FROM outbox WHERE memory_id = ?)",
            (memory_id, memory_id),
        )

    def _rekey(
        self, db: sqlite3.Connection, local_id: str, canonical_id: str, hub_version: str | None
    ) -> None:
        """The hub holds our content under ``canonical_id``: become that memory.

        The local row takes the canonical id with the hub's version and an
        empty origin (which loses every tie), so the next pull brings the
        hub's state and the tag-union rule merges our tags into it.
        """
        self.clock.observe(hub_version)
        db.execute("DELETE FROM outbox WHERE memory_id = ?", (local_id,))
        existing = db.execute("SELECT tags FROM memories WHERE id = ?", (canonical_id,)).fetchone()
        local = db.execute("SELECT tags FROM memories WHERE id = ?", (local_id,)).fetchone()
        if local is None:
            return
        if existing is not None:
            merged = sorted(set(json.loads(existing[0])) | set(json.loads(local[0])))
            db.execute("DELETE FROM memories WHERE id = ?", (local_id,))
            if merged != json.loads(existing[0]):
                self._write_tags(db, canonical_id, merged)
            return
        db.execute(
            "UPDATE memories SET id = ?, version = ?, origin = '', sync_state = 'synced' "
            "WHERE id = ?",
            (canonical_id, hub_version or "0" * 19, local_id),
        )

    def _write_tags(self, db: sqlite3.Connection, memory_id: str, tags: list[str]) -> None:
        version = self._tick()
        now = self._now()
        db.execute(
            "UPDATE memories SET tags = ?, version = ?, origin = ?, updated_at = ?, "
            "sync_state = 'sync_pending' WHERE id = ?",
            (json.dumps(tags), version, self.origin, now, memory_id),
        )
        db.execute(
            "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, 'upsert', ?, ?)",
            (memory_id, version, now),
        )

    def sync_requeue(self, request: RequeueForPush) -> int:
        def requeue(db: sqlite3.Connection) -> int:
            now = self._now()
            queued = 0
            for memory_id in request.memory_ids:
                row = db.execute(
                    "SELECT version, deleted FROM memories WHERE id = ?", (memory_id,)
                ).fetchone()
                pending = db.execute(
                    "SELECT 1 FROM outbox WHERE memory_id = ? AND dead = 0", (memory_id,)
                ).fetchone()
                if row is None or pending is not None:
                    continue
                db.execute(
                    "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, ?, ?, ?)",
                    (memory_id, "delete" if row[1] else "upsert", row[0], now),
                )
                db.execute(
                    "UPDATE memories SET sync_state = 'sync_pending' WHERE id = ?", (memory_id,)
                )
                queued += 1
            return queued

        return self._in_transaction(requeue)

    def sync_retry_dead(self) -> int:
        def retry(db: sqlite3.Connection) -> int:
            ids = [r[0] for r in db.execute("SELECT DISTINCT memory_id FROM outbox WHERE dead = 1")]
            db.execute(
                "UPDATE outbox SET dead = 0, attempts = 0, next_attempt_at = 0, last_error = NULL "
                "WHERE dead = 1"
            )
            for memory_id in ids:
                db.execute(
                    "UPDATE memories SET sync_state = 'sync_pending' WHERE id = ?", (memory_id,)
                )
            return len(ids)

        return self._in_transaction(retry)

    # -- pull -----------------------------------------------------------------

    def sync_read_meta(self) -> tuple[str | None, str]:
        row = (
            self._sync_db()
            .execute("SELECT value FROM meta WHERE key = ?", (_CURSOR_KEY,))
            .fetchone()
        )
        return (row[0] if row else None), self.origin

    def sync_apply_changes(self, request: ApplyChanges) -> int:
        memories: tuple[WireMemory, ...] = request.memories

        def apply(db: sqlite3.Connection) -> int:
            changed = sum(self._apply_remote(db, memory) for memory in memories)
            if request.cursor is None:
                db.execute("DELETE FROM meta WHERE key = ?", (_CURSOR_KEY,))
            else:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (_CURSOR_KEY, request.cursor),
                )
            return changed

        return self._in_transaction(apply)

    def _apply_remote(self, db: sqlite3.Connection, remote: WireMemory) -> int:
        """Last writer wins by (version, origin); returns 1 if the local file changed."""
        # The hybrid clock's receive rule: a replica whose wall clock is behind the
        # writer's (another machine) would otherwise mint versions older than what it
        # just pulled, and its forget of that memory, or the tag union it writes next,
        # would lose to the very write it answers (the hub calls it stale).
        self.clock.observe(remote.version)
        local = db.execute(
            "SELECT version, origin, deleted, content_hash, tags FROM memories WHERE id = ?",
            (remote.id,),
        ).fetchone()
        remote_tags = sorted(remote.tags)
        if local is not None:
            local_version, local_origin, local_deleted, local_hash, local_tags_json = local
            if (remote.version, remote.origin) <= (local_version, local_origin):
                return 0
            merged = remote_tags
            if not remote.deleted and not local_deleted and local_hash == remote.content_hash:
                merged = sorted(set(remote_tags) | set(json.loads(local_tags_json)))
            self._overwrite(db, remote, merged)
            if merged != remote_tags:
                self._write_tags(db, remote.id, merged)
            return 1
        if not remote.deleted:
            twin = db.execute(
                "SELECT id, tags FROM memories WHERE namespace = ? AND content_hash = ? "
                "AND deleted = 0",
                (remote.namespace, remote.content_hash),
            ).fetchone()
            if twin is not None:
                # Our own copy of this content under another id (not yet pushed, or
                # pushed and refused as a duplicate): it becomes the hub's memory.
                twin_id, twin_tags = twin
                db.execute("DELETE FROM outbox WHERE memory_id = ?", (twin_id,))
                db.execute("DELETE FROM memories WHERE id = ?", (twin_id,))
                merged = sorted(set(remote_tags) | set(json.loads(twin_tags)))
                self._insert_remote(db, remote, merged)
                if merged != remote_tags:
                    self._write_tags(db, remote.id, merged)
                return 1
        self._insert_remote(db, remote, remote_tags)
        return 1

    @staticmethod
    def _overwrite(db: sqlite3.Connection, remote: WireMemory, tags: list[str]) -> None:
        db.execute(
            "UPDATE memories SET namespace = ?, content = ?, content_hash = ?, tags = ?, "
            "metadata = ?, created_at = ?, updated_at = ?, version = ?, origin = ?, "
            "deleted = ?, sync_state = 'synced' WHERE id = ?",
            (
                remote.namespace,
                "" if remote.deleted else remote.content,
                remote.content_hash,
                json.dumps(tags),
                remote.metadata_json(),
                remote.created_at,
                remote.updated_at,
                remote.version,
                remote.origin,
                int(remote.deleted),
                remote.id,
            ),
        )
        # The hub's state supersedes any local change still queued for this memory.
        db.execute("DELETE FROM outbox WHERE memory_id = ?", (remote.id,))

    @staticmethod
    def _insert_remote(db: sqlite3.Connection, remote: WireMemory, tags: list[str]) -> None:
        db.execute(
            "INSERT INTO memories(id, namespace, content, content_hash, tags, metadata, "
            "created_at, updated_at, version, origin, deleted, sync_state) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?, 'synced')",
            (
                remote.id,
                remote.namespace,
                "" if remote.deleted else remote.content,
                remote.content_hash,
                json.dumps(tags),
                remote.metadata_json(),
                remote.created_at,
                remote.updated_at,
                remote.version,
                remote.origin,
                int(remote.deleted),
            ),
        )

    # -- lease and digest -------------------------------------------------------

    def sync_acquire_lease(self, request: AcquireLease) -> tuple[bool, str, float]:
        def take(db: sqlite3.Connection) -> tuple[bool, str, float]:
            # The monotonic clock, shared by every process of one machine (the lease
            # is between processes on one file): a wall-clock jump neither extends
            # nor cuts a lease. The sim sweep found takeovers late by the size of a
            # backwards wall-clock jump before this.
            now = self.runtime.monotonic()
            rows = dict(
                db.execute(
                    "SELECT key, value FROM meta WHERE key IN (?, ?)",
                    (_LEASE_HOLDER, _LEASE_EXPIRES),
                ).fetchall()
            )
            holder = rows.get(_LEASE_HOLDER)
            expires = float(rows.get(_LEASE_EXPIRES, 0))
            # A lease ending further ahead than one ttl was written before this
            # machine's monotonic clock restarted (a reboot): it is stale.
            live = now < expires <= now + 2 * request.ttl
            if holder not in (None, request.holder) and live:
                return False, str(holder), expires
            expires = now + request.ttl
            db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(_LEASE_HOLDER, request.holder), (_LEASE_EXPIRES, repr(expires))],
            )
            return True, request.holder, expires

        return self._in_transaction(take)

    def sync_release_lease(self, request: ReleaseLease) -> bool:
        def release(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM meta WHERE key = ? AND value = ?", (_LEASE_HOLDER, request.holder)
            )
            return cursor.rowcount > 0

        return self._in_transaction(release)

    def sync_local_digest(self, request: ReadLocalDigest) -> tuple[DigestRow, ...]:
        self._flush_for_read()
        rows = (
            self._sync_db()
            .execute(
                "SELECT id, content_hash, version, origin, deleted FROM memories "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (request.after or "", request.limit),
            )
            .fetchall()
        )
        return tuple(DigestRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows)

    def sync_dispatch(self, message: Any, max_attempts: int) -> Any:
        """Serve one sync request; ``NotImplemented`` if it is not one."""
        match message:
            case FetchOutbox():
                return self.sync_fetch_outbox(message)
            case RecordPush():
                return self.sync_record_push(message, max_attempts)
            case ApplyChanges():
                return self.sync_apply_changes(message)
            case AcquireLease():
                return self.sync_acquire_lease(message)
            case ReleaseLease():
                return self.sync_release_lease(message)
            case ReadLocalDigest():
                return self.sync_local_digest(message)
            case RequeueForPush():
                return self.sync_requeue(message)
        return NotImplemented
