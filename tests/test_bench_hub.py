"""The hub benchmarks at a tiny size: push throughput over N processes, resync and semantic
recall on PostgreSQL.

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
from hub_fixtures import ROOT, needs_minilm
from pg_fixtures import TestPostgres

from actors.bench.hub import run_push_bench

pytestmark = pytest.mark.slow


def _benchmark(script: str, *args: str, timeout: float = 240) -> Any:
    """Run benchmarks/``script`` with ``args``; the JSON report it prints."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _script(postgres: TestPostgres, *args: str) -> Any:
    """Run benchmarks/hub_postgres.py on the suite's server; its JSON report."""
    return _benchmark("hub_postgres.py", "--postgres", postgres.admin_url, "--json", *args)


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


@needs_minilm
def test_hub_recall_pg_measures_the_hubs_own_ef_search_then_the_pinned_sweep() -> None:
    """``hub_recall_pg.py`` at 2,000 vectors (its own PostgreSQL, a real hub process over
    HTTP): the main recall@10 is the hub's default ``ef_search`` (200 for a small table, read
    from the catalog's size estimate and the index's graph), then each ``--ef-search`` value
    pinned."""
    report = _benchmark(
        "hub_recall_pg.py",
        *("--vectors", "2000", "--queries", "10", "--maintenance-work-mem", "64MB"),
        *("--exact-sql-queries", "1", "--skip-exact-http", "--ef-search", "1000"),
        timeout=300,
    )
    own, pinned = report["hnsw_vs_exact"], report["hnsw_vs_exact_ef1000"]
    assert (own["ef_search"], own["ef_search_rule"]) == (200, "hub default")
    assert (pinned["ef_search"], pinned["ef_search_rule"]) == (1000, "pinned")
    assert own["estimated_vectors"] == pytest.approx(2000, rel=0.05)
    assert own["index_ef_construction"] == 128
    for quality in (own, pinned):
        assert any("Index Scan using vectors_hnsw_384_" in line for line in quality["plan"])
        for shape in ("plain", "namespace"):
            # 2,000 vectors: the graph finds (nearly) all of the true top 10.
            assert quality[shape]["recall_at_10"] >= 0.95
            assert quality[shape]["sql_hnsw_k100"]["n"] == 10
    assert own["plain"]["sql_exact_k100"]["n"] == 1
    assert report["hnsw_http"]["recall_limit10_plain"]["n"] == 200


@needs_minilm
@pytest.mark.timeout(600)
def test_hub_recall_pg_keeps_its_database_for_a_second_run_and_times_the_phases(
    tmp_path: Path,
) -> None:
    """``--keep``: the second run reuses the database the first built (no load, no build),
    with the cache size asked for; both split an HTTP recall's time into its phases."""
    keep = tmp_path / "pg"
    common = ("--vectors", "2000", "--queries", "5", "--exact-sql-queries", "0")
    common += ("--http-queries", "20", "--keep")
    first = _benchmark(
        "hub_recall_pg.py",
        *common,
        str(keep),
        *("--maintenance-work-mem", "64MB", "--skip-exact-http", "--http-rounds", "2"),
        timeout=300,
    )
    assert "to_pgvector_and_hnsw_build_s" in first
    assert first["hnsw_http"]["recall_limit10_namespace_round2"]["n"] == 20
    second = _benchmark(
        "hub_recall_pg.py", *common, str(keep), "--shared-buffers", "256MB", timeout=300
    )
    assert "load_s" not in second
    assert "to_pgvector_and_hnsw_build_s" not in second
    assert second["shared_buffers"] == "256MB"
    assert second["hnsw_vs_exact"]["plain"]["recall_at_10"] >= 0.95
    for report in (first, second):
        for shape in ("plain", "namespace"):
            phases = report["phases"][shape]
            assert set(phases) == {"embed_query", "engine_recall", "vector_search"}
            assert all(phase["n"] == 20 for phase in phases.values())
            # The vector search is a part of the engine's recall, on the same queries.
            assert phases["vector_search"]["p50_ms"] <= phases["engine_recall"]["p50_ms"] * 1.5
