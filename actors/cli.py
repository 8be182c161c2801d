"""The ``memory-actors`` command: serve the MCP tools, and use the memory from a shell.

Every data command opens the :class:`~actors.system.MemorySystem`, does its
work and closes it. Human output goes to stdout (rich text and tables);
``--json`` prints the records' ``to_dict()`` instead. Errors go to stderr as
one line, ``error: <message>``, never a traceback.

Exit codes (also in ``docs/operations.md``):

====  ===================  =====================================================
code  name                 meaning
====  ===================  =====================================================
0     ``EXIT_OK``          done
1     ``EXIT_FAILURE``     unexpected failure (a bug, or e.g. the HTTP port is taken)
2     ``EXIT_USAGE``       bad usage or invalid input (click's usage errors,
                           ``InvalidMemory``, stdin that is not UTF-8); nothing changed
3     ``EXIT_NOT_FOUND``   no memory has that id (``MemoryNotFound``)
4     ``EXIT_DATABASE``    the database cannot be used as it is: ``SchemaTooNew``,
                           ``NotADatabase``, ``MigrationFailed``, ``StorageError``
                           (I/O error, disk full, unreadable path). Retrying the same
                           command will not help until someone acts; the file is
                           left as it was.
5     ``EXIT_UNAVAILABLE`` temporarily unavailable: ``Unavailable``, ``Overloaded``,
                           ``AskTimeout``, ``StorageBusy`` (another process holds the
                           lock). Retrying later may succeed.
====  ===================  =====================================================

``serve`` in stdio mode prints nothing on stdout: that stream is the protocol.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from actors import __version__
from actors._cli_base import (
    EXIT_DATABASE,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    LOCAL,
    SYNCING,
    CommandError,
    Settings,
    configure_logging,
    exit_code_for,
    global_options,
    group_options,
    resolve_settings,
)
from actors.errors import MemoryActorsError
from actors.model import MAX_LIMIT
from actors.sync_model import SyncReport
from actors.system import MemorySystem

__all__ = [
    "EXIT_DATABASE",
    "EXIT_FAILURE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "MCP_CONFIG",
    "cli",
    "exit_code_for",
    "main",
    "mcp_config_text",
]

logger = logging.getLogger(__name__)

#: What ``memory-actors mcp-config`` prints and ``mcp/memory-mcp.json`` holds.
MCP_CONFIG: dict[str, Any] = {
    "mcpServers": {"memory": {"command": "memory-actors", "args": ["serve"]}}
}

# The same defaults as actors.server; repeated so that commands other than
# `serve` do not import the MCP SDK (about 1 s of imports).
_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = 8765


def mcp_config_text(db: str | None = None) -> str:
    """The plugin config as JSON text; with ``db``, the server is pinned to that file."""
    config = json.loads(json.dumps(MCP_CONFIG))
    if db is not None:
        config["mcpServers"]["memory"]["args"] = ["--db", db, "serve"]
    return json.dumps(config, indent=2) + "\n"


@attrs.frozen
class _Lazy:
    """A command imported only when it runs or shows its own help."""

    module: str
    attribute: str
    #: Its line in `memory-actors --help`, which must not import it (test_cli checks they agree).
    summary: str


class _MemoryGroup(click.Group):
    """Maps facade errors to exit codes, and loads the commands of :attr:`LAZY` lazily."""

    # Lazy so that `serve` starts without their imports (the benchmarks, the hub's
    # modules), and so that a problem in them can never break the other commands.
    LAZY: Mapping[str, _Lazy] = {
        "bench": _Lazy(
            "actors.bench",
            "bench",
            "Benchmark stores: actor group commit vs. per-message commit vs. a lock vs. raw "
            "inserts.",
        ),
        "bench-sync": _Lazy(
            "actors.bench.sync",
            "bench_sync",
            "Push throughput, full resync, and store latency during a resync, against a real hub.",
        ),
        "hub": _Lazy("actors.hub.cli", "hub", "Run the reference hub, and manage its API keys."),
        "install-model": _Lazy(
            "actors.install_model",
            "install_model",
            "Install the MiniLM model for semantic recall (NumPy, no PyTorch) into this "
            "environment.",
        ),
    }

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            error = exc
        except MemoryActorsError as exc:
            error = CommandError(str(exc), exit_code_for(exc))
        except OSError as exc:
            # The core does not translate every filesystem error (e.g. creating the
            # database's parent directory); here they are all about the database path.
            error = CommandError(f"cannot use the database: {exc}", EXIT_DATABASE)
        click.echo(f"error: {error}", err=True)
        raise click.exceptions.Exit(error.exit_code)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.LAZY.get(cmd_name)
        if lazy is not None and cmd_name not in self.commands:
            return _load_lazy(cmd_name, lazy)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own, except that a lazy command's line comes from its summary:
        # listing it must not import it.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.LAZY and name not in self.commands:
                command: click.Command | None = click.Command(name, help=self.LAZY[name].summary)
            else:
                command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _load_lazy(name: str, lazy: _Lazy) -> click.Command:
    try:
        command: click.Command = getattr(importlib.import_module(lazy.module), lazy.attribute)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"

        @click.command(name, help=f"Unavailable: {reason}")
        def unavailable() -> NoReturn:
            raise CommandError(f"{name} is unavailable ({reason})", EXIT_FAILURE)

        return unavailable
    return command


@click.group(
    cls=_MemoryGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@group_options
@click.version_option(__version__, "-V", "--version", prog_name="memory-actors")
@click.pass_context
def cli(ctx: click.Context, /, verbose: int, **_read_by_settings: Any) -> None:
    """Persistent memory for AI agents, served as MCP tools.

    Run `memory-actors serve` from an MCP client (see `memory-actors mcp-config`),
    or use the other commands to store, recall and inspect memories from a shell.
    The global options may also follow the command (`memory-actors serve --db
    notes.db`); given on both sides, the one after the command wins.
    """
    configure_logging(verbose)
    ctx.obj = resolve_settings(ctx)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="memory-actors")


# -- shared pieces -------------------------------------------------------------------------

_json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON instead of text.",
)
_namespace_filter = click.option(
    "--namespace", "-n", metavar="NS", help="Only this namespace (default: all)."
)
_prefix_filter = click.option(
    "--namespace-prefix",
    "namespace_prefix",
    metavar="NS",
    help="Only NS and the namespaces below it (users/alice: also users/alice/prefs).",
)
_tag_filter = click.option(
    "--tag",
    "-t",
    "tags",
    multiple=True,
    metavar="TAG",
    help="Only memories with this tag; repeat to require several.",
)


@contextmanager
def _memory(ctx: click.Context, *, sync: bool = False) -> Iterator[MemorySystem]:
    """The file, opened for one command: through its owner when another process owns it.

    ``sync``: with this process's own actors (and SyncActor) whatever other
    processes do, as every process did before files had owners; it takes the
    sync lease like any direct process.
    """
    settings: Settings = ctx.find_object(Settings) or Settings(None, False, "FULL")
    config = settings.config(sync=sync)
    if sync:
        config = attrs.evolve(config, sharing="direct")
    with MemorySystem.open(settings.db, config=config) as system:
        yield system


def _console() -> Console:
    # Built per command, on whatever sys.stdout is now (click's test runner swaps it).
    return Console(highlight=False, soft_wrap=False)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def _when(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _one_line(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _limit_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--limit",
        "-l",
        type=int,
        default=None,
        help=f"At most this many results, 1-{MAX_LIMIT} (default {default}).",
    )


# -- commands ------------------------------------------------------------------------------


@cli.command()
@global_options(*SYNCING)
@click.option("--http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default=_DEFAULT_HOST, show_default=True, help="HTTP interface.")
@click.option(
    "--port",
    default=_DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="HTTP port.",
)
@click.pass_context
def serve(ctx: click.Context, http: bool, host: str, port: int) -> None:
    """Run the MCP server (stdio by default; --http for streamable HTTP at /mcp).

    In stdio mode nothing but the protocol is written to stdout; logs go to
    stderr. The server stops on stdin EOF, SIGINT or SIGTERM, committing every
    acknowledged write first.
    """
    from actors import server

    settings: Settings = ctx.obj
    try:
        if http:
            server.serve_http(settings.db, host=host, port=port, config=settings.config(sync=True))
        else:
            server.serve_stdio(settings.db, config=settings.config(sync=True))
    except server.ServeError as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from exc


@cli.command()
@global_options(*SYNCING)
@click.option(
    "--host",
    default=_DEFAULT_HOST,
    show_default=True,
    help="Interface to serve on; anything but loopback is reachable from other machines.",
)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Port (default: a free one, chosen at each launch).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, no_browser: bool) -> None:
    """Serve the local dashboard: list, search, open, tag and forget memories; sync state.

    Prints the URL with this launch's token and opens it in the browser.
    Every request needs the token; the page is served on 127.0.0.1 unless
    --host says otherwise. Runs until Ctrl-C (docs/operations.md, "Dashboard").
    """
    from actors import dashboard

    settings: Settings = ctx.obj
    if not dashboard.is_loopback(host):
        click.echo(
            f"warning: serving the dashboard on {host}, beyond loopback: anyone who can reach "
            "it and learns the token can read and forget your memories (no TLS)",
            err=True,
        )

    def announce(url: str, path: str) -> None:
        click.echo(f"memory-actors dashboard for {path}:")
        click.echo(url)
        click.echo("Ctrl-C stops it.", err=True)

    try:
        dashboard.serve(
            settings.db,
            config=settings.config(sync=True),
            host=host,
            port=port,
            open_browser=not no_browser,
            announce=announce,
        )
    except dashboard.ServeError as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from exc


@cli.command()
@global_options(*LOCAL)
@click.argument("content")
@click.option(
    "--tag", "-t", "tags", multiple=True, metavar="TAG", help="A tag; repeat for several."
)
@click.option("--metadata", "-m", metavar="JSON", help="A JSON object kept with the memory.")
@click.option("--namespace", "-n", metavar="NS", help="Namespace (default: 'default').")
@click.option("--key", "-k", metavar="KEY", help="Store under KEY: replaces what KEY held.")
@_json_option
@click.pass_context
def store(
    ctx: click.Context,
    content: str,
    tags: tuple[str, ...],
    metadata: str | None,
    namespace: str | None,
    key: str | None,
    as_json: bool,
) -> None:
    """Store CONTENT (or, with -, stdin read as UTF-8) and print its id.

    Identical content in the same namespace is stored once: the existing id
    is printed (duplicate) and the tags are merged. With --key, the memory
    under KEY in the namespace is created or replaced in place.
    """
    text = _read_stdin() if content == "-" else content
    meta: Any = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--metadata") from None
    with _memory(ctx) as system:
        receipt = system.store(text, tags=tags, metadata=meta, namespace=namespace, key=key)
    if as_json:
        _print_json(receipt.to_dict())
        return
    click.echo(receipt.summary())


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"stdin is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "nothing was stored",
            EXIT_USAGE,
        ) from None


@cli.command()
@global_options(*LOCAL)
@click.argument("query")
@_limit_option(10)
@_tag_filter
@_namespace_filter
@_prefix_filter
@_json_option
@click.pass_context
def recall(
    ctx: click.Context,
    query: str,
    limit: int | None,
    tags: tuple[str, ...],
    namespace: str | None,
    namespace_prefix: str | None,
    as_json: bool,
) -> None:
    """Search memories for QUERY (keywords), best matches first."""
    with _memory(ctx) as system:
        result = system.recall(
            query, limit=limit, tags=tags, namespace=namespace, namespace_prefix=namespace_prefix
        )
    if as_json:
        _print_json(result.to_dict())
        return
    if not result.hits:
        click.echo(f"No memories match {result.query!r} ({result.reason}).")
        return
    found = _plural(len(result.hits), "match", "matches")
    click.echo(f"{found} for {result.query!r} ({result.status})")
    table = Table(show_edge=False)
    table.add_column("score", justify="right")
    table.add_column("id", no_wrap=True)
    table.add_column("namespace", no_wrap=True)
    table.add_column("snippet")
    for hit in result.hits:
        table.add_row(f"{hit.score:.3g}", hit.id, hit.namespace, Text(_one_line(hit.snippet)))
    _console().print(table)


def _by_key(command: Callable[..., None]) -> Callable[..., None]:
    """``--key`` and ``--namespace``: name a memory by key instead of ID."""
    command = click.option(
        "--namespace", "-n", metavar="NS", help="With --key: its namespace (default 'default')."
    )(command)
    return click.option("--key", "-k", metavar="KEY", help="Name the memory by KEY, not ID.")(
        command
    )


@cli.command()
@global_options(*LOCAL)
@click.argument("memory_id", metavar="ID", required=False)
@_by_key
@_json_option
@click.pass_context
def get(
    ctx: click.Context,
    memory_id: str | None,
    key: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Print the memory with ID (or --key): its content, tags and metadata."""
    with _memory(ctx) as system:
        memory = system.get(memory_id, key=key, namespace=namespace)
    if as_json:
        _print_json(memory.to_dict())
        return
    fields = [
        ("id", memory.id),
        ("namespace", memory.namespace),
        *([("key", memory.key)] if memory.key is not None else []),
        ("tags", ", ".join(memory.tags) or "-"),
        ("metadata", json.dumps(memory.metadata, sort_keys=True)),
        ("created", _when(memory.created_at)),
        ("updated", _when(memory.updated_at)),
        ("sync", memory.sync_state),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<11}{value}")
    click.echo()
    click.echo(memory.content)


