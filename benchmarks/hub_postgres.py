"""The hub on PostgreSQL against the SQLite hub: the figures of docs/performance.md.

Not a test (pytest collects tests/ only; ``tests/test_bench_hub.py`` runs each
command at a tiny size). Run from the repository root::

    .venv/bin/python benchmarks/hub_postgres.py push     # 1 SQLite hub, then 1/2/4 PostgreSQL hubs
    .venv/bin/python benchmarks/hub_postgres.py resync   # bench-sync, SQLite then PostgreSQL; disk

Every configuration gets a fresh SQLite file or a fresh database. Without
``--postgres``, the script starts a PostgreSQL 16 of its own (pgserver, from
the dev extra) in a temporary directory, with PostgreSQL's default settings
(``fsync`` on, unlike the test suite's throwaway server), and deletes it at
the end. ``--postgres URL`` uses your server instead: a role that may
``CREATE DATABASE``; the databases it creates are dropped at the end.

The hubs run with ``--embedder none`` unless told otherwise (``--hub-arg``):
these figures are about pushes and pulls, not background embedding.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

# The PostgreSQL helpers are the test suite's (tests/pg_fixtures.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pg_fixtures import TestPostgres

from actors.bench import _stats
from actors.bench._hub import cpu_seconds
from actors.bench.hub import run_push_bench
from actors.bench.sync import run_sync_bench

_NO_EMBEDDER = ("--embedder", "none")


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[TestPostgres]:
    """The server to create databases on: ``url``'s, or a durable pgserver of our own."""
    if url:
        server = TestPostgres(url)
    else:
        import pgserver

        handle = pgserver.get_server(
            Path(tempfile.mkdtemp(prefix="ma-bench-pg-")), cleanup_mode="delete"
        )
        server = TestPostgres(handle.get_uri("postgres"), handle)
    try:
        yield server
    finally:
        server.close()


def _postgres_version(server: TestPostgres) -> str:
    return str(server.query(server.admin_url, "SHOW server_version")[0][0])


def _report(echo: Callable[[str], None], server: TestPostgres) -> dict[str, Any]:
    machine = _stats.machine()
    machine["postgresql"] = _postgres_version(server)
    echo(
        f"# {machine['date']}, load {machine['loadavg_1_5_15']}, {machine['cpus']} CPUs, "
        f"PostgreSQL {machine['postgresql']}"
    )
    return machine


def _server_cpu(server: TestPostgres) -> float | None:
    """CPU seconds of our PostgreSQL so far, ended backends included (None: not ours, or not Linux).

    Read between runs, when the hubs' connections are closed: a live backend's
    time is not yet in its postmaster's count.
    """
    if server.server is None:
        return None
    pid = int(Path(server.server.pgdata, "postmaster.pid").read_text().split()[0])
    return cpu_seconds(pid, reaped_children=True)


def table_sizes(server: TestPostgres, url: str) -> dict[str, int]:
    """Bytes per table of the hub's database, indexes and TOAST included."""
    rows = server.query(
        url,
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC",
    )
    return {str(name): int(size) for name, size in rows}


