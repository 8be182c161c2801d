"""The hub's protocol between its actors: every message the hub's actors exchange.

The same conventions as :mod:`actors.messages` (frozen attrs classes; a
request carries its reply future, or is a tell-back), which holds the
client's messages and the shared bases. Every request here is scoped by
``tenant``: the tenant of the API key that HubCore authenticated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from actors.hub.keys import StoredKey
from actors.hub.search import VectorSearchResult
from actors.messages import Request, TellBack
from actors.wire import ChangesPage, DigestPage, HubCounts, ItemResult, RecallHits

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from actors.hub.backend import Cursor
    from actors.wire import EmbedderInfo, WireMemory

__all__ = [
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
]


# -- The reference hub (actors/hub/): HubCore → HubStoreActor ------------------
#
# Sent by the hub's ActorBackend (actors/hub/service.py) on behalf of HubCore,
# answered by the HubStoreActor (actors/hub/store.py). Every request is scoped
# by ``tenant``: the tenant of the API key that HubCore authenticated.


@attrs.frozen(eq=False)
class HubLookupKey(Request[StoredKey | None]):
    """HubCore → HubStoreActor: the stored key named ``key_id``.

    Answered with a :class:`~actors.hub.keys.StoredKey` (hash and revocation)
    or ``None``. Keys are written only by the CLI, so this does not flush
    pending pushes.
    """

    key_id: str


@attrs.frozen(eq=False)
class HubPush(Request[tuple[ItemResult, ...]]):
    """HubCore → HubStoreActor: apply a validated batch of upserts and tombstones.

    Group-committed with every push already queued; answered after commit
    with a tuple of :class:`~actors.wire.ItemResult`, one per item in
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
class HubReadChanges(Request[ChangesPage]):
    """HubCore → HubStoreActor: the tenant's change feed after ``since`` (None: from the start).

    Answered with a :class:`~actors.wire.ChangesPage` of at most
    ``limit`` changes, or :class:`~actors.hub.backend.CursorUnknown` for a
    cursor this database did not issue. Pending pushes are committed first.
    """

    tenant: str
    since: Cursor | None
    limit: int


@attrs.frozen(eq=False)
class HubReadDigest(Request[DigestPage]):
    """HubCore → HubStoreActor: a page of (id, hash, version) after memory id ``after``.

    Answered with a :class:`~actors.wire.DigestPage`; pending pushes
    are committed first.
    """

    tenant: str
    after: str | None
    limit: int


@attrs.frozen(eq=False)
class HubReadCounts(Request[HubCounts]):
    """HubCore → HubStoreActor: live memories per namespace and tombstones of the tenant.

    Answered with a :class:`~actors.wire.HubCounts`; pending pushes
    are committed first.
    """

    tenant: str


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
class HubVectorSearch(Request[VectorSearchResult]):
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
    #: This namespace and those below it (None: no prefix filter).
    namespace_prefix: str | None = None


@attrs.frozen(eq=False)
class HubRecall(Request[RecallHits]):
    """HubCore (a request thread) → HubStoreActor: rank, filter and fetch a recall's hits.

    Fuses ``vector_hits`` (None: no vector ranking; ``note`` says why) with
    the store's keyword ranking, keeps the tenant's live memories that pass
    the filters, and answers a :class:`~actors.wire.RecallHits` whose
    ``pending`` counts the tenant's memories still queued for a vector or
    not yet read by the index. Pending pushes are committed first. On an
    engine that searches vectors itself (``VectorSearch.in_database``) the
    sender gives ``query_vector`` instead of ``vector_hits``, and the store's
    engine ranks it.
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
    #: This namespace and those below it (None: no prefix filter).
    namespace_prefix: str | None = None
    #: The query's vector (float32 little-endian) for the engine to rank (None: it does not).
    query_vector: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class HubEmbedTick:
    """Timer → EmbedderActor: look for work when idle; give up on a lost answer."""


@attrs.frozen
class HubIndexTick:
    """Timer → VectorIndexActor: read the vector feed for changes."""
