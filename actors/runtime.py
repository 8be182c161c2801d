"""The runtime seam: how actors are spawned, how time passes, where randomness comes from.

Actor classes subclass plain :class:`pykka.Actor`; a runtime combines each
with its own base when it spawns it (runtime base first in the MRO), so the
same classes run threaded in production and under the deterministic runtime
of the simulation. Production code reads time, randomness, ids and threads
only through a runtime: ``tests/test_architecture.py`` scans the source for
direct use.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import inspect
import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar, cast

import pykka

from actors.model import uuid7

__all__ = [
    "NO_VALUE",
    "Cancellable",
    "Gate",
    "IdMinter",
    "NotifyingFuture",
    "Runtime",
    "ThreadedRuntime",
    "after_notifications",
    "at_interpreter_exit",
    "is_cancelled",
    "notifications_held",
]

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=pykka.Actor)


class Cancellable(Protocol):
    """A scheduled timer; ``cancel()`` is safe to call after it fired."""

    def cancel(self) -> None: ...


class Gate(Protocol):
    """Admission control: at most N holders at once."""

    def acquire(self, timeout: float) -> bool: ...

    def release(self) -> None: ...


#: What :meth:`NotifyingFuture.value` gives when the future holds no value.
NO_VALUE: Final = object()


class NotifyingFuture(pykka.ThreadingFuture[Any]):
    """A reply future that calls ``on_settled()`` once answered, and that its caller can cancel.

    The bridge to asyncio (:mod:`actors.aio`): Pykka futures have no
    done-callback, and awaiting one blocks the event loop. The actor that
    answers calls ``set``/``set_exception`` on its own thread; the value is
    stored first, then ``on_settled`` runs on that same thread, exactly once
    (a second answer raises ``queue.Full`` before reaching it, as for any
    Pykka future, and :func:`actors._base.settle` drops it). ``on_settled``
    must be quick and must not raise: it only schedules work on the caller's
    loop (``loop.call_soon_threadsafe``).

    :meth:`cancel` is the caller giving up: it answers the future itself
    (``concurrent.futures.CancelledError``) and marks it :attr:`cancelled`,
    unless the actor answered first. Actors read the mark with
    :func:`is_cancelled` and drop requests nobody waits for any more (see
    ``docs/architecture.md``, "Cancellation"); ``on_settled`` is not called
    for a cancellation.
    """

    def __init__(self, on_settled: Callable[[], None]) -> None:
        super().__init__()
        # Dropped once used (or cancelled): the callback is usually a bound method of
        # an object that holds this future, and a cycle per request would leave all of
        # them to the cyclic GC, whose full passes stalled 64 async writers for up to
        # 47 ms each (docs/performance.md).
        self._on_settled: Callable[[], None] | None = on_settled
        self._cancelled = False

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "done" if self.done else "pending"
        return f"<NotifyingFuture {state}>"

    @property
    def done(self) -> bool:
        """Answered (or cancelled): ``get(timeout=0)`` returns or raises at once."""
        return self._result is not None

    @property
    def cancelled(self) -> bool:
        """The caller cancelled this request before any answer (read by the actors)."""
        return self._cancelled

    def cancel(self) -> bool:
        """Mark the request cancelled; False if it was already answered (too late)."""
        with self._condition:  # a reentrant lock: ThreadingFuture takes it again below
            if self._result is not None:
                return False
            self._cancelled = True
            self._on_settled = None
            error = concurrent.futures.CancelledError("the caller cancelled this request")
            super().set_exception(exc_info=(type(error), error, None))
        return True

    def value(self) -> Any:
        """The value it was answered with, read without entering its condition, or
        :data:`NO_VALUE` (an error, or no answer yet: ask ``get`` for those).

        For ``on_settled``, which runs on the answering thread after the answer
        is stored: ``get(timeout=0)`` enters the condition and raises and
        catches an exception inside Pykka on every call, on the way of every
        owner's answer to a follower.
        """
        result = self._result
        return NO_VALUE if result is None or result.exc_info is not None else result.value

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._notify()

    def set_exception(self, exc_info: Any = None) -> None:
        super().set_exception(exc_info)
        self._notify()

    def _notify(self) -> None:
        # Only the one answer that was stored gets here (a second raises queue.Full).
        callback, self._on_settled = self._on_settled, None
        if callback is None:
            return
        held: list[Callable[[], None]] | None = getattr(_held, "callbacks", None)
        if held is not None:
            held.append(callback)
        else:
            callback()


#: Per thread: ``callbacks`` of the NotifyingFutures settled inside ``notifications_held``,
#: and ``kicks`` deferred by ``after_notifications`` while those callbacks run.
_held = threading.local()


def notifications_held() -> _HeldNotifications:
    """NotifyingFutures settled on this thread inside the block call back at its end, in order.

    A group commit answers its whole batch inside one. Every answer is stored
    before the first callback runs, and what the callbacks defer with
    :func:`after_notifications` (waking an event loop) runs once after all of
    them: the loop takes the whole batch in one wake-up. Without that, the
    first wake-up's system call let the loop take the GIL and drain one
    answer, and the rest of the batch needed a second wake-up. Nested blocks
    join the outermost one. Futures are settled at once; only the callbacks
    wait, and they run even if the block raises.
    """
    return _HeldNotifications()


class _HeldNotifications:
    """The block of :func:`notifications_held`: a class, not a generator's context
    manager, whose entry and exit ran eight Python calls on the way of every
    group commit's answers (an owner's answer to a follower waits for them)."""

    __slots__ = ("_callbacks",)

    def __enter__(self) -> None:
        if getattr(_held, "callbacks", None) is not None:
            self._callbacks: list[Callable[[], None]] | None = None  # the outer block runs them
            return
        self._callbacks = _held.callbacks = []

    def __exit__(self, *exc_info: object) -> None:
        callbacks = self._callbacks
        if callbacks is None:
            return
        _held.callbacks = None
        kicks: list[Callable[[], None]] = []
        _held.kicks = kicks
        try:
            _run_each(callbacks)
        finally:
            _held.kicks = None
        _run_each(kicks)


def after_notifications(kick: Callable[[], None]) -> None:
    """Run ``kick`` now, or, while a held batch's callbacks run, once they all have."""
    kicks: list[Callable[[], None]] | None = getattr(_held, "kicks", None)
    if kicks is None:
        kick()
    else:
        kicks.append(kick)


