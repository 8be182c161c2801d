"""The deterministic runtime: the production actors, no threads, one seed.

:class:`SimRuntime` implements :class:`actors.runtime.Runtime`. It spawns
actor classes combined with a per-world base (first in the MRO) whose inbox
is a plain deque and whose loop is driven one envelope at a time by a
seeded scheduler. Time is virtual: each step costs ``step_cost`` seconds, and
when nothing can run the clock jumps to the next timer. A future's ``get()``
called from outside (a test, ``MemorySystem.open``) drives the scheduler
until the future is answered, its virtual deadline passes (``pykka.Timeout``),
or nothing is left that could answer it (:class:`Deadlock`).

Concurrent callers are *clients*: generators that yield a future (or a
number of seconds to sleep) and receive an :class:`Outcome`. The scheduler
interleaves clients and actors with the same strategy, so one seed decides
every interleaving, every timer and every injected fault.

Code written for OS threads (sharing a file across processes: a follower's
blocking facade call, the owner's worker answering it, the watcher taking
over) runs as *threads* (:meth:`SimRuntime.thread`): a task that runs a
function once, whose blocking waits drive the world from inside the step,
so the threads waiting at one moment nest (the innermost resumes first).
A thread belongs to a *group* (a simulated process): :meth:`SimRuntime.kill_group`
ends them all, as ``kill -9`` ends a process's threads.

The one private Pykka surface used is the body of ``Actor._actor_loop``
(setup, one envelope, teardown): :func:`_handle_envelope` mirrors Pykka 4.5's
loop body, and ``tests/test_sim_conformance.py`` runs the same behaviour
battery on both runtimes so that a Pykka change that breaks it fails loudly.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import queue
import random
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, cast

import attrs
import pykka
from pykka._envelope import Envelope

from actors._base import settle_error
from actors.errors import Unavailable
from actors.messages import Answer, Request, TellBack
from actors.runtime import IdMinter, NotifyingFuture
from actors.sim.faults import FaultPlan
from actors.sim.strategies import Strategy, make_strategy
from actors.sim.trace import Trace

__all__ = [
    "BlockingCallInHandler",
    "Client",
    "Deadlock",
    "Outcome",
    "SimError",
    "SimRuntime",
    "Sleep",
    "StepLimitExceeded",
    "ThreadKilled",
]

logger = logging.getLogger(__name__)

A = TypeVar("A", bound=pykka.Actor)

#: 2026-01-01T00:00:00Z: the wall clock of every simulated world starts here.
DEFAULT_EPOCH = 1_767_225_600.0


class SimError(Exception):
    """A finding of the simulation itself (not of the code under test's error tree)."""


class Deadlock(SimError):
    """A future is awaited that nothing left in the world can answer."""


class BlockingCallInHandler(SimError):
    """A handler (or a client) called a blocking ``get()``: it would block a thread for real."""


class StepLimitExceeded(SimError):
    """The run took more steps than allowed: a livelock, or a limit set too low."""


class ThreadKilled(BaseException):
    """Unwinds a simulated thread whose process was killed (from its next blocking wait).

    A BaseException, so that the code under test's ``except Exception`` does
    not mistake the death of its process for an error it could handle.
    """


@attrs.frozen
class Sleep:
    """Yielded by a client: resume after ``seconds`` of virtual time."""

    seconds: float


@attrs.frozen
class Outcome:
    """What a client's yielded future produced: a value or an exception."""

    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def ok(self) -> bool:
        return self.error is None


#: A client: a generator that yields futures (or Sleep) and is sent an Outcome for each
#: future (typed Any so that ``outcome = yield future`` needs no cast in clients).
Client = Generator[Any, Any, None]


class _SimInbox:
    """FIFO, never blocks: the scheduler only steps an actor that has mail."""

    __slots__ = ("_queue", "_sim", "owner")

    def __init__(self, sim: SimRuntime, owner: pykka.Actor) -> None:
        self._queue: deque[Envelope[Any]] = deque()
        self._sim = sim
        self.owner = owner

    def put(self, envelope: Envelope[Any], /) -> None:
        self._sim._on_enqueue(envelope, self.owner)
        if self._sim._blocked_for > 0:
            # Sent after a simulated blocking call: delivered when the call "returns".
            self._sim._held.append((self, envelope))
            return
        self._queue.append(envelope)

    def get(self) -> Envelope[Any]:
        return self._queue.popleft()

    def empty(self) -> bool:
        return not self._queue

    def push_front(self, envelope: Envelope[Any]) -> None:
        self._queue.appendleft(envelope)

    def __len__(self) -> int:
        return len(self._queue)


class SimFuture(pykka.Future[Any]):
    """A future of one simulated world; ``get()`` from outside drives its scheduler."""

    _sim: ClassVar[SimRuntime]

    def __init__(self) -> None:
        super().__init__()
        self._result: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"<SimFuture {'done' if self.done else 'pending'}>"

    @property
    def done(self) -> bool:
        return self._result is not None

    def get(self, *, timeout: float | None = None) -> Any:
        try:
            return super().get(timeout=timeout)
        except NotImplementedError:
            pass
        if self._result is None:
            self._sim._wait_for(self, timeout)
        assert self._result is not None
        value, exc_info = self._result
        if exc_info is not None:
            exc_type, exc_value, tb = exc_info
            if exc_value is None:
                exc_value = exc_type()
            raise exc_value.with_traceback(tb)
        return value

    def set(self, value: Any | None = None) -> None:
        if self._result is not None or self._get_hook is not None:
            raise queue.Full
        self._result = (value, None)

    def set_exception(
        self,
        exc_info: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
        | None = None,
    ) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        if self._result is not None or self._get_hook is not None:
            raise queue.Full
        self._result = (None, exc_info)


class SimNotifyingFuture(NotifyingFuture):
    """A :class:`~actors.runtime.NotifyingFuture` of one simulated world.

    Settling it and its callback are the production class's own; only a
    ``get()`` on it while it is pending drives the world (a real condition
    wait would wait for ever: nothing else runs while this thread waits).
    """

    def __init__(self, sim: SimRuntime, on_settled: Callable[[], None]) -> None:
        super().__init__(on_settled)
        self._sim = sim

    def get(self, *, timeout: float | None = None) -> Any:
        if not self.done:
            self._sim._wait_for(self, timeout)
        return super().get(timeout=0)


#: The reply futures a simulated world tracks (see :meth:`SimRuntime.unanswered`).
_OF_THIS_WORLD = (SimFuture, SimNotifyingFuture)


class SimActor(pykka.Actor):
    """Runtime base of every actor in a simulated world (first in the MRO)."""

    _sim: ClassVar[SimRuntime]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Pykka mints the URN from uuid4; the world mints it from its seed.
        self.actor_urn = self._sim._mint_urn()
        self.actor_ref.actor_urn = self.actor_urn

    def _create_actor_inbox(self) -> Any:  # type: ignore[override]
        return _SimInbox(self._sim, self)

    @classmethod
    def _create_future(cls) -> pykka.Future[Any]:
        return cls._sim.new_future()

    def _start_actor_loop(self) -> None:
        self._sim._add_actor(self)


def _handle_envelope(actor: pykka.Actor, envelope: Envelope[Any]) -> None:
    """One iteration of Pykka 4.5's ``Actor._actor_loop_running``."""
    try:
        response = actor._handle_receive(envelope.message)
        if envelope.reply_to is not None:
            envelope.reply_to.set(response)
    except Exception:
        if envelope.reply_to is not None:
            envelope.reply_to.set_exception()
        else:
            actor._handle_failure(*sys.exc_info())
            try:
                actor.on_failure(*sys.exc_info())
            except Exception:
                actor._handle_failure(*sys.exc_info())


class _Task:
    name: str
    order: int

    def runnable(self, now: float) -> bool:
        raise NotImplementedError

    def wake_time(self) -> float | None:
        return None


class _ActorTask(_Task):
    __slots__ = ("actor", "name", "order", "phase", "stalled_until")

    def __init__(self, actor: pykka.Actor, name: str, order: int) -> None:
        self.actor = actor
        self.name = name
        self.order = order
        self.phase: Literal["new", "running", "done"] = "new"
        self.stalled_until = 0.0

    def runnable(self, now: float) -> bool:
        if self.phase == "new":
            return True
        return (
            self.phase == "running"
            and not self.actor.actor_inbox.empty()
            and now >= self.stalled_until
        )

    def wake_time(self) -> float | None:
        if self.phase == "running" and not self.actor.actor_inbox.empty():
            return self.stalled_until
        return None


class _ClientTask(_Task):
    __slots__ = ("done", "gen", "name", "order", "started", "waiting", "wake_at")

    def __init__(self, gen: Client, name: str, order: int) -> None:
        self.gen = gen
        self.name = name
        self.order = order
        self.started = False
        self.done = False
        self.waiting: SimFuture | None = None
        self.wake_at: float | None = None

    def runnable(self, now: float) -> bool:
        if self.done:
            return False
        if not self.started:
            return True
        if self.waiting is not None:
            return self.waiting.done
        return self.wake_at is not None and now >= self.wake_at

    def wake_time(self) -> float | None:
        if not self.done and self.waiting is None and self.wake_at is not None:
            return self.wake_at
        return None


class _ThreadTask(_Task):
    __slots__ = ("body", "group", "name", "order", "phase", "start_at")

    def __init__(
        self, body: Callable[[], None], name: str, order: int, group: str, start_at: float
    ) -> None:
        self.body = body
        self.name = name
        self.order = order
        self.group = group
        self.start_at = start_at
        self.phase: Literal["new", "running", "done"] = "new"

    def runnable(self, now: float) -> bool:
        return self.phase == "new" and now >= self.start_at

    def wake_time(self) -> float | None:
        return self.start_at if self.phase == "new" else None


class _Timer:
    __slots__ = ("cancelled", "message", "ref")

    def __init__(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        self.ref = ref
        self.message = message
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self, sim: SimRuntime) -> None:
        sim.trace.event("timer", sim.steps, sim.now, self.ref.actor_urn, _kind(self.message))
        with contextlib.suppress(pykka.ActorDeadError):
            self.ref.tell(self.message)


class _Release:
    """Delivers the messages a blocked step sent, when its simulated call returns."""

    __slots__ = ("cancelled", "held")

    def __init__(self, held: list[tuple[_SimInbox, Envelope[Any]]]) -> None:
        self.held = held
        self.cancelled = False

    def fire(self, sim: SimRuntime) -> None:
        for inbox, envelope in self.held:
            if inbox.owner.actor_stopped.is_set():
                # In the threaded world this send happens after the blocking call,
                # to an actor that is gone: the request fails, as one queued just
                # before a crash does. (Appending it would leave it unanswered.)
                _fail_envelope(envelope)
            else:
                inbox._queue.append(envelope)


def _fail_envelope(envelope: Envelope[Any]) -> None:
    message = envelope.message
    error = Unavailable("the actor stopped before the message arrived")
    if isinstance(message, TellBack):
        with contextlib.suppress(pykka.ActorDeadError):
            message.reply_to.tell(Answer(message, error=error))
    elif isinstance(message, Request):
        settle_error(message.reply, error)
    if envelope.reply_to is not None:
        settle_error(envelope.reply_to, pykka.ActorDeadError("the actor stopped"))


class _CounterGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def acquire(self, timeout: float) -> bool:
        # Single-threaded: waiting cannot free a slot, so a full gate refuses at once.
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1


class SimRuntime:
    """A seeded, single-threaded world that runs production actor classes.

    ``faults`` is a :class:`FaultPlan`, or ``"seed"`` to derive one from the
    seed. ``strategy`` is ``"random"``, ``"pct"``/``"pct:DEPTH"``, or a
    strategy object (for replay, :class:`~actors.sim.strategies.ReplayStrategy`).
    """

    name = "simulated"
    #: Actors answer only while a caller's wait drives the world.
    runs_unattended = False

    def __init__(
        self,
        seed: int,
        *,
        strategy: str | Strategy = "random",
        faults: FaultPlan | Literal["seed"] = "seed",
        epoch: float = DEFAULT_EPOCH,
        step_cost: float = 1e-5,
        max_steps: int = 1_000_000,
        scenario: str = "",
    ) -> None:
        self.seed = seed
        self._rngs: dict[str, random.Random] = {}
        self.faults = FaultPlan.from_seed(self.rng("faults.plan")) if faults == "seed" else faults
        self.strategy = make_strategy(strategy, self.rng("scheduler"))
        self.now = 0.0
        self.epoch = epoch
        self.skew = self.faults.clock_skew
        self.step_cost = step_cost
        self.max_steps = max_steps
        self.steps = 0
        self._tasks: list[_Task] = []
        self._order = itertools.count()
        self._actor_tasks: dict[int, _ActorTask] = {}
        self._timers: list[tuple[float, int, _Timer | _Release]] = []
        self._blocked_for = 0.0
        self._held: list[tuple[_SimInbox, Envelope[Any]]] = []
        self._killed: set[int] = set()
        #: Actors (by id) and thread groups killed with their process.
        self._killed_actors: set[int] = set()
        self._killed_groups: set[str] = set()
        self._timer_seq = itertools.count()
        self._current: _Task | None = None
        self._classes: dict[type[pykka.Actor], type[pykka.Actor]] = {}
        #: Each reply future that entered a mailbox, and the actor it was sent to.
        self._sent_futures: list[tuple[SimFuture | SimNotifyingFuture, int]] = []
        self._ids = IdMinter()
        self._urns = itertools.count(1)
        self.trace = Trace(
            {
                "seed": seed,
                "scenario": scenario,
                "strategy": self.strategy.describe(),
                "faults": self.faults.to_dict(),
                "epoch": epoch,
                "step_cost": step_cost,
                "versions": _versions(),
            }
        )
        self.actor_base: type[SimActor] = type("SimActor", (SimActor,), {"_sim": self})
        self.future_class: type[SimFuture] = type("SimFuture", (SimFuture,), {"_sim": self})
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<SimRuntime seed={self.seed} step={self.steps} t={self.now:.6f} "
            f"tasks={len(self._tasks)} timers={len(self._timers)}>"
        )

    # -- the Runtime interface ---------------------------------------------------

    def spawn(self, actor_class: Callable[..., A], *args: Any, **kwargs: Any) -> pykka.ActorRef[A]:
        cls = cast("type[pykka.Actor]", actor_class)
        combined = self._classes.get(cls)
        if combined is None:
            combined = type(cls.__name__, (self.actor_base, cls), {})
            combined.__module__ = cls.__module__
            combined.__qualname__ = cls.__qualname__
            self._classes[cls] = combined
        ref: pykka.ActorRef[A] = combined.start(*args, **kwargs)  # type: ignore[assignment]
        return ref

    def new_future(self) -> pykka.Future[Any]:
        return self.future_class()

    def new_notifying_future(self, on_settled: Callable[[], None]) -> NotifyingFuture:
        """A reply future that calls ``on_settled()`` on the answering actor's step, as the
        threaded runtime's does on the actor's thread: the owner's reply path runs here
        as it does in production. Waiting on it (``get()``) drives the world, as for any
        future of this world; an event loop cannot (``runs_unattended`` is False)."""
        return SimNotifyingFuture(self, on_settled)

    def monotonic(self) -> float:
        return self.now

    def wall_time(self) -> float:
        return self.epoch + self.now + self.skew

    def call_later(self, delay: float, ref: pykka.ActorRef[Any], message: Any) -> _Timer:
        timer = _Timer(ref, message)
        heapq.heappush(self._timers, (self.now + max(0.0, delay), next(self._timer_seq), timer))
        return timer

    def rng(self, stream: str) -> random.Random:
        rng = self._rngs.get(stream)
        if rng is None:
            rng = self._rngs[stream] = random.Random(f"{self.seed}:{stream}")
        return rng

    def new_id(self) -> str:
        return self._ids.mint(int(self.wall_time() * 1000), self.rng("ids"))

    def gate(self, limit: int) -> _CounterGate:
        return _CounterGate(limit)

    def at_process_exit(self, callback: Callable[[], None]) -> None:
        """A world has no process of its own: whoever runs it closes what it opened."""

    def close(self) -> None:
        self._closed = True
        self._timers.clear()

    # -- clients and running -------------------------------------------------------

    def client(self, name: str, gen: Client) -> None:
        """Add a concurrent client: a generator that yields futures or :class:`Sleep`."""
        self._tasks.append(_ClientTask(gen, name, next(self._order)))

    def run(self, *, until: float | None = None) -> None:
        """Run until no task can run and no timer is due before ``until`` (virtual seconds)."""
        while True:
            if not self._step_once(until):
                return
            if until is not None and self.now >= until:
                return

    def run_clients(self, clients: Iterable[tuple[str, Client]], *, horizon: float = 600.0) -> None:
        """Run clients to completion (and everything they cause), within ``horizon`` seconds."""
        tasks = []
        for name, gen in clients:
            task = _ClientTask(gen, name, next(self._order))
            self._tasks.append(task)
            tasks.append(task)
        deadline = self.now + horizon
        while not all(task.done for task in tasks):
            if not self._step_once(deadline) or self.now >= deadline:
                pending = [task.name for task in tasks if not task.done]
                raise Deadlock(
                    f"clients {pending} never finished (t={self.now:.3f}s, step {self.steps})"
                )

    def unanswered(self) -> list[str]:
        """Reply futures that entered a mailbox and were never answered (kills excepted:
        a future sent to an actor that was later killed died with its process)."""
        return [
            f"future #{n}"
            for n, (fut, recipient) in enumerate(self._sent_futures)
            if not fut.done and id(fut) not in self._killed and recipient not in self._killed_actors
        ]

    def thread(
        self, name: str, body: Callable[[], None], *, group: str = "", delay: float = 0.0
    ) -> None:
        """Run ``body`` once as a simulated OS thread of process ``group``, ``delay`` s from now.

        Its blocking waits (a future's ``get()``, :meth:`wait_until`,
        :meth:`sleep`) drive the world, threads included: waits nest, the
        innermost resumes first. An exception escaping ``body`` fails the run
        (a thread's crash is a bug to see, not to log). Nothing starts in a
        killed group.
        """
        if group in self._killed_groups:
            return
        self._tasks.append(_ThreadTask(body, name, next(self._order), group, self.now + delay))

    def kill_group(self, group: str) -> None:
        """Process death for threads: those not started never start; a running one
        unwinds with :class:`ThreadKilled` when its blocking wait next looks."""
        self._killed_groups.add(group)
        self._tasks = [
            task
            for task in self._tasks
            if not (isinstance(task, _ThreadTask) and task.group == group and task.phase == "new")
        ]
        self.trace.event("kill", self.steps, self.now, f"threads:{group}", "")

    def wait_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Drive the world until ``done()`` or ``timeout`` virtual seconds passed; which.

        From outside the world or from a thread (:meth:`thread`), never from
        an actor or a client. :class:`Deadlock` when nothing left can happen.
        """
        deadline = None if timeout is None else self.now + timeout
        return self._drive(done, deadline, idle_ok=False)

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (outside the world, or in a thread)."""
        self._drive(lambda: False, self.now + max(0.0, seconds), idle_ok=True)

    def block_for(self, seconds: float) -> None:
        """Called during a step: the running task is in a blocking call for ``seconds``.

        Models latency of a real blocking call inside a handler (an HTTP
        request): the task stays busy, and every message it sends in this step
        is delivered only when the call returns. (Futures it settles are not
        delayed.) Outside a step it does nothing.
        """
        if self._current is not None and seconds > 0:
            self._blocked_for = max(self._blocked_for, seconds)

    def kill(self, refs: Iterable[pykka.ActorRef[Any]]) -> None:
        """Process death: the actors vanish without on_stop or on_failure, mail unanswered.

        Futures waiting in their mailboxes are no longer counted as unanswered:
        their callers died with the process.
        """
        for ref in refs:
            for task in self._tasks:
                if isinstance(task, _ActorTask) and task.actor.actor_ref is ref:
                    actor = task.actor
                    inbox = cast(_SimInbox, actor.actor_inbox)
                    while not inbox.empty():
                        envelope = inbox.get()
                        self._killed.update(_reply_ids(envelope))
                    actor.actor_stopped.set()
                    self._killed_actors.add(id(actor))
                    pykka.ActorRegistry.unregister(ref)
                    task.phase = "done"
                    self.trace.event("kill", self.steps, self.now, task.name, "")

    def record_fault(self, kind: str, detail: str = "") -> None:
        self.trace.event("fault", self.steps, self.now, kind, detail)

    # -- internals -------------------------------------------------------------------

    def _mint_urn(self) -> str:
        return f"urn:sim:{self.seed}:{next(self._urns)}"

    def _add_actor(self, actor: pykka.Actor) -> None:
        order = next(self._order)
        label = getattr(actor, "name", None) or type(actor).__name__
        task = _ActorTask(actor, f"{label}#{order}", order)
        self._tasks.append(task)
        self._actor_tasks[id(actor)] = task

    def _on_enqueue(self, envelope: Envelope[Any], recipient: pykka.Actor) -> None:
        if isinstance(envelope.reply_to, _OF_THIS_WORLD):
            self._sent_futures.append((envelope.reply_to, id(recipient)))
        message = envelope.message
        if isinstance(message, Request) and isinstance(message.reply, _OF_THIS_WORLD):
            self._sent_futures.append((message.reply, id(recipient)))

    def _wait_for(self, future: SimFuture | SimNotifyingFuture, timeout: float | None) -> None:
        if not self.wait_until(lambda: future.done, timeout):
            raise pykka.Timeout(f"{timeout} seconds (virtual)")

    def _drive(self, done: Callable[[], bool], deadline: float | None, *, idle_ok: bool) -> bool:
        """Step the world until ``done()`` or ``deadline``; nested when called by a thread."""
        waiter = self._current
        if waiter is not None and not isinstance(waiter, _ThreadTask):
            raise BlockingCallInHandler(
                f"{waiter.name} called get() on a pending future at step {self.steps}; "
                "a handler must never block on another actor (send a message instead)"
            )
        self._current = None
        try:
            while True:
                if isinstance(waiter, _ThreadTask) and waiter.group in self._killed_groups:
                    raise ThreadKilled(waiter.group)
                if done():
                    return True
                if deadline is not None and self.now >= deadline:
                    return False
                if not self._step_once(deadline):
                    if idle_ok and deadline is not None:
                        self.now = deadline
                        continue
                    raise Deadlock(
                        f"waiting on a future that nothing left can answer (t={self.now:.3f}s, "
                        f"step {self.steps}); seed {self.seed}"
                    )
        finally:
            self._current = waiter

    def _fire_due_timers(self) -> None:
        while self._timers and self._timers[0][0] <= self.now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.fire(self)

    def _step_once(self, deadline: float | None) -> bool:
        """Run one task, or advance the clock. False when nothing can ever happen again."""
        if self.steps >= self.max_steps:
            raise StepLimitExceeded(f"{self.steps} steps (seed {self.seed})")
        self._fire_due_timers()
        runnable = [task for task in self._tasks if task.runnable(self.now)]
        if not runnable:
            wakes = [w for w in (t.wake_time() for t in self._tasks) if w is not None]
            if self._timers:
                wakes.append(self._timers[0][0])
            if not wakes:
                return False
            target = min(wakes)
            if deadline is not None and target > deadline:
                self.now = max(self.now, deadline)
                return True
            self.now = max(self.now, target)
            return True
        choice = 0
        if len(runnable) > 1:
            choice = self.strategy.choose(self.steps, [task.name for task in runnable])
            self.trace.decide(choice)
        task = runnable[choice]
        self.steps += 1
        self._current = task
        try:
            if isinstance(task, _ActorTask):
                self._step_actor(task)
            elif isinstance(task, _ThreadTask):
                self._step_thread(task)
            else:
                self._step_client(cast(_ClientTask, task))
        finally:
            self._current = None
            if self._blocked_for > 0:
                self._end_block(task)
        self.now += self.step_cost
        plan = self.faults
        if plan.clock_jump and self.rng("faults.clock").random() < plan.clock_jump:
            jump = self.rng("faults.clock").uniform(-plan.jump_max, plan.jump_max)
            self.skew += jump
            self.record_fault("clock_jump", f"{jump:+.3f}s")
        return True

    def _end_block(self, task: _Task) -> None:
        seconds, held = self._blocked_for, self._held
        self._blocked_for, self._held = 0.0, []
        if isinstance(task, _ActorTask):
            task.stalled_until = self.now + seconds
        release = _Release(held)
        heapq.heappush(self._timers, (self.now + seconds, next(self._timer_seq), release))
        self.trace.event("blocked", self.steps, self.now, task.name, f"{seconds:.6f}")

    def _step_actor(self, task: _ActorTask) -> None:
        actor = task.actor
        if task.phase == "new":
            task.phase = "running"
            self.trace.event("start", self.steps, self.now, task.name, "")
            actor._actor_loop_setup()
        else:
            plan = self.faults
            rng = self.rng("faults.actors")
            if plan.stall and rng.random() < plan.stall:
                task.stalled_until = self.now + rng.uniform(0, plan.stall_max)
                self.record_fault("stall", task.name)
                return
            envelope = actor.actor_inbox.get()
            self.trace.event("recv", self.steps, self.now, task.name, _kind(envelope.message))
            label = getattr(actor, "name", "")
            if plan.crash and label in plan.crash_actors and rng.random() < plan.crash:
                self.record_fault("crash", task.name)
                cast(_SimInbox, actor.actor_inbox).push_front(envelope)
                crash = RuntimeError(f"injected crash of {task.name} (seed {self.seed})")
                actor._handle_failure(RuntimeError, crash, None)
                actor.on_failure(RuntimeError, crash, None)
            else:
                _handle_envelope(actor, envelope)
        if actor.actor_stopped.is_set():
            actor._actor_loop_teardown()
            task.phase = "done"
            self.trace.event("stop", self.steps, self.now, task.name, "")

    def _step_thread(self, task: _ThreadTask) -> None:
        task.phase = "running"
        self.trace.event("thread", self.steps, self.now, task.name, "")
        try:
            task.body()
        except ThreadKilled:
            self.trace.event("unwound", self.steps, self.now, task.name, "")
        finally:
            task.phase = "done"
            # Threads are many and short (one per frame the link delivers): keep the
            # task list, which every step scans, to the live ones.
            self._tasks.remove(task)

    def _step_client(self, task: _ClientTask) -> None:
        outcome: Outcome | None = None
        if task.waiting is not None:
            fut = task.waiting
            try:
                outcome = Outcome(value=fut.get(timeout=0))
            except BaseException as exc:
                outcome = Outcome(error=exc)
            task.waiting = None
        task.wake_at = None
        self.trace.event("client", self.steps, self.now, task.name, "")
        try:
            yielded = task.gen.send(outcome) if task.started else next(task.gen)
        except StopIteration:
            task.done = True
            return
        finally:
            task.started = True
        if isinstance(yielded, SimFuture):
            task.waiting = yielded
        elif isinstance(yielded, Sleep):
            task.wake_at = self.now + yielded.seconds
        else:
            raise TypeError(f"client {task.name} yielded {yielded!r}; yield a future or Sleep")


def _reply_ids(envelope: Envelope[Any]) -> set[int]:
    ids = set()
    if envelope.reply_to is not None:
        ids.add(id(envelope.reply_to))
    if isinstance(envelope.message, Request):
        ids.add(id(envelope.message.reply))
    return ids


def _kind(message: Any) -> str:
    return type(message).__name__


@functools.cache
def _versions() -> dict[str, str]:
    import sqlite3
    from importlib.metadata import version

    return {
        "python": sys.version.split()[0],
        "pykka": version("pykka"),
        "sqlite": sqlite3.sqlite_version,
        "memory-actors": version("memory-actors"),
    }
