"""The hub's SQLite engine: :class:`HubDatabase`, plain logic over one connection.

What it does: last-writer-wins pushes, per-tenant change feeds, digests,
counts, key rows; and for semantic recall the embedding queue (written in
each push's transaction: an outbox), the stored vectors and their feed,
keyword and identifier matches, and the final ranking, filtering and fetch
of a recall. It implements :class:`~actors.hub.engine.HubEngine`, whose
docstring holds the contract; the schema it runs on is
:mod:`actors.hub.schema`.

Every public method raises our storage errors, never ``sqlite3.Error``
(:func:`_speaks` translates at the method's edge, naming what failed), so
that its owners (the HubStoreActor, the DirectBackend, key administration)
stay engine-agnostic. With :mod:`actors.hub.schema`, the only module of the
hub that sees ``sqlite3``.

Why the change feed can never skip a change: every sequence number is
assigned inside a transaction of the one owner that writes, and reads are
served by the same owner after that transaction committed. So a reader never
sees sequence 7 committed while 6 is still in flight.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from actors._sqlite import Connect, Synchronous, is_busy
from actors._sqlite import connect as sqlite_connect
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
from actors.hub.pushes import (
    STORED_COLUMNS,
    DedupSlot,
    StoredMemory,
    dedup_slots,
    plan_push,
    queue_change,
    text_changed,
)
from actors.hub.schema import HUB_LATEST_VERSION
from actors.hub.search import (
    IN_MEMORY,
    EmbedItem,
    VectorChanges,
    fts_query,
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

__all__ = ["HubDatabase"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted, key"
)


def _translate(exc: sqlite3.Error, path: str, what: str) -> StorageError | StorageBusy:
    """Our error for a failed ``what`` ("read changes"): busy (retry shortly) or failed."""
    if is_busy(exc):
        return StorageBusy(
            f"{path} stayed locked while the hub tried to {what} ({exc}); retry shortly"
        )
    return StorageError(f"the hub could not {what} in {path}: {exc}")


def _speaks(
    what: str,
) -> Callable[[Callable[Concatenate[HubDatabase, P], R]], Callable[Concatenate[HubDatabase, P], R]]:
    """Make a public method raise our storage errors instead of ``sqlite3.Error``.

    At the method's edge, not around each statement: a method that writes
    has rolled back by then, so the error means "nothing of this call was
    written". ``what`` completes "the hub could not ...". Internal helpers
    are not wrapped, so an error names the operation the owner asked for.
    """

    def wrap(
        method: Callable[Concatenate[HubDatabase, P], R],
    ) -> Callable[Concatenate[HubDatabase, P], R]:
        @functools.wraps(method)
        def call(self: HubDatabase, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, what) from exc

        return call

    return wrap


def _recall_filters(
    namespace: str | None, tags: Sequence[str], prefix: str | None = None
) -> tuple[str, list[Any]]:
    """SQL conditions on ``m`` (each with a leading AND) for a namespace, a prefix, all-of tags."""
    sql = ""
    params: list[Any] = []
    if namespace is not None:
        sql += " AND m.namespace = ?"
        params.append(namespace)
    if prefix is not None:
        # A range, not LIKE: user text is never a pattern (see namespace_prefix_range).
        low, high = namespace_prefix_range(prefix)
        sql += " AND (m.namespace = ? OR (m.namespace >= ? AND m.namespace < ?))"
        params.extend((prefix, low, high))
    for tag in tags:
        sql += " AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)"
        params.append(tag)
    return sql, params


def _row_to_wire(row: Sequence[Any]) -> WireMemory:
    return memory_of_row(row, tags_of=lambda tags: tuple(json.loads(tags)))


class HubDatabase:
    """The hub's data over one SQLite connection: a :class:`~actors.hub.engine.HubEngine`.

    Not thread-safe: one owner at a time. Public methods raise
    :class:`~actors.errors.StorageError` or :class:`~actors.errors.StorageBusy`
    (``changes`` also :class:`~actors.hub.backend.CursorUnknown`), never
    ``sqlite3.Error``.
    """

    #: SQLite searches no vectors: each owner keeps an exact in-memory index.
    vector_search = IN_MEMORY

    def __init__(self, conn: sqlite3.Connection, *, path: str, hub_id: str) -> None:
        self.conn = conn
        self.path = path
        self.hub_id = hub_id
        #: The last vector-feed position handed out in the open transaction (None: not read).
        self._vseq: int | None = None

    def __repr__(self) -> str:
        return f"<HubDatabase {self.path} hub_id={self.hub_id}>"

    @classmethod
    def open(
        cls,
        path: str,
        *,
        new_id: Callable[[], str],
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        connect: Connect | None = None,
    ) -> HubDatabase:
        """Open a migrated hub file; mint its hub id on first open. Raises our storage errors.

        The id is read without a write lock and minted under one only when
        missing, so opening a served file (``hub keys list``) does not wait
        behind the hub's transactions.
        """
        opener = connect or (lambda p: sqlite_connect(p, busy_timeout=busy_timeout))
        try:
            conn = opener(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the hub database {path}: {exc}") from exc
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            check_schema_version(path, version, HUB_LATEST_VERSION, "memory-actors hub serve")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            hub_id = _read_hub_id(conn)
            if hub_id is None:
                conn.execute("BEGIN IMMEDIATE")
                # Re-read under the lock: another process may have minted it meanwhile.
                hub_id = _read_hub_id(conn)
                if hub_id is None:
                    hub_id = new_id()
                    conn.execute("INSERT INTO meta(key, value) VALUES ('hub_id', ?)", (hub_id,))
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot prepare the hub database {path}: {exc}") from exc
            raise
        return cls(conn, path=path, hub_id=hub_id)

    @classmethod
    def opener(
        cls,
        path: str,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        connect: Connect | None = None,
    ) -> EngineOpener:
        """How an owner opens this file, again after each restart (``HubStoreConfig``)."""

        def open_engine(
            new_id: Callable[[], str], monotonic: Callable[[], float] | None
        ) -> HubEngine:
            # No clock needed: a busy file is waited out by SQLite's own busy timeout.
            return cls.open(
                path,
                new_id=new_id,
                synchronous=synchronous,
                busy_timeout=busy_timeout,
                connect=connect,
            )

        return open_engine

    def close(self) -> None:
        self.conn.close()

    # -- keys ---------------------------------------------------------------------------

    @_speaks("read an API key")
    def lookup_key(self, key_id: str) -> StoredKey | None:
        row = self.conn.execute(
            "SELECT key_id, tenant, key_hash, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredKey(row[0], row[1], row[2], row[3] is not None)

    @_speaks("add a key")
    def add_key(self, key_id: str, tenant: str, key_hash: str, created_at: float) -> None:
        # One statement: autocommit makes it its own transaction.
        self.conn.execute(
            "INSERT INTO api_keys(key_id, tenant, key_hash, created_at) VALUES (?, ?, ?, ?)",
            (key_id, tenant, key_hash, created_at),
        )

    @_speaks("list keys")
    def list_keys(self) -> list[KeyInfo]:
        rows = self.conn.execute(
            "SELECT key_id, tenant, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at, key_id"
        ).fetchall()
        return [KeyInfo(row[0], row[1], row[2], row[3]) for row in rows]

    @_speaks("revoke a key")
    def revoke_key(self, key_id: str, revoked_at: float) -> KeyInfo | None:
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (revoked_at, key_id),
            )
            row = db.execute(
                "SELECT key_id, tenant, created_at, revoked_at FROM api_keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return None if row is None else KeyInfo(row[0], row[1], row[2], row[3])

    # -- writes ---------------------------------------------------------------------------

    @_speaks("store a push")
    def commit_pushes(
        self, pushes: Sequence[tuple[str, tuple[WireMemory, ...]]], now: float
    ) -> list[tuple[ItemResult, ...]]:
        """Apply several pushes in one transaction; all commit or none does."""
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        self._vseq = None
        try:
            results = [tuple(self._apply_push(tenant, items, now)) for tenant, items in pushes]
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return results

    def _apply_push(
        self, tenant: str, items: tuple[WireMemory, ...], now: float
    ) -> list[ItemResult]:
        db = self.conn
        start = self._head(tenant)
        results, writes, seq = plan_push(
            items, start, self._stored_memories(tenant, items), self._slot_holders(tenant, items)
        )
        inserted: dict[str, int] = {}
        for write in writes:
            item = write.item
            values = (
                item.namespace,
                item.content,
                item.content_hash,
                json.dumps(list(item.tags)),
                item.metadata_json(),
                item.created_at,
                item.updated_at,
                item.version,
                item.origin,
                int(item.deleted),
                write.seq,
                now,
                item.key,
            )
            if write.stored is None:
                cursor = db.execute(
                    "INSERT INTO memories(namespace, content, content_hash, tags, metadata, "
                    "created_at, updated_at, version, origin, deleted, seq, received_at, "
                    "key, tenant, id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, tenant, item.id),
                )
                assert cursor.lastrowid is not None
                inserted[item.id] = cursor.lastrowid
                if not item.deleted:
                    self._enqueue_embedding(cursor.lastrowid)
            else:
                db.execute(
                    "UPDATE memories SET namespace = ?, content = ?, content_hash = ?, tags = ?, "
                    "metadata = ?, created_at = ?, updated_at = ?, version = ?, origin = ?, "
                    "deleted = ?, seq = ?, received_at = ?, key = ? WHERE tenant = ? AND id = ?",
                    (*values, tenant, item.id),
                )
                key = write.stored.rowid
                self._revector(inserted[item.id] if key is None else key, write.stored, item)
        if seq != start:
            db.execute(
                "INSERT INTO tenants(tenant, last_seq) VALUES (?, ?) "
                "ON CONFLICT(tenant) DO UPDATE SET last_seq = excluded.last_seq",
                (tenant, seq),
            )
        return results

    def _stored_memories(self, tenant: str, items: Sequence[WireMemory]) -> dict[str, StoredMemory]:
        """The stored memories the items name. One lookup each: in-process, microseconds."""
        stored = {}
        for memory_id in {item.id for item in items}:
            row = self.conn.execute(
                f"SELECT {STORED_COLUMNS} FROM memories WHERE tenant = ? AND id = ?",
                (tenant, memory_id),
            ).fetchone()
            if row is not None:
                stored[memory_id] = StoredMemory.from_row(row)
        return stored

    def _slot_holders(
        self, tenant: str, items: Sequence[WireMemory]
    ) -> dict[DedupSlot, tuple[str, str]]:
        """Who holds each dedup slot the items' live unkeyed contents would take."""
        holders = {}
        for slot in dedup_slots(items):
            row = self.conn.execute(
                "SELECT id, version FROM memories WHERE tenant = ? AND namespace = ? "
                "AND content_hash = ? AND deleted = 0 AND key IS NULL",
                (tenant, *slot),
            ).fetchone()
            if row is not None:
                holders[slot] = (row[0], row[1])
        return holders

    # -- semantic recall: the embedding queue and the vector feed -----------------------

    def _next_vseq(self) -> int:
        """The next vector-feed position; call only inside a write transaction."""
        if self._vseq is None:
            row = self.conn.execute("SELECT coalesce(max(vseq), 0) FROM vectors").fetchone()
            self._vseq = int(row[0])
        self._vseq += 1
        return self._vseq

    def _enqueue_embedding(self, key: int | None) -> None:
        self.conn.execute("INSERT OR IGNORE INTO embed_queue(mem_rowid) VALUES (?)", (key,))

    def _drop_vector(self, key: int) -> None:
        self.conn.execute(
            "UPDATE vectors SET vector = NULL, vseq = ? WHERE mem_rowid = ? AND vector IS NOT NULL",
            (self._next_vseq(), key),
        )

    def _revector(self, key: int, stored: StoredMemory, item: WireMemory) -> None:
        """Keep the queue and the vectors true to a memory row that a push just changed."""
        change = queue_change(stored, item)
        if change == "dequeue":
            self.conn.execute("DELETE FROM embed_queue WHERE mem_rowid = ?", (key,))
        elif change == "enqueue":
            self._enqueue_embedding(key)
        if text_changed(stored, item):
            self._drop_vector(key)
        else:
            # Same text: the vector stands; the index re-reads namespace and tags.
            self.conn.execute(
                "UPDATE vectors SET vseq = ? WHERE mem_rowid = ? AND vector IS NOT NULL",
                (self._next_vseq(), key),
            )

    @_speaks("read the embedding space")
    def embed_space(self) -> tuple[str, int] | None:
        """The (model, dimension) of the stored vectors, or None before any embedder ran."""
        return self._embed_space()

    def _embed_space(self) -> tuple[str, int] | None:
        rows = dict(
            self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('embed_model', 'embed_dimension')"
            ).fetchall()
        )
        if "embed_model" not in rows:
            return None
        return str(rows["embed_model"]), int(rows["embed_dimension"])

    def _switch_model(self, model: str, dimension: int) -> int:
        """Make (model, dimension) current and queue every memory without such a vector."""
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        try:
            previous = self._embed_space()
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('embed_model', ?), "
                "('embed_dimension', ?)",
                (model, str(dimension)),
            )
            queued = db.execute(
                "INSERT OR IGNORE INTO embed_queue(mem_rowid) SELECT m.rowid FROM memories m "
                "WHERE m.deleted = 0 AND NOT EXISTS (SELECT 1 FROM vectors v "
                "WHERE v.mem_rowid = m.rowid AND v.vector IS NOT NULL AND v.model = ? "
                "AND v.dimension = ? AND v.content_hash = m.content_hash)",
                (model, dimension),
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
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
        return int(queued)

    def _rollback(self) -> None:
        self._vseq = None
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("%r: rollback failed", self)

    @_speaks("take embedding work")
    def take_embed_work(self, model: str, dimension: int, limit: int) -> tuple[EmbedItem, ...]:
        """Up to ``limit`` live memories waiting for a (model, dimension) vector, oldest first."""
        if self._embed_space() != (model, dimension):
            self._switch_model(model, dimension)
        rows = self.conn.execute(
            "SELECT q.mem_rowid, m.content, m.content_hash FROM embed_queue q "
            "JOIN memories m ON m.rowid = q.mem_rowid WHERE m.deleted = 0 "
            "ORDER BY q.mem_rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return tuple(EmbedItem(int(r[0]), r[1], r[2]) for r in rows)

    @_speaks("store vectors")
    def save_vectors(
        self, model: str, dimension: int, rows: Sequence[tuple[int, str, bytes]]
    ) -> int:
        """Store vectors for queued memories whose content is unchanged; one transaction."""
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        self._vseq = None
        saved = 0
        try:
            if self._embed_space() != (model, dimension):
                db.execute("ROLLBACK")
                return 0  # from an embedder that is no longer current
            for key, digest, blob in rows:
                memory = db.execute(
                    "SELECT tenant, id, content_hash, deleted FROM memories WHERE rowid = ?",
                    (key,),
                ).fetchone()
                if memory is None or memory[3]:
                    db.execute("DELETE FROM embed_queue WHERE mem_rowid = ?", (key,))
                    continue
                if memory[2] != digest or len(blob) != 4 * dimension:
                    continue  # changed since it was taken: it is still queued
                db.execute(
                    "INSERT INTO vectors(mem_rowid, tenant, id, model, dimension, content_hash, "
                    "vector, vseq) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(mem_rowid) DO UPDATE SET "
                    "tenant = excluded.tenant, id = excluded.id, model = excluded.model, "
                    "dimension = excluded.dimension, content_hash = excluded.content_hash, "
                    "vector = excluded.vector, vseq = excluded.vseq",
                    (key, memory[0], memory[1], model, dimension, digest, blob, self._next_vseq()),
                )
                db.execute("DELETE FROM embed_queue WHERE mem_rowid = ?", (key,))
                saved += 1
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return saved

    @_speaks("read the vector feed")
    def vector_changes(self, after: int, limit: int) -> VectorChanges:
        """The vector feed after position ``after``: each changed memory's current vector."""
        space = self._embed_space()
        rows = self.conn.execute(
            "SELECT v.vseq, v.mem_rowid, v.tenant, v.model, v.dimension, v.vector, m.namespace, "
            "m.tags, m.deleted, v.content_hash = m.content_hash FROM vectors v "
            "JOIN memories m ON m.rowid = v.mem_rowid WHERE v.vseq > ? ORDER BY v.vseq LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        return vector_page(space, rows, after, limit, tags_of=lambda t: tuple(json.loads(t)))

    @_speaks("count pending embeddings")
    def pending_embeddings(self, tenant: str, indexed_through: int | None = None) -> int:
        """The tenant's live memories still waiting for a vector, or for the index to read it.

        ``indexed_through`` is the vector index's feed position (None: do not
        count what the index has yet to read).
        """
        return self._pending(tenant, indexed_through)

    def _pending(self, tenant: str, indexed_through: int | None) -> int:
        row = self.conn.execute(
            # CROSS JOIN: walk the (short) queue, not every memory of the tenant.
            "SELECT count(*) FROM embed_queue q CROSS JOIN memories m ON m.rowid = q.mem_rowid "
            "WHERE m.tenant = ? AND m.deleted = 0",
            (tenant,),
        ).fetchone()
        queued = int(row[0])
        if indexed_through is None:
            return queued
        unread = self.conn.execute(
            "SELECT count(*) FROM vectors WHERE vseq > ? AND tenant = ? AND vector IS NOT NULL",
            (indexed_through, tenant),
        ).fetchone()
        return queued + int(unread[0])

    def _keyword_ranking(
        self,
        tenant: str,
        query: RecallQuery,
        depth: int,
        *,
        scored: bool = False,
    ) -> list[tuple[int, float]]:
        """The tenant's live memories matching ``query``'s words: (row id, BM25), best first.

        BM25 is reported positive (higher is better). Its statistics (how
        rare a word is) are those of the whole hub, every tenant included:
        scores and order may shift with other tenants' data, results never.
        """
        match = fts_query(query.query)
        if match is None:
            return []
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        rows = self.conn.execute(
            # CROSS JOIN: the full-text match drives (see _identifier_matches).
            "SELECT m.rowid, bm25(memories_fts) FROM memories_fts "
            "CROSS JOIN memories m ON m.rowid = memories_fts.rowid "
            f"WHERE memories_fts MATCH ? AND m.tenant = ? AND m.deleted = 0{where} "
            "ORDER BY bm25(memories_fts) LIMIT ?",
            [match, tenant, *params, depth],
        ).fetchall()
        return [(int(row[0]), -float(row[1]) if scored else 0.0) for row in rows]

    def _identifier_matches(
        self, tenant: str, query: RecallQuery, phrases: Sequence[str], depth: int
    ) -> dict[int, int]:
        """How many of ``phrases`` each of the tenant's matching live memories holds."""
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        found: dict[int, int] = {}
        for phrase in phrases:
            for (key,) in self.conn.execute(
                # CROSS JOIN keeps the full-text match the outer loop: left to itself,
                # SQLite drives from the tenant's index and probes FTS5 once per
                # memory (0.9 s instead of 0.1 ms at 100,000 memories).
                "SELECT m.rowid FROM memories_fts CROSS JOIN memories m "
                "ON m.rowid = memories_fts.rowid "
                f"WHERE memories_fts MATCH ? AND m.tenant = ? AND m.deleted = 0{where} LIMIT ?",
                [f'"{phrase}"', tenant, *params, depth],
            ).fetchall():
                found[int(key)] = found.get(int(key), 0) + 1
        return found

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

        Only the tenant's live memories that pass the filters are answered,
        whatever the vector index believed: the index may lag the store by
        a moment, the store never does.
        """
        if query_vector is not None:
            raise ValueError("the SQLite engine ranks no query vector: pass vector_hits")
        semantic = embedder is not None and embedder.semantic
        ranking, ranked = rank(
            query,
            vector_hits,
            semantic,
            keyword=lambda depth, scored: self._keyword_ranking(
                tenant, query, depth, scored=scored
            ),
            identifiers=lambda phrases, depth: self._identifier_matches(
                tenant, query, phrases, depth
            ),
        )
        wanted = [key for key, _ in ranked]
        rows: dict[int, HitRow] = {}
        where, params = _recall_filters(query.namespace, query.tags, query.namespace_prefix)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                # "+m.tenant": look the rows up by rowid; an index on tenant would
                # make SQLite walk the whole tenant (16 ms instead of 0.3 at 100,000).
                "SELECT m.rowid, m.id, m.namespace, m.content, m.tags, m.created_at "
                f"FROM memories m WHERE m.rowid IN ({marks}) AND +m.tenant = ? "
                f"AND m.deleted = 0{where}",
                [*chunk, tenant, *params],
            ).fetchall():
                rows[int(row[0])] = (row[1], row[2], row[3], tuple(json.loads(row[4])), row[5])
        return RecallHits(
            hits_of(ranked, rows, vector_hits, query.limit),
            ranking=ranking,
            embedder=embedder,
            pending=self._pending(tenant, indexed_through),
            note=note,
        )

    # -- reads ------------------------------------------------------------------------------

    def _head(self, tenant: str) -> int:
        row = self.conn.execute(
            "SELECT last_seq FROM tenants WHERE tenant = ?", (tenant,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _cursor(self, seq: int) -> str:
        return Cursor(self.hub_id, seq).encode()

    @_speaks("read changes")
    def changes(self, tenant: str, since: Cursor | None, limit: int) -> ChangesPage:
        start = feed_start(since, self.hub_id, self._head(tenant))
        rows = self.conn.execute(
            f"SELECT {_COLUMNS}, seq FROM memories WHERE tenant = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (tenant, start, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        changes = tuple(Change(row[12], _row_to_wire(row)) for row in rows)
        last = changes[-1].seq if changes else start
        return ChangesPage(changes, self._cursor(last), has_more)

    @_speaks("read a digest")
    def digest(self, tenant: str, after: str | None, limit: int) -> DigestPage:
        cursor = self._cursor(self._head(tenant))
        rows = self.conn.execute(
            "SELECT id, namespace, content_hash, version, origin, deleted FROM memories "
            "WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?",
            (tenant, after or "", limit + 1),
        ).fetchall()
        return digest_page(rows, limit, cursor)

    @_speaks("list tenants")
    def tenants(self) -> list[str]:
        """Every tenant that has a change feed, by name."""
        rows = self.conn.execute("SELECT tenant FROM tenants ORDER BY tenant").fetchall()
        return [str(row[0]) for row in rows]

    @_speaks("count memories")
    def counts(self, tenant: str) -> HubCounts:
        cursor = self._cursor(self._head(tenant))
        by_namespace = {
            name: int(count)
            for name, count in self.conn.execute(
                "SELECT namespace, count(*) FROM memories WHERE tenant = ? AND deleted = 0 "
                "GROUP BY namespace ORDER BY namespace",
                (tenant,),
            ).fetchall()
        }
        forgotten = self.conn.execute(
            "SELECT count(*) FROM memories WHERE tenant = ? AND deleted = 1", (tenant,)
        ).fetchone()[0]
        return HubCounts(sum(by_namespace.values()), by_namespace, int(forgotten), cursor)


def _read_hub_id(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()
    return None if row is None else str(row[0])


if TYPE_CHECKING:
    # mypy proves here that HubDatabase is a HubEngine (the Protocol is structural).
    _ENGINE: type[HubEngine] = HubDatabase
