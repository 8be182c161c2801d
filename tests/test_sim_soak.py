"""The soak command itself, in a short form (the long form is run by hand)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from actors.sim.scenarios import SCENARIOS


@pytest.mark.soak
def test_the_soak_command_sweeps_every_scenario_and_reports_no_failures() -> None:
    """`python -m actors.sim soak` runs all scenarios with both strategies and exits 0."""
    out = subprocess.run(
        [sys.executable, "-m", "actors.sim", "soak", "--seeds", "60", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout.splitlines()[0]
    expected = len(SCENARIOS) * 2 * 60  # scenarios × (random, pct:3) × seeds
    assert summary.startswith(f"{expected} schedules"), summary
    assert summary.endswith("0 failures"), summary
