"""The hub's semantic recall actors: the EmbedderActor and the VectorIndexActor.

Neither sits on the push path. A push commits its memories and their rows
of the embedding queue in one transaction (an outbox, as on the client) and
is answered; nothing else happens before its answer. Then:

- the :class:`EmbedderActor` pulls queued work from the
  :class:`~actors.hub.store.HubStoreActor`, embeds it in its own thread,
  and hands the vectors back (tell-backs: it never waits on a future). When
  idle it looks for work every ``poll`` seconds (a timer message). A failing
  embedder (an embeddings service down) keeps its batch and retries with
  jittered exponential backoff, also on timers; pushes are never affected;
- the :class:`VectorIndexActor` follows the store's vector feed (every
  vector stored or dropped moves its memory to the end of the feed, like
  the change feed clients pull) into a :class:`~actors.hub.vectors.VectorIndex`
  and answers searches. It is a cache that may lag by one ``poll``: the
  store filters every recall's hits again, so a forgotten memory is never
  answered.

The store never tells either of them anything, so any of the three can be
restarted by the supervisor without re-wiring: a restarted index reads the
feed from the start, a restarted embedder takes the queue where it is.
Both find the store through its :class:`~actors.supervisor.ChildCell`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs
import pykka

from actors._base import ReplyingActor
from actors.errors import EmbedderError
from actors.hub.embedders import Embedder
from actors.hub.messages import (
    HubEmbedTick,
    HubIndexTick,
    HubReadVectorChanges,
    HubSaveVectors,
    HubTakeEmbedWork,
    HubVectorSearch,
)
from actors.hub.search import EmbedItem, VectorChanges, VectorSearchResult
from actors.hub.vectors import VectorIndex, to_blob
from actors.messages import Answer, TellBack
from actors.runtime import Runtime
from actors.supervisor import ChildCell

__all__ = ["EmbedderActor", "VectorIndexActor"]

logger = logging.getLogger(__name__)

#: An answer from the store that has not come after this long is taken as lost
#: (the store restarted mid-request); the next tick asks again.
_ANSWER_TIMEOUT: Final = 60.0
_MAX_BACKOFF: Final = 30.0


@attrs.frozen(eq=False)
class _RetryEmbed:
    """EmbedderActor → itself (a timer): embed this batch again after a failure."""

    items: tuple[EmbedItem, ...]


class _Follower(ReplyingActor):
    """Internal: a periodic tick, tell-backs to the store's current ref, a lost-answer watchdog."""

    tick: Any = None

    def __init__(
        self,
        runtime: Runtime,
        store: ChildCell,
        *,
        name: str,
        poll: float,
        supervisor: pykka.ActorRef[Any] | None,
    ) -> None:
        super().__init__(runtime, name=name, supervisor=supervisor)
        self.store = store
        self.poll = poll
        self._waiting: TellBack | None = None
        self._waiting_since = 0.0

    def setup(self) -> None:
        self.actor_ref.tell(self.tick)

    def _ask_store(self, request: TellBack) -> bool:
        """Send ``request``; False if the store is not there (the next tick tries again)."""
        ref = self.store.ref
        if ref is None:
            return False
        try:
            ref.tell(request)
        except pykka.ActorDeadError:
            return False
        self._waiting = request
        self._waiting_since = self.runtime.monotonic()
        return True

    def _answered(self, answer: Answer) -> bool:
        """Whether ``answer`` is the one awaited (a late answer to a lost request is not)."""
        if answer.request is not self._waiting:
            return False
        self._waiting = None
        return True

    def _idle(self) -> bool:
        if (
            self._waiting is not None
            and self.runtime.monotonic() - self._waiting_since > _ANSWER_TIMEOUT
        ):
            logger.warning("%r: no answer from the hub's store; asking again", self)
            self._waiting = None
        return self._waiting is None

    def _rearm(self) -> None:
        self.runtime.call_later(self.poll, self.actor_ref, self.tick)


