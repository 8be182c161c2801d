"""The HubStoreActor: the one owner of the hub's storage engine while the hub serves.

A :class:`~actors._base.ReplyingActor` that group-commits pushes exactly as
the client's StoreActor group-commits stores (:class:`~actors._batch.GroupCommit`:
a push appends itself to the pending batch; the first one tells the actor
``HubFlush``; one transaction commits every push queued before it; then each
caller is answered). Reads flush first, so a client reads its acknowledged
pushes.

It knows no database: its config carries an
:data:`~actors.hub.engine.EngineOpener` and it drives the
:class:`~actors.hub.engine.HubEngine` that opener returns, whose methods
already raise our storage errors. So it catches
:class:`~actors.errors.StorageError` and :class:`~actors.errors.StorageBusy`
(the engine's answers) and passes them on as they are; anything else is a
bug it dies of.

Why the change feed can never skip a change: every sequence number is
assigned inside a transaction of this one actor, and reads are served by the
same actor after that transaction committed. So a reader never sees
sequence 7 committed while 6 is still in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from actors._base import DEFERRED, ReplyingActor
from actors._batch import GroupCommit
from actors.errors import StorageBusy, StorageError
from actors.hub.messages import (
    HubFlush,
    HubLookupKey,
    HubPush,
    HubReadChanges,
    HubReadCounts,
    HubReadDigest,
    HubReadVectorChanges,
    HubRecall,
    HubSaveVectors,
    HubTakeEmbedWork,
)
from actors.messages import Ping
from actors.runtime import Runtime
from actors.wire import ItemResult, RecallQuery

if TYPE_CHECKING:
    from actors.hub.engine import EngineOpener, HubEngine

__all__ = ["HubStoreActor", "HubStoreConfig"]


@attrs.frozen
class HubStoreConfig:
    """How the HubStoreActor gets its engine and commits to it.

    ``open_engine`` is called in ``setup`` on the actor's thread, and again
    after each restart; e.g. ``HubDatabase.opener(path, synchronous="FULL")``.
    """

    open_engine: EngineOpener
    #: False: every push commits on its own, at once (the benchmark's baseline).
    group_commit: bool = True


class HubStoreActor(ReplyingActor):
    """Sole owner of the hub's engine while the hub serves; group-commits pushes.

    Runs on one thread of its own (threaded runtime). On orderly stop the
    pending pushes are committed and answered; requests queued behind the
    stop get :class:`~actors.errors.Unavailable`. A failed transaction rolls
    back and the pushes in it are retried one by one, so only a failing one
    fails (``StorageError``; ``StorageBusy`` when storage stayed locked past
    the engine's busy timeout); the actor lives on.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: HubStoreConfig,
        *,
        name: str = "hub-store",
        supervisor: Any = None,
    ) -> None:
        super().__init__(runtime, name=name, supervisor=supervisor)
        self.config = config
        self.engine: HubEngine | None = None
        self._batch: GroupCommit[HubPush] = GroupCommit(
            self._commit,
            schedule=lambda: self.actor_ref.tell(HubFlush()),
            # The engine already speaks our errors: pass them on as they are.
            translate=lambda exc: exc,
            is_busy=lambda exc: isinstance(exc, StorageBusy),
            database_errors=(StorageError, StorageBusy),
            enabled=config.group_commit,
        )

    def __repr__(self) -> str:
        return (
            f"<HubStoreActor {self.name} pending={len(self._batch.pending)} "
            f"batches={self._batch.batches} state={self.state}>"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self) -> None:
        self.engine = self.config.open_engine(self.runtime.new_id, self.runtime.monotonic)

    def teardown(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def settle_on_stop(self) -> None:
        self._batch.flush()

    def fail_held(self, exc: BaseException) -> None:
        self._batch.fail_pending(exc)

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case HubPush():
                self._batch.add(message)
                return DEFERRED
            case HubFlush():
                self._batch.scheduled = False
                self._batch.flush()
                return None
            case HubLookupKey(key_id=key_id):
                # Keys are written by the CLI, never by pushes: no flush needed.
                return self._engine.lookup_key(key_id)
            case HubReadChanges(tenant=tenant, since=since, limit=limit):
                self._batch.flush()
                return self._engine.changes(tenant, since, limit)
            case HubReadDigest(tenant=tenant, after=after, limit=limit):
                self._batch.flush()
                return self._engine.digest(tenant, after, limit)
            case HubReadCounts(tenant=tenant):
                self._batch.flush()
                return self._engine.counts(tenant)
            case HubTakeEmbedWork(model=model, dimension=dimension, limit=limit):
                self._batch.flush()
                return self._engine.take_embed_work(model, dimension, limit)
            case HubSaveVectors(model=model, dimension=dimension, rows=rows):
                return self._engine.save_vectors(model, dimension, rows)
            case HubReadVectorChanges(after=position, limit=page_size):
                self._batch.flush()
                return self._engine.vector_changes(position, page_size)
            case HubRecall():
                self._batch.flush()
                return self._engine.recall(
                    message.tenant,
                    RecallQuery(
                        message.query,
                        message.namespace,
                        message.tags,
                        message.limit,
                        message.namespace_prefix,
                    ),
                    message.vector_hits,
                    embedder=message.embedder,
                    note=message.note,
                    indexed_through=message.indexed_through,
                    query_vector=message.query_vector,
                )
            case Ping():
                return self.state
        return super().handle(message)

    @property
    def _engine(self) -> HubEngine:
        if self.engine is None:
            raise StorageError("the hub's database is closed")
        return self.engine

    # -- group commit -----------------------------------------------------------------------

    def _commit(self, batch: list[HubPush]) -> list[tuple[ItemResult, ...]]:
        return self._engine.commit_pushes(
            [(p.tenant, p.items) for p in batch], self.runtime.wall_time()
        )
