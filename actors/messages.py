"""The protocol between actors: every message, in one place.

Each message is a frozen attrs class. A *request* carries ``reply``, a future
made by the caller's runtime; the receiving actor answers it exactly once
with a value or an exception from :mod:`actors.errors`, even when it stops
or fails (see :class:`actors._base.ReplyingActor`). Requests are sent with
``tell``, never ``ask``: the reply may be settled later than the handler
returns (group commit), which Pykka's ask cannot express.

``Request[R]`` names the type of the answer: ``GetMemory`` is a
``Request[Memory]``, so :func:`actors._ask.ask` given a ``GetMemory``
returns a ``Memory`` to the type checker, without a cast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic

import attrs
import pykka

from actors.model import (
    CountResult,
    EmbeddingReport,
    ForgetResult,
    Memory,
    MemoryPage,
    MigrationReport,
    RecallHit,
    SemanticQuery,
    StoredVector,
    StoreReceipt,
)
from actors.portable import ImportCounts
from actors.sync_model import DeadLetters, SyncReport
from actors.wire import RemoteHit, WireMemory

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # The default makes a bare ``Request`` mean ``Request[Any]``: isinstance checks,
    # ``list[WriteRequest]`` in the store and ``bound=Request`` in the batcher keep
    # working under mypy --strict. Python 3.11's TypeVar takes no default (PEP 696),
    # and only the type checker reads it.
    R = TypeVar("R", default=Any)
else:
    from typing import TypeVar

    R = TypeVar("R")

__all__ = [
    "AcquireLease",
    "Answer",
    "AppendSessionItems",
    "ApplyChanges",
    "AuthRecheck",
    "BackupDatabase",
    "ChildFailed",
    "ChildReady",
    "ChildStopped",
    "ClearSession",
    "CountMemories",
    "EmbedNudge",
    "EmbeddingStatus",
    "ExpireRecallCache",
    "ExportPage",
    "FetchOutbox",
    "Flush",
    "ForgetMemory",
    "GetMemory",
    "ImportMemories",
    "LeaseTick",
    "ListMemories",
    "MergeIndex",
    "Migrate",
    "Ping",
    "PopSessionItem",
    "ReadDeadLetters",
    "ReadEmbedBacklog",
    "ReadLocalDigest",
    "ReadSessionItems",
    "ReadSyncMeta",
    "ReadVectors",
    "RecallJob",
    "RecordPush",
    "ReleaseLease",
    "RemoteRecall",
    "Request",
    "RequeueForPush",
    "RestartChild",
    "ResyncTick",
    "RetagMemory",
    "RetryDeadLetters",
    "SearchMemories",
    "Shutdown",
    "StartChildren",
    "StoreMemory",
    "SyncNudge",
    "SyncStatus",
    "SyncTick",
    "TellBack",
    "WriteRequest",
    "WriteVectors",
]


@attrs.frozen(eq=False)
class Request(Generic[R]):
    """Base of every message that expects an answer of type ``R`` on ``reply``."""

    reply: pykka.Future[R] = attrs.field(repr=False)


# -- StoreActor ---------------------------------------------------------------


@attrs.frozen(eq=False)
class WriteRequest(Request[R]):
    """Base of the writes the StoreActor group-commits."""


@attrs.frozen(eq=False)
class StoreMemory(WriteRequest[StoreReceipt]):
    """Caller → StoreActor: store validated, normalised content.

    Answered with a :class:`~actors.model.StoreReceipt` only after the
    transaction holding the memory and its outbox row has committed. Without
    a key, content already stored in the namespace answers its existing id
    (``duplicate``), with the new tags merged in; with a key, the memory under
    that key is created or replaced in place.
    """

    content: str
    content_hash: str
    namespace: str
    tags: tuple[str, ...]
    metadata_json: str
    #: With a key: an upsert of the memory ``keyed_memory_id(namespace, key)``,
    #: which replaces content, tags and metadata; no content dedup.
    key: str | None = None


@attrs.frozen(eq=False)
class ForgetMemory(WriteRequest[ForgetResult]):
    """Caller → StoreActor: tombstone a memory (content erased, id kept so it can sync).

    Answered with a :class:`~actors.model.ForgetResult` after commit, or
    :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str
    #: As :attr:`GetMemory.label`.
    label: str | None = None


