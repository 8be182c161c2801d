"""The owner's end of a facade call across processes.

:class:`OwnerService` runs in the file's owner: it listens on the owner's
socket (:class:`~actors.owner_link.LinkServer`) and runs each follower's call
on the owner's facade. So the follower's caller gets the owner's validation,
admission control, timeouts and group commit: the calls of all followers and
the owner's own callers share the StoreActor's batches.

Most verbs are one request to one actor (``store``, ``get``, ``list``, ...:
:meth:`MemorySystem._begin <actors.system.MemorySystem._begin>`). Those are
validated and sent on the connection's reader thread and answered from the
actor's reply callback, on the actor's thread, with no thread waiting for
them: a follower's call wakes the owner's reader and the actor, as an
owner's own call wakes the actor and its caller. The reply is written
without waiting for the follower (:class:`~actors.owner_link.LinkServer`).
A watch thread answers those whose actor dies unanswering (Pykka's window)
or that run past their timeout, with the errors a blocking caller gets.

The other verbs (``recall``, ``count``, ``status``, the export's pages, the
session log's reads, import and backup) wait on several answers or on
files: they run on the owner's blocking facade, on a bounded pool of worker
threads (calls beyond it queue, unanswered, and the owner's admission gate
still bounds what reaches the actors); so do the one-request verbs when the
admission gate is full at once (the worker then waits for a slot as a
blocking caller does). The follower's end is
:class:`actors.owner_link.OwnerProxy`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol

from actors._ask import _LIVENESS_POLL
from actors.errors import InvalidMemory, MemoryActorsError
from actors.owner_link import NOT_BEGUN, LinkServer, Message, Reply
from actors.owner_protocol import VERBS, bound_arguments, encode_error, encode_result
from actors.runtime import NotifyingFuture, after_notifications

__all__ = ["AnsweredCall", "OwnerService", "Watch", "look", "look_delay"]

logger = logging.getLogger(__name__)

#: Follower calls served at once; as many as a busy group commit gathers.
WORKERS: Final = 64


class Listener(Protocol):
    """Where followers' requests arrive (:class:`~actors.owner_link.LinkServer`)."""

    @property
    def path(self) -> Path: ...
    @property
    def followers(self) -> int: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class Begun(Protocol):
    """A verb the facade prepared to send to its actor without waiting (``MemorySystem._begin``)."""

    @property
    def reply(self) -> NotifyingFuture: ...
    def send(self) -> None: ...
    def left(self) -> float: ...
    def verdict(self) -> MemoryActorsError | None: ...
    def answer(self, failure: Exception | None = None) -> Any: ...
    def release(self, answered: bool) -> None: ...


#: Starts listening on a path, handing each request to a handler.
Listen = Callable[[Path, Callable[[str, Message, Reply], None]], Listener]


