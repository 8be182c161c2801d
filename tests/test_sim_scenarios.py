"""Seed sweeps of the production actors, determinism, replay, and evidence that sweeps find bugs.

These are the short CI form; ``python -m actors.sim soak`` runs the long one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pykka
import pytest

from actors import sharing
from actors._base import DEFERRED, ReplyingActor
from actors.local_db import LocalDatabase
from actors.owner_protocol import SAFE_TO_REPEAT
from actors.runtime import Runtime
from actors.sim import FaultPlan, ReplayStrategy, SimRuntime, load_trace
from actors.sim.pytest_plugin import SimFailure, Sweep
from actors.sim.scenarios import CheckFailed, run_scenario, store_actor_scenario
from actors.store import StoreActor


@pytest.mark.parametrize(
    ("scenario", "seeds"),
    [
        ("store", 500),
        ("system", 500),
        ("busy", 500),
        ("migration", 300),
        ("ping", 300),
        ("sync", 200),
        ("lease", 150),
        ("recall", 100),
        ("storm", 200),
        ("owner", 150),
    ],
)
def test_every_seed_of_a_scenario_keeps_the_invariants(
    sim_sweep: Sweep, scenario: str, seeds: int
) -> None:
    """Every reply answered, no acknowledged write lost, read-your-writes, named errors only."""
    report = sim_sweep.run(scenario, seeds=seeds)
    assert report.runs == len(sim_sweep.seeds(seeds))
    assert report.steps > report.runs


@pytest.mark.parametrize("scenario", ["store", "system", "sync", "lease", "owner"])
def test_pct_scheduling_keeps_the_invariants_too(sim_sweep: Sweep, scenario: str) -> None:
    """The priority-change-point strategy explores other orderings; they hold as well."""
    sim_sweep.run(scenario, seeds=150, strategy="pct:3")


def test_busy_faults_are_retried_on_backoff_timers() -> None:
    """Across a sweep with frequent SQLITE_BUSY, flush retries fire as timer messages."""
    timers = 0
    for seed in range(50):
        sim = run_scenario("busy", seed)
        timers += sum(1 for e in sim.trace.events if e[0] == "timer" and e[4] == "Flush")
        assert all(e[3] != "crash" for e in sim.trace.events if e[0] == "fault")
    assert timers > 20


def test_faults_from_the_seed_actually_happen() -> None:
    """A sweep with seed-derived plans injects every kind of fault somewhere."""
    kinds: set[str] = set()
    for seed in range(300):
        sim = run_scenario("system", seed)
        kinds |= {e[3] for e in sim.trace.events if e[0] == "fault"}
    assert kinds >= {"sqlite_busy", "sqlite_io_error", "sqlite_ambiguous_commit", "crash", "stall"}


@pytest.mark.parametrize("scenario", ["system", "owner"])
def test_the_same_seed_gives_a_byte_identical_trace(scenario: str) -> None:
    """Determinism: two runs of one seed produce the same trace digest (owner kills too)."""
    first = run_scenario(scenario, 42).trace
    second = run_scenario(scenario, 42).trace
    assert first.lines() == second.lines()
    assert first.digest() == second.digest()


def test_different_seeds_give_different_traces() -> None:
    """Seeds matter: they change interleavings, faults or both."""
    digests = {run_scenario("system", seed).trace.digest() for seed in range(20)}
    assert len(digests) == 20


@pytest.mark.parametrize("scenario", ["system", "owner"])
def test_a_run_replays_identically_in_another_process_with_another_hash_seed(
    scenario: str,
) -> None:
    """No hidden nondeterminism: set ordering, ids and paths do not leak into the trace."""
    local = run_scenario(scenario, 5).trace.digest()
    code = (
        "from actors.sim.scenarios import run_scenario; "
        f"print(run_scenario({scenario!r}, 5).trace.digest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == local


def test_a_decision_list_replays_the_schedule_exactly(tmp_path: Path) -> None:
    """Replaying a written trace's decisions reproduces every event and history entry."""
    original = run_scenario("store", 11)
    path = original.trace.write(tmp_path / "run.jsonl")
    header, decisions = load_trace(path)
    plan = FaultPlan(
        **{**header["faults"], "crash_actors": tuple(header["faults"]["crash_actors"])}
    )
    replayed = run_scenario(
        "store", header["seed"], strategy=ReplayStrategy(decisions), faults=plan
    )
    assert replayed.trace.lines()[1:] == original.trace.lines()[1:]


