"""``python -m actors.sim``: the long soak, replay, and the simulator's own benchmark.

::

    python -m actors.sim soak --seeds 20000            # every scenario, both strategies
    python -m actors.sim replay .sim-traces/store-seed7.jsonl
    python -m actors.sim bench                         # schedules/s and steps/s
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

from actors.sim.faults import FaultPlan
from actors.sim.scenarios import SCENARIOS, run_scenario
from actors.sim.strategies import ReplayStrategy
from actors.sim.trace import load_trace


def _sweep(args: tuple[str, str, int, int, str]) -> tuple[int, int, list[str]]:
    """Run seeds [start, stop) of one scenario; return runs, steps and failure recipes."""
    name, strategy, start, stop, trace_dir = args
    logging.disable(logging.CRITICAL)  # injected crashes log at ERROR by design
    failures: list[str] = []
    steps = 0
    for seed in range(start, stop):
        try:
            steps += run_scenario(name, seed, strategy=strategy).steps
        except Exception as exc:
            sim = getattr(exc, "sim", None)
            where = ""
            if sim is not None:
                path = sim.trace.write(Path(trace_dir) / f"{name}-{strategy}-seed{seed}.jsonl")
                where = f" trace={path}; replay: python -m actors.sim replay {path}"
            failures.append(f"{name} seed={seed} strategy={strategy}: {exc!r}{where}")
    return stop - start, steps, failures


@click.group()
def main() -> None:
    """The deterministic simulation of memory-actors."""


@main.command()
@click.option("--seeds", default=20_000, show_default=True, help="Seeds per scenario and strategy.")
@click.option("--scenario", "names", multiple=True, help="Scenario (repeatable); default: all.")
@click.option("--strategy", "strategies", multiple=True, help="random, pct, pct:N; default both.")
@click.option("--jobs", default=os.cpu_count() or 1, show_default=True, help="Worker processes.")
@click.option("--trace-dir", default=".sim-traces", show_default=True)
def soak(
    seeds: int, names: tuple[str, ...], strategies: tuple[str, ...], jobs: int, trace_dir: str
) -> None:
    """Sweep many seeds; print failures with a replay command; exit 1 if any."""
    names = names or tuple(SCENARIOS)
    strategies = strategies or ("random", "pct:3")
    chunk = max(1, seeds // (jobs * 4))
    work = [
        (name, strategy, start, min(seeds, start + chunk), trace_dir)
        for name in names
        for strategy in strategies
        for start in range(0, seeds, chunk)
    ]
    begin = time.perf_counter()
    runs = steps = 0
    failures: list[str] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for done, done_steps, failed in pool.map(_sweep, work):
            runs += done
            steps += done_steps
            failures.extend(failed)
    elapsed = time.perf_counter() - begin
    click.echo(
        f"{runs} schedules, {steps} steps in {elapsed:.1f}s "
        f"({runs / elapsed:.0f} schedules/s, {steps / elapsed:.0f} steps/s, {jobs} jobs); "
        f"{len(failures)} failures"
    )
    for line in failures[:50]:
        click.echo(line)
    sys.exit(1 if failures else 0)


@main.command()
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
def replay(trace: str) -> None:
    """Replay a trace's decision list (with its seed and fault plan); show the outcome."""
    header, decisions = load_trace(trace)
    faults = dict(header["faults"])
    faults["crash_actors"] = tuple(faults["crash_actors"])
    try:
        sim = run_scenario(
            header["scenario"],
            header["seed"],
            strategy=ReplayStrategy(decisions),
            faults=FaultPlan(**faults),
        )
    except Exception as exc:
        click.echo(f"reproduced: {exc!r}")
        sys.exit(1)
    click.echo(f"replayed {sim.steps} steps: no failure (the code changed since the trace?)")


@main.command()
@click.option("--seeds", default=1_000, show_default=True)
def bench(seeds: int) -> None:
    """Schedules/s and steps/s per scenario, on one core."""
    logging.disable(logging.CRITICAL)
    for name in SCENARIOS:
        run_scenario(name, 0)  # warm-up: template database, imports
        start = time.perf_counter()
        steps = sum(run_scenario(name, seed).steps for seed in range(seeds))
        elapsed = time.perf_counter() - start
        click.echo(
            f"{name:10} {seeds / elapsed:8.0f} schedules/s {steps / elapsed:10.0f} steps/s "
            f"{steps / seeds:6.1f} steps/schedule"
        )


if __name__ == "__main__":
    main()
