"""Which engine a database target names, and how to prepare and open it.

A *target* is what ``hub serve --db/--database`` and :class:`~actors.hub.service.HubConfig`
take: a ``postgresql://`` (or ``postgres://``) URL names a PostgreSQL database
(:mod:`actors.hub.postgres`); anything else is the path of a SQLite file
(:mod:`actors.hub.database`). The PostgreSQL modules are imported only for a
URL, so a SQLite hub runs without ``psycopg`` installed (it comes with the
``memory-actors[postgres]`` extra).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import attrs

from actors._sqlite import Synchronous
from actors.errors import StorageError
from actors.model import MigrationReport

if TYPE_CHECKING:
    from actors.hub.engine import EngineOpener, HubEngine
    from actors.hub.search import VectorSearch

__all__ = [
    "POSTGRES_EXTRA_INSTALL",
    "PostgresSettings",
    "describe_target",
    "is_postgres",
    "open_engine",
    "prepare_target",
    "target_opener",
    "vector_search_of",
]

#: How to install the PostgreSQL driver, as the error says it.
POSTGRES_EXTRA_INSTALL: Final = 'python -m pip install "memory-actors[postgres]"'

_URL_PREFIXES: Final = ("postgresql://", "postgres://")

#: The largest statement timeout a hub takes, in seconds. A request gives up on
#: the store after ``HubConfig.storage_timeout`` (10 s) anyway; a statement
#: allowed to run for longer only keeps the store busy after its caller left.
MAX_STATEMENT_TIMEOUT: Final = 600.0


@attrs.frozen
class PostgresSettings:
    """How one hub process uses a PostgreSQL database: its connection pool and statement timeout.

    Per process: N hub processes on one database hold up to N × ``max_connections``
    connections. Out-of-range values raise :class:`ValueError` naming the
    option and the allowed range (``hub serve`` shows it as a usage error).
    """

    #: Connections each hub process keeps open, even idle (``--pool-min``).
    min_connections: int = 1
    #: Connections each hub process opens at most (``--pool-max``).
    max_connections: int = 4
    #: Seconds one SQL statement may run before PostgreSQL cancels it; the
    #: request then answers 503 with Retry-After (``--statement-timeout``).
    statement_timeout: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.min_connections < 1:
            raise ValueError(
                f"the pool's minimum must be at least 1 connection, not {self.min_connections}"
            )
        if self.max_connections < self.min_connections:
            raise ValueError(
                f"the pool's maximum ({self.max_connections} connections) is below its "
                f"minimum ({self.min_connections})"
            )
        # 1 ms is PostgreSQL's unit; 0 would mean "no timeout", which the hub never wants.
        if not 0.001 <= self.statement_timeout <= MAX_STATEMENT_TIMEOUT:
            raise ValueError(
                f"the statement timeout must be between 0.001 and {MAX_STATEMENT_TIMEOUT:g} "
                f"seconds, not {self.statement_timeout:g}"
            )


def is_postgres(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` is a PostgreSQL URL (else: a SQLite file's path)."""
    return isinstance(target, str) and target.startswith(_URL_PREFIXES)


def _require_psycopg() -> None:
    # find_spec, not import: only the engine's own modules see psycopg.
    missing = [m for m in ("psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
    if missing:
        raise StorageError(
            f"a PostgreSQL hub needs {' and '.join(missing)} (not installed): "
            f"{POSTGRES_EXTRA_INSTALL}"
        )


def describe_target(target: str | os.PathLike[str]) -> str:
    """The target for messages and logs: a SQLite path as given, a URL without its password."""
    if not is_postgres(target):
        return os.fspath(target)
    _require_psycopg()
    from actors.hub.pg_schema import describe_database

    return describe_database(os.fspath(target))


def prepare_target(target: str | os.PathLike[str], *, now: Callable[[], float]) -> MigrationReport:
    """Create or migrate the hub's schema in ``target``; raises our schema or storage errors."""
    if is_postgres(target):
        _require_psycopg()
        from actors.hub.pg_schema import prepare_pg_database

        return prepare_pg_database(os.fspath(target), now=now)
    from actors.hub.schema import prepare_hub_file

    return prepare_hub_file(os.path.abspath(target), now=now)


def target_opener(
    target: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "FULL",
    busy_timeout: float = 5.0,
    postgres: PostgresSettings = PostgresSettings(),
) -> EngineOpener:
    """How an owner opens ``target``'s engine (``HubStoreConfig.open_engine``).

    ``synchronous`` is SQLite's only, ``postgres`` PostgreSQL's only;
    ``busy_timeout`` bounds a lock wait on either. PostgreSQL's durability is
    the server's (``synchronous_commit``).
    """
    if is_postgres(target):
        _require_psycopg()
        from actors.hub.postgres import PostgresEngine

        return PostgresEngine.opener(
            os.fspath(target),
            lock_timeout=busy_timeout,
            statement_timeout=postgres.statement_timeout,
            min_connections=postgres.min_connections,
            max_connections=postgres.max_connections,
        )
    from actors.hub.database import HubDatabase

    return HubDatabase.opener(
        os.path.abspath(target), synchronous=synchronous, busy_timeout=busy_timeout
    )


def open_engine(target: str | os.PathLike[str], *, new_id: Callable[[], str]) -> HubEngine:
    """Open ``target``'s engine (already prepared) in the caller's thread, for a one-shot
    command: without a clock, each PostgreSQL call waits its full connection wait."""
    return target_opener(target)(new_id, None)


def vector_search_of(target: str | os.PathLike[str]) -> VectorSearch:
    """Where recall's vectors are searched on ``target`` (prepared), as its engine will say.

    The hub decides before its actors start whether it needs an in-memory
    vector index (:attr:`actors.hub.engine.HubEngine.vector_search`).
    """
    from actors.hub.search import IN_MEMORY

    if not is_postgres(target):
        return IN_MEMORY
    _require_psycopg()
    from actors.hub.pg_schema import vector_search_of_database

    return vector_search_of_database(os.fspath(target))
