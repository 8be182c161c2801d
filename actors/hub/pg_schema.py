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

Vectors live in pgvector when the database has it. That is not a step of its
own, because the extension may arrive after the schema (an administrator
runs ``CREATE EXTENSION vector`` later): each preparation, under the same
lock, enables it if this role may, and then moves the ``bytea`` vectors of
``vectors.vector`` into a pgvector column with an HNSW index of the current
vector space (:func:`hnsw_index_sql`). Without it the hub searches exactly,
in each process's memory, and says so (:func:`read_vector_search`).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable
from typing import Any, Final

import attrs
import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from actors.errors import MigrationFailed, NotADatabase, SchemaTooNew, StorageError
from actors.hub.search import VectorSearch
from actors.model import MigrationReport

__all__ = [
    "HNSW_EF_CONSTRUCTION",
    "HNSW_M",
    "HNSW_MAX_DIMENSIONS",
    "PG_LATEST_VERSION",
    "PG_MIGRATION_LOCK",
    "PG_STEPS",
    "PgStep",
    "describe_database",
    "hnsw_build_memory",
    "hnsw_index_name",
    "hnsw_index_sql",
    "pgvector_binary",
    "prepare_pg_database",
    "raise_build_memory",
    "read_vector_search",
    "vector_literal",
    "vector_search_of_database",
]

logger = logging.getLogger(__name__)

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
    PgStep(
        2,
        "vectors: an index of each tenant's vectors, for searching them in the database",
        (
            # The exact search in the database (a small tenant, a selective
            # filter, a space without an HNSW index) reads one tenant's vectors.
            "CREATE INDEX vectors_by_tenant ON vectors (tenant, model, dimension)",
        ),
    ),
)

PG_LATEST_VERSION: Final = PG_STEPS[-1].version

#: The most dimensions pgvector's HNSW index takes for the ``vector`` type
#: (0.6; ``halfvec`` takes 4,000 from 0.7). A vector space beyond it is
#: searched exactly, in the database, and the hub says so.
HNSW_MAX_DIMENSIONS: Final = 2000

#: Neighbours per node of the HNSW graph: pgvector's default. More would
#: raise recall too, but grows the index (and the memory that should hold
#: it) with every vector; a wider build search does not.
HNSW_M: Final = 16

#: Candidates weighed per insert while the graph is built: twice pgvector's
#: default (64). A better-connected graph finds more of the true top 10 at
#: the same ``hnsw.ef_search``; it costs build and insert time, not index
#: size. Measured in docs/performance.md ("ef_search follows the index size").
HNSW_EF_CONSTRUCTION: Final = 128

#: How ``hub_meta`` names the current vector space (as the engines write it).
_SPACE_KEYS: Final = ("embed_model", "embed_dimension")


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
            _adopt_pgvector(conn, where)
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


# -- vectors in pgvector ----------------------------------------------------------------------


def vector_literal(blob: bytes) -> str:
    """A float32 little-endian vector (the hub's stored form) as pgvector's text form.

    ``repr`` of each float32 widened to a double is exact, and pgvector
    reads it back to the same float32: the round trip loses nothing.
    """
    values = struct.unpack(f"<{len(blob) // 4}f", blob)
    return "[" + ",".join(map(repr, values)) + "]"


def hnsw_index_name(model: str, dimension: int) -> str:
    """The name of the HNSW index of one vector space (model names may hold any character)."""
    digest = hashlib.sha256(f"{model}\0{dimension}".encode()).hexdigest()[:12]
    return f"vectors_hnsw_{dimension}_{digest}"


def hnsw_index_sql(model: str, dimension: int) -> sql.Composed:
    """``CREATE INDEX`` of the HNSW index of one vector space: a partial expression index.

    The column holds vectors of any size (a model switch changes it), and
    an HNSW index needs one: so each space gets its own index, over
    ``vector::vector(N)`` of its rows only. Inner product on unit vectors
    (every embedder's) orders as cosine does and equals the in-memory
    index's scores. Built with :data:`HNSW_M` and
    :data:`HNSW_EF_CONSTRUCTION`; an index that already exists keeps the
    graph it was built with (``IF NOT EXISTS``).
    """
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON vectors USING hnsw "
        "((vector::vector({dimension})) vector_ip_ops) "
        "WITH (m = {m}, ef_construction = {ef_construction}) "
        "WHERE model = {model} AND dimension = {dimension}"
    ).format(
        name=sql.Identifier(hnsw_index_name(model, dimension)),
        dimension=sql.Literal(int(dimension)),
        m=sql.Literal(HNSW_M),
        ef_construction=sql.Literal(HNSW_EF_CONSTRUCTION),
        model=sql.Literal(model),
    )


