"""The protocol between actors: every message, in one place.

Each message is a frozen attrs class. A *request* carries ``reply``, a future
made by the caller's runtime; the receiving actor answers it exactly once
with a value or an exception from :mod:`actors.errors`, even when it stops
or fails (see :class:`actors._base.ReplyingActor`). Requests are sent with
``tell``, never ``ask``: the reply may be settled later than the handler
returns (group commit), which Pykka's ask cannot express.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import pykka

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from actors.hub.core import Cursor
    from actors.hub.protocol import EmbedderInfo, WireMemory

__all__ = [
    "AcquireLease",
    "Answer",
    "ApplyChanges",
    "AuthRecheck",
    "ChildFailed",
    "ChildReady",
    "ChildStopped",
    "CountMemories",
    "ExpireRecallCache",
    "FetchOutbox",
    "Flush",
    "ForgetMemory",
    "GetMemory",
    "HubEmbedTick",
    "HubFlush",
    "HubIndexTick",
    "HubLookupKey",
    "HubPush",
    "HubReadChanges",
    "HubReadCounts",
    "HubReadDigest",
    "HubReadVectorChanges",
    "HubRecall",
    "HubSaveVectors",
    "HubTakeEmbedWork",
    "HubVectorSearch",
    "LeaseTick",
    "ListMemories",
    "Migrate",
    "Ping",
    "ReadLocalDigest",
    "ReadSyncMeta",
    "RecallJob",
    "RecordPush",
    "ReleaseLease",
    "RemoteRecall",
    "Request",
    "RequeueForPush",
    "RestartChild",
    "ResyncTick",
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
]


@attrs.frozen(eq=False)
class Request:
    """Base of every message that expects an answer on ``reply``."""

    reply: pykka.Future[Any] = attrs.field(repr=False)


# -- StoreActor ---------------------------------------------------------------


@attrs.frozen(eq=False)
class WriteRequest(Request):
    """Base of the writes the StoreActor group-commits."""


@attrs.frozen(eq=False)
class StoreMemory(WriteRequest):
    """Caller → StoreActor: store validated, normalised content.

    Answered with a :class:`~actors.model.StoreReceipt` only after the
    transaction holding the memory and its outbox row has committed. Content
    already stored in the namespace answers its existing id (``duplicate``),
    with the new tags merged in.
    """

    content: str
    content_hash: str
    namespace: str
    tags: tuple[str, ...]
    metadata_json: str


@attrs.frozen(eq=False)
class ForgetMemory(WriteRequest):
    """Caller → StoreActor: tombstone a memory (content erased, id kept so it can sync).

    Answered with a :class:`~actors.model.ForgetResult` after commit, or
    :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str


@attrs.frozen
class Flush:
    """StoreActor → itself: commit the pending batch in one transaction.

    Told once per batch, so every write already in the mailbox joins the batch
    before the flush runs. ``attempt`` counts retries after ``SQLITE_BUSY``;
    a retry is a timer message on the runtime clock, never a sleep.
    """

    attempt: int = 0


@attrs.frozen(eq=False)
class GetMemory(Request):
    """Caller → StoreActor: one memory by id → :class:`~actors.model.Memory`.

    Pending writes are flushed first, so a caller reads its acknowledged writes.
    Forgotten or unknown ids answer :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str


@attrs.frozen(eq=False)
class SearchMemories(Request):
    """Caller → StoreActor: local keyword search (FTS5, BM25) → tuple of RecallHit."""

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int


@attrs.frozen(eq=False)
class ListMemories(Request):
    """Caller → StoreActor: most recent first → :class:`~actors.model.MemoryPage`."""

    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    before: str | None


@attrs.frozen(eq=False)
class CountMemories(Request):
    """Caller → StoreActor: counts and diagnostics → :class:`~actors.model.CountResult`."""

    namespace: str | None
    tags: tuple[str, ...]


@attrs.frozen(eq=False)
class Ping(Request):
    """Supervisor or caller → any actor: answered with the actor's state name once ready."""