@attrs.frozen(eq=False)
class RetagMemory(WriteRequest[Memory]):
    """Caller → StoreActor: replace a memory's tags with ``tags`` (normalised).

    Answered after commit with the updated :class:`~actors.model.Memory`; a
    change is a new version, queued for the hub like any write. The same tags
    answer the memory unchanged (no new version). Forgotten or unknown ids
    answer :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str
    tags: tuple[str, ...]


@attrs.frozen
class MergeIndex:
    """StoreActor → itself: one bounded step of merging the keyword index into one segment.

    Told at open when the index is in many segments, then again after each
    step until none is left, so the reads and writes in the mailbox run
    between steps (:func:`actors.keyword_search.merge_step`). ``idle``: the
    runtime's timer, a quiet spell after writes; the index is counted again
    and merged the same way if it has gathered segments since.
    """

    first: bool = False
    idle: bool = False


@attrs.frozen
class Flush:
    """StoreActor → itself: commit the pending batch in one transaction.

    Told once per batch, so every write already in the mailbox joins the batch
    before the flush runs. ``attempt`` counts retries after ``SQLITE_BUSY``;
    a retry is a timer message on the runtime clock, never a sleep.
    """

    attempt: int = 0


@attrs.frozen(eq=False)
class GetMemory(Request[Memory]):
    """Caller → StoreActor: one memory by id → :class:`~actors.model.Memory`.

    Pending writes are flushed first, so a caller reads its acknowledged writes.
    Forgotten or unknown ids answer :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str
    #: How the caller named the memory, for the not-found message ("key 'k' in
    #: namespace 'n'"); None: by its id.
    label: str | None = None


@attrs.frozen(eq=False)
class SearchMemories(Request[tuple[RecallHit, ...]]):
    """Caller → StoreActor (or → EmbeddingActor → StoreActor): local recall → RecallHits.

    Keyword search (FTS5, BM25), fused with the vector candidates in
    ``semantic`` when the EmbeddingActor forwarded it.
    """

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    #: This namespace and every one below it (``a`` holds ``a`` and ``a/b``, not ``ab``).
    namespace_prefix: str | None = None
    #: Set by the EmbeddingActor, which receives the caller's request first when
    #: semantic recall is on: the store checks these rows and fuses them with its
    #: keyword hits (:func:`actors.ranking.fuse_local`); None: keyword only.
    semantic: SemanticQuery | None = None


@attrs.frozen(eq=False)
class ListMemories(Request[MemoryPage]):
    """Caller → StoreActor: most recent first → :class:`~actors.model.MemoryPage`."""

    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    before: str | None
    #: This namespace and every one below it (``a`` holds ``a`` and ``a/b``, not ``ab``).
    namespace_prefix: str | None = None


@attrs.frozen(eq=False)
class CountMemories(Request[CountResult]):
    """Caller → StoreActor: counts and diagnostics → :class:`~actors.model.CountResult`."""

    namespace: str | None
    tags: tuple[str, ...]
    #: This namespace and every one below it (``a`` holds ``a`` and ``a/b``, not ``ab``).
    namespace_prefix: str | None = None


@attrs.frozen(eq=False)
class Ping(Request[str]):
    """Supervisor or caller → any actor: answered with the actor's state name once ready."""


# The session log (actors/session_log.py): local only, never synced. Its writes
# are group-committed with stores, applied in arrival order in one transaction.


@attrs.frozen(eq=False)
class AppendSessionItems(WriteRequest[int]):
    """Caller → StoreActor: append items (compact JSON texts) to a session's log.

    Answered with the number appended, after commit.
    """

    session_id: str
    items: tuple[str, ...]


@attrs.frozen(eq=False)
class PopSessionItem(WriteRequest[Any]):
    """Caller → StoreActor: remove a session's newest item and answer it, decoded.

    Read and delete are one transaction (one owner; ``BEGIN IMMEDIATE`` across
    processes), so two pops never answer the same item. ``None``: the log is empty.
    """

    session_id: str


@attrs.frozen(eq=False)
class ClearSession(WriteRequest[int]):
    """Caller → StoreActor: delete every item of a session → how many there were."""

    session_id: str


@attrs.frozen(eq=False)
class ReadSessionItems(Request[list[Any]]):
    """Caller → StoreActor: a session's latest ``limit`` items (all when None), decoded,
    oldest first. Pending writes are flushed first (read-your-writes)."""

    session_id: str
    limit: int | None


# -- MigrationActor -----------------------------------------------------------


@attrs.frozen(eq=False)
class Migrate(Request[MigrationReport]):
    """MemorySystem → MigrationActor: bring the file to the code's schema version.

    Answered with a :class:`~actors.model.MigrationReport`, or
    :class:`~actors.errors.SchemaTooNew`, :class:`~actors.errors.NotADatabase`,
    :class:`~actors.errors.MigrationFailed`; in each error case the file is
    left as it was.
    """


# -- Supervision --------------------------------------------------------------


