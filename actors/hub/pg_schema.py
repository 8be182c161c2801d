"""The PostgreSQL engine's schema: versioned steps, applied once however many hubs start.

:func:`prepare_pg_database` is the PostgreSQL counterpart of
:func:`actors.hub.schema.prepare_hub_file`. Several hub processes may start
together on one empty database, so the whole check-and-apply runs in one
transaction under a transaction-scoped advisory lock
(``pg_advisory_xact_lock``): the first process applies the steps, the others
wait for its commit, then find nothing to do. PostgreSQL's DDL is
transactional, so a failing step leaves the database exactly as it was, and
a database written by newer code is refused with nothing changed.

The applied steps are rows of ``hub_schema``. With :mod:`actors.hub.postgres`,
the only module of the hub that sees ``psycopg``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict

from actors.errors import MigrationFailed, NotADatabase, SchemaTooNew, StorageError
from actors.model import MigrationReport

__all__ = [
    "PG_LATEST_VERSION",
    "PG_MIGRATION_LOCK",
    "PG_STEPS",
    "PgStep",
    "describe_database",
    "prepare_pg_database",
]

#: The advisory lock every hub process takes to migrate: "MAHB" (memory-actors hub).
PG_MIGRATION_LOCK: Final = 0x4D414842


@attrs.frozen
class PgStep:
    """One schema step: its version, what it does, and its statements (one transaction)."""

    version: int
    description: str
    statements: tuple[str, ...]


PG_STEPS: tuple[PgStep, ...] = (
    PgStep(
        1,
        "hub: keys, tenant change feeds, memories with keyword search, embedding queue, vectors",
        (
            "CREATE TABLE hub_meta (key text PRIMARY KEY, value text NOT NULL)",
            """CREATE TABLE api_keys (
                key_id text PRIMARY KEY,
                tenant text NOT NULL,
                key_hash text NOT NULL,
                created_at double precision NOT NULL,
                revoked_at double precision
            )""",
            # The last sequence number handed out per tenant. A push holds its
            # tenant's row lock until it commits: that orders the feed (see
            # docs/hub-protocol.md, "Cursors and paging").
            """CREATE TABLE tenants (
                tenant text COLLATE "C" PRIMARY KEY,
                last_seq bigint NOT NULL
            )""",
            # COLLATE "C" wherever the SQLite engine compares or orders text:
            # it compares bytes, and (version, origin), ids and namespaces must
            # order the same on both engines (LWW, digest pages, prefix ranges).
            # tags: an array (order kept, @> for all-of filters); metadata: the
            # client's JSON text as it came (jsonb would reorder its keys).
            # fts / words: the keyword ranking (English stemming) and the exact
            # word sequence for identifier phrases, both over content and tags.
            """CREATE TABLE memories (
                rowid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                tenant text COLLATE "C" NOT NULL,
                id text COLLATE "C" NOT NULL,
                namespace text COLLATE "C" NOT NULL,
                content text NOT NULL,
                content_hash text NOT NULL,
                tags text[] NOT NULL,
                metadata text NOT NULL,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                version text COLLATE "C" NOT NULL,
                origin text COLLATE "C" NOT NULL,
                deleted boolean NOT NULL,
                key text,
                seq bigint NOT NULL,
                received_at double precision NOT NULL,
                fts tsvector NOT NULL,
                words tsvector NOT NULL,
                UNIQUE (tenant, id),
                UNIQUE (tenant, seq)
            )""",
            # Content dedup per (tenant, namespace), among live unkeyed memories only.
            """CREATE UNIQUE INDEX memories_dedup ON memories (tenant, namespace, content_hash)
               WHERE NOT deleted AND key IS NULL""",
            "CREATE INDEX memories_fts ON memories USING gin (fts)",
            "CREATE INDEX memories_words ON memories USING gin (words)",
            # Live memories waiting for a vector: written in the push's own
            # transaction (an outbox), drained by the embedders, never by a push.
            # claimed_until: a hub process's embedder took the row; the others
            # skip it until then (a process that died leaves it to the others).
            "CREATE TABLE embed_queue (mem_rowid bigint PRIMARY KEY, claimed_until timestamptz)",
            # The vector feed's counter: one row, locked by each transaction that
            # hands out vector-feed positions, so they commit in order.
            """CREATE TABLE vector_feed (
                one boolean PRIMARY KEY DEFAULT true CHECK (one),
                last_vseq bigint NOT NULL
            )""",
            "INSERT INTO vector_feed (one, last_vseq) VALUES (true, 0)",
            # As on SQLite: ``vector`` NULL marks a dropped vector, kept so that
            # the in-memory index, which follows this table by vseq, learns of it.
            """CREATE TABLE vectors (
                mem_rowid bigint PRIMARY KEY,
                tenant text COLLATE "C" NOT NULL,
                id text NOT NULL,
                model text NOT NULL,
                dimension integer NOT NULL,
                content_hash text NOT NULL,
                vector bytea,
                vseq bigint NOT NULL UNIQUE
            )""",
        ),
    ),
)

PG_LATEST_VERSION: Final = PG_STEPS[-1].version


def describe_database(conninfo: str) -> str:
    """``conninfo`` for messages and logs: user, host, port and database, never a password."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "postgresql://(unparseable URL)"
    user = parts.get("user")
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    where = f"{host}:{port}" if port else str(host)
    login = f"{user}@" if user else ""
    return f"postgresql://{login}{where}/{parts.get('dbname') or ''}"


