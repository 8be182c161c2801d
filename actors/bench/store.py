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

Writers time every call with ``time.perf_counter_ns``; every exception is
counted, and each run checks that the file holds exactly one memory row and
one outbox row per successful store.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import attrs
import click
from rich.console import Console
from rich.table import Table

from actors._sqlite import Synchronous, connect
from actors.aio import AsyncMemorySystem
from actors.bench import _stats
from actors.migrations import migrate
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

__all__ = ["BenchResult", "McpResult", "bench", "run_design", "run_mcp"]

DESIGNS = ("actor-group", "actor-async", "actor-each", "lock", "raw")
_MEMORY_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, sync_state"
)
_FILLER = (
    "The agent learned that the build needs Python 3.11, that tests run with "
    "pytest -q, and that the user prefers short answers with code first."
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


def _content(run: str, writer: int, op: int) -> str:
    return f"bench {run} writer {writer} op {op}: {_FILLER}"


def _percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in milliseconds (0 if none)."""
    sample = _stats.nearest_rank(sorted_ns, q)
    return 0.0 if sample is None else sample / 1e6


def _fresh_db(workdir: str, name: str) -> str:
    path = os.path.join(workdir, f"{name}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    migrate(path, now=time.time)
    return path


def _count_rows(path: str) -> tuple[int, int]:
    conn = connect(path)
    try:
        rows: int = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        outbox: int = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    return rows, outbox


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
            yield _content(self.run, index, op)
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
        rows, outbox = _count_rows(path)
        return BenchResult(
            design=design,
            sync=sync,
            threads=self.threads,
            ok=len(samples),
            errors=sum(self.errors),
            seconds=seconds,
            p50_ms=_percentile(samples, 0.50),
            p99_ms=_percentile(samples, 0.99),
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
            text = _content(run, op % batch_size, op // batch_size)
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
    rows, outbox_rows = _count_rows(path)
    return BenchResult(
        design="raw",
        sync=sync,
        threads=threads,
        ok=done,
        errors=errors,
        seconds=elapsed,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
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


# -- MCP over stdio -------------------------------------------------------------------


@attrs.define
class McpResult:
    """``memory_store`` calls over real stdio against one server, at one concurrency."""

    server: str
    concurrency: int
    calls: int
    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: Memory rows found afterwards, and how many there should be (None: the no-op server).
    rows: int | None = None
    expected_rows: int | None = None
    first_error: str = ""
    x_noop: float | None = None

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_ok(self) -> bool:
        return self.rows == self.expected_rows

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["calls_per_s"] = round(self.throughput, 1)
        data["rows_ok"] = self.rows_ok
        return data


#: Calls made before timing starts (imports, first-call caches, the first fsync).
_MCP_WARMUP = 20


def _server_params(server: str, path: str, sync: str) -> Any:
    from mcp import StdioServerParameters

    env = {key: value for key, value in os.environ.items() if key != "MEMORY_ACTORS_DB"}
    if server == "memory":
        code = "from actors.cli import main; main()"
        args = ["-c", code, "--db", path, "--synchronous", sync, "serve"]
    else:
        args = ["-m", "actors.bench.noop_server"]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def _mcp_session(
    server: str, path: str, sync: str, calls: int, concurrency: int, errlog_path: str
) -> McpResult:
    per_task = max(1, calls // concurrency)
    result = McpResult(
        server=server,
        concurrency=concurrency,
        calls=per_task * concurrency,
        ok=0,
        errors=0,
        seconds=0.0,
        p50_ms=0.0,
        p99_ms=0.0,
    )
    try:
        latencies, elapsed = await _mcp_calls(result, path, sync, per_task, errlog_path)
    except Exception as exc:  # the server did not start or the session broke: say so
        result.errors = result.calls
        result.first_error = f"session failed: {exc!r}; server log: {_tail(errlog_path)}"
        return result
    result.ok = len(latencies)
    result.seconds = elapsed
    result.p50_ms = _percentile(latencies, 0.50)
    result.p99_ms = _percentile(latencies, 0.99)
    if server == "memory":
        # The server has exited (stdin closed): every acknowledged store must be on disk.
        result.rows, _ = _count_rows(path)
        result.expected_rows = _MCP_WARMUP + result.ok
    return result


async def _mcp_calls(
    result: McpResult, path: str, sync: str, per_task: int, errlog_path: str
) -> tuple[list[int], float]:
    """Warm up, then ``per_task`` calls from each of ``result.concurrency`` tasks on one client."""
    import anyio
    from mcp import Client, stdio_client

    params = _server_params(result.server, path, sync)
    run = f"mcp-{result.server}-{result.concurrency}-{time.time_ns()}"
    latencies: list[int] = []
    with open(errlog_path, "a", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            for i in range(_MCP_WARMUP):
                await client.call_tool("memory_store", {"content": _content(run, -1, i)})

            async def worker(index: int) -> None:
                clock = time.perf_counter_ns
                for op in range(per_task):
                    t0 = clock()
                    try:
                        answer = await client.call_tool(
                            "memory_store", {"content": _content(run, index, op)}
                        )
                    except Exception as exc:  # counted, never hidden
                        result.errors += 1
                        result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                        continue
                    if answer.is_error:
                        result.errors += 1
                        result.first_error = result.first_error or f"tool error: {answer.content}"
                        continue
                    latencies.append(clock() - t0)

            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for index in range(result.concurrency):
                    tasks.start_soon(worker, index)
            elapsed = time.perf_counter() - start
    latencies.sort()
    return latencies, elapsed


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return " | ".join(fh.read().strip().splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(unreadable)"


def run_mcp(
    workdir: str, sync: str, calls: int, concurrencies: Sequence[int], *, repeat: int = 1
) -> list[McpResult]:
    """``memory_store`` over stdio, ``memory-actors serve`` vs. the no-op server.

    Repeats alternate the two servers; the median-throughput run of each is kept.
    """
    import anyio

    results: list[McpResult] = []
    errlog = os.path.join(workdir, "mcp-servers.log")
    for concurrency in concurrencies:
        runs: dict[str, list[McpResult]] = {"noop": [], "memory": []}
        for attempt in range(repeat):
            for server in ("noop", "memory"):
                path = _fresh_db(workdir, f"mcp-{server}-{concurrency}-{attempt}")
                runs[server].append(
                    anyio.run(_mcp_session, server, path, sync, calls, concurrency, errlog)
                )
        pair = {server: _median_mcp(found) for server, found in runs.items()}
        if pair["noop"].throughput > 0:
            pair["memory"].x_noop = pair["memory"].throughput / pair["noop"].throughput
        results.extend((pair["noop"], pair["memory"]))
    return results


def _median_mcp(runs: list[McpResult]) -> McpResult:
    """The median-throughput run; errors summed, a row mismatch in any run kept."""
    chosen = sorted(runs, key=lambda r: r.throughput)[(len(runs) - 1) // 2]
    bad = next((r for r in runs if r.expected_rows is not None and not r.rows_ok), None)
    if bad is not None:
        chosen = attrs.evolve(chosen, rows=bad.rows, expected_rows=bad.expected_rows)
    first = next((r.first_error for r in runs if r.first_error), "")
    return attrs.evolve(chosen, errors=sum(r.errors for r in runs), first_error=first)


def _mcp_table(results: list[McpResult], title: str) -> Table:
    table = Table(title=title)
    for name, justify in (
        ("server", "left"),
        ("in flight", "right"),
        ("calls", "right"),
        ("calls/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
        ("× no-op", "right"),
        ("rows", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        rows = "—"
        if r.expected_rows is not None:
            rows = "ok" if r.rows_ok else f"MISMATCH {r.rows} vs {r.expected_rows}"
        table.add_row(
            "memory-actors serve" if r.server == "memory" else "no-op MCPServer",
            str(r.concurrency),
            str(r.calls),
            f"{r.throughput:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            _fmt(r.x_noop, ".2f"),
            rows,
        )
    return table


def _fill_ratios(group: list[BenchResult]) -> None:
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


def _median_run(runs: list[BenchResult]) -> BenchResult:
    """The run with the median throughput (errors and row checks summed over all)."""
    ordered = sorted(runs, key=lambda r: r.throughput)
    chosen = ordered[(len(ordered) - 1) // 2]
    if any(not r.rows_ok for r in runs):
        bad = next(r for r in runs if not r.rows_ok)
        chosen = attrs.evolve(chosen, rows=bad.rows, outbox_rows=bad.outbox_rows, ok=bad.ok)
    errors = sum(r.errors for r in runs)
    first = next((r.first_error for r in runs if r.first_error), "")
    return attrs.evolve(chosen, errors=errors, first_error=first)


def _csv(kind: Callable[[str], Any], choices: Sequence[str] | None = None) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        out = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if choices is not None and item.upper() not in choices:
                raise click.BadParameter(f"{item!r} is not one of {', '.join(choices)}")
            try:
                out.append(kind(item))
            except ValueError:
                raise click.BadParameter(f"{item!r} is not valid") from None
        if not out:
            raise click.BadParameter("give at least one value")
        return tuple(out)

    return parse


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _table(results: list[BenchResult], title: str) -> Table:
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
            _fmt(r.x_lock_throughput, ".2f"),
            _fmt(r.x_lock_p99, ".2f"),
            "—" if r.of_raw is None else f"{r.of_raw:.0%}",
            "ok" if r.rows_ok else f"MISMATCH {r.rows}/{r.outbox_rows} vs {r.ok}",
        )
    return table


@click.command("bench")
@click.option(
    "--threads",
    "threads",
    callback=_csv(int),
    default="1,8,32,64",
    show_default=True,
    help="Writer thread counts, comma-separated.",
)
@click.option(
    "--sync",
    "syncs",
    callback=_csv(str.upper, ("OFF", "NORMAL", "FULL", "EXTRA")),
    default="FULL,NORMAL",
    show_default=True,
    help="PRAGMA synchronous modes, comma-separated (the MCP section uses the first).",
)
@click.option(
    "--designs",
    callback=_csv(str.lower, tuple(d.upper() for d in DESIGNS)),
    default=",".join(DESIGNS),
    show_default=True,
    help="Designs to run, comma-separated.",
)
@click.option("--ops", type=click.IntRange(min=1), help="Stores per writer thread (fixed work).")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.05),
    help="Run each design for this long instead of --ops (default 3; 0.5 with --quick).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs per point, interleaved across designs; the median-throughput run is reported.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A small run: threads 1,8,64, 0.5 s per design, no MCP section unless --mcp.",
)
@click.option(
    "--mcp/--no-mcp",
    "mcp",
    default=None,
    help="Also time memory_store over stdio: memory-actors serve vs. a no-op MCP server "
    "(default: on, off with --quick).",
)
@click.option("--mcp-only", is_flag=True, help="Run only the MCP section.")
@click.option(
    "--mcp-calls",
    type=click.IntRange(min=1),
    help="memory_store calls per MCP run (default 2000; 200 with --quick).",
)
@click.option(
    "--mcp-concurrency",
    callback=_csv(int),
    default="1,8",
    show_default=True,
    help="Calls in flight at once (anyio tasks on one client), comma-separated.",
)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    help="Where the temporary databases go (default: a temp dir; pick the disk you care about).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
def bench(
    threads: tuple[int, ...],
    syncs: tuple[str, ...],
    designs: tuple[str, ...],
    ops: int | None,
    seconds: float | None,
    repeat: int,
    quick: bool,
    mcp: bool | None,
    mcp_only: bool,
    mcp_calls: int | None,
    mcp_concurrency: tuple[int, ...],
    workdir: str | None,
    as_json: bool,
) -> None:
    """Benchmark stores: actor group commit vs. per-message commit vs. a lock vs. raw inserts.

    Each design runs on a fresh temporary file with the real schema. Prints
    throughput, p50/p99 latency, errors, ratios to the lock baseline and the
    fraction of the raw batched-insert ceiling; then, unless --quick or
    --no-mcp, memory_store calls per second over stdio against
    ``memory-actors serve`` and against a no-op MCP server. A figure, not a
    test: it never fails on slowness, only on errors or a row-count mismatch
    (exit status 1).
    """
    if any(t < 1 for t in threads):
        raise click.BadParameter("thread counts must be >= 1", param_hint="--threads")
    if any(c < 1 for c in mcp_concurrency):
        raise click.BadParameter("concurrency must be >= 1", param_hint="--mcp-concurrency")
    if quick:
        if threads == (1, 8, 32, 64):
            threads = (1, 8, 64)
        if seconds is None and ops is None:
            seconds = 0.5
    if ops is None and seconds is None:
        seconds = 3.0
    if ops is not None:
        seconds = None
    run_mcp_section = mcp_only or (mcp if mcp is not None else not quick)
    calls = mcp_calls or (200 if quick else 2000)
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 140)
    base = workdir or tempfile.mkdtemp(prefix="memory-actors-bench-")
    os.makedirs(base, exist_ok=True)
    results: list[BenchResult] = []
    mcp_results: list[McpResult] = []
    try:
        if not mcp_only:
            results = _run_stores(
                console, base, syncs, threads, designs, ops, seconds, repeat, progress=not as_json
            )
        if run_mcp_section:
            if not as_json:
                console.print(
                    f"  MCP: {calls} memory_store calls per run over stdio, "
                    f"synchronous={syncs[0]} ...",
                    highlight=False,
                )
            mcp_results = run_mcp(base, syncs[0], calls, mcp_concurrency, repeat=repeat)
    finally:
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    problems = _problems(results, mcp_results)
    machine = _stats.machine()
    if as_json:
        document = {
            "machine": machine,
            "params": {
                "threads": list(threads),
                "sync": list(syncs),
                "designs": list(designs),
                "ops": ops,
                "seconds": seconds,
                "repeat": repeat,
                "mcp_calls": calls if run_mcp_section else None,
                "mcp_concurrency": list(mcp_concurrency) if run_mcp_section else None,
            },
            "results": [r.to_dict() for r in results],
            "mcp": [r.to_dict() for r in mcp_results],
            "rows_ok": all(r.rows_ok for r in results)
            and all(r.rows_ok for r in mcp_results if r.expected_rows is not None),
            "errors": sum(r.errors for r in results) + sum(r.errors for r in mcp_results),
            "problems": problems,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        where = f"{machine['cpus']} CPUs, Python {machine['python']}, SQLite {machine['sqlite']}"
        if results:
            console.print(_table(results, f"stores ({where})"))
        if mcp_results:
            console.print(_mcp_table(mcp_results, f"memory_store over MCP stdio ({where})"))
        for line in problems:
            console.print(f"[bold red]{line}[/]", highlight=False)
        if not problems:
            console.print(
                "row check: ok (every successful store is exactly one memory row "
                "and one outbox row); errors: 0",
                highlight=False,
            )
    if problems:
        raise SystemExit(1)


def _run_stores(
    console: Console,
    base: str,
    syncs: tuple[str, ...],
    threads: tuple[int, ...],
    designs: tuple[str, ...],
    ops: int | None,
    seconds: float | None,
    repeat: int,
    *,
    progress: bool,
) -> list[BenchResult]:
    results: list[BenchResult] = []
    for sync in syncs:
        for n in threads:
            # Repeats are interleaved (A B C D, A B C D, ...) so that drift in
            # the disk or the host affects every design alike.
            runs: dict[str, list[BenchResult]] = {design: [] for design in designs}
            for attempt in range(repeat):
                for design in designs:
                    path = _fresh_db(base, f"{design}-{sync}-{n}-{attempt}")
                    runs[design].append(
                        run_design(design, path, sync, n, ops=ops, seconds=seconds)  # type: ignore[arg-type]
                    )
            group = [_median_run(runs[design]) for design in designs]
            _fill_ratios(group)
            results.extend(group)
            if progress:
                for r in group:
                    console.print(
                        f"  {sync:<6} {n:>3} threads  {r.design:<11} "
                        f"{r.throughput:>9,.0f} stores/s  p99 {r.p99_ms:7.2f} ms  "
                        f"errors {r.errors}",
                        highlight=False,
                    )
    return results


def _problems(results: list[BenchResult], mcp_results: list[McpResult]) -> list[str]:
    """MISMATCH and ERRORS lines: the only things that make the benchmark fail."""
    lines: list[str] = []
    for r in results:
        if not r.rows_ok:
            lines.append(
                f"MISMATCH: {r.design} {r.sync} {r.threads} threads: {r.ok} successful "
                f"stores but {r.rows} memory rows and {r.outbox_rows} outbox rows"
            )
        if r.errors:
            lines.append(
                f"ERRORS: {r.design} {r.sync} {r.threads} threads: {r.errors} failed "
                f"stores, first: {r.first_error}"
            )
    for m in mcp_results:
        if m.expected_rows is not None and not m.rows_ok:
            lines.append(
                f"MISMATCH: MCP {m.server} x{m.concurrency}: {m.expected_rows} acknowledged "
                f"stores but {m.rows} memory rows"
            )
        if m.errors:
            lines.append(
                f"ERRORS: MCP {m.server} x{m.concurrency}: {m.errors} failed calls, "
                f"first: {m.first_error}"
            )
    return lines