# -- evidence that sweeps find bugs ------------------------------------------------


@attrs.frozen(eq=False)
class Increment:
    """Client → Incrementer: add one to the register; answered with the value written."""

    reply: pykka.Future[Any]


@attrs.frozen(eq=False)
class Read:
    """Incrementer → Register: read, answer by telling ``ReadResult`` back."""

    reply_to: pykka.ActorRef[Any]
    request: Increment


@attrs.frozen(eq=False)
class ReadResult:
    """Register → Incrementer: the value read, for the increment in flight."""

    value: int
    request: Increment


@attrs.frozen(eq=False)
class Write:
    """Incrementer → Register: write the value (no compare: the bug)."""

    value: int


class Register(pykka.Actor):
    """Owns one integer."""

    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Read):
            message.reply_to.tell(ReadResult(self.value, message.request))
        elif isinstance(message, Write):
            self.value = message.value
        elif message == "get":
            return self.value
        return None


class Incrementer(ReplyingActor):
    """A read-modify-write split across two actors: concurrent increments can be lost."""

    def __init__(self, runtime: Runtime, register: pykka.ActorRef[Any]) -> None:
        super().__init__(runtime, name="incrementer")
        self.register = register

    def handle(self, message: Any) -> Any:
        if isinstance(message, Increment):
            self.register.tell(Read(self.actor_ref, message))
            return None
        if isinstance(message, ReadResult):
            self.register.tell(Write(message.value + 1))
            message.request.reply.set(message.value + 1)
            return None
        return super().handle(message)


def _lost_update_scenario(sim: SimRuntime) -> None:
    register = sim.spawn(Register)
    incrementer = sim.spawn(Incrementer, sim, register)

    def client(name: str) -> Any:
        for _ in range(2):
            reply = sim.new_future()
            incrementer.tell(Increment(reply))
            outcome = yield reply
            sim.trace.record(name, "increment", "ok", outcome.value)

    sim.run_clients([(f"c{n}", client(f"c{n}")) for n in range(3)])
    final = register.ask("get", timeout=5)
    if final != 6:
        raise CheckFailed(f"6 increments acknowledged, register holds {final}: lost update")


