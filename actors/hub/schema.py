"""The hub file's schema: its migration steps, and the one call that creates or migrates it.

:data:`HUB_STEPS` are applied by the same :func:`actors.migrations.migrate`
as the client's steps (a different list), so the hub gets the same
guarantees: each step in one ``BEGIN IMMEDIATE`` transaction, a backup before
a step that rewrites data, a file newer than the code refused untouched.
The file is marked with ``PRAGMA application_id`` so that a client's store
file and a hub file cannot be mistaken for one another.

This is the SQLite engine's schema (:mod:`actors.hub.database` runs on it);
with :mod:`actors.hub.database`, the only module of the hub that sees
``sqlite3``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

from actors._sqlite import Connect
from actors._sqlite import connect as sqlite_connect
from actors.errors import NotADatabase
from actors.migrations import Step, migrate, read_version
from actors.model import MigrationReport

__all__ = ["HUB_APPLICATION_ID", "HUB_LATEST_VERSION", "HUB_STEPS", "prepare_hub_file"]

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
    Step(
        3,
        "hub: key-addressed memories (content dedup for unkeyed memories only)",
        (
            # A keyed memory's id is derived from (namespace, key), which the wire
            # parser checks, so the key needs no unique index of its own.
            "ALTER TABLE memories ADD COLUMN key TEXT",
            "DROP INDEX memories_dedup",
            """CREATE UNIQUE INDEX memories_dedup ON memories(tenant, namespace, content_hash)
               WHERE deleted = 0 AND key IS NULL""",
        ),
    ),
)

HUB_LATEST_VERSION: Final = HUB_STEPS[-1].version


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