def connect(conninfo: str, *, connect_timeout: float = 5.0) -> psycopg.Connection[Any]:
    """A plain connection (no pool), for migrations; ``StorageError`` when it cannot connect."""
    options: dict[str, Any] = {}
    if "connect_timeout" not in conninfo_to_dict(conninfo):
        # libpq waits forever on an unresponsive host unless told.
        options["connect_timeout"] = max(1, round(connect_timeout))
    try:
        return psycopg.connect(conninfo, **options)
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot connect to the hub database {describe_database(conninfo)}: {exc}"
        ) from exc


def prepare_pg_database(conninfo: str, *, now: Callable[[], float]) -> MigrationReport:
    """Create or migrate the hub's tables in the database ``conninfo`` names.

    Safe to call from several processes at once: exactly one applies each
    step. Raises :class:`~actors.errors.SchemaTooNew` (written by newer code),
    :class:`~actors.errors.NotADatabase` (the database holds other tables
    named like ours), :class:`~actors.errors.MigrationFailed` or
    :class:`~actors.errors.StorageError`; the database is then unchanged.
    """
    where = describe_database(conninfo)
    conn = connect(conninfo)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
            found = _schema_version(conn)
            if found > PG_LATEST_VERSION:
                raise SchemaTooNew(where, found, PG_LATEST_VERSION)
            if found == 0 and _has_foreign_tables(conn):
                raise NotADatabase(
                    f"{where} already has a memories table but no hub schema: it is not a "
                    "memory-actors hub database. Point --database at an empty database or "
                    "a hub's. Nothing was changed."
                )
            applied = []
            for step in PG_STEPS:
                if step.version <= found:
                    continue
                try:
                    with conn.transaction():
                        _apply(conn, step, now())
                except psycopg.Error as exc:
                    raise MigrationFailed(
                        f"hub schema step {step.version} ({step.description}) failed on "
                        f"{where} and was rolled back: {exc}"
                    ) from exc
                applied.append(step.version)
    except psycopg.Error as exc:
        raise StorageError(f"cannot prepare the hub database {where}: {exc}") from exc
    finally:
        conn.close()
    return MigrationReport(
        path=where,
        from_version=found,
        to_version=max(found, PG_LATEST_VERSION),
        applied=tuple(applied),
        backups=(),
    )


def read_schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of the database ``conn`` is on (0: no hub schema yet)."""
    exists = conn.execute("SELECT to_regclass('hub_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM hub_schema").fetchone()
    return int(row[0]) if row else 0


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS hub_schema ("
        "version integer PRIMARY KEY, description text NOT NULL, "
        "applied_at double precision NOT NULL)"
    )
    return read_schema_version(conn)


def _has_foreign_tables(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('memories') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _apply(conn: psycopg.Connection[Any], step: PgStep, applied_at: float) -> None:
    for statement in step.statements:
        conn.execute(statement.encode())
    conn.execute(
        "INSERT INTO hub_schema (version, description, applied_at) VALUES (%s, %s, %s)",
        (step.version, step.description, applied_at),
    )