@cli.command()
@global_options(*LOCAL)
@click.argument("memory_id", metavar="ID", required=False)
@_by_key
@_json_option
@click.pass_context
def forget(
    ctx: click.Context,
    memory_id: str | None,
    key: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Forget the memory with ID (or --key): its content is erased, a tombstone is kept."""
    with _memory(ctx) as system:
        result = system.forget(memory_id, key=key, namespace=namespace)
    if as_json:
        _print_json(result.to_dict())
        return
    line = (
        f"{result.id} was already forgotten" if result.already_forgotten else f"Forgot {result.id}"
    )
    click.echo(line)


@cli.command()
@global_options(*LOCAL)
@click.argument("memory_id", metavar="ID", required=False)
@_by_key
@click.option(
    "--tag", "-t", "tags", multiple=True, metavar="TAG", help="A new tag; repeat for several."
)
@click.option("--no-tags", is_flag=True, help="Remove every tag.")
@_json_option
@click.pass_context
def retag(
    ctx: click.Context,
    memory_id: str | None,
    key: str | None,
    namespace: str | None,
    tags: tuple[str, ...],
    no_tags: bool,
    as_json: bool,
) -> None:
    """Replace the tags of the memory with ID (or --key) by the --tag options.

    A store only adds tags; retag also removes them. --no-tags removes them
    all (asked for explicitly, so that a forgotten --tag clears nothing).
    """
    if bool(tags) == no_tags:
        raise click.UsageError("give the new tags with --tag (repeat it), or --no-tags")
    with _memory(ctx) as system:
        memory = system.set_tags(memory_id, tags=tags, key=key, namespace=namespace)
    if as_json:
        _print_json(memory.to_dict())
        return
    click.echo(f"{memory.id} tags: {', '.join(memory.tags) or '-'}")


@cli.command("list")
@global_options(*LOCAL)
@_namespace_filter
@_prefix_filter
@_tag_filter
@_limit_option(20)
@click.option("--before", metavar="ID", help="Continue after this id (the previous page's last).")
@_json_option
@click.pass_context
def list_(
    ctx: click.Context,
    namespace: str | None,
    namespace_prefix: str | None,
    tags: tuple[str, ...],
    limit: int | None,
    before: str | None,
    as_json: bool,
) -> None:
    """List memories, most recent first, one page at a time."""
    with _memory(ctx) as system:
        page = system.list(
            namespace=namespace,
            tags=tags,
            limit=limit,
            before=before,
            namespace_prefix=namespace_prefix,
        )
    if as_json:
        _print_json(page.to_dict())
        return
    if not page.memories:
        click.echo("No memories.")
        return
    table = Table(show_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("namespace", no_wrap=True)
    table.add_column("tags")
    table.add_column("content")
    for memory in page.memories:
        table.add_row(
            memory.id,
            memory.namespace,
            Text(", ".join(memory.tags)),
            Text(_one_line(memory.content)),
        )
    _console().print(table)
    if page.next_before is not None:
        click.echo(f"More: memory-actors list --before {page.next_before}")


@cli.command()
@global_options(*LOCAL)
@_namespace_filter
@_prefix_filter
@_tag_filter
@_json_option
@click.pass_context
def count(
    ctx: click.Context,
    namespace: str | None,
    namespace_prefix: str | None,
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Count memories (per namespace), with storage and sync diagnostics."""
    with _memory(ctx) as system:
        counts = system.count(namespace=namespace, tags=tags, namespace_prefix=namespace_prefix)
    if as_json:
        _print_json(counts.to_dict())
        return
    for line in _count_lines(counts.to_dict()):
        click.echo(line)


def _count_lines(counts: dict[str, Any]) -> list[str]:
    lines = [f"{'total:':<16}{counts['total']}"]
    lines += [f"  {ns + ':':<14}{n}" for ns, n in counts["by_namespace"].items()]
    lines += [
        f"{'forgotten:':<16}{counts['forgotten']}",
        f"{'outbox pending:':<16}{counts['outbox_pending']}",
        f"{'dead letters:':<16}{counts['dead_letters']}",
        f"{'schema version:':<16}{counts['schema_version']}",
        f"{'database:':<16}{counts['database']}",
        f"{'sync:':<16}{counts['sync']}",
        f"{'semantic:':<16}{counts['semantic']}",
        f"{'sharing:':<16}{counts['sharing']}",
    ]
    return lines


@cli.command()
@global_options(*LOCAL)
@_json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show whether the actors are ready, plus counts and diagnostics."""
    with _memory(ctx) as system:
        state = system.status()
        counts = system.count().to_dict()
    data = {**state, "counts": counts}
    if as_json:
        _print_json(data)
        return
    click.echo(f"{'state:':<16}{state['state']}")
    click.echo(f"{'runtime:':<16}{state['runtime']}")
    for name, actor in state["actors"].items():
        restarts = _plural(actor["restarts"], "restart")
        reason = f"; {actor['reason']}" if actor["reason"] else ""
        click.echo(f"{'actor ' + name + ':':<16}{actor['status']} ({restarts}{reason})")
    for line in _count_lines(counts):
        click.echo(line)


@cli.command()
@global_options(*LOCAL)
@_json_option
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Bring the database to this version's schema (backing it up first when data is rewritten).

    Every other command migrates on open too; this one only migrates and reports.
    A database newer than this code is refused and left untouched (exit 4).
    """
    with _memory(ctx) as system:
        report = system.migration
    if as_json:
        _print_json(attrs.asdict(report))
        return
    if not report.applied:
        click.echo(f"{report.path} is at schema {report.to_version}: nothing to do")
        return
    steps = ", ".join(str(v) for v in report.applied)
    click.echo(
        f"Migrated {report.path} from schema {report.from_version} to "
        f"{report.to_version} (applied {steps})"
    )
    for backup in report.backups:
        click.echo(f"backup: {backup}")


@cli.group()
def sync() -> None:
    """Sync with a hub (--remote URL and an API key): status, dead letters, a run."""


@sync.command("status")
@global_options(*SYNCING)
@_json_option
@click.pass_context
def sync_status(ctx: click.Context, as_json: bool) -> None:
    """Connect to the hub once and report the sync state and the outbox."""
    with _memory(ctx, sync=True) as system:
        report = _settled_report(system)
        counts = system.count()
    data = {
        "sync": report.to_dict() if report else {"state": "local-only"},
        "outbox_pending": counts.outbox_pending,
        "dead_letters": counts.dead_letters,
    }
    if as_json:
        _print_json(data)
        return
    click.echo(f"{'sync:':<16}{counts.sync}")
    click.echo(f"{'outbox pending:':<16}{counts.outbox_pending}")
    click.echo(f"{'dead letters:':<16}{counts.dead_letters}")


def _settled_report(system: MemorySystem) -> SyncReport | None:
    """The sync report once the SyncActor has taken the lease and checked the key.

    Right after open it is always "starting"; the lease and the key check take
    one store round trip and one hub call, bounded by the client's timeout.
    """
    remote = system.config.remote
    report = system.sync_report()
    if remote is None:
        return report
    deadline = time.monotonic() + remote.timeout + 2.0
    while report is not None and report.state == "starting" and time.monotonic() < deadline:
        time.sleep(0.02)  # a poll interval of a bounded wait (this is a one-shot command)
        report = system.sync_report()
    return report


@sync.command("dead-letters")
@global_options(*LOCAL)
@_limit_option(20)
@_json_option
@click.pass_context
def sync_dead_letters(ctx: click.Context, limit: int | None, as_json: bool) -> None:
    """List the writes the hub kept refusing, oldest first, with the hub's last answer."""
    with _memory(ctx) as system:
        dead = system.dead_letters(limit=limit)
    if as_json:
        _print_json(dead.to_dict())
        return
    if not dead.letters:
        click.echo("No dead letters.")
        return
    table = Table(show_edge=False)
    table.add_column("memory", no_wrap=True)
    table.add_column("namespace", no_wrap=True)
    table.add_column("op")
    table.add_column("attempts", justify="right")
    table.add_column("queued", no_wrap=True)
    table.add_column("last error")
    for letter in dead.letters:
        table.add_row(
            letter.memory_id,
            letter.namespace or "-",
            letter.op,
            str(letter.attempts),
            _when(letter.enqueued_at),
            Text(_one_line(letter.last_error or "-")),
        )
    _console().print(table)
    shown = len(dead.letters)
    more = f" ({shown} shown)" if shown < dead.total else ""
    click.echo(
        f"{_plural(dead.total, 'dead letter', 'dead letters')}{more}; "
        "`memory-actors sync retry-dead` queues them again"
    )


@sync.command("retry-dead")
@global_options(*LOCAL)
@_json_option
@click.pass_context
def sync_retry_dead(ctx: click.Context, as_json: bool) -> None:
    """Put every dead letter back in the outbox (the next sync pushes them again)."""
    with _memory(ctx) as system:
        requeued = system.retry_dead_letters()
    if as_json:
        _print_json({"requeued": requeued})
        return
    click.echo(f"requeued {_plural(requeued, 'memory', 'memories')} for the next push")


@cli.command("mcp-config")
@global_options("db")
@click.pass_context
def mcp_config(ctx: click.Context) -> None:
    """Print the MCP client config (the mcpServers JSON) that launches this server.

    Paste it into .mcp.json (Claude Code), claude_desktop_config.json or your
    client's equivalent. With --db on the command line, the config pins that file.
    """
    settings: Settings = ctx.obj
    click.echo(mcp_config_text(settings.db if settings.db_from_cli else None), nl=False)


# -- export, import, backup, restore (docs/operations.md) -------------------------------------


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=False)