def _scalar(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], query: str) -> Any:
    row = conn.execute(query.encode()).fetchone()
    return None if row is None else row[0]


def _vector_column_type(conn: psycopg.Connection[Any]) -> str | None:
    found: str | None = _scalar(
        conn,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass('vectors') AND attname = 'vector' AND NOT attisdropped",
    )
    return found


def _extension_state(conn: psycopg.Connection[Any]) -> str:
    """``installed``, ``available`` (on the server, not in this database) or ``missing``."""
    row = conn.execute(
        b"SELECT installed_version IS NOT NULL FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        return "missing"
    return "installed" if row[0] else "available"


def _may_create_extension(conn: psycopg.Connection[Any]) -> bool:
    """Whether this role may ``CREATE EXTENSION vector`` (asked first: a refusal is logged
    by the server as an error, at every hub start)."""
    row = conn.execute(
        b"SELECT r.rolsuper OR (coalesce(bool_or(v.trusted), false) "
        b"AND has_database_privilege(current_database(), 'CREATE')) "
        b"FROM pg_roles r LEFT JOIN pg_available_extension_versions v ON v.name = 'vector' "
        b"WHERE r.rolname = current_user GROUP BY r.rolsuper"
    ).fetchone()
    return bool(row and row[0])


def _current_space(conn: psycopg.Connection[Any]) -> tuple[str, int] | None:
    rows = dict(
        conn.execute(
            "SELECT key, value FROM hub_meta WHERE key = ANY(%s)", (list(_SPACE_KEYS),)
        ).fetchall()
    )
    if _SPACE_KEYS[0] not in rows:
        return None
    return str(rows[_SPACE_KEYS[0]]), int(rows[_SPACE_KEYS[1]])


def _adopt_pgvector(conn: psycopg.Connection[Any], where: str) -> None:
    """Move the vectors into pgvector if the database has it (or this role may create it).

    In the preparation's transaction: all of it commits, or none. Already
    done, or no pgvector: nothing happens (:func:`read_vector_search` says why).
    """
    if _vector_column_type(conn) != "bytea":
        return
    state = _extension_state(conn)
    if state == "missing" or (state == "available" and not _may_create_extension(conn)):
        return
    if state == "available":
        try:
            with conn.transaction():
                conn.execute(b"CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            logger.info("hub: cannot create the vector extension in %s: %s", where, exc)
            return
    count = int(_scalar(conn, "SELECT count(*) FROM vectors WHERE vector IS NOT NULL") or 0)
    logger.log(
        logging.WARNING if count else logging.DEBUG,
        "hub: moving %d vectors of %s into pgvector",
        count,
        where,
    )
    conn.execute(b"ALTER TABLE vectors ADD COLUMN embedding vector")
    _copy_into_pgvector(conn)
    conn.execute(b"ALTER TABLE vectors DROP COLUMN vector")
    conn.execute(b"ALTER TABLE vectors RENAME COLUMN embedding TO vector")
    space = _current_space(conn)
    if space is not None and space[1] <= HNSW_MAX_DIMENSIONS:
        memory = raise_build_memory(conn, count, space[1])
        logger.warning(
            "hub: building the HNSW index of %s (%d dimensions) over %d vectors "
            "(maintenance_work_mem %s for the build; minutes per 100,000 vectors)",
            space[0],
            space[1],
            count,
            memory,
        )
        conn.execute(hnsw_index_sql(*space))


def pgvector_binary(blob: bytes) -> bytes:
    """A float32 little-endian vector (the hub's stored form) in pgvector's binary form.

    ``vector_recv``'s layout: the dimension and a reserved zero (int16 each),
    then the floats, all in network byte order. Exact: the same float32s.
    """
    values = np.frombuffer(blob, dtype="<f4")
    return struct.pack("!hh", len(values), 0) + values.astype(">f4").tobytes()


def _copy_into_pgvector(conn: psycopg.Connection[Any]) -> None:
    """Fill ``vectors.embedding`` from the ``bytea`` vectors: binary COPY, then one UPDATE.

    Converting each vector to pgvector's text form in Python took 2 s per
    1,000 vectors on a loaded host (35 minutes at a million); the binary
    form is a byte swap.
    """
    conn.execute(
        b"CREATE TEMPORARY TABLE hub_moving_vectors (k bigint PRIMARY KEY, e vector) ON COMMIT DROP"
    )
    with conn.cursor() as target, conn.cursor(name="hub_vectors_to_pgvector") as stored:
        stored.execute(b"SELECT mem_rowid, vector FROM vectors WHERE vector IS NOT NULL")
        # One COPY per batch: the connection cannot fetch while a COPY is open.
        while rows := stored.fetchmany(5000):
            with target.copy(b"COPY hub_moving_vectors (k, e) FROM STDIN (FORMAT BINARY)") as copy:
                # bytea's binary dumper writes the bytes as they are: vector_recv reads them.
                copy.set_types(["int8", "bytea"])
                for rowid, blob in rows:
                    copy.write_row((rowid, pgvector_binary(bytes(blob))))
    conn.execute(
        b"UPDATE vectors v SET embedding = t.e FROM hub_moving_vectors t WHERE v.mem_rowid = t.k"
    )


#: What an HNSW index build may use at most when the hub raises ``maintenance_work_mem``
#: for it. The index is about this big: the server needs that memory to search it fast.
HNSW_BUILD_MEMORY_CAP: Final = 8 * 1024**3


def hnsw_build_memory(count: int, dimension: int) -> int:
    """Bytes of ``maintenance_work_mem`` that hold the HNSW graph of ``count`` vectors.

    Measured: 195 MB of index per 100,000 vectors of 384 dimensions (m 16),
    the vector (4 bytes a dimension) and ~500 bytes of neighbours and
    headers each; a quarter more for the build's own bookkeeping.
    """
    return int(count * (4 * dimension + 512) * 1.25)


def raise_build_memory(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any], count: int, dimension: int
) -> str:
    """Raise ``maintenance_work_mem`` for this transaction so the graph fits (never lower it).

    pgvector builds an HNSW index fast while its graph fits in
    ``maintenance_work_mem`` and many times slower once it does not (the
    server's default is 64 MB: about 30,000 vectors of 384 dimensions).
    """
    wanted = min(hnsw_build_memory(count, dimension), HNSW_BUILD_MEMORY_CAP)
    current = int(
        _scalar(
            conn,
            "SELECT setting::bigint * pg_size_bytes('1' || coalesce(nullif(unit, ''), 'B')) "
            "FROM pg_settings WHERE name = 'maintenance_work_mem'",
        )
    )
    if wanted > current:
        conn.execute(
            sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                sql.Literal(f"{wanted // 1024**2}MB")
            )
        )
    return str(_scalar(conn, "SHOW maintenance_work_mem"))


