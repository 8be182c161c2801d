"""The hub's storage: its schema steps, the database logic, and the actor that owns it.

- :data:`HUB_STEPS` are the hub file's migrations, applied by the same
  :func:`actors.migrations.migrate` as the client's (a different step list).
  The file is marked with ``PRAGMA application_id`` so that a client store
  file and a hub file cannot be mistaken for one another.
- :class:`HubDatabase` is plain logic over one connection: last-writer-wins
  pushes, per-tenant change feeds, digests, counts, key lookups; and for
  semantic recall the embedding queue (written in each push's transaction:
  an outbox), the stored vectors and their feed, keyword and identifier
  matches, and the final ranking, filtering and fetch of a recall. Not
  thread-safe: it belongs to exactly one owner.
- :class:`HubStoreActor` is that owner while the hub serves: a
  :class:`~actors._base.ReplyingActor` that group-commits pushes exactly as
  the client's StoreActor group-commits stores (a push appends itself to the
  pending batch; the first one tells the actor ``HubFlush``; one transaction
  commits every push queued before it; then each caller is answered). Reads
  flush first, so a client reads its acknowledged pushes.
- :class:`DirectBackend` runs a HubDatabase in the caller's thread, for the
  deterministic simulation and in-process tests (no actor, no threads); given
  an embedder, each recall first embeds the whole backlog in that thread.
- :func:`add_key`, :func:`list_keys`, :func:`revoke_key`: key administration
  on the file, for the CLI. SQLite's locking makes them safe while a hub
  serves the same file; a revoked key is refused from the next request on,
  because the hub reads the key row on every request (no cache).

Only this module of the hub touches ``sqlite3``; its errors become
:class:`~actors.errors.StorageError` or :class:`~actors.errors.StorageBusy`.

Why the change feed can never skip a change: every sequence number is
assigned inside a transaction of the one actor that writes, and reads are
served by the same actor after that transaction committed. So a reader never
sees sequence 7 committed while 6 is still in flight.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from actors._base import DEFERRED, ReplyingActor
from actors._batch import GroupCommit
from actors._sqlite import Connect, Synchronous, is_busy
from actors._sqlite import connect as sqlite_connect
from actors.errors import NotADatabase, SchemaError, StorageBusy, StorageError
from actors.hub.backend import Cursor, CursorUnknown
from actors.hub.keys import KeyInfo, StoredKey, hash_key, new_key, validate_tenant
from actors.hub.messages import (
    HubFlush,
    HubLookupKey,
    HubPush,
    HubReadChanges,
    HubReadCounts,
    HubReadDigest,
    HubReadVectorChanges,
    HubRecall,
    HubSaveVectors,
    HubTakeEmbedWork,
)
from actors.hub.search import (
    IDENTIFIER_BOOST,
    KEYWORD_WEIGHT,
    RANK_DEPTH,
    EmbedItem,
    RecallUnsupported,
    VectorChange,
    VectorChanges,
    fts_query,
    fuse,
    identifier_phrases,
    round_score,
)
from actors.messages import Ping
from actors.migrations import MigrationReport, Step, migrate, read_version
from actors.runtime import Runtime
from actors.wire import (
    Change,
    ChangesPage,
    DigestEntry,
    DigestPage,
    EmbedderInfo,
    HubCounts,
    ItemResult,
    RecallHits,
    RecallQuery,
    RecallRanking,
    RemoteHit,
    WireMemory,
)

if TYPE_CHECKING:
    from actors.hub.embedders import Embedder
    from actors.hub.vectors import VectorIndex

__all__ = [
    "HUB_APPLICATION_ID",
    "HUB_LATEST_VERSION",
    "HUB_STEPS",
    "DirectBackend",
    "HubDatabase",
    "HubStoreActor",
    "HubStoreConfig",
    "add_key",
    "list_keys",
    "prepare_hub_file",
    "revoke_key",
]

logger = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of a hub file: "MAHB" (memory-actors hub).
HUB_APPLICATION_ID: Final = 0x4D414842

HUB_STEPS: tuple[Step, ...] = (
    Step(
        1,
        "hub: api keys, tenant change feeds, memories",
        (
            f"PRAGMA application_id = {HUB_APPLICATION_ID}",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at REAL NOT NULL
            )""",
            """CREATE TABLE api_keys (
                key_id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                key_hash TEXT NOT NULL,
                created_at REAL NOT NULL,
                revoked_at REAL
            )""",
            # The last sequence number handed out per tenant: each tenant has its own feed.
            """CREATE TABLE tenants (
                tenant TEXT PRIMARY KEY,
                last_seq INTEGER NOT NULL
            )""",
            # Every table is scoped by tenant: the same memory id under two
            # tenants is two unrelated rows.
            """CREATE TABLE memories (
                rowid INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                namespace TEXT NOT NULL,
                content TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                tags TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                version TEXT NOT NULL,
                origin TEXT NOT NULL,
                deleted INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                received_at REAL NOT NULL,
                UNIQUE (tenant, id)
            )""",
            # The change feed: a memory sits at the sequence number of its latest change.
            "CREATE UNIQUE INDEX memories_feed ON memories(tenant, seq)",
            # Content dedup per (tenant, namespace), among live memories only.
            """CREATE UNIQUE INDEX memories_dedup ON memories(tenant, namespace, content_hash)
               WHERE deleted = 0""",
        ),
    ),
    Step(
        2,
        "hub: keyword index (FTS5), embedding queue and vectors for semantic recall",
        (
            # The client's tokenizer, so hub and client keyword rankings agree.
            """CREATE VIRTUAL TABLE memories_fts USING fts5(
                content, tags, content='memories', content_rowid='rowid',
                tokenize='porter unicode61 remove_diacritics 2'
            )""",
            """CREATE TRIGGER memories_ai AFTER INSERT ON memories WHEN new.deleted = 0 BEGIN
                INSERT INTO memories_fts(rowid, content, tags)
                VALUES (new.rowid, new.content, new.tags);
            END""",
            """CREATE TRIGGER memories_ad AFTER DELETE ON memories WHEN old.deleted = 0 BEGIN
                INSERT INTO memories_fts(memories_fts, rowid, content, tags)
                VALUES ('delete', old.rowid, old.content, old.tags);
            END""",
            """CREATE TRIGGER memories_au AFTER UPDATE OF content, tags, deleted ON memories BEGIN
                INSERT INTO memories_fts(memories_fts, rowid, content, tags)
                SELECT 'delete', old.rowid, old.content, old.tags WHERE old.deleted = 0;
                INSERT INTO memories_fts(rowid, content, tags)
                SELECT new.rowid, new.content, new.tags WHERE new.deleted = 0;
            END""",
            """INSERT INTO memories_fts(rowid, content, tags)
               SELECT rowid, content, tags FROM memories WHERE deleted = 0""",
            # Live memories waiting for a vector: written in the push's own
            # transaction (an outbox), drained by the EmbedderActor, never by a push.
            "CREATE TABLE embed_queue (mem_rowid INTEGER PRIMARY KEY)",
            # One vector per memory row. ``vector`` NULL marks a dropped vector
            # (forgotten or changed memory): the row stays so that the index,
            # which follows this table by ``vseq``, learns of the drop.
            """CREATE TABLE vectors (
                mem_rowid INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                model TEXT NOT NULL,
                dimension INTEGER NOT NULL,
                content_hash TEXT NOT NULL,
                vector BLOB,
                vseq INTEGER NOT NULL
            )""",
            "CREATE UNIQUE INDEX vectors_feed ON vectors(vseq)",
            "INSERT INTO embed_queue(mem_rowid) SELECT rowid FROM memories WHERE deleted = 0",
        ),
        rewrites_data=True,
    ),
)