@cli.command("export")
@global_options(*LOCAL)
@click.argument("path", default="-", required=False, metavar="[PATH|-]")
@_prefix_filter
@_tag_filter
@click.option(
    "--since",
    metavar="TIME",
    help="Only memories updated at or after TIME: an ISO 8601 date or time (UTC unless "
    "it says otherwise) or Unix seconds.",
)
@click.option(
    "--include-deleted",
    is_flag=True,
    help="Also export tombstones (forgotten memories), so the forgets travel too.",
)
@_json_option
@click.pass_context
def export(
    ctx: click.Context,
    path: str,
    namespace_prefix: str | None,
    tags: tuple[str, ...],
    since: str | None,
    include_deleted: bool,
    as_json: bool,
) -> None:
    """Write memories to PATH (default -, stdout) as JSONL: a header line, then one per line.

    The lines are in id order, so the same memories always give the same
    file. The summary goes to stdout, or to stderr when the export does.
    """
    to_stdout = path == "-"
    destination: Any = sys.stdout.buffer if to_stdout else path
    try:
        with _memory(ctx) as system:
            report = system.export_memories(
                destination,
                namespace_prefix=namespace_prefix,
                tags=tags,
                since=since,
                include_deleted=include_deleted,
            )
    except BrokenPipeError:
        # The reader went away (`export | head`): not the database's fault. Point
        # stdout at nothing so the interpreter's last flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CommandError("stdout was closed before the export ended", EXIT_FAILURE) from None
    where = "stdout" if to_stdout else path
    if as_json:
        click.echo(json.dumps({"path": where, **report.to_dict()}), err=to_stdout)
        return
    forgotten = f" ({report.tombstones} forgotten)" if report.tombstones else ""
    click.echo(
        f"Exported {_plural(report.memories, 'memory', 'memories')}{forgotten} to {where}",
        err=to_stdout,
    )


