"""The ``hub`` command group: ``serve``, ``keys add|list|revoke`` and ``migrate-to``.

Loaded by ``memory-actors`` only when ``hub`` is asked for; also runs on its
own as ``python -m actors.hub``. The database defaults to the SQLite file
``hub.db`` in the current directory, or ``$MEMORY_ACTORS_HUB_DB``;
``--database postgresql://...`` (or ``$MEMORY_ACTORS_HUB_DATABASE``) puts the
hub on PostgreSQL instead, where several hub processes may share it.

The hub is an optional part: its commands need ``memory-actors[hub]`` (NumPy,
for the vector index and the embedders), and without it they exit 1 with one
line naming the install command; ``--help`` works either way.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from actors.errors import MemoryActorsError
from actors.hub.engines import MAX_STATEMENT_TIMEOUT

if TYPE_CHECKING:
    from actors.hub.engines import PostgresSettings

__all__ = [
    "DATABASE_ENV_VAR",
    "DB_ENV_VAR",
    "DEFAULT_PORT",
    "HUB_EXTRA_INSTALL",
    "hub",
    "require_hub_extra",
]

#: Environment variable naming the hub's database file.
DB_ENV_VAR = "MEMORY_ACTORS_HUB_DB"
#: Environment variable naming the hub's PostgreSQL database (a URL).
DATABASE_ENV_VAR = "MEMORY_ACTORS_HUB_DATABASE"
DEFAULT_PORT = 8765

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., object])


def _db_option(command: Callable[..., _R]) -> Callable[..., _R]:
    """``--db FILE`` (SQLite) and ``--database URL`` (PostgreSQL), passed on as one ``db``."""

    @functools.wraps(command)
    def run(*args: object, db: str, database: str | None, **kwargs: object) -> _R:
        ctx = click.get_current_context()
        if database is not None:
            explicit = ctx.get_parameter_source("db") == click.core.ParameterSource.COMMANDLINE
            if explicit and ctx.get_parameter_source("database") in (
                click.core.ParameterSource.COMMANDLINE,
            ):
                raise click.UsageError("give --db (a SQLite file) or --database (a URL), not both")
            if not explicit:
                if not database.startswith(("postgresql://", "postgres://")):
                    raise click.UsageError(
                        f"--database takes a postgresql:// URL, not {database[:60]!r}; "
                        "use --db for a SQLite file"
                    )
                db = database
        return command(*args, db=db, **kwargs)

    run = click.option(
        "--database",
        default=None,
        envvar=DATABASE_ENV_VAR,
        show_envvar=True,
        metavar="URL",
        help="A PostgreSQL database (postgresql://user@host/dbname) instead of --db: "
        "several hub processes may serve it at once. Needs memory-actors[postgres].",
    )(run)
    return click.option(
        "--db",
        default="hub.db",
        show_default=True,
        envvar=DB_ENV_VAR,
        show_envvar=True,
        type=click.Path(dir_okay=False),
        help="The hub's SQLite file (created if missing).",
    )(run)


def _shown(db: str) -> str:
    """The database for the terminal: a URL without its password."""
    from actors.hub.engines import describe_target

    return describe_target(db)


#: The modules only the hub needs, which ``memory-actors[hub]`` brings.
_HUB_MODULES = ("numpy",)
#: How to install them, as the error says it.
HUB_EXTRA_INSTALL = 'python -m pip install "memory-actors[hub]"'


def _importable(module: str) -> bool:
    # find_spec, not import: `hub serve` must set the BLAS thread count before
    # NumPy loads (see serve).
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_hub_extra() -> None:
    """Raise a ClickException (exit 1) naming the extra if a module the hub needs is missing."""
    missing = [module for module in _HUB_MODULES if not _importable(module)]
    if missing:
        raise click.ClickException(
            f"the hub needs the memory-actors[hub] extra ({', '.join(missing)} is not "
            f"installed): {HUB_EXTRA_INSTALL}"
        )


def _needs_hub_extra(command: Callable[_P, _R]) -> Callable[_P, _R]:
    # Checked when the command runs, not in the group: `hub serve --help` still answers.
    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        require_hub_extra()
        return command(*args, **kwargs)

    return run


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _stopped_by_signal(signum: int, frame: FrameType | None) -> None:
    # uvicorn handles SIGTERM/SIGINT while it serves, then, once it has shut
    # down (actors included), restores this handler and re-raises the signal.
    # Ending the process here (or by the default handler) would skip the
    # event loop's cleanup and leave AnyIO's worker thread to time out; so do
    # nothing and let `serve` return normally, with status 0.
    logging.getLogger(__name__).info("hub stopped by signal %d", signum)


def _postgres_settings(
    db: str, pool_min: int, pool_max: int, statement_timeout: float
) -> PostgresSettings:
    """The PostgreSQL options of ``hub serve``, checked together; usage errors name the flag."""
    from actors.hub.engines import PostgresSettings, is_postgres

    ctx = click.get_current_context()
    if not is_postgres(db):
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("pool_min", "pool_max", "statement_timeout")
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} applies to a PostgreSQL hub (--database URL), "
                f"not to the SQLite file {db}"
            )
    if pool_max < pool_min:
        raise click.UsageError(
            f"--pool-max {pool_max} is below --pool-min {pool_min}: "
            "a process cannot keep more connections than it may open"
        )
    return PostgresSettings(
        min_connections=pool_min, max_connections=pool_max, statement_timeout=statement_timeout
    )


def _pool_option(bound: str, default: int, what: str) -> Callable[[_F], _F]:
    """``--pool-min`` or ``--pool-max``: a PostgreSQL hub's connections per process."""
    return click.option(
        f"--pool-{bound}",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        envvar=f"MEMORY_ACTORS_HUB_POOL_{bound.upper()}",
        show_envvar=True,
        help=f"--database: PostgreSQL connections this process {what}",
    )


