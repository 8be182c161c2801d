"""The asyncio facade: same verbs and errors, a free loop, group commits shared, cancellation.

The store is stalled for real: a connection whose ``BEGIN IMMEDIATE`` waits
on a ``threading.Event`` the test releases (armed only after the system is
open, so the migration is not stalled). Waits are events and futures with
timeouts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hub_fixtures import wait_until

from actors import (
    AskTimeout,
    AsyncMemorySystem,
    Config,
    InvalidMemory,
    MemoryNotFound,
    MemorySystem,
    Overloaded,
)
from actors._batch import GroupCommit
from actors.messages import StoreMemory
from actors.runtime import NO_VALUE, NotifyingFuture, ThreadedRuntime

T = TypeVar("T")

#: Every wait on the other side has this bound, so a regression fails instead of hanging.
BOUND = 10.0


class StallingConnection(sqlite3.Connection):
    """A real connection; while armed, ``BEGIN IMMEDIATE`` waits for the test's release."""

    armed: ClassVar[bool] = False
    entered: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    begins: ClassVar[int] = 0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        if sql.startswith("BEGIN IMMEDIATE"):
            StallingConnection.begins += 1
            if StallingConnection.armed:
                StallingConnection.armed = False  # one stall: the first transaction
                StallingConnection.entered.set()
                assert StallingConnection.release.wait(BOUND)
        return super().execute(sql, parameters)

    @classmethod
    def reset(cls) -> None:
        cls.armed, cls.begins = False, 0
        cls.entered, cls.release = threading.Event(), threading.Event()


def stalling_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, factory=StallingConnection)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run one test's coroutine on a fresh loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), BOUND * 3)

    return asyncio.run(bounded())


def _contents(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT content FROM memories WHERE deleted = 0 ORDER BY content")
        return [row[0] for row in rows]
    finally:
        conn.close()


@pytest.fixture
def stalling(db_path: Path) -> Iterator[Config]:
    """A Config whose store connection can be stalled once (``StallingConnection.armed``)."""
    StallingConnection.reset()
    yield Config(connect=stalling_connect, ask_timeout=BOUND)
    StallingConnection.release.set()
    StallingConnection.reset()


async def _stall_store(memory: AsyncMemorySystem, content: str) -> asyncio.Task[Any]:
    """Start a store that stalls inside BEGIN IMMEDIATE; return its task once it is stuck."""
    StallingConnection.armed = True
    task = asyncio.ensure_future(memory.store(content))
    assert await asyncio.to_thread(StallingConnection.entered.wait, BOUND)
    return task


def test_the_async_facade_has_the_verbs_and_records_of_the_blocking_one(db_path: Path) -> None:
    """store, get, recall, list, count, forget, sync_report, status: same answers."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            receipt = await memory.store("  Deploys happen on Tuesdays.\n", tags=["Ops"])
            assert (receipt.duplicate, receipt.tags) == (False, ("ops",))
            assert (await memory.store("Deploys happen on Tuesdays.")).duplicate
            assert (await memory.get(receipt.id)).content == "Deploys happen on Tuesdays."
            found = await memory.recall("deploys")
            assert (found.status, [hit.id for hit in found.hits]) == ("local", [receipt.id])
            assert [m.id for m in (await memory.list()).memories] == [receipt.id]
            assert (await memory.count()).total == 1
            assert await memory.sync_report() is None
            assert (await memory.status())["state"] == "ready"
            assert (await memory.forget(receipt.id)).forgotten
            assert (await memory.count()).total == 0
            assert await memory.retry_dead_letters() == 0
        assert memory.closed

    run(main)


def test_errors_are_the_blocking_facades(db_path: Path) -> None:
    """Bad input raises InvalidMemory before anything is sent; unknown ids MemoryNotFound."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            with pytest.raises(InvalidMemory, match="content is empty"):
                await memory.store("   ")
            with pytest.raises(InvalidMemory, match="is not a memory id"):
                await memory.get("nope")
            with pytest.raises(MemoryNotFound):
                await memory.get("0190d6a0-0000-7000-8000-000000000000")

    run(main)


def test_wrapping_an_open_system_leaves_it_open_unless_told(system: MemorySystem) -> None:
    """AsyncMemorySystem(system) does not close it; close=True does."""

    async def main() -> None:
        async with AsyncMemorySystem(system) as memory:
            await memory.store("kept open")
        assert not system.closed
        async with AsyncMemorySystem(system, close=True):
            pass
        assert system.closed

    run(main)
    assert system.closed


def test_the_loop_keeps_ticking_while_a_store_is_stalled(db_path: Path, stalling: Config) -> None:
    """A ticker task runs on while a store waits on a stuck transaction: nothing blocks."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=stalling) as memory:
            stuck = await _stall_store(memory, "stalled write")
            ticks = 0
            for _ in range(20):
                await asyncio.sleep(0.005)
                ticks += 1
            assert ticks == 20
            assert not stuck.done()
            StallingConnection.release.set()
            assert not (await stuck).duplicate

    run(main)
    assert _contents(db_path) == ["stalled write"]


def test_a_cancelled_queued_store_is_never_written(db_path: Path, stalling: Config) -> None:
    """Cancel a store queued behind a stalled transaction: it is dropped, the first commits."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=stalling) as memory:
            first = await _stall_store(memory, "first")
            second = asyncio.ensure_future(memory.store("cancelled second"))
            await asyncio.sleep(0)  # the task runs up to its await: the request is told
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            StallingConnection.release.set()
            await first
            assert (await memory.count()).total == 1

    run(main)
    assert _contents(db_path) == ["first"]


def test_a_store_cancelled_after_its_transaction_began_is_committed(
    db_path: Path, stalling: Config
) -> None:
    """Cancel while the write's own transaction is stalled: it commits, the receipt is lost."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=stalling) as memory:
            stuck = await _stall_store(memory, "begun, then cancelled")
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            StallingConnection.release.set()
            assert (await memory.count()).total == 1

    run(main)
    assert _contents(db_path) == ["begun, then cancelled"]


def test_a_store_cancelled_after_commit_stays(db_path: Path) -> None:
    """The receipt arrived, then the task is cancelled: the memory is there."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            done = asyncio.Event()

            async def store_then_wait() -> None:
                await memory.store("committed before the cancel")
                done.set()
                await asyncio.Event().wait()

            task = asyncio.ensure_future(store_then_wait())
            await asyncio.wait_for(done.wait(), BOUND)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await memory.count()).total == 1

    run(main)
    assert _contents(db_path) == ["committed before the cancel"]


