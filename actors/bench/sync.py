"""The sync benchmark: push throughput, full resync, and store latency during a resync.

A harness, not an actor: it may use ``time``, ``threading`` and ``subprocess``
directly. Run it as ``memory-actors bench-sync`` or ``python -m actors.bench.sync``
(``--help`` for the knobs); :func:`run_sync_bench` is the same from Python.

Everything is real and on loopback: the hub is ``python -m actors.hub serve``
on a fresh file in a temporary directory (or, with ``--database URL``, on an
empty PostgreSQL database), the replicas are
:class:`~actors.system.MemorySystem` instances in this process with the
default :class:`~actors.sync_model.RemoteConfig` (only the URL and key set).

- ``hub ingest``: the hub pre-loaded through :class:`~actors.remote.HubClient`
  pushes of 500 memories (what the hub takes from one client at full speed).
- ``push``: ``push`` memories stored locally with no remote (their outbox rows
  wait), then the file opened with the remote: from open until the SyncActor
  has pushed them all (checked against the hub's count).
- ``resync``: a fresh replica opened against the hub holding ``resync``
  memories: from open until the replica holds all of them; then until its
  first full resync (the digest comparison, run once it caught up) is done.
- ``store latency``: ``threads`` threads × ``stores`` stores each, timed per
  call: once on a synced replica with nothing else going on (*idle*), once on
  a fresh replica opened against the same hub, started at once, so that
  every store runs while the replica pulls the whole hub (*during resync*).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import click

from actors.bench import _stats
from actors.bench._hub import FILLER, hub_processes, wait_for, wire_batch
from actors.hub.cli import require_hub_extra
from actors.hub.key_admin import add_key
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.sync_model import RemoteConfig
from actors.system import Config, MemorySystem

__all__ = ["LatencyRun", "SyncBenchResult", "bench_sync", "run_sync_bench"]


@attrs.define
class LatencyRun:
    """Store latencies of one run of ``threads`` × ``stores`` stores."""

    label: str
    stores: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: Stores that finished while the replica was still pulling (the resync run).
    overlapped: int | None = None

    @property
    def per_second(self) -> float:
        return self.stores / self.seconds if self.seconds else 0.0


@attrs.define
class SyncBenchResult:
    """The figures of one benchmark run."""

    #: The hub's engine: "sqlite" or "postgresql".
    engine: str = "sqlite"
    ingest_memories: int = 0
    ingest_seconds: float = 0.0
    push_memories: int = 0
    push_seconds: float = 0.0
    resync_memories: int = 0
    resync_seconds: float = 0.0
    #: Until the replica's first full resync (digest comparison) also finished.
    resync_compared_seconds: float = 0.0
    idle: LatencyRun | None = None
    during_resync: LatencyRun | None = None
    machine: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["push_per_second"] = _rate(self.push_memories, self.push_seconds)
        data["resync_per_second"] = _rate(self.resync_memories, self.resync_seconds)
        data["ingest_per_second"] = _rate(self.ingest_memories, self.ingest_seconds)
        return data


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else 0.0


def _preload(url: str, key: str, count: int, prefix: str) -> float:
    """Push ``count`` memories to the hub in batches of 500; returns the seconds it took."""
    runtime = ThreadedRuntime()
    origin = runtime.new_id()
    started = time.perf_counter()
    with HubClient(url, key, timeout=60.0) as client:
        client.auth_check()
        for first in range(0, count, 500):
            batch = min(500, count - first)
            client.push(wire_batch(prefix, first, batch, origin=origin, new_id=runtime.new_id))
    runtime.close()
    return time.perf_counter() - started


def _store_threads(
    system: MemorySystem, label: str, threads: int, stores: int, prefix: str
) -> tuple[list[float], list[float], int]:
    """Run ``threads`` × ``stores`` stores; (sorted latencies, finish times, errors)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    finished: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        start.wait()
        for op in range(stores):
            began = time.perf_counter()
            try:
                system.store(f"{prefix} {label} writer {index} store {op}: {FILLER}")
            except Exception:
                errors[index] += 1
            ended = time.perf_counter()
            latencies[index].append(ended - began)
            finished[index].append(ended)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    flat = sorted(x for part in latencies for x in part)
    ends = sorted(x for part in finished for x in part)
    return flat, ends, sum(errors)


def _pulled(system: MemorySystem) -> int:
    # The SyncActor's own counter: cheap, unlike count(), which scans the table on
    # the store's thread and would slow the very resync it watches.
    report = system.sync_report()
    return report.pulled if report is not None else 0


def _compared(system: MemorySystem) -> bool:
    report = system.sync_report()
    return report is not None and report.last_resync_at is not None


