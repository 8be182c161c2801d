"""``memory_store`` over real MCP stdio: ``memory-actors serve`` against a no-op server.

Both servers run as subprocesses on the same SDK, driven by a real client
with a chosen number of calls in flight, so the ratio isolates what our tool
costs beyond the SDK's own per-call work (``docs/performance.md``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs
from rich.table import Table

from actors.bench._common import content, count_rows, fmt, fresh_db, percentile_ms

__all__ = ["McpResult", "mcp_table", "median_mcp", "run_mcp"]


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
    result.p50_ms = percentile_ms(latencies, 0.50)
    result.p99_ms = percentile_ms(latencies, 0.99)
    if server == "memory":
        # The server has exited (stdin closed): every acknowledged store must be on disk.
        result.rows, _ = count_rows(path)
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
                await client.call_tool("memory_store", {"content": content(run, -1, i)})

            async def worker(index: int) -> None:
                clock = time.perf_counter_ns
                for op in range(per_task):
                    t0 = clock()
                    try:
                        answer = await client.call_tool(
                            "memory_store", {"content": content(run, index, op)}
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
                path = fresh_db(workdir, f"mcp-{server}-{concurrency}-{attempt}")
                runs[server].append(
                    anyio.run(_mcp_session, server, path, sync, calls, concurrency, errlog)
                )
        pair = {server: median_mcp(found) for server, found in runs.items()}
        if pair["noop"].throughput > 0:
            pair["memory"].x_noop = pair["memory"].throughput / pair["noop"].throughput
        results.extend((pair["noop"], pair["memory"]))
    return results


def median_mcp(runs: list[McpResult]) -> McpResult:
    """The median-throughput run; errors summed, a row mismatch in any run kept."""
    chosen = sorted(runs, key=lambda r: r.throughput)[(len(runs) - 1) // 2]
    bad = next((r for r in runs if r.expected_rows is not None and not r.rows_ok), None)
    if bad is not None:
        chosen = attrs.evolve(chosen, rows=bad.rows, expected_rows=bad.expected_rows)
    first = next((r.first_error for r in runs if r.first_error), "")
    return attrs.evolve(chosen, errors=sum(r.errors for r in runs), first_error=first)


def mcp_table(results: list[McpResult], title: str) -> Table:
    """The MCP section's table: calls per second, latency, errors, ratio to the no-op server."""
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
            fmt(r.x_noop, ".2f"),
            rows,
        )
    return table