def test_a_stalled_store_times_out_with_ask_timeout(db_path: Path, stalling: Config) -> None:
    """The deadline raises AskTimeout, as the blocking facade does."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=stalling) as memory:
            stuck = await _stall_store(memory, "slow")
            with pytest.raises(AskTimeout, match=r"no answer from the store actor within 0.2s"):
                await memory.get("0190d6a0-0000-7000-8000-000000000000", timeout=0.2)
            StallingConnection.release.set()
            await stuck

    run(main)


def test_a_full_gate_answers_overloaded_after_admission_wait(db_path: Path) -> None:
    """The admission gate bounds async callers too, waiting on the loop, not a thread."""
    config = Config(
        connect=stalling_connect, max_in_flight=1, admission_wait=0.1, ask_timeout=BOUND
    )
    StallingConnection.reset()

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=config) as memory:
            stuck = await _stall_store(memory, "holds the only slot")
            with pytest.raises(Overloaded, match="1 requests already in flight"):
                await memory.count()
            StallingConnection.release.set()
            await stuck
            assert (await memory.count()).total == 1

    try:
        run(main)
    finally:
        StallingConnection.release.set()
        StallingConnection.reset()


def test_a_blocking_caller_waits_for_a_freed_slot_and_is_refused_after_admission_wait(
    db_path: Path,
) -> None:
    """The blocking facade's gate: a caller waits up to ``admission_wait`` for a slot,
    gets the one a finished call frees, and ``Overloaded`` when none frees in time."""
    config = Config(
        connect=stalling_connect, max_in_flight=1, admission_wait=2.0, ask_timeout=BOUND
    )
    StallingConnection.reset()
    stuck = None
    try:
        with MemorySystem.open(db_path, config=config) as memory:
            StallingConnection.armed = True
            stuck = threading.Thread(target=memory.store, args=("holds the only slot",))
            stuck.start()
            assert StallingConnection.entered.wait(BOUND)
            with pytest.raises(Overloaded, match="1 requests already in flight"):
                memory.count()
            counted: list[int] = []
            waiter = threading.Thread(target=lambda: counted.append(memory.count().total))
            waiter.start()
            wait_until(lambda: memory._gate._waiting == 1, "the second caller waits")
            StallingConnection.release.set()
            waiter.join(BOUND)
            assert counted == [1]  # admitted when the store freed the slot, after its commit
            with pytest.raises(ValueError, match="released more often than acquired"):
                memory._gate.release()
    finally:
        StallingConnection.release.set()
        if stuck is not None:
            stuck.join(BOUND)
        StallingConnection.reset()


def test_64_tasks_on_one_loop_store_exactly_and_share_group_commits(db_path: Path) -> None:
    """64 concurrent stores: 64 memories, in fewer transactions than stores."""
    StallingConnection.reset()
    config = Config(connect=stalling_connect)

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path, config=config) as memory:
            before = StallingConnection.begins
            receipts = await asyncio.gather(*(memory.store(f"fact {n}") for n in range(64)))
            transactions = StallingConnection.begins - before
            assert len({r.id for r in receipts}) == 64
            assert (await memory.count()).total == 64
            assert 1 <= transactions < 64

    run(main)
    StallingConnection.reset()


def test_the_asyncio_facade_refuses_a_simulated_runtime(tmp_path: Path) -> None:
    """A simulated world answers only while a get() drives it, which an await cannot:
    the asyncio facade says so when it is made, before any call could hang."""
    from actors.sim import FaultPlan, SimRuntime

    sim = SimRuntime(1, faults=FaultPlan.none())
    system = MemorySystem.open(
        tmp_path / "sim.db", runtime=sim, config=Config(semantic=False, sharing="direct")
    )
    try:
        with pytest.raises(NotImplementedError, match="AsyncMemorySystem on ThreadedRuntime"):
            AsyncMemorySystem(system)
    finally:
        system.close()


def test_a_notifying_future_calls_back_once_and_a_cancelled_one_takes_no_answer() -> None:
    """set → callback once; a second answer is refused; cancel wins only while pending."""
    calls: list[int] = []
    future = ThreadedRuntime().new_notifying_future(lambda: calls.append(1))
    future.set(7)
    with pytest.raises(queue.Full):
        future.set(8)
    assert (future.get(timeout=0), calls, future.cancel(), future.cancelled) == (
        7,
        [1],
        False,
        False,
    )
    cancelled = NotifyingFuture(lambda: calls.append(2))
    assert cancelled.cancel()
    assert cancelled.cancelled
    with pytest.raises(queue.Full):
        cancelled.set(9)
    assert calls == [1]


def test_group_commit_drops_writes_cancelled_before_the_transaction() -> None:
    """The flush filters cancelled writes before it begins; the rest commit in one go."""
    committed: list[list[str]] = []

    def commit(batch: list[StoreMemory]) -> list[object]:
        committed.append([w.content for w in batch])
        return ["ok"] * len(batch)

    group: GroupCommit[StoreMemory] = GroupCommit(
        commit,
        schedule=lambda: None,
        translate=lambda exc: exc,
        is_busy=lambda exc: False,
        database_errors=(sqlite3.Error,),
    )
    writes = [
        StoreMemory(NotifyingFuture(lambda: None), text, "h" + text, "default", (), "{}")
        for text in ("a", "b", "c")
    ]
    for write in writes:
        group.add(write)
    assert isinstance(writes[1].reply, NotifyingFuture)
    writes[1].reply.cancel()
    group.flush()
    assert committed == [["a", "c"]]
    assert (group.batches, group.dropped) == (1, 1)
    assert [writes[0].reply.get(timeout=0), writes[2].reply.get(timeout=0)] == ["ok", "ok"]


def test_an_open_cancelled_midway_closes_the_system_once_it_has_opened(db_path: Path) -> None:
    """Cancelling the opening task leaves no actor running: the opened system is closed."""
    import pykka

    from actors import aio

    def running() -> set[str]:
        return {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}

    before = running()

    async def main() -> None:
        async def use() -> None:
            async with AsyncMemorySystem.open(db_path):
                raise AssertionError("the body must not run: the open was cancelled")

        task = asyncio.ensure_future(use())
        await asyncio.sleep(0)  # the open has started in its worker thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.gather(*aio._abandoned)

    run(main)
    assert running() == before


def test_an_actor_dead_without_answering_gives_unavailable_within_a_poll(
    system: MemorySystem,
) -> None:
    """The lost-tell window: liveness is polled on the loop, so no wait for the whole timeout."""
    import pykka

    from actors import Unavailable
    from actors.aio import _Pending

    class Silent(pykka.ThreadingActor):
        pass

    dead = Silent.start()
    dead.stop()
    memory = AsyncMemorySystem(system)

    async def main() -> float:
        pending: _Pending[Any] = _Pending(system, asyncio.get_running_loop())
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unavailable, match="the silent actor stopped before answering"):
            await memory._wait(pending, dead, BOUND, "the silent actor")
        return asyncio.get_running_loop().time() - started

    assert run(main) < 1.0


def _answer_from_another_thread(pendings: list[Any], values: list[Any]) -> None:
    """Settle each reply on a thread of its own, as an actor would; join it."""

    def answer() -> None:
        for pending, value in zip(pendings, values, strict=True):
            pending.reply.set(value)

    worker = threading.Thread(target=answer)
    worker.start()
    worker.join(BOUND)
    assert not worker.is_alive()


def test_a_burst_of_answers_wakes_the_loop_once_and_settles_each_exactly_once(
    system: MemorySystem,
) -> None:
    """32 replies settled while the loop is busy: one drain; a later burst: one more."""
    from actors.aio import _Pending, _wakeups_for

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wakeups = _wakeups_for(loop)
        before = wakeups.drains
        pendings: list[_Pending[Any]] = [_Pending(system, loop) for _ in range(32)]
        # The loop is blocked while the "actor" answers: every post joins one drain.
        _answer_from_another_thread(pendings, list(range(32)))
        assert not any(p.waiter.done() for p in pendings)
        values = await asyncio.gather(*(p.waiter for p in pendings))
        assert values == list(range(32))
        assert wakeups.drains - before == 1
        for pending in pendings:  # a second answer is refused; the waiter keeps the first
            with pytest.raises(queue.Full):
                pending.reply.set("again")
            pending._transfer()
            assert pending.waiter.result() == values[pendings.index(pending)]
        # The loop ran the drain, so the next answers schedule a drain of their own.
        later = [_Pending(system, loop) for _ in range(3)]
        _answer_from_another_thread(later, ["a", "b", "c"])
        assert await asyncio.gather(*(p.waiter for p in later)) == ["a", "b", "c"]
        assert wakeups.drains - before == 2

    run(main)


def test_an_answer_for_an_abandoned_request_is_dropped_and_the_others_still_land(
    system: MemorySystem,
) -> None:
    """A cancelled caller's waiter stays cancelled; its neighbours in the burst are answered."""
    from actors.aio import _Pending

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pendings: list[_Pending[Any]] = [_Pending(system, loop) for _ in range(3)]
        pendings[1].abandon(cancel=False)  # gave up (a timeout): the request still runs
        _answer_from_another_thread(pendings, [1, 2, 3])
        assert await pendings[0].waiter == 1
        assert await pendings[2].waiter == 3
        assert pendings[1].waiter.cancelled()

    run(main)