def test_a_sweep_catches_a_read_modify_write_split_across_two_actors_and_replays_it(
    sim_sweep: Sweep, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """The broken pair loses updates under some schedules; the sweep finds and replays one."""
    with pytest.raises(SimFailure) as failure:
        sim_sweep.run("lost-update", seeds=200, scenario=_lost_update_scenario)
    message = str(failure.value)
    assert "lost update" in message
    assert "--sim-replay=" in message
    trace_path = message.split("--sim-replay=")[1].split()[0]
    header, decisions = load_trace(trace_path)
    with pytest.raises(CheckFailed, match="lost update") as again:
        run_scenario(
            "lost-update",
            header["seed"],
            strategy=ReplayStrategy(decisions),
            faults=FaultPlan.none() if not any(header["faults"].values()) else None,
            scenario=_lost_update_scenario,
        )
    replayed = again.value.sim  # type: ignore[attr-defined]
    original = Path(trace_path).read_text().splitlines()
    assert replayed.trace.lines()[1:] == original[1:]


class ForgetfulStore(StoreActor):
    """The StoreActor with its stop and failure handling removed."""

    def settle_on_stop(self) -> None:
        pass

    def fail_held(self, exc: BaseException) -> None:
        pass

    def _fail_queued(self, exc: BaseException) -> None:
        pass


def test_removing_the_group_commit_stop_handling_makes_the_sweep_fail(sim_sweep: Sweep) -> None:
    """Without settle-on-stop and fail-queued, some schedules leave callers unanswered."""
    broken = store_actor_scenario(ForgetfulStore)
    with pytest.raises(SimFailure, match=r"never (answered|finished)"):
        sim_sweep.run("store-without-stop-handling", seeds=300, scenario=broken)
    # The real StoreActor passes the same seeds.
    sim_sweep.run("store", seeds=300)


def test_deferred_is_exported_for_actor_authors() -> None:
    """Custom ReplyingActors return DEFERRED to answer later (used above)."""
    assert repr(DEFERRED) == "DEFERRED"


# -- the owner/follower rules, broken on purpose (actors/sharing.py) ----------------------


def test_repeating_a_session_append_after_its_owner_died_makes_the_sweep_fail(
    sim_sweep: Sweep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append in flight when its owner is killed may have been applied: sending it
    again to the next owner doubles it in some schedules, and the sweep sees it."""
    monkeypatch.setattr(sharing, "SAFE_TO_REPEAT", SAFE_TO_REPEAT | {"session_add"})
    with pytest.raises(SimFailure, match="appended twice"):
        sim_sweep.run("owner", seeds=150)


def test_dropping_the_calls_parked_for_the_next_owner_makes_the_sweep_fail(
    sim_sweep: Sweep, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower that forgets the calls it parked while no owner served leaves stores
    to time out instead of being repeated with the next owner; the sweep sees it."""
    attempt = sharing.Sharing._attempt

    def forgetting(self: sharing.Sharing, call: Any, **options: Any) -> None:
        proxy = self._proxy
        if self.role.name == "follower" and (proxy is None or proxy.broken):
            return  # parked nowhere: nobody answers it
        attempt(self, call, **options)

    monkeypatch.setattr(sharing.Sharing, "_attempt", forgetting)
    with pytest.raises(SimFailure, match=r"(store|upsert) was not repeated"):
        sim_sweep.run("owner", seeds=150)


# -- the owner sweep's findings, replayed (docs/testing.md, "Owner kills") ----------------


def test_an_ambiguous_commit_of_a_batch_is_answered_once_not_applied_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's COMMIT reached the file, then raised: its commit mark says it stands.
    Retried write by write instead (the mark ignored), session appends were doubled."""
    plan = FaultPlan(sqlite_ambiguous_commit=0.05)
    with caplog.at_level(logging.WARNING, logger="actors.local_db"):
        run_scenario("owner", 0, faults=plan)
    assert "after the transaction reached the file; it stands" in caplog.text

    def commit_unchecked(self: LocalDatabase, mark: str) -> None:
        self.conn.execute("COMMIT")

    monkeypatch.setattr(LocalDatabase, "_commit", commit_unchecked)
    with pytest.raises(CheckFailed, match="appended twice"):
        run_scenario("owner", 0, faults=plan)


def test_a_takeover_that_finds_the_file_busy_keeps_the_lock_and_tries_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower holding the lock found the file busy as it started its store. Giving
    up (the lock to the next follower, this process direct) left nobody serving."""
    plan = FaultPlan(sqlite_busy=0.2)
    with caplog.at_level(logging.WARNING, logger="actors.sharing"):
        run_scenario("owner", 22, faults=plan)
    assert "taking over found the file busy" in caplog.text

    # Without the retry: busy is then any other failure, and the process gives up.
    monkeypatch.setattr(sharing, "StorageBusy", type("NeverRaised", (Exception,), {}))
    with pytest.raises(CheckFailed, match="nobody served the file"):
        run_scenario("owner", 22, faults=plan)