@click.group(name="hub")
def hub() -> None:
    """Run the reference hub, and manage its API keys."""


@hub.command()
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--embedder",
    default="auto",
    show_default=True,
    envvar="MEMORY_ACTORS_HUB_EMBEDDER",
    show_envvar=True,
    type=click.Choice(["auto", "minilm", "openai", "hashing", "none"]),
    help="Embeds memories for POST /api/recall. auto: the all-MiniLM-L6-v2 model when "
    "`memory-actors install-model` installed it, else the keyword-ish hashing fallback (not "
    "semantic). openai: an OpenAI-compatible /v1/embeddings service. none: recall answers 501.",
)
@click.option(
    "--embedder-url",
    envvar="MEMORY_ACTORS_HUB_EMBEDDER_URL",
    show_envvar=True,
    help="--embedder openai: the service's base URL (http://host:port[/v1]) or full URL.",
)
@click.option(
    "--embedder-model",
    envvar="MEMORY_ACTORS_HUB_EMBEDDER_MODEL",
    show_envvar=True,
    help="--embedder openai: the model name sent with each request.",
)
@click.option(
    "--embedder-key",
    envvar="MEMORY_ACTORS_HUB_EMBEDDER_KEY",
    show_envvar=True,
    help="--embedder openai: the service's API key (prefer the environment: argv is visible).",
)
@click.option(
    "--embedder-dimension",
    type=click.IntRange(1, 65536),
    envvar="MEMORY_ACTORS_HUB_EMBEDDER_DIMENSION",
    show_envvar=True,
    help="--embedder openai: the vectors' size (default: asked of the service at start).",
)
@click.option(
    "--embedder-timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    envvar="MEMORY_ACTORS_HUB_EMBEDDER_TIMEOUT",
    show_envvar=True,
    help="--embedder openai: seconds per request (a stalled service can delay exit this long).",
)
@_pool_option("min", 1, "keeps open, even idle.")
@_pool_option("max", 4, "opens at most (plan max_connections for this × the hub processes).")
@click.option(
    "--statement-timeout",
    type=click.FloatRange(0.001, MAX_STATEMENT_TIMEOUT),
    default=5.0,
    show_default=True,
    envvar="MEMORY_ACTORS_HUB_STATEMENT_TIMEOUT",
    show_envvar=True,
    metavar="SECONDS",
    help="--database: PostgreSQL cancels a statement running longer; the request answers "
    "503 with Retry-After.",
)
@_needs_hub_extra
def serve(
    db: str,
    host: str,
    port: int,
    log_level: str,
    embedder: str,
    embedder_url: str | None,
    embedder_model: str | None,
    embedder_key: str | None,
    embedder_dimension: int | None,
    embedder_timeout: float,
    pool_min: int,
    pool_max: int,
    statement_timeout: float,
) -> None:
    """Serve the hub over HTTP until SIGTERM or Ctrl-C."""
    import uvicorn

    from actors.hub.app import create_app
    from actors.hub.engines import prepare_target
    from actors.hub.search import EmbedderSpec
    from actors.hub.service import HubConfig
    from actors.runtime import ThreadedRuntime

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Under `memory-actors hub serve` the root logger already has memory-actors'
    # handler, at -v's level (warnings), and basicConfig then does nothing: the
    # hub's own INFO lines were lost. --log-level decides for the hub.
    logging.getLogger().setLevel(log_level.upper())
    try:
        spec = EmbedderSpec(
            kind=embedder,  # type: ignore[arg-type]  # click.Choice checked it
            url=embedder_url,
            api_key=embedder_key,
            model=embedder_model,
            dimension=embedder_dimension,
            timeout=embedder_timeout,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    postgres = _postgres_settings(db, pool_min, pool_max, statement_timeout)
    # One BLAS thread per calling thread, set before NumPy loads: requests, the
    # embedder and the index already run in parallel threads, and OpenBLAS's own
    # pool fighting them for 2 cores took recall p99 from 79 ms to 317 ms at
    # 100,000 memories (p50 25 → 37 ms). The environment can still override it.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    if embedder == "minilm":
        from actors.hub.embedders import minilm_available

        if not minilm_available():
            raise click.ClickException(
                "--embedder minilm needs the model: memory-actors install-model"
            )
    try:
        # Fail with a clear message before binding the port.
        prepare_target(db, now=ThreadedRuntime().wall_time)
    except MemoryActorsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        click.echo(
            f"warning: serving on {host}, beyond loopback; put TLS in front of the hub",
            err=True,
        )
    signal.signal(signal.SIGTERM, _stopped_by_signal)
    signal.signal(signal.SIGINT, _stopped_by_signal)
    app = create_app(HubConfig(db=db, embedder=spec, postgres=postgres))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            # In-flight requests get this long to finish after SIGTERM.
            timeout_graceful_shutdown=5,
        )
    )
    server.run()
    if not server.started:
        raise click.ClickException(f"the hub could not start on {host}:{port}; see the log above")


