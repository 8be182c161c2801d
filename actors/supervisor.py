"""The SupervisorActor: starts children in order, restarts them, gives up honestly.

Pykka has no supervision, so this actor provides it. Children report
:class:`ChildReady`, :class:`ChildFailed` and :class:`ChildStopped` themselves
(see :class:`actors._base.ReplyingActor`), which also covers an ``on_start``
failure, for which Pykka would call no hook. A dead child is restarted after
a jittered exponential backoff scheduled on the runtime clock; more than
``intensity`` restarts within ``window`` seconds mark it DEGRADED instead of
looping, and callers get a clear :class:`~actors.errors.Unavailable`.

Callers never hold a child's ref: they read the current one from its
:class:`ChildCell`, which only this actor writes (a single writer; a reader
sees the old ref or the new one, and a dead old ref answers
``Unavailable``), so a restart is invisible except as "unavailable, retry".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import pykka

from actors._base import DEFERRED, ReplyingActor, settle, settle_error
from actors.errors import MemoryActorsError, Unavailable
from actors.messages import (
    ChildFailed,
    ChildReady,
    ChildStopped,
    RestartChild,
    Shutdown,
    StartChildren,
)
from actors.runtime import Runtime

__all__ = ["ChildCell", "ChildSpec", "SupervisorActor", "tell_child"]

logger = logging.getLogger(__name__)

#: Spawns one child, given the supervisor's ref to report to.
ChildSpec = Callable[[pykka.ActorRef[Any]], pykka.ActorRef[Any]]


class ChildCell:
    """Where callers find a child's current ref and status. Written only by the supervisor."""

    STARTING: Final = "STARTING"
    READY: Final = "READY"
    RESTARTING: Final = "RESTARTING"
    DEGRADED: Final = "DEGRADED"
    STOPPED: Final = "STOPPED"

    def __init__(self, name: str) -> None:
        self.name = name
        self.ref: pykka.ActorRef[Any] | None = None
        self.status: str = self.STARTING
        self.reason = ""
        self.restarts = 0

    def __repr__(self) -> str:
        return f"<ChildCell {self.name} status={self.status} restarts={self.restarts}>"


def tell_child(cell: ChildCell, message: Any) -> bool:
    """Tell ``message`` to the child's current ref; False if it is not running.

    A child still starting queues the message; a dead one refuses it (the
    sender retries later, on its own timer).
    """
    ref = cell.ref
    if ref is None:
        return False
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


class SupervisorActor(ReplyingActor):
    """Owns the children's lifecycle. Runs on its own thread when threaded.

    Handlers never block: restarts are timer messages. On stop it holds no
    reply futures except a pending ``StartChildren``, which it fails.
    """

    def __init__(
        self,
        runtime: Runtime,
        specs: dict[str, ChildSpec],
        cells: dict[str, ChildCell],
        *,
        intensity: int = 5,
        window: float = 60.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        super().__init__(runtime, name="supervisor")
        self.specs = specs
        self.cells = cells
        self.intensity = intensity
        self.window = window
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._history: dict[str, list[float]] = {name: [] for name in specs}
        self._starting: pykka.Future[Any] | None = None
        #: The children whose readiness answers ``_starting`` (None: all).
        self._awaited: frozenset[str] | None = None
        self._shutting_down = False

    def __repr__(self) -> str:
        children = " ".join(f"{c.name}={c.status}" for c in self.cells.values())
        return f"<SupervisorActor {children} state={self.state}>"

    def fail_held(self, exc: BaseException) -> None:
        if self._starting is not None:
            settle_error(self._starting, exc)
            self._starting = None

    def settle_on_stop(self) -> None:
        self.fail_held(Unavailable("the supervisor stopped before the children were ready"))

    def handle(self, message: Any) -> Any:
        match message:
            case StartChildren():
                self._starting, self._awaited = message.reply, message.answer_after
                for name in self.specs:
                    self._spawn(name)
                return DEFERRED
            case ChildReady(name=name, ref=ref):
                self._on_ready(name, ref)
            case ChildFailed(name=name, ref=ref, reason=reason, error=error):
                self._on_death(name, ref, reason, error)
            case ChildStopped(name=name, ref=ref):
                self._on_death(name, ref, f"{name} stopped unexpectedly", None)
            case RestartChild(name=name):
                if not self._shutting_down:
                    self._spawn(name)
            case Shutdown():
                self._shutting_down = True
                return None
            case _:
                return super().handle(message)
        return None

    def _spawn(self, name: str) -> None:
        cell = self.cells[name]
        try:
            cell.ref = self.specs[name](self.actor_ref)
        except Exception as exc:  # spawning itself failed (e.g. no threads left)
            logger.exception("could not spawn %s", name)
            self._on_death(name, cell.ref, f"could not spawn {name}: {exc}", exc)

    def _on_ready(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        cell = self.cells[name]
        if ref is not cell.ref:
            return
        cell.status = ChildCell.READY
        cell.reason = ""
        awaited = self._awaited
        if self._starting is not None and all(
            c.status == ChildCell.READY
            for n, c in self.cells.items()
            if awaited is None or n in awaited
        ):
            settle(self._starting, None)
            self._starting = None

    def _on_death(
        self,
        name: str,
        ref: pykka.ActorRef[Any] | None,
        reason: str,
        error: BaseException | None,
    ) -> None:
        cell = self.cells[name]
        if ref is not cell.ref or self._shutting_down:
            return  # a stale report, or a stop we asked for
        if self._starting is not None:
            # A child that cannot start at all is a startup error, not a restart case.
            cell.status = ChildCell.STOPPED
            cell.reason = reason
            # Our own errors (SchemaError, StorageError...) say what to fix; anything
            # else is a crash, reported as the child being unavailable.
            failure = error if isinstance(error, MemoryActorsError) else Unavailable(reason)
            settle_error(self._starting, failure)
            self._starting = None
            return
        now = self.runtime.monotonic()
        history = [t for t in self._history[name] if now - t < self.window]
        history.append(now)
        self._history[name] = history
        if len(history) > self.intensity:
            cell.status = ChildCell.DEGRADED
            cell.reason = f"{reason}; gave up after {self.intensity} restarts in {self.window:.0f}s"
            logger.error("%s is degraded: %s", name, cell.reason)
            return
        cell.status = ChildCell.RESTARTING
        cell.reason = reason
        cell.restarts += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (len(history) - 1))
        delay *= 0.5 + self.runtime.rng("supervisor.backoff").random()
        logger.warning("%s died (%s); restart %d in %.2fs", name, reason, cell.restarts, delay)
        self.runtime.call_later(delay, self.actor_ref, RestartChild(name))
