"""The asyncio facade: :class:`AsyncMemorySystem`, the verbs of MemorySystem awaited.

Every major agent runtime is asyncio, and awaiting a Pykka future blocks the
event loop (its ``__await__`` calls the blocking ``get()``). Here no await
blocks the loop and none parks a thread: each request carries a
:class:`~actors.runtime.NotifyingFuture`, which the answering actor settles
on its own thread and which then hands the answer to the caller's loop,
which settles an :class:`asyncio.Future` the caller awaits. The answers of
one group commit reach a loop together, in one ``loop.call_soon_threadsafe``
(one wake-up per burst, not per reply). Thousands of requests in flight cost
thousands of small futures, not threads, and no reference cycles: each
request's objects are freed as soon as it is answered, never left to the
cyclic garbage collector.

Both facades share one submit path: each verb is validated and its request
built once (:class:`actors.system.MemorySystem`'s ``_prepare_*`` steps and
recall's plan); only the wait differs. Hence the same records, the same
errors, the same admission gate and the same timeouts:

- **admission**: the gate ``Config.max_in_flight`` bounds blocking and async
  callers together. An async caller takes a slot without blocking; when none
  is free it polls (1 ms, doubling up to 50 ms, on the loop) for up to
  ``Config.admission_wait``, then raises :class:`~actors.errors.Overloaded`;
- **timeouts**: ``AskTimeout`` after ``timeout`` (default
  ``Config.ask_timeout``); ``Unavailable`` as soon as the actor is seen dead
  (liveness is checked every 0.25 s, as the blocking facade does); recall
  answers within its deadline with ``complete``, ``retry`` or ``local``;
- **cancellation**: cancelling the awaiting task marks the request's future
  cancelled. An actor drops a request cancelled before it dequeues it; the
  StoreActor also drops a cancelled write when it flushes its batch, before
  the transaction begins: such a write is never written. A write whose
  transaction has begun commits, and only its receipt is dropped. A timeout
  does not cancel (as with the blocking facade, a write that timed out may
  still commit).

Opening and closing block on migrations and on stopping threads; they are
rare, and run in a worker thread (``asyncio.to_thread``). The facade needs a
threaded runtime: a simulated world answers futures only while a caller's
``get()`` drives it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Generic, ParamSpec, TypeVar

import attrs
import pykka

from actors._ask import _LIVENESS_POLL, lost, overdue, send
from actors.backup import BackupReport
from actors.errors import AskTimeout, MemoryActorsError, Overloaded, Unavailable
from actors.messages import Request
from actors.model import (
    CountResult,
    ForgetResult,
    Memory,
    MemoryPage,
    MigrationReport,
    RecallResult,
    StoreReceipt,
)
from actors.owner_link import OwnerProxy
from actors.owner_protocol import bound_arguments
from actors.portable import ExportReport, ImportReport
from actors.runtime import NotifyingFuture, after_notifications
from actors.session_log import SessionItems
from actors.sharing import NowOwner
from actors.sync_model import DeadLetters, SyncReport
from actors.system import Config, MemorySystem, _Call, _restarting, _timeout_of

__all__ = ["AsyncMemorySystem"]

logger = logging.getLogger(__name__)

R = TypeVar("R")
P = ParamSpec("P")

#: First and longest pause of an async caller waiting for an admission slot.
_ADMISSION_POLL = (0.001, 0.05)

#: Systems whose opening was cancelled: closed once they are open (strong refs).
_abandoned: set[asyncio.Task[None]] = set()


class _Wakeups:
    """The answers bound for one event loop, handed over in one wake-up per burst.

    A group commit settles a whole batch of reply futures on the StoreActor's
    thread in a row. One ``call_soon_threadsafe`` per reply would write the
    loop's self-pipe once per reply and queue one handle each; here the first
    answer of a burst schedules a single :meth:`_drain`, and every answer
    posted before that drain empties the queue joins it.

    No lock: ``deque.append``/``popleft`` are atomic, and the drain clears
    ``_scheduled`` *before* it empties the queue, so an answer appended after
    the drain's last ``popleft`` finds the flag clear and schedules the next
    drain. Two threads posting at once may schedule one drain too many (it
    finds the queue empty); no answer is ever left behind.
    """

    __slots__ = ("__weakref__", "_loop", "_ready", "_scheduled", "drains")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: a loop's entry in ``_wakeups`` must not keep that loop alive.
        self._loop = weakref.ref(loop)
        self._ready: collections.deque[_Pending[Any]] = collections.deque()
        self._scheduled = False
        #: Drains run, for the tests: answers per wake-up.
        self.drains = 0

    def __repr__(self) -> str:
        return f"<_Wakeups ready={len(self._ready)} drains={self.drains}>"

    def post(self, pending: _Pending[Any]) -> None:
        """Hand ``pending``'s answer to the loop (any thread; never raises)."""
        self._ready.append(pending)
        if self._scheduled:
            return  # the drain on its way takes this one too
        self._scheduled = True
        # Inside a group commit's answers, the wake-up waits for the whole batch.
        after_notifications(self._kick)

    def _kick(self) -> None:
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("event loop is gone")
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody awaits these any more
            dropped = len(self._ready)
            self._ready.clear()
            self._scheduled = False
            logger.debug("%d answer(s) dropped: their event loop is closed", dropped)

    def _drain(self) -> None:
        # On the loop. The flag first: see the class docstring.
        self._scheduled = False
        self.drains += 1
        ready = self._ready
        while ready:
            ready.popleft()._transfer()


