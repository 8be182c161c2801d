"""The hub's storage engine interface: what an owner of the hub's data calls.

An *owner* drives exactly one engine from one thread: the
:class:`~actors.hub.store.HubStoreActor` while the hub serves, the
:class:`~actors.hub.direct.DirectBackend` in the simulation and in-process
tests, the key administration of the CLI (:mod:`actors.hub.key_admin`).
:class:`actors.hub.database.HubDatabase` (SQLite) is the engine today; a
second one (PostgreSQL) implements :class:`HubEngine` and plugs in with no
change to the owners, HubCore or the protocol, because of the error contract
below.

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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from actors.hub.backend import Cursor
    from actors.hub.keys import KeyInfo, StoredKey
    from actors.hub.search import EmbedItem, VectorChanges
    from actors.wire import (
        ChangesPage,
        DigestPage,
        EmbedderInfo,
        HubCounts,
        ItemResult,
        RecallHits,
        RecallQuery,
        WireMemory,
    )

__all__ = ["EngineOpener", "HubEngine"]


class HubEngine(Protocol):
    """The hub's data, over one connection of one engine. See the module for errors.

    Every read and write is scoped by ``tenant`` except the embedding queue
    and the vector feed, which serve the whole hub's EmbedderActor and
    VectorIndexActor (their records carry the tenant).
    """

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
    ) -> RecallHits:
        """Rank (the engine's keyword ranking, fused with ``vector_hits``), filter and fetch.

        The ranking rules are :mod:`actors.hub.search`'s; only the tenant's
        live memories that pass the filters are answered, whatever the
        vector index believed.
        """
        ...

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connection; the engine is unusable after."""
        ...


#: Opens an engine, given the owner's id source (a new hub database mints its
#: hub id on first open). The HubStoreActor calls it in ``setup``, on its own
#: thread, again after each restart; it raises our storage or schema errors.
EngineOpener: TypeAlias = Callable[[Callable[[], str]], HubEngine]
