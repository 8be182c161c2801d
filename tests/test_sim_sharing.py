"""The simulated world under the owner/follower rules: threads, the owner lock, process death.

The rules themselves (actors/sharing.py, actors/owner_service.py) run in the
``owner`` scenario (tests/test_sim_scenarios.py); these pin down the world
they run on, so that a scenario's finding is the code's and not the world's.
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from actors.errors import OwnerGone
from actors.ownership import OwnerInfo
from actors.sim import BlockingCallInHandler, FaultPlan, SimRuntime, Sleep
from actors.sim.scenarios import fresh_database
from actors.sim.sharing import SimNetwork
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


def test_a_follower_call_in_flight_when_its_owner_is_killed_fails_as_owner_gone() -> None:
    """The link's end of stream after ``kill -9``: a call not yet answered cannot be
    known applied or not; its future fails with OwnerGone, and the link is broken."""
    sim = SimRuntime(6, faults=FaultPlan.none())
    network = SimNetwork(sim)
    owner, follower = network.process("owner"), network.process("follower")
    path = fresh_database(f"sim-sharing-{sim.seed}")
    config = Config(synchronous="OFF", semantic=False, connect=owner.connector, sharing_host=owner)
    owner.system = MemorySystem.open(path, runtime=sim, config=config)
    info = follower.read_owner(path)
    assert info is not None
    assert info.pid == owner.pid
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
