"""HubService: starts, supervises and stops the hub's actors; hands out its HubCore.

Start order mirrors :class:`actors.system.MemorySystem`: the hub file is
migrated first (one owner of the file at a time), the embedder is loaded
(a model that cannot load fails the start, with the reason), then a
:class:`~actors.supervisor.SupervisorActor` spawns the
:class:`~actors.hub.store.HubStoreActor` and, with semantic recall, the
:class:`~actors.hub.semantic.VectorIndexActor` and
:class:`~actors.hub.semantic.EmbedderActor`, and answers once all are ready.
A dead actor is restarted with backoff; callers meanwhile get a 503 (the
store) or a keyword-ranked recall that says why (the index).

:class:`ActorBackend` is the :class:`~actors.hub.backend.HubBackend` that
HubCore calls: each call tells the store a request carrying a reply future
and waits for it, bounded by the timeout and polling the actor's liveness,
from the calling (worker) thread. It never runs on an event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, TypeVar

import attrs
import pykka

from actors._ask import ask, stop
from actors._sqlite import Synchronous
from actors.errors import AskTimeout, EmbedderError, Unavailable
from actors.hub.backend import Cursor
from actors.hub.core import HubCore
from actors.hub.engines import (
    PostgresSettings,
    describe_target,
    prepare_target,
    target_opener,
    vector_search_of,
)
from actors.hub.keys import StoredKey
from actors.hub.messages import (
    HubLookupKey,
    HubPush,
    HubReadChanges,
    HubReadCounts,
    HubReadDigest,
    HubRecall,
    HubVectorSearch,
)
from actors.hub.search import (
    IN_MEMORY,
    RANK_DEPTH,
    EmbedderSpec,
    RecallUnsupported,
    VectorSearch,
    VectorSearchResult,
    join_notes,
    vector_ranking,
)
from actors.hub.store import HubStoreActor, HubStoreConfig
from actors.messages import Ping, Request, Shutdown, StartChildren
from actors.model import MigrationReport
from actors.runtime import Runtime, ThreadedRuntime
from actors.supervisor import ChildCell, SupervisorActor
from actors.wire import (
    ChangesPage,
    DigestPage,
    EmbedderInfo,
    HubCounts,
    HubLimits,
    ItemResult,
    RecallHits,
    RecallQuery,
    WireMemory,
)

if TYPE_CHECKING:
    from actors.hub.embedders import Embedder

__all__ = ["ActorBackend", "HubConfig", "HubService"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

_STORE = "hub-store"
_INDEX = "hub-index"
_EMBEDDER = "hub-embedder"


@attrs.frozen
class HubConfig:
    """Everything a hub needs; every field but ``db`` has a working default.

    ``db`` is the SQLite file's path or a ``postgresql://`` URL
    (:mod:`actors.hub.engines`); ``synchronous`` is SQLite's only,
    ``postgres`` (pool and statement timeout) PostgreSQL's only, and
    ``busy_timeout`` bounds a lock wait on either engine.
    """

    db: str
    synchronous: Synchronous = "FULL"
    busy_timeout: float = 5.0
    postgres: PostgresSettings = attrs.field(factory=PostgresSettings)
    #: How long one request waits for the store before answering 503.
    storage_timeout: float = 10.0
    start_timeout: float = 60.0
    stop_timeout: float = 10.0
    #: Requests served at once (worker threads waiting on the store); more queue.
    max_concurrency: int = 64
    limits: HubLimits = attrs.field(factory=HubLimits)
    restart_intensity: int = 5
    restart_window: float = 60.0
    restart_backoff: float = 0.1
    #: Semantic recall: which embedder (``--embedder``); ``none`` answers recall with 501.
    embedder: EmbedderSpec = attrs.field(factory=EmbedderSpec)
    #: How often an idle embedder looks for queued memories, and the index for new vectors.
    embed_poll: float = 0.25
    index_poll: float = 0.2


class ActorBackend:
    """HubBackend over the supervised hub actors. Thread-safe; called from worker threads.

    ``embedder`` (None: no semantic recall, for ``no_recall`` as the reason)
    embeds each recall's query in the calling worker thread: a query never
    waits behind the backlog the EmbedderActor is working through. Its
    vector goes to the ``index`` actor, or with the recall to the store when
    the engine searches vectors itself (``vector_search.in_database``).
    """

    def __init__(
        self,
        runtime: Runtime,
        cell: ChildCell,
        *,
        index: ChildCell | None = None,
        embedder: Embedder | None = None,
        no_recall: str = "this hub does not implement semantic recall; use local recall",
        vector_search: VectorSearch = IN_MEMORY,
    ) -> None:
        self.runtime = runtime
        self.cell = cell
        self.index = index
        self.embedder = embedder
        self.no_recall = no_recall
        self.vector_search = vector_search

    def __repr__(self) -> str:
        return f"<ActorBackend {self.cell!r}>"

    def _call(
        self,
        make: Callable[[pykka.Future[R]], Request[R]],
        timeout: float,
        cell: ChildCell | None = None,
    ) -> R:
        cell = cell or self.cell
        what = "the hub's " + ("store" if cell is self.cell else "vector index")
        ref = cell.ref
        if ref is None or cell.status != ChildCell.READY:
            reason = f": {cell.reason}" if cell.reason else ""
            raise Unavailable(f"{what} is {cell.status.lower()}{reason}")
        # No retry hint in the messages: HubCore answers them with a 503 and Retry-After.
        return ask(self.runtime, ref, make, timeout, what, if_dead=f"{what} is restarting")

    def ping(self, timeout: float) -> str:
        return self._call(Ping, timeout)

    def lookup_key(self, key_id: str, timeout: float) -> StoredKey | None:
        return self._call(lambda reply: HubLookupKey(reply, key_id), timeout)

    def push(
        self, tenant: str, items: tuple[WireMemory, ...], timeout: float
    ) -> tuple[ItemResult, ...]:
        return self._call(lambda reply: HubPush(reply, tenant, items), timeout)

    def changes(self, tenant: str, since: Cursor | None, limit: int, timeout: float) -> ChangesPage:
        return self._call(lambda reply: HubReadChanges(reply, tenant, since, limit), timeout)

    def digest(self, tenant: str, after: str | None, limit: int, timeout: float) -> DigestPage:
        return self._call(lambda reply: HubReadDigest(reply, tenant, after, limit), timeout)

    def counts(self, tenant: str, timeout: float) -> HubCounts:
        return self._call(lambda reply: HubReadCounts(reply, tenant), timeout)

    def recall(self, tenant: str, query: RecallQuery, timeout: float) -> RecallHits:
        """Embed the query here, search the index, then let the store fuse, filter and fetch.

        Whatever fails on the semantic side (the embedder, the index, a
        vector space being rebuilt) leaves a keyword ranking with a note
        saying why; only the store failing fails the recall.
        """
        embedder = self.embedder
        if embedder is None:
            raise RecallUnsupported(self.no_recall)
        deadline = self.runtime.monotonic() + timeout
        info = EmbedderInfo(embedder.name, embedder.dimension, embedder.semantic)
        vector_hits: tuple[tuple[int, float], ...] | None = None
        query_vector: bytes | None = None
        position: int | None = None
        note = ""
        try:
            # At most half the deadline: the store's part must still fit in it.
            vector = embedder.embed([query.query], timeout=timeout / 2)[0]
        except EmbedderError as exc:
            note = f"keywords only: the query could not be embedded ({exc})"
        else:
            if self.vector_search.in_database:
                from actors.hub.vectors import to_blob

                query_vector = to_blob(vector)
            else:
                vector_hits, position, note = self._vector_hits(
                    tenant, query, vector, embedder.name, deadline
                )
        note = join_notes(note, self.vector_search.notice)
        remaining = max(0.0, deadline - self.runtime.monotonic())
        return self._call(
            lambda reply: HubRecall(
                reply,
                tenant,
                query.query,
                query.namespace,
                query.tags,
                query.limit,
                vector_hits,
                info,
                note,
                position,
                query.namespace_prefix,
                query_vector,
            ),
            remaining,
        )

    def _vector_hits(
        self, tenant: str, query: RecallQuery, vector: Any, model: str, deadline: float
    ) -> tuple[tuple[tuple[int, float], ...] | None, int | None, str]:
        """The vector ranking (None: none), the index's feed position, and a note."""
        if self.index is None:
            return None, None, "keywords only: this hub runs no vector index"
        # Half of what is left: the store's part must still fit in the deadline.
        budget = max(0.0, deadline - self.runtime.monotonic()) / 2
        try:
            found: VectorSearchResult = self._call(
                lambda reply: HubVectorSearch(
                    reply,
                    tenant,
                    vector,
                    query.namespace,
                    query.tags,
                    max(RANK_DEPTH, query.limit),
                    query.namespace_prefix,
                ),
                budget,
                self.index,
            )
        except (Unavailable, AskTimeout) as exc:
            return None, None, f"keywords only: {exc}"
        return vector_ranking(found, model)