HUB_LATEST_VERSION: Final = HUB_STEPS[-1].version

_COLUMNS = (
    "id, namespace, content, content_hash, tags, metadata, created_at, updated_at, "
    "version, origin, deleted"
)


def _translate(exc: sqlite3.Error, path: str, what: str) -> StorageError | StorageBusy:
    if is_busy(exc):
        return StorageBusy(f"{path} stayed locked while the hub {what} ({exc}); retry shortly")
    return StorageError(f"the hub could not {what} in {path}: {exc}")


def _recall_filters(namespace: str | None, tags: Sequence[str]) -> tuple[str, list[Any]]:
    """SQL conditions on ``m`` (each with a leading AND) for a namespace and all-of tags."""
    sql = ""
    params: list[Any] = []
    if namespace is not None:
        sql += " AND m.namespace = ?"
        params.append(namespace)
    for tag in tags:
        sql += " AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)"
        params.append(tag)
    return sql, params


def _wall_clock() -> Callable[[], float]:
    from actors.runtime import ThreadedRuntime

    return ThreadedRuntime().wall_time


# -- the file -------------------------------------------------------------------------


def prepare_hub_file(
    path: str, *, now: Callable[[], float], connect: Connect = sqlite_connect
) -> MigrationReport:
    """Create or migrate the hub file at ``path``; refuse a file that is not a hub's.

    Raises :class:`~actors.errors.NotADatabase` (not SQLite, or a client's
    store file), :class:`~actors.errors.SchemaTooNew` or
    :class:`~actors.errors.MigrationFailed`; the file is then left as it was.
    """
    if read_version(path) > 0:
        try:
            conn = connect(path)
            try:
                app_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise NotADatabase(f"{path} is not a usable SQLite database: {exc}") from exc
        if app_id != HUB_APPLICATION_ID:
            raise NotADatabase(
                f"{path} is not a memory-actors hub database (application_id {app_id:#x}; "
                "a client's memory file?). Point --db at a hub file. The file was not modified."
            )
    return migrate(path, connect=connect, steps=HUB_STEPS, now=now)