#: One hand-over point per running loop (a facade may serve several loops).
_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
    weakref.WeakKeyDictionary()
)


def _wakeups_for(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    # Only the loop's own thread asks for its entry, so two never race to create one.
    found = _wakeups.get(loop)
    if found is None:
        found = _wakeups[loop] = _Wakeups(loop)
    return found


@attrs.frozen
class _Guard:
    """What :meth:`_Pending.guard` watches: the actor, the deadline, how to say it failed."""

    ref: pykka.ActorRef[Any]
    deadline: float
    timeout: float
    what: str
    clock: Callable[[], float]


class _Pending(Generic[R]):
    """One request in flight from the loop: the actor's future and the loop's twin.

    The actor settles ``reply`` on its thread; ``on_settled`` then posts this
    request to its loop's :class:`_Wakeups`, whose drain runs :meth:`_transfer`
    on the loop, which settles ``waiter`` unless the caller gave up
    (``waiter`` already cancelled). Exactly once: ``reply`` takes one answer,
    and ``waiter`` is settled only while pending.
    """

    __slots__ = ("_guard", "_timer", "_wakeups", "loop", "reply", "waiter")

    def __init__(self, system: MemorySystem, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[R] = loop.create_future()
        self._wakeups = _wakeups_for(loop)
        self.reply: NotifyingFuture = system.runtime.new_notifying_future(self._on_settled)
        self._guard: _Guard | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<_Pending {self.reply!r}>"

    def _on_settled(self) -> None:
        # On the actor's thread: hand over only; never raise into the actor.
        self._wakeups.post(self)

    def _transfer(self) -> None:
        if self.waiter.done():
            return
        try:
            value = self.reply.get(timeout=0)
        except BaseException as exc:
            self.waiter.set_exception(exc)
        else:
            self.waiter.set_result(value)

    async def settled_within(self, timeout: float) -> bool:
        """Wait on the loop up to ``timeout`` seconds; True when answered."""
        if not self.waiter.done():
            await asyncio.wait((self.waiter,), timeout=timeout)
        if not self.waiter.done() and self.reply.done:
            self._transfer()  # answered, and the loop has not run the transfer yet
        return self.waiter.done()

    def guard(
        self, ref: pykka.ActorRef[Any], timeout: float, what: str, clock: Callable[[], float]
    ) -> None:
        """Settle ``waiter`` with ``Unavailable`` if ``ref`` dies unanswering, or with
        ``AskTimeout`` after ``timeout`` seconds: a timer on the loop looks every 0.25 s.

        One timer per request, armed here and cancelled by :meth:`abandon`: an
        answer in time (nearly every one) costs no wake-up of the waiting task.
        """
        self._guard = _Guard(ref, clock() + timeout, timeout, what, clock)
        self._timer = self.loop.call_later(min(_LIVENESS_POLL, max(0.0, timeout)), self._check)

    def _check(self) -> None:
        # Fired: drop the handle first, so no cycle through it outlives this request.
        self._timer = None
        guard = self._guard
        if guard is None or self.waiter.done():
            return
        if self.reply.done:
            self._transfer()  # answered just now; its hand-over has not run yet
        elif not guard.ref.is_alive():
            self.waiter.set_exception(lost(guard.what))
        elif (left := guard.deadline - guard.clock()) <= 0:
            self.waiter.set_exception(overdue(guard.what, guard.timeout))
        else:
            self._timer = self.loop.call_later(min(_LIVENESS_POLL, left), self._check)

    def value(self, what: str) -> R:
        """The answer, or the actor's error re-raised (a dead actor as ``Unavailable``)."""
        try:
            return self.waiter.result()
        except pykka.ActorDeadError as exc:
            raise Unavailable(f"{what} stopped: {exc}") from None

    def abandon(self, *, cancel: bool) -> None:
        """Stop waiting; with ``cancel``, also mark the request cancelled for the actor."""
        if self._timer is not None:
            self._timer.cancel()  # also drops its reference back to this request
            self._timer = None
        if cancel and self.reply.cancel():
            logger.debug("%r cancelled by its caller", self)
        self.waiter.cancel()  # an answer arriving later is dropped, never "unretrieved"


def _shared(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An async verb that a follower sends to the file's owner (as the blocking facade's)."""
    verb = method.__name__

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        memory = args[0]
        assert isinstance(memory, AsyncMemorySystem)
        if memory.system._following():
            arguments = bound_arguments(method, args, kwargs)
            arguments.pop("self")
            try:
                answer: R = await memory._follower_call(verb, arguments)
                return answer
            except NowOwner:
                pass  # this process owns the file now: its own actors answer
        return await method(*args, **kwargs)

    return call


class AsyncMemorySystem:
    """Persistent memory for asyncio agents: the verbs of :class:`MemorySystem`, awaited.

    ``async with AsyncMemorySystem.open(path, config=...) as memory:`` opens
    (migrates, starts the actors) and closes; ``AsyncMemorySystem(system)``
    wraps a MemorySystem already open, and closes it only with
    ``close=True``. Every method is a coroutine that never blocks the event
    loop and returns the same records and raises the same errors as the
    blocking facade.

    Cancellation: cancelling the task that awaits a request marks the
    request cancelled. A request still queued when an actor dequeues it is
    dropped. A write (``store``, ``forget``) is dropped by the StoreActor
    also when its group commit flushes, if the mark is there before the
    transaction begins: it is then never written. A write already in a
    transaction is committed; its receipt is dropped. Timeouts do not cancel.

    Needs a threaded runtime (the default). One instance may be used from
    several tasks of one loop at once; their writes share group commits.
    """

    def __init__(self, system: MemorySystem, *, close: bool = False) -> None:
        if not system.runtime.runs_unattended:
            raise NotImplementedError(
                f"the {system.runtime.name} runtime answers only while a caller's get() "
                "drives it, which an event loop's await cannot do: use MemorySystem "
                "(and submit) in a simulation, AsyncMemorySystem on ThreadedRuntime"
            )
        self.system = system
        self._owns = close

    def __repr__(self) -> str:
        return f"<AsyncMemorySystem {self.system!r}{' owned' if self._owns else ''}>"

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        config: Config | None = None,
    ) -> AsyncIterator[AsyncMemorySystem]:
        """Open (as :meth:`MemorySystem.open`, in a worker thread), yield, then close.

        Raises what :meth:`MemorySystem.open` raises. If the opening task is
        cancelled, the system is closed as soon as it has opened.
        """
        opening = asyncio.ensure_future(asyncio.to_thread(MemorySystem.open, path, config=config))
        try:
            system = await asyncio.shield(opening)
        except asyncio.CancelledError:
            closer = asyncio.ensure_future(_close_when_open(opening))
            _abandoned.add(closer)
            closer.add_done_callback(_abandoned.discard)
            raise
        memory = cls(system, close=True)
        try:
            yield memory
        finally:
            await memory.aclose()

    async def aclose(self) -> None:
        """Close the wrapped system if this facade owns it (in a worker thread). Idempotent."""
        if self._owns and not self.system.closed:
            # Shielded: a cancelled caller must not leave actors running.
            await asyncio.shield(asyncio.to_thread(self.system.close))

    async def __aenter__(self) -> AsyncMemorySystem:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def path(self) -> str:
        """The database file."""
        return self.system.path

    @property
    def config(self) -> Config:
        """The wrapped system's configuration."""
        return self.system.config

    @property
    def migration(self) -> MigrationReport:
        """What opening the file migrated."""
        return self.system.migration

    @property
    def closed(self) -> bool:
        """The wrapped system is closed."""
        return self.system.closed

    # -- the memory API ------------------------------------------------------------

    @_shared
    async def store(
        self,
        content: str | None,
        *,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        key: str | None = None,
        search_fields: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> StoreReceipt:
        """As :meth:`MemorySystem.store`: answered only after commit; ``key`` upserts."""
        return await self._run(
            self.system._prepare_store(
                content, tags, metadata, namespace, timeout, key, search_fields
            )
        )

    @_shared
    async def recall(
        self,
        query: str,
        *,
        limit: int | None = None,
        tags: Iterable[str] | None = None,
        namespace: str | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> RecallResult:
        """As :meth:`MemorySystem.recall`: answered within its deadline, always."""
        system = self.system
        plan = system._plan_recall(query, limit, tags, namespace, timeout, namespace_prefix)
        deadline = system.runtime.monotonic() + plan.budget
        remote: _Pending[Any] | None = None
        remote_error = ""
        if plan.has_remote:
            # Sent first, outside the gate (as submit), so the hub works meanwhile.
            try:
                remote = self._send("recall", plan.remote)[0]
            except Unavailable as exc:
                remote_error = str(exc)
        cancelled = False
        try:
            try:
                local = await self._run(plan.local_call())
            except (AskTimeout, Unavailable) as exc:
                if remote is not None:
                    await remote.settled_within(self._left(deadline))
                return plan.store_late(exc)
            early = plan.without_hub(local, remote_error, sent=remote is not None)
            if early is not None or remote is None:
                assert early is not None
                return early
            if not await remote.settled_within(self._left(deadline)):
                return plan.hub_late(local)
            try:
                found = remote.value("the recall actor")
            except MemoryActorsError as exc:
                return plan.hub_failed(local, exc)
            return plan.complete(local, found)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if remote is not None:
                # Not cancelled: the hub request runs on and fills the cache for a retry.
                remote.abandon(cancel=cancelled)

    @_shared
    async def get(
        self,
        memory_id: str | None = None,
        *,
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Memory:
        """As :meth:`MemorySystem.get`: by id, or by key in a namespace."""
        return await self._run(self.system._prepare_get(memory_id, timeout, namespace, key))

    @_shared
    async def forget(
        self,
        memory_id: str | None = None,
        *,
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> ForgetResult:
        """As :meth:`MemorySystem.forget`: by id, or by key in a namespace."""
        return await self._run(self.system._prepare_forget(memory_id, timeout, namespace, key))

    @_shared
    async def set_tags(
        self,
        memory_id: str | None = None,
        *,
        tags: Iterable[str],
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Memory:
        """As :meth:`MemorySystem.set_tags`: replace the tags, by id or by key."""
        return await self._run(
            self.system._prepare_set_tags(memory_id, tags, timeout, namespace, key)
        )

    @_shared
    async def list(
        self,
        *,
        namespace: str | None = None,
        tags: Iterable[str] | None = None,
        limit: int | None = None,
        before: str | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> MemoryPage:
        """As :meth:`MemorySystem.list`."""
        return await self._run(
            self.system._prepare_list(namespace, tags, limit, before, timeout, namespace_prefix)
        )

    @_shared
    async def count(
        self,
        *,
        namespace: str | None = None,
        tags: Iterable[str] | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> CountResult:
        """As :meth:`MemorySystem.count`."""
        result = await self._run(
            self.system._prepare_count(namespace, tags, timeout, namespace_prefix)
        )
        return self.system._with_sync(
            result, await self.sync_report(), await self.semantic_report()
        )

    @_shared
    async def sync_report(self) -> SyncReport | None:
        """As :meth:`MemorySystem.sync_report`."""
        call = self.system._prepare_sync_status()
        if call is None:
            return None
        try:
            return await self._run(call)
        except (Unavailable, AskTimeout) as exc:
            return self.system._sync_unknown(exc)

    @_shared
    async def dead_letters(
        self, *, limit: int | None = None, timeout: float | None = None
    ) -> DeadLetters:
        """As :meth:`MemorySystem.dead_letters`."""
        return await self._run(self.system._prepare_dead_letters(limit, timeout))

    @_shared
    async def retry_dead_letters(self, *, timeout: float | None = None) -> int:
        """As :meth:`MemorySystem.retry_dead_letters`."""
        return await self._run(self.system._prepare_retry_dead(timeout))

    @_shared
    async def session_add(
        self, session_id: str, items: Sequence[Any], *, timeout: float | None = None
    ) -> int:
        """As :meth:`MemorySystem.session_add`: answered after commit."""
        return await self._run(self.system._prepare_session_add(session_id, items, timeout))

    @_shared
    async def session_items(
        self, session_id: str, *, limit: int | None = None, timeout: float | None = None
    ) -> SessionItems:
        """As :meth:`MemorySystem.session_items`."""
        return await self._run(self.system._prepare_session_items(session_id, limit, timeout))

    @_shared
    async def session_pop(self, session_id: str, *, timeout: float | None = None) -> Any:
        """As :meth:`MemorySystem.session_pop`. Cancelled after its transaction began,
        the item is removed and the answer dropped (as for any write)."""
        return await self._run(self.system._prepare_session_pop(session_id, timeout))

    @_shared
    async def session_clear(self, session_id: str, *, timeout: float | None = None) -> int:
        """As :meth:`MemorySystem.session_clear`."""
        return await self._run(self.system._prepare_session_clear(session_id, timeout))

    async def status(self) -> dict[str, Any]:
        """As :meth:`MemorySystem.status`."""
        system = self.system
        if system._following():
            try:
                state: dict[str, Any] = await self._follower_call("status", {})
                return state | {"sharing": system._sharing_state()}
            except NowOwner:
                pass
        if system.closed:
            return system._status(None, await self.semantic_report())
        return system._status(await self.sync_report(), await self.semantic_report())

    @_shared
    async def semantic_report(self) -> dict[str, Any]:
        """As :meth:`MemorySystem.semantic_report`."""
        call = self.system._prepare_semantic_status()
        if call is None or self.system.closed:
            return self.system.semantic_report()  # answered without asking an actor
        try:
            return (await self._run(call)).to_dict()
        except (Unavailable, AskTimeout) as exc:
            return self.system._semantic_unknown(exc)

    async def _follower_call(self, verb: str, arguments: dict[str, Any]) -> Any:
        """As the blocking facade's: validated here, answered by the file's owner."""
        system = self.system
        if verb != "status":
            system._check_before_forwarding(verb, arguments)
        await self._admit()
        try:
            future, wait = system._forward(
                verb, arguments, _timeout_of(verb, arguments, system.config)
            )
            try:
                message = await asyncio.wait_for(asyncio.wrap_future(future), wait)
            except TimeoutError:
                raise system._owner_late(verb, wait) from None
        finally:
            system._gate.release()
        return system._as_follower(verb, OwnerProxy.answer(verb, message))

    # -- export, import, backup: streams of files, run in a worker thread --------------

    async def export_memories(
        self,
        destination: str | os.PathLike[str] | IO[bytes],
        **filters: Any,
    ) -> ExportReport:
        """As :meth:`MemorySystem.export_memories` (same keyword arguments), in a worker thread.

        File I/O blocks, so the whole stream runs off the loop; the StoreActor
        serves the loop's other requests between its pages.
        """
        return await asyncio.to_thread(self.system.export_memories, destination, **filters)

    async def import_memories(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        **options: Any,
    ) -> ImportReport:
        """As :meth:`MemorySystem.import_memories` (same keyword arguments), in a worker thread.

        Not cancellable midway: a cancelled caller stops waiting, and the
        import runs to its end (each batch commits whole or not at all).
        """
        return await asyncio.to_thread(self.system.import_memories, source, **options)

    async def backup(self, path: str | os.PathLike[str], **options: Any) -> BackupReport:
        """As :meth:`MemorySystem.backup`, in a worker thread."""
        return await asyncio.to_thread(self.system.backup, path, **options)

    # -- plumbing --------------------------------------------------------------------

    def _left(self, deadline: float) -> float:
        return max(0.0, deadline - self.system.runtime.monotonic())

    def _send(
        self, child: str, make: Callable[[pykka.Future[R]], Request[R]]
    ) -> tuple[_Pending[R], pykka.ActorRef[Any]]:
        system = self.system
        system._check_open()
        ref = system._ready(child)
        pending: _Pending[R] = _Pending(system, asyncio.get_running_loop())
        send(system.runtime, ref, make, if_dead=_restarting(child), reply=pending.reply)
        return pending, ref

    async def _run(self, call: _Call[R]) -> R:
        """The async facade's half of a verb: admit, send, await, finish."""
        system = self.system
        system._check_open()
        timeout = system.config.ask_timeout if call.timeout is None else call.timeout
        await self._admit()
        try:
            pending, ref = self._send(call.child, call.make)
            value = await self._wait(pending, ref, timeout, f"the {call.child} actor")
        finally:
            system._gate.release()
        return system._finish(call, value)

    async def _admit(self) -> None:
        """Take an admission slot without blocking the loop, or raise ``Overloaded``."""
        system = self.system
        gate, config, runtime = system._gate, system.config, system.runtime
        if gate.acquire(0):
            return
        deadline = runtime.monotonic() + config.admission_wait
        pause, longest = _ADMISSION_POLL
        while (left := deadline - runtime.monotonic()) > 0:
            await asyncio.sleep(min(pause, left))
            if gate.acquire(0):
                return
            pause = min(pause * 2, longest)
        raise Overloaded(f"{config.max_in_flight} requests already in flight; retry shortly")

    async def _wait(
        self, pending: _Pending[R], ref: pykka.ActorRef[Any], timeout: float, what: str
    ) -> R:
        """:func:`actors._ask.wait_alive` on the loop: the answer, ``Unavailable`` or
        ``AskTimeout``; cancelling the caller cancels the request.

        The task sleeps on its answer alone and wakes once; the liveness polls
        and the deadline are :meth:`_Pending.guard`'s timer.
        """
        cancelled = False
        try:
            if not pending.waiter.done():
                pending.guard(ref, timeout, what, self.system.runtime.monotonic)
                with contextlib.suppress(Exception):  # an error answer is raised by value()
                    await pending.waiter
            return pending.value(what)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            pending.abandon(cancel=cancelled)


async def _close_when_open(opening: asyncio.Future[MemorySystem]) -> None:
    """A cancelled ``open``: wait for the system it was opening, then close it."""
    try:
        system = await opening
    except BaseException:
        return  # it failed to open: nothing to close
    await asyncio.to_thread(system.close)