def _run_each(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # callbacks must not raise; the others still run
            logger.exception("notifying callback %r failed", callback)


def is_cancelled(future: pykka.Future[Any]) -> bool:
    """True when ``future``'s caller cancelled the request (only a NotifyingFuture can be)."""
    return isinstance(future, NotifyingFuture) and future.cancelled


class Runtime(Protocol):
    """What every actor and the supervisor reach for instead of threads, clocks and RNGs."""

    name: str
    #: Whether actors answer with nobody waiting (their own threads): only then can an
    #: event loop await their answers (:mod:`actors.aio`). A simulated world answers
    #: only while a caller's wait drives it.
    runs_unattended: bool

    def spawn(self, actor_class: Callable[..., A], *args: Any, **kwargs: Any) -> pykka.ActorRef[A]:
        """Start an actor of ``actor_class`` combined with this runtime's base."""
        ...

    def new_future(self) -> pykka.Future[Any]:
        """A future that this runtime's actors can answer and callers can wait on."""
        ...

    def new_notifying_future(self, on_settled: Callable[[], None]) -> NotifyingFuture:
        """A reply future that calls ``on_settled()`` on the answering thread once answered.

        For callers on an event loop (:mod:`actors.aio`) and for the owner's
        answers to its followers (:mod:`actors.owner_service`).
        """
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for deadlines, latency)."""
        ...

    def wall_time(self) -> float:
        """Seconds since the Unix epoch (for timestamps, ids and versions)."""
        ...

    def call_later(self, delay: float, ref: pykka.ActorRef[Any], message: Any) -> Cancellable:
        """Tell ``message`` to ``ref`` after ``delay`` seconds; dropped if ``ref`` is dead."""
        ...

    def rng(self, stream: str) -> random.Random:
        """A named random stream (seeded in the simulation)."""
        ...

    def new_id(self) -> str:
        """Mint a UUIDv7 from this runtime's clock and its ``ids`` stream."""
        ...

    def gate(self, limit: int) -> Gate:
        """An admission gate with ``limit`` slots."""
        ...

    def at_process_exit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the process ends, if the runtime has processes at all."""
        ...

    def close(self) -> None:
        """Stop the runtime's own machinery (timers); actors are stopped by their owner."""
        ...


