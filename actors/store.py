"""The StoreActor: the one owner of a process's SQLite connection.

Writes are group-committed (:class:`~actors._batch.GroupCommit`, shared with
the hub's store). A write request appends itself to the pending batch and,
if no flush is on its way, the actor tells itself :class:`Flush`. Every write
already in the mailbox arrives before that ``Flush``, so one transaction
commits them all and only then is each caller answered. With 64 writers this
gives several times the throughput of one connection guarded by a lock,
because the fsync is shared (``docs/performance.md`` has the figures).

Reads flush the pending batch first, so a caller always reads its own
acknowledged writes; so do sync requests, so sync never reorders them. Each
memory write also writes its outbox row in the same transaction, so nothing
committed can be missed by sync. The agent session log's writes
(:mod:`actors.session_log`) join the same batches, in arrival order, and
have no outbox row: the log is never synced.

Other processes may hold the same file: ``BEGIN IMMEDIATE`` waits up to the
busy timeout, and a residual ``SQLITE_BUSY`` holds the batch (later writes
join it, reads do not flush it: none of it is acknowledged) and retries it
with jittered exponential backoff through the runtime's clock (a timer
message, never a sleep), then answers it with
:class:`~actors.errors.StorageBusy`. A stop makes one last attempt, without
waiting.

The SQL, store side and sync side, is :class:`~actors.local_db.LocalDatabase`;
this module decides when it runs.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from actors._base import DEFERRED, ReplyingActor
from actors._batch import GroupCommit
from actors._sqlite import CommitOutcomeUnknown, Connect, Synchronous, is_busy
from actors.errors import StorageBusy, StorageError
from actors.keyword_search import MERGE_ABOVE_SEGMENTS
from actors.local_db import DatabaseError, LocalDatabase
from actors.messages import (
    AcquireLease,
    ApplyChanges,
    BackupDatabase,
    CountMemories,
    ExportPage,
    FetchOutbox,
    Flush,
    GetMemory,
    ListMemories,
    MergeIndex,
    Ping,
    ReadDeadLetters,
    ReadEmbedBacklog,
    ReadLocalDigest,
    ReadSessionItems,
    ReadSyncMeta,
    ReadVectors,
    RecordPush,
    ReleaseLease,
    RequeueForPush,
    RetryDeadLetters,
    SearchMemories,
    WriteRequest,
    WriteVectors,
)
from actors.model import RecallHit
from actors.ranking import fuse_local
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
    #: Merge a keyword index found in many segments at open, a bounded step at a time.
    merge_index: bool = False
    #: Seconds without a write after which the index is checked again and merged
    #: the same way (None: at open only). A long-running owner's commits each add a
    #: segment, and every keyword query looks its words up in each one.
    merge_index_idle: float | None = None


class StoreActor(ReplyingActor):
    """Sole owner of the SQLite connection; group-commits writes.

    Cancellation (asyncio callers, :mod:`actors.aio`): a write whose caller
    cancelled it is dropped if the cancellation is marked before the store
    dequeues it, or before the transaction of its batch begins; it is then
    never written. A write whose transaction has begun commits, and only its
    receipt is lost.

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
        #: The connection's change count when last looked at, for the idle merge:
        #: a count that moved since means the file was written meanwhile.
        self._changes_seen = 0
        self._idle_check_due = False
        self._merging = False
        self._batch: GroupCommit[WriteRequest] = GroupCommit(
            lambda batch: self._db.commit_writes(batch),
            schedule=lambda: self.actor_ref.tell(Flush()),
            translate=self._translate,
            is_busy=lambda exc: isinstance(exc, DatabaseError) and is_busy(exc),
            database_errors=(DatabaseError,),
            outcome_unknown=lambda exc: isinstance(exc, CommitOutcomeUnknown),
            enabled=config.group_commit,
        )

    def __repr__(self) -> str:
        return (
            f"<StoreActor {self.name} pending={len(self._batch.pending)} "
            f"batches={self._batch.batches} dropped={self._batch.dropped} state={self.state}>"
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
            writer=f"{rt.rng('commit.mark').getrandbits(64):016x}",
        )
        self._changes_seen = self.database.conn.total_changes
        if cfg.merge_index and self.database.index_segments() > MERGE_ABOVE_SEGMENTS:
            self._merging = True
            self.actor_ref.tell(MergeIndex(first=True))

    def teardown(self) -> None:
        if self.database is not None:
            self.database.close()
            self.database = None

    def settle_on_stop(self) -> None:
        # Last chance: one more attempt (busy → StorageBusy), no timers any more.
        self._batch.flush()

    def fail_held(self, exc: BaseException) -> None:
        self._batch.fail_pending(exc)

    # -- dispatch -------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        answer = super().on_receive(message)
        self._after_message()
        return answer

    def handle(self, message: Any) -> Any:
        match message:
            case WriteRequest():
                # Group commit off: flushed at once, and a busy write waits on a timer too.
                if self._batch.add(message, hold_if_busy=self.config.busy_retries > 0):
                    self._retry_later(attempt=0)
                return DEFERRED
            case MergeIndex(idle=True):
                self._idle_check()
                return None
            case MergeIndex(first=first):
                self._merge_index(first)
                return None
            case Flush(attempt=attempt):
                if self._batch.held and attempt == 0:
                    return None  # a busy-retry timer owns the next flush
                self._batch.scheduled = False
                self._flush(attempt)
                return None
            case GetMemory(memory_id=memory_id, label=label):
                self._flush_for_read()
                return self._db.get(memory_id, label)
            case SearchMemories():
                self._flush_for_read()
                return self._search(message)
            case ListMemories():
                self._flush_for_read()
                return self._db.list_memories(
                    namespace=message.namespace,
                    tags=message.tags,
                    before=message.before,
                    limit=message.limit,
                    namespace_prefix=message.namespace_prefix,
                )
            case CountMemories():
                self._flush_for_read()
                return self._db.count(
                    namespace=message.namespace,
                    tags=message.tags,
                    namespace_prefix=message.namespace_prefix,
                )
            case ReadSessionItems(session_id=session_id, limit=limit):
                self._flush_for_read()
                return self._db.session_items(session_id, limit)
            case Ping():
                return self.state
            # Sync requests: acknowledged local writes commit first, so sync never
            # reorders them (the cursor and the origin need no flush).
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
            case ReadDeadLetters(limit=limit):
                self._flush_for_read()
                return self._db.dead_letters(limit)
            # The EmbeddingActor's requests: reads of the committed file, and one
            # short transaction per batch of vectors (never in a store's batch).
            case ReadEmbedBacklog(model=model, after=after, limit=limit):
                self._flush_for_read()
                return self._db.embed_backlog(model, after, limit)
            case WriteVectors(model=model, dimension=dimension, vectors=vectors):
                self._flush_for_read()
                return self._db.write_vectors(model, dimension, vectors)
            case ReadVectors(model=model, after=after, limit=limit):
                return self._db.read_vectors(model, after, limit)
            case ExportPage():
                self._flush_for_read()
                return self._db.export_page(
                    message.after,
                    message.limit,
                    namespace_prefix=message.namespace_prefix,
                    tags=message.tags,
                    since=message.since,
                    include_deleted=message.include_deleted,
                )
            case BackupDatabase(target=target, pages_per_step=pages):
                # Acknowledged writes are in the copy: a backup taken after a
                # store's receipt holds that store.
                self._flush_for_read()
                return self._db.backup_to(target, pages)
        return super().handle(message)

    def _search(self, message: SearchMemories) -> tuple[RecallHit, ...]:
        """Keyword hits, fused with the vector candidates when the EmbeddingActor sent some."""
        db, semantic = self._db, message.semantic
        filters: dict[str, Any] = {
            "namespace": message.namespace,
            "tags": message.tags,
            "limit": message.limit,
            "namespace_prefix": message.namespace_prefix,
        }
        keyword = db.search(message.query, **filters)
        if semantic is None:
            return keyword
        meaning = db.vector_hits(message.query, semantic, **filters)
        embedded = db.embedded_ids(semantic.model, [hit.id for hit in keyword])
        return fuse_local(meaning, keyword, embedded, message.limit, message.query)

    def _merge_index(self, first: bool) -> None:
        self._merging = self._merge_step(first)
        if self._merging:
            self.actor_ref.tell(MergeIndex())
        # The merge's own writes are not the callers': they do not delay the idle check.
        self._changes_seen = self._db.conn.total_changes

    def _merge_step(self, first: bool) -> bool:
        """One step of the merge; whether more remains (False when it could not run)."""
        if self._batch.held:
            return False  # another process holds the file's write lock: merged later
        try:
            more = self._db.merge_index_step(first=first)
        except DatabaseError as exc:
            # Busy or failing: the index stays as it is, whole and ranked the same.
            logger.info("the keyword index of %s stays in segments: %s", self.config.path, exc)
            return False
        if not more:
            logger.info("the keyword index of %s is merged into one segment", self.config.path)
        return more

    def _after_message(self) -> None:
        """Arm the idle check when the file was written since the last look."""
        idle = self.config.merge_index_idle
        if idle is None or self.database is None or self._idle_check_due:
            return
        changes = self.database.conn.total_changes
        if changes != self._changes_seen:
            self._changes_seen = changes
            self._idle_check_due = True
            self.runtime.call_later(idle, self.actor_ref, MergeIndex(idle=True))

    def _idle_check(self) -> None:
        """No write since the check was armed: merge an index left in many segments.
        Written since: nothing here; :meth:`_after_message` arms the next check."""
        self._idle_check_due = False
        quiet = self._db.conn.total_changes == self._changes_seen
        if quiet and not self._merging and self._segments() > MERGE_ABOVE_SEGMENTS:
            self._merge_index(first=True)

    def _segments(self) -> int:
        """The index's segments; 0 when they cannot be counted now (looked at after the
        next writes; a failing connection is for the requests to report, not a timer)."""
        try:
            return self._db.index_segments()
        except DatabaseError as exc:
            logger.info("the keyword index of %s was not looked at: %s", self.config.path, exc)
            return 0

    @property
    def _db(self) -> LocalDatabase:
        if self.database is None:
            raise StorageError("the store's connection is closed")
        return self.database

    # -- group commit -----------------------------------------------------------

    def _flush_for_read(self) -> None:
        # Read-your-writes: acknowledged writes are committed; pending ones are
        # committed now. Writes waiting out a busy retry are not acknowledged yet.
        if not self._batch.held:
            self._flush(attempt=0)

    def _flush(self, attempt: int) -> None:
        if self._batch.flush(hold_if_busy=attempt < self.config.busy_retries):
            self._retry_later(attempt)

    def _retry_later(self, attempt: int) -> None:
        """The held batch flushes again on a timer: jittered exponential backoff."""
        base = self.config.busy_backoff * (2**attempt)
        delay = base * (0.5 + self.runtime.rng("store.backoff").random())
        logger.info("%r: database busy, retry %d in %.3fs", self, attempt + 1, delay)
        self.runtime.call_later(delay, self.actor_ref, Flush(attempt=attempt + 1))

    def _translate(self, exc: Exception) -> BaseException:
        if isinstance(exc, DatabaseError) and is_busy(exc):
            return StorageBusy(
                f"{self.config.path} stayed locked by another process after "
                f"{self.config.busy_retries} retries ({exc}); nothing was written, retry later"
            )
        if isinstance(exc, CommitOutcomeUnknown):
            return StorageError(
                f"{exc}: the write may be in the file; read before repeating it "
                "(a session append repeated would be logged twice)"
            )
        return StorageError(f"write rolled back: {exc}")
