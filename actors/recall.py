"""Remote semantic recall: a router that owns the cache and a pool of workers.

``RecallRouter`` is the one owner of the answer cache and of the in-flight
table: identical queries (same text, namespace, tags, limit) share one hub
request, and an answer is cached for ``cache_ttl`` seconds, so a caller that
timed out and retries gets the answer at once. ``RecallWorker`` actors (a
small pool) each own a :class:`~actors.remote.HubClient` and run one hub
request at a time, so one slow recall never blocks another until every
worker is busy, and never blocks a store (recall never touches the
StoreActor). Requests beyond the pool wait in the router's queue.

The caller (the facade) waits on the router's answer with ``recall_timeout``
and answers ``status: "retry"`` with local results when it expires; the
router keeps the request running regardless. Every reply future the router
holds is answered: with the hits, with the hub's error, or with
``Unavailable`` if the router stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import attrs
import pykka

from actors._base import DEFERRED, ReplyingActor, settle, settle_error
from actors.errors import HubUnreachable, Unavailable
from actors.messages import Answer, ExpireRecallCache, RecallJob, RemoteRecall
from actors.remote import HubClient
from actors.runtime import Runtime
from actors.sync_model import RemoteConfig
from actors.wire import RemoteHit

__all__ = ["RecallRouter", "RecallSettings", "RecallWorker"]

logger = logging.getLogger(__name__)

RecallKey = tuple[str, str | None, tuple[str, ...], int, str | None]
HubFactory = Callable[[RemoteConfig, Runtime], HubClient]


@attrs.frozen
class RecallSettings:
    """Tuning of remote recall."""

    workers: int = 3
    #: Per hub request: far longer than the caller's wait, so a slow answer still lands
    #: in the cache for the retry.
    request_timeout: float = 30.0
    cache_ttl: float = 120.0
    cache_size: int = 256


class RecallWorker(ReplyingActor):
    """Runs hub recall requests one at a time on its own thread (a blocking HTTP call).

    Its thread is a daemon: a worker holds nothing durable, and a hub request
    in flight (up to ``request_timeout``) must not keep the process alive
    after the system closed.
    """

    use_daemon_thread = True

    def __init__(
        self,
        runtime: Runtime,
        remote: RemoteConfig,
        settings: RecallSettings,
        hub_factory: HubFactory,
        index: int,
    ) -> None:
        super().__init__(runtime, name=f"recall-worker-{index}")
        self.remote = remote
        self.settings = settings
        self.hub_factory = hub_factory
        self.client: HubClient | None = None

    def setup(self) -> None:
        self.client = self.hub_factory(self.remote, self.runtime)

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def handle(self, message: Any) -> Any:
        if isinstance(message, RecallJob):
            if self.client is None:
                raise HubUnreachable(
                    "the recall client is closed", url=self.remote.url, status=None
                )
            hits = self.client.recall(
                message.query,
                namespace=message.namespace,
                tags=message.tags,
                limit=message.limit,
                namespace_prefix=message.namespace_prefix,
                timeout=self.settings.request_timeout,
            )
            return hits.hits
        return super().handle(message)


class RecallRouter(ReplyingActor):
    """Owns the cache, the in-flight table and the job queue; never blocks.

    On stop or failure every waiting caller is answered ``Unavailable``.
    """

    def __init__(
        self,
        runtime: Runtime,
        remote: RemoteConfig,
        settings: RecallSettings,
        hub_factory: HubFactory,
        *,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(runtime, name="recall", supervisor=supervisor)
        self.remote = remote
        self.settings = settings
        self.hub_factory = hub_factory
        self.workers: list[pykka.ActorRef[Any]] = []
        self.idle: deque[pykka.ActorRef[Any]] = deque()
        self.queue: deque[RecallKey] = deque()
        #: Which worker runs each job (jobs hash by identity), to mark it idle on the answer.
        self.assigned: dict[RecallJob, pykka.ActorRef[Any]] = {}
        self.waiting: dict[RecallKey, list[pykka.Future[Any]]] = {}
        self.cache: OrderedDict[RecallKey, tuple[float, tuple[RemoteHit, ...]]] = OrderedDict()
        self.hub_requests = 0

    def __repr__(self) -> str:
        return (
            f"<RecallRouter idle={len(self.idle)}/{len(self.workers)} queued={len(self.queue)} "
            f"waiting={sum(map(len, self.waiting.values()))} cached={len(self.cache)}>"
        )

    def setup(self) -> None:
        for index in range(self.settings.workers):
            ref = self.runtime.spawn(
                RecallWorker, self.runtime, self.remote, self.settings, self.hub_factory, index
            )
            self.workers.append(ref)
            self.idle.append(ref)
        self.runtime.call_later(self.settings.cache_ttl, self.actor_ref, ExpireRecallCache())

    def teardown(self) -> None:
        for ref in self.workers:
            # Not waiting: a worker in a hub call finishes it, then stops.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(block=False)

    def fail_held(self, exc: BaseException) -> None:
        waiting, self.waiting = self.waiting, {}
        for futures in waiting.values():
            for future in futures:
                settle_error(future, exc)

    def settle_on_stop(self) -> None:
        self.fail_held(Unavailable("remote recall stopped before the hub answered"))

    def handle(self, message: Any) -> Any:
        match message:
            case RemoteRecall():
                return self._on_recall(message)
            case Answer():
                self._on_answer(message)
            case ExpireRecallCache():
                self._expire()
                self.runtime.call_later(
                    self.settings.cache_ttl, self.actor_ref, ExpireRecallCache()
                )
            case _:
                return super().handle(message)
        return None

    def _on_recall(self, request: RemoteRecall) -> Any:
        key: RecallKey = (
            request.query,
            request.namespace,
            request.tags,
            request.limit,
            request.namespace_prefix,
        )
        cached = self.cache.get(key)
        if cached is not None and self.runtime.monotonic() - cached[0] < self.settings.cache_ttl:
            self.cache.move_to_end(key)
            return cached[1]
        futures = self.waiting.get(key)
        if futures is not None:
            futures.append(request.reply)  # an identical request is in flight: share it
            return DEFERRED
        self.waiting[key] = [request.reply]
        self.queue.append(key)
        self._dispatch()
        return DEFERRED

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            key = self.queue.popleft()
            worker = self.idle.popleft()
            query, namespace, tags, limit, prefix = key
            job = RecallJob(self.actor_ref, query, namespace, tags, limit, prefix)
            try:
                worker.tell(job)
            except pykka.ActorDeadError:
                self.queue.appendleft(key)
                continue
            self.assigned[job] = worker
            self.hub_requests += 1

    def _on_answer(self, answer: Answer) -> None:
        job = answer.request
        if not isinstance(job, RecallJob):
            return
        worker = self.assigned.pop(job, None)
        if worker is not None and worker.is_alive():
            self.idle.append(worker)
        key: RecallKey = (job.query, job.namespace, job.tags, job.limit, job.namespace_prefix)
        futures = self.waiting.pop(key, [])
        if answer.error is None:
            hits: tuple[RemoteHit, ...] = answer.value
            self.cache[key] = (self.runtime.monotonic(), hits)
            self.cache.move_to_end(key)
            while len(self.cache) > self.settings.cache_size:
                self.cache.popitem(last=False)
            for future in futures:
                settle(future, hits)
        else:
            for future in futures:
                settle_error(future, answer.error)
        self._dispatch()

    def _expire(self) -> None:
        now = self.runtime.monotonic()
        for key in [k for k, (t, _) in self.cache.items() if now - t >= self.settings.cache_ttl]:
            del self.cache[key]
