"""Internal: what every ``memory-actors`` command shares.

The exit codes and the one-line error (:class:`CommandError`), logging to
stderr, and the global options (``--db``, ``--remote``, ``--api-key*``,
``--synchronous``, ``-v``): declared once, accepted before or after the
command, and resolved into :class:`Settings` with one precedence rule.
:mod:`actors.cli` holds the group and the commands.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import click

from actors.errors import (
    AskTimeout,
    InvalidMemory,
    MemoryNotFound,
    SchemaError,
    StorageBusy,
    StorageError,
    Unavailable,
)
from actors.sync_model import RemoteConfig
from actors.system import DB_ENV_VAR, Config

__all__ = [
    "API_KEY_ENV_VAR",
    "API_KEY_FILE_ENV_VAR",
    "EXIT_DATABASE",
    "EXIT_FAILURE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "LOCAL",
    "REMOTE_ENV_VAR",
    "SYNCING",
    "CommandError",
    "Settings",
    "configure_logging",
    "exit_code_for",
    "global_options",
    "group_options",
    "resolve_settings",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DATABASE = 4
EXIT_UNAVAILABLE = 5


#: Environment variables for the hub (flags take precedence).
REMOTE_ENV_VAR = "MEMORY_ACTORS_REMOTE"
API_KEY_ENV_VAR = "MEMORY_ACTORS_API_KEY"
API_KEY_FILE_ENV_VAR = "MEMORY_ACTORS_API_KEY_FILE"


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error raised by the facade (see the module docstring)."""
    if isinstance(exc, InvalidMemory):
        return EXIT_USAGE
    if isinstance(exc, MemoryNotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, SchemaError | StorageError):
        return EXIT_DATABASE
    # ConnectionError/TimeoutError: the built-in bases of every "retry later" error,
    # so errors added to the tree later (a hub that is unreachable) map here too.
    if isinstance(exc, Unavailable | AskTimeout | StorageBusy | ConnectionError | TimeoutError):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


class CommandError(Exception):
    """An error shown as one line on stderr, ending the command with ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code


@attrs.frozen
class Settings:
    """The global options every command reads, resolved (see :func:`resolve_settings`)."""

    db: str | None
    #: True when --db came from the command line (not the environment).
    db_from_cli: bool
    synchronous: str
    remote: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)

    def config(self, *, sync: bool = False) -> Config:
        """The facade's config; ``sync`` starts the SyncActor when a remote is configured.

        Only long-running commands sync (``serve``, ``sync``): a one-shot
        ``store`` leaves its memory in the durable outbox for them.
        """
        remote = None
        if sync and self.remote:
            if not self.api_key:
                raise CommandError(
                    f"--remote {self.remote} needs an API key: --api-key, --api-key-file, "
                    f"or {API_KEY_ENV_VAR}",
                    EXIT_USAGE,
                )
            remote = RemoteConfig(self.remote, self.api_key)
        return Config(synchronous="FULL" if self.synchronous == "FULL" else "NORMAL", remote=remote)


#: The name of the stderr handler the CLI installs, so that a -v after the
#: command raises the level of our handler, never of one a host installed.
_LOG_HANDLER = "memory-actors-stderr"


def configure_logging(verbose: int) -> None:
    """Log to stderr at -v's level; called again when more -v follow the command."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    if any(handler.get_name() == _LOG_HANDLER for handler in root.handlers):
        root.setLevel(level)
        return
    if root.handlers:
        return  # a host (a test runner, an embedding program) configured logging already
    # stderr only: in `serve` stdio mode stdout is the protocol stream.
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_LOG_HANDLER)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


# -- the global options --------------------------------------------------------------------
#
# Each is declared once and attached twice: to the group (with its environment
# variable and default) and, where it means something, to the subcommands,
# so that `memory-actors serve --db notes.db` works as `memory-actors --db
# notes.db serve` does. After the command an option has no default and no
# variable of its own: given there, it wins; otherwise the group's value
# (flag, environment, default) stands. See _settings.