@hub.group()
def keys() -> None:
    """Add, list and revoke API keys (each key belongs to one tenant)."""


@keys.command("add")
@_db_option
@click.argument("tenant")
@_needs_hub_extra
def keys_add(db: str, tenant: str) -> None:
    """Mint a key for TENANT and print it once (only its hash is stored)."""
    from actors.hub.key_admin import add_key
    from actors.hub.keys import key_id_of

    try:
        key = add_key(db, tenant)
    except (ValueError, MemoryActorsError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Created key {key_id_of(key)} for tenant {tenant!r} in {_shown(db)}. Copy it now: "
        "only its hash is stored, it cannot be shown again.",
        err=True,
    )
    click.echo(key)


@keys.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_needs_hub_extra
def keys_list(db: str, as_json: bool) -> None:
    """List the keys: id, tenant, created, revoked (never the keys themselves)."""
    from actors.hub.key_admin import list_keys

    try:
        rows = list_keys(db)
    except MemoryActorsError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "key_id": k.key_id,
                        "tenant": k.tenant,
                        "created_at": k.created_at,
                        "revoked_at": k.revoked_at,
                    }
                    for k in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo(f"no keys in {_shown(db)}; add one with `keys add TENANT`", err=True)
        return
    width = max(len("tenant"), *(len(k.tenant) for k in rows))
    click.echo(f"{'key id':<12}  {'tenant':<{width}}  {'created':<20}  revoked")
    for k in rows:
        click.echo(
            f"{k.key_id:<12}  {k.tenant:<{width}}  {_when(k.created_at):<20}  {_when(k.revoked_at)}"
        )


@keys.command("revoke")
@_db_option
@click.argument("key_id")
@_needs_hub_extra
def keys_revoke(db: str, key_id: str) -> None:
    """Revoke KEY_ID; a running hub refuses it (403) from its next request."""
    from actors.hub.key_admin import revoke_key

    try:
        info = revoke_key(db, key_id)
    except MemoryActorsError as exc:
        raise click.ClickException(str(exc)) from exc
    if info is None:
        raise click.ClickException(f"{_shown(db)} has no key {key_id!r}; see `keys list`")
    click.echo(f"Revoked key {info.key_id} of tenant {info.tenant!r} ({_when(info.revoked_at)}).")


@hub.command("migrate-to")
@click.option(
    "--db",
    default="hub.db",
    show_default=True,
    envvar=DB_ENV_VAR,
    show_envvar=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The SQLite hub file to copy (stop its hub first).",
)
@click.option(
    "--database",
    required=True,
    envvar=DATABASE_ENV_VAR,
    show_envvar=True,
    metavar="URL",
    help="The empty PostgreSQL database to copy it into.",
)
@_needs_hub_extra
def migrate_to(db: str, database: str) -> None:
    """Copy a SQLite hub (keys, memories, tombstones) into an empty PostgreSQL database.

    Stop the SQLite hub first: what it takes during the copy would not be
    copied. Ends with an exact count check per tenant. Clients' cursors are
    reset by the new hub (409), and they resync by themselves.
    """
    from actors.hub.engines import describe_target, is_postgres
    from actors.hub.transfer import copy_hub, count_memories
    from actors.runtime import ThreadedRuntime

    if not is_postgres(database):
        raise click.UsageError(f"--database takes a postgresql:// URL, not {database[:60]!r}")
    runtime = ThreadedRuntime()
    try:
        total = count_memories(db, now=runtime.wall_time)
        with click.progressbar(
            length=total, label=f"copying {total} memories", file=sys.stderr
        ) as bar:

            def advance(copied: int) -> None:
                bar.update(copied)

            done = copy_hub(
                db, database, now=runtime.wall_time, new_id=runtime.new_id, progress=advance
            )
    except MemoryActorsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Copied {done.memories} memories of {done.tenants} tenants and {done.keys} keys "
        f"from {db} to {describe_target(database)}; the counts match."
    )
