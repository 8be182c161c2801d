"""The hub's PostgreSQL engine: :class:`PostgresEngine`, for several hub processes on one database.

It answers every :class:`~actors.hub.engine.HubEngine` call exactly as the
SQLite engine (:mod:`actors.hub.database`, the reference) does: same
last-writer-wins, same content dedup (unkeyed memories only), same feed,
digest, counts and recall records. What differs is that any number of hub
processes may write at once, so the ordering the SQLite engine gets from its
one writer is taken from PostgreSQL's row locks instead:

- **The change feed never skips a change.** A push first locks its tenants'
  rows of ``tenants`` (``SELECT ... FOR UPDATE``, in tenant order so that two
  pushes never deadlock) and holds them until it commits. So a tenant's
  sequence numbers are handed out one transaction at a time, and the
  transaction that takes 7 starts only after the one that took 6 is
  committed and visible: a reader (one snapshot per read) sees a prefix of
  the tenant's feed, never 7 without 6.
- **Last writer wins in the database.** Under that lock each item is compared
  with the stored row, and the write itself is
  ``INSERT ... ON CONFLICT (tenant, id) DO UPDATE ... WHERE (excluded.version,
  excluded.origin) > (memories.version, memories.origin)``: no process can
  overwrite a greater version, whatever it believed.
- **Semantic ranking in the database** when it has pgvector
  (:attr:`PostgresEngine.vector_search`): vectors in a ``vector`` column,
  an HNSW index per vector space, and :meth:`PostgresEngine.recall` ranks
  a query vector itself, so every hub process shares one index. Without
  pgvector each process keeps an exact in-memory index, as on SQLite.
- **The vector feed** (what each process's in-memory vector index follows)
  is ordered the same way by the one row of ``vector_feed``, locked by every
  transaction that hands out vector-feed positions (after its tenant locks).
- **Embedding work is claimed**, not just read: each process's embedder
  takes queued memories with ``FOR UPDATE SKIP LOCKED`` and marks them its
  own for a while, so N processes do not embed each memory N times.

Connections come from a :class:`psycopg_pool.ConnectionPool` that checks a
connection before lending it and replaces broken ones, so a restarted
PostgreSQL is used again without restarting the hub. Each connection runs
with a statement timeout and a lock timeout.

Error contract: every public method raises our storage errors, never
``psycopg``'s. PostgreSQL unreachable, shutting down, a statement or lock
timeout, a deadlock or a serialization failure: :class:`~actors.errors.StorageBusy`
(retry shortly; the hub answers 503 with ``Retry-After``). Anything else the
database refuses: :class:`~actors.errors.StorageError`. A method that writes
has then rolled back. With :mod:`actors.hub.pg_schema`, the only module of
the hub that sees ``psycopg``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeAlias, TypeVar

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from actors.errors import StorageBusy, StorageError
from actors.hub.backend import Cursor
from actors.hub.engine import (
    HitRow,
    check_schema_version,
    digest_page,
    feed_start,
    hits_of,
    memory_of_row,
    rank,
    vector_page,
)
from actors.hub.keys import KeyInfo, StoredKey
from actors.hub.pg_schema import (
    HNSW_EF_CONSTRUCTION,
    HNSW_MAX_DIMENSIONS,
    PG_LATEST_VERSION,
    describe_database,
    hnsw_index_name,
    hnsw_index_sql,
    raise_build_memory,
    read_schema_version,
    read_vector_search,
    vector_literal,
)
from actors.hub.pushes import (
    STORED_COLUMNS,
    DedupSlot,
    StoredMemory,
    Write,
    dedup_slots,
    distinct_runs,
    plan_push,
    queue_change,
    text_changed,
)
from actors.hub.search import (
    MAX_QUERY_TERMS,
    RANK_DEPTH,
    STOP_WORDS,
    EmbedItem,
    VectorChanges,
    VectorSearch,
    VectorSearchResult,
    join_notes,
    vector_ranking,
)
from actors.model import namespace_prefix_range
from actors.wire import (
    Change,
    ChangesPage,
    DigestPage,
    EmbedderInfo,
    HubCounts,
    ItemResult,
    RecallHits,
    RecallQuery,
    WireMemory,
)

if TYPE_CHECKING:
    from actors.hub.engine import EngineOpener, HubEngine

__all__ = ["PostgresEngine"]

logger = logging.getLogger(__name__)

#: pgvector's largest ``hnsw.ef_search``: the most candidates one HNSW search answers.
HNSW_MAX_EF_SEARCH: Final = 1000

#: ``hnsw.ef_search`` of a small index: twice the hub's ranking depth (100).
EF_SEARCH_BASE: Final = 2 * RANK_DEPTH

#: pgvector's ``ef_construction`` when an index does not say (its default).
PGVECTOR_EF_CONSTRUCTION: Final = 64

#: Up to how many vectors :data:`EF_SEARCH_BASE` keeps recall@10 ≥ 0.95, by the
#: graph's ``ef_construction``. pgvector's default graph (64: indexes built before
#: the hub set its own): 0.9995 at 100,000, 0.895 at 1,000,000 (0.933 with 400,
#: 0.952 with 1,000). The hub's graph (:data:`HNSW_EF_CONSTRUCTION`, 128): 0.9745
#: at 1,000,000 (0.9935 with 1,000). docs/performance.md.
EF_SEARCH_BASE_ROWS: Final = {PGVECTOR_EF_CONSTRUCTION: 100_000, HNSW_EF_CONSTRUCTION: 1_000_000}

#: How fast ``ef_search`` grows past its base: ``rows ** 0.7``, the slope measured on
#: pgvector's default graph (200 at 100,000 to 1,000 at 1,000,000 for the same recall).
EF_SEARCH_GROWTH: Final = math.log(5) / math.log(10)


def ef_search_for(rows: float, ef_construction: int = HNSW_EF_CONSTRUCTION) -> int:
    """The ``hnsw.ef_search`` that keeps recall@10 ≥ 0.95 in an index of about ``rows`` vectors.

    An HNSW search of a fixed ``ef_search`` finds less of the true top 10
    as its graph grows, and a better-built graph (``ef_construction``)
    finds more. :data:`EF_SEARCH_BASE` up to the graph's base size
    (:data:`EF_SEARCH_BASE_ROWS`: the largest measured ``ef_construction``
    not above this one's), then growing as ``rows ** 0.7``, rounded up to
    tens, never past :data:`HNSW_MAX_EF_SEARCH`. Small tables keep the
    cheap search.
    """
    measured = max(
        (graph for graph in EF_SEARCH_BASE_ROWS if graph <= ef_construction),
        default=PGVECTOR_EF_CONSTRUCTION,
    )
    base_rows = EF_SEARCH_BASE_ROWS[measured]
    if rows <= base_rows:
        return EF_SEARCH_BASE
    wanted: float = EF_SEARCH_BASE * (rows / base_rows) ** EF_SEARCH_GROWTH
    return min(HNSW_MAX_EF_SEARCH, 10 * math.ceil(wanted / 10 - 1e-9))


def index_ef_construction(cur: _Cur, space: tuple[str, int]) -> int:
    """The ``ef_construction`` the space's HNSW index was built with (the catalog's options)."""
    row = cur.execute(
        "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)",
        (f'"{hnsw_index_name(*space)}"',),
    ).fetchone()
    for option in (row[0] if row else None) or ():
        name, _, value = str(option).partition("=")
        if name == "ef_construction":
            return int(value)
    return PGVECTOR_EF_CONSTRUCTION


def estimated_vectors(cur: _Cur) -> float:
    """About how many rows the ``vectors`` table holds, from the catalog: no scan.

    As the planner estimates it: the density of the last ``ANALYZE``
    (``VACUUM``, index build) times the table's pages now, so growth since
    shows at once. 0 for a table never analyzed and still empty.
    """
    row = cur.execute(
        "SELECT reltuples, relpages, pg_relation_size(oid) / current_setting('block_size')::int "
        "FROM pg_class WHERE oid = 'vectors'::regclass"
    ).fetchone()
    if row is None:
        return 0.0
    tuples, pages, pages_now = float(row[0]), int(row[1]), int(row[2])
    if tuples < 0:  # never analyzed (PostgreSQL 14+ says -1)
        return 0.0
    return tuples / pages * pages_now if pages > 0 else tuples


P = ParamSpec("P")
R = TypeVar("R")

_Cur: TypeAlias = "psycopg.Cursor[tuple[Any, ...]]"

_COLUMNS: Final = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, key"
)

#: A run of pushed items of distinct ids, one row each (arrays in item order),
#: written in that order: an item may take the dedup slot an earlier one left.
#: Parameters: tenant, received_at, then one array per column. The database
#: itself refuses to overwrite a greater version (RETURNING leaves it out).
_UPSERT_RUN: Final = (
    "INSERT INTO memories (tenant, id, namespace, content, content_hash, tags, metadata, "
    "created_at, updated_at, version, origin, deleted, key, seq, received_at, fts, words) "
    "SELECT %s, u.id, u.namespace, u.content, u.content_hash, "
    "ARRAY(SELECT t.tag FROM jsonb_array_elements_text(u.tags::jsonb) WITH ORDINALITY "
    "AS t(tag, n) ORDER BY t.n), u.metadata, u.created_at, u.updated_at, u.version, u.origin, "
    "u.deleted, u.key, u.seq, %s, to_tsvector('english', u.text), to_tsvector('simple', u.words) "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::float8[], %s::float8[], %s::text[], %s::text[], %s::boolean[], %s::text[], "
    "%s::bigint[], %s::text[], %s::text[]) WITH ORDINALITY AS u(id, namespace, content, "
    "content_hash, tags, metadata, created_at, updated_at, version, origin, deleted, key, seq, "
    "text, words, n) ORDER BY u.n "
    "ON CONFLICT (tenant, id) DO UPDATE SET namespace = excluded.namespace, "
    "content = excluded.content, content_hash = excluded.content_hash, "
    "tags = excluded.tags, metadata = excluded.metadata, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at, "
    "version = excluded.version, origin = excluded.origin, "
    "deleted = excluded.deleted, key = excluded.key, seq = excluded.seq, "
    "received_at = excluded.received_at, fts = excluded.fts, words = excluded.words "
    "WHERE (excluded.version, excluded.origin) > (memories.version, memories.origin) "
    "RETURNING id, rowid"
)

#: SQLSTATEs that mean "not now": the server is going away or starting, or a
#: wait ran out (statement or lock timeout), or PostgreSQL chose this
#: transaction as a deadlock or serialization victim. A retry can succeed.
_BUSY_STATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
    }
)

#: Once a call could not get a connection (PostgreSQL down or restarting), the calls
#: of the next this-many seconds answer busy at once, and the one after waits at most
#: this long for a connection. Each call waiting its full ``connection_wait`` behind the
#: one before, in a process whose store actor serves one call at a time, took a hub's
#: 503 to 6-10 s: past a client's 5 s timeout, which costs its memories an attempt.
UNREACHABLE_PROBE: Final = 0.5

#: A word as FTS5's unicode61 tokenizer and :func:`actors.hub.search.fts_query` see one.
_WORD_RE: Final = re.compile(r"\w+", re.UNICODE)


def _is_busy(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg_pool.PoolClosed):
        return False  # this engine was closed: no retry will help
    state = exc.sqlstate
    if state is None:
        # No SQLSTATE: the connection itself failed (refused, reset, pool timeout).
        return isinstance(exc, psycopg.OperationalError)
    return state in _BUSY_STATES or state.startswith("08")


def _translate(exc: psycopg.Error, where: str, what: str) -> StorageError | StorageBusy:
    """Our error for a failed ``what`` ("read changes"): busy (retry shortly) or failed."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _is_busy(exc):
        return StorageBusy(
            f"PostgreSQL ({where}) could not {what} right now ({detail}); retry shortly"
        )
    return StorageError(f"the hub could not {what} in {where}: {detail}")