class HubService:
    """A running hub: its actors and the :class:`HubCore` that serves requests with them.

    Open with :meth:`open`, close with :meth:`close` (or use as a context
    manager). ``close`` commits pending pushes and stops every actor, each
    wait bounded by ``stop_timeout``.
    """

    def __init__(
        self,
        config: HubConfig,
        runtime: Runtime,
        supervisor: pykka.ActorRef[Any],
        cells: dict[str, ChildCell],
        migration: MigrationReport,
        *,
        owns_runtime: bool,
        embedder: Embedder | None = None,
        no_recall: str = "this hub does not implement semantic recall; use local recall",
        vector_search: VectorSearch = IN_MEMORY,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.migration = migration
        self._supervisor = supervisor
        self._cells = cells
        self._owns_runtime = owns_runtime
        self._closed = False
        self.embedder = embedder
        #: Where recall's vectors are searched: the database's index, or the index actor's.
        self.vector_search = vector_search
        self.core = HubCore(
            ActorBackend(
                runtime,
                cells[_STORE],
                index=cells.get(_INDEX),
                embedder=embedder,
                no_recall=no_recall,
                vector_search=vector_search,
            ),
            limits=config.limits,
            storage_timeout=config.storage_timeout,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._cells[_STORE].status
        return f"<HubService {describe_target(self.config.db)} {state}>"

    @classmethod
    def open(cls, config: HubConfig, *, runtime: Runtime | None = None) -> Self:
        """Migrate the hub file and start the store; raises our schema or storage errors."""
        rt: Runtime = runtime if runtime is not None else ThreadedRuntime()
        embedder: Embedder | None = None
        try:
            report = prepare_target(config.db, now=rt.wall_time)
            embedder, no_recall = _load_embedder(config.embedder)
            vector_search = IN_MEMORY
            if embedder is not None:
                vector_search = vector_search_of(config.db)
                if vector_search.notice:
                    logger.warning("hub semantic recall: %s", vector_search.notice)
                elif vector_search.in_database:
                    logger.info("hub semantic recall: vectors searched in the database (HNSW)")
            store_config = HubStoreConfig(
                target_opener(
                    config.db,
                    synchronous=config.synchronous,
                    busy_timeout=config.busy_timeout,
                    postgres=config.postgres,
                )
            )

            def spawn_store(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
                return rt.spawn(HubStoreActor, rt, store_config, supervisor=supervisor)

            cells = {_STORE: ChildCell(_STORE)}
            specs = {_STORE: spawn_store}
            if embedder is not None:
                specs.update(
                    _semantic_specs(
                        rt, config, embedder, cells, index=not vector_search.in_database
                    )
                )
            supervisor = rt.spawn(
                SupervisorActor,
                rt,
                specs,
                cells,
                intensity=config.restart_intensity,
                window=config.restart_window,
                backoff=config.restart_backoff,
            )
        except BaseException:
            if embedder is not None:
                embedder.close()
            if runtime is None:
                rt.close()
            raise
        service = cls(
            config,
            rt,
            supervisor,
            cells,
            report,
            owns_runtime=runtime is None,
            embedder=embedder,
            no_recall=no_recall,
            vector_search=vector_search,
        )
        try:
            ready = rt.new_future()
            supervisor.tell(StartChildren(ready))
            try:
                ready.get(timeout=config.start_timeout)
            except pykka.Timeout:
                raise AskTimeout(
                    f"the hub's store did not start within {config.start_timeout:g}s"
                ) from None
        except BaseException:
            service.close()
            raise
        logger.info("hub store ready on %s", describe_target(config.db))
        return service

    def close(self) -> None:
        """Commit pending pushes and stop the actors (each wait bounded). Idempotent."""
        if self._closed:
            return
        self._closed = True
        timeout = self.config.stop_timeout
        try:
            done = self.runtime.new_future()
            self._supervisor.tell(Shutdown(done))
            done.get(timeout=timeout)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            logger.warning("hub supervisor did not acknowledge shutdown: %r", exc)
        for cell in self._cells.values():
            if cell.ref is not None:
                stop(cell.ref, timeout)
            cell.status = ChildCell.STOPPED
        stop(self._supervisor, timeout)
        if self.embedder is not None:
            try:
                self.embedder.close()
            except Exception:
                logger.exception("the hub's embedder failed to close")
        if self._owns_runtime:
            self.runtime.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _load_embedder(spec: EmbedderSpec) -> tuple[Embedder | None, str]:
    """The configured embedder, and the 501 message a hub without one answers recall with."""
    if spec.kind == "none":
        return None, "semantic recall is off on this hub (--embedder none); use local recall"
    try:
        from actors.hub.embedders import load_embedder
    except ImportError as exc:  # NumPy missing: the hub serves everything but recall
        if spec.kind != "auto":
            raise EmbedderError(
                f"--embedder {spec.kind} needs NumPy ({exc}): "
                'python -m pip install "memory-actors[hub]"'
            ) from exc
        logger.warning("semantic recall is off: NumPy is not installed (%s)", exc)
        return None, (
            "this hub cannot serve semantic recall: NumPy is not installed "
            '(python -m pip install "memory-actors[hub]")'
        )
    embedder = load_embedder(spec)
    assert embedder is not None
    logger.info(
        "hub semantic recall: %s (%d dimensions%s)",
        embedder.name,
        embedder.dimension,
        "" if embedder.semantic else ", keyword-ish hashing fallback, not semantic",
    )
    return embedder, ""


def _semantic_specs(
    rt: Runtime,
    config: HubConfig,
    embedder: Embedder,
    cells: dict[str, ChildCell],
    *,
    index: bool,
) -> dict[str, Callable[[pykka.ActorRef[Any]], pykka.ActorRef[Any]]]:
    """Spawners of the EmbedderActor and (``index``) the VectorIndexActor; their cells join
    ``cells``. No index actor when the database searches the vectors itself."""
    from actors.hub.semantic import EmbedderActor, VectorIndexActor

    store = cells[_STORE]
    cells[_EMBEDDER] = ChildCell(_EMBEDDER)

    def spawn_index(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return rt.spawn(VectorIndexActor, rt, store, poll=config.index_poll, supervisor=supervisor)

    def spawn_embedder(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return rt.spawn(
            EmbedderActor,
            rt,
            embedder,
            store,
            batch_size=config.embedder.batch_size,
            poll=config.embed_poll,
            supervisor=supervisor,
        )

    if not index:
        return {_EMBEDDER: spawn_embedder}
    cells[_INDEX] = ChildCell(_INDEX)
    return {_INDEX: spawn_index, _EMBEDDER: spawn_embedder}