@cli.command("import")
@global_options(*LOCAL)
@click.argument("path", metavar="PATH|-")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip bad lines (each reported with its number and reason) instead of stopping.",
)
@_json_option
@click.pass_context
def import_(ctx: click.Context, path: str, skip_invalid: bool, as_json: bool) -> None:
    """Merge an export (PATH, or - for stdin) into the database; safe to run twice.

    Memories merge by id (the newer version wins), then by content within a
    namespace, as sync does; what changed is queued for the hub. A bad line
    stops the import with its number (what came before it is committed),
    unless --skip-invalid. A progress bar shows on a terminal; --json prints
    only the summary.
    """
    from actors.errors import InvalidImport

    source: Any = sys.stdin.buffer if path == "-" else path
    try:
        with (
            _memory(ctx) as system,
            _import_progress(path, quiet=as_json) as progress,
        ):
            report = system.import_memories(source, skip_invalid=skip_invalid, progress=progress)
    except InvalidImport as exc:
        if as_json:
            _print_json({"error": str(exc), "line": exc.line, **_report_dict(exc.report)})
        raise CommandError(str(exc), EXIT_USAGE) from None
    if as_json:
        _print_json(report.to_dict())
        return
    for skipped in report.skipped_lines:
        click.echo(f"skipped line {skipped.line}: {skipped.reason}", err=True)
    if report.skipped > len(report.skipped_lines):
        click.echo(f"... and {report.skipped - len(report.skipped_lines)} more", err=True)
    click.echo(f"Imported {path}: {report.summary()}")


