"""The hub benchmarks at a tiny size: push throughput over N processes, resync on PostgreSQL.

Never a timing assertion. What must hold is that every configuration runs
end to end on real hub processes and a real PostgreSQL, the hub holds
exactly what it acknowledged, and nothing fails; so that
``benchmarks/hub_postgres.py`` (the figures of docs/performance.md, "Hub on
PostgreSQL") cannot rot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import ROOT
from pg_fixtures import TestPostgres

from actors.bench.hub import run_push_bench

pytestmark = pytest.mark.slow


def _script(postgres: TestPostgres, *args: str) -> Any:
    """Run benchmarks/hub_postgres.py on the suite's server; its JSON report."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "hub_postgres.py"),
            "--postgres",
            postgres.admin_url,
            "--json",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_pushes_spread_over_two_postgresql_hub_processes_all_land_once(
    postgres: TestPostgres, tmp_path: Path
) -> None:
    """Three clients, two tenants, batches round-robin over two processes: every acknowledged
    memory is counted by the hub, none failed, and the figures are consistent."""
    run = run_push_bench(
        postgres.new_database(),
        processes=2,
        clients=3,
        tenants=2,
        batch=40,
        memories=300,
        workdir=str(tmp_path),
    )
    assert (run.engine, run.processes, run.memories, run.errors) == ("postgresql", 2, 300, 0)
    assert run.pushes == 8  # 300 in batches of 40
    assert 0 < run.p50_ms <= run.p99_ms
    assert run.per_second > 0
    assert run.line().startswith("postgresql, 2 processes: 300 memories in ")
    if sys.platform == "linux":  # read from /proc
        assert run.hub_cpu_seconds is not None
        assert run.hub_cpu_seconds > 0
        assert run.hub_rss_mib is not None
        assert run.hub_rss_mib > 10  # a Python process with the hub loaded


def test_hub_postgres_push_compares_sqlite_with_one_and_two_postgresql_processes(
    postgres: TestPostgres,
) -> None:
    """``hub_postgres.py push``: the SQLite hub, then 1 and 2 PostgreSQL processes, each on a
    fresh database, same load; every memory acknowledged, no error."""
    report = _script(
        postgres,
        "push",
        "--processes",
        "1,2",
        "--memories",
        "200",
        "--batch",
        "50",
        "--clients",
        "2",
    )
    runs = report["runs"]
    assert [(r["engine"], r["processes"]) for r in runs] == [
        ("sqlite", 1),
        ("postgresql", 1),
        ("postgresql", 2),
    ]
    assert all((r["memories"], r["errors"], r["pushes"]) == (200, 0, 4) for r in runs)
    assert report["machine"]["postgresql"].startswith(("15", "16", "17", "18"))


def test_hub_postgres_resync_runs_bench_sync_on_both_engines_and_measures_their_disk(
    postgres: TestPostgres,
) -> None:
    """``hub_postgres.py resync``: bench-sync with the hub on SQLite, then on PostgreSQL; each
    replica pulls everything, and the disk report names the hub's tables."""
    report = _script(
        postgres,
        "resync",
        "--memories",
        "300",
        "--pushed",
        "40",
        "--threads",
        "2",
        "--stores",
        "5",
    )
    runs = report["runs"]
    assert [r["engine"] for r in runs] == ["sqlite", "postgresql"]
    for run in runs:
        assert run["resync_memories"] == 300
        assert run["push_memories"] == 40
        assert run["hub_memories"] == 300 + 2 * 10 + 40
        assert run["idle"]["errors"] == run["during_resync"]["errors"] == 0
    assert set(runs[0]["disk_bytes"]) == {"hub.db"}
    assert {"memories", "api_keys", "tenants"} <= set(runs[1]["disk_bytes"])
    assert runs[1]["disk_bytes"]["memories"] > 0