def _row_to_wire(row: Sequence[Any]) -> WireMemory:
    return WireMemory(
        id=row[0],
        namespace=row[1],
        content=row[2],
        content_hash=row[3],
        tags=tuple(json.loads(row[4])),
        metadata=json.loads(row[5]),
        created_at=row[6],
        updated_at=row[7],
        version=row[8],
        origin=row[9],
        deleted=bool(row[10]),
    )


class HubDatabase:
    """The hub's data logic over one connection. Not thread-safe: one owner at a time.

    Methods raise ``sqlite3.Error`` (their owner translates it) and
    :class:`~actors.hub.backend.CursorUnknown`.
    """

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
        """Open a migrated hub file; mint its hub id on first open. Raises our storage errors."""
        opener = connect or (lambda p: sqlite_connect(p, busy_timeout=busy_timeout))
        try:
            conn = opener(path)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the hub database {path}: {exc}") from exc
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != HUB_LATEST_VERSION:
                raise SchemaError(
                    f"{path} is at hub schema {version}, this code needs {HUB_LATEST_VERSION}; "
                    "start the hub with `memory-actors hub serve`, which migrates it"
                )
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()
            if row is None:
                hub_id = new_id()
                conn.execute("INSERT INTO meta(key, value) VALUES ('hub_id', ?)", (hub_id,))
            else:
                hub_id = row[0]
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot prepare the hub database {path}: {exc}") from exc
            raise
        return cls(conn, path=path, hub_id=hub_id)

    def close(self) -> None:
        self.conn.close()

    # -- keys ---------------------------------------------------------------------------

    def lookup_key(self, key_id: str) -> StoredKey | None:
        row = self.conn.execute(
            "SELECT key_id, tenant, key_hash, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredKey(row[0], row[1], row[2], row[3] is not None)

    # -- writes ---------------------------------------------------------------------------

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
        start = seq = self._head(tenant)
        results: list[ItemResult] = []
        for item in items:
            row = db.execute(
                "SELECT version, origin, rowid, content_hash, deleted FROM memories "
                "WHERE tenant = ? AND id = ?",
                (tenant, item.id),
            ).fetchone()
            if row is not None:
                # Last writer wins: the greater (version, origin) pair, compared as strings.
                current, incoming = (row[0], row[1]), (item.version, item.origin)
                if incoming == current:
                    results.append(ItemResult(item.id, "unchanged", row[0]))
                    continue
                if incoming < current:
                    results.append(ItemResult(item.id, "stale", row[0]))
                    continue
            if not item.deleted:
                twin = db.execute(
                    "SELECT id, version FROM memories WHERE tenant = ? AND namespace = ? "
                    "AND content_hash = ? AND deleted = 0 AND id != ?",
                    (tenant, item.namespace, item.content_hash, item.id),
                ).fetchone()
                if twin is not None:
                    results.append(ItemResult(item.id, "duplicate", twin[1], twin[0]))
                    continue
            seq += 1
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
                seq,
                now,
            )
            if row is None:
                cursor = db.execute(
                    "INSERT INTO memories(namespace, content, content_hash, tags, metadata, "
                    "created_at, updated_at, version, origin, deleted, seq, received_at, "
                    "tenant, id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, tenant, item.id),
                )
                if not item.deleted:
                    self._enqueue_embedding(cursor.lastrowid)
            else:
                db.execute(
                    "UPDATE memories SET namespace = ?, content = ?, content_hash = ?, tags = ?, "
                    "metadata = ?, created_at = ?, updated_at = ?, version = ?, origin = ?, "
                    "deleted = ?, seq = ?, received_at = ? WHERE tenant = ? AND id = ?",
                    (*values, tenant, item.id),
                )
                self._revector(row[2], item, old_hash=row[3], was_deleted=bool(row[4]))
            results.append(ItemResult(item.id, "applied", item.version))
        if seq != start:
            db.execute(
                "INSERT INTO tenants(tenant, last_seq) VALUES (?, ?) "
                "ON CONFLICT(tenant) DO UPDATE SET last_seq = excluded.last_seq",
                (tenant, seq),
            )
        return results

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

    def _revector(self, key: int, item: WireMemory, *, old_hash: str, was_deleted: bool) -> None:
        """Keep the queue and the vectors true to a memory row that a push just changed."""
        if item.deleted:
            self.conn.execute("DELETE FROM embed_queue WHERE mem_rowid = ?", (key,))
            self._drop_vector(key)
        elif was_deleted or item.content_hash != old_hash:
            self._enqueue_embedding(key)
            self._drop_vector(key)
        else:
            # Same text: the vector stands; the index re-reads namespace and tags.
            self.conn.execute(
                "UPDATE vectors SET vseq = ? WHERE mem_rowid = ? AND vector IS NOT NULL",
                (self._next_vseq(), key),
            )

    def embed_space(self) -> tuple[str, int] | None:
        """The (model, dimension) of the stored vectors, or None before any embedder ran."""
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
            previous = self.embed_space()
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

    def take_embed_work(self, model: str, dimension: int, limit: int) -> tuple[EmbedItem, ...]:
        """Up to ``limit`` live memories waiting for a (model, dimension) vector, oldest first."""
        if self.embed_space() != (model, dimension):
            self._switch_model(model, dimension)
        rows = self.conn.execute(
            "SELECT q.mem_rowid, m.content, m.content_hash FROM embed_queue q "
            "JOIN memories m ON m.rowid = q.mem_rowid WHERE m.deleted = 0 "
            "ORDER BY q.mem_rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return tuple(EmbedItem(int(r[0]), r[1], r[2]) for r in rows)

    def save_vectors(
        self, model: str, dimension: int, rows: Sequence[tuple[int, str, bytes]]
    ) -> int:
        """Store vectors for queued memories whose content is unchanged; one transaction."""
        db = self.conn
        db.execute("BEGIN IMMEDIATE")
        self._vseq = None
        saved = 0
        try:
            if self.embed_space() != (model, dimension):
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

    def vector_changes(self, after: int, limit: int) -> VectorChanges:
        """The vector feed after position ``after``: each changed memory's current vector."""
        space = self.embed_space()
        rows = self.conn.execute(
            "SELECT v.vseq, v.mem_rowid, v.tenant, v.model, v.dimension, v.vector, m.namespace, "
            "m.tags, m.deleted, v.content_hash = m.content_hash FROM vectors v "
            "JOIN memories m ON m.rowid = v.mem_rowid WHERE v.vseq > ? ORDER BY v.vseq LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        changes = []
        for row in rows:
            current = (
                space is not None
                and (row[3], row[4]) == space
                and row[5] is not None
                and not row[8]
                and bool(row[9])
            )
            changes.append(
                VectorChange(
                    key=int(row[1]),
                    tenant=row[2],
                    namespace=row[6],
                    tags=tuple(json.loads(row[7])),
                    vector=bytes(row[5]) if current else None,
                )
            )
        return VectorChanges(
            model=None if space is None else space[0],
            dimension=0 if space is None else space[1],
            changes=tuple(changes),
            next_after=int(rows[-1][0]) if rows else after,
            has_more=has_more,
        )

    def pending_embeddings(self, tenant: str, indexed_through: int | None = None) -> int:
        """The tenant's live memories still waiting for a vector, or for the index to read it.

        ``indexed_through`` is the vector index's feed position (None: do not
        count what the index has yet to read).
        """
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

    def keyword_ranking(
        self,
        tenant: str,
        query: str,
        namespace: str | None,
        tags: Sequence[str],
        depth: int,
        *,
        scored: bool = False,
    ) -> list[tuple[int, float]]:
        """The tenant's live memories matching ``query``'s words: (row id, BM25), best first.

        BM25 is reported positive (higher is better). Its statistics (how
        rare a word is) are those of the whole hub, every tenant included:
        scores and order may shift with other tenants' data, results never.
        """
        match = fts_query(query)
        if match is None:
            return []
        where, params = _recall_filters(namespace, tags)
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
        where, params = _recall_filters(query.namespace, query.tags)
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

    def _rank(
        self,
        tenant: str,
        query: RecallQuery,
        vector_hits: Sequence[tuple[int, float]] | None,
        semantic: bool,
    ) -> tuple[RecallRanking, list[tuple[int, float]]]:
        """The ranking (see :mod:`actors.hub.search`) as (row id, score), best first."""
        depth = max(RANK_DEPTH, query.limit)
        if vector_hits is None:
            keyword = self.keyword_ranking(
                tenant, query.query, query.namespace, query.tags, depth, scored=True
            )
            return "keyword", keyword
        if not semantic:
            keyword = self.keyword_ranking(tenant, query.query, query.namespace, query.tags, depth)
            by_vector = [key for key, _ in vector_hits]
            return "hybrid", fuse([by_vector, [key for key, _ in keyword]], [1.0, KEYWORD_WEIGHT])
        phrases = identifier_phrases(query.query)
        if not phrases:
            return "vector", list(vector_hits)
        scores = dict(vector_hits)
        # A memory found only by its identifiers gets the lowest similarity the
        # vector ranking returned: a lower bound of its own, which is lower still.
        floor = min(scores.values(), default=0.0)
        order = {key: rank for rank, (key, _) in enumerate(vector_hits)}
        for key, count in self._identifier_matches(tenant, query, phrases, depth).items():
            scores[key] = scores.get(key, floor) + IDENTIFIER_BOOST * count / len(phrases)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], order.get(item[0], depth)))
        return "vector", ranked

    def recall(
        self,
        tenant: str,
        query: RecallQuery,
        vector_hits: Sequence[tuple[int, float]] | None,
        *,
        embedder: EmbedderInfo | None = None,
        note: str = "",
        indexed_through: int | None = None,
    ) -> RecallHits:
        """Rank (vector hits, None: none; see :mod:`actors.hub.search`), filter, fetch the hits.

        Only the tenant's live memories that pass the filters are answered,
        whatever the vector index believed: the index may lag the store by
        a moment, the store never does.
        """
        semantic = embedder is not None and embedder.semantic
        ranking, ranked = self._rank(tenant, query, vector_hits, semantic)
        similarity = dict(vector_hits or ())
        wanted = [key for key, _ in ranked]
        rows: dict[int, Sequence[Any]] = {}
        where, params = _recall_filters(query.namespace, query.tags)
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
                rows[int(row[0])] = row
        hits = []
        for key, score in ranked:
            row = rows.get(key)
            if row is None:
                continue
            sim = similarity.get(key)
            hits.append(
                RemoteHit(
                    id=row[1],
                    namespace=row[2],
                    content=row[3],
                    tags=tuple(json.loads(row[4])),
                    score=round_score(score),
                    created_at=row[5],
                    similarity=None if sim is None else round_score(sim),
                )
            )
            if len(hits) == query.limit:
                break
        return RecallHits(
            tuple(hits),
            ranking=ranking,
            embedder=embedder,
            pending=self.pending_embeddings(tenant, indexed_through),
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

    def changes(self, tenant: str, since: Cursor | None, limit: int) -> ChangesPage:
        head = self._head(tenant)
        start = 0
        if since is not None:
            if since.hub_id != self.hub_id:
                raise CursorUnknown(
                    f"cursor {since.encode()} was issued by another hub database (this one is "
                    f"{self.hub_id}): the hub was rebuilt or replaced; pull again from the "
                    "beginning (omit since)"
                )
            if since.seq > head:
                raise CursorUnknown(
                    f"cursor {since.encode()} is ahead of this hub's change feed, which ends at "
                    f"{head}: the hub's database was restored from an older copy; pull again "
                    "from the beginning (omit since)"
                )
            start = since.seq
        rows = self.conn.execute(
            f"SELECT {_COLUMNS}, seq FROM memories WHERE tenant = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (tenant, start, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        changes = tuple(Change(row[11], _row_to_wire(row)) for row in rows)
        last = changes[-1].seq if changes else start
        return ChangesPage(changes, self._cursor(last), has_more)

    def digest(self, tenant: str, after: str | None, limit: int) -> DigestPage:
        cursor = self._cursor(self._head(tenant))
        rows = self.conn.execute(
            "SELECT id, namespace, content_hash, version, origin, deleted FROM memories "
            "WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?",
            (tenant, after or "", limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        entries = tuple(
            DigestEntry(row[0], row[1], row[2], row[3], row[4], bool(row[5]))
            for row in rows[:limit]
        )
        next_after = entries[-1].id if has_more and entries else None
        return DigestPage(entries, next_after, has_more, cursor)

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


# -- the actor ------------------------------------------------------------------------------


@attrs.frozen
class HubStoreConfig:
    """How the HubStoreActor opens and uses the hub file."""

    path: str
    #: FULL: a push is answered only once it survives power loss.
    synchronous: Synchronous = "FULL"
    busy_timeout: float = 5.0
    group_commit: bool = True
    connect: Connect | None = None


class HubStoreActor(ReplyingActor):
    """Sole owner of the hub file while the hub serves; group-commits pushes.

    Runs on one thread of its own (threaded runtime). On orderly stop the
    pending pushes are committed and answered; requests queued behind the
    stop get :class:`~actors.errors.Unavailable`. A failed transaction rolls
    back and the pushes in it are retried one by one, so only a failing one
    fails (``StorageError``; ``StorageBusy`` when the file stayed locked past
    the busy timeout); the actor lives on.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: HubStoreConfig,
        *,
        name: str = "hub-store",
        supervisor: Any = None,
    ) -> None:
        super().__init__(runtime, name=name, supervisor=supervisor)
        self.config = config
        self.database: HubDatabase | None = None
        self._batch: GroupCommit[HubPush] = GroupCommit(
            self._commit,
            schedule=lambda: self.actor_ref.tell(HubFlush()),
            translate=self._translate,
            is_busy=lambda exc: isinstance(exc, sqlite3.Error) and is_busy(exc),
            database_errors=(sqlite3.Error,),
            enabled=config.group_commit,
        )

    def __repr__(self) -> str:
        return (
            f"<HubStoreActor {self.name} pending={len(self._batch.pending)} "
            f"batches={self._batch.batches} state={self.state}>"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self) -> None:
        self.database = HubDatabase.open(
            self.config.path,
            new_id=self.runtime.new_id,
            synchronous=self.config.synchronous,
            busy_timeout=self.config.busy_timeout,
            connect=self.config.connect,
        )

    def teardown(self) -> None:
        if self.database is not None:
            self.database.close()
            self.database = None

    def settle_on_stop(self) -> None:
        self._batch.flush()

    def fail_held(self, exc: BaseException) -> None:
        self._batch.fail_pending(exc)

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case HubPush():
                self._batch.add(message)
                return DEFERRED
            case HubFlush():
                self._batch.scheduled = False
                self._batch.flush()
                return None
            case HubLookupKey(key_id=key_id):
                # Keys are written by the CLI, never by pushes: no flush needed.
                return self._read("read an API key", lambda db: db.lookup_key(key_id))
            case HubReadChanges(tenant=tenant, since=since, limit=limit):
                self._batch.flush()
                return self._read("read changes", lambda db: db.changes(tenant, since, limit))
            case HubReadDigest(tenant=tenant, after=after, limit=limit):
                self._batch.flush()
                return self._read("read a digest", lambda db: db.digest(tenant, after, limit))
            case HubReadCounts(tenant=tenant):
                self._batch.flush()
                return self._read("count memories", lambda db: db.counts(tenant))
            case HubTakeEmbedWork(model=model, dimension=dimension, limit=limit):
                self._batch.flush()
                return self._read(
                    "take embedding work", lambda db: db.take_embed_work(model, dimension, limit)
                )
            case HubSaveVectors(model=model, dimension=dimension, rows=rows):
                return self._read(
                    "store vectors", lambda db: db.save_vectors(model, dimension, rows)
                )
            case HubReadVectorChanges(after=position, limit=page_size):
                self._batch.flush()
                return self._read(
                    "read the vector feed", lambda db: db.vector_changes(position, page_size)
                )
            case HubRecall():
                self._batch.flush()
                request = message
                return self._read(
                    "recall",
                    lambda db: db.recall(
                        request.tenant,
                        RecallQuery(request.query, request.namespace, request.tags, request.limit),
                        request.vector_hits,
                        embedder=request.embedder,
                        note=request.note,
                        indexed_through=request.indexed_through,
                    ),
                )
            case Ping():
                return self.state
        return super().handle(message)

    @property
    def _db(self) -> HubDatabase:
        if self.database is None:
            raise StorageError("the hub's database is closed")
        return self.database

    def _read(self, what: str, read: Callable[[HubDatabase], Any]) -> Any:
        db = self._db
        try:
            return read(db)
        except sqlite3.Error as exc:
            raise _translate(exc, db.path, what) from exc

    # -- group commit -----------------------------------------------------------------------

    def _commit(self, batch: list[HubPush]) -> list[tuple[ItemResult, ...]]:
        return self._db.commit_pushes(
            [(p.tenant, p.items) for p in batch], self.runtime.wall_time()
        )

    def _translate(self, exc: Exception) -> BaseException:
        assert isinstance(exc, sqlite3.Error)
        return _translate(exc, self._db.path, "stored a push")


# -- in-thread backend ---------------------------------------------------------------------


class DirectBackend:
    """A :class:`~actors.hub.backend.HubBackend` that runs a HubDatabase in the calling thread.

    For the deterministic simulation and in-process tests: no actor, no
    thread, no timeout (every call completes before it returns). Not
    thread-safe; one caller at a time.
    """

    def __init__(
        self, database: HubDatabase, *, now: Callable[[], float], embedder: Embedder | None = None
    ) -> None:
        self.database = database
        self.now = now
        #: With an embedder, recall works (each recall first embeds the whole
        #: backlog, in this thread); without one it answers 501, as before.
        self.embedder = embedder
        self._index: VectorIndex | None = None
        self._feed_after = 0

    def __repr__(self) -> str:
        return f"<DirectBackend {self.database.path}>"

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        new_id: Callable[[], str],
        now: Callable[[], float],
        connect: Connect = sqlite_connect,
        embedder: Embedder | None = None,
    ) -> DirectBackend:
        """Migrate (or create) the hub file at ``path`` and open it."""
        db_path = os.fspath(path)
        prepare_hub_file(db_path, now=now, connect=connect)
        return cls(
            HubDatabase.open(db_path, new_id=new_id, connect=connect), now=now, embedder=embedder
        )

    def close(self) -> None:
        self.database.close()

    def _run(self, what: str, call: Callable[[HubDatabase], Any]) -> Any:
        try:
            return call(self.database)
        except sqlite3.Error as exc:
            raise _translate(exc, self.database.path, what) from exc

    def ping(self, timeout: float) -> str:
        return ReplyingActor.READY

    def lookup_key(self, key_id: str, timeout: float) -> StoredKey | None:
        result: StoredKey | None = self._run("read an API key", lambda db: db.lookup_key(key_id))
        return result

    def push(
        self, tenant: str, items: tuple[WireMemory, ...], timeout: float
    ) -> tuple[ItemResult, ...]:
        results: list[tuple[ItemResult, ...]] = self._run(
            "stored a push", lambda db: db.commit_pushes([(tenant, items)], self.now())
        )
        return results[0]

    def changes(self, tenant: str, since: Cursor | None, limit: int, timeout: float) -> ChangesPage:
        page: ChangesPage = self._run("read changes", lambda db: db.changes(tenant, since, limit))
        return page

    def digest(self, tenant: str, after: str | None, limit: int, timeout: float) -> DigestPage:
        page: DigestPage = self._run("read a digest", lambda db: db.digest(tenant, after, limit))
        return page

    def counts(self, tenant: str, timeout: float) -> HubCounts:
        counts: HubCounts = self._run("count memories", lambda db: db.counts(tenant))
        return counts

    def recall(self, tenant: str, query: RecallQuery, timeout: float) -> RecallHits:
        embedder = self.embedder
        if embedder is None:
            raise RecallUnsupported(
                "this hub does not implement semantic recall (no embedder); use local recall"
            )
        from actors.hub.embedders import describe_embedder

        self._run("embed the backlog", self._catch_up)
        index = self._index
        vector = embedder.embed([query.query])[0]
        hits: list[tuple[int, float]] = []
        if index is not None and index.model == embedder.name:
            hits = index.search(
                tenant,
                vector,
                max(RANK_DEPTH, query.limit),
                namespace=query.namespace,
                tags=query.tags,
            )
        result: RecallHits = self._run(
            "recall",
            lambda db: db.recall(
                tenant, query, hits, embedder=EmbedderInfo(**describe_embedder(embedder))
            ),
        )
        return result

    def _catch_up(self, db: HubDatabase) -> None:
        """Embed every queued memory, then bring the in-memory index up to the vector feed."""
        from actors.hub.vectors import VectorIndex, from_blob, to_blob

        embedder = self.embedder
        assert embedder is not None
        while work := db.take_embed_work(embedder.name, embedder.dimension, 256):
            vectors = embedder.embed([item.content for item in work])
            rows = tuple(
                (item.key, item.content_hash, to_blob(vector))
                for item, vector in zip(work, vectors, strict=True)
            )
            if db.save_vectors(embedder.name, embedder.dimension, rows) == 0:
                break  # nothing could be saved: do not spin
        while True:
            page = db.vector_changes(self._feed_after, 5000)
            if self._index is None or self._index.model != page.model:
                if page.model is None:
                    return
                self._index = VectorIndex(page.model, page.dimension)
                if self._feed_after:
                    self._feed_after = 0
                    continue
            for change in page.changes:
                if change.vector is None:
                    self._index.remove(change.tenant, change.key)
                else:
                    self._index.put(
                        change.tenant,
                        change.key,
                        change.namespace,
                        change.tags,
                        from_blob(change.vector, page.dimension),
                    )
            self._feed_after = page.next_after
            if not page.has_more:
                return


# -- key administration (CLI) -------------------------------------------------------------


def _admin(db: str | os.PathLike[str], now: Callable[[], float]) -> sqlite3.Connection:
    path = os.fspath(db)
    prepare_hub_file(path, now=now)
    try:
        return sqlite_connect(path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the hub database {path}: {exc}") from exc


def add_key(
    db: str | os.PathLike[str], tenant: str, *, now: Callable[[], float] | None = None
) -> str:
    """Mint an API key for ``tenant`` in the hub file ``db`` (created if missing).

    Returns the plaintext key: it is shown once and only its hash is stored.
    Raises ``ValueError`` for an invalid tenant name.
    """
    tenant = validate_tenant(tenant)
    clock = now or _wall_clock()
    key_id, plaintext = new_key()
    conn = _admin(db, clock)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO api_keys(key_id, tenant, key_hash, created_at) VALUES (?, ?, ?, ?)",
            (key_id, tenant, hash_key(plaintext), clock()),
        )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise _translate(exc, os.fspath(db), "add a key") from exc
    finally:
        conn.close()
    return plaintext


def list_keys(db: str | os.PathLike[str]) -> list[KeyInfo]:
    """Every key of the hub file ``db``, oldest first (ids and tenants; never the keys)."""
    conn = _admin(db, _wall_clock())
    try:
        rows = conn.execute(
            "SELECT key_id, tenant, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at, key_id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise _translate(exc, os.fspath(db), "list keys") from exc
    finally:
        conn.close()
    return [KeyInfo(row[0], row[1], row[2], row[3]) for row in rows]


def revoke_key(
    db: str | os.PathLike[str], key_id: str, *, now: Callable[[], float] | None = None
) -> KeyInfo | None:
    """Revoke the key ``key_id`` (idempotent); None if the hub file has no such key.

    A running hub refuses the key (403) from its next request on.
    """
    clock = now or _wall_clock()
    conn = _admin(db, clock)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (clock(), key_id),
        )
        row = conn.execute(
            "SELECT key_id, tenant, created_at, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise _translate(exc, os.fspath(db), "revoke a key") from exc
    finally:
        conn.close()
    return None if row is None else KeyInfo(row[0], row[1], row[2], row[3])