def _report_dict(report: object) -> dict[str, Any]:
    to_dict = getattr(report, "to_dict", None)
    return to_dict() if callable(to_dict) else {}


@contextmanager
def _import_progress(path: str, *, quiet: bool) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar on stderr when it is a terminal (lines read); else nothing."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    total = None
    if path != "-":
        with open(path, "rb") as fh:
            total = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TextColumn("lines"))
    with Progress(*columns, console=_stderr_console(), transient=True) as bar:
        task = bar.add_task("import", total=max(total, 0) if total is not None else None)

        def advance(report: Any) -> None:
            bar.update(task, completed=report.read)

        yield advance


@cli.command()
@global_options(*LOCAL)
@click.argument("path", type=click.Path(dir_okay=False))
@_json_option
@click.pass_context
def backup(ctx: click.Context, path: str, as_json: bool) -> None:
    """Copy the database to PATH: a consistent snapshot, even while servers write.

    SQLite's online backup, run by the store from one read snapshot; the copy
    must pass PRAGMA integrity_check before it replaces PATH.
    """
    with _memory(ctx) as system:
        report = system.backup(path)
    if as_json:
        _print_json(report.to_dict())
        return
    facts = report.facts
    forgotten = f" ({facts.forgotten} forgotten)" if facts.forgotten else ""
    click.echo(
        f"Backed up {report.source} to {report.path}: "
        f"{_plural(facts.memories, 'memory', 'memories')}{forgotten}, integrity {facts.integrity}, "
        f"schema {facts.schema_version}, {facts.size_bytes / 1e6:.1f} MB in {report.seconds:.2f}s"
    )


@cli.command()
@global_options("db", "verbose")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace the database even though it exists.")
@_json_option
@click.pass_context
def restore(ctx: click.Context, path: str, force: bool, as_json: bool) -> None:
    """Replace the database (--db) by the backup PATH, after checking it.

    Refused while any process has the database open (stop the servers first),
    and, when the database exists, without --force. The backup must pass
    PRAGMA integrity_check and have a schema this version reads.
    """
    from actors.backup import restore as restore_file
    from actors.system import default_db_path

    settings: Settings = ctx.find_object(Settings) or Settings(None, False, "FULL")
    report = restore_file(path, settings.db or default_db_path(), force=force)
    if as_json:
        _print_json(report.to_dict())
        return
    facts = report.facts
    click.echo(
        f"Restored {report.target} from {report.source}: "
        f"{_plural(facts.memories, 'memory', 'memories')}, schema {facts.schema_version}"
        f"{' (the previous file was replaced)' if report.replaced else ''}"
    )