class _Timer:
    __slots__ = ("cancelled", "message", "ref")

    def __init__(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        self.ref = ref
        self.message = message
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TimerWheel:
    """One daemon thread that delivers delayed messages in deadline order.

    It only ever ``tell``s, so dying with the process loses nothing that an
    actor would have had to clean up.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="actors-timers", daemon=True)
        self._thread.start()

    def schedule(self, delay: float, timer: _Timer) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), timer))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._closed:
                    return
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                timer.ref.tell(timer.message)
            except pykka.ActorDeadError:
                logger.debug("timer message %r dropped: %s is dead", timer.message, timer.ref)


class _ThreadGate:
    """Admission for threads: a count under a plain lock, a condition only for waiters.

    ``threading.BoundedSemaphore`` enters a Condition (a Python-level lock) on
    both sides and builds a deque of waiters to notify on every release, ~2 µs
    a side hot; a follower's call passes a gate twice in each process. Here a
    free slot costs one plain lock, and a release notifies only when somebody
    waits (only at ``max_in_flight`` calls in flight).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._free = limit
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._waiting = 0

    def __repr__(self) -> str:
        return f"<_ThreadGate free={self._free}/{self._limit} waiting={self._waiting}>"

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return True
            if timeout <= 0:
                return False
            self._waiting += 1
            try:
                if not self._freed.wait_for(lambda: self._free > 0, timeout):
                    return False
            finally:
                self._waiting -= 1
            self._free -= 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._free >= self._limit:
                raise ValueError("the admission gate was released more often than acquired")
            self._free += 1
            if self._waiting:
                self._freed.notify()


class IdMinter:
    """UUIDv7 ids that sort in minting order within one runtime (RFC 9562 method 1).

    Within a millisecond the 12-bit field counts up; on overflow the id
    borrows the next millisecond. Not thread-safe: its runtime serialises it.
    """

    def __init__(self) -> None:
        self._last = (0, 0)

    def mint(self, unix_ms: int, rng: random.Random) -> str:
        last_ms, last_a = self._last
        if unix_ms <= last_ms:
            unix_ms, rand_a = last_ms, last_a + 1
            if rand_a > 0xFFF:
                unix_ms, rand_a = last_ms + 1, 0
        else:
            rand_a = rng.getrandbits(11)
        self._last = (unix_ms, rand_a)
        return uuid7(unix_ms, rand_a, rng.getrandbits(62))


class ThreadedRuntime:
    """Production runtime: a Pykka ``ThreadingActor`` thread per actor, the real clocks."""

    name = "threaded"
    runs_unattended = True

    def __init__(self, *, seed: int | None = None) -> None:
        self._classes: dict[type[pykka.Actor], type[pykka.Actor]] = {}
        self._wheel: _TimerWheel | None = None
        self._rngs: dict[str, random.Random] = {}
        self._seed = seed
        # Guards the lazily built tables and the id sequence, which several
        # caller threads may touch at once; never held while calling out.
        self._mutex = threading.Lock()
        self._ids = IdMinter()

    def __repr__(self) -> str:
        return f"<ThreadedRuntime timers={'on' if self._wheel else 'off'}>"

    def spawn(self, actor_class: Callable[..., A], *args: Any, **kwargs: Any) -> pykka.ActorRef[A]:
        # Callable, not type[A]: mypy refuses abstract classes (every pykka.Actor) for type[A].
        cls = cast("type[pykka.Actor]", actor_class)
        with self._mutex:
            combined = self._classes.get(cls)
            if combined is None:
                # An actor class may ask for a daemon thread (it holds nothing durable);
                # ThreadingActor comes first in the MRO, so carry the wish over.
                daemon = bool(getattr(cls, "use_daemon_thread", False))
                combined = type(
                    cls.__name__, (pykka.ThreadingActor, cls), {"use_daemon_thread": daemon}
                )
                combined.__module__ = cls.__module__
                combined.__qualname__ = cls.__qualname__
                self._classes[cls] = combined
        ref: pykka.ActorRef[A] = combined.start(*args, **kwargs)  # type: ignore[assignment]
        return ref

    def new_future(self) -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def new_notifying_future(self, on_settled: Callable[[], None]) -> NotifyingFuture:
        return NotifyingFuture(on_settled)

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_time(self) -> float:
        return time.time()

    def call_later(self, delay: float, ref: pykka.ActorRef[Any], message: Any) -> Cancellable:
        with self._mutex:
            if self._wheel is None:
                self._wheel = _TimerWheel()
            wheel = self._wheel
        timer = _Timer(ref, message)
        wheel.schedule(delay, timer)
        return timer

    def rng(self, stream: str) -> random.Random:
        with self._mutex:
            rng = self._rngs.get(stream)
            if rng is None:
                rng = random.Random(None if self._seed is None else f"{self._seed}:{stream}")
                self._rngs[stream] = rng
            return rng

    def new_id(self) -> str:
        rng = self.rng("ids")
        with self._mutex:
            return self._ids.mint(int(self.wall_time() * 1000), rng)

    def gate(self, limit: int) -> Gate:
        return _ThreadGate(limit)

    def at_process_exit(self, callback: Callable[[], None]) -> None:
        at_interpreter_exit(callback)

    def close(self) -> None:
        with self._mutex:
            wheel, self._wheel = self._wheel, None
        if wheel is not None:
            wheel.close()


_exit_callbacks: list[weakref.WeakMethod[Callable[[], None]] | Callable[[], None]] = []
_exit_hook_installed = False


def _run_exit_callbacks() -> None:
    while _exit_callbacks:
        entry = _exit_callbacks.pop()
        callback = entry() if isinstance(entry, weakref.WeakMethod) else entry
        if callback is None:
            continue
        try:
            callback()
        except Exception:
            logger.exception("exit callback %r failed", callback)


def at_interpreter_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the main thread ends, *before* non-daemon threads are joined.

    Plain ``atexit`` runs after that join, too late: an actor thread left
    running would keep the process alive forever. ``concurrent.futures``
    uses the same hook for the same reason. Bound methods are held weakly,
    so a closed and forgotten MemorySystem can still be garbage-collected.
    """
    global _exit_hook_installed
    entry: weakref.WeakMethod[Callable[[], None]] | Callable[[], None] = (
        weakref.WeakMethod(callback) if inspect.ismethod(callback) else callback
    )
    _exit_callbacks[:] = [
        e for e in _exit_callbacks if not (isinstance(e, weakref.WeakMethod) and e() is None)
    ]
    _exit_callbacks.append(entry)
    if _exit_hook_installed:
        return
    _exit_hook_installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython since 3.9 has it
        import atexit

        atexit.register(_run_exit_callbacks)
        return
    try:
        register(_run_exit_callbacks)
    except RuntimeError:  # already shutting down
        _run_exit_callbacks()
