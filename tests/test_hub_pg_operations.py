"""Operating a PostgreSQL hub: the pool and statement-timeout options, and backups with pg_dump.

``hub serve --pool-min/--pool-max/--statement-timeout`` (and their
environment variables) are checked before anything starts and reach the
engine of a real hub process on the suite's PostgreSQL; a ``pg_dump`` of a
serving hub restored into a new database serves the same memories
(``docs/deploying-the-hub.md``, "Sizing" and "Backups and restores").
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from click.testing import CliRunner
from hub_fixtures import HubProcess, forget, hub_digest, memory, wait_until
from pg_fixtures import TestPostgres, with_database

from actors.errors import HubServerError
from actors.hub.cli import hub as hub_command
from actors.hub.engines import PostgresSettings

pytestmark = pytest.mark.slow


@pytest.fixture
def database(postgres: TestPostgres) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres.new_database()


def _tables(postgres: TestPostgres, url: str) -> list[tuple[object, ...]]:
    return postgres.query(
        url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )


def _hub_connections(postgres: TestPostgres, url: str) -> int:
    rows = postgres.query(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'memory-actors-hub'",
    )
    return int(rows[0][0])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("args", "env", "option", "detail"),
    [
        (["--pool-min", "0"], {}, "--pool-min", "0 is not in the range x>=1"),
        (["--pool-max", "0"], {}, "--pool-max", "0 is not in the range x>=1"),
        (["--pool-min", "5", "--pool-max", "2"], {}, "--pool-max", "2 is below --pool-min 5"),
        (["--statement-timeout", "0"], {}, "--statement-timeout", "0 is not in the range"),
        (["--statement-timeout", "soon"], {}, "--statement-timeout", "'soon' is not a valid float"),
        ([], {"MEMORY_ACTORS_HUB_POOL_MAX": "lots"}, "--pool-max", "'lots' is not a valid integer"),
        (
            [],
            {"MEMORY_ACTORS_HUB_STATEMENT_TIMEOUT": "601"},
            "--statement-timeout",
            "601.0 is not in the range 0.001<=x<=600.0",
        ),
    ],
)
def test_serve_refuses_a_bad_pool_size_or_statement_timeout_before_touching_the_database(
    database: str,
    postgres: TestPostgres,
    args: list[str],
    env: dict[str, str],
    option: str,
    detail: str,
) -> None:
    """Each bad value is a usage error (exit 2) naming the option and what is wrong with it;
    nothing started, the database stays empty."""
    result = CliRunner().invoke(
        hub_command, ["serve", "--database", database, *args], env=env, catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert option in output
    assert detail in output
    assert _tables(postgres, database) == []


def test_postgresql_options_on_a_sqlite_hub_are_refused_not_ignored(tmp_path: Path) -> None:
    """``--pool-max`` with ``--db FILE`` is a usage error naming the option; no file is created."""
    path = tmp_path / "hub.db"
    result = CliRunner().invoke(
        hub_command, ["serve", "--db", str(path), "--pool-max", "8", "--statement-timeout", "2"]
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "--pool-max, --statement-timeout applies to a PostgreSQL hub (--database URL)" in output
    assert not path.exists()


def test_postgres_settings_name_the_range_they_break() -> None:
    """The engine's own check (for callers of HubConfig): a precise ValueError each."""
    with pytest.raises(ValueError, match="at least 1 connection, not 0"):
        PostgresSettings(min_connections=0)
    with pytest.raises(ValueError, match=r"maximum \(2 connections\) is below its minimum \(3\)"):
        PostgresSettings(min_connections=3, max_connections=2)
    with pytest.raises(ValueError, match=r"between 0\.001 and 600 seconds, not 0"):
        PostgresSettings(statement_timeout=0)