def read_vector_search(conn: psycopg.Connection[Any]) -> VectorSearch:
    """Where this (prepared) database's vectors are searched, and what the hub says about it."""
    if _vector_column_type(conn) == "vector":
        return VectorSearch(in_database=True)
    database = str(_scalar(conn, "SELECT current_database()"))
    exact = "semantic search is exact, not indexed (each hub process holds every vector)"
    enable = f"CREATE EXTENSION vector; in database {database}, then restart the hub processes"
    match _extension_state(conn):
        case "missing":
            why = (
                "the PostgreSQL server has no pgvector extension; install pgvector on the "
                f"server, run {enable}"
            )
        case "available":
            why = (
                "pgvector is not enabled in this database and the hub's role may not enable "
                f"it; as a superuser run {enable}"
            )
        case _:
            why = "pgvector was enabled after this hub process started; restart the hub processes"
    return VectorSearch(in_database=False, notice=f"{exact}: {why}")


def vector_search_of_database(conninfo: str) -> VectorSearch:
    """:func:`read_vector_search` over a connection of its own; ``StorageError`` if unreachable."""
    conn = connect(conninfo)
    try:
        return read_vector_search(conn)
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot read the hub database {describe_database(conninfo)}: {exc}"
        ) from exc
    finally:
        conn.close()