def test_answers_posted_to_a_closed_loop_are_dropped_without_raising(
    system: MemorySystem,
) -> None:
    """The actor's thread never sees the closed loop's RuntimeError."""
    from actors.aio import _Pending

    loop = asyncio.new_event_loop()
    pending: _Pending[Any] = _Pending(system, loop)
    loop.close()
    _answer_from_another_thread([pending], ["late"])  # asserts the thread ended cleanly
    assert pending.reply.get(timeout=0) == "late"
    assert not pending.waiter.done()


def test_the_guard_hands_over_an_answer_whose_drain_has_not_run_yet(
    system: MemorySystem,
) -> None:
    """Liveness check and drain race for one answer: it is delivered once."""
    from actors.aio import _Pending

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pending: _Pending[Any] = _Pending(system, loop)
        ref = system._ready("store")
        pending.guard(ref, BOUND, "the store actor", system.runtime.monotonic)
        pending.reply.set("answer")  # on the loop's thread: its drain is only scheduled
        pending._check()  # the guard looks first
        assert pending.waiter.result() == "answer"
        await asyncio.sleep(0)  # the drain runs and finds the waiter settled
        assert pending.waiter.result() == "answer"
        pending.abandon(cancel=False)

    run(main)


def test_requests_leave_no_reference_cycles_for_the_garbage_collector(
    db_path: Path,
) -> None:
    """Every request's objects are freed by reference counting: no GC pauses per store."""
    import gc

    from actors.aio import _Pending

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            await memory.store("warm-up")
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                await asyncio.gather(*(memory.store(f"fact {n}") for n in range(50)))
                await memory.count()
                with pytest.raises(MemoryNotFound):
                    await memory.get("0190d6a0-0000-7000-8000-000000000000")
                gc.collect()
                leaked = [o for o in gc.garbage if isinstance(o, (_Pending, NotifyingFuture))]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
            assert leaked == []

    run(main)


