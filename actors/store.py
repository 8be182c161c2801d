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

The SQL, store side and sync side, is :class:`~actors.local_db.LocalDatabase`;
this module decides when it runs.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from actors._base import DEFERRED, ReplyingActor, settle, settle_error
from actors._sqlite import Connect, Synchronous, is_busy
from actors.errors import StorageBusy, StorageError
from actors.local_db import DatabaseError, LocalDatabase
from actors.messages import (
    AcquireLease,
    ApplyChanges,
    CountMemories,
    FetchOutbox,
    Flush,
    GetMemory,
    ListMemories,
    Ping,
    ReadLocalDigest,
    ReadSyncMeta,
    RecordPush,
    ReleaseLease,
    RequeueForPush,
    RetryDeadLetters,
    SearchMemories,
    WriteRequest,
)
from actors.runtime import Runtime

__all__ = ["StoreActor", "StoreConfig"]

logger = logging.getLogger(__name__)


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


class StoreActor(ReplyingActor):
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
        self.database: LocalDatabase | None = None
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
        cfg, rt = self.config, self.runtime
        self.database = LocalDatabase.open(
            cfg.path,
            new_id=rt.new_id,
            wall_time=rt.wall_time,
            monotonic=rt.monotonic,
            jitter=rt.rng("sync.backoff").random,
            synchronous=cfg.synchronous,
            busy_timeout=cfg.busy_timeout,
            connect=cfg.connect,
            sync_configured=cfg.sync_configured,
        )

    def teardown(self) -> None:
        if self.database is not None:
            self.database.close()
            self.database = None

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
            case GetMemory(memory_id=memory_id):
                self._flush_for_read()
                return self._db.get(memory_id)
            case SearchMemories(query=query, namespace=namespace, tags=tags, limit=limit):
                self._flush_for_read()
                return self._db.search(query, namespace=namespace, tags=tags, limit=limit)
            case ListMemories(namespace=namespace, tags=tags, before=before, limit=limit):
                self._flush_for_read()
                return self._db.list_memories(
                    namespace=namespace, tags=tags, before=before, limit=limit
                )
            case CountMemories(namespace=namespace, tags=tags):
                self._flush_for_read()
                return self._db.count(namespace=namespace, tags=tags)
            case Ping():
                return self.state
            # Sync requests: acknowledged local writes commit first, so sync never
            # reorders them (the cursor and lease need no flush).
            case ReadSyncMeta():
                return self._db.read_sync_meta()
            case FetchOutbox(limit=limit):
                self._flush_for_read()
                return self._db.fetch_outbox(limit)
            case RecordPush(outcomes=outcomes):
                self._flush_for_read()
                return self._db.record_push(outcomes, self.config.sync_max_attempts)
            case ApplyChanges(memories=memories, cursor=cursor):
                self._flush_for_read()
                return self._db.apply_changes(memories, cursor)
            case AcquireLease(holder=holder, ttl=ttl):
                self._flush_for_read()
                return self._db.acquire_lease(holder, ttl)
            case ReleaseLease(holder=holder):
                self._flush_for_read()
                return self._db.release_lease(holder)
            case ReadLocalDigest(after=after, limit=limit):
                self._flush_for_read()
                return self._db.local_digest(after, limit)
            case RequeueForPush(memory_ids=memory_ids):
                self._flush_for_read()
                return self._db.requeue(memory_ids)
            case RetryDeadLetters():
                self._flush_for_read()
                return self._db.retry_dead()
        return super().handle(message)

    @property
    def _db(self) -> LocalDatabase:
        if self.database is None:
            raise StorageError("the store's connection is closed")
        return self.database

    # -- writes -----------------------------------------------------------------

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
            results = self._db.commit_writes(batch)
        except BaseException as exc:
            if not isinstance(exc, DatabaseError):
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

    def _on_commit_error(self, batch: list[WriteRequest], attempt: int, exc: DatabaseError) -> None:
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

    def _busy_message(self, exc: DatabaseError) -> str:
        return (
            f"{self.config.path} stayed locked by another process after "
            f"{self.config.busy_retries} retries ({exc}); nothing was written, retry later"
        )

    def _commit_one_by_one(self, batch: list[WriteRequest]) -> None:
        """After a failed batch, find the write that fails: the others still commit."""
        for request in batch:
            try:
                (result,) = self._db.commit_writes([request])
            except DatabaseError as exc:
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
