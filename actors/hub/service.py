"""HubService: starts, supervises and stops the hub's actors; hands out its HubCore.

Start order mirrors :class:`actors.system.MemorySystem`: the hub file is
migrated first (one owner of the file at a time), then a
:class:`~actors.supervisor.SupervisorActor` spawns the
:class:`~actors.hub.store.HubStoreActor` and answers once it is ready. A
dead store is restarted with backoff; callers meanwhile get a 503.

:class:`ActorBackend` is the :class:`~actors.hub.core.HubBackend` that
HubCore calls: each call tells the store a request carrying a reply future
and waits for it, bounded by the timeout and polling the actor's liveness,
from the calling (worker) thread. It never runs on an event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Self, TypeVar

import attrs
import pykka

from actors.errors import AskTimeout, Unavailable
from actors.hub.core import Cursor, HubCore
from actors.hub.keys import StoredKey
from actors.hub.protocol import (
    ChangesPage,
    DigestPage,
    HubCounts,
    HubLimits,
    ItemResult,
    WireMemory,
)
from actors.hub.store import HubStoreActor, HubStoreConfig, prepare_hub_file
from actors.messages import (
    HubLookupKey,
    HubPush,
    HubReadChanges,
    HubReadCounts,
    HubReadDigest,
    Ping,
    Request,
    Shutdown,
    StartChildren,
)
from actors.migrations import MigrationReport
from actors.runtime import Runtime, ThreadedRuntime
from actors.store import Synchronous
from actors.supervisor import ChildCell, SupervisorActor

__all__ = ["ActorBackend", "HubConfig", "HubService"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a waiting caller checks that the store it waits on still lives.
_LIVENESS_POLL = 0.25
_STORE = "hub-store"


@attrs.frozen
class HubConfig:
    """Everything a hub needs; every field but ``db`` has a working default."""

    db: str
    synchronous: Synchronous = "FULL"
    busy_timeout: float = 5.0
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


class ActorBackend:
    """HubBackend over the supervised HubStoreActor. Thread-safe; called from worker threads."""

    def __init__(self, runtime: Runtime, cell: ChildCell) -> None:
        self.runtime = runtime
        self.cell = cell

    def __repr__(self) -> str:
        return f"<ActorBackend {self.cell!r}>"

    def _call(self, make: Callable[[pykka.Future[Any]], Request], timeout: float) -> Any:
        cell = self.cell
        ref = cell.ref
        if ref is None or cell.status != ChildCell.READY:
            reason = f": {cell.reason}" if cell.reason else ""
            raise Unavailable(f"the hub's store is {cell.status.lower()}{reason}")
        reply = self.runtime.new_future()
        try:
            ref.tell(make(reply))
        except pykka.ActorDeadError:
            raise Unavailable("the hub's store is restarting") from None
        deadline = self.runtime.monotonic() + timeout
        while True:
            slice_ = min(_LIVENESS_POLL, max(0.0, deadline - self.runtime.monotonic()))
            try:
                return reply.get(timeout=slice_)
            except pykka.Timeout:
                pass
            except pykka.ActorDeadError as exc:
                raise Unavailable(f"the hub's store stopped: {exc}") from None
            if not ref.is_alive():
                try:  # it may have answered just before it died
                    return reply.get(timeout=0)
                except pykka.Timeout:
                    raise Unavailable("the hub's store stopped before answering") from None
            if self.runtime.monotonic() >= deadline:
                raise AskTimeout(f"no answer from the hub's store within {timeout:g}s")

    def ping(self, timeout: float) -> str:
        state: str = self._call(Ping, timeout)
        return state

    def lookup_key(self, key_id: str, timeout: float) -> StoredKey | None:
        key: StoredKey | None = self._call(lambda reply: HubLookupKey(reply, key_id), timeout)
        return key

    def push(
        self, tenant: str, items: tuple[WireMemory, ...], timeout: float
    ) -> tuple[ItemResult, ...]:
        results: tuple[ItemResult, ...] = self._call(
            lambda reply: HubPush(reply, tenant, items), timeout
        )
        return results

    def changes(self, tenant: str, since: Cursor | None, limit: int, timeout: float) -> ChangesPage:
        page: ChangesPage = self._call(
            lambda reply: HubReadChanges(reply, tenant, since, limit), timeout
        )
        return page

    def digest(self, tenant: str, after: str | None, limit: int, timeout: float) -> DigestPage:
        page: DigestPage = self._call(
            lambda reply: HubReadDigest(reply, tenant, after, limit), timeout
        )
        return page

    def counts(self, tenant: str, timeout: float) -> HubCounts:
        counts: HubCounts = self._call(lambda reply: HubReadCounts(reply, tenant), timeout)
        return counts


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
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.migration = migration
        self._supervisor = supervisor
        self._cells = cells
        self._owns_runtime = owns_runtime
        self._closed = False
        self.core = HubCore(
            ActorBackend(runtime, cells[_STORE]),
            limits=config.limits,
            storage_timeout=config.storage_timeout,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._cells[_STORE].status
        return f"<HubService {self.config.db} {state}>"

    @classmethod
    def open(cls, config: HubConfig, *, runtime: Runtime | None = None) -> Self:
        """Migrate the hub file and start the store; raises our schema or storage errors."""
        rt: Runtime = runtime if runtime is not None else ThreadedRuntime()
        db = os.path.abspath(config.db)
        try:
            report = prepare_hub_file(db, now=rt.wall_time)
            store_config = HubStoreConfig(
                path=db, synchronous=config.synchronous, busy_timeout=config.busy_timeout
            )

            def spawn_store(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
                return rt.spawn(HubStoreActor, rt, store_config, supervisor=supervisor)

            cells = {_STORE: ChildCell(_STORE)}
            supervisor = rt.spawn(
                SupervisorActor,
                rt,
                {_STORE: spawn_store},
                cells,
                intensity=config.restart_intensity,
                window=config.restart_window,
                backoff=config.restart_backoff,
            )
        except BaseException:
            if runtime is None:
                rt.close()
            raise
        service = cls(config, rt, supervisor, cells, report, owns_runtime=runtime is None)
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
        logger.info("hub store ready on %s", db)
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
                _stop(cell.ref, timeout)
            cell.status = ChildCell.STOPPED
        _stop(self._supervisor, timeout)
        if self._owns_runtime:
            self.runtime.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop(ref: pykka.ActorRef[Any], timeout: float) -> None:
    try:
        ref.stop(block=True, timeout=timeout)
    except pykka.Timeout:
        logger.error("%s did not stop within %gs", ref, timeout)
    except pykka.ActorDeadError:
        pass