_GLOBAL_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]] = {
    # name: (declarations, what both places share, what only the group has)
    "db": (
        ("--db",),
        {
            "type": click.Path(dir_okay=False, resolve_path=True),
            "help": "The SQLite database file (created if missing). "
            "Default: memory.db in the user data directory.",
        },
        {"envvar": DB_ENV_VAR, "show_envvar": True},
    ),
    "synchronous": (
        ("--synchronous",),
        {
            "type": click.Choice(["FULL", "NORMAL"], case_sensitive=False),
            "help": "SQLite durability: FULL survives power loss; NORMAL (WAL) may lose the "
            "last commits on power loss, never on a crash of the process.",
        },
        {"default": "FULL", "show_default": True},
    ),
    "remote": (
        ("--remote",),
        {
            "metavar": "URL",
            "help": "A memory-actors hub to sync with (serve and sync). Default: local only.",
        },
        {"envvar": REMOTE_ENV_VAR, "show_envvar": True},
    ),
    "api_key": (
        ("--api-key",),
        {
            "metavar": "KEY",
            "help": "The hub API key (prefer --api-key-file or the environment: argv is visible).",
        },
        {"envvar": API_KEY_ENV_VAR, "show_envvar": True},
    ),
    "api_key_file": (
        ("--api-key-file",),
        {
            "type": click.Path(dir_okay=False, exists=True),
            "help": "A file holding the hub API key.",
        },
        {"envvar": API_KEY_FILE_ENV_VAR, "show_envvar": True},
    ),
    "verbose": (
        ("-v", "--verbose"),
        {"count": True, "help": "Log to stderr: -v info, -vv debug."},
        {},
    ),
}

#: What a command that may sync with a hub takes after its name: all of them.
SYNCING = tuple(_GLOBAL_OPTIONS)
#: What a command that works on the local file only takes (a --remote there would do nothing).
LOCAL = ("db", "synchronous", "verbose")

_Callback = TypeVar("_Callback", bound=Callable[..., Any])


def group_options(function: _Callback) -> _Callback:
    """Attach every global option to the group, with its environment variable and default."""
    for declarations, shared, group_only in reversed(_GLOBAL_OPTIONS.values()):
        function = click.option(*declarations, **shared, **group_only)(function)
    return function


def global_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let a subcommand take these global options after its name as well.

    The wrapped callback never sees them: they are folded into the
    :class:`Settings` on its context (``ctx.obj``), which it reads as before.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            after = {name: kwargs.pop(name) for name in names}
            ctx = click.get_current_context()
            if after.get("verbose"):
                configure_logging(ctx.find_root().params.get("verbose", 0) + after["verbose"])
            ctx.obj = resolve_settings(ctx, after)
            return function(*args, **kwargs)

        # functools.wraps shared the callback's list of click parameters; give this
        # command its own, the global options listed after its own in --help.
        own = list(getattr(function, "__click_params__", []))
        run.__click_params__ = []  # type: ignore[attr-defined]
        for name in reversed(names):
            declarations, shared, _ = _GLOBAL_OPTIONS[name]
            default = 0 if name == "verbose" else None
            run = click.option(*declarations, **shared, default=default)(run)
        run.__click_params__ += own  # type: ignore[attr-defined]
        return run

    return decorate


def resolve_settings(ctx: click.Context, after: Mapping[str, Any] | None = None) -> Settings:
    """The global options: after the command > before it > the environment > the default.

    The API key is one setting with two sources: a key or key file given on
    the command line (either side of the command) beats one in the
    environment, and at the same level the key beats the key file.
    """
    root = ctx.find_root()
    after = after or {}

    def given(name: str) -> tuple[Any, bool]:
        """The option's value, and whether it came from the command line."""
        if after.get(name) is not None:
            return after[name], True
        on_cli = root.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        return root.params.get(name), on_cli

    db, db_from_cli = given("db")
    key, key_on_cli = given("api_key")
    key_file, file_on_cli = given("api_key_file")
    api_key = None
    # A flag beats the environment; on the same level the key beats the key file.
    if key and (key_on_cli or not (key_file and file_on_cli)):
        api_key = key
    elif key_file:
        api_key = _read_key_file(key_file)
    return Settings(
        db=db,
        db_from_cli=db_from_cli,
        synchronous=str(given("synchronous")[0] or "FULL").upper(),
        remote=given("remote")[0],
        api_key=api_key,
    )


def _read_key_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()
