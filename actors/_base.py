"""Internal: the base every actor with reply futures shares.

Pykka answers queued *asks* when an actor stops, but drops queued *tells* and
knows nothing of futures an actor keeps in its own state. Our requests are
tells that carry their reply future (see :mod:`actors.messages`), so this
base keeps the promise instead: every reply future is answered exactly once.

- A request handler that raises answers its caller with the exception; the
  actor lives on (unlike a plain Pykka tell, which would kill it).
- A request whose caller cancelled it while it was queued (an asyncio caller,
  see :class:`~actors.runtime.NotifyingFuture`) is dropped when dequeued: the
  cancellation already answered it, and nobody waits for the work.
- ``on_stop`` (orderly stop) first lets the subclass settle what it holds
  (the store commits its pending batch), then fails every request still
  queued behind the stop with :class:`~actors.errors.Unavailable`.
- ``on_failure`` fails what the subclass holds and what is queued.
- ``on_start`` failures (for which Pykka calls no ``on_failure``) and every
  stop are reported to the supervisor, if there is one.
"""

from __future__ import annotations

import logging
import queue
from types import TracebackType
from typing import Any, Final

import pykka
from pykka.messages import _ActorStop  # the one private name we use: see _fail_queued

from actors.errors import Unavailable
from actors.messages import Answer, ChildFailed, ChildReady, ChildStopped, Request, TellBack
from actors.runtime import Runtime, is_cancelled

__all__ = ["DEFERRED", "ReplyingActor", "settle", "settle_error"]

logger = logging.getLogger(__name__)


class _Deferred:
    def __repr__(self) -> str:
        return "DEFERRED"


#: Returned by a request handler that keeps the reply future to answer later.
DEFERRED: Final = _Deferred()


def settle(future: pykka.Future[Any], value: Any) -> None:
    """Answer ``future`` with ``value`` unless it was already answered."""
    try:
        future.set(value)
    except queue.Full:
        logger.debug("future already answered; dropping %r", value)


def settle_error(future: pykka.Future[Any], exc: BaseException) -> None:
    """Answer ``future`` with ``exc`` unless it was already answered."""
    try:
        future.set_exception(exc_info=(type(exc), exc, exc.__traceback__))
    except queue.Full:
        logger.debug("future already answered; dropping %r", exc)


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        logger.debug("dropped %r: %s is dead", message, ref)


class ReplyingActor(pykka.Actor):
    """Base for actors whose requests carry reply futures.

    Runs on whatever runtime spawned it (a thread per actor when threaded).
    Subclasses implement :meth:`setup`, :meth:`handle`, and, if they hold
    reply futures in their state, :meth:`settle_on_stop` and
    :meth:`fail_held`.
    """

    #: Lifecycle states, for reprs and ``Ping``.
    STARTING: Final = "STARTING"
    READY: Final = "READY"
    STOPPING: Final = "STOPPING"
    STOPPED: Final = "STOPPED"
    FAILED: Final = "FAILED"

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.name = name
        self.supervisor = supervisor
        self.state: str = self.STARTING

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} state={self.state}>"

    # -- hooks for subclasses ---------------------------------------------

    def setup(self) -> None:
        """Acquire resources; runs in the actor's own thread before any message."""

    def teardown(self) -> None:
        """Release resources; runs last on stop and on failure. Must not raise."""

    def handle(self, message: Any) -> Any:
        """Handle one message; for a :class:`Request`, the return value is the answer.

        Return :data:`DEFERRED` to keep the reply future and answer it later.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot handle {message!r}")

    def settle_on_stop(self) -> None:
        """Orderly stop: finish (or fail) the work the actor holds in its state."""

    def fail_held(self, exc: BaseException) -> None:
        """Failure: fail every reply future the actor holds in its state with ``exc``."""

    # -- Pykka hooks --------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.setup()
        except Exception as exc:
            self.state = self.FAILED
            self._notify(ChildFailed(self.name, self.actor_ref, f"failed to start: {exc}", exc))
            self._release()
            self._fail_queued(Unavailable(f"{self.name} failed to start: {exc}"))
            raise
        self.state = self.READY
        self._notify(ChildReady(self.name, self.actor_ref))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TellBack):
            try:
                answer = Answer(message, value=self.handle(message))
            except Exception as exc:
                answer = Answer(message, error=exc)
            _tell_quietly(message.reply_to, answer)
            return None
        if not isinstance(message, Request):
            return self.handle(message)
        if is_cancelled(message.reply):
            logger.debug("%r: dropped %r, cancelled by its caller while queued", self, message)
            return None
        try:
            answer = self.handle(message)
        except Exception as exc:
            # The caller gets the error; the actor lives on.
            settle_error(message.reply, exc)
            return None
        if answer is not DEFERRED:
            settle(message.reply, answer)
        return None

    def on_stop(self) -> None:
        self.state = self.STOPPING
        try:
            self.settle_on_stop()
        except Exception as exc:
            logger.exception("%r failed to settle its work on stop", self)
            self.fail_held(exc)
        self._fail_queued(Unavailable(f"{self.name} stopped before handling the request"))
        self._release()
        self.state = self.STOPPED
        self._notify(ChildStopped(self.name, self.actor_ref))

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.state = self.FAILED
        reason = f"{self.name} failed: {exception_value!r}"
        exc = Unavailable(reason)
        self.fail_held(exc)
        self._fail_queued(exc)
        self._release()
        self._notify(ChildFailed(self.name, self.actor_ref, reason, exception_value))

    # -- internals ------------------------------------------------------------

    def _release(self) -> None:
        try:
            self.teardown()
        except Exception:
            logger.exception("%r failed to release its resources", self)

    def _fail_queued(self, exc: BaseException) -> None:
        """Answer every request still in the inbox; asks get the same error."""
        while not self.actor_inbox.empty():
            try:
                envelope = self.actor_inbox.get()
            except Exception:  # an inbox may raise when it turns empty under us
                break
            if isinstance(envelope.message, Request):
                settle_error(envelope.message.reply, exc)
            elif isinstance(envelope.message, TellBack):
                _tell_quietly(envelope.message.reply_to, Answer(envelope.message, error=exc))
            if envelope.reply_to is None:
                continue
            if isinstance(envelope.message, _ActorStop):
                # A second stop() waits for the actor to be stopped: it is.
                settle(envelope.reply_to, None)
            else:
                settle_error(envelope.reply_to, exc)

    def _notify(self, message: Any) -> None:
        if self.supervisor is None:
            return
        try:
            self.supervisor.tell(message)
        except pykka.ActorDeadError:
            logger.debug("%r: supervisor gone, dropped %r", self, message)