def run_sync_bench(
    *,
    resync: int = 100_000,
    push: int = 20_000,
    threads: int = 32,
    stores: int = 100,
    hub_args: Sequence[str] = (),
    database: str | None = None,
    workdir: str | None = None,
    echo: Callable[[str], None] = print,
) -> SyncBenchResult:
    """Run every section once and return (and ``echo``) the figures.

    The hub serves a fresh SQLite file, or ``database``: the URL of an empty
    PostgreSQL database (the hub migrates it).
    """
    result = SyncBenchResult(
        engine="postgresql" if database else "sqlite", machine=_stats.machine()
    )
    tmp = workdir or tempfile.mkdtemp(prefix="memory-actors-bench-sync-")
    try:
        hub_db = database or os.path.join(tmp, "hub.db")
        with hub_processes(hub_db, 1, tmp, hub_args) as (hub,):
            url = hub.url
            key = add_key(hub_db, "bench")

            result.ingest_memories = resync
            result.ingest_seconds = _preload(url, key, resync, "preloaded")
            echo(
                f"hub ingest: {resync} memories in {result.ingest_seconds:.2f} s "
                f"({_rate(resync, result.ingest_seconds):,.0f}/s, HubClient, 500 per push)"
            )

            remote = RemoteConfig(url, key)
            # Resync: a fresh replica, from open until it holds everything.
            started = time.perf_counter()
            with MemorySystem.open(
                os.path.join(tmp, "resync.db"), config=Config(remote=remote)
            ) as r:
                wait_for(lambda: _pulled(r) >= resync, "the resync", 600.0)
                result.resync_seconds = time.perf_counter() - started
                wait_for(lambda: _compared(r), "the digest comparison", 600.0)
                result.resync_compared_seconds = time.perf_counter() - started
                result.resync_memories = r.count().total
                echo(
                    f"resync: {result.resync_memories} memories in {result.resync_seconds:.2f} s "
                    f"({_rate(result.resync_memories, result.resync_seconds):,.0f}/s); "
                    f"digests compared at {result.resync_compared_seconds:.2f} s"
                )
                # Idle: the same replica, synced, nothing else going on.
                began = time.perf_counter()
                lat, _, errors = _store_threads(r, "idle", threads, stores, "bench")
                result.idle = LatencyRun(
                    "idle",
                    len(lat),
                    errors,
                    time.perf_counter() - began,
                    _stats.nearest_rank_ms(lat, 0.50),
                    _stats.nearest_rank_ms(lat, 0.99),
                )
                wait_for(lambda: r.count().outbox_pending == 0, "the idle stores to push", 120.0)
            echo(_latency_line(result.idle))

            # During a resync: a fresh replica storing from the moment it opens.
            expected = resync + threads * stores
            path = os.path.join(tmp, "during.db")
            with MemorySystem.open(path, config=Config(remote=remote)) as d:
                began = time.perf_counter()
                lat, ends, errors = _store_threads(d, "during", threads, stores, "bench")
                seconds = time.perf_counter() - began
                pull_end = time.perf_counter()
                if _pulled(d) < expected:
                    wait_for(lambda: _pulled(d) >= expected, "the second resync", 600.0)
                    pull_end = time.perf_counter()
                result.during_resync = LatencyRun(
                    "during resync",
                    len(lat),
                    errors,
                    seconds,
                    _stats.nearest_rank_ms(lat, 0.50),
                    _stats.nearest_rank_ms(lat, 0.99),
                    overlapped=sum(1 for end in ends if end < pull_end),
                )
            echo(_latency_line(result.during_resync))

            # Push: stored locally first (no remote), then drained into the hub.
            push_key = add_key(hub_db, "bench-push")
            path = os.path.join(tmp, "push.db")
            per_thread = max(1, push // threads)
            with MemorySystem.open(path) as local:
                _store_threads(local, "push", threads, per_thread, "outbox")
            result.push_memories = per_thread * threads
            started = time.perf_counter()
            config = Config(remote=RemoteConfig(url, push_key))
            with MemorySystem.open(path, config=config) as p:
                wait_for(lambda: p.count().outbox_pending == 0, "the push", 600.0)
                result.push_seconds = time.perf_counter() - started
            with HubClient(url, push_key, timeout=30.0) as client:
                landed = client.count().total
            if landed != result.push_memories:
                raise click.ClickException(f"pushed {result.push_memories}, the hub holds {landed}")
            echo(
                f"push: {result.push_memories} memories in {result.push_seconds:.2f} s "
                f"({_rate(result.push_memories, result.push_seconds):,.0f}/s, SyncActor, "
                "default batch)"
            )
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _latency_line(run: LatencyRun | None) -> str:
    if run is None:
        return ""
    overlap = "" if run.overlapped is None else f", {run.overlapped} before the pull ended"
    return (
        f"store latency {run.label}: p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
        f"{run.stores} stores, {run.errors} errors, {run.per_second:,.0f}/s{overlap}"
    )


@click.command("bench-sync")
@click.option("--resync", default=100_000, show_default=True, help="Memories in the hub.")
@click.option("--push", default=20_000, show_default=True, help="Memories pushed.")
@click.option("--threads", default=32, show_default=True, help="Store threads.")
@click.option("--stores", default=100, show_default=True, help="Stores per thread.")
@click.option(
    "--hub-arg",
    "hub_args",
    multiple=True,
    help="Extra `hub serve` option (repeat), e.g. --hub-arg=--embedder --hub-arg=none.",
)
@click.option(
    "--database",
    metavar="URL",
    help="Run the hub on this empty PostgreSQL database instead of a fresh SQLite file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON document.")
def bench_sync(
    resync: int,
    push: int,
    threads: int,
    stores: int,
    hub_args: tuple[str, ...],
    database: str | None,
    as_json: bool,
) -> None:
    """Push throughput, full resync, and store latency during a resync, against a real hub."""
    require_hub_extra()  # before a hub process fails to start for the same reason
    echo: Callable[[str], None] = (lambda line: None) if as_json else click.echo
    result = run_sync_bench(
        resync=resync,
        push=push,
        threads=threads,
        stores=stores,
        hub_args=hub_args,
        database=database,
        echo=echo,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    bench_sync()
