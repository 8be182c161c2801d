"""A replica's SQL: :class:`LocalDatabase`, plain logic over one SQLite connection.

Everything a replica file is asked: its preparation (origin, clock resume,
PRAGMAs), the group-committed batch of stores and forgets, the reads, and the
sync side (outbox, push outcomes, pulled pages, the lease, the digest). No
actor code: its one owner, :class:`~actors.store.StoreActor`, decides when
each call runs; tests drive it directly. Not thread-safe, like the
connection it holds. Ids, time and jitter come in as callables from the
owner's runtime, so the simulation's seeded runtime drives it as it drives
any actor.

Why every write goes through the one :meth:`LocalDatabase.transaction`:
several processes may write one file, all under the file's one origin, each
with its own hybrid logical clock. Only inside a write transaction can a
process read the others' clocks without a race: after ``BEGIN IMMEDIATE`` it
holds the write lock, so it reads the last version any process recorded
(``meta.hlc``), moves its clock past it, and records its own before COMMIT.
A write that skipped this could mint the same (version, origin) as another
process within one millisecond, and a forget would tie with the store it
forgets (found by the lease sweep). So the group commit and every sync write
share that one way in, which also owns COMMIT and ROLLBACK.

Sync writes are each one short transaction (a page of changes, a batch of
push outcomes), so a resync never holds the write lock for long and local
stores stay fast meanwhile.

Conflict rule (the same as the hub's): last writer wins by ``(version,
origin)``. Two extra rules make replicas converge without losing data:

- *content dedup across replicas*: a memory whose content is already live in
  the namespace under another id takes the hub's id (it is re-keyed);
- *tags only grow*: when both sides hold the same live content with
  different tags, the winner gets the union, as a new local version that is
  pushed back, so every replica ends with every tag.

Errors: the batch commit and the reads raise ``sqlite3.Error``, which the
owner's group commit retries (busy) or translates; the sync writes answer
with :class:`~actors.errors.StorageBusy` or
:class:`~actors.errors.StorageError` themselves, because the SyncActor only
retries on its next round; :meth:`LocalDatabase.open` raises ``StorageError``,
``StorageBusy`` (another process held the write lock throughout) or
:class:`~actors.errors.SchemaError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from actors import keyword_search, session_log
from actors._sqlite import CommitOutcomeUnknown, Connect, Synchronous, is_busy
from actors._sqlite import connect as sqlite_connect
from actors.bm25 import Bm25
from actors.errors import InvalidMemory, MemoryNotFound, SchemaError, StorageBusy, StorageError
from actors.messages import (
    AppendSessionItems,
    ClearSession,
    ForgetMemory,
    ImportMemories,
    PopSessionItem,
    RetagMemory,
    StoreMemory,
    WriteRequest,
)
from actors.migrations import LATEST_VERSION
from actors.model import (
    CountResult,
    EmbedItem,
    ForgetResult,
    HybridClock,
    Memory,
    MemoryPage,
    MemorySyncState,
    RecallHit,
    SemanticQuery,
    StoredVector,
    StoreReceipt,
    keyed_memory_id,
    namespace_prefix_range,
)
from actors.portable import ImportCounts
from actors.sync_model import (
    OWNER_HOLDER,
    DeadLetter,
    DeadLetters,
    DigestRow,
    OutboxEntry,
    PushOutcome,
)
from actors.wire import WireMemory

__all__ = ["DatabaseError", "LocalDatabase"]

logger = logging.getLogger(__name__)

#: What the batch commit and the reads raise: the owner tells busy from the rest
#: with :func:`actors._sqlite.is_busy` (only this module names ``sqlite3``).
DatabaseError = sqlite3.Error

_MEMORY_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, sync_state, key"
)

#: One row of a memories INSERT, matching _MEMORY_COLUMNS (``deleted`` is 0).
_MEMORY_VALUES = "(?,?,?,?,?,?,?,?,?,?,0,?,?)"
#: Rows per multi-row statement: 11 parameters a row stays far below SQLite's
#: 32,766-parameter limit, and a batch is rarely larger (one row per writer).
_SQL_CHUNK = 256
#: Ids per ``IN (...)`` list: far below SQLite's 32,766-parameter limit.
_IN_CHUNK = 500

#: A keyed store: insert, or replace in place. A replacement keeps ``created_at``;
#: a revival (the key was forgotten) starts a new life with a new one.
_UPSERT_KEYED = (
    f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES {_MEMORY_VALUES} "
    "ON CONFLICT(id) DO UPDATE SET content = excluded.content, "
    "content_hash = excluded.content_hash, tags = excluded.tags, metadata = excluded.metadata, "
    "created_at = CASE WHEN memories.deleted THEN excluded.created_at "
    "ELSE memories.created_at END, "
    "updated_at = excluded.updated_at, version = excluded.version, origin = excluded.origin, "
    "deleted = 0, sync_state = excluded.sync_state, key = excluded.key"
)
_ENQUEUE = "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, ?, ?, ?)"
_GET_META = "SELECT value FROM meta WHERE key = ?"
_PUT_META = (
    "INSERT INTO meta(key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
#: A multi-row INSERT of pulled or imported rows: add one ``_PULLED_VALUES`` per row.
_INSERT_PULLED = (
    "INSERT INTO memories(id, namespace, content, content_hash, tags, metadata, "
    "created_at, updated_at, version, origin, deleted, key, sync_state) VALUES "
)
_PULLED_VALUES = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"

#: Which of some ids have an outbox row (live or dead), for :meth:`LocalDatabase._which`.
_QUEUED = "SELECT DISTINCT memory_id FROM outbox WHERE memory_id IN"

_CURSOR_KEY = "pull_cursor"
_LEASE_HOLDER = "sync_lease_holder"
_LEASE_EXPIRES = "sync_lease_expires"
_CLOCK_KEY = "hlc"
#: Each writer's commit mark (:meth:`LocalDatabase.transaction`): ``commit:<writer id>``.
_MARK_PREFIX = "commit:"
#: A mark not rewritten for a day is a dead writer's (killed: nobody deleted it).
_STALE_MARK_MS = 86_400_000
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 60.0


class LocalDatabase:
    """A replica's data logic over one connection. Not thread-safe: one owner at a time.

    Build it with :meth:`open`. ``new_id`` mints memory ids, ``wall_time``
    stamps rows and versions, ``monotonic`` times the sync lease and
    ``jitter`` (uniform in [0, 1)) spreads push retries: the owner's
    runtime supplies all four. ``sync_configured`` says whether a new local
    write waits for a push (``sync_pending``) or is final (``committed``).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        origin: str,
        clock: HybridClock,
        new_id: Callable[[], str],
        wall_time: Callable[[], float],
        monotonic: Callable[[], float],
        jitter: Callable[[], float],
        sync_configured: bool = False,
        writer: str | None = None,
    ) -> None:
        self.conn = conn
        self.path = path
        self.origin = origin
        self.clock = clock
        self.sync_configured = sync_configured
        self._new_id = new_id
        self._wall_time = wall_time
        self._monotonic = monotonic
        self._jitter = jitter
        self._write_state: MemorySyncState = "sync_pending" if sync_configured else "committed"
        #: This writer's commit mark (see :meth:`_mark`): its row, and transactions so far.
        #: ``writer`` names it: it needs only to differ from every other writer's. The
        #: StoreActor draws it from the runtime (a seeded run replays it); not from
        #: ``new_id``, which would shift the ids a seeded run mints.
        self._mark_key = _MARK_PREFIX + (writer or os.urandom(8).hex())
        self._marks = 0
        # Made on first search, by the owner's thread: sqlite3 connections stay on theirs.
        self._snippets: keyword_search.Snippets | None = None
        # Counts of a word's holders, kept across searches while the file is unchanged.
        self._bm25: Bm25 | None = None

    def __repr__(self) -> str:
        return f"<LocalDatabase {self.path} origin={self.origin} clock={self.clock.version}>"

    @classmethod
    def open(
        cls,
        path: str,
        *,
        new_id: Callable[[], str],
        wall_time: Callable[[], float],
        monotonic: Callable[[], float],
        jitter: Callable[[], float],
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        connect: Connect | None = None,
        sync_configured: bool = False,
        writer: str | None = None,
    ) -> LocalDatabase:
        """Open a migrated file, mint its origin on first open and resume its clock.

        Raises StorageError (cannot open or prepare), StorageBusy (the file
        stayed locked by another process) or SchemaError (not
        migrated: the owner must not write a schema it does not know); the
        connection is closed on any failure.
        """
        opener = connect or (lambda p: sqlite_connect(p, busy_timeout=busy_timeout))
        try:
            conn = opener(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {path}: {exc}") from exc
        try:
            origin, last = _prepare(conn, path, synchronous, new_id, int(wall_time() * 1000))
        except BaseException:
            conn.close()
            raise
        return cls(
            conn,
            path=path,
            origin=origin,
            clock=HybridClock.resume(last),
            new_id=new_id,
            wall_time=wall_time,
            monotonic=monotonic,
            jitter=jitter,
            sync_configured=sync_configured,
            writer=writer,
        )

    def close(self) -> None:
        if self._snippets is not None:
            self._snippets.close()
        if self._bm25 is not None:
            self._bm25.close()
        self.conn.close()

    # -- the one way to write ------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``, catch up with the file's clock, run the body, COMMIT.

        Any exception rolls back and propagates (a failed rollback is logged:
        the body's error is the one that explains). See the module docstring
        for why the clock lives here.
        """
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        try:
            seen = self._clock_in()
            yield
            self._clock_out(seen)
            self._commit(self._mark())
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("%r: rollback failed", self)
            raise

    def _mark(self) -> str:
        """Inside the transaction: write this writer's next commit mark; return it.

        Why: a COMMIT can raise after it reached the file (an I/O error while
        syncing or cleaning up), and then only the file knows whether the
        transaction stands. Retrying its writes one by one, as after a
        rollback, would apply it twice: content dedup absorbs a store, but a
        session append would be in its log twice, and acknowledged. The mark
        is one row per writer (another process's commit cannot overwrite it
        between this COMMIT and the read-back) and unique per transaction.
        """
        self._marks += 1
        mark = f"{int(self._now() * 1000)}:{self._marks}"
        self.conn.execute(_PUT_META, (self._mark_key, mark))
        return mark

    def _commit(self, mark: str) -> None:
        """COMMIT; when it raises, tell from the mark whether the transaction reached the file.

        Returns when it did (the caller answers its writes as committed);
        re-raises the COMMIT's error when it did not (rolled back, or still
        open: the caller rolls back); raises :class:`CommitOutcomeUnknown`
        when the mark cannot be read either.
        """
        db = self.conn
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                raise  # SQLite kept it open (BUSY at COMMIT): nothing reached the file
            try:
                row = db.execute(_GET_META, (self._mark_key,)).fetchone()
            except sqlite3.Error as unread:
                raise CommitOutcomeUnknown(
                    f"COMMIT failed ({exc}) and whether it reached {self.path} cannot be "
                    f"read ({unread})"
                ) from exc
            if row is None or row[0] != mark:
                raise  # rolled back: none of it is in the file
            logger.warning(
                "%r: COMMIT raised (%s) after the transaction reached the file; it stands",
                self,
                exc,
            )

    def _clock_in(self) -> str:
        """Move the clock past the last version any process recorded; return that record."""
        row = self.conn.execute(_GET_META, (_CLOCK_KEY,)).fetchone()
        seen: str = row[0] if row else ""
        self.clock.observe(seen)
        return seen

    def _clock_out(self, seen: str) -> None:
        """Record this transaction's last version for the other processes (if it moved)."""
        version = self.clock.version
        if version != seen:
            self.conn.execute(_PUT_META, (_CLOCK_KEY, version))

    @contextlib.contextmanager
    def _sync_transaction(self) -> Iterator[None]:
        """A transaction whose SQLite errors become ours: the SyncActor retries next round."""
        try:
            with self.transaction():
                yield
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise StorageBusy(f"database busy during sync ({exc}); retried later") from exc
            if isinstance(exc, CommitOutcomeUnknown):  # sync writes are safe to repeat
                raise StorageError(f"sync write: {exc}; retried next round") from exc
            raise StorageError(f"sync write rolled back: {exc}") from exc

    def _now(self) -> float:
        return self._wall_time()

    def _tick(self) -> str:
        return self.clock.tick(int(self._now() * 1000))

    # -- local writes (group-committed) ----------------------------------------------------

    def commit_writes(self, batch: Sequence[WriteRequest]) -> list[object]:
        """Apply a batch of stores and forgets in one transaction: one result per write.

        A result is the value to answer with or the exception to answer with
        (an unknown id). Raises ``sqlite3.Error`` with nothing written.
        """
        with self.transaction():
            return self.apply_writes(batch, self._now())

    def apply_writes(self, batch: Sequence[WriteRequest], now: float) -> list[object]:
        """Inside a transaction: apply in arrival order, new memories in multi-row INSERTs.

        Why: every ``execute`` releases and retakes the GIL, and with 64 writer
        threads each retake waits behind callers' Python work. One dedup SELECT
        and two multi-row INSERTs per batch, instead of three statements per
        store, took 64 writers from ~6,500 to ~8,200 stores/s (FULL) and
        ~5,700 to ~8,400 (NORMAL) on 2 cores (docs/performance.md).

        The result is the same as :meth:`apply_write` one by one (checked by
        ``tests/test_store_batch.py``): a store whose (namespace, hash) is new
        to the file and to the batch is a plain insert; anything else (a
        duplicate, a forget, a session-log write) first writes the inserts gathered so far, then
        goes through :meth:`apply_write`, so it sees every earlier write of the
        batch. Ids and versions are minted in arrival order, as before.
        """
        stores = [r for r in batch if isinstance(r, StoreMemory) and r.key is None]
        live = self._live_keys((s.namespace, s.content_hash) for s in stores) if stores else set()
        seen: set[tuple[str, str]] = set()
        rows: list[tuple[Any, ...]] = []
        outbox: list[tuple[Any, ...]] = []
        results: list[object] = []
        state = self._write_state
        now_ms = int(now * 1000)
        for request in batch:
            if isinstance(request, StoreMemory) and request.key is None:
                key = (request.namespace, request.content_hash)
                fresh = key not in live and key not in seen
                seen.add(key)
                if fresh:
                    memory_id = self._new_id()
                    version = self.clock.tick(now_ms)
                    rows.append(self._new_row(request, memory_id, version, now))
                    outbox.append((memory_id, "upsert", version, now))
                    results.append(
                        StoreReceipt(memory_id, request.namespace, False, request.tags, state)
                    )
                    continue
            self._insert_rows(rows, outbox)
            results.append(self.apply_write(request, now))
        self._insert_rows(rows, outbox)
        return results

    def apply_write(self, request: WriteRequest, now: float) -> object:
        """Inside a transaction: one write, the reference for :meth:`apply_writes`."""
        if isinstance(request, StoreMemory):
            if request.key is not None:
                return self._apply_keyed_store(request, request.key, now)
            return self._apply_store(request, now)
        if isinstance(request, ForgetMemory):
            return self._apply_forget(request, now)
        if isinstance(request, ImportMemories):
            return self._apply_import(request.memories, now)
        if isinstance(request, RetagMemory):
            return self._apply_retag(request, now)
        return self._apply_session_write(request, now)

    def _apply_session_write(self, request: WriteRequest, now: float) -> object:
        """The session log's writes (:mod:`actors.session_log`): no clock, no outbox."""
        if isinstance(request, AppendSessionItems):
            return session_log.append(self.conn, request.session_id, request.items, now)
        if isinstance(request, PopSessionItem):
            return session_log.pop(self.conn, request.session_id)
        if isinstance(request, ClearSession):
            return session_log.clear(self.conn, request.session_id)
        raise TypeError(f"unknown write {request!r}")

    def _live_keys(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of the (namespace, content hash) ``keys`` that a live unkeyed memory here has."""
        by_namespace: dict[str, list[str]] = {}
        for namespace, digest in keys:
            by_namespace.setdefault(namespace, []).append(digest)
        live: set[tuple[str, str]] = set()
        for namespace, digests in by_namespace.items():
            for part in _chunks(digests):
                found = self.conn.execute(
                    "SELECT content_hash FROM memories WHERE namespace = ? AND deleted = 0 "
                    f"AND key IS NULL AND content_hash IN ({_marks(part)})",
                    [namespace, *part],
                )
                live.update((namespace, digest) for (digest,) in found)
        return live

    def _insert_rows(self, rows: list[tuple[Any, ...]], outbox: list[tuple[Any, ...]]) -> None:
        """Insert gathered memory rows and their outbox rows (FTS5 triggers fire per row)."""
        for start in range(0, len(rows), _SQL_CHUNK):
            part = rows[start : start + _SQL_CHUNK]
            self.conn.execute(
                f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES "
                + ",".join([_MEMORY_VALUES] * len(part)),
                [value for row in part for value in row],
            )
        self._enqueue(outbox)
        rows.clear()
        outbox.clear()

    def _enqueue(self, outbox: list[tuple[Any, ...]]) -> None:
        """Insert outbox rows ``(memory_id, op, version, enqueued_at)``, many per statement."""
        for start in range(0, len(outbox), _SQL_CHUNK):
            box = outbox[start : start + _SQL_CHUNK]
            self.conn.execute(
                "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES "
                + ",".join(["(?,?,?,?)"] * len(box)),
                [value for row in box for value in row],
            )

    def _apply_store(self, req: StoreMemory, now: float) -> StoreReceipt:
        db = self.conn
        existing = db.execute(
            "SELECT id, tags FROM memories "
            "WHERE namespace = ? AND content_hash = ? AND deleted = 0 AND key IS NULL",
            (req.namespace, req.content_hash),
        ).fetchone()
        state = self._write_state
        if existing is not None:
            memory_id, tags_json = existing
            old_tags = tuple(json.loads(tags_json))
            merged = tuple(sorted(set(old_tags) | set(req.tags)))
            if merged != old_tags:
                version = self.clock.tick(int(now * 1000))
                db.execute(
                    "UPDATE memories SET tags = ?, updated_at = ?, version = ?, origin = ?, "
                    "sync_state = ? WHERE id = ?",
                    (json.dumps(merged), now, version, self.origin, state, memory_id),
                )
                db.execute(_ENQUEUE, (memory_id, "upsert", version, now))
            return StoreReceipt(memory_id, req.namespace, True, merged, state)
        memory_id = self._new_id()
        version = self.clock.tick(int(now * 1000))
        db.execute(
            f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES {_MEMORY_VALUES}",
            self._new_row(req, memory_id, version, now),
        )
        db.execute(_ENQUEUE, (memory_id, "upsert", version, now))
        return StoreReceipt(memory_id, req.namespace, False, req.tags, state)

    def _new_row(
        self, req: StoreMemory, memory_id: str, version: str, now: float
    ) -> tuple[Any, ...]:
        """The ``memories`` row of a local store (``_MEMORY_COLUMNS``' values, written now)."""
        return (
            memory_id,
            req.namespace,
            req.content,
            req.content_hash,
            json.dumps(req.tags) if req.tags else "[]",
            req.metadata_json,
            now,
            now,
            version,
            self.origin,
            self._write_state,
            req.key,
        )

    def _apply_keyed_store(self, req: StoreMemory, key: str, now: float) -> StoreReceipt:
        """Create, replace or revive the memory under ``(namespace, key)``; its id is fixed.

        Always a new version, even for the same content: the caller asked for
        a write, and its time is news.
        """
        db = self.conn
        memory_id = keyed_memory_id(req.namespace, key)
        state = self._write_state
        version = self.clock.tick(int(now * 1000))
        row = db.execute("SELECT deleted FROM memories WHERE id = ?", (memory_id,)).fetchone()
        db.execute(_UPSERT_KEYED, self._new_row(req, memory_id, version, now))
        db.execute(_ENQUEUE, (memory_id, "upsert", version, now))
        replaced = row is not None and not row[0]
        return StoreReceipt(memory_id, req.namespace, False, req.tags, state, key, replaced)

    def _apply_forget(self, req: ForgetMemory, now: float) -> object:
        db = self.conn
        row = db.execute("SELECT deleted FROM memories WHERE id = ?", (req.memory_id,)).fetchone()
        if row is None:
            return MemoryNotFound(f"no memory has {req.label or 'id ' + req.memory_id}")
        if row[0]:
            return ForgetResult(req.memory_id, forgotten=True, already_forgotten=True)
        version = self.clock.tick(int(now * 1000))
        # A tombstone keeps id and version (so the forget can sync) and erases the content.
        db.execute(
            "UPDATE memories SET deleted = 1, content = '', metadata = '{}', tags = '[]', "
            "updated_at = ?, version = ?, origin = ?, sync_state = ? WHERE id = ?",
            (now, version, self.origin, self._write_state, req.memory_id),
        )
        db.execute(_ENQUEUE, (req.memory_id, "delete", version, now))
        return ForgetResult(req.memory_id, forgotten=True, already_forgotten=False)

    def _apply_retag(self, req: RetagMemory, now: float) -> object:
        try:
            memory = self.get(req.memory_id)
        except MemoryNotFound as exc:
            return exc
        if memory.tags == req.tags:
            return memory
        version = self.clock.tick(int(now * 1000))
        state = self._write_state
        self.conn.execute(
            "UPDATE memories SET tags = ?, updated_at = ?, version = ?, origin = ?, "
            "sync_state = ? WHERE id = ?",
            (json.dumps(req.tags), now, version, self.origin, state, req.memory_id),
        )
        self.conn.execute(_ENQUEUE, (req.memory_id, "upsert", version, now))
        return attrs.evolve(
            memory,
            tags=req.tags,
            updated_at=now,
            version=version,
            origin=self.origin,
            sync_state=state,
            sync_error=None,
        )

    # -- reads ----------------------------------------------------------------------------

    def get(self, memory_id: str, label: str | None = None) -> Memory:
        """One memory by id; MemoryNotFound if unknown or forgotten.

        ``label``: how the caller named it (a key), for the error message.
        """
        row = self.conn.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)
        ).fetchone()
        if row is None:
            raise MemoryNotFound(f"no memory has {label or 'id ' + memory_id}")
        memory = _row_to_memory(row)
        if memory.deleted:
            named = f" ({label})" if label else ""
            raise MemoryNotFound(f"memory {memory_id}{named} was forgotten")
        if memory.sync_state == "sync_failed":
            error = self.conn.execute(
                "SELECT last_error FROM outbox WHERE memory_id = ? AND dead = 1 "
                "ORDER BY seq DESC LIMIT 1",
                (memory_id,),
            ).fetchone()
            memory = attrs.evolve(memory, sync_error=error[0] if error else "push failed")
        return memory

    def index_segments(self) -> int:
        """How many segments the keyword index is in (see :meth:`merge_index_step`)."""
        return keyword_search.index_segments(self.conn)

    def merge_index_step(self, *, first: bool) -> bool:
        """One bounded step of merging the keyword index into one segment, in a transaction
        of its own; whether more remains. Rankings are the same before and after."""
        with self.transaction():
            return keyword_search.merge_step(self.conn, first=first)

    def search(
        self,
        query: str,
        *,
        namespace: str | None,
        tags: tuple[str, ...],
        limit: int,
        namespace_prefix: str | None = None,
    ) -> tuple[RecallHit, ...]:
        """Keyword search (FTS5, BM25): any word of ``query``, best first.

        The cost per query is bounded: see :mod:`actors.keyword_search`.
        """
        where, params = _filters(namespace, tags, prefix=namespace_prefix)
        if self._snippets is None:
            self._snippets = keyword_search.Snippets()
        if self._bm25 is None:
            self._bm25 = Bm25()
        return keyword_search.search(
            self.conn, query, where, params, limit, self._snippets, self._bm25
        )

    def list_memories(
        self,
        *,
        namespace: str | None,
        tags: tuple[str, ...],
        before: str | None,
        limit: int,
        namespace_prefix: str | None = None,
    ) -> MemoryPage:
        """Live memories, newest first by creation time, a page at a time.

        ``before`` is the id of the last memory of the previous page: the page
        continues after its (created_at, id). Creation time, not the id,
        orders the list because a keyed memory's id is derived from its key.
        """
        where, params = _filters(namespace, tags, prefix=namespace_prefix)
        if before is not None:
            mark = self.conn.execute(
                "SELECT created_at FROM memories WHERE id = ?", (before,)
            ).fetchone()
            if mark is None:
                raise InvalidMemory(
                    f"before: no memory has id {before} (pass the next_before of a page)"
                )
            where += " AND (m.created_at, m.id) < (?, ?)"
            params.extend((mark[0], before))
        rows = self.conn.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.deleted = 0{where} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
            [*params, limit + 1],
        ).fetchall()
        memories = tuple(_row_to_memory(row) for row in rows[:limit])
        more = len(rows) > limit
        return MemoryPage(memories, memories[-1].id if more and memories else None)

    def count(
        self,
        *,
        namespace: str | None,
        tags: tuple[str, ...],
        namespace_prefix: str | None = None,
    ) -> CountResult:
        """Counts by namespace, tombstones, the outbox, and what this file is."""
        db = self.conn
        where, params = _filters(namespace, tags, prefix=namespace_prefix)
        by_namespace = dict(
            db.execute(
                f"SELECT m.namespace, count(*) FROM memories m WHERE m.deleted = 0{where} "
                "GROUP BY m.namespace ORDER BY m.namespace",
                params,
            ).fetchall()
        )
        forgotten = db.execute(
            f"SELECT count(*) FROM memories m WHERE m.deleted = 1{where}", params
        ).fetchone()[0]
        pending, dead = db.execute(
            "SELECT coalesce(sum(dead = 0), 0), coalesce(sum(dead = 1), 0) FROM outbox"
        ).fetchone()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        sync = "remote configured" if self.sync_configured else "local-only: no remote configured"
        return CountResult(
            total=sum(by_namespace.values()),
            by_namespace=by_namespace,
            forgotten=forgotten,
            outbox_pending=pending,
            dead_letters=dead,
            schema_version=version,
            database=self.path,
            sync=sync,
        )

    def session_items(self, session_id: str, limit: int | None) -> list[Any]:
        """A session's latest ``limit`` items (all when None), decoded, oldest first."""
        return session_log.read(self.conn, session_id, limit)

    # -- sync: push -----------------------------------------------------------------------

    def fetch_outbox(self, limit: int) -> tuple[OutboxEntry, ...]:
        """The oldest due memories, each with its latest state and the rows it settles.

        The outbox is walked in ``seq`` order (its primary key), a few rows per
        memory wanted, and grouped here: a ``GROUP BY memory_id`` sorted the
        whole outbox on every fetch. A memory's rows beyond the rows read are
        settled by a later push of the same state (the hub answers unchanged).
        """
        db = self.conn
        due: dict[str, tuple[int, int]] = {}
        for seq, memory_id, attempts in db.execute(
            "SELECT seq, memory_id, attempts FROM outbox "
            "WHERE +dead = 0 AND next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (self._now(), limit * 4),
        ):
            if memory_id in due:
                due[memory_id] = (seq, max(attempts, due[memory_id][1]))
            elif len(due) < limit:
                due[memory_id] = (seq, attempts)
        rows: dict[str, tuple[Any, ...]] = {}
        for part in _chunks(list(due)):
            for row in db.execute(
                "SELECT id, namespace, content, content_hash, tags, metadata, created_at, "
                f"updated_at, version, origin, deleted, key FROM memories "
                f"WHERE id IN ({_marks(part)})",
                part,
            ):
                rows[row[0]] = row
        entries = []
        for memory_id, (max_seq, attempts) in due.items():
            row = rows.get(memory_id)
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
                key=row[11],
            )
            entries.append(OutboxEntry(memory, max_seq, attempts))
        return tuple(entries)

    def record_push(self, outcomes: Sequence[PushOutcome], max_attempts: int) -> int:
        """Settle, re-key or schedule a retry of each pushed memory, in one transaction.

        ``max_attempts``: a memory failing that often becomes a dead letter.
        Returns the number of outcomes recorded.
        """
        with self._sync_transaction():
            settled: list[tuple[str, int]] = []
            rekeyed: list[str] = []
            failed: list[PushOutcome] = []
            for outcome in outcomes:
                if outcome.status == "synced":
                    settled.append((outcome.memory_id, outcome.max_seq))
                elif outcome.status == "rekey" and outcome.canonical_id:
                    self._rekey(outcome.memory_id, outcome.canonical_id, outcome.hub_version)
                    rekeyed.append(outcome.memory_id)
                elif outcome.status in ("failed", "dead"):
                    failed.append(outcome)
            self._record_failures(failed, max_attempts)
            # A re-keyed id has no memory row left: none of its outbox rows can push.
            self._drop_outbox_rows(rekeyed)
            self._settle(settled)
            return len(outcomes)

    def _record_failures(self, failed: list[PushOutcome], max_attempts: int) -> None:
        """One more attempt for each failed memory's rows; a dead letter at the cap.

        The rows are found with one outbox scan per chunk and updated by
        ``seq`` (see :meth:`_settle` for why never one scan per memory).
        """
        if not failed:
            return
        db = self.conn
        now = self._now()
        rows: dict[str, list[tuple[int, int]]] = {}
        for part in _chunks([outcome.memory_id for outcome in failed]):
            for memory_id, seq, attempts in db.execute(
                "SELECT memory_id, seq, attempts FROM outbox WHERE +dead = 0 "
                f"AND memory_id IN ({_marks(part)})",
                part,
            ):
                rows.setdefault(memory_id, []).append((seq, attempts))
        for outcome in failed:
            mine = [
                (seq, n) for seq, n in rows.get(outcome.memory_id, ()) if seq <= outcome.max_seq
            ]
            attempts = max((n for _, n in mine), default=0) + 1
            dead = outcome.status == "dead" or attempts >= max_attempts
            if outcome.retry_in is not None:
                # The SyncActor's schedule (RemoteConfig.backoff, max_backoff).
                delay = outcome.retry_in
            else:
                delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempts - 1))
                delay *= 0.5 + self._jitter()
            db.executemany(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, dead = ? "
                "WHERE seq = ?",
                [(attempts, now + delay, outcome.error, int(dead), seq) for seq, _ in mine],
            )
            if dead:
                db.execute(
                    "UPDATE memories SET sync_state = 'sync_failed' WHERE id = ?",
                    (outcome.memory_id,),
                )

    def _settle(self, settled: list[tuple[str, int]]) -> None:
        """Delete the pushed outbox rows; mark ``synced`` the memories with none left.

        Set-wise because the outbox has no index on ``memory_id``: asking "any
        row left for this memory?" once per memory scans the outbox once per
        memory, quadratic in a backlog. The deletes walk the primary key
        (``seq <= max_seq``); the check is one scan per chunk of memories.
        (Measured: no difference up to a 48k backlog, where the push itself
        dominates; an index on ``outbox(memory_id)`` would be the lasting fix.)
        """
        if not settled:
            return
        self.conn.executemany(
            "DELETE FROM outbox WHERE seq <= ? AND memory_id = ?",
            [(max_seq, memory_id) for memory_id, max_seq in settled],
        )
        ids = [memory_id for memory_id, _ in settled]
        left = self._which(_QUEUED, ids)
        self.conn.executemany(
            "UPDATE memories SET sync_state = 'synced' WHERE id = ?",
            [(memory_id,) for memory_id in ids if memory_id not in left],
        )

    def _which(self, select: str, ids: list[str]) -> set[str]:
        """Those of ``ids`` that ``select`` (ending in ``IN``) finds: one query per chunk."""
        found: set[str] = set()
        for part in _chunks(ids):
            found.update(row[0] for row in self.conn.execute(f"{select} ({_marks(part)})", part))
        return found

    def _drop_outbox_rows(self, ids: list[str], *, below: int | None = None) -> None:
        """Delete the outbox rows of ``ids`` (those with ``seq <= below``, if given).

        One scan of the outbox per chunk of ids: it has no index on ``memory_id``.
        """
        for part in _chunks(ids):
            marks = _marks(part)
            if below is None:
                self.conn.execute(f"DELETE FROM outbox WHERE memory_id IN ({marks})", part)
            else:
                self.conn.execute(
                    f"DELETE FROM outbox WHERE seq <= ? AND memory_id IN ({marks})",
                    [below, *part],
                )

    def _rekey(self, local_id: str, canonical_id: str, hub_version: str | None) -> None:
        """The hub holds our content under ``canonical_id``: become that memory.

        The local row takes the canonical id with the hub's version and an
        empty origin (which loses every tie), so the next pull brings the
        hub's state and the tag-union rule merges our tags into it. The
        caller deletes ``local_id``'s outbox rows (with the batch's others).
        """
        db = self.conn
        self.clock.observe(hub_version)
        existing = db.execute("SELECT tags FROM memories WHERE id = ?", (canonical_id,)).fetchone()
        local = db.execute("SELECT tags FROM memories WHERE id = ?", (local_id,)).fetchone()
        if local is None:
            return
        if existing is not None:
            merged = sorted(set(json.loads(existing[0])) | set(json.loads(local[0])))
            db.execute("DELETE FROM memories WHERE id = ?", (local_id,))
            if merged != json.loads(existing[0]):
                self._write_tags(canonical_id, merged)
            return
        db.execute(
            "UPDATE memories SET id = ?, version = ?, origin = '', sync_state = 'synced' "
            "WHERE id = ?",
            (canonical_id, hub_version or "0" * 19, local_id),
        )

    def _write_tags(self, memory_id: str, tags: list[str]) -> None:
        """A tag union as a new local version, queued so the hub gets it too."""
        version = self._tick()
        now = self._now()
        self.conn.execute(
            "UPDATE memories SET tags = ?, version = ?, origin = ?, updated_at = ?, "
            "sync_state = 'sync_pending' WHERE id = ?",
            (json.dumps(tags), version, self.origin, now, memory_id),
        )
        self.conn.execute(_ENQUEUE, (memory_id, "upsert", version, now))

    def requeue(self, memory_ids: Sequence[str]) -> int:
        """Queue these memories for a push (a resync found them missing on the hub).

        Skips those already queued and dead letters (which wait for
        :meth:`retry_dead`, not for the next resync). Returns the number queued.
        """
        with self._sync_transaction():
            db = self.conn
            now = self._now()
            queued = 0
            # One scan of the outbox per chunk (see _settle).
            pending = self._which(_QUEUED, list(memory_ids))
            for memory_id in memory_ids:
                if memory_id in pending:
                    continue
                row = db.execute(
                    "SELECT version, deleted FROM memories WHERE id = ?", (memory_id,)
                ).fetchone()
                if row is None:
                    continue
                db.execute(_ENQUEUE, (memory_id, "delete" if row[1] else "upsert", row[0], now))
                db.execute(
                    "UPDATE memories SET sync_state = 'sync_pending' WHERE id = ?", (memory_id,)
                )
                queued += 1
            return queued

    def retry_dead(self) -> int:
        """Put every dead letter back in the outbox, due now; the number of memories."""
        with self._sync_transaction():
            db = self.conn
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

    # -- sync: pull -----------------------------------------------------------------------

    def dead_letters(self, limit: int) -> DeadLetters:
        """The memories whose push is dead, oldest first: one row each (its latest dead write)."""
        db = self.conn
        (total,) = db.execute(
            "SELECT count(DISTINCT memory_id) FROM outbox WHERE dead = 1"
        ).fetchone()
        rows = db.execute(
            "SELECT o.memory_id, coalesce(m.namespace, ''), o.op, o.attempts, o.last_error, "
            "o.enqueued_at FROM outbox o LEFT JOIN memories m ON m.id = o.memory_id "
            "WHERE o.seq IN (SELECT max(seq) FROM outbox WHERE dead = 1 GROUP BY memory_id) "
            "ORDER BY o.seq LIMIT ?",
            (limit,),
        ).fetchall()
        return DeadLetters(tuple(DeadLetter(*row) for row in rows), total)

    def read_sync_meta(self) -> tuple[str | None, str]:
        """The saved pull cursor (None: pull from the start) and this replica's origin."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (_CURSOR_KEY,)).fetchone()
        return (row[0] if row else None), self.origin

    def apply_changes(self, memories: Sequence[WireMemory], cursor: str | None) -> int:
        """Apply a page of the hub's feed and save ``cursor``, in one transaction.

        Returns the number of memories that changed here.
        """
        with self._sync_transaction():
            db = self.conn
            # Rows queued before this page; the page's own tag unions come after it.
            floor = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            superseded: list[str] = []
            changed = self._apply_page(memories, superseded)
            # The hub's state supersedes local changes still queued for these memories
            # (set-wise, once per page: see _settle).
            self._drop_outbox_rows(superseded, below=floor)
            if cursor is None:
                db.execute("DELETE FROM meta WHERE key = ?", (_CURSOR_KEY,))
            else:
                db.execute(_PUT_META, (_CURSOR_KEY, cursor))
            return changed

    def _apply_page(
        self,
        memories: Sequence[WireMemory],
        superseded: list[str],
        outcomes: list[str] | None = None,
        queued: list[tuple[str, str, str]] | None = None,
    ) -> int:
        """Apply a page of the feed; the number of memories that changed here.

        ``outcomes``, if given, hears one word per memory: ``inserted`` (new
        here), ``updated`` (changed here) or ``unchanged`` (an import's counts).
        ``queued``, if given (an import), makes the bulk-inserted rows local
        writes: they are written in this file's write state (not ``synced``)
        and their outbox rows, ``(id, op, version)``, are appended to it for
        the caller to insert, so a fresh import writes each row once.

        Memories new to this file, whose content is not live here either (a
        resync of a fresh replica: all of them), are inserted in bulk after one
        lookup of the page's ids and one of its content hashes; the others go
        through :meth:`apply_remote` one by one, after the bulk rows before
        them, so that each sees every earlier write of the page, except those
        the same lookup shows to be no newer than what this file holds, which
        change nothing. Same result as one by one; about 1.3× the apply rate
        (fewer statements per row).
        """
        held = self._held_versions([m.id for m in memories])
        known = set(held)
        live = self._live_keys(
            (m.namespace, m.content_hash) for m in memories if not m.deleted and m.key is None
        )
        state = "synced" if queued is None else self._write_state
        fresh: list[tuple[Any, ...]] = []
        # The clock observes the highest version seen so far only before it may tick
        # (in apply_remote) and at the end: observing a maximum is observing them all
        # (versions are fixed-width hex, so the greatest string is the greatest
        # version), without a parse of every version of a bulk page.
        seen = ""
        changed = 0
        for remote in memories:
            # Keyed memories take no part in content dedup: only their id matters.
            by_content = not remote.deleted and remote.key is None
            key = (remote.namespace, remote.content_hash)
            if remote.id not in known and not (by_content and key in live):
                seen = max(seen, remote.version)
                fresh.append(_pulled_row(remote, state))
                if queued is not None:
                    queued.append((remote.id, _outbox_op(remote), remote.version))
                changed += 1
                outcome = "inserted"
            elif (mine := held.pop(remote.id, None)) and (remote.version, remote.origin) <= mine:
                # What apply_remote would find (this file holds as new or newer), without
                # its SELECT per memory: a re-import or a replayed page is mostly this.
                seen = max(seen, remote.version)
                outcome = "unchanged"
            else:
                self._insert_pulled(fresh)
                self.clock.observe(seen)
                mark = len(superseded)
                applied = self.apply_remote(remote, superseded)
                changed += applied
                outcome = "updated" if applied else "unchanged"
                # Rows this write replaced or deleted: their versions read above are stale.
                for gone in superseded[mark:]:
                    held.pop(gone, None)
            # An id twice in one page (an import may hold it): the second is no insert.
            known.add(remote.id)
            if outcomes is not None:
                outcomes.append(outcome)
            if by_content:
                live.add(key)
        self._insert_pulled(fresh)
        self.clock.observe(seen)
        return changed

    def _held_versions(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """``(version, origin)`` of those of ``ids`` this file holds: one query per chunk."""
        held: dict[str, tuple[str, str]] = {}
        for part in _chunks(ids):
            for memory_id, version, origin in self.conn.execute(
                f"SELECT id, version, origin FROM memories WHERE id IN ({_marks(part)})", part
            ):
                held[memory_id] = (version, origin)
        return held

    def apply_remote(self, remote: WireMemory, superseded: list[str]) -> int:
        """Inside a transaction: one pulled memory, last writer wins; 1 if the file changed.

        Appends to ``superseded`` the ids whose queued outbox rows the caller
        must drop: overwritten by the hub's newer state, or replaced by it.
        The reference for the bulk path of :meth:`apply_changes`.
        """
        db = self.conn
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
        # A keyed memory is replaced whole by its last writer (tags included); the
        # tag union and the content twins below are rules of memories stored by content.
        by_content = not remote.deleted and remote.key is None
        if local is not None:
            local_version, local_origin, local_deleted, local_hash, local_tags_json = local
            if (remote.version, remote.origin) <= (local_version, local_origin):
                return 0
            merged = remote_tags
            if by_content and not local_deleted and local_hash == remote.content_hash:
                merged = sorted(set(remote_tags) | set(json.loads(local_tags_json)))
            elif by_content:
                # The content becomes live here under this id (a revival of a memory
                # forgotten here, which LWW lets win): a live copy under another id
                # merges into it, or the one-live-content index fails the page on
                # every retry and the pull stops for good.
                twin = db.execute(
                    "SELECT id, tags FROM memories WHERE namespace = ? AND content_hash = ? "
                    "AND deleted = 0 AND key IS NULL AND id != ?",
                    (remote.namespace, remote.content_hash, remote.id),
                ).fetchone()
                if twin is not None:
                    superseded.append(twin[0])
                    db.execute("DELETE FROM memories WHERE id = ?", (twin[0],))
                    merged = sorted(set(remote_tags) | set(json.loads(twin[1])))
            self._overwrite(remote, merged)
            superseded.append(remote.id)
            if merged != remote_tags:
                self._write_tags(remote.id, merged)
            return 1
        if by_content:
            twin = db.execute(
                "SELECT id, tags FROM memories WHERE namespace = ? AND content_hash = ? "
                "AND deleted = 0 AND key IS NULL",
                (remote.namespace, remote.content_hash),
            ).fetchone()
            if twin is not None:
                # Our own copy of this content under another id (not yet pushed, or
                # pushed and refused as a duplicate): it becomes the hub's memory.
                twin_id, twin_tags = twin
                superseded.append(twin_id)
                db.execute("DELETE FROM memories WHERE id = ?", (twin_id,))
                merged = sorted(set(remote_tags) | set(json.loads(twin_tags)))
                self._insert_pulled([_pulled_row(remote, "synced", merged)])
                if merged != remote_tags:
                    self._write_tags(remote.id, merged)
                return 1
        self._insert_pulled([_pulled_row(remote, "synced")])
        return 1

    def _overwrite(self, remote: WireMemory, tags: list[str]) -> None:
        self.conn.execute(
            "UPDATE memories SET namespace = ?, content = ?, content_hash = ?, tags = ?, "
            "metadata = ?, created_at = ?, updated_at = ?, version = ?, origin = ?, "
            "deleted = ?, key = ?, sync_state = 'synced' WHERE id = ?",
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
                remote.key,
                remote.id,
            ),
        )

    def _insert_pulled(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert pulled rows (FTS5 triggers fire per row) and empty ``rows``.

        Multi-row INSERTs, as the local batch does: 79-93 µs a row against
        176-305 µs with ``executemany`` (20,000 rows, FTS5 on, A/B in one
        run at a load of 8 on 2 cores): one statement per chunk, not per row.
        """
        for start in range(0, len(rows), _SQL_CHUNK):
            part = rows[start : start + _SQL_CHUNK]
            self.conn.execute(
                _INSERT_PULLED + ",".join([_PULLED_VALUES] * len(part)),
                [value for row in part for value in row],
            )
        rows.clear()

    # -- sync: lease and digest -----------------------------------------------------------

    def acquire_lease(self, holder: str, ttl: float) -> tuple[bool, str, float]:
        """Take or renew the file's sync lease: ``(held, holder, expires_at)``."""
        with self._sync_transaction():
            # The monotonic clock, shared by every process of one machine (the lease
            # is between processes on one file): a wall-clock jump neither extends
            # nor cuts a lease. The sim sweep found takeovers late by the size of a
            # backwards wall-clock jump before this.
            now = self._monotonic()
            rows = dict(
                self.conn.execute(
                    "SELECT key, value FROM meta WHERE key IN (?, ?)",
                    (_LEASE_HOLDER, _LEASE_EXPIRES),
                ).fetchall()
            )
            current = rows.get(_LEASE_HOLDER)
            expires = float(rows.get(_LEASE_EXPIRES, 0))
            # A lease ending further ahead than one ttl was written before this
            # machine's monotonic clock restarted (a reboot): it is stale.
            live = now < expires <= now + 2 * ttl
            # An owner takes over a previous owner's lease at once: owners never
            # overlap (the kernel's lock decides), so that one is gone.
            succeeding = holder.startswith(OWNER_HOLDER) and str(current).startswith(OWNER_HOLDER)
            if current not in (None, holder) and live and not succeeding:
                return False, str(current), expires
            expires = now + ttl
            self.conn.executemany(
                _PUT_META, [(_LEASE_HOLDER, holder), (_LEASE_EXPIRES, repr(expires))]
            )
            return True, holder, expires

    def release_lease(self, holder: str) -> bool:
        """Give up the lease if ``holder`` holds it; whether it did."""
        with self._sync_transaction():
            cursor = self.conn.execute(
                "DELETE FROM meta WHERE key = ? AND value = ?", (_LEASE_HOLDER, holder)
            )
            return cursor.rowcount > 0

    def local_digest(self, after: str | None, limit: int) -> tuple[DigestRow, ...]:
        """A page of (id, content hash, version, origin, deleted) after ``after``, by id."""
        rows = self.conn.execute(
            "SELECT id, content_hash, version, origin, deleted FROM memories "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return tuple(DigestRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows)

    # -- vectors for local semantic recall (asked by the EmbeddingActor) -------------------

    def embed_backlog(self, model: str, after: int, limit: int) -> tuple[EmbedItem, ...]:
        """Up to ``limit`` live memories after row ``after`` without a vector of ``model``."""
        rows = self.conn.execute(
            "SELECT m.rowid, m.content_hash, m.content, m.namespace, m.tags FROM memories m "
            "WHERE m.rowid > ? AND m.deleted = 0 AND NOT EXISTS (SELECT 1 FROM memory_vectors v "
            "WHERE v.memory_rowid = m.rowid AND v.model = ?) ORDER BY m.rowid LIMIT ?",
            (after, model, limit),
        ).fetchall()
        return tuple(EmbedItem(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]))) for r in rows)

    def write_vectors(
        self, model: str, dimension: int, vectors: Sequence[StoredVector]
    ) -> tuple[StoredVector, ...]:
        """Store each vector whose memory is live and still holds the text it is of.

        Answers the vectors written: a memory forgotten or replaced while its
        vector was computed gets none (its new text is in the backlog).
        """
        written = []
        with self._sync_transaction():
            for found in vectors:
                cursor = self.conn.execute(
                    "INSERT OR REPLACE INTO memory_vectors"
                    "(memory_rowid, content_hash, model, dimension, vector) "
                    "SELECT rowid, content_hash, ?, ?, ? FROM memories "
                    "WHERE rowid = ? AND content_hash = ? AND deleted = 0",
                    (model, dimension, found.vector, found.rowid, found.content_hash),
                )
                if cursor.rowcount == 1:
                    written.append(found)
        return tuple(written)

    def read_vectors(self, model: str, after: int, limit: int) -> tuple[StoredVector, ...]:
        """A page of the live memories' vectors of ``model`` after row ``after``."""
        rows = self.conn.execute(
            "SELECT v.memory_rowid, v.content_hash, m.namespace, m.tags, v.vector "
            "FROM memory_vectors v JOIN memories m ON m.rowid = v.memory_rowid "
            "WHERE v.memory_rowid > ? AND v.model = ? AND m.deleted = 0 "
            "AND m.content_hash = v.content_hash ORDER BY v.memory_rowid LIMIT ?",
            (after, model, limit),
        ).fetchall()
        return tuple(StoredVector(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4]) for r in rows)

    def vector_hits(
        self,
        query: str,
        semantic: SemanticQuery,
        *,
        namespace: str | None,
        tags: tuple[str, ...],
        limit: int,
        namespace_prefix: str | None = None,
    ) -> tuple[RecallHit, ...]:
        """The candidates still true (live, same text as their vector, inside the filters)."""
        if not semantic.candidates:
            return ()
        where, params = _filters(namespace, tags, prefix=namespace_prefix)
        current: set[tuple[int, str]] = set()
        for part in _chunks([str(c.rowid) for c in semantic.candidates]):
            current.update(
                self.conn.execute(
                    "SELECT m.rowid, m.content_hash FROM memories m JOIN memory_vectors v "
                    "ON v.memory_rowid = m.rowid AND v.content_hash = m.content_hash "
                    f"WHERE m.rowid IN ({_marks(part)}) AND v.model = ? AND m.deleted = 0{where}",
                    [*(int(r) for r in part), semantic.model, *params],
                ).fetchall()
            )
        scored = [
            (c.rowid, c.score) for c in semantic.candidates if (c.rowid, c.content_hash) in current
        ][:limit]
        if self._snippets is None:
            self._snippets = keyword_search.Snippets()
        return keyword_search.ranked_hits(self.conn, query, scored, self._snippets)

    def embedded_ids(self, model: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` hold a vector of ``model`` of their current text."""
        found: set[str] = set()
        for part in _chunks(list(ids)):
            found.update(
                row[0]
                for row in self.conn.execute(
                    "SELECT m.id FROM memories m JOIN memory_vectors v ON v.memory_rowid = m.rowid "
                    f"AND v.content_hash = m.content_hash WHERE m.id IN ({_marks(part)}) "
                    "AND v.model = ?",
                    [*part, model],
                )
            )
        return found

    # -- export, import, backup ----------------------------------------------------------

    def export_page(
        self,
        after: str | None,
        limit: int,
        *,
        namespace_prefix: str | None,
        tags: tuple[str, ...],
        since: float | None,
        include_deleted: bool,
    ) -> tuple[Memory, ...]:
        """Up to ``limit`` memories with ids after ``after``, in id order: an export's page.

        Id order walks the primary key and is the same on every file that
        holds the same memories, so an export is reproducible byte for byte.
        """
        where, params = _filters(None, tags, prefix=namespace_prefix)
        if not include_deleted:
            where += " AND m.deleted = 0"
        if since is not None:
            where += " AND m.updated_at >= ?"
            params.append(since)
        rows = self.conn.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.id > ?{where} ORDER BY m.id LIMIT ?",
            [after or "", *params, limit],
        ).fetchall()
        return tuple(_row_to_memory(row) for row in rows)

    def _apply_import(self, memories: Sequence[WireMemory], now: float) -> ImportCounts:
        """Inside a transaction: merge exported memories as a pulled page is, then queue them.

        The merge is the pull's (:meth:`_apply_page`: by id, last writer wins
        by ``(version, origin)``, then by content within a namespace, tags
        united). Unlike a pull, what changed here is news for the hub: each
        such memory is queued for a push in its imported state, as a local
        write is. Unchanged memories queue nothing, so a re-import is a no-op.
        """
        db = self.conn
        floor = db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        superseded: list[str] = []
        outcomes: list[str] = []
        queued: list[tuple[str, str, str]] = []
        self._apply_page(memories, superseded, outcomes, queued)
        # Queued rows of memories replaced by this batch would push a state that is gone.
        self._drop_outbox_rows(superseded, below=floor)
        changed = dict.fromkeys(
            m.id for m, outcome in zip(memories, outcomes, strict=True) if outcome == "updated"
        )
        if changed:
            # A tag union (apply_remote's _write_tags) queued its memory already.
            for (memory_id,) in db.execute("SELECT memory_id FROM outbox WHERE seq > ?", (floor,)):
                changed.pop(memory_id, None)
        for part in _chunks(list(changed)):
            marks = _marks(part)
            db.execute(
                f"UPDATE memories SET sync_state = ? WHERE id IN ({marks})",
                [self._write_state, *part],
            )
            db.execute(
                "INSERT INTO outbox(memory_id, op, version, enqueued_at) SELECT id, "
                "CASE WHEN deleted THEN 'delete' ELSE 'upsert' END, version, ? "
                f"FROM memories WHERE id IN ({marks})",
                [now, *part],
            )
        # Rows inserted in bulk were written in the write state; a later line of the
        # batch may have replaced one (then it is in ``changed``) or merged it away.
        gone = set(superseded)
        self._enqueue(
            [
                (memory_id, op, version, now)
                for memory_id, op, version in queued
                if memory_id not in gone
            ]
        )
        return ImportCounts(
            inserted=outcomes.count("inserted"),
            updated=outcomes.count("updated"),
            unchanged=outcomes.count("unchanged"),
        )

    def backup_to(self, target: str, pages_per_step: int) -> int:
        """Copy this file to the new file ``target`` (SQLite's online backup); pages copied.

        The whole copy reads one snapshot: a read transaction is open on the
        source across every step, so the copy is the file as of one commit.
        Without it, a write by another process between two steps restarts
        the backup from the first page, and a busy server can starve it
        forever. In WAL mode a reader never blocks a writer: other processes
        keep committing while the copy runs. Raises StorageError.
        """
        db = self.conn
        try:
            dest = sqlite_connect(target)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot create the backup {target}: {exc}") from exc
        try:
            db.execute("BEGIN")
            try:
                db.execute("SELECT count(*) FROM meta").fetchone()  # takes the snapshot
                db.backup(dest, pages=pages_per_step)
            finally:
                db.execute("COMMIT")
            pages: int = dest.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise StorageBusy(f"backup to {target} found the file locked: {exc}") from exc
            raise StorageError(f"backup to {target} failed: {exc}") from exc
        finally:
            dest.close()
        return pages


# -- helpers --------------------------------------------------------------------------------


def _prepare(
    conn: sqlite3.Connection,
    path: str,
    synchronous: Synchronous,
    new_id: Callable[[], str],
    now_ms: int,
) -> tuple[str, str | None]:
    """Check the schema, set the PRAGMAs, read or mint the origin: ``(origin, last version)``.

    Also drops the commit marks of writers gone for a day (see ``LocalDatabase._mark``).
    """
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != LATEST_VERSION:
            raise SchemaError(
                f"{path} is at schema {version}, this code needs {LATEST_VERSION}; "
                "run `memory-actors migrate` (MemorySystem.open migrates automatically)"
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # 64 MiB page cache, allocated only as used: the content-hash and FTS5 indexes
        # outgrow the 2 MiB default (a 100k pull from the hub: 12.3 s → 9.1 s).
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("BEGIN IMMEDIATE")
        found = _read_origin(conn)
        if found is None:
            origin = new_id()
            conn.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (origin,))
        else:
            origin = found
        last = conn.execute("SELECT max(version) FROM memories").fetchone()[0]
        conn.execute(
            "DELETE FROM meta WHERE key LIKE ? AND CAST(value AS INTEGER) < ?",
            (_MARK_PREFIX + "%", now_ms - _STALE_MARK_MS),
        )
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            # A COMMIT may raise after it reached the file. All this needed is an origin
            # on file (the prune is for tidiness): it is there, or the error stands.
            if conn.in_transaction or _read_origin(conn) != origin:
                raise
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if is_busy(exc):  # worth another try: a process taking the file over retries
            raise StorageBusy(f"cannot prepare {path}: {exc}; retry shortly") from exc
        raise StorageError(f"cannot prepare {path}: {exc}") from exc
    return origin, last


def _read_origin(conn: sqlite3.Connection) -> str | None:
    row = conn.execute(_GET_META, ("origin",)).fetchone()
    return None if row is None else str(row[0])


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + _IN_CHUNK] for start in range(0, len(ids), _IN_CHUNK)]


def _marks(part: list[str]) -> str:
    return ",".join("?" * len(part))


def _row_to_memory(row: sqlite3.Row | tuple[Any, ...]) -> Memory:
    return Memory(
        id=row[0],
        namespace=row[1],
        content=row[2],
        content_hash=row[3],
        tags=tuple(json.loads(row[4])),
        metadata=json.loads(row[5]),
        created_at=row[6],
        updated_at=row[7],
        version=row[8],
        origin=row[9],
        deleted=bool(row[10]),
        sync_state=row[11],
        key=row[12],
    )


def _pulled_row(
    remote: WireMemory, sync_state: str, tags: Sequence[str] | None = None
) -> tuple[Any, ...]:
    """The ``memories`` row of a pulled or imported memory (``_PULLED_VALUES``' values).

    ``tags`` replaces the memory's own (a union); the row keeps them sorted.
    """
    tags = remote.tags if tags is None else tags
    return (
        remote.id,
        remote.namespace,
        "" if remote.deleted else remote.content,
        remote.content_hash,
        json.dumps(sorted(tags)) if tags else "[]",
        remote.metadata_json() if remote.metadata else "{}",
        remote.created_at,
        remote.updated_at,
        remote.version,
        remote.origin,
        int(remote.deleted),
        remote.key,
        sync_state,
    )


def _outbox_op(memory: WireMemory) -> str:
    return "delete" if memory.deleted else "upsert"


def _filters(
    namespace: str | None,
    tags: tuple[str, ...],
    *,
    alias: str = "m",
    prefix: str | None = None,
) -> tuple[str, list[Any]]:
    """SQL conditions (joined with AND, leading AND included) for namespace and all-of tags."""
    sql = ""
    params: list[Any] = []
    if namespace is not None:
        sql += f" AND {alias}.namespace = ?"
        params.append(namespace)
    if prefix is not None:
        # A range, not LIKE: user text is never a pattern, and the range walks
        # the memories_namespace index.
        low, high = namespace_prefix_range(prefix)
        sql += f" AND ({alias}.namespace = ? OR ({alias}.namespace >= ? AND {alias}.namespace < ?))"
        params.extend((prefix, low, high))
    for tag in tags:
        sql += f" AND EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE json_each.value = ?)"
        params.append(tag)
    return sql, params
