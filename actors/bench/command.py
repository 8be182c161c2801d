"""``memory-actors bench``: the command that runs the store designs and the MCP section.

Parses the options, runs :mod:`actors.bench.store`'s designs interleaved
(each repeat visits every design, so drift affects all alike) and
:mod:`actors.bench.mcp`'s stdio runs, prints tables or one JSON document, and
fails (exit 1) only on errors or a row-count mismatch, never on slowness.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console

from actors.bench import _stats
from actors.bench._common import fresh_db
from actors.bench.mcp import McpResult, mcp_table, run_mcp
from actors.bench.store import (
    DESIGNS,
    BenchResult,
    fill_ratios,
    median_run,
    run_design,
    store_table,
)

__all__ = ["bench"]


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
            console.print(store_table(results, f"stores ({where})"))
        if mcp_results:
            console.print(mcp_table(mcp_results, f"memory_store over MCP stdio ({where})"))
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
                    path = fresh_db(base, f"{design}-{sync}-{n}-{attempt}")
                    runs[design].append(
                        run_design(design, path, sync, n, ops=ops, seconds=seconds)  # type: ignore[arg-type]
                    )
            group = [median_run(runs[design]) for design in designs]
            fill_ratios(group)
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