class EmbedderActor(_Follower):
    """Embeds the hub's queued memories in its own thread, batch by batch, off the push path.

    Runs on its own thread (threaded runtime). Holds no reply futures: on
    stop or failure the batch in hand is simply embedded again later (it is
    still queued in the store until its vectors are saved).
    """

    tick = HubEmbedTick()

    def __init__(
        self,
        runtime: Runtime,
        embedder: Embedder,
        store: ChildCell,
        *,
        batch_size: int = 32,
        poll: float = 0.25,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(runtime, store, name="hub-embedder", poll=poll, supervisor=supervisor)
        self.embedder = embedder
        self.batch_size = batch_size
        self.embedded = 0
        self.failures = 0
        self._retrying = False

    def __repr__(self) -> str:
        return (
            f"<EmbedderActor {self.embedder.name} embedded={self.embedded} "
            f"failures={self.failures} state={self.state}>"
        )

    def handle(self, message: Any) -> Any:
        match message:
            case HubEmbedTick():
                if self._idle() and not self._retrying:
                    self._take()
                self._rearm()
            case Answer():
                if self._answered(message):
                    self._on_answer(message)
            case _RetryEmbed(items=items):
                self._retrying = False
                self._embed(items)
            case _:
                return super().handle(message)
        return None

    def _take(self) -> None:
        self._ask_store(
            HubTakeEmbedWork(
                self.actor_ref, self.embedder.name, self.embedder.dimension, self.batch_size
            )
        )

    def _on_answer(self, answer: Answer) -> None:
        if answer.error is not None:
            logger.debug("%r: the store answered %s; retrying on the next tick", self, answer.error)
            return
        match answer.request:
            case HubTakeEmbedWork():
                items: tuple[EmbedItem, ...] = answer.value
                if items:
                    self._embed(items)
            case HubSaveVectors(rows=rows):
                self.embedded += int(answer.value)
                if len(rows) >= self.batch_size:
                    self._take()  # a full batch: more is probably waiting

    def _embed(self, items: tuple[EmbedItem, ...]) -> None:
        try:
            vectors = self.embedder.embed([item.content for item in items])
        except EmbedderError as exc:
            self.failures += 1
            delay = min(_MAX_BACKOFF, 0.5 * 2 ** min(self.failures - 1, 10))
            delay *= self.runtime.rng("hub.embedder").uniform(0.5, 1.0)
            loud = self.failures in (1, 5) or self.failures % 50 == 0
            logger.log(
                logging.WARNING if loud else logging.DEBUG,
                "%r: %s; retrying %d memories in %.1fs",
                self,
                exc,
                len(items),
                delay,
            )
            self._retrying = True
            self.runtime.call_later(delay, self.actor_ref, _RetryEmbed(items))
            return
        if self.failures:
            logger.warning("%r: embedding works again after %d failures", self, self.failures)
        self.failures = 0
        rows = tuple(
            (item.key, item.content_hash, to_blob(vector))
            for item, vector in zip(items, vectors, strict=True)
        )
        self._ask_store(
            HubSaveVectors(self.actor_ref, self.embedder.name, self.embedder.dimension, rows)
        )


class VectorIndexActor(_Follower):
    """Owns the in-memory vector index: follows the store's vector feed, answers searches.

    Runs on its own thread (threaded runtime). A search is answered at once
    from whatever the index holds, with ``ready`` False until the feed has
    been read to its end once (a restarted index is loading). Holds no reply
    futures.
    """

    tick = HubIndexTick()

    def __init__(
        self,
        runtime: Runtime,
        store: ChildCell,
        *,
        poll: float = 0.2,
        page: int = 2000,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(runtime, store, name="hub-index", poll=poll, supervisor=supervisor)
        self.page = page
        self.index: VectorIndex | None = None
        self.after = 0
        self.ready = False

    def __repr__(self) -> str:
        size = 0 if self.index is None else len(self.index)
        return f"<VectorIndexActor vectors={size} after={self.after} state={self.state}>"

    def handle(self, message: Any) -> Any:
        match message:
            case HubIndexTick():
                if self._idle():
                    self._read()
                self._rearm()
            case Answer():
                if self._answered(message):
                    self._on_page(message)
            case HubVectorSearch():
                return self._search(message)
            case _:
                return super().handle(message)
        return None

    def _read(self) -> None:
        self._ask_store(HubReadVectorChanges(self.actor_ref, self.after, self.page))

    def _on_page(self, answer: Answer) -> None:
        if answer.error is not None:
            logger.debug("%r: the store answered %s; retrying on the next tick", self, answer.error)
            return
        page: VectorChanges = answer.value
        if page.model is None:
            self.ready = True  # no embedder ever ran: nothing to hold
            return
        index = self.index
        if index is None or (index.model, index.dimension) != (page.model, page.dimension):
            # A new vector space: start over, reading the whole feed for it.
            if index is not None:
                logger.info("%r: vectors are now %s; reloading", self, page.model)
            self.index = index = VectorIndex(page.model, page.dimension)
            self.ready = False
            if self.after:
                self.after = 0
                self._read()
                return
        index.apply(page.changes)
        self.after = page.next_after
        if page.has_more:
            self._read()
        elif not self.ready:
            self.ready = True
            logger.info("%r: caught up", self)

    def _search(self, request: HubVectorSearch) -> VectorSearchResult:
        index = self.index
        if index is None:
            return VectorSearchResult(None, self.ready, (), self.after)
        if request.vector.shape != (index.dimension,):
            return VectorSearchResult(index.model, self.ready, (), self.after)
        hits = index.search(
            request.tenant,
            request.vector,
            request.k,
            namespace=request.namespace,
            tags=request.tags,
            namespace_prefix=request.namespace_prefix,
        )
        return VectorSearchResult(index.model, self.ready, tuple(hits), self.after)