def test_a_hub_process_keeps_its_pool_minimum_open_as_pg_stat_activity_shows(
    database: str, postgres: TestPostgres, tmp_path: Path
) -> None:
    """``--pool-min 3 --pool-max 5``: three connections named memory-actors-hub, per process;
    two processes, six."""
    args = ("--embedder", "none", "--pool-min", "3", "--pool-max", "5")
    with HubProcess.running(database, args=args, log_path=tmp_path / "a.log") as first:
        key = first.add_key("acme")
        with first.client(key) as client:
            client.push([memory("one")])
        wait_until(lambda: _hub_connections(postgres, database) == 3, "3 pooled connections")
        with HubProcess.running(database, args=args, log_path=tmp_path / "b.log"):
            wait_until(lambda: _hub_connections(postgres, database) == 6, "6 pooled connections")
    wait_until(lambda: _hub_connections(postgres, database) == 0, "the pools to close")


def test_a_statement_timeout_from_the_environment_turns_a_stuck_push_into_a_quick_503(
    database: str, tmp_path: Path
) -> None:
    """$MEMORY_ACTORS_HUB_STATEMENT_TIMEOUT=0.3: a push stuck behind another transaction's lock
    answers 503 with Retry-After well before the 5 s lock timeout; once the lock is gone the
    same push is stored."""
    env = {"MEMORY_ACTORS_HUB_STATEMENT_TIMEOUT": "0.3"}
    with HubProcess.running(
        database, args=("--embedder", "none"), env=env, log_path=tmp_path / "hub.log"
    ) as hub:
        key = hub.add_key("acme")
        with hub.client(key, timeout=30.0) as client:
            client.push([memory("first")])
            stuck = memory("pushed while the tenant is locked")
            with psycopg.connect(database) as holder:
                holder.execute("SELECT 1 FROM tenants WHERE tenant = 'acme' FOR UPDATE")
                began = time.monotonic()
                with pytest.raises(HubServerError) as refused:
                    client.push([stuck])
                took = time.monotonic() - began
                holder.rollback()
            assert refused.value.status == 503
            assert refused.value.retry_after is not None
            assert took < 3.0, f"answered after {took:.1f}s: the 5 s lock timeout, not 0.3 s"
            client.push([stuck])
            assert {e.id for e in hub_digest(client)} >= {stuck.id}
            assert client.count().total == 2


def _pg_tool(postgres: TestPostgres, name: str) -> str:
    """The path of a PostgreSQL client tool of the server's own version."""
    if postgres.server is not None:
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)
    return name  # an outside server: the tools on PATH


def test_a_pg_dump_restored_into_a_new_database_serves_the_same_memories(
    database: str, postgres: TestPostgres, tmp_path: Path
) -> None:
    """pg_dump of a serving hub, pg_restore into a new database, a hub on it: same keys, same
    memories and tombstones, same counts, same hub id (so clients' cursors stay valid)."""
    dump = tmp_path / "hub.dump"
    with HubProcess.running(
        database, args=("--embedder", "none"), log_path=tmp_path / "a.log"
    ) as hub:
        key = hub.add_key("acme")
        with hub.client(key, timeout=30.0) as client:
            items = [memory(f"fact {n}") for n in range(300)]
            client.push(items)
            client.push([forget(items[0])])
            subprocess.run(
                [_pg_tool(postgres, "pg_dump"), "--format=custom", f"--file={dump}", database],
                check=True,
                capture_output=True,
            )
            before = client.count()
            digest_before = hub_digest(client)
    name = urlsplit(database).path.lstrip("/") + "_restored"
    restored = with_database(database, name)
    postgres.query(postgres.admin_url, f'CREATE DATABASE "{name}"')
    postgres.created.append(name)
    subprocess.run(
        [_pg_tool(postgres, "pg_restore"), f"--dbname={restored}", str(dump)],
        check=True,
        capture_output=True,
    )
    with (
        HubProcess.running(
            restored, args=("--embedder", "none"), log_path=tmp_path / "b.log"
        ) as hub,
        hub.client(key) as client,
    ):
        assert client.count() == before
        assert hub_digest(client) == digest_before
    hub_id = "SELECT value FROM hub_meta WHERE key = 'hub_id'"
    assert postgres.query(restored, hub_id) == postgres.query(database, hub_id)
