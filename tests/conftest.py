"""Shared fixtures: a real SQLite file per test, a MemorySystem on it, and both runtimes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from actors import MemorySystem
from actors.runtime import Runtime, ThreadedRuntime


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a fresh database file in the test's own temp dir."""
    return tmp_path / "memory.db"


@pytest.fixture
def system(db_path: Path) -> Iterator[MemorySystem]:
    """A MemorySystem on a fresh file, closed after the test."""
    with MemorySystem.open(db_path) as memory:
        yield memory


@pytest.fixture(params=["threaded", "simulated"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """Each test that takes it runs once per runtime: threaded (Pykka) and simulated."""
    from actors.sim import FaultPlan, SimRuntime

    rt: Runtime = (
        ThreadedRuntime() if request.param == "threaded" else SimRuntime(7, faults=FaultPlan.none())
    )
    yield rt
    for ref in pykka.ActorRegistry.get_all():
        if isinstance(rt, SimRuntime) and not ref.actor_urn.startswith("urn:sim:"):
            continue
        with contextlib.suppress(pykka.ActorDeadError):
            ref.stop(block=True, timeout=5)
    rt.close()
