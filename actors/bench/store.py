"""``memory-actors bench``: the store's write path against the design it replaces.

A harness, not an actor: it may use ``time`` and ``threading`` directly.
Five designs run side by side, each on a fresh file whose schema comes from
:func:`actors.migrations.migrate`, so tables, indexes, FTS5 triggers and the
outbox are identical:

- ``actor-group``: :class:`~actors.system.MemorySystem` with group commit;
- ``actor-async``: :class:`~actors.aio.AsyncMemorySystem` with group commit,
  the writers being asyncio tasks on one event loop instead of threads;
- ``actor-each``: the same with one commit per message;
- ``lock``: one ``sqlite3`` connection shared by all threads behind one
  ``threading.RLock``, one transaction per store, the same work per store
  (validation, dedup SELECT, memory INSERT, outbox INSERT, FTS5 triggers);
- ``raw``: one thread inserting the same rows in transactions of ~N rows,
  the upper bound for this file and disk.

The command that runs them (and the MCP section of :mod:`actors.bench.mcp`)
is :mod:`actors.bench.command`.

Writers time every call with ``time.perf_counter_ns``; every exception is
counted, and each run checks that the file holds exactly one memory row and
one outbox row per successful store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
from rich.table import Table

from actors._sqlite import Synchronous, connect
from actors.aio import AsyncMemorySystem
from actors.bench._common import content, count_rows, fmt, percentile_ms
from actors.model import (
    HybridClock,
    StoreReceipt,
    content_hash,
    normalize_content,
    normalize_metadata,
    normalize_namespace,
    normalize_tags,
)
from actors.runtime import ThreadedRuntime
from actors.system import Config, MemorySystem

__all__ = ["DESIGNS", "BenchResult", "fill_ratios", "median_run", "run_design", "store_table"]

DESIGNS = ("actor-group", "actor-async", "actor-each", "lock", "raw")
_MEMORY_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, sync_state"
)


@attrs.define
class BenchResult:
    """One design at one (sync, threads) point."""

    design: str
    sync: str
    threads: int
    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rows: int
    outbox_rows: int
    first_error: str = ""
    #: Filled in once the whole (sync, threads) group has run.
    x_lock_throughput: float | None = None
    x_lock_p99: float | None = None
    of_raw: float | None = None

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_ok(self) -> bool:
        return self.rows == self.ok and self.outbox_rows == self.ok

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["throughput"] = round(self.throughput, 1)
        data["rows_ok"] = self.rows_ok
        return data


# -- the writers ------------------------------------------------------------------


class _Writers:
    """N threads calling ``store(content)`` (a barrier starts them together), or N tasks."""

    def __init__(self, threads: int, ops: int | None, seconds: float | None, run: str) -> None:
        self.threads = threads
        self.ops = ops
        self.seconds = seconds
        self.run = run
        self.latencies: list[list[int]] = [[] for _ in range(threads)]
        self.errors = [0] * threads
        self.first_error = ""
        self._barrier = threading.Barrier(threads + 1)
        self._deadline = 0.0

    def go(self, store: Callable[[str], object]) -> float:
        workers = [
            threading.Thread(target=self._work, args=(i, store), name=f"bench-writer-{i}")
            for i in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        self._deadline = time.perf_counter() + (self.seconds or 0.0)
        start = time.perf_counter()
        self._barrier.wait()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start

    async def go_tasks(self, store: Callable[[str], Awaitable[object]]) -> float:
        """The same writers as asyncio tasks on the running loop (``threads`` of them)."""
        self._deadline = time.perf_counter() + (self.seconds or 0.0)
        start = time.perf_counter()
        await asyncio.gather(*(self._work_task(i, store) for i in range(self.threads)))
        return time.perf_counter() - start

    def _texts(self, index: int) -> Iterator[str]:
        """Writer ``index``'s contents, until its ops or the deadline run out."""
        op = 0
        while True:
            if self.ops is not None:
                if op >= self.ops:
                    return
            elif time.perf_counter() >= self._deadline:
                return
            yield content(self.run, index, op)
            op += 1

    def _failed(self, index: int, exc: Exception) -> None:
        # Every error is counted, never hidden.
        self.errors[index] += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"

    def _work(self, index: int, store: Callable[[str], object]) -> None:
        lat = self.latencies[index]
        clock = time.perf_counter_ns
        self._barrier.wait()
        for text in self._texts(index):
            t0 = clock()
            try:
                store(text)
            except Exception as exc:
                self._failed(index, exc)
                continue
            lat.append(clock() - t0)

    async def _work_task(self, index: int, store: Callable[[str], Awaitable[object]]) -> None:
        lat = self.latencies[index]
        clock = time.perf_counter_ns
        for text in self._texts(index):
            t0 = clock()
            try:
                await store(text)
            except Exception as exc:
                self._failed(index, exc)
                continue
            lat.append(clock() - t0)

    def result(self, design: str, sync: str, seconds: float, path: str) -> BenchResult:
        samples = sorted(ns for lat in self.latencies for ns in lat)
        rows, outbox = count_rows(path)
        return BenchResult(
            design=design,
            sync=sync,
            threads=self.threads,
            ok=len(samples),
            errors=sum(self.errors),
            seconds=seconds,
            p50_ms=percentile_ms(samples, 0.50),
            p99_ms=percentile_ms(samples, 0.99),
            rows=rows,
            outbox_rows=outbox,
            first_error=self.first_error,
        )