# -- MigrationActor -----------------------------------------------------------


@attrs.frozen(eq=False)
class Migrate(Request):
    """MemorySystem → MigrationActor: bring the file to the code's schema version.

    Answered with a :class:`~actors.migrations.MigrationReport`, or
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
class StartChildren(Request):
    """MemorySystem → Supervisor: spawn every child in order.

    Answered with ``None`` once each child reported :class:`ChildReady`, or
    with the first child's start error (the others are then stopped).
    """


@attrs.frozen(eq=False)
class Shutdown(Request):
    """MemorySystem → Supervisor: stop restarting children; answered with ``None``.

    The MemorySystem then stops the children itself (it may block; an actor may not).
    """


@attrs.frozen(eq=False)
class RestartChild:
    """Supervisor → itself (a timer): start a fresh instance of the named child."""

    name: str


# -- The reference hub (actors/hub/): HubCore → HubStoreActor ------------------
#
# Sent by the hub's ActorBackend (actors/hub/service.py) on behalf of HubCore,
# answered by the HubStoreActor (actors/hub/store.py). Every request is scoped
# by ``tenant``: the tenant of the API key that HubCore authenticated.


@attrs.frozen(eq=False)
class HubLookupKey(Request):
    """HubCore → HubStoreActor: the stored key named ``key_id``.

    Answered with a :class:`~actors.hub.keys.StoredKey` (hash and revocation)
    or ``None``. Keys are written only by the CLI, so this does not flush
    pending pushes.
    """

    key_id: str


@attrs.frozen(eq=False)
class HubPush(Request):
    """HubCore → HubStoreActor: apply a validated batch of upserts and tombstones.

    Group-committed with every push already queued; answered after commit
    with a tuple of :class:`~actors.hub.protocol.ItemResult`, one per item in
    order, or :class:`~actors.errors.StorageError` /
    :class:`~actors.errors.StorageBusy` (nothing of the batch was written).
    """

    tenant: str
    items: tuple[WireMemory, ...]


@attrs.frozen
class HubFlush:
    """HubStoreActor → itself: commit the pending pushes in one transaction.

    Told once per batch, so every push already in the mailbox joins it.
    """


@attrs.frozen(eq=False)
class HubReadChanges(Request):
    """HubCore → HubStoreActor: the tenant's change feed after ``since`` (None: from the start).

    Answered with a :class:`~actors.hub.protocol.ChangesPage` of at most
    ``limit`` changes, or :class:`~actors.hub.core.CursorUnknown` for a
    cursor this database did not issue. Pending pushes are committed first.
    """

    tenant: str
    since: Cursor | None
    limit: int


@attrs.frozen(eq=False)
class HubReadDigest(Request):
    """HubCore → HubStoreActor: a page of (id, hash, version) after memory id ``after``.

    Answered with a :class:`~actors.hub.protocol.DigestPage`; pending pushes
    are committed first.
    """

    tenant: str
    after: str | None
    limit: int


@attrs.frozen(eq=False)
class HubReadCounts(Request):
    """HubCore → HubStoreActor: live memories per namespace and tombstones of the tenant.

    Answered with a :class:`~actors.hub.protocol.HubCounts`; pending pushes
    are committed first.
    """

    tenant: str


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
class RetryDeadLetters(Request):
    """Caller → StoreActor: put every dead letter back in the outbox → number requeued."""


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
class SyncStatus(Request):
    """Caller → SyncActor: the sync state → :class:`~actors.sync_model.SyncReport`."""


# -- Remote recall: facade → RecallRouter → RecallWorker ------------------------------


@attrs.frozen(eq=False)
class RemoteRecall(Request):
    """Caller → RecallRouter: semantic search on the hub.

    Answered with a tuple of :class:`~actors.hub.protocol.RemoteHit` (from the
    cache at once, or when a worker's request completes), or a
    :class:`~actors.errors.HubError`. The caller waits with its own deadline;
    if it gives up, the request still completes and its answer is cached, so
    the caller's retry is answered at once.
    """

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int


@attrs.frozen(eq=False)
class RecallJob(TellBack):
    """RecallRouter → RecallWorker: run one hub request; answered with its hits."""

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int


@attrs.frozen
class ExpireRecallCache:
    """Timer → RecallRouter: drop cached answers older than the TTL."""


# -- Hub semantic recall (actors/hub/): store ⇄ embedder ⇄ vector index ----------
#
# The HubStoreActor owns the hub file, and with it the embedding queue and
# the stored vectors; it never waits on anyone. The EmbedderActor pulls work
# from it and hands vectors back (tell-backs); the VectorIndexActor follows
# the vector feed as a client follows a change feed. Neither is ever told
# anything by the store: a restart of any of the three needs no re-wiring.


@attrs.frozen(eq=False)
class HubTakeEmbedWork(TellBack):
    """EmbedderActor → HubStoreActor: up to ``limit`` memories waiting for a vector.

    Answered with a tuple of :class:`~actors.hub.search.EmbedItem`, oldest
    first. ``model``/``dimension`` name the embedder's vector space: when it
    differs from the stored one, the store switches to it first and queues
    every live memory for re-embedding (in the background; recall meanwhile
    falls back to keywords for memories not re-embedded yet).
    """

    model: str
    dimension: int
    limit: int


@attrs.frozen(eq=False)
class HubSaveVectors(TellBack):
    """EmbedderActor → HubStoreActor: vectors for work it took, in one transaction.

    ``rows`` are ``(key, content_hash, float32 little-endian bytes)``. A
    vector whose memory changed content or was forgotten meanwhile is
    dropped (the changed memory is still queued). Answered with the number
    of vectors stored; vectors of a model that is no longer current are
    ignored (answer 0).
    """

    model: str
    dimension: int
    rows: tuple[tuple[int, str, bytes], ...]


@attrs.frozen(eq=False)
class HubReadVectorChanges(TellBack):
    """VectorIndexActor → HubStoreActor: the vector feed after position ``after``.

    Answered with a :class:`~actors.hub.search.VectorChanges` page of at
    most ``limit`` changes (each the memory's current vector, or a drop).
    """

    after: int
    limit: int


@attrs.frozen(eq=False)
class HubVectorSearch(Request):
    """HubCore (a request thread) → VectorIndexActor: the tenant's best ``k`` by cosine.

    Answered with a :class:`~actors.hub.search.VectorSearchResult`: the
    model the index holds (the caller compares it with its query's), whether
    the index has caught up with the feed once, and (key, similarity) pairs.
    """

    tenant: str
    vector: npt.NDArray[np.float32] = attrs.field(repr=False)
    namespace: str | None
    tags: tuple[str, ...]
    k: int


@attrs.frozen(eq=False)
class HubRecall(Request):
    """HubCore (a request thread) → HubStoreActor: rank, filter and fetch a recall's hits.

    Fuses ``vector_hits`` (None: no vector ranking; ``note`` says why) with
    the store's keyword ranking, keeps the tenant's live memories that pass
    the filters, and answers a :class:`~actors.hub.protocol.RecallHits` whose
    ``pending`` counts the tenant's memories still queued for a vector or
    not yet read by the index. Pending pushes are committed first.
    """

    tenant: str
    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    vector_hits: tuple[tuple[int, float], ...] | None
    embedder: EmbedderInfo | None
    note: str
    #: How far the vector index has read the vector feed (None: no index).
    indexed_through: int | None = None


@attrs.frozen
class HubEmbedTick:
    """Timer → EmbedderActor: look for work when idle; give up on a lost answer."""


@attrs.frozen
class HubIndexTick:
    """Timer → VectorIndexActor: read the vector feed for changes."""
