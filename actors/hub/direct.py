"""DirectBackend: a HubBackend that drives a storage engine in the caller's thread.

For the deterministic simulation and in-process tests: no actor, no thread,
no timeout (every call completes before it returns). It drives any
:class:`~actors.hub.engine.HubEngine`, whose methods already raise our
storage errors; :meth:`DirectBackend.open` is the shortcut for the SQLite
engine on a file. Given an embedder, each recall first embeds the whole
backlog in the calling thread, then ranks as the served hub does: in its
own in-memory index, or in the engine's where the engine searches vectors
itself (``engine.vector_search.in_database``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors._base import ReplyingActor
from actors._sqlite import Connect
from actors._sqlite import connect as sqlite_connect
from actors.hub.backend import Cursor
from actors.hub.database import HubDatabase
from actors.hub.engines import is_postgres, open_engine, prepare_target
from actors.hub.keys import StoredKey
from actors.hub.schema import prepare_hub_file
from actors.hub.search import RANK_DEPTH, RecallUnsupported
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

if TYPE_CHECKING:
    from actors.hub.embedders import Embedder
    from actors.hub.engine import HubEngine
    from actors.hub.vectors import VectorIndex

__all__ = ["DirectBackend"]


class DirectBackend:
    """A :class:`~actors.hub.backend.HubBackend` that runs an engine in the calling thread.

    Not thread-safe; one caller at a time. ``timeout`` arguments are
    ignored: nothing here waits on anyone.
    """

    def __init__(
        self, engine: HubEngine, *, now: Callable[[], float], embedder: Embedder | None = None
    ) -> None:
        self.engine = engine
        self.now = now
        #: With an embedder, recall works (each recall first embeds the whole
        #: backlog, in this thread); without one it answers 501, as before.
        self.embedder = embedder
        self._index: VectorIndex | None = None
        self._feed_after = 0

    def __repr__(self) -> str:
        return f"<DirectBackend {self.engine!r}>"

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        new_id: Callable[[], str],
        now: Callable[[], float],
        connect: Connect = sqlite_connect,
        embedder: Embedder | None = None,
    ) -> DirectBackend:
        """Migrate (or create) the hub database at ``path`` and drive its engine.

        ``path``: a SQLite file (``connect`` opens it) or a ``postgresql://`` URL.
        """
        if is_postgres(path):
            prepare_target(path, now=now)
            return cls(open_engine(path, new_id=new_id), now=now, embedder=embedder)
        db_path = os.fspath(path)
        prepare_hub_file(db_path, now=now, connect=connect)
        return cls(
            HubDatabase.open(db_path, new_id=new_id, connect=connect), now=now, embedder=embedder
        )

    def close(self) -> None:
        self.engine.close()

    def ping(self, timeout: float) -> str:
        return ReplyingActor.READY

    def lookup_key(self, key_id: str, timeout: float) -> StoredKey | None:
        return self.engine.lookup_key(key_id)

    def push(
        self, tenant: str, items: tuple[WireMemory, ...], timeout: float
    ) -> tuple[ItemResult, ...]:
        return self.engine.commit_pushes([(tenant, items)], self.now())[0]

    def changes(self, tenant: str, since: Cursor | None, limit: int, timeout: float) -> ChangesPage:
        return self.engine.changes(tenant, since, limit)

    def digest(self, tenant: str, after: str | None, limit: int, timeout: float) -> DigestPage:
        return self.engine.digest(tenant, after, limit)

    def counts(self, tenant: str, timeout: float) -> HubCounts:
        return self.engine.counts(tenant)

    def recall(self, tenant: str, query: RecallQuery, timeout: float) -> RecallHits:
        embedder = self.embedder
        if embedder is None:
            raise RecallUnsupported(
                "this hub does not implement semantic recall (no embedder); use local recall"
            )
        from actors.hub.embedders import describe_embedder
        from actors.hub.vectors import to_blob

        info = EmbedderInfo(**describe_embedder(embedder))
        search = self.engine.vector_search
        self._embed_backlog(embedder)
        vector = embedder.embed([query.query])[0]
        if search.in_database:
            return self.engine.recall(
                tenant, query, None, embedder=info, note=search.notice, query_vector=to_blob(vector)
            )
        self._follow_feed()
        index = self._index
        hits: list[tuple[int, float]] = []
        if index is not None and index.model == embedder.name:
            hits = index.search(
                tenant,
                vector,
                max(RANK_DEPTH, query.limit),
                namespace=query.namespace,
                tags=query.tags,
                namespace_prefix=query.namespace_prefix,
            )
        return self.engine.recall(tenant, query, hits, embedder=info, note=search.notice)

    def _embed_backlog(self, embedder: Embedder) -> None:
        """Embed every queued memory."""
        from actors.hub.vectors import to_blob

        engine = self.engine
        while work := engine.take_embed_work(embedder.name, embedder.dimension, 256):
            vectors = embedder.embed([item.content for item in work])
            rows = tuple(
                (item.key, item.content_hash, to_blob(vector))
                for item, vector in zip(work, vectors, strict=True)
            )
            if engine.save_vectors(embedder.name, embedder.dimension, rows) == 0:
                break  # nothing could be saved: do not spin

    def _follow_feed(self) -> None:
        """Bring the in-memory index up to the engine's vector feed."""
        from actors.hub.vectors import VectorIndex

        engine = self.engine
        while True:
            page = engine.vector_changes(self._feed_after, 5000)
            index = self._index
            if index is None or (index.model, index.dimension) != (page.model, page.dimension):
                if page.model is None:
                    return
                # A new vector space: start over, reading the whole feed for it.
                self._index = index = VectorIndex(page.model, page.dimension)
                if self._feed_after:
                    self._feed_after = 0
                    continue
            index.apply(page.changes)
            self._feed_after = page.next_after
            if not page.has_more:
                return