def test_a_notifying_future_lets_go_of_its_callback_once_answered_or_cancelled() -> None:
    """The callback (a bound method of its holder) is dropped: no cycle outlives the answer."""
    answered = NotifyingFuture(lambda: None)
    answered.set(1)
    cancelled = NotifyingFuture(lambda: None)
    cancelled.cancel()
    assert (answered._on_settled, cancelled._on_settled) == (None, None)


def test_a_notifying_future_gives_its_value_without_waiting_and_no_value_otherwise() -> None:
    """``value()`` (the owner's answer to a follower reads it): the value once set;
    NO_VALUE before any answer and for an error, which ``get`` raises as before."""
    answered, failed = NotifyingFuture(lambda: None), NotifyingFuture(lambda: None)
    assert answered.value() is NO_VALUE
    answered.set(None)  # None is a value
    assert answered.value() is None
    failed.set_exception((KeyError, KeyError("gone"), None))
    assert failed.value() is NO_VALUE
    with pytest.raises(KeyError, match="gone"):
        failed.get(timeout=0)


def test_held_notifications_call_back_once_each_after_the_block_then_run_the_kicks() -> None:
    """Answers are stored at once; callbacks wait for the block's end; kicks wait for them."""
    from actors.runtime import after_notifications, notifications_held

    events: list[str] = []

    def callback(name: str) -> Callable[[], None]:
        def called() -> None:
            events.append(name)
            after_notifications(lambda: events.append(f"kick {name}"))

        return called

    first, second = NotifyingFuture(callback("first")), NotifyingFuture(callback("second"))

    def answer_then_fail() -> None:
        with notifications_held():
            first.set(1)
            with notifications_held():  # nested: joins the outer block
                second.set_exception((RuntimeError, RuntimeError("answer"), None))
            assert first.get(timeout=0) == 1  # settled already; only the callback waits
            assert events == []
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError, match="the block failed"):
        answer_then_fail()
    assert events == ["first", "second", "kick first", "kick second"]
    after_notifications(lambda: events.append("now"))  # outside a block: at once
    assert events[-1] == "now"


def test_a_group_commit_reaches_a_running_loop_in_one_wake_up(system: MemorySystem) -> None:
    """A batch answered on the actor's thread while the loop runs: one drain for all of it."""
    from actors.aio import _Pending, _wakeups_for

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wakeups = _wakeups_for(loop)
        pendings: list[_Pending[Any]] = [_Pending(system, loop) for _ in range(32)]
        group: GroupCommit[StoreMemory] = GroupCommit(
            lambda batch: [w.content for w in batch],
            schedule=lambda: None,
            translate=lambda exc: exc,
            is_busy=lambda exc: False,
            database_errors=(sqlite3.Error,),
        )
        for n, pending in enumerate(pendings):
            group.add(StoreMemory(pending.reply, f"fact {n}", f"h{n}", "default", (), "{}"))
        before = wakeups.drains
        flushing = asyncio.ensure_future(asyncio.to_thread(group.flush))  # the loop runs on
        values = await asyncio.gather(*(p.waiter for p in pendings))
        await flushing
        assert values == [f"fact {n}" for n in range(32)]
        assert wakeups.drains - before == 1

    run(main)