def push(
    server: TestPostgres,
    *,
    processes: list[int],
    memories: int,
    clients: int,
    tenants: int,
    batch: int,
    rounds: int,
    hub_args: tuple[str, ...],
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Each round: the SQLite hub, then ``processes`` PostgreSQL hubs, same client load."""
    report: dict[str, Any] = {"machine": _report(echo, server), "runs": []}
    for round_ in range(1, rounds + 1):
        for count in [0, *processes]:  # 0: the SQLite hub
            with tempfile.TemporaryDirectory(prefix="ma-bench-push-") as tmp:
                target = os.path.join(tmp, "hub.db") if count == 0 else server.new_database("bench")
                server_cpu = _server_cpu(server)
                run = run_push_bench(
                    target,
                    processes=max(1, count),
                    clients=clients,
                    tenants=tenants,
                    batch=batch,
                    memories=memories,
                    hub_args=hub_args,
                    workdir=tmp,
                )
            used = _server_cpu(server)
            server_cpu = (
                None if count == 0 or used is None or server_cpu is None else used - server_cpu
            )
            note = "" if server_cpu is None else f", PostgreSQL {server_cpu:.1f}"
            echo(f"round {round_}: {run.line()}{note} [load {run.machine['loadavg_1_5_15']}]")
            report["runs"].append(
                {"round": round_, **run.to_dict(), "server_cpu_seconds": server_cpu}
            )
    return report


def resync(
    server: TestPostgres,
    *,
    memories: int,
    pushed: int,
    threads: int,
    stores: int,
    rounds: int,
    hub_args: tuple[str, ...],
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Each round: ``bench-sync`` with the hub on SQLite, then on a fresh PostgreSQL database;
    then the disk each hub uses for what it holds (the SQLite file and its WAL; PostgreSQL's
    tables with their indexes and TOAST, ``pg_total_relation_size``)."""
    report: dict[str, Any] = {"machine": _report(echo, server), "runs": []}
    mib = 1024 * 1024
    for round_ in range(1, rounds + 1):
        for database in (None, server.new_database("bench")):
            label = f"round {round_}, {'postgresql' if database else 'sqlite'}: "
            with tempfile.TemporaryDirectory(prefix="ma-bench-resync-") as tmp:
                result = run_sync_bench(
                    resync=memories,
                    push=pushed,
                    threads=threads,
                    stores=stores,
                    hub_args=hub_args,
                    database=database,
                    workdir=tmp,
                    echo=lambda line, label=label: echo(label + line),
                )
                if database is None:
                    files = [os.path.join(tmp, name) for name in ("hub.db", "hub.db-wal")]
                    disk = {"hub.db": sum(os.path.getsize(f) for f in files if os.path.exists(f))}
                else:
                    server.query(database, "VACUUM ANALYZE")
                    disk = table_sizes(server, database)
            assert result.idle is not None
            assert result.during_resync is not None
            held = (
                result.ingest_memories
                + result.idle.stores
                + result.during_resync.stores
                + result.push_memories
            )
            echo(
                f"{label}disk {sum(disk.values()) / mib:.1f} MiB for {held} memories "
                f"({sum(disk.values()) / held * 100_000 / mib:.1f} MiB per 100,000): "
                + ", ".join(f"{name} {size / mib:.1f}" for name, size in disk.items())
            )
            report["runs"].append(
                {"round": round_, **result.to_dict(), "disk_bytes": disk, "hub_memories": held}
            )
    return report


def _processes(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"a comma-separated list of process counts, not {value!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("process counts are 1 or more")
    return counts


@click.group()
@click.option(
    "--postgres", "url", metavar="URL", help="A server to use (a role that may CREATE DATABASE)."
)
@click.option("--hub-arg", "hub_args", multiple=True, help="Extra `hub serve` option (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document at the end.")
@click.pass_context
def main(ctx: click.Context, url: str | None, hub_args: tuple[str, ...], as_json: bool) -> None:
    """The hub on PostgreSQL against the SQLite hub."""
    ctx.obj = {"url": url, "hub_args": hub_args or _NO_EMBEDDER, "json": as_json}


def _run(ctx: click.Context, measure: Callable[..., dict[str, Any]], **options: Any) -> None:
    # With --json, stdout carries the document only; progress goes to stderr.
    echo: Callable[[str], None] = functools.partial(click.echo, err=ctx.obj["json"])
    with _server(ctx.obj["url"]) as server:
        report = measure(server, hub_args=ctx.obj["hub_args"], echo=echo, **options)
    if ctx.obj["json"]:
        click.echo(json.dumps(report, indent=2))


@main.command("push")
@click.option(
    "--processes", default="1,2,4", show_default=True, help="PostgreSQL hub processes, per run."
)
@click.option("--memories", default=40_000, show_default=True, help="Memories pushed per run.")
@click.option("--clients", default=8, show_default=True, help="Concurrent pushing clients.")
@click.option("--tenants", default=1, show_default=True, help="Tenants the clients push as.")
@click.option("--batch", default=500, show_default=True, help="Memories per push.")
@click.option("--rounds", default=1, show_default=True, help="Repeat the comparison.")
@click.pass_context
def push_command(ctx: click.Context, processes: str, **options: Any) -> None:
    """Push throughput: the SQLite hub, then N PostgreSQL hub processes, same client load."""
    _run(ctx, push, processes=_processes(processes), **options)


@main.command("resync")
@click.option(
    "--memories", default=100_000, show_default=True, help="Memories a fresh replica pulls."
)
@click.option(
    "--pushed", default=20_000, show_default=True, help="Memories of bench-sync's push section."
)
@click.option("--threads", default=32, show_default=True, help="bench-sync's store threads.")
@click.option("--stores", default=100, show_default=True, help="bench-sync's stores per thread.")
@click.option("--rounds", default=1, show_default=True, help="Repeat the comparison.")
@click.pass_context
def resync_command(ctx: click.Context, **options: Any) -> None:
    """bench-sync (resync, store latency, push) with the hub on SQLite, then on PostgreSQL."""
    _run(ctx, resync, **options)


if __name__ == "__main__":
    main()