class Watch(Protocol):
    """Looks again at the calls sent to their actors until each is answered
    (:meth:`AnsweredCall.look`), and lets ``close`` wait for the last of them."""

    def add(self, call: AnsweredCall) -> None:
        """Look at ``call`` in :func:`look_delay` seconds, and again while it asks for it."""
        ...

    def discard(self, call: AnsweredCall) -> None:
        """``call`` is answered: no more looks (a look that comes anyway finds it answered)."""
        ...

    def wait_until(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` is true (the calls in flight are being answered meanwhile)."""
        ...

    def close(self) -> None: ...


class OwnerService:
    """Serves ``facade`` (the owner's MemorySystem) to followers until ``close``.

    ``facade`` is any object with the verbs of :data:`~actors.owner_protocol.VERBS`
    as methods taking keyword arguments; one that also has ``_begin`` (a
    MemorySystem) gets the one-request verbs answered from its actors'
    replies. ``listen``, ``pool`` and ``watch`` are the socket server, the
    worker threads and the watch of unanswered calls; the simulation passes
    its own (:mod:`actors.sim.sharing`), so that a seeded world runs the
    same reply path (its notifying futures call back on the actor's step).
    """

    def __init__(
        self,
        facade: object,
        socket_path: str | Path,
        *,
        workers: int = WORKERS,
        listen: Listen = LinkServer,
        pool: Executor | None = None,
        watch: Watch | None = None,
    ) -> None:
        self._facade = facade
        self._begin: Callable[..., Begun | None] | None = getattr(facade, "_begin", None)
        self._pool = pool or ThreadPoolExecutor(workers, thread_name_prefix="owner-service")
        self._mutex = threading.Lock()
        #: Calls begun on the actors and not answered yet (close waits for them).
        self._in_flight = 0
        self._closing = False
        self._watch: Watch = watch or _Watch()
        self._server = listen(Path(socket_path), self._handle)

    def __repr__(self) -> str:
        return f"<OwnerService {self._server.path} followers={self.followers}>"

    @property
    def followers(self) -> int:
        return self._server.followers

    @property
    def socket_path(self) -> Path:
        return self._server.path

    def _handle(self, verb: str, args: Message, reply: Reply) -> None:
        """On a link thread: send a one-request call to its actor, else queue it for a worker."""
        if self._begin is not None and self._started(verb, args, reply):
            return
        # Shutting down (RuntimeError): the follower sees the link close instead.
        with contextlib.suppress(RuntimeError):
            self._pool.submit(self._run, verb, args, reply)

    def _started(self, verb: str, args: Message, reply: Reply) -> bool:
        """Whether the call was answered or sent to its actor (False: a worker runs it)."""
        assert self._begin is not None
        with self._mutex:
            # Counted under the same lock that ``close`` sets ``_closing`` under: a call
            # begun is one ``close`` waits for; one not begun is told so.
            closing = self._closing
            if not closing:
                self._in_flight += 1
        if closing:
            reply({NOT_BEGUN: True})
            return True
        call = AnsweredCall(self, verb, reply)
        try:
            _check_arguments(verb, self._method(verb), args)
            begun = self._begin(verb, args, call.settle)
        except Exception as exc:  # every error goes back to the caller that caused it
            reply({"error": encode_error(exc)})
            self._finished()
            return True
        if begun is None:
            self._finished()
            return False
        call.begun = begun
        # Watched before it is sent: after the tell this thread only goes back to
        # reading its socket, which lets go of the GIL that the actor it woke needs
        # (the watch's registration after the tell held that actor up ~20 µs a call).
        self._watch.add(call)
        try:
            begun.send()
        except Exception as exc:  # its actor is dead (Unavailable, as a blocking caller is told)
            call.settle(exc)
        return True

    def _finished(self, call: AnsweredCall | None = None) -> None:
        with self._mutex:
            self._in_flight -= 1
        if call is not None:
            self._watch.discard(call)

    def _run(self, verb: str, args: Message, reply: Reply) -> None:
        if self._closing:
            reply({NOT_BEGUN: True})  # queued when the owner began to close
            return
        try:
            answer: Message = {"ok": encode_result(verb, _bind(verb, self._method(verb), args)())}
        except Exception as exc:  # every error goes back to the caller that caused it
            answer = {"error": encode_error(exc)}
        reply(answer)

    def _method(self, verb: str) -> Callable[..., Any]:
        if verb not in VERBS:
            raise InvalidMemory(f"unknown verb {verb!r} (expected one of {sorted(VERBS)})")
        method: Callable[..., Any] = getattr(self._facade, verb)
        return method

    def close(self) -> None:
        """Finish and answer the calls begun, then drop the followers (they fail over).

        Calls received but not begun are answered ``not_begun``: their
        followers repeat them with the next owner, whatever the verb.
        """
        with self._mutex:
            self._closing = True
        self._server.drain()
        self._pool.shutdown(wait=True)
        # Each is answered by its actor or, at its timeout at the latest, by the watch.
        self._watch.wait_until(lambda: self._in_flight == 0)
        self._watch.close()
        self._server.close()


def _bind(verb: str, method: Callable[..., Any], args: Message) -> Callable[[], Any]:
    """``method`` with ``args`` bound, or InvalidMemory if the verb does not take them."""
    _check_arguments(verb, method, args)
    return lambda: method(**args)


def _check_arguments(verb: str, method: Callable[..., Any], args: Message) -> None:
    """InvalidMemory if ``method`` does not take the keyword arguments ``args`` names."""
    names = tuple(args)
    # Only names short enough for a verb's are remembered: a frame's keys may run to MiBs.
    misfit = _misfit if sum(map(len, names)) <= _REMEMBERED_NAMES else _misfit.__wrapped__
    function = getattr(method, "__func__", None)
    # A facade's verb is a bound method: its function is remembered, with a None for self.
    problem = misfit(function or method, function is not None, names)
    if problem is not None:
        # Keyword arguments the verb does not take: the follower's bug, told as such.
        raise InvalidMemory(f"{verb}: {problem}")


#: Characters of argument names at most for a set of them to be remembered (a
#: verb's names together are ~100).
_REMEMBERED_NAMES: Final = 512


@functools.lru_cache(maxsize=1024)
def _misfit(function: Callable[..., Any], takes_self: bool, names: tuple[str, ...]) -> str | None:
    """Why ``function`` cannot be called with keyword arguments ``names`` (None: it can).

    Whether a call by keyword fits depends on the names alone, so it is
    worked out once per verb and set of names a follower sends (a few per
    verb), not on every call. Bounded: a peer inventing names only churns it.
    """
    try:
        bound_arguments(function, (None,) if takes_self else (), dict.fromkeys(names))
    except TypeError as exc:
        return str(exc)
    return None


class AnsweredCall:
    """A follower's call sent to an actor by :meth:`OwnerService._started`, until answered.

    Answered once: by the actor's reply callback (:meth:`settle`, on the
    actor's thread), or with the error of an actor found dead when it was
    sent, or by the watch with the error of an actor that died unanswering or
    ran past the call's timeout, whichever comes first.
    """

    __slots__ = ("_once", "_service", "answered", "begun", "reply", "verb")

    def __init__(self, service: OwnerService, verb: str, reply: Reply) -> None:
        self._service, self.verb, self.reply = service, verb, reply
        #: Set by the service before the request is sent (so before any answer).
        self.begun: Begun | None = None
        self._once = threading.Lock()
        #: Whether the verb answered (not an error): what :meth:`Begun.release` does after.
        self.answered = False

    def settle(self, failure: Exception | None = None) -> None:
        """Reply with the answer, or with ``failure``; only the first call does anything.

        The answer's frame goes first; the admission slot, the sync and
        embedding nudge of a write and the service's count follow it
        (:meth:`_release`): inside a group commit's answers, after the
        batch's frames are written (:func:`~actors.runtime.after_notifications`).
        Before, they delayed every follower's answer (a nudge wakes the
        EmbeddingActor before the frame left).
        """
        if not self._once.acquire(blocking=False):
            return
        assert self.begun is not None
        try:
            answer: Message = {"ok": encode_result(self.verb, self.begun.answer(failure))}
            self.answered = True
        except Exception as exc:  # the verb's error, for its caller
            answer = {"error": encode_error(exc)}
        try:
            self.reply(answer)
        finally:
            after_notifications(self._release)

    def _release(self) -> None:
        assert self.begun is not None
        try:
            self.begun.release(self.answered)
        finally:
            self._service._finished(self)

    def look(self) -> bool:
        """The watch's look: whether this call needs no more looks."""
        assert self.begun is not None
        if self._once.locked():
            return True  # answered
        failure = self.begun.verdict()
        if failure is not None:
            self.settle(failure)
            return True
        return self.begun.reply.done  # answered: ``settle`` replies


def look_delay(call: AnsweredCall) -> float:
    """Seconds until the watch looks at ``call``: the liveness poll, or its timeout if sooner."""
    assert call.begun is not None
    return min(_LIVENESS_POLL, max(0.0, call.begun.left()))


def look(call: AnsweredCall) -> bool:
    """A watch's look at ``call``: whether it needs no more looks."""
    try:
        return call.look()
    except Exception:  # a bug here must not end the watch
        logger.exception("looking at %s failed", call.verb)
        return True


#: The watch's looks fall on multiples of this many seconds, so that one wake-up
#: looks at every call due by then. Due at its own instant, each call woke the
#: watch once (a follower's ``get`` every half millisecond woke it as often, a
#: seventh of the owner's CPU per call); a look or a timeout's answer comes at
#: most this much later.
_TICK: Final = 0.05


#: How often ``close`` looks whether the calls in flight are answered.
_CLOSE_POLL: Final = 0.002


class _Watch:
    """Looks at unanswered calls every 0.25 s (as a blocking caller polls) and at their
    timeout, on one thread started on first need; :meth:`AnsweredCall.look` decides.

    Holds only the calls not answered yet: an answered call is dropped at once
    (:meth:`discard`). Kept until its look, each call's objects (its future,
    request and closures, ~15 tracked by the garbage collector) outlived the
    young generation: a follower's stores set off 5x the owner's own
    collections, a 1.4 ms middle-generation pass every ~250 calls and a
    full one of ~30 ms every ~1,000.
    """

    def __init__(self) -> None:
        # ``add`` and ``discard`` take the plain lock: entering the Condition is two
        # Python calls more, on the way of every follower's call.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        #: Each unanswered call and when it is due a look.
        self._due: dict[AnsweredCall, float] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        #: When the thread wakes next by itself (-inf: it is awake; inf: when told).
        self._wakes_at = -math.inf

    def add(self, call: AnsweredCall) -> None:
        when = math.ceil((time.monotonic() + look_delay(call)) / _TICK) * _TICK
        with self._lock:
            self._due[call] = when
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="owner-service-watch", daemon=True
                )
                self._thread.start()
            elif when < self._wakes_at:
                self._ready.notify()  # sooner than what the thread waits for

    def discard(self, call: AnsweredCall) -> None:
        with self._lock:
            self._due.pop(call, None)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    due = [call for call, when in self._due.items() if when <= now]
                    if due:
                        break
                    self._wakes_at = min(self._due.values(), default=math.inf)
                    self._ready.wait(self._wakes_at - now if self._due else None)
                    self._wakes_at = -math.inf
                for call in due:
                    del self._due[call]
            for call in due:
                if not look(call):
                    self.add(call)

    def wait_until(self, done: Callable[[], bool]) -> None:
        # Only ``close`` waits, for the few calls in flight at the end: polled, so the
        # calls' answers never pay for notifying a waiter that is almost never there.
        while not done():
            time.sleep(_CLOSE_POLL)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
