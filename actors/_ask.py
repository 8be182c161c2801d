"""Internal: how code outside the actors asks one a question, and stops one.

The facade (:class:`actors.system.MemorySystem`) and the hub
(:class:`actors.hub.service.HubService`) talk to their actors from caller
threads in the same way: tell a :class:`~actors.messages.Request` carrying a
fresh reply future, wait for the answer with a timeout, and translate what
Pykka raises into :mod:`actors.errors`. Every wait is bounded; a caller never
sees ``pykka.Timeout`` or ``pykka.ActorDeadError``.

Runs on the caller's thread, never inside an actor: an actor that waited on
another's future could deadlock the pair (see the tell-backs in
:mod:`actors.messages`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

from actors.errors import AskTimeout, Unavailable
from actors.messages import Request
from actors.runtime import Runtime

__all__ = ["answer_of", "ask", "lost", "overdue", "send", "stop", "wait_alive"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: How often a waiting caller checks that the actor it waits on still lives.
_LIVENESS_POLL = 0.25


def send(
    runtime: Runtime,
    ref: pykka.ActorRef[Any],
    make: Callable[[pykka.Future[R]], Request[R]],
    *,
    if_dead: str,
    reply: pykka.Future[R] | None = None,
) -> pykka.Future[R]:
    """Tell ``ref`` the request ``make`` builds around a reply future; return the future.

    The future is ``reply`` if given (the asyncio facade passes a
    :class:`~actors.runtime.NotifyingFuture`), else a fresh one of ``runtime``.

    ``make`` is the request class itself (``Ping``) or a lambda that fills in
    the rest (``lambda reply: GetMemory(reply, memory_id)``); its answer type
    is the future's. Raises ``Unavailable(if_dead)`` when ``ref`` is already
    dead: each caller knows whether a supervisor is restarting it, and how its
    own callers are told to retry.
    """
    if reply is None:
        reply = runtime.new_future()
    try:
        ref.tell(make(reply))
    except pykka.ActorDeadError:
        raise Unavailable(if_dead) from None
    return reply


def ask(
    runtime: Runtime,
    ref: pykka.ActorRef[Any],
    make: Callable[[pykka.Future[R]], Request[R]],
    timeout: float,
    what: str,
    *,
    if_dead: str | None = None,
) -> R:
    """:func:`send`, then :func:`wait_alive`: the answer, or the actor's error re-raised.

    Raises ``Unavailable`` (``ref`` was dead, ``if_dead`` or "{what} is not
    running"; or died before answering) or ``AskTimeout``, each naming ``what``.
    """
    message = if_dead if if_dead is not None else f"{what} is not running"
    reply = send(runtime, ref, make, if_dead=message)
    return wait_alive(runtime, reply, ref, timeout, what)


def wait_alive(
    runtime: Runtime, future: pykka.Future[R], ref: pykka.ActorRef[Any], timeout: float, what: str
) -> R:
    """Wait for ``future`` (answered by ``ref``) up to ``timeout``; give up early if it died.

    Pykka has a small window in which a tell racing a stop is enqueued after
    the actor drained its inbox; that request is never answered. Polling the
    actor's liveness turns such a loss into a prompt ``Unavailable`` instead
    of a wait for the whole timeout. An answered future returns at once, so
    the normal path pays nothing. Raises ``Unavailable`` or ``AskTimeout``
    naming ``what``.
    """
    deadline = runtime.monotonic() + timeout
    while True:
        slice_ = min(_LIVENESS_POLL, max(0.0, deadline - runtime.monotonic()))
        try:
            return answer_of(future, what, slice_)
        except pykka.Timeout:
            pass
        if not ref.is_alive():
            try:  # it may have answered just before it died
                return future.get(timeout=0)
            except pykka.Timeout:
                raise lost(what) from None
        if runtime.monotonic() >= deadline:
            raise overdue(what, timeout)


def answer_of(future: pykka.Future[R], what: str, timeout: float = 0) -> R:
    """``future``'s answer, or the actor's error re-raised (an actor dead as ``Unavailable``).

    ``pykka.Timeout`` when it has no answer within ``timeout`` seconds.
    """
    try:
        return future.get(timeout=timeout)
    except pykka.ActorDeadError as exc:
        raise Unavailable(f"{what} stopped: {exc}") from None


def lost(what: str) -> Unavailable:
    """The error of a request whose actor died before answering it."""
    return Unavailable(f"{what} stopped before answering; retry")


def overdue(what: str, timeout: float) -> AskTimeout:
    """The error of a request unanswered after ``timeout`` seconds."""
    return AskTimeout(f"no answer from {what} within {timeout:g}s")


def stop(ref: pykka.ActorRef[Any], timeout: float) -> None:
    """Stop ``ref`` and wait for it up to ``timeout``; an actor already dead is fine.

    A stop that times out is logged, not raised: shutdown goes on with the
    next actor (a thread left running keeps the process alive, which the log
    then explains).
    """
    try:
        ref.stop(block=True, timeout=timeout)
    except pykka.Timeout:
        logger.error("%s did not stop within %gs", ref, timeout)
    except pykka.ActorDeadError:
        pass
