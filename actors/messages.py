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
    from actors.hub.core import Cursor
    from actors.hub.protocol import WireMemory

__all__ = [
    "ChildFailed",
    "ChildReady",
    "ChildStopped",
    "CountMemories",
    "Flush",
    "ForgetMemory",
    "GetMemory",
    "HubFlush",
    "HubLookupKey",
    "HubPush",
    "HubReadChanges",
    "HubReadCounts",
    "HubReadDigest",
    "ListMemories",
    "Migrate",
    "Ping",
    "Request",
    "RestartChild",
    "SearchMemories",
    "Shutdown",
    "StartChildren",
    "StoreMemory",
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
