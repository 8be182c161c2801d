"""The hub push benchmark: memories/s that N hub processes take from concurrent clients.

A harness, not an actor: it may use ``time`` and ``threading`` directly.
:func:`run_push_bench` measures one configuration (an engine and a number of
hub processes); ``benchmarks/hub_postgres.py`` runs the comparison of
``docs/performance.md`` (the SQLite hub, then 1, 2 and 4 processes on one
PostgreSQL database, each on a fresh database, same client load).

Everything is real and on loopback: the hubs are ``python -m actors.hub
serve`` processes, the clients are threads of this process, each with a
:class:`~actors.remote.HubClient` per hub process, pushing batches as the
SyncActor does (``POST /api/memories/batch``, 500 memories by default, its
``RemoteConfig.batch_size``). The load balancer is the simplest one: one
counter shared by all clients picks the process of each push, round-robin.
A push that fails is counted as an error and retried through the next
process (as a proxy with ``proxy_next_upstream`` would), at most 10 times.
At the end the hub must hold every memory it acknowledged, and none that
was not pushed.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import attrs
import click

from actors.bench import _stats
from actors.bench._hub import RunningHub, cpu_seconds, hub_processes, resident_mib, wire_batch
from actors.errors import HubError
from actors.hub.engines import is_postgres
from actors.hub.key_admin import add_key
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.wire import WireMemory

__all__ = ["PushRun", "run_push_bench"]

#: Tries per batch before the benchmark gives it up. A 503 (the store busy past
#: the hub's 10 s wait) is retried at once through the next process, as a
#: proxy would; the push may have been committed meanwhile, and the retry then
#: answers "unchanged".
_ATTEMPTS = 10


@attrs.define
class PushRun:
    """The figures of one configuration: ``processes`` hub processes on one engine."""

    engine: str
    processes: int
    clients: int
    tenants: int
    batch: int
    #: Memories acknowledged by the hub (and found in its counts afterwards).
    memories: int
    pushes: int
    #: Failed push attempts (each retried through the next process).
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: CPU seconds the hub processes used while the clients pushed (None off Linux).
    hub_cpu_seconds: float | None = None
    #: CPU seconds of the clients' process (this one) meanwhile.
    client_cpu_seconds: float | None = None
    #: The largest resident memory of a hub process after the pushes, in MiB.
    hub_rss_mib: float | None = None
    machine: dict[str, Any] = attrs.field(factory=dict)

    @property
    def per_second(self) -> float:
        return self.memories / self.seconds if self.seconds else 0.0

    @property
    def label(self) -> str:
        plural = "es" if self.processes > 1 else ""
        return f"{self.engine}, {self.processes} process{plural}"

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["per_second"] = self.per_second
        return data

    def line(self) -> str:
        return (
            f"{self.label}: {self.memories} memories in {self.seconds:.2f} s "
            f"({self.per_second:,.0f}/s), push p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"{self.pushes} pushes of {self.batch}, {self.errors} errors "
            f"({self.clients} clients, {self.tenants} tenant{'s' if self.tenants > 1 else ''})"
            + _cpu_note(self.hub_cpu_seconds, self.client_cpu_seconds)
            + ("" if self.hub_rss_mib is None else f", hub RSS {self.hub_rss_mib:.0f} MiB")
        )


def _cpu_note(hubs: float | None, clients: float | None) -> str:
    if hubs is None or clients is None:
        return ""
    return f", CPU s: hubs {hubs:.1f}, clients {clients:.1f}"


def _batches(
    memories: int, batch: int, clients: int, runtime: ThreadedRuntime
) -> list[list[list[WireMemory]]]:
    """Each client's batches, built before the clock starts; ``memories`` split evenly."""
    per_client: list[list[list[WireMemory]]] = [[] for _ in range(clients)]
    origins = [runtime.new_id() for _ in range(clients)]
    for number, first in enumerate(range(0, memories, batch)):
        client = number % clients
        count = min(batch, memories - first)
        per_client[client].append(
            wire_batch(
                f"client {client}", first, count, origin=origins[client], new_id=runtime.new_id
            )
        )
    return per_client


def run_push_bench(
    target: str,
    *,
    processes: int = 1,
    clients: int = 8,
    tenants: int = 1,
    batch: int = 500,
    memories: int = 40_000,
    hub_args: Sequence[str] = ("--embedder", "none"),
    workdir: str | None = None,
) -> PushRun:
    """Push ``memories`` through ``processes`` hub processes serving ``target``.

    ``target`` is a fresh SQLite file's path or the URL of an empty
    PostgreSQL database. Client ``n`` pushes as tenant ``n % tenants``.
    Raises :class:`click.ClickException` if the hub's counts differ from
    what it acknowledged.
    """
    if not 1 <= tenants <= clients:
        raise click.UsageError(f"tenants must be between 1 and the clients ({clients})")
    runtime = ThreadedRuntime()
    work = _batches(memories, batch, clients, runtime)
    runtime.close()
    keys = [add_key(target, f"bench-{n}") for n in range(tenants)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    acked = [0] * clients
    errors = [0] * clients
    with contextlib.ExitStack() as stack:
        tmp = workdir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="memory-actors-bench-hub-")
        )
        running = stack.enter_context(hub_processes(target, processes, tmp, hub_args))
        urls = [hub.url for hub in running]
        turn = itertools.count()  # the round-robin "load balancer", shared by every client
        start = threading.Barrier(clients + 1)

        def client(index: int) -> None:
            key = keys[index % tenants]
            hubs = [HubClient(url, key, timeout=60.0) for url in urls]
            try:
                start.wait()
                for items in work[index]:
                    for _ in range(_ATTEMPTS):
                        hub = hubs[next(turn) % len(hubs)]
                        began = time.perf_counter()
                        try:
                            hub.push(items)
                        except HubError:
                            errors[index] += 1
                            continue
                        latencies[index].append(time.perf_counter() - began)
                        acked[index] += len(items)
                        break
            finally:
                for hub in hubs:
                    hub.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        hub_cpu, client_cpu = _hub_cpu(running), time.process_time()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        hub_cpu = _since(hub_cpu, _hub_cpu(running))
        client_cpu = time.process_time() - client_cpu
        rss = [resident_mib(hub.pid) for hub in running]
        stored = 0
        for key in keys:
            with HubClient(urls[0], key, timeout=60.0) as check:
                stored += check.count().total
    # A batch given up after _ATTEMPTS failures may still have been committed.
    if not sum(acked) <= stored <= memories:
        raise click.ClickException(
            f"the hub acknowledged {sum(acked)} of {memories} memories but holds {stored}"
        )
    ordered = sorted(x for part in latencies for x in part)
    return PushRun(
        engine="postgresql" if is_postgres(target) else "sqlite",
        processes=processes,
        clients=clients,
        tenants=tenants,
        batch=batch,
        memories=sum(acked),
        pushes=len(ordered),
        errors=sum(errors),
        seconds=seconds,
        p50_ms=_stats.nearest_rank_ms(ordered, 0.50),
        p99_ms=_stats.nearest_rank_ms(ordered, 0.99),
        hub_cpu_seconds=hub_cpu,
        client_cpu_seconds=client_cpu,
        hub_rss_mib=max((r for r in rss if r is not None), default=None),
        machine=_stats.machine(),
    )


def _hub_cpu(running: Sequence[RunningHub]) -> float | None:
    """CPU seconds used so far by all the hub processes together (None off Linux)."""
    used = [cpu_seconds(hub.pid) for hub in running]
    return None if None in used else sum(u for u in used if u is not None)


def _since(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before
