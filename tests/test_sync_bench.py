"""The sync benchmark runs end to end at a tiny size and reports consistent figures."""

from __future__ import annotations

from actors.bench.sync import run_sync_bench


def test_the_sync_benchmark_runs_and_its_figures_add_up() -> None:
    """Tiny sizes: every section runs, counts match what was asked, no store fails."""
    lines: list[str] = []
    result = run_sync_bench(resync=300, push=64, threads=4, stores=5, echo=lines.append)
    assert result.ingest_memories == result.resync_memories == 300
    assert result.push_memories == 64
    assert result.resync_seconds > 0
    assert result.push_seconds > 0
    assert result.idle is not None
    assert result.during_resync is not None
    assert (result.idle.stores, result.idle.errors) == (20, 0)
    assert (result.during_resync.stores, result.during_resync.errors) == (20, 0)
    assert result.idle.p50_ms <= result.idle.p99_ms
    data = result.to_dict()
    assert data["push_per_second"] > 0
    assert data["resync_per_second"] > 0
    assert [line.split(":")[0] for line in lines] == [
        "hub ingest",
        "resync",
        "store latency idle",
        "store latency during resync",
        "push",
    ]