# -- the designs ------------------------------------------------------------------


def _run_actor(path: str, sync: Synchronous, writers: _Writers, *, group_commit: bool) -> float:
    config = Config(synchronous=sync, group_commit=group_commit)
    with MemorySystem.open(path, config=config) as system:
        return writers.go(system.store)


def _run_actor_async(path: str, sync: Synchronous, writers: _Writers) -> float:
    config = Config(synchronous=sync, group_commit=True)

    async def main() -> float:
        async with AsyncMemorySystem.open(path, config=config) as memory:
            return await writers.go_tasks(memory.store)

    return asyncio.run(main())


class _LockStore:
    """The design we replace: one connection shared by all threads behind one RLock.

    Per store it does what the facade plus the StoreActor do: validate and
    normalise on the caller's side, then under the lock one ``BEGIN
    IMMEDIATE`` transaction with the dedup SELECT, the memory INSERT (FTS5
    triggers fire) and the outbox INSERT, committed before it returns.
    """

    def __init__(self, path: str, sync: Synchronous) -> None:
        self.conn = connect(path, check_same_thread=False)
        self.conn.execute(f"PRAGMA synchronous = {sync}")
        self.lock = threading.RLock()
        self.runtime = ThreadedRuntime()  # the same id minting as the actor system
        self.origin = self.runtime.new_id()
        self.clock = HybridClock()

    def close(self) -> None:
        self.conn.close()
        self.runtime.close()

    def store(self, content: str) -> StoreReceipt:
        text = normalize_content(content)
        digest = content_hash(text)
        ns = normalize_namespace(None)
        tags = normalize_tags(None)
        meta = normalize_metadata(None)
        with self.lock:
            db = self.conn
            db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                existing = db.execute(
                    "SELECT id, tags FROM memories "
                    "WHERE namespace = ? AND content_hash = ? AND deleted = 0",
                    (ns, digest),
                ).fetchone()
                if existing is not None:
                    db.execute("COMMIT")
                    return StoreReceipt(existing[0], ns, True, tags, "committed")
                memory_id = self.runtime.new_id()
                version = self.clock.tick(int(now * 1000))
                db.execute(
                    f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,0,?)",
                    (
                        memory_id,
                        ns,
                        text,
                        digest,
                        json.dumps(tags),
                        meta,
                        now,
                        now,
                        version,
                        self.origin,
                        "committed",
                    ),
                )
                db.execute(
                    "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, ?, ?, ?)",
                    (memory_id, "upsert", version, now),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return StoreReceipt(memory_id, ns, False, tags, "committed")


def _run_lock(path: str, sync: Synchronous, writers: _Writers) -> float:
    store = _LockStore(path, sync)
    try:
        return writers.go(store.store)
    finally:
        store.close()


def _run_raw(
    path: str, sync: Synchronous, threads: int, ops: int | None, seconds: float | None, run: str
) -> BenchResult:
    """One thread, one connection, one commit per ``threads`` rows.

    Rows (ids, versions, hashes) are prepared outside the timed transactions:
    the figure is what SQLite and the disk alone can do with this schema.
    Its latencies are per transaction (per batch), not per row.
    """
    conn = connect(path)
    conn.execute(f"PRAGMA synchronous = {sync}")
    runtime = ThreadedRuntime()
    origin = runtime.new_id()
    clock = HybridClock()
    batch_size = max(1, threads)

    def rows_for(start: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        now = time.time()
        memories, outbox = [], []
        for op in range(start, start + batch_size):
            text = content(run, op % batch_size, op // batch_size)
            memory_id = runtime.new_id()
            version = clock.tick(int(now * 1000))
            memories.append(
                (
                    memory_id,
                    "default",
                    text,
                    content_hash(text),
                    "[]",
                    "{}",
                    now,
                    now,
                    version,
                    origin,
                    "committed",
                )
            )
            outbox.append((memory_id, "upsert", version, now))
        return memories, outbox

    total = None if ops is None else ops * threads
    latencies: list[int] = []
    errors = 0
    first_error = ""
    done = 0
    busy_ns = 0  # time inside transactions only: preparing rows is not the ceiling's work
    budget_ns = int((seconds or 0.0) * 1e9)
    insert_memory = f"INSERT INTO memories({_MEMORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,0,?)"
    insert_outbox = "INSERT INTO outbox(memory_id, op, version, enqueued_at) VALUES (?, ?, ?, ?)"
    try:
        while (done < total) if total is not None else (busy_ns < budget_ns):
            memories, outbox = rows_for(done)
            if total is not None:
                memories, outbox = memories[: total - done], outbox[: total - done]
            t0 = time.perf_counter_ns()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert_memory, memories)
                conn.executemany(insert_outbox, outbox)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                errors += len(memories)
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                busy_ns += time.perf_counter_ns() - t0
                continue
            spent = time.perf_counter_ns() - t0
            busy_ns += spent
            latencies.append(spent)
            done += len(memories)
        elapsed = busy_ns / 1e9
    finally:
        conn.close()
        runtime.close()
    latencies.sort()
    rows, outbox_rows = count_rows(path)
    return BenchResult(
        design="raw",
        sync=sync,
        threads=threads,
        ok=done,
        errors=errors,
        seconds=elapsed,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        rows=rows,
        outbox_rows=outbox_rows,
        first_error=first_error,
    )


def run_design(
    design: str,
    path: str,
    sync: Synchronous,
    threads: int,
    *,
    ops: int | None,
    seconds: float | None,
) -> BenchResult:
    """Run one design on the fresh file at ``path`` and check its rows."""
    run = f"{design}-{sync}-{threads}-{time.time_ns()}"
    if design == "raw":
        return _run_raw(path, sync, threads, ops, seconds, run)
    writers = _Writers(threads, ops, seconds, run)
    if design == "actor-group":
        elapsed = _run_actor(path, sync, writers, group_commit=True)
    elif design == "actor-async":
        elapsed = _run_actor_async(path, sync, writers)
    elif design == "actor-each":
        elapsed = _run_actor(path, sync, writers, group_commit=False)
    elif design == "lock":
        elapsed = _run_lock(path, sync, writers)
    else:
        raise ValueError(f"unknown design {design!r}; choose from {', '.join(DESIGNS)}")
    return writers.result(design, sync, elapsed, path)


def fill_ratios(group: list[BenchResult]) -> None:
    """Set each design's ratios to the lock baseline and the raw ceiling of the same point."""
    by = {r.design: r for r in group}
    lock = by.get("lock")
    raw = by.get("raw")
    for r in group:
        if lock is not None and lock.throughput > 0:
            r.x_lock_throughput = r.throughput / lock.throughput
        if lock is not None and lock.p99_ms > 0 and r.design != "raw":
            r.x_lock_p99 = r.p99_ms / lock.p99_ms
        if raw is not None and raw.throughput > 0:
            r.of_raw = r.throughput / raw.throughput


def median_run(runs: list[BenchResult]) -> BenchResult:
    """The run with the median throughput (errors and row checks summed over all)."""
    ordered = sorted(runs, key=lambda r: r.throughput)
    chosen = ordered[(len(ordered) - 1) // 2]
    if any(not r.rows_ok for r in runs):
        bad = next(r for r in runs if not r.rows_ok)
        chosen = attrs.evolve(chosen, rows=bad.rows, outbox_rows=bad.outbox_rows, ok=bad.ok)
    errors = sum(r.errors for r in runs)
    first = next((r.first_error for r in runs if r.first_error), "")
    return attrs.evolve(chosen, errors=errors, first_error=first)


def store_table(results: list[BenchResult], title: str) -> Table:
    """The store section's table, one row per design and point."""
    table = Table(title=title)
    for name, justify in (
        ("sync", "left"),
        ("threads", "right"),
        ("design", "left"),
        ("stores/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
        ("× lock thr", "right"),
        ("× lock p99", "right"),
        ("of raw", "right"),
        ("rows", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(
            r.sync,
            str(r.threads),
            r.design,
            f"{r.throughput:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            fmt(r.x_lock_throughput, ".2f"),
            fmt(r.x_lock_p99, ".2f"),
            "—" if r.of_raw is None else f"{r.of_raw:.0%}",
            "ok" if r.rows_ok else f"MISMATCH {r.rows}/{r.outbox_rows} vs {r.ok}",
        )
    return table