def _speaks(
    what: str,
) -> Callable[
    [Callable[Concatenate[PostgresEngine, P], R]], Callable[Concatenate[PostgresEngine, P], R]
]:
    """Make a public method raise our storage errors instead of ``psycopg.Error``.

    At the method's edge: its transaction has rolled back by then (the
    pool's connection context rolls back on any exception), so the error
    means "nothing of this call was written".
    """

    def wrap(
        method: Callable[Concatenate[PostgresEngine, P], R],
    ) -> Callable[Concatenate[PostgresEngine, P], R]:
        @functools.wraps(method)
        def call(self: PostgresEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except psycopg.Error as exc:
                raise _translate(exc, self.where, what) from exc

        return call

    return wrap


def _search_texts(item: WireMemory) -> tuple[str, str]:
    """(text for the English keyword vector, the exact words for identifier phrases)."""
    if item.deleted:
        return "", ""
    text = " ".join((item.content, *item.tags))
    # The SQLite engine's FTS5 tokenizer splits on anything but letters and
    # digits, casefolded; identifier phrases ("db prod 1") match that word
    # sequence, so the words vector is built the same way, not by PostgreSQL's
    # parser (which keeps "db-prod-1" or "api.example.com" whole).
    return text, " ".join(_WORD_RE.findall(text.casefold()))


def _ts_query(text: str) -> str | None:
    """A ``to_tsquery`` expression for ``text``: its words OR-ed, stop words dropped.

    The same words as :func:`actors.hub.search.fts_query` gives FTS5; each
    is a quoted lexeme (``\\w+`` holds no quote), so user text is never
    parsed as query syntax.
    """
    words = [w.casefold() for w in _WORD_RE.findall(text)]
    kept = [w for w in dict.fromkeys(words) if w not in STOP_WORDS] or list(dict.fromkeys(words))
    if not kept:
        return None
    return " | ".join(f"'{word}'" for word in kept[:MAX_QUERY_TERMS])


def _recall_filters(
    namespace: str | None, tags: Sequence[str], prefix: str | None = None
) -> tuple[str, list[Any]]:
    """SQL conditions on ``m`` (each with a leading AND) for a namespace, a prefix, all-of tags."""
    sql = ""
    params: list[Any] = []
    if namespace is not None:
        sql += " AND m.namespace = %s"
        params.append(namespace)
    if prefix is not None:
        # A range, not LIKE: user text is never a pattern (see namespace_prefix_range).
        low, high = namespace_prefix_range(prefix)
        sql += " AND (m.namespace = %s OR (m.namespace >= %s AND m.namespace < %s))"
        params.extend((prefix, low, high))
    if tags:
        sql += " AND m.tags @> %s::text[]"
        params.append(list(tags))
    return sql, params


def nearest_sql(space: tuple[str, int], where: str, *, indexed: bool) -> sql.Composed:
    """The query of a tenant's vectors nearest a query vector: (row id, distance), nearest first.

    Parameters: the query vector (pgvector's text form), the tenant, those
    of ``where`` (:func:`_recall_filters`), how many. ``indexed``: ordered
    by the space's HNSW index (its own expression, cast to its dimension,
    and its predicate, the space, as literals: only then can the planner
    use it); otherwise an exact scan of the tenant's vectors.
    """
    model, dimension = space
    column = (
        sql.SQL("(v.vector::vector({}))").format(sql.Literal(dimension))
        if indexed
        else sql.SQL("v.vector")
    )
    return sql.SQL(
        "SELECT v.mem_rowid, {column} <#> %s::vector AS distance FROM vectors v "
        "JOIN memories m ON m.rowid = v.mem_rowid "
        "WHERE v.tenant = %s AND v.model = {model} AND v.dimension = {dimension} "
        "AND v.vector IS NOT NULL AND NOT m.deleted{where} ORDER BY distance LIMIT %s"
    ).format(
        column=column,
        model=sql.Literal(model),
        dimension=sql.Literal(dimension),
        where=sql.SQL(where),
    )


def _row_to_wire(row: Sequence[Any]) -> WireMemory:
    return memory_of_row(row, tags_of=tuple)


class PostgresEngine:
    """The hub's data in a PostgreSQL database: a :class:`~actors.hub.engine.HubEngine`.

    One owner at a time per engine (each hub process has its own, over its
    own pool); any number of engines, in any number of processes, on one
    database. Public methods raise :class:`~actors.errors.StorageError` or
    :class:`~actors.errors.StorageBusy` (``changes`` also
    :class:`~actors.hub.backend.CursorUnknown`), never ``psycopg.Error``.
    """

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool,
        *,
        where: str,
        hub_id: str,
        vector_search: VectorSearch,
    ) -> None:
        self.pool = pool
        self.where = where
        self.hub_id = hub_id
        #: In the database (pgvector) or in each owner's memory; read at open.
        self.vector_search = vector_search
        #: HNSW candidates per search, pinned; None (the default) follows the
        #: size of the vectors table and the index's graph (:func:`ef_search_for`). The index
        #: answers at most this many rows, before the tenant and filters
        #: are applied (pgvector 0.6 has no iterative scan).
        self.ef_search: int | None = None
        #: How many searches one reading of the table's size and the index's
        #: graph serves before the catalog is read again: one small query per
        #: 500 recalls, not one each (counted, not timed: an engine has no
        #: clock of its own, and an idle hub needs no fresh size).
        self.size_refresh_searches = 500
        self._sized: tuple[tuple[str, int], int] | None = None
        self._sized_uses = 0
        #: How long a call waits for a pooled connection before answering busy.
        self.connection_wait = 3.0
        #: PostgreSQL found unreachable, and when to look again (:data:`UNREACHABLE_PROBE`),
        #: by the owner's clock; None: every call waits its ``connection_wait``.
        self.clock: Callable[[], float] | None = None
        self._unreachable = False
        self._next_probe = 0.0
        #: How long taken embedding work stays this engine's before others may take it.
        self.claim_seconds = 60.0

    def __repr__(self) -> str:
        return f"<PostgresEngine {self.where} hub_id={self.hub_id}>"

    @classmethod
    def open(
        cls,
        conninfo: str,
        *,
        new_id: Callable[[], str],
        statement_timeout: float = 5.0,
        lock_timeout: float = 5.0,
        connection_wait: float = 3.0,
        min_connections: int = 1,
        max_connections: int = 4,
        monotonic: Callable[[], float] | None = None,
    ) -> PostgresEngine:
        """Open a pool on a migrated hub database; mint its hub id on first open.

        The pool keeps ``min_connections`` open and opens up to
        ``max_connections`` (:class:`~actors.hub.engines.PostgresSettings`
        validates them). Raises :class:`~actors.errors.SchemaError` for a
        database at another schema version, our storage errors when PostgreSQL
        cannot be reached. ``monotonic``: the owner's clock, which lets calls answer
        busy at once while PostgreSQL is unreachable (:data:`UNREACHABLE_PROBE`); without
        it (a one-shot command) each call waits its ``connection_wait``.
        """
        where = describe_database(conninfo)
        settings = (
            f"SET statement_timeout = {round(statement_timeout * 1000)}; "
            f"SET lock_timeout = {round(lock_timeout * 1000)}"
        )

        def configure(conn: psycopg.Connection[Any]) -> None:
            # Per connection, so a connection the pool opens after a restart gets them too.
            conn.execute(settings.encode())
            conn.commit()

        kwargs: dict[str, Any] = {}
        given = conninfo_to_dict(conninfo)
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = max(1, round(connection_wait))
        if "application_name" not in given:
            # How an operator tells the hubs' connections apart in pg_stat_activity.
            kwargs["application_name"] = "memory-actors-hub"
        pool = psycopg_pool.ConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=min_connections,
            max_size=max_connections,
            configure=configure,
            # Lend only a connection that answers: after PostgreSQL restarted,
            # the first request gets a fresh connection instead of an error.
            check=psycopg_pool.ConnectionPool.check_connection,
            # Keep trying to reconnect for as long as the hub runs.
            reconnect_timeout=365 * 24 * 3600.0,
            name=f"hub-{where}",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=max(connection_wait, 5.0))
            with pool.connection(timeout=connection_wait) as conn:
                version = read_schema_version(conn)
                check_schema_version(
                    where, version, PG_LATEST_VERSION, "memory-actors hub serve --database ..."
                )
                conn.execute(
                    "INSERT INTO hub_meta (key, value) VALUES ('hub_id', %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (new_id(),),
                )
                row = conn.execute("SELECT value FROM hub_meta WHERE key = 'hub_id'").fetchone()
                assert row is not None
                hub_id = str(row[0])
                vector_search = read_vector_search(conn)
        except BaseException as exc:
            pool.close()
            if isinstance(exc, psycopg_pool.PoolTimeout):
                raise StorageError(
                    f"cannot connect to the hub database {where} within "
                    f"{max(connection_wait, 5.0):g}s"
                ) from exc
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open the hub database {where}: {exc}") from exc
            raise
        engine = cls(pool, where=where, hub_id=hub_id, vector_search=vector_search)
        engine.connection_wait = connection_wait
        engine.clock = monotonic
        return engine

    @classmethod
    def opener(cls, conninfo: str, **options: Any) -> EngineOpener:
        """How an owner opens this database, again after each restart (``HubStoreConfig``)."""

        def open_engine(
            new_id: Callable[[], str], monotonic: Callable[[], float] | None
        ) -> HubEngine:
            return cls.open(conninfo, new_id=new_id, monotonic=monotonic, **options)

        return open_engine

    def close(self) -> None:
        self.pool.close(timeout=5.0)

    @contextlib.contextmanager
    def _tx(self, *, snapshot: bool = False) -> Iterator[_Cur]:
        """One transaction on a pooled connection: committed on exit, rolled back on error.

        ``snapshot``: a read-only REPEATABLE READ transaction, so that several
        statements (the feed's head and its rows) see one state.
        """
        with self._connection() as conn, conn.cursor() as cur:
            if snapshot:
                cur.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cur

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; ``PoolTimeout`` (busy) at once or after a short wait while
        PostgreSQL is unreachable (:data:`UNREACHABLE_PROBE`). The pool reconnects on its
        own meanwhile; the first call that gets a connection ends the state."""
        wait, clock = self.connection_wait, self.clock
        if clock is None:
            with self.pool.connection(timeout=wait) as conn:
                yield conn
            return
        if self._unreachable:
            if clock() < self._next_probe:
                raise psycopg_pool.PoolTimeout(
                    f"no connection to be had {UNREACHABLE_PROBE:g}s ago; not waiting again yet"
                )
            wait = min(wait, UNREACHABLE_PROBE)
        try:
            with self.pool.connection(timeout=wait) as conn:
                self._unreachable = False
                yield conn
        except psycopg_pool.PoolTimeout:
            self._unreachable = True
            self._next_probe = clock() + UNREACHABLE_PROBE
            raise

    # -- keys ---------------------------------------------------------------------------

    @_speaks("read an API key")
    def lookup_key(self, key_id: str) -> StoredKey | None:
        with self._tx() as cur:
            row = cur.execute(
                "SELECT key_id, tenant, key_hash, revoked_at FROM api_keys WHERE key_id = %s",
                (key_id,),
            ).fetchone()
        if row is None:
            return None
        return StoredKey(row[0], row[1], row[2], row[3] is not None)

    @_speaks("add a key")
    def add_key(self, key_id: str, tenant: str, key_hash: str, created_at: float) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO api_keys (key_id, tenant, key_hash, created_at) "
                "VALUES (%s, %s, %s, %s)",
                (key_id, tenant, key_hash, created_at),
            )

    @_speaks("list keys")
    def list_keys(self) -> list[KeyInfo]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT key_id, tenant, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, key_id"
            ).fetchall()
        return [KeyInfo(row[0], row[1], row[2], row[3]) for row in rows]

    @_speaks("revoke a key")
    def revoke_key(self, key_id: str, revoked_at: float) -> KeyInfo | None:
        with self._tx() as cur:
            row = cur.execute(
                # COALESCE: the first revocation time stands (idempotent).
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, %s) WHERE key_id = %s "
                "RETURNING key_id, tenant, created_at, revoked_at",
                (revoked_at, key_id),
            ).fetchone()
        return None if row is None else KeyInfo(row[0], row[1], row[2], row[3])

    # -- writes ---------------------------------------------------------------------------

    @_speaks("store a push")
    def commit_pushes(
        self, pushes: Sequence[tuple[str, tuple[WireMemory, ...]]], now: float
    ) -> list[tuple[ItemResult, ...]]:
        """Apply several pushes in one transaction; all commit or none does."""
        with self._tx() as cur:
            heads = self._lock_tenants(cur, sorted({tenant for tenant, _ in pushes}))
            vseq = _VectorFeed(cur)
            results = [
                tuple(self._apply_push(cur, vseq, heads, tenant, items, now))
                for tenant, items in pushes
            ]
            for tenant, seq in heads.items():
                cur.execute(
                    "UPDATE tenants SET last_seq = %s WHERE tenant = %s AND last_seq < %s",
                    (seq, tenant, seq),
                )
        return results

    @staticmethod
    def _lock_tenants(cur: _Cur, tenants: Sequence[str]) -> dict[str, int]:
        """Lock the tenants' feed counters until commit, in tenant order; their heads."""
        # A tenant's first push creates its row; a concurrent first push of the
        # same tenant waits for this insert and then does nothing.
        cur.execute(
            "INSERT INTO tenants (tenant, last_seq) SELECT t, 0 FROM unnest(%s::text[]) AS t "
            "ORDER BY t ON CONFLICT (tenant) DO NOTHING",
            (list(tenants),),
        )
        rows = cur.execute(
            "SELECT tenant, last_seq FROM tenants WHERE tenant = ANY(%s::text[]) "
            "ORDER BY tenant FOR UPDATE",
            (list(tenants),),
        ).fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    def _apply_push(
        self,
        cur: _Cur,
        vseq: _VectorFeed,
        heads: dict[str, int],
        tenant: str,
        items: tuple[WireMemory, ...],
        now: float,
    ) -> list[ItemResult]:
        """Decide the push on what it reads in two queries, then write it in a few statements.

        Under the tenant's lock nothing else writes its memories, so what is
        read stays true until the writes; the writes go in runs of distinct
        ids, each in item order, which is the order the items were decided in.
        """
        stored = self._stored_memories(cur, tenant, items)
        holders = self._slot_holders(cur, tenant, items)
        results, writes, heads[tenant] = plan_push(items, heads[tenant], stored, holders)
        for run in distinct_runs(writes):
            self._write_run(cur, vseq, tenant, run, now)
        return results

    @staticmethod
    def _stored_memories(
        cur: _Cur, tenant: str, items: Sequence[WireMemory]
    ) -> dict[str, StoredMemory]:
        rows = cur.execute(
            f"SELECT id, {STORED_COLUMNS}, EXISTS (SELECT 1 FROM vectors v "
            "WHERE v.mem_rowid = m.rowid AND v.vector IS NOT NULL) FROM memories m "
            "WHERE m.tenant = %s AND m.id = ANY(%s::text[])",
            (tenant, list({item.id for item in items})),
        ).fetchall()
        return {str(row[0]): StoredMemory.from_row(row[1:]) for row in rows}

    @staticmethod
    def _slot_holders(
        cur: _Cur, tenant: str, items: Sequence[WireMemory]
    ) -> dict[DedupSlot, tuple[str, str]]:
        slots = list(dedup_slots(items))
        if not slots:
            return {}
        rows = cur.execute(
            "SELECT m.namespace, m.content_hash, m.id, m.version FROM memories m "
            "JOIN unnest(%s::text[], %s::text[]) AS s(namespace, content_hash) "
            "ON m.namespace = s.namespace AND m.content_hash = s.content_hash "
            "WHERE m.tenant = %s AND NOT m.deleted AND m.key IS NULL",
            ([slot[0] for slot in slots], [slot[1] for slot in slots], tenant),
        ).fetchall()
        return {(row[0], row[1]): (row[2], row[3]) for row in rows}

    def _write_run(
        self,
        cur: _Cur,
        vseq: _VectorFeed,
        tenant: str,
        run: Sequence[Write],
        now: float,
    ) -> None:
        """Write applied items of distinct ids: the rows, then the queue, then the vector feed."""
        items = [write.item for write in run]
        texts = [_search_texts(item) for item in items]
        written = cur.execute(
            _UPSERT_RUN,
            (
                tenant,
                now,
                [i.id for i in items],
                [i.namespace for i in items],
                [i.content for i in items],
                [i.content_hash for i in items],
                [json.dumps(list(i.tags)) for i in items],
                [i.metadata_json() for i in items],
                [i.created_at for i in items],
                [i.updated_at for i in items],
                [i.version for i in items],
                [i.origin for i in items],
                [i.deleted for i in items],
                [i.key for i in items],
                [write.seq for write in run],
                [text for text, _ in texts],
                [words for _, words in texts],
            ),
        ).fetchall()
        rowids = {str(row[0]): int(row[1]) for row in written}
        if len(rowids) != len(run):  # pragma: no cover - the tenant lock makes it unreachable
            raise StorageError(f"memories of {tenant} changed under the tenant lock")
        queued: list[int] = []
        dequeued: list[int] = []
        revectored: list[tuple[int, bool]] = []
        for write in run:
            key = rowids[write.item.id]
            match queue_change(write.stored, write.item):
                case "enqueue":
                    queued.append(key)
                case "dequeue":
                    dequeued.append(key)
            # Only a memory with a vector takes a vector-feed position (and its lock).
            if write.stored is not None and write.stored.has_vector:
                revectored.append((key, text_changed(write.stored, write.item)))
        if queued:
            # A claim on the old text is void: the memory must be embedded again.
            cur.execute(
                "INSERT INTO embed_queue (mem_rowid) SELECT unnest(%s::bigint[]) "
                "ON CONFLICT (mem_rowid) DO UPDATE SET claimed_until = NULL",
                (queued,),
            )
        if dequeued:
            cur.execute("DELETE FROM embed_queue WHERE mem_rowid = ANY(%s::bigint[])", (dequeued,))
        if revectored:
            # A void vector becomes NULL (the in-memory index learns of it by its
            # position); the same text keeps it, and the index re-reads namespace and tags.
            cur.execute(
                "UPDATE vectors v SET vector = CASE WHEN u.void THEN NULL ELSE v.vector END, "
                "vseq = u.vseq FROM unnest(%s::bigint[], %s::bigint[], %s::boolean[]) "
                "AS u(key, vseq, void) WHERE v.mem_rowid = u.key",
                (
                    [key for key, _ in revectored],
                    list(vseq.take(len(revectored))),
                    [void for _, void in revectored],
                ),
            )

    @_speaks("read the embedding space")
    def embed_space(self) -> tuple[str, int] | None:
        """The (model, dimension) of the stored vectors, or None before any embedder ran."""
        with self._tx() as cur:
            return self._embed_space(cur)

    @staticmethod
    def _embed_space(cur: _Cur) -> tuple[str, int] | None:
        rows: dict[str, str] = {
            str(key): str(value)
            for key, value in cur.execute(
                "SELECT key, value FROM hub_meta WHERE key IN ('embed_model', 'embed_dimension')"
            ).fetchall()
        }
        if "embed_model" not in rows:
            return None
        return str(rows["embed_model"]), int(rows["embed_dimension"])

    def _switch_model(self, model: str, dimension: int) -> None:
        """Make (model, dimension) current and queue every memory without such a vector."""
        with self._tx() as cur:
            # Background work that may queue every memory of the hub: not bounded
            # by the request-sized statement timeout.
            cur.execute(b"SET LOCAL statement_timeout = 0")
            # The vector feed's lock also guards the vector space: a concurrent
            # save_vectors sees the space before or after the switch, never half.
            cur.execute("SELECT last_vseq FROM vector_feed FOR UPDATE")
            previous = self._embed_space(cur)
            if previous == (model, dimension):
                return  # another hub process switched first
            cur.execute(
                "INSERT INTO hub_meta (key, value) VALUES ('embed_model', %s), "
                "('embed_dimension', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (model, str(dimension)),
            )
            queued = cur.execute(
                "INSERT INTO embed_queue (mem_rowid) SELECT m.rowid FROM memories m "
                "WHERE NOT m.deleted AND NOT EXISTS (SELECT 1 FROM vectors v "
                "WHERE v.mem_rowid = m.rowid AND v.vector IS NOT NULL AND v.model = %s "
                "AND v.dimension = %s AND v.content_hash = m.content_hash) "
                "ON CONFLICT DO NOTHING",
                (model, dimension),
            ).rowcount
            # Claims taken for the previous space will never be saved.
            cur.execute(b"UPDATE embed_queue SET claimed_until = NULL")
            if self.vector_search.in_database and dimension <= HNSW_MAX_DIMENSIONS:
                # Under the vector feed's lock, which every writer of vectors
                # takes first: the build's table lock cannot deadlock with one.
                # A switch back to an earlier embedder builds over its vectors.
                row = cur.execute(
                    "SELECT count(*) FROM vectors WHERE model = %s AND dimension = %s "
                    "AND vector IS NOT NULL",
                    (model, dimension),
                ).fetchone()
                raise_build_memory(cur, int(row[0]) if row else 0, dimension)
                cur.execute(hnsw_index_sql(model, dimension))
        if self.vector_search.in_database:
            self._drop_other_indexes(model, dimension)
        if previous is not None:
            logger.warning(
                "hub: the embedder changed from %s (%d) to %s (%d); re-embedding %d memories "
                "in the background (recall uses keywords for them meanwhile)",
                previous[0],
                previous[1],
                model,
                dimension,
                queued,
            )

    def _drop_other_indexes(self, model: str, dimension: int) -> None:
        """Drop the HNSW indexes of earlier vector spaces (never searched again); best effort.

        ``CONCURRENTLY``, outside a transaction: a plain ``DROP INDEX`` locks
        the table against every recall and could deadlock with a push.
        """
        keep = hnsw_index_name(model, dimension)
        with self._connection() as conn:
            conn.autocommit = True
            try:
                names = conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = 'vectors' AND indexname LIKE 'vectors\\_hnsw\\_%%' "
                    "AND indexname <> %s",
                    (keep,),
                ).fetchall()
                for (name,) in names:
                    conn.execute(
                        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                    )
            except psycopg.Error as exc:
                logger.warning(
                    "hub: could not drop the HNSW indexes of earlier vector spaces (%s); "
                    "they are no longer used: drop them with DROP INDEX CONCURRENTLY",
                    exc,
                )
            finally:
                conn.autocommit = False

    @_speaks("take embedding work")
    def take_embed_work(self, model: str, dimension: int, limit: int) -> tuple[EmbedItem, ...]:
        """Claim up to ``limit`` live memories waiting for a vector of (model, dimension).

        Several hub processes embed from one queue: each claims its rows for
        :attr:`claim_seconds` (``SKIP LOCKED``: two claims never wait for, or
        overlap, each other), so a memory is embedded by one process; a claim
        that is not saved in time (the process died) passes to another.
        """
        if self.embed_space() != (model, dimension):
            self._switch_model(model, dimension)
        with self._tx() as cur:
            rows = cur.execute(
                "WITH next AS (SELECT q.mem_rowid FROM embed_queue q "
                "JOIN memories m ON m.rowid = q.mem_rowid WHERE NOT m.deleted "
                "AND (q.claimed_until IS NULL OR q.claimed_until < clock_timestamp()) "
                "ORDER BY q.mem_rowid LIMIT %s FOR UPDATE OF q SKIP LOCKED) "
                "UPDATE embed_queue q "
                "SET claimed_until = clock_timestamp() + make_interval(secs => %s) "
                "FROM next, memories m WHERE q.mem_rowid = next.mem_rowid "
                "AND m.rowid = q.mem_rowid RETURNING q.mem_rowid, m.content, m.content_hash",
                (limit, self.claim_seconds),
            ).fetchall()
        return tuple(sorted((EmbedItem(int(r[0]), r[1], r[2]) for r in rows), key=_by_key))

    @_speaks("store vectors")
    def save_vectors(
        self, model: str, dimension: int, rows: Sequence[tuple[int, str, bytes]]
    ) -> int:
        """Store vectors for queued memories whose content is unchanged; one transaction."""
        if not rows:
            return 0
        keys = [key for key, _, _ in rows]
        saved = 0
        with self._tx() as cur:
            # The same lock order as a push (tenants, then the vector feed): a
            # memory cannot change between the check below and the write.
            tenants = cur.execute(
                "SELECT DISTINCT tenant FROM memories WHERE rowid = ANY(%s::bigint[])", (keys,)
            ).fetchall()
            self._lock_tenants(cur, sorted(str(t[0]) for t in tenants))
            vseq = _VectorFeed(cur)
            vseq.lock()
            if self._embed_space(cur) != (model, dimension):
                return 0  # from an embedder that is no longer current
            for key, digest, blob in rows:
                memory = cur.execute(
                    "SELECT tenant, id, content_hash, deleted FROM memories WHERE rowid = %s",
                    (key,),
                ).fetchone()
                if memory is None or memory[3]:
                    cur.execute("DELETE FROM embed_queue WHERE mem_rowid = %s", (key,))
                    continue
                if memory[2] != digest or len(blob) != 4 * dimension:
                    continue  # changed since it was taken: it is still queued
                cur.execute(
                    "INSERT INTO vectors (mem_rowid, tenant, id, model, dimension, content_hash, "
                    f"vector, vseq) VALUES (%s, %s, %s, %s, %s, %s, {self._vector_param}, %s) "
                    "ON CONFLICT (mem_rowid) DO UPDATE SET tenant = excluded.tenant, "
                    "id = excluded.id, model = excluded.model, dimension = excluded.dimension, "
                    "content_hash = excluded.content_hash, vector = excluded.vector, "
                    "vseq = excluded.vseq",
                    (
                        key,
                        memory[0],
                        memory[1],
                        model,
                        dimension,
                        digest,
                        self._stored(blob),
                        vseq.next(),
                    ),
                )
                cur.execute("DELETE FROM embed_queue WHERE mem_rowid = %s", (key,))
                saved += 1
        return saved

    @property
    def _vector_param(self) -> str:
        """The placeholder of a stored vector in SQL (see :meth:`_stored`)."""
        return "%s::vector" if self.vector_search.in_database else "%s"

    def _stored(self, blob: bytes) -> bytes | str:
        """A float32 vector as the ``vectors.vector`` column takes it: pgvector's or bytea."""
        return vector_literal(blob) if self.vector_search.in_database else blob

    @_speaks("read the vector feed")
    def vector_changes(self, after: int, limit: int) -> VectorChanges:
        """The vector feed after position ``after``: each changed memory's current vector."""
        stored = "v.vector::real[]" if self.vector_search.in_database else "v.vector"
        with self._tx(snapshot=True) as cur:
            space = self._embed_space(cur)
            rows = cur.execute(
                f"SELECT v.vseq, v.mem_rowid, v.tenant, v.model, v.dimension, {stored}, "
                "m.namespace, m.tags, m.deleted, v.content_hash = m.content_hash FROM vectors v "
                "JOIN memories m ON m.rowid = v.mem_rowid WHERE v.vseq > %s ORDER BY v.vseq "
                "LIMIT %s",
                (after, limit + 1),
            ).fetchall()
        if self.vector_search.in_database:
            rows = [(*row[:5], _blob(row[5]), *row[6:]) for row in rows]
        return vector_page(space, rows, after, limit, tags_of=tuple)

    @_speaks("count pending embeddings")
    def pending_embeddings(self, tenant: str, indexed_through: int | None = None) -> int:
        """The tenant's live memories still waiting for a vector, or for the index to read it."""
        with self._tx(snapshot=True) as cur:
            return self._pending(cur, tenant, indexed_through)

    @staticmethod
    def _pending(cur: _Cur, tenant: str, indexed_through: int | None) -> int:
        row = cur.execute(
            "SELECT count(*) FROM embed_queue q JOIN memories m ON m.rowid = q.mem_rowid "
            "WHERE m.tenant = %s AND NOT m.deleted",
            (tenant,),
        ).fetchone()
        queued = int(row[0]) if row else 0
        if indexed_through is None:
            return queued
        unread = cur.execute(
            "SELECT count(*) FROM vectors WHERE vseq > %s AND tenant = %s AND vector IS NOT NULL",
            (indexed_through, tenant),
        ).fetchone()
        return queued + (int(unread[0]) if unread else 0)

    @staticmethod
    def _keyword_ranking(
        cur: _Cur, tenant: str, query: RecallQuery, depth: int, *, scored: bool = False
    ) -> list[tuple[int, float]]:
        """The tenant's live memories matching ``query``'s words: (row id, relevance), best first.

        Relevance is PostgreSQL's ``ts_rank`` (higher is better), where the
        SQLite engine reports BM25: the order of the hits is comparable,
        the scores' scale is not.
        """
        match = _ts_query(query.query)
        if match is None:
            return []
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        rows = cur.execute(
            "SELECT m.rowid, ts_rank(m.fts, q) AS rank FROM memories m, "
            "to_tsquery('english', %s) AS q "
            f"WHERE m.fts @@ q AND m.tenant = %s AND NOT m.deleted{where} "
            "ORDER BY rank DESC, m.rowid LIMIT %s",
            [match, tenant, *params, depth],
        ).fetchall()
        return [(int(row[0]), float(row[1]) if scored else 0.0) for row in rows]

    @staticmethod
    def _identifier_matches(
        cur: _Cur, tenant: str, query: RecallQuery, phrases: Sequence[str], depth: int
    ) -> dict[int, int]:
        """How many of ``phrases`` each of the tenant's matching live memories holds."""
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        found: dict[int, int] = {}
        for phrase in phrases:
            for (key,) in cur.execute(
                "SELECT m.rowid FROM memories m "
                "WHERE m.words @@ phraseto_tsquery('simple', %s) AND m.tenant = %s "
                f"AND NOT m.deleted{where} LIMIT %s",
                [phrase, tenant, *params, depth],
            ).fetchall():
                found[int(key)] = found.get(int(key), 0) + 1
        return found

    def _nearest(
        self, cur: _Cur, tenant: str, query: RecallQuery, space: tuple[str, int], vector: bytes
    ) -> list[tuple[int, float]]:
        """The tenant's ``RANK_DEPTH`` memories nearest ``vector`` that pass the filters.

        (row id, inner product = cosine of unit vectors), best first. The
        HNSW index first; it answers at most :meth:`search_breadth` candidates
        before the tenant and filters apply, so when fewer than the recall's
        ``limit`` pass (a selective filter), it asks again for as many
        candidates as pgvector gives (1,000), and only when still too few pass
        (a small tenant, a very selective filter) are the tenant's vectors
        searched exactly: few rows, by its index. Without that middle step a
        filter keeping a tenth of a million vectors fell to an exact scan of
        100,000 of them now and then, past the statement timeout.
        """
        depth = max(RANK_DEPTH, query.limit)
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        args = [vector_literal(vector), tenant, *params, depth]

        def search(indexed: bool) -> list[tuple[int, float]]:
            rows = cur.execute(nearest_sql(space, where, indexed=indexed), args).fetchall()
            return [(int(key), -float(distance)) for key, distance in rows]

        if space[1] <= HNSW_MAX_DIMENSIONS:
            first = min(HNSW_MAX_EF_SEARCH, max(self.search_breadth(cur, space), depth))
            for ef_search in dict.fromkeys((first, HNSW_MAX_EF_SEARCH)):
                cur.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef_search)))
                found = search(True)
                if len(found) >= min(depth, query.limit):
                    return found
        return search(False)

    def search_breadth(self, cur: _Cur, space: tuple[str, int]) -> int:
        """The ``hnsw.ef_search`` of the next search in ``space``: pinned, or from the table's
        size and the index's graph (read again after :attr:`size_refresh_searches` searches)."""
        if self.ef_search is not None:
            return self.ef_search
        if (
            self._sized is None
            or self._sized[0] != space
            or self._sized_uses >= self.size_refresh_searches
        ):
            breadth = ef_search_for(estimated_vectors(cur), index_ef_construction(cur, space))
            self._sized = (space, breadth)
            self._sized_uses = 0
        self._sized_uses += 1
        return self._sized[1]

    def _vector_ranking(
        self, cur: _Cur, tenant: str, query: RecallQuery, vector: bytes, embedder: EmbedderInfo
    ) -> tuple[tuple[tuple[int, float], ...] | None, str]:
        """The database's vector ranking of the query (None: none) and the note that says why."""
        space = self._embed_space(cur)
        wanted = (embedder.name, embedder.dimension)
        if space == wanted and len(vector) == 4 * embedder.dimension:
            found = VectorSearchResult(
                embedder.name, True, tuple(self._nearest(cur, tenant, query, wanted, vector))
            )
        else:
            found = VectorSearchResult(None if space is None else space[0], True, ())
        hits, _, note = vector_ranking(found, embedder.name)
        return hits, note

    @_speaks("recall")
    def recall(
        self,
        tenant: str,
        query: RecallQuery,
        vector_hits: Sequence[tuple[int, float]] | None,
        *,
        embedder: EmbedderInfo | None = None,
        note: str = "",
        indexed_through: int | None = None,
        query_vector: bytes | None = None,
    ) -> RecallHits:
        """Rank (vector hits, None: none; see :mod:`actors.hub.search`), filter, fetch the hits.

        With ``query_vector`` (pgvector only: :attr:`vector_search`), the
        vector ranking is the database's own, in the same snapshot. Only
        the tenant's live memories that pass the filters are answered,
        whatever the vector index believed.
        """
        semantic = embedder is not None and embedder.semantic
        if query_vector is not None and (embedder is None or not self.vector_search.in_database):
            raise ValueError("a query vector needs an embedder and pgvector (vector_search)")
        with self._tx(snapshot=True) as cur:
            if query_vector is not None:
                assert embedder is not None
                vector_hits, own = self._vector_ranking(cur, tenant, query, query_vector, embedder)
                note = join_notes(note, own)
            ranking, ranked = rank(
                query,
                vector_hits,
                semantic,
                keyword=lambda depth, scored: self._keyword_ranking(
                    cur, tenant, query, depth, scored=scored
                ),
                identifiers=lambda phrases, depth: self._identifier_matches(
                    cur, tenant, query, phrases, depth
                ),
            )
            keys = [key for key, _ in ranked]
            # The answer's rows first: the rankings applied the filters already, so
            # they are nearly always all there. Each row fetched is a random page
            # of the table, read from disk when the cache is cold.
            rows = self._hit_rows(cur, tenant, query, keys[: query.limit])
            if len(rows) < query.limit and len(keys) > query.limit:
                rows.update(self._hit_rows(cur, tenant, query, keys[query.limit :]))
            pending = self._pending(cur, tenant, indexed_through)
        return RecallHits(
            hits_of(ranked, rows, vector_hits, query.limit),
            ranking=ranking,
            embedder=embedder,
            pending=pending,
            note=note,
        )

    @staticmethod
    def _hit_rows(
        cur: _Cur, tenant: str, query: RecallQuery, keys: Sequence[int]
    ) -> dict[int, HitRow]:
        """The rows of those of ``keys`` that are the tenant's, live and pass the filters."""
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        return {
            int(row[0]): (row[1], row[2], row[3], tuple(row[4]), row[5])
            for row in cur.execute(
                "SELECT m.rowid, m.id, m.namespace, m.content, m.tags, m.created_at "
                "FROM memories m WHERE m.rowid = ANY(%s::bigint[]) AND m.tenant = %s "
                f"AND NOT m.deleted{where}",
                [list(keys), tenant, *params],
            ).fetchall()
        }

    # -- reads ------------------------------------------------------------------------------

    @staticmethod
    def _head(cur: _Cur, tenant: str) -> int:
        row = cur.execute("SELECT last_seq FROM tenants WHERE tenant = %s", (tenant,)).fetchone()
        return 0 if row is None else int(row[0])

    def _cursor(self, seq: int) -> str:
        return Cursor(self.hub_id, seq).encode()

    @_speaks("read changes")
    def changes(self, tenant: str, since: Cursor | None, limit: int) -> ChangesPage:
        with self._tx(snapshot=True) as cur:
            start = feed_start(since, self.hub_id, self._head(cur, tenant))
            rows = cur.execute(
                f"SELECT {_COLUMNS}, seq FROM memories WHERE tenant = %s AND seq > %s "
                "ORDER BY seq LIMIT %s",
                (tenant, start, limit + 1),
            ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        changes = tuple(Change(int(row[12]), _row_to_wire(row)) for row in rows)
        last = changes[-1].seq if changes else start
        return ChangesPage(changes, self._cursor(last), has_more)

    @_speaks("read a digest")
    def digest(self, tenant: str, after: str | None, limit: int) -> DigestPage:
        with self._tx(snapshot=True) as cur:
            cursor = self._cursor(self._head(cur, tenant))
            rows = cur.execute(
                "SELECT id, namespace, content_hash, version, origin, deleted FROM memories "
                "WHERE tenant = %s AND id > %s ORDER BY id LIMIT %s",
                (tenant, after or "", limit + 1),
            ).fetchall()
        return digest_page(rows, limit, cursor)

    @_speaks("list tenants")
    def tenants(self) -> list[str]:
        """Every tenant that has a change feed, by name."""
        with self._tx() as cur:
            # A row at 0: a push of that tenant that applied nothing (no feed yet).
            rows = cur.execute(
                "SELECT tenant FROM tenants WHERE last_seq > 0 ORDER BY tenant"
            ).fetchall()
        return [str(row[0]) for row in rows]

    @_speaks("count memories")
    def counts(self, tenant: str) -> HubCounts:
        with self._tx(snapshot=True) as cur:
            cursor = self._cursor(self._head(cur, tenant))
            rows = cur.execute(
                "SELECT namespace, deleted, count(*) FROM memories WHERE tenant = %s "
                "GROUP BY namespace, deleted ORDER BY namespace",
                (tenant,),
            ).fetchall()
        by_namespace = {str(row[0]): int(row[2]) for row in rows if not row[1]}
        forgotten = sum(int(row[2]) for row in rows if row[1])
        return HubCounts(sum(by_namespace.values()), by_namespace, forgotten, cursor)


def _by_key(item: EmbedItem) -> int:
    return item.key


def _blob(values: Sequence[float] | None) -> bytes | None:
    """pgvector's vector read as ``real[]``, in the hub's stored form (float32 little-endian)."""
    return None if values is None else struct.pack(f"<{len(values)}f", *values)


class _VectorFeed:
    """Vector-feed positions for one transaction, under the ``vector_feed`` row lock.

    The lock is taken on first use and held until the transaction ends, so
    positions commit in the order they are handed out (as tenant feed
    sequence numbers do under the tenant locks).
    """

    def __init__(self, cur: _Cur) -> None:
        self.cur = cur
        self.last: int | None = None

    def lock(self) -> None:
        if self.last is None:
            row = self.cur.execute("SELECT last_vseq FROM vector_feed FOR UPDATE").fetchone()
            assert row is not None, "the vector_feed row is created by the schema"
            self.last = int(row[0])

    def next(self) -> int:
        return self.take(1)[0]

    def take(self, count: int) -> range:
        """The next ``count`` positions, in order."""
        self.lock()
        assert self.last is not None
        first = self.last + 1
        self.last += count
        self.cur.execute("UPDATE vector_feed SET last_vseq = %s", (self.last,))
        return range(first, self.last + 1)


if TYPE_CHECKING:
    # mypy proves here that PostgresEngine is a HubEngine (the Protocol is structural).
    _ENGINE: type[HubEngine] = PostgresEngine
