"""Shared fixtures: a real SQLite file per test, a MemorySystem on it, and both runtimes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import MemorySystem
from actors.runtime import Runtime, ThreadedRuntime
from actors.system import SEMANTIC_ENV_VAR

# Before anything imports NumPy: one BLAS thread per process. On this 2-core machine,
# shared, OpenBLAS's own pool made embedding 16 texts take 17.6 s instead of 0.7 s;
# the EmbeddingActor caps it the same way when it is the first to import NumPy
# (actors/embedding.py), which collection (hub tests import NumPy) prevents here.
for _knob in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_knob, "1")


@pytest.fixture(autouse=True, scope="session")
def _semantic_recall_opt_in() -> Iterator[None]:
    """The suite's many systems run keyword-only; the tests of local semantic recall opt in.

    With the model installed every MemorySystem would load it (~0.4 s, 90 MB)
    and embed its memories in the background, on a 2-core machine shared by
    the whole suite. ``tests/test_local_semantic.py`` passes
    ``Config(semantic=True)`` (and its subprocesses set the variable).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SEMANTIC_ENV_VAR, "off")
        yield


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


# -- the hub's engines: SQLite files and a real PostgreSQL -------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """The session's PostgreSQL (``tests/pg_fixtures.py``): started on first use, stopped at end."""
    import tempfile

    from pg_fixtures import TestPostgres

    server = TestPostgres.from_environment(Path(tempfile.mkdtemp(prefix="ma-pg-")))
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def hub_engine(request: pytest.FixtureRequest) -> str:
    """Each hub test that takes it runs once per engine: SQLite and PostgreSQL."""
    return str(request.param)


@pytest.fixture
def hub_db(hub_engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """A fresh hub database on ``hub_engine``: a file in the test's dir, or a new database's URL."""
    from pg_fixtures import hub_target

    postgres = request.getfixturevalue("postgres") if hub_engine == "postgres" else None
    return hub_target(hub_engine, tmp_path, postgres)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real hub process per module and engine (hashing embedder), stopped at the end.

    Each test works in tenants of its own on it. A module that needs another
    hub defines its own ``hub`` fixture.
    """
    from hub_fixtures import HubProcess
    from pg_fixtures import target_for

    directory = tmp_path_factory.mktemp("hub")
    with HubProcess.running(target_for(request, directory), log_path=directory / "hub.log") as proc:
        yield proc
