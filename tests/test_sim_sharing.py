"""The simulated world under the owner/follower rules: threads, the owner lock, process death.

The rules themselves (actors/sharing.py, actors/owner_service.py) run in the
``owner`` scenario (tests/test_sim_scenarios.py); these pin down the world
they run on, so that a scenario's finding is the code's and not the world's.
"""

from __future__ import annotations

import queue
from typing import Any

import pykka
import pytest

from actors.errors import OwnerGone
from actors.ownership import OwnerInfo
from actors.sim import BlockingCallInHandler, FaultPlan, SimRuntime, Sleep
from actors.sim.scenarios import fresh_database
from actors.sim.sharing import SimNetwork, SimProcess
from actors.system import Config, MemorySystem


class Echo(pykka.Actor):
    def on_receive(self, message: Any) -> Any:
        return f"echo:{message}"


def test_a_thread_waits_by_driving_the_world_and_unwinds_when_its_process_dies() -> None:
    """A thread's blocking ask is answered by the actors it waits on; killing its
    process ends it at its next wait, its ``finally`` runs, the code after never does."""
    sim = SimRuntime(3, faults=FaultPlan.none())
    echo = sim.spawn(Echo)
    seen: list[str] = []

    def body() -> None:
        try:
            seen.append(echo.ask("hello", timeout=5))
            sim.sleep(10)
            seen.append("after the sleep")
        finally:
            seen.append("unwound")

    def killer() -> Any:
        yield Sleep(1)
        sim.kill_group("p")

    sim.thread("p:main", body, group="p")
    sim.run_clients([("killer", killer())])
    sim.run(until=sim.now + 20)
    assert seen == ["echo:hello", "unwound"]
    sim.thread("p:late", lambda: seen.append("started in a dead process"), group="p")
    sim.run(until=sim.now + 1)
    assert seen == ["echo:hello", "unwound"]
    echo.stop()


def test_a_client_still_may_not_block_even_while_threads_may() -> None:
    """Threads are the only tasks whose waits drive the world: a client's get() is a finding."""
    sim = SimRuntime(4, faults=FaultPlan.none())

    def client() -> Any:
        sim.new_future().get(timeout=1)
        yield Sleep(0)

    with pytest.raises(BlockingCallInHandler):
        sim.run_clients([("c", client())])


def test_the_owner_lock_is_granted_to_one_process_at_a_time_and_dies_with_it() -> None:
    """As ``flock``: one holder; a kill frees it but leaves what it published (the lock
    file outlives ``kill -9``); a clean release frees it and removes what it said."""
    sim = SimRuntime(5, faults=FaultPlan.none())
    network = SimNetwork(sim)
    first, second, third = (network.process(name) for name in ("a", "b", "c"))
    held, waiting, later = first.lock("db"), second.lock("db"), third.lock("db")
    assert held.try_claim()
    assert held.try_claim()
    assert not waiting.try_claim()
    held.publish(OwnerInfo(first.pid, "db.sock"))
    with pytest.raises(RuntimeError, match="only the owner"):
        waiting.publish(OwnerInfo(second.pid, "db.sock"))
    first.kill()
    assert second.read_owner("db") == OwnerInfo(first.pid, "db.sock")
    assert waiting.try_claim()
    assert not later.try_claim()
    waiting.release()
    assert second.read_owner("db") is None
    assert later.try_claim()


def _owner_and_follower(sim: SimRuntime) -> tuple[SimProcess, SimProcess, OwnerInfo]:
    """An owner process serving a fresh file, a follower process, and what the owner published."""
    network = SimNetwork(sim)
    owner, follower = network.process("owner"), network.process("follower")
    path = fresh_database(f"sim-sharing-{sim.seed}")
    config = Config(synchronous="OFF", semantic=False, connect=owner.connector, sharing_host=owner)
    owner.system = MemorySystem.open(path, runtime=sim, config=config)
    info = follower.read_owner(path)
    assert info is not None
    assert info.pid == owner.pid
    return owner, follower, info


def test_a_follower_call_in_flight_when_its_owner_is_killed_fails_as_owner_gone() -> None:
    """The link's end of stream after ``kill -9``: a call not yet answered cannot be
    known applied or not; its future fails with OwnerGone, and the link is broken."""
    sim = SimRuntime(6, faults=FaultPlan.none())
    owner, follower, info = _owner_and_follower(sim)
    link = follower.connect(info)
    answered = link.submit("count", {})
    assert answered.result(5)["ok"]["total"] == 0
    in_flight = link.submit("count", {})
    owner.kill()  # before the request frame was even delivered
    with pytest.raises(OwnerGone, match="died"):
        in_flight.result(5)
    assert link.broken
    with pytest.raises(ConnectionRefusedError):
        follower.connect(info)


def test_the_owner_answers_a_followers_one_request_call_from_its_actors_reply() -> None:
    """The production reply path under the seeded runtime: a follower's ``store`` and
    ``get`` are begun on the owner's link and answered from the StoreActor's reply
    callback (no owner-service worker thread runs for them); ``count``, which waits
    on several answers, still runs on a worker."""
    sim = SimRuntime(7, faults=FaultPlan.none())
    owner, follower, info = _owner_and_follower(sim)
    link = follower.connect(info)

    def workers_run() -> int:
        return sum(
            1
            for kind, _, _, who, _ in sim.trace.events
            if kind == "thread" and who == "owner:owner-service"
        )

    stored = link.submit("store", {"content": "a fact from the follower"}).result(5)
    memory_id = stored["ok"]["id"]
    got = link.submit("get", {"memory_id": memory_id}).result(5)
    assert got["ok"]["content"] == "a fact from the follower"
    assert link.submit("forget", {"memory_id": memory_id}).result(5)["ok"]["forgotten"]
    missing = link.submit("get", {"memory_id": memory_id}).result(5)
    assert missing["error"]["type"] == "MemoryNotFound"
    invalid = link.submit("get", {"memory_id": "no such id"}).result(5)
    assert invalid["error"]["type"] == "InvalidMemory"
    assert workers_run() == 0
    assert link.submit("count", {}).result(5)["ok"]["total"] == 0
    assert workers_run() == 1
    assert sim.unanswered() == []
    link.close()
    assert owner.system is not None
    owner.system.close()


def test_a_simulated_notifying_future_calls_back_once_on_the_answering_step() -> None:
    """``new_notifying_future`` in a simulated world: ``get()`` on it drives the world
    until it is answered (here by a simulated thread, a second later); the callback
    runs once, after the value is stored; a second answer is refused."""
    sim = SimRuntime(8, faults=FaultPlan.none())
    calls: list[bool] = []
    future = sim.new_notifying_future(lambda: calls.append(future.done))
    sim.thread("answerer", lambda: future.set("answered"), delay=1.0)
    assert not future.done
    assert future.get(timeout=5) == "answered"
    assert calls == [True]
    assert sim.now >= 1.0
    with pytest.raises(queue.Full):
        future.set("again")
    assert calls == [True]
