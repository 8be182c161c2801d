"""pytest plugin: seed sweeps, failing-seed recipes, trace files, replay.

Registered through the ``pytest11`` entry point, so installing memory-actors
makes it available. Options:

``--sim-seeds=N``      seeds per sweep (default: each sweep's own count)
``--sim-seed=S``       run every sweep with this one seed
``--sim-replay=FILE``  replay a written trace: its seed and fault plan, and its
                       decision list instead of the strategy
``--sim-trace-dir=D``  where failing runs write their traces (``.sim-traces``)

Every pytest run where memory-actors is installed loads this module, so it
imports the simulation (and through it the actors, SQLite, the hub) only
when a fixture is used.

Fixtures: ``sim_sweep`` (run a scenario over many seeds; a failure names the
seed, writes the trace and prints a one-line replay command) and ``sim`` (one
:class:`~actors.sim.SimRuntime`; its trace is written if the test fails).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

if TYPE_CHECKING:
    from actors.sim.faults import FaultPlan
    from actors.sim.runtime import SimRuntime
    from actors.sim.scenarios import Scenario
    from actors.sim.strategies import Strategy

__all__ = ["SimFailure", "Sweep", "SweepReport"]


class SimFailure(AssertionError):
    """A simulated run failed; the message carries the replay recipe."""


@attrs.frozen
class SweepReport:
    """What a sweep ran: how many schedules, steps, and how fast."""

    scenario: str
    runs: int
    steps: int
    seconds: float
    digests: tuple[str, ...]

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.seconds if self.seconds else float("inf")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memory-actors simulation")
    group.addoption("--sim-seeds", type=int, default=None, help="seeds per sweep")
    group.addoption("--sim-seed", type=int, default=None, help="run sweeps with one seed")
    group.addoption("--sim-replay", default=None, help="replay the decision list of a trace")
    group.addoption("--sim-trace-dir", default=".sim-traces", help="where failing traces go")


def _plan_from_header(header: dict[str, Any]) -> FaultPlan:
    from actors.sim.faults import FaultPlan

    faults = dict(header["faults"])
    faults["crash_actors"] = tuple(faults.get("crash_actors", ()))
    return FaultPlan(**faults)


class Sweep:
    """Runs scenarios over seeds for one test; see the module docstring."""

    def __init__(self, config: pytest.Config, nodeid: str) -> None:
        self._config = config
        self._nodeid = nodeid

    def seeds(self, default: int) -> list[int]:
        one = self._config.getoption("--sim-seed")
        if one is not None:
            return [one]
        count = self._config.getoption("--sim-seeds")
        return list(range(default if count is None else count))

    def run(
        self,
        name: str,
        *,
        seeds: int = 100,
        strategy: str | Strategy = "random",
        faults: FaultPlan | None = None,
        scenario: Scenario | None = None,
    ) -> SweepReport:
        """Run scenario ``name`` (or ``scenario``) once per seed; raise :class:`SimFailure`."""
        from actors.sim.scenarios import run_scenario
        from actors.sim.strategies import ReplayStrategy
        from actors.sim.trace import load_trace

        replay = self._config.getoption("--sim-replay")
        plan: list[tuple[int, str | Strategy, FaultPlan | None]]
        if replay:
            header, decisions = load_trace(replay)
            plan = [(header["seed"], ReplayStrategy(decisions), _plan_from_header(header))]
        else:
            plan = [(seed, strategy, faults) for seed in self.seeds(seeds)]
        digests = []
        steps = 0
        start = time.perf_counter()
        for seed, strat, fault_plan in plan:
            try:
                sim = run_scenario(name, seed, strategy=strat, faults=fault_plan, scenario=scenario)
            except Exception as exc:
                failed: SimRuntime | None = getattr(exc, "sim", None)
                raise SimFailure(self._recipe(name, seed, failed, exc)) from exc
            steps += sim.steps
            digests.append(sim.trace.digest())
        return SweepReport(name, len(plan), steps, time.perf_counter() - start, tuple(digests))

    def _recipe(self, name: str, seed: int, sim: SimRuntime | None, exc: BaseException) -> str:
        lines = [f"scenario {name!r} failed with seed {seed}: {type(exc).__name__}: {exc}"]
        if sim is not None:
            folder = Path(self._config.getoption("--sim-trace-dir"))
            path = sim.trace.write(folder / f"{name}-seed{seed}.jsonl")
            lines.append(f"trace: {path} ({sim.steps} steps, {len(sim.trace.decisions)} decisions)")
            lines.append(f"replay: pytest '{self._nodeid}' --sim-replay={path}")
        lines.append(f"rerun:  pytest '{self._nodeid}' --sim-seed={seed}")
        return "\n".join(lines)


@pytest.fixture
def sim_sweep(request: pytest.FixtureRequest) -> Sweep:
    """Run a scenario over many seeds; failures print a replay recipe."""
    return Sweep(request.config, request.node.nodeid)


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimRuntime]:
    """One fault-free simulated world (seed from ``--sim-seed``, else 0)."""
    from actors.sim.faults import FaultPlan
    from actors.sim.runtime import SimRuntime

    seed = request.config.getoption("--sim-seed")
    world = SimRuntime(0 if seed is None else seed, faults=FaultPlan.none())
    yield world
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = Path(request.config.getoption("--sim-trace-dir"))
        path = world.trace.write(folder / f"{request.node.name}-seed{world.seed}.jsonl")
        print(
            f"\nsimulation trace: {path}\nrerun: pytest '{request.node.nodeid}' "
            f"--sim-seed={world.seed}"
        )
    world.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
