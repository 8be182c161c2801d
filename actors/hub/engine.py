"""The hub's storage engine interface: what an owner of the hub's data calls.

An *owner* drives exactly one engine from one thread: the
:class:`~actors.hub.store.HubStoreActor` while the hub serves, the
:class:`~actors.hub.direct.DirectBackend` in the simulation and in-process
tests, the key administration of the CLI (:mod:`actors.hub.key_admin`).
:class:`actors.hub.database.HubDatabase` (SQLite) and
:class:`actors.hub.postgres.PostgresEngine` implement :class:`HubEngine` and
plug in with no change to HubCore or the protocol, because of the error
contract below. What differs between engines in what they can do is said by
the engine itself, never found out by its type: where vectors are searched
is :attr:`HubEngine.vector_search` (an owner keeps an in-memory index only
when the engine does not search them), read by
:func:`actors.hub.engines.vector_search_of` before the hub's actors start.

Error contract, for every method:

- the engine translates its own driver's errors: an owner never sees
  ``sqlite3`` (or ``psycopg``). It raises :class:`~actors.errors.StorageBusy`
  when another connection held the lock past the engine's busy timeout, and
  :class:`~actors.errors.StorageError` for any other failure of the store
  (I/O error, disk full, constraint); each names the operation and the file
  or server. A method that writes has then rolled back: nothing of the call
  was written.
- :meth:`HubEngine.changes` also raises
  :class:`~actors.hub.backend.CursorUnknown` for a cursor that this database
  did not issue (another database, or a position past the feed's end).
- anything else is a bug, and propagates unchanged (the owning actor dies of
  it and its supervisor restarts it).

So the owners group-commit on ``(StorageError, StorageBusy)`` (two
siblings in :mod:`actors.errors`, neither a subclass of the other) and pass
the engine's errors on to their callers as they are.

Not thread-safe: one owner at a time, each call completes before it returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from actors.errors import SchemaError, SchemaTooNew
from actors.hub.backend import Cursor, CursorUnknown
from actors.hub.search import (
    IDENTIFIER_BOOST,
    KEYWORD_WEIGHT,
    RANK_DEPTH,
    VectorChange,
    VectorChanges,
    fuse,
    identifier_phrases,
    round_score,
)
from actors.wire import (
    DigestEntry,
    DigestPage,
    RecallQuery,
    RecallRanking,
    RemoteHit,
    WireMemory,
)

if TYPE_CHECKING:
    from actors.hub.keys import KeyInfo, StoredKey
    from actors.hub.search import EmbedItem, VectorSearch
    from actors.wire import (
        ChangesPage,
        EmbedderInfo,
        HubCounts,
        ItemResult,
        RecallHits,
    )

__all__ = [
    "EngineOpener",
    "HitRow",
    "HubEngine",
    "check_schema_version",
    "digest_page",
    "feed_start",
    "hits_of",
    "memory_of_row",
    "rank",
    "vector_page",
]


def check_schema_version(where: str, found: int, latest: int, serve: str) -> None:
    """Refuse to open a hub database not at ``latest``: one written by newer code is
    :class:`SchemaTooNew` (upgrading memory-actors is the way, not ``serve``, which refuses
    it too); an older one names ``serve``, the command that migrates it."""
    if found > latest:
        raise SchemaTooNew(where, found, latest)
    if found != latest:
        raise SchemaError(
            f"{where} is at hub schema {found}, this code needs {latest}; "
            f"start the hub with `{serve}`, which migrates it"
        )


class HubEngine(Protocol):
    """The hub's data, over one connection of one engine. See the module for errors.

    Every read and write is scoped by ``tenant`` except the embedding queue
    and the vector feed, which serve the whole hub's EmbedderActor and
    VectorIndexActor (their records carry the tenant).
    """

    #: Where this database's vectors are searched, fixed while the engine is
    #: open. ``in_database``: :meth:`recall` ranks a ``query_vector`` itself
    #: (PostgreSQL with pgvector, one HNSW index for every hub process), and
    #: owners keep no index. Otherwise owners follow :meth:`vector_changes`
    #: into an exact in-memory index and pass its ``vector_hits``. Its
    #: ``notice`` is said at start and in every recall's note.
    vector_search: VectorSearch

    # -- keys (written by the CLI, read on every request) -----------------------------

    def lookup_key(self, key_id: str) -> StoredKey | None:
        """The key row named ``key_id``, or None."""
        ...

    def add_key(self, key_id: str, tenant: str, key_hash: str, created_at: float) -> None:
        """Store a new key (its hash only); ``StorageError`` if the id is taken."""
        ...

    def list_keys(self) -> list[KeyInfo]:
        """Every key, oldest first."""
        ...

    def revoke_key(self, key_id: str, revoked_at: float) -> KeyInfo | None:
        """Revoke ``key_id`` (idempotent: the first revocation time stands); None if unknown."""
        ...

    # -- the change feed ----------------------------------------------------------------

    def commit_pushes(
        self, pushes: Sequence[tuple[str, tuple[WireMemory, ...]]], now: float
    ) -> list[tuple[ItemResult, ...]]:
        """Apply several ``(tenant, items)`` pushes in one transaction: all commit or none.

        Durable when it returns. One result per item, in order, per push;
        each changed memory moves to the end of its tenant's feed, and a
        live memory joins the embedding queue in the same transaction.
        """
        ...

    def changes(self, tenant: str, since: Cursor | None, limit: int) -> ChangesPage:
        """The tenant's feed after ``since`` (None: from the start), at most ``limit`` changes."""
        ...

    def digest(self, tenant: str, after: str | None, limit: int) -> DigestPage:
        """A page of every memory of the tenant, by id, after memory id ``after``."""
        ...

    def counts(self, tenant: str) -> HubCounts:
        """Live memories per namespace, tombstones, and the feed position."""
        ...

    def tenants(self) -> list[str]:
        """Every tenant that has a change feed, by name (for copying a hub)."""
        ...

    # -- semantic recall ------------------------------------------------------------------

    def embed_space(self) -> tuple[str, int] | None:
        """The (model, dimension) of the stored vectors, or None before any embedder ran."""
        ...

    def take_embed_work(self, model: str, dimension: int, limit: int) -> tuple[EmbedItem, ...]:
        """Up to ``limit`` live memories waiting for a vector, oldest first.

        A (model, dimension) other than :meth:`embed_space` first becomes
        the current one, and every live memory without such a vector is
        queued again.
        """
        ...

    def save_vectors(
        self, model: str, dimension: int, rows: Sequence[tuple[int, str, bytes]]
    ) -> int:
        """Store ``(key, content_hash, float32 bytes)`` vectors in one transaction; how many.

        A vector whose memory changed or was forgotten since it was taken is
        dropped; vectors of a space that is no longer current are ignored (0).
        """
        ...

    def vector_changes(self, after: int, limit: int) -> VectorChanges:
        """The vector feed after position ``after``: each changed memory's current vector."""
        ...

    def pending_embeddings(self, tenant: str, indexed_through: int | None = None) -> int:
        """The tenant's live memories waiting for a vector, or for the index to read it."""
        ...

    def recall(
        self,
        tenant: str,
        query: RecallQuery,
        vector_hits: Sequence[tuple[int, float]] | None,
        *,
        embedder: EmbedderInfo | None = None,
        note: str = "",
        indexed_through: int | None = None,
        query_vector: bytes | None = None,
    ) -> RecallHits:
        """Rank (the engine's keyword ranking, fused with ``vector_hits``), filter and fetch.

        The ranking rules are :mod:`actors.hub.search`'s; only the tenant's
        live memories that pass the filters are answered, whatever the
        vector index believed. ``query_vector`` (float32 bytes of
        ``embedder``'s query vector) only where ``vector_search.in_database``:
        the engine then ranks it in its own index, in the same snapshot, and
        adds to ``note`` why a vector ranking is missing (as
        :func:`~actors.hub.search.vector_ranking` says it); elsewhere it is
        a bug (ValueError).
        """
        ...

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connection; the engine is unusable after."""
        ...


#: Opens an engine, given the owner's id source (a new hub database mints its
#: hub id on first open) and its clock (the runtime's monotonic seconds; None
#: for a one-shot command). The HubStoreActor calls it in ``setup``, on its own
#: thread, again after each restart; it raises our storage or schema errors.
EngineOpener: TypeAlias = Callable[[Callable[[], str], Callable[[], float] | None], HubEngine]


# -- what every engine shares: the engine-neutral halves of its answers ------------------------
#
# Each engine reads rows in its own SQL; these turn them into the same
# records, so that the two engines cannot drift apart in what they answer.

#: A recall row as the hit needs it: (id, namespace, content, tags, created_at).
HitRow: TypeAlias = tuple[str, str, str, tuple[str, ...], float]


def feed_start(since: Cursor | None, hub_id: str, head: int) -> int:
    """The sequence number a feed read starts after; ``CursorUnknown`` for a foreign cursor."""
    if since is None:
        return 0
    if since.hub_id != hub_id:
        raise CursorUnknown(
            f"cursor {since.encode()} was issued by another hub database (this one is "
            f"{hub_id}): the hub was rebuilt or replaced; pull again from the "
            "beginning (omit since)"
        )
    if since.seq > head:
        raise CursorUnknown(
            f"cursor {since.encode()} is ahead of this hub's change feed, which ends at "
            f"{head}: the hub's database was restored from an older copy; pull again "
            "from the beginning (omit since)"
        )
    return since.seq


def rank(
    query: RecallQuery,
    vector_hits: Sequence[tuple[int, float]] | None,
    semantic: bool,
    *,
    keyword: Callable[[int, bool], list[tuple[int, float]]],
    identifiers: Callable[[Sequence[str], int], dict[int, int]],
) -> tuple[RecallRanking, list[tuple[int, float]]]:
    """The ranking (see :mod:`actors.hub.search`) as (row id, score), best first.

    ``keyword(depth, scored)`` is the engine's keyword ranking;
    ``identifiers(phrases, depth)`` counts the phrases each memory holds.
    """
    depth = max(RANK_DEPTH, query.limit)
    if vector_hits is None:
        return "keyword", keyword(depth, True)
    if not semantic:
        by_keyword = [key for key, _ in keyword(depth, False)]
        by_vector = [key for key, _ in vector_hits]
        return "hybrid", fuse([by_vector, by_keyword], [1.0, KEYWORD_WEIGHT])
    phrases = identifier_phrases(query.query)
    if not phrases:
        return "vector", list(vector_hits)
    scores = dict(vector_hits)
    # A memory found only by its identifiers gets the lowest similarity the
    # vector ranking returned: a lower bound of its own, which is lower still.
    floor = min(scores.values(), default=0.0)
    order = {key: position for position, (key, _) in enumerate(vector_hits)}
    for key, count in identifiers(phrases, depth).items():
        scores[key] = scores.get(key, floor) + IDENTIFIER_BOOST * count / len(phrases)
    ranked = sorted(scores.items(), key=lambda item: (-item[1], order.get(item[0], depth)))
    return "vector", ranked


def hits_of(
    ranked: Sequence[tuple[int, float]],
    rows: Mapping[int, HitRow],
    vector_hits: Sequence[tuple[int, float]] | None,
    limit: int,
) -> tuple[RemoteHit, ...]:
    """The first ``limit`` ranked memories that ``rows`` holds (those that passed the filters)."""
    similarity = dict(vector_hits or ())
    hits = []
    for key, score in ranked:
        row = rows.get(key)
        if row is None:
            continue
        sim = similarity.get(key)
        hits.append(
            RemoteHit(
                id=row[0],
                namespace=row[1],
                content=row[2],
                tags=row[3],
                score=round_score(score),
                created_at=row[4],
                similarity=None if sim is None else round_score(sim),
            )
        )
        if len(hits) == limit:
            break
    return tuple(hits)


def vector_page(
    space: tuple[str, int] | None,
    rows: Sequence[Sequence[Any]],
    after: int,
    limit: int,
    *,
    tags_of: Callable[[Any], tuple[str, ...]],
) -> VectorChanges:
    """A page of the vector feed from up to ``limit + 1`` rows read after ``after``.

    Each row: (vseq, key, tenant, model, dimension, vector, namespace, tags,
    memory deleted, vector made from the memory's current content); ``tags_of``
    reads the engine's stored tags.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    changes = []
    for _, key, tenant, model, dimension, vector, namespace, tags, deleted, same in rows:
        current = (
            space is not None
            and (model, dimension) == space
            and vector is not None
            and not deleted
            and same
        )
        changes.append(
            VectorChange(
                key=int(key),
                tenant=tenant,
                namespace=namespace,
                tags=tags_of(tags),
                vector=bytes(vector) if current and vector is not None else None,
            )
        )
    return VectorChanges(
        model=None if space is None else space[0],
        dimension=0 if space is None else space[1],
        changes=tuple(changes),
        next_after=int(rows[-1][0]) if rows else after,
        has_more=has_more,
    )


def memory_of_row(row: Sequence[Any], *, tags_of: Callable[[Any], tuple[str, ...]]) -> WireMemory:
    """A memory from the engines' 12 memory columns (id, namespace, content, content_hash,
    tags, metadata, created_at, updated_at, version, origin, deleted, key); ``tags_of``
    reads the engine's stored tags."""
    return WireMemory(
        id=row[0],
        namespace=row[1],
        content=row[2],
        content_hash=row[3],
        tags=tags_of(row[4]),
        metadata=json.loads(row[5]),
        created_at=row[6],
        updated_at=row[7],
        version=row[8],
        origin=row[9],
        deleted=bool(row[10]),
        key=row[11],
    )


def digest_page(rows: Sequence[Sequence[Any]], limit: int, cursor: str) -> DigestPage:
    """A digest page from up to ``limit + 1`` rows (id, namespace, content_hash, version,
    origin, deleted) read in id order after the previous page."""
    has_more = len(rows) > limit
    entries = tuple(
        DigestEntry(row[0], row[1], row[2], row[3], row[4], bool(row[5])) for row in rows[:limit]
    )
    next_after = entries[-1].id if has_more and entries else None
    return DigestPage(entries, next_after, has_more, cursor)