@attrs.frozen(eq=False)
class ChildReady:
    """Child → Supervisor: ``on_start`` finished; the child serves requests now."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)


@attrs.frozen(eq=False)
class ChildFailed:
    """Child → Supervisor: the child died of an exception (in ``on_start`` or a handler)."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)
    reason: str
    error: BaseException | None = None


@attrs.frozen(eq=False)
class ChildStopped:
    """Child → Supervisor: the child stopped in an orderly way (by whoever stopped it)."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)


@attrs.frozen(eq=False)
class StartChildren(Request[None]):
    """MemorySystem → Supervisor: spawn every child in order.

    Answered with ``None`` once each child named in ``answer_after`` (None:
    every child) reported :class:`ChildReady`, or with the first child's
    start error (the others are then stopped). The children not named go on
    starting after the answer, unavailable until ready, as while restarting.
    """

    answer_after: frozenset[str] | None = None


@attrs.frozen(eq=False)
class Shutdown(Request[None]):
    """MemorySystem → Supervisor: stop restarting children; answered with ``None``.

    The MemorySystem then stops the children itself (it may block; an actor may not).
    """


@attrs.frozen(eq=False)
class RestartChild:
    """Supervisor → itself (a timer): start a fresh instance of the named child."""

    name: str


# -- Sync: SyncActor ↔ StoreActor, timers ----------------------------------------
#
# The SyncActor may never block on the StoreActor's future, so its requests
# to the store are *tell-backs*: they carry the SyncActor's ref, and the store
# answers by telling an :class:`Answer` back (also when it stops or fails).


@attrs.frozen(eq=False)
class TellBack:
    """Base of requests answered by telling an :class:`Answer` to ``reply_to``."""

    reply_to: pykka.ActorRef[Any] = attrs.field(repr=False)


@attrs.frozen(eq=False)
class Answer:
    """Any actor → the ``reply_to`` of a :class:`TellBack`: its value or its error."""

    request: TellBack
    value: Any = None
    error: BaseException | None = None


@attrs.frozen(eq=False)
class FetchOutbox(TellBack):
    """SyncActor → StoreActor: up to ``limit`` outbox entries due for a push.

    Answered with a tuple of :class:`~actors.sync_model.OutboxEntry`, oldest
    first, one per memory (its latest state), skipping dead letters and
    entries whose backoff has not expired.
    """

    limit: int


@attrs.frozen(eq=False)
class RecordPush(TellBack):
    """SyncActor → StoreActor: what happened to pushed entries (one transaction).

    Answered with the number of entries settled. ``outcomes`` is a tuple of
    :class:`~actors.sync_model.PushOutcome`.
    """

    outcomes: tuple[Any, ...]


@attrs.frozen(eq=False)
class ApplyChanges(TellBack):
    """SyncActor → StoreActor: apply a page of the hub's change feed, then save its cursor.

    Last writer wins by (version, origin). The cursor is saved in the same
    transaction as the changes, so it never runs ahead of what was applied.
    Answered with the number of memories that changed locally.
    """

    memories: tuple[Any, ...]
    cursor: str | None


@attrs.frozen(eq=False)
class ReadSyncMeta(TellBack):
    """SyncActor → StoreActor: the saved pull cursor and the replica's origin.

    Answered with ``(cursor, origin)``.
    """


@attrs.frozen(eq=False)
class AcquireLease(TellBack):
    """SyncActor → StoreActor: take or renew the file's sync lease for ``ttl`` seconds.

    Answered with ``(held, holder, expires_at)``: only the holder syncs, so
    several processes on one file never push the same outbox twice.
    """

    holder: str
    ttl: float


@attrs.frozen(eq=False)
class ReleaseLease(TellBack):
    """SyncActor → StoreActor: give up the lease (on stop), if ``holder`` holds it."""

    holder: str


@attrs.frozen(eq=False)
class ReadLocalDigest(TellBack):
    """SyncActor → StoreActor: a page of (id, content hash, version, deleted), by id.

    Answered with a tuple of :class:`~actors.sync_model.DigestRow` after ``after``.
    """

    after: str | None
    limit: int


@attrs.frozen(eq=False)
class RequeueForPush(TellBack):
    """SyncActor → StoreActor: queue these memories for a push (full resync found them
    missing or older on the hub). Answered with the number queued."""

    memory_ids: tuple[str, ...]


@attrs.frozen(eq=False)
class RetryDeadLetters(Request[int]):
    """Caller → StoreActor: put every dead letter back in the outbox → number requeued."""


@attrs.frozen(eq=False)
class ReadDeadLetters(Request[DeadLetters]):
    """Caller → StoreActor: the dead letters, oldest first, at most ``limit`` → DeadLetters."""

    limit: int


@attrs.frozen
class SyncTick:
    """Timer → SyncActor: start a push and a pull if none is running (periodic)."""


@attrs.frozen
class SyncNudge:
    """Caller → SyncActor: something was stored; push soon (coalesced)."""


@attrs.frozen
class LeaseTick:
    """Timer → SyncActor: renew (or try to take) the sync lease."""


@attrs.frozen
class AuthRecheck:
    """Timer → SyncActor: the key was refused; check it again."""


@attrs.frozen
class ResyncTick:
    """Timer → SyncActor: run a full resync (at start and every ``resync_interval``)."""


@attrs.frozen(eq=False)
class SyncStatus(Request[SyncReport]):
    """Caller → SyncActor: the sync state → :class:`~actors.sync_model.SyncReport`."""


# -- Remote recall: facade → RecallRouter → RecallWorker ------------------------------


@attrs.frozen(eq=False)
class RemoteRecall(Request[tuple[RemoteHit, ...]]):
    """Caller → RecallRouter: semantic search on the hub.

    Answered with a tuple of :class:`~actors.wire.RemoteHit` (from the
    cache at once, or when a worker's request completes), or a
    :class:`~actors.errors.HubError`. The caller waits with its own deadline;
    if it gives up, the request still completes and its answer is cached, so
    the caller's retry is answered at once.
    """

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    #: This namespace and every one below it (``a`` holds ``a`` and ``a/b``, not ``ab``).
    namespace_prefix: str | None = None


@attrs.frozen(eq=False)
class RecallJob(TellBack):
    """RecallRouter → RecallWorker: run one hub request; answered with its hits."""

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    #: This namespace and every one below it (``a`` holds ``a`` and ``a/b``, not ``ab``).
    namespace_prefix: str | None = None


@attrs.frozen
class ExpireRecallCache:
    """Timer → RecallRouter: drop cached answers older than the TTL."""


# -- Local semantic recall: EmbeddingActor ↔ StoreActor ---------------------------------------


@attrs.frozen(eq=False)
class ReadEmbedBacklog(TellBack):
    """EmbeddingActor → StoreActor: up to ``limit`` live memories after row ``after``
    without a vector of ``model``; answered with a tuple of :class:`~actors.model.EmbedItem`.
    """

    model: str
    after: int
    limit: int


@attrs.frozen(eq=False)
class WriteVectors(TellBack):
    """EmbeddingActor → StoreActor: store these vectors of ``model`` in one transaction.

    Answered with the tuple of :class:`~actors.model.StoredVector` written: a
    memory forgotten or replaced meanwhile gets none.
    """

    model: str
    dimension: int
    vectors: tuple[StoredVector, ...]


@attrs.frozen(eq=False)
class ReadVectors(TellBack):
    """EmbeddingActor → StoreActor: a page of the stored vectors of ``model`` after row
    ``after`` (live memories, of their current text); answered with StoredVectors.
    """

    model: str
    after: int
    limit: int


@attrs.frozen
class EmbedNudge:
    """Caller → EmbeddingActor: memories were written; embed the new ones soon."""


@attrs.frozen(eq=False)
class EmbeddingStatus(Request[EmbeddingReport]):
    """Caller → EmbeddingActor: its state → :class:`~actors.model.EmbeddingReport`."""


# -- Export, import, backup (actors/portable.py; the facade drives them) ---------------


@attrs.frozen(eq=False)
class ExportPage(Request[tuple[Memory, ...]]):
    """Caller → StoreActor: up to ``limit`` memories with ids after ``after``, in id order.

    The filters are those of :class:`~actors.portable.ExportFilters`; ``since``
    keeps memories updated at or after that Unix time; tombstones only with
    ``include_deleted``. Pending writes are flushed first.
    """

    after: str | None
    limit: int
    namespace_prefix: str | None
    tags: tuple[str, ...]
    since: float | None
    include_deleted: bool


@attrs.frozen(eq=False)
class ImportMemories(WriteRequest[ImportCounts]):
    """Caller → StoreActor: apply a batch of exported memories, group-committed.

    Merged as a pull from the hub is (by id, last writer wins by
    ``(version, origin)``; then by content within a namespace), and each
    memory that changed is queued for a push like a local write. Answered
    with an :class:`~actors.portable.ImportCounts` after commit; a batch
    commits whole or not at all.
    """

    memories: tuple[WireMemory, ...]


@attrs.frozen(eq=False)
class BackupDatabase(Request[int]):
    """Caller → StoreActor: copy the file to ``target`` with SQLite's online backup.

    One read snapshot for the whole copy, ``pages_per_step`` pages per step:
    other processes keep writing meanwhile (WAL) and never restart it.
    Answered with the number of pages copied; ``target`` is a new file.
    """

    target: str
    pages_per_step: int
