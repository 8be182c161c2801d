"""The StoreActor: the one owner of a process's SQLite connection.

Writes are group-committed. A write request appends itself to the pending
batch and, if no flush is on its way, the actor tells itself :class:`Flush`.
Every write already in the mailbox arrives before that ``Flush``, so one
transaction commits them all and only then is each caller answered. With 64
writers this gives several times the throughput of one connection guarded by
a lock, because the fsync is shared (``docs/performance.md`` has the figures).

Reads flush the pending batch first, so a caller always reads its own
acknowledged writes. Each memory write also writes its outbox row in the same
transaction, so nothing committed can be missed by sync.

Other processes may hold the same file: ``BEGIN IMMEDIATE`` waits up to the
busy timeout, and a residual ``SQLITE_BUSY`` is retried with jittered
exponential backoff through the runtime's clock (a timer message, never a
sleep), then answered with :class:`~actors.errors.StorageBusy`.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from typing import Any

import attrs

from actors._base import DEFERRED, ReplyingActor, settle, settle_error
from actors._sqlite import Connect, Synchronous, connect, is_busy
from actors.errors import MemoryNotFound, SchemaError, StorageBusy, StorageError
from actors.messages import (
    CountMemories,
    Flush,
    ForgetMemory,
    GetMemory,
    ListMemories,
    Ping,
    ReadSyncMeta,
    RetryDeadLetters,
    SearchMemories,
    StoreMemory,
    WriteRequest,
)
from actors.migrations import LATEST_VERSION
from actors.model import (
    CountResult,
    ForgetResult,
    HybridClock,
    Memory,
    MemoryPage,
    RecallHit,
    StoreReceipt,
    SyncState,
)
from actors.runtime import Runtime
from actors.store_sync import SyncStoreMixin

__all__ = ["StoreActor", "StoreConfig"]

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_MAX_QUERY_TERMS = 32
_MEMORY_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, sync_state"
)

#: One row of a memories INSERT, matching _MEMORY_COLUMNS (``deleted`` is 0).
_MEMORY_VALUES = "(?,?,?,?,?,?,?,?,?,?,0,?)"
#: Rows per multi-row statement: 11 parameters a row stays far below SQLite's
#: 32,766-parameter limit, and a batch is rarely larger (one row per writer).
_SQL_CHUNK = 256


@attrs.frozen
class StoreConfig:
    """How the StoreActor opens and uses its file."""

    path: str
    #: FULL survives power loss with every acknowledged write; NORMAL (in WAL
    #: mode) may lose the last commits on power loss but never corrupts.
    synchronous: Synchronous = "FULL"
    busy_timeout: float = 5.0
    busy_retries: int = 5
    busy_backoff: float = 0.05
    group_commit: bool = True
    sync_configured: bool = False
    #: Push attempts of one memory before it becomes a dead letter.
    sync_max_attempts: int = 5
    connect: Connect | None = None


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
    )


def _filters(
    namespace: str | None, tags: tuple[str, ...], *, alias: str = "m"
) -> tuple[str, list[Any]]:
    """SQL conditions (joined with AND, leading AND included) for namespace and all-of tags."""
    sql = ""
    params: list[Any] = []
    if namespace is not None:
        sql += f" AND {alias}.namespace = ?"
        params.append(namespace)
    for tag in tags:
        sql += f" AND EXISTS (SELECT 1 FROM json_each({alias}.tags) WHERE json_each.value = ?)"
        params.append(tag)
    return sql, params


class StoreActor(SyncStoreMixin, ReplyingActor):
    """Sole owner of the SQLite connection; group-commits writes.

    Runs on one thread of its own when threaded. On orderly stop, the pending
    batch is committed and answered, and requests queued behind the stop are
    answered with :class:`~actors.errors.Unavailable`. If the actor fails,
    both are answered with ``Unavailable``. A transaction that fails rolls
    back and fails only the writes in it; the actor lives on.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: StoreConfig,
        *,
        name: str = "store",
        supervisor: Any = None,
    ) -> None:
        super().__init__(runtime, name=name, supervisor=supervisor)
        self.config = config
        self.conn: sqlite3.Connection | None = None
        self.origin = ""
        self.clock = HybridClock()
        self._pending: list[WriteRequest] = []
        self._flush_scheduled = False
        self._retrying = False
        self._batches = 0

    def __repr__(self) -> str:
        return (
            f"<StoreActor {self.name} pending={len(self._pending)} "
            f"batches={self._batches} state={self.state}>"
        )

    # -- lifecycle ------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.config
        opener = cfg.connect or (lambda path: connect(path, busy_timeout=cfg.busy_timeout))
        try:
            conn = opener(cfg.path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {cfg.path}: {exc}") from exc
        self.conn = conn
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != LATEST_VERSION:
                raise SchemaError(
                    f"{cfg.path} is at schema {version}, this code needs {LATEST_VERSION}; "
                    "run `memory-actors migrate` (MemorySystem.open migrates automatically)"
                )
            conn.execute(f"PRAGMA synchronous = {cfg.synchronous}")
            # 64 MiB page cache, allocated only as used: the content-hash and FTS5 indexes
            # outgrow the 2 MiB default (a 100k pull from the hub: 12.3 s → 9.1 s).
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
            if row is None:
                self.origin = self.runtime.new_id()
                conn.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (self.origin,))
            else:
                self.origin = row[0]
            last = conn.execute("SELECT max(version) FROM memories").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot prepare {cfg.path}: {exc}") from exc
        self.clock = HybridClock.resume(last)

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def settle_on_stop(self) -> None:
        # Last chance: one more attempt (busy → StorageBusy), no timers any more.
        self._retrying = False
        self._flush(attempt=self.config.busy_retries)

    def fail_held(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, []
        for request in pending:
            settle_error(request.reply, exc)

    # -- dispatch -------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case WriteRequest():
                self._pending.append(message)
                if self._retrying:
                    pass  # joins the batch that the busy-retry timer will flush
                elif not self.config.group_commit:
                    self._flush(attempt=0)
                elif not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.actor_ref.tell(Flush())
                return DEFERRED
            case Flush(attempt=attempt):
                if self._retrying and attempt == 0:
                    return None  # a busy-retry timer owns the next flush
                self._flush_scheduled = False
                self._retrying = False
                self._flush(attempt)
                return None
            case GetMemory():
                self._flush_for_read()
                return self._get(message.memory_id)
            case SearchMemories():
                self._flush_for_read()
                return self._search(message)
            case ListMemories():
                self._flush_for_read()
                return self._list(message)
            case CountMemories():
                self._flush_for_read()
                return self._count(message)
            case Ping():
                return self.state
            case ReadSyncMeta():
                return self.sync_read_meta()
            case RetryDeadLetters():
                return self.sync_retry_dead()
        answer = self.sync_dispatch(message, self.config.sync_max_attempts)
        if answer is not NotImplemented:
            return answer
        return super().handle(message)

    # -- writes -----------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StorageError("the store's connection is closed")
        return self.conn

    def _flush_for_read(self) -> None:
        # Read-your-writes: acknowledged writes are committed; pending ones are
        # committed now. Writes waiting out a busy retry are not acknowledged yet.
        if not self._retrying:
            self._flush(attempt=0)

    def _flush(self, attempt: int) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            results = self._commit(batch)
        except BaseException as exc:
            if not isinstance(exc, sqlite3.Error):
                # Not a database answer: the actor dies of it (the supervisor
                # restarts it), but no caller of this batch is left waiting.
                self._fail_batch(batch, StorageError(f"write failed: {exc!r}"))
                raise
            self._on_commit_error(batch, attempt, exc)
            return
        self._batches += 1
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                settle_error(request.reply, result)
            else:
                settle(request.reply, result)

    def _on_commit_error(self, batch: list[WriteRequest], attempt: int, exc: sqlite3.Error) -> None:
        if is_busy(exc) and attempt < self.config.busy_retries:
            self._schedule_retry(batch, attempt)
        elif is_busy(exc):
            self._fail_batch(batch, StorageBusy(self._busy_message(exc)))
        elif len(batch) > 1:
            self._commit_one_by_one(batch)
        else:
            self._fail_batch(batch, StorageError(f"write rolled back: {exc}"))

    def _schedule_retry(self, batch: list[WriteRequest], attempt: int) -> None:
        # Keep arrival order: the retried batch goes before writes that came since.
        self._pending[:0] = batch
        self._retrying = True
        self._flush_scheduled = True
        base = self.config.busy_backoff * (2**attempt)
        delay = base * (0.5 + self.runtime.rng("store.backoff").random())
        logger.info("%r: database busy, retry %d in %.3fs", self, attempt + 1, delay)
        self.runtime.call_later(delay, self.actor_ref, Flush(attempt=attempt + 1))

    def _busy_message(self, exc: sqlite3.Error) -> str:
        return (
            f"{self.config.path} stayed locked by another process after "
            f"{self.config.busy_retries} retries ({exc}); nothing was written, retry later"
        )

    def _commit_one_by_one(self, batch: list[WriteRequest]) -> None:
        """After a failed batch, find the write that fails: the others still commit."""
        for request in batch:
            try:
                (result,) = self._commit([request])
            except sqlite3.Error as exc:
                error: BaseException = (
                    StorageBusy(self._busy_message(exc))
                    if is_busy(exc)
                    else StorageError(f"write rolled back: {exc}")
                )
                settle_error(request.reply, error)
                continue
            if isinstance(result, BaseException):
                settle_error(request.reply, result)
            else:
                settle(request.reply, result)

    @staticmethod
    def _fail_batch(batch: list[WriteRequest], exc: BaseException) -> None:
        for request in batch:
            settle_error(request.reply, exc)

    def _commit(self, batch: list[WriteRequest]) -> list[object]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self.sync_clock_in(db)
            now = self.runtime.wall_time()
            results = self._apply_batch(db, batch, now)
            self.sync_clock_out(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    logger.exception("%r: rollback failed", self)
            raise
        return results

    def _sync_state(self) -> SyncState:
        return "sync_pending" if self.config.sync_configured else "committed"

    def _apply_batch(
        self, db: sqlite3.Connection, batch: list[WriteRequest], now: float
    ) -> list[object]:
        """Apply a batch in arrival order, inserting new memories with multi-row INSERTs.

        Why: every ``execute`` releases and retakes the GIL, and with 64 writer
        threads each retake waits behind callers' Python work. One dedup SELECT
        and two multi-row INSERTs per batch, instead of three statements per
        store, took 64 writers from ~6,500 to ~8,200 stores/s (FULL) and
        ~5,700 to ~8,400 (NORMAL) on 2 cores (docs/performance.md).

        The result is the same as :meth:`_apply` one by one (checked by
        ``tests/test_store_batch.py``): a store whose (namespace, hash) is new
        to the file and to the batch is a plain insert; anything else (a
        duplicate, a forget) first writes the inserts gathered so far, then
        goes through :meth:`_apply`, so it sees every earlier write of the
        batch. Ids and versions are minted in arrival order, as before.
        """
        stores = [request for request in batch if isinstance(request, StoreMemory)]
        live = self._live_keys(db, stores) if stores else set()
        seen: set[tuple[str, str]] = set()
        rows: list[tuple[Any, ...]] = []
        outbox: list[tuple[Any, ...]] = []
        results: list[object] = []
        state = self._sync_state()
        now_ms = int(now * 1000)
        for request in batch:
            if isinstance(request, StoreMemory):
                key = (request.namespace, request.content_hash)
                fresh = key not in live and key not in seen
                seen.add(key)
                if fresh:
                    memory_id = self.runtime.new_id()
                    version = self.clock.tick(now_ms)
                    rows.append(
                        (
                            memory_id,
                            request.namespace,
                            request.content,
                            request.content_hash,
                            json.dumps(request.tags) if request.tags else "[]",
                            request.metadata_json,
                            now,
                            now,
                            version,
                            self.origin,
                            state,
                        )
                    )
                    outbox.append((memory_id, "upsert", version, now))
                    results.append(
                        StoreReceipt(memory_id, request.namespace, False, request.tags, state)
                    )
                    continue
            self._insert_rows(db, rows, outbox)
            results.append(self._apply(db, request, now))
        self._insert_rows(db, rows, outbox)
        return results

    @staticmethod
    def _live_keys(db: sqlite3.Connection, stores: list[StoreMemory]) -> set[tuple[str, str]]:
        """The (namespace, content hash) pairs of ``stores`` that a live memory already has."""
        hashes: dict[str, list[str]] = {}
        for request in stores:
            hashes.setdefault(request.namespace, []).append(request.content_hash)
        live: set[tuple[str, str]] = set()
        for namespace, digests in hashes.items():
            for start in range(0, len(digests), _SQL_CHUNK):
                part = digests[start : start + _SQL_CHUNK]
                found = db.execute(
                    "SELECT content_hash FROM memories WHERE namespace = ? AND deleted = 0 "
                    f"AND content_hash IN ({','.join('?' * len(part))})",
                    [namespace, *part],
                ).fetchall()
                live.update((namespace, digest) for (digest,) in found)
        return live

    @staticmethod
    def _insert_rows(
        db: sqlite3.Connection, rows: list[tuple[Any, ...]], outbox: list[tuple[Any, ...]]
    ) -> None:
        """Insert gathered memory rows and their outbox rows (FTS5 triggers fire per row)."""
        for start in range(0, len(rows), _SQL_CHUNK):
            part = rows[start : start + _SQL_CHUNK]
            db.execute(
                f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES "
                + ",".join([_MEMORY_VALUES] * len(part)),
                [value for row in part for value in row],
            )
            box = outbox[start : start + _SQL_CHUNK]
            db.execute(
                "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES "
                + ",".join(["(?,?,?,?)"] * len(box)),
                [value for row in box for value in row],
            )
        rows.clear()
        outbox.clear()

    def _apply(self, db: sqlite3.Connection, request: WriteRequest, now: float) -> object:
        if isinstance(request, StoreMemory):
            return self._apply_store(db, request, now)
        if isinstance(request, ForgetMemory):
            return self._apply_forget(db, request, now)
        raise TypeError(f"unknown write {request!r}")

    def _apply_store(self, db: sqlite3.Connection, req: StoreMemory, now: float) -> StoreReceipt:
        existing = db.execute(
            "SELECT id, tags FROM memories "
            "WHERE namespace = ? AND content_hash = ? AND deleted = 0",
            (req.namespace, req.content_hash),
        ).fetchone()
        state = self._sync_state()
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
                self._enqueue(db, memory_id, "upsert", version, now)
            return StoreReceipt(memory_id, req.namespace, True, merged, state)
        memory_id = self.runtime.new_id()
        version = self.clock.tick(int(now * 1000))
        db.execute(
            f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,0,?)",
            (
                memory_id,
                req.namespace,
                req.content,
                req.content_hash,
                json.dumps(req.tags),
                req.metadata_json,
                now,
                now,
                version,
                self.origin,
                state,
            ),
        )
        self._enqueue(db, memory_id, "upsert", version, now)
        return StoreReceipt(memory_id, req.namespace, False, req.tags, state)

    def _apply_forget(self, db: sqlite3.Connection, req: ForgetMemory, now: float) -> object:
        row = db.execute("SELECT deleted FROM memories WHERE id = ?", (req.memory_id,)).fetchone()
        if row is None:
            return MemoryNotFound(f"no memory has id {req.memory_id}")
        if row[0]:
            return ForgetResult(req.memory_id, forgotten=True, already_forgotten=True)
        version = self.clock.tick(int(now * 1000))
        # A tombstone keeps id and version (so the forget can sync) and erases the content.
        db.execute(
            "UPDATE memories SET deleted = 1, content = '', metadata = '{}', tags = '[]', "
            "updated_at = ?, version = ?, origin = ?, sync_state = ? WHERE id = ?",
            (now, version, self.origin, self._sync_state(), req.memory_id),
        )
        self._enqueue(db, req.memory_id, "delete", version, now)
        return ForgetResult(req.memory_id, forgotten=True, already_forgotten=False)

    @staticmethod
    def _enqueue(db: sqlite3.Connection, memory_id: str, op: str, version: str, now: float) -> None:
        db.execute(
            "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, ?, ?, ?)",
            (memory_id, op, version, now),
        )

    # -- reads ------------------------------------------------------------------

    def _get(self, memory_id: str) -> Memory:
        row = self._db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = ?", (memory_id,)
        ).fetchone()
        if row is None:
            raise MemoryNotFound(f"no memory has id {memory_id}")
        memory = _row_to_memory(row)
        if memory.deleted:
            raise MemoryNotFound(f"memory {memory_id} was forgotten")
        if memory.sync_state == "sync_failed":
            error = self._db.execute(
                "SELECT last_error FROM outbox WHERE memory_id = ? AND dead = 1 "
                "ORDER BY seq DESC LIMIT 1",
                (memory_id,),
            ).fetchone()
            memory = attrs.evolve(memory, sync_error=error[0] if error else "push failed")
        return memory

    def _search(self, req: SearchMemories) -> tuple[RecallHit, ...]:
        terms = _WORD_RE.findall(req.query)[:_MAX_QUERY_TERMS]
        if not terms:
            return ()
        # Every term is quoted, so user text is never parsed as FTS5 syntax.
        match = " OR ".join(f'"{term}"' for term in terms)
        where, params = _filters(req.namespace, req.tags)
        rows = self._db.execute(
            "SELECT m.id, m.namespace, m.content, "
            "snippet(memories_fts, 0, '[', ']', '…', 16), m.tags, bm25(memories_fts), "
            "m.created_at "
            "FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid "
            f"WHERE memories_fts MATCH ? AND m.deleted = 0{where} "
            "ORDER BY bm25(memories_fts) LIMIT ?",
            [match, *params, req.limit],
        ).fetchall()
        return tuple(
            RecallHit(
                id=row[0],
                namespace=row[1],
                content=row[2],
                snippet=row[3],
                tags=tuple(json.loads(row[4])),
                # BM25 is tiny on small stores: keep significant digits, not decimals.
                score=float(f"{-row[5]:.6g}"),
                source="local",
                created_at=row[6],
            )
            for row in rows
        )

    def _list(self, req: ListMemories) -> MemoryPage:
        where, params = _filters(req.namespace, req.tags)
        if req.before is not None:
            where += " AND m.id < ?"
            params.append(req.before)
        rows = self._db.execute(
            f"SELECT {_MEMORY_COLUMNS} FROM memories m WHERE m.deleted = 0{where} "
            "ORDER BY m.id DESC LIMIT ?",
            [*params, req.limit + 1],
        ).fetchall()
        memories = tuple(_row_to_memory(row) for row in rows[: req.limit])
        more = len(rows) > req.limit
        return MemoryPage(memories, memories[-1].id if more and memories else None)

    def _count(self, req: CountMemories) -> CountResult:
        db = self._db
        where, params = _filters(req.namespace, req.tags)
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
        sync = (
            "remote configured"
            if self.config.sync_configured
            else "local-only: no remote configured"
        )
        return CountResult(
            total=sum(by_namespace.values()),
            by_namespace=by_namespace,
            forgotten=forgotten,
            outbox_pending=pending,
            dead_letters=dead,
            schema_version=version,
            database=self.config.path,
            sync=sync,
        )
