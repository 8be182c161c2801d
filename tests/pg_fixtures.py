"""A real PostgreSQL for the suite: pgserver's (in a temp dir) or one the environment names.

The session starts one server, on first use, and stops it at the end
(``tests/conftest.py``'s ``postgres`` fixture). Each hub under test gets a
fresh database of its own (:meth:`TestPostgres.new_database`, ~0.1 s), so
tests never see each other's rows and a module's hub keeps its database for
the module, as a SQLite hub keeps its file.

``$MEMORY_ACTORS_TEST_POSTGRES`` (a ``postgresql://`` URL of a role that may
``CREATE DATABASE``) uses that server instead; the databases the suite made
are dropped at the end. Without it, the ``pgserver`` package (in the ``dev``
extra) provides PostgreSQL 16 with pgvector.

A test that stops the server (the outage test) starts a server of its own
with :meth:`TestPostgres.start`, never the shared one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

#: Names a PostgreSQL server for the suite instead of starting one.
ENV_VAR = "MEMORY_ACTORS_TEST_POSTGRES"

#: The hub engines every hub test runs on.
HUB_ENGINES = ("sqlite", "postgres")

_serial = itertools.count(1)


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead (query and host kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


class TestPostgres:
    """One PostgreSQL server for tests: fresh databases on demand; stop and start if ours."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, admin_url: str, server: Any = None) -> None:
        self.admin_url = admin_url
        #: pgserver's handle when the suite started the server (None: an outside server).
        self.server = server
        self.created: list[str] = []

    def __repr__(self) -> str:
        owner = "ours" if self.server is not None else "outside"
        return f"<TestPostgres {owner} databases={len(self.created)}>"

    @classmethod
    def start(cls, directory: Path, *, keep: bool = False) -> TestPostgres:
        """Start pgserver's PostgreSQL in ``directory`` (initdb on first use); ``keep``: its
        data stays there when the server is closed (a benchmark's million vectors)."""
        try:
            import pgserver
        except ImportError:  # pragma: no cover - dev installs it
            pytest.fail(
                "the PostgreSQL hub tests need a server: install the dev extra "
                f'(python -m pip install -e ".[dev]", which brings pgserver) or set {ENV_VAR}'
            )
        server = pgserver.get_server(directory, cleanup_mode="stop" if keep else "delete")
        admin = server.get_uri("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            # A throwaway server in a temp dir: skip the fsyncs that only protect
            # against an OS crash (the hub's own durability is PostgreSQL's commit,
            # which a killed hub or a stopped server does not undo). Its shutdown
            # checkpoint took 12 s after a session's databases without this.
            conn.execute(b"ALTER SYSTEM SET fsync = off")
            conn.execute(b"ALTER SYSTEM SET full_page_writes = off")
            conn.execute(b"SELECT pg_reload_conf()")
        return cls(admin, server)

    @classmethod
    def from_environment(cls, directory: Path) -> TestPostgres:
        """The server ``$MEMORY_ACTORS_TEST_POSTGRES`` names, else one started in ``directory``."""
        url = os.environ.get(ENV_VAR)
        return cls(url) if url else cls.start(directory)

    def new_database(self, prefix: str = "hub") -> str:
        """Create an empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_serial)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        self.created.append(name)
        return with_database(self.admin_url, name)

    def query(self, url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the database at ``url`` (autocommit); its rows, if any."""
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def stop_server(self) -> None:
        """Stop our server at once (fast shutdown: sessions are cut, as in an outage)."""
        assert self.server is not None, "only a server the suite started can be stopped"
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start_server(self) -> None:
        """Start our stopped server again, on the same data and socket."""
        assert self.server is not None
        self.server.ensure_postgres_running()

    def close(self) -> None:
        """Stop and delete our server; on an outside server, drop the databases we made."""
        if self.server is not None:
            self.server.cleanup()
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def own_postgres() -> Iterator[TestPostgres]:
    """A PostgreSQL server of the test's own (pgserver), deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="ma-pg-"))
    server = TestPostgres.start(directory)
    try:
        yield server
    finally:
        server.close()


def hub_target(engine: str, directory: Path, postgres: TestPostgres | None) -> Path | str:
    """Where a hub on ``engine`` keeps its data: a file in ``directory``, or a fresh database."""
    if engine == "sqlite":
        return directory / "hub.db"
    assert postgres is not None
    return postgres.new_database()


def target_for(request: pytest.FixtureRequest, directory: Path) -> Path | str:
    """The hub target of a fixture parametrized by :data:`HUB_ENGINES` (``request.param``)."""
    engine = str(request.param)
    postgres = request.getfixturevalue("postgres") if engine == "postgres" else None
    return hub_target(engine, directory, postgres)
