"""The schema, as ordered migration steps, and the MigrationActor that applies them.

The schema version lives in ``PRAGMA user_version``. Each step runs in one
``BEGIN IMMEDIATE`` transaction that re-reads the version after taking the
write lock, so N processes starting together on one file apply each step
exactly once (the ``migrations`` table's primary key would refuse a second
application). A step that rewrites existing data is preceded by a backup copy
of the file. A file newer than the code, or not a SQLite file at all, is
refused without being written to.

The MigrationActor owns the file before the StoreActor opens it: one owner at
a time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from actors._base import ReplyingActor
from actors._sqlite import Connect, connect, is_busy
from actors.errors import MigrationFailed, NotADatabase, SchemaTooNew, StorageBusy, StorageError
from actors.messages import Migrate
from actors.model import MigrationReport

__all__ = [
    "LATEST_VERSION",
    "STEPS",
    "MigrationActor",
    "Step",
    "migrate",
    "read_version",
]

logger = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"


@attrs.frozen
class Step:
    """One schema step: from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: Sequence[str]
    #: Steps that rewrite existing rows get a backup of the file first.
    rewrites_data: bool = False


STEPS: tuple[Step, ...] = (
    Step(
        1,
        "memories and replica metadata",
        (
            """CREATE TABLE memories (
                rowid INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                namespace TEXT NOT NULL,
                content TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                tags TEXT NOT NULL DEFAULT '[]',
                metadata TEXT NOT NULL DEFAULT '{}',
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                version TEXT NOT NULL,
                origin TEXT NOT NULL,
                deleted INTEGER NOT NULL DEFAULT 0,
                sync_state TEXT NOT NULL DEFAULT 'committed'
            )""",
            # Content dedup per namespace, among live memories only.
            """CREATE UNIQUE INDEX memories_dedup ON memories(namespace, content_hash)
               WHERE deleted = 0""",
            "CREATE INDEX memories_namespace ON memories(namespace, id)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at REAL NOT NULL
            )""",
        ),
    ),
    Step(
        2,
        "full-text index (FTS5, external content, kept by triggers)",
        (
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
        ),
        rewrites_data=True,
    ),
    Step(
        3,
        "transactional outbox for sync",
        (
            """CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                memory_id TEXT NOT NULL,
                op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
                version TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL DEFAULT 0,
                last_error TEXT,
                dead INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX outbox_pending ON outbox(dead, next_attempt_at, seq)",
            # Memories written before the outbox existed must still reach the hub.
            """INSERT INTO outbox(memory_id, op, version, enqueued_at)
               SELECT id, CASE deleted WHEN 1 THEN 'delete' ELSE 'upsert' END, version,
                      updated_at
               FROM memories ORDER BY rowid""",
        ),
        rewrites_data=True,
    ),
    Step(
        4,
        "key-addressed memories; recency order for lists",
        (
            # NULL for a memory stored without a key. A keyed memory's id is derived
            # from (namespace, key) (actors.model.keyed_memory_id), so the id is the
            # same on every replica and the key needs no unique index of its own.
            "ALTER TABLE memories ADD COLUMN key TEXT",
            # Content dedup applies to unkeyed memories only: two keys may hold the
            # same text (a runtime's store writes what its caller gives it).
            "DROP INDEX memories_dedup",
            """CREATE UNIQUE INDEX memories_dedup ON memories(namespace, content_hash)
               WHERE deleted = 0 AND key IS NULL""",
            # Lists run newest first by creation time: a keyed id carries no time.
            "DROP INDEX memories_namespace",
            "CREATE INDEX memories_namespace ON memories(namespace, created_at, id)",
            "CREATE INDEX memories_recent ON memories(created_at, id)",
        ),
    ),
    Step(
        5,
        "session logs (ordered items per session, local only)",
        (
            # An agent runtime's conversation history: an append-only log per
            # session, ordered by seq, popped from the end. Local: never synced.
            """CREATE TABLE session_items (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                session_id TEXT NOT NULL,
                item TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX session_items_by_session ON session_items(session_id, seq)",
        ),
    ),
    Step(
        6,
        "memory vectors for local semantic recall (model name and dimension with each)",
        (
            # One vector per memory row, of the model that made it: a model change
            # overwrites them one by one in the background (rows of another model are
            # the backlog). content_hash says which text the vector is of: it is
            # written only if the memory still holds that text (actors.local_db).
            """CREATE TABLE memory_vectors (
                memory_rowid INTEGER PRIMARY KEY,
                content_hash TEXT NOT NULL,
                model TEXT NOT NULL,
                dimension INTEGER NOT NULL,
                vector BLOB NOT NULL
            )""",
            "CREATE INDEX memory_vectors_model ON memory_vectors(model, memory_rowid)",
            # No stale vector survives its text, whoever changes it (forget, keyed
            # replace, sync applying a remote change, another process): the trigger
            # runs in the transaction that changes the memory.
            """CREATE TRIGGER memories_vectors_ad AFTER DELETE ON memories BEGIN
                DELETE FROM memory_vectors WHERE memory_rowid = old.rowid;
            END""",
            """CREATE TRIGGER memories_vectors_au
                AFTER UPDATE OF content, content_hash, deleted ON memories
                WHEN new.content_hash IS NOT old.content_hash OR new.deleted <> 0 BEGIN
                DELETE FROM memory_vectors WHERE memory_rowid = old.rowid;
            END""",
        ),
    ),
)

LATEST_VERSION = STEPS[-1].version


def _check_is_sqlite(path: str) -> None:
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot read database file {path}: {exc}") from exc
    if header and header != _SQLITE_MAGIC:
        raise NotADatabase(
            f"{path} is not a SQLite database (it starts with {header[:16]!r}); "
            "point --db at another file. The file was not modified."
        )


def _unusable(path: str, exc: sqlite3.DatabaseError) -> StorageError | NotADatabase:
    """What SQLite refusing ``path`` means: a file or folder this user may not write
    (SQLite writes beside the file: its WAL index), or a file that is not a database."""
    if _cannot_write_beside(exc):
        return StorageError(
            f"cannot open {path}: {exc}. SQLite writes beside the file (its WAL index), "
            "so the file and its folder must be writable by this user"
        )
    return NotADatabase(f"{path} is not a usable SQLite database: {exc}")


def _cannot_write_beside(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)


def read_version(path: str) -> int:
    """Read the schema version without writing to the file (0 for a missing or empty file)."""
    _check_is_sqlite(path)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return 0
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    return version


def _backup(conn: sqlite3.Connection, path: str, version: int, stamp: int) -> str:
    target = f"{path}.v{version}-{stamp}.bak"
    dest = sqlite3.connect(target)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    return target


def migrate(
    path: str,
    *,
    connect: Connect = connect,
    steps: Sequence[Step] = STEPS,
    now: Callable[[], float],
) -> MigrationReport:
    """Bring the file at ``path`` to the latest version of ``steps``.

    Safe to run from several processes at once. Raises :class:`SchemaTooNew`,
    :class:`NotADatabase` or :class:`MigrationFailed`; the file is then left
    at the version it had before the failed step.
    """
    target = steps[-1].version if steps else 0
    start = read_version(path)
    if start > target:
        raise SchemaTooNew(path, start, target)
    if start == target:
        return MigrationReport(path, start, start, (), ())
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder for {path}: {exc}") from exc
    applied: list[int] = []
    backups: list[str] = []
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        while True:
            current: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= target:
                break
            step = steps[current]
            # A fresh file has nothing worth a backup; an upgraded one does.
            if step.rewrites_data and start > 0:
                backups.append(_backup(conn, path, current, int(now())))
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have applied the step while we waited for the lock.
                locked: int = conn.execute("PRAGMA user_version").fetchone()[0]
                if locked != current:
                    conn.execute("COMMIT")
                    continue
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO migrations(version, description, applied_at) VALUES (?, ?, ?)",
                    (step.version, step.description, now()),
                )
                conn.execute(f"PRAGMA user_version = {step.version}")
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise MigrationFailed(
                        f"migration to schema {step.version} ({step.description}) failed "
                        f"and was rolled back; {path} stays at schema {current}: {exc}"
                    ) from exc
                raise
            applied.append(step.version)
            logger.info("migrated %s to schema %d: %s", path, step.version, step.description)
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise StorageBusy(
                f"{path} stayed locked by another process during migration ({exc}); "
                "nothing was changed, retry"
            ) from exc
        if _cannot_write_beside(exc):
            raise _unusable(path, exc) from exc
        raise MigrationFailed(f"migrating {path} failed: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    finally:
        conn.close()
    return MigrationReport(path, start, target, tuple(applied), tuple(backups))


class MigrationActor(ReplyingActor):
    """Owns the database file until its schema is current; then it is stopped.

    Runs on the runtime's actor base (its own thread when threaded). The
    ``Migrate`` request is answered with a :class:`MigrationReport` or a
    :class:`~actors.errors.SchemaError`; on stop nothing is held.
    """

    def __init__(self, runtime: Any, path: str, *, connect: Connect = connect) -> None:
        super().__init__(runtime, name="migration")
        self.path = path
        self.connect = connect

    def handle(self, message: Any) -> Any:
        if isinstance(message, Migrate):
            return migrate(self.path, connect=self.connect, now=self.runtime.wall_time)
        return super().handle(message)
