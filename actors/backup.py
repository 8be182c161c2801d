"""Backup files: how a copy is checked, and how one replaces a replica's file (restore).

The copy itself is made by the file's owner, the StoreActor (SQLite's online
backup, :meth:`actors.local_db.LocalDatabase.backup_to`); this module checks
a copy (``PRAGMA integrity_check``, the schema version, its counts) and
restores one. Only here and in the owners of a live file is ``sqlite3``
seen: the files handled here are never a live replica, except the target of
a restore, which is held exclusively before it is touched.

Why a restore holds SQLite's exclusive lock rather than trusting a pid file
or the sync lease: every connection to a WAL-mode file keeps a shared lock
on it for as long as it is open, idle or not, and the OS drops it when the
process dies. So "the exclusive lock can be taken" means exactly "no live
process has this file open", with no stale state to clean up after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator

import attrs

from actors._sqlite import connect, is_busy
from actors.errors import (
    DatabaseInUse,
    InvalidMemory,
    NotADatabase,
    SchemaTooNew,
    StorageBusy,
    StorageError,
)
from actors.migrations import LATEST_VERSION

__all__ = [
    "BACKUP_STEP_PAGES",
    "BackupReport",
    "CopyFacts",
    "RestoreReport",
    "inspect_copy",
    "restore",
    "scratch_path",
]

logger = logging.getLogger(__name__)

#: Pages per backup step (4 KiB pages: 4 MiB a step). Between steps SQLite
#: releases the GIL and the file's locks are not held against writers.
BACKUP_STEP_PAGES = 1024

_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Meta rows of the file's live sync lease: a restored copy starts without one.
_LEASE_KEYS = ("sync_lease_holder", "sync_lease_expires")


@attrs.frozen
class CopyFacts:
    """What a database copy holds, checked."""

    path: str
    integrity: str
    schema_version: int
    memories: int
    forgotten: int
    size_bytes: int

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


@attrs.frozen
class BackupReport:
    """A backup made and checked: where, what it holds, how long it took."""

    source: str
    path: str
    facts: CopyFacts
    pages: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "path": self.path,
            "integrity": self.facts.integrity,
            "schema_version": self.facts.schema_version,
            "memories": self.facts.memories,
            "forgotten": self.facts.forgotten,
            "size_bytes": self.facts.size_bytes,
            "pages": self.pages,
            "seconds": round(self.seconds, 3),
        }


@attrs.frozen
class RestoreReport:
    """A restore done: the target now holds the backup's memories."""

    source: str
    target: str
    replaced: bool
    facts: CopyFacts

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "replaced": self.replaced,
            "integrity": self.facts.integrity,
            "schema_version": self.facts.schema_version,
            "memories": self.facts.memories,
            "forgotten": self.facts.forgotten,
        }


def scratch_path(target: str, purpose: str) -> str:
    """A file next to ``target`` (same directory, so a rename onto it is atomic)."""
    return f"{target}.{purpose}-{os.getpid()}"


def remove_quietly(path: str) -> None:
    """Delete ``path`` and its WAL companions if they exist (a failed copy's leftovers)."""
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def inspect_copy(path: str) -> CopyFacts:
    """Check a copy: SQLite, ``integrity_check``, a schema this code reads; count it.

    Raises :class:`NotADatabase` (not SQLite, not a memory-actors file, or
    damaged: the integrity check's first findings are in the message) or
    :class:`SchemaTooNew`.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    if magic != _SQLITE_MAGIC:
        raise NotADatabase(f"{path} is not a SQLite database (it starts with {magic[:16]!r})")
    try:
        conn = connect(path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        findings = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        if findings != ["ok"]:
            raise NotADatabase(f"{path} fails SQLite's integrity check: {'; '.join(findings[:5])}")
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > LATEST_VERSION:
            raise SchemaTooNew(path, version, LATEST_VERSION)
        live, forgotten = conn.execute(
            "SELECT coalesce(sum(deleted = 0), 0), coalesce(sum(deleted = 1), 0) FROM memories"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotADatabase(f"{path} is not a usable memory-actors database: {exc}") from exc
    finally:
        conn.close()
    return CopyFacts(path, "ok", version, live, forgotten, os.path.getsize(path))


@contextlib.contextmanager
def held_exclusively(path: str) -> Iterator[None]:
    """Hold ``path`` so that no other process can open it; :class:`DatabaseInUse` if one has.

    Inside, the file is in rollback-journal mode and its WAL is folded in
    and deleted, so replacing the file leaves no stale WAL for the new one
    (SQLite would apply it to the wrong database).
    """
    try:
        conn = connect(path, busy_timeout=0)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = DELETE").fetchone()
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise DatabaseInUse(
                    f"{path} is open in another process (a running `memory-actors serve`, "
                    "an agent session, a sync): stop it first; nothing was replaced"
                ) from exc
            raise StorageError(f"cannot lock {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise NotADatabase(f"{path} is not a usable SQLite database: {exc}") from exc
        yield
    finally:
        conn.close()


def restore(source: str, target: str, *, force: bool = False) -> RestoreReport:
    """Replace the replica file ``target`` by the backup ``source``, atomically.

    The backup is checked (integrity, a schema not newer than this code),
    copied next to the target and checked again; the copy then replaces the
    target with one rename while the target is held exclusively. Refused,
    with nothing changed: an existing target without ``force``
    (:class:`InvalidMemory`), a target open in a live process
    (:class:`DatabaseInUse`), a bad backup (:class:`NotADatabase`,
    :class:`SchemaTooNew`). The restored file keeps the backup's origin and
    pull cursor, and starts without a sync lease.
    """
    source, target = os.path.abspath(source), os.path.abspath(target)
    if not os.path.exists(source):
        raise InvalidMemory(f"no backup at {source}")
    if os.path.exists(target) and os.path.samefile(source, target):
        raise InvalidMemory(f"{source} is the database itself; name a backup to restore")
    inspect_copy(source)
    existing = os.path.exists(target) and os.path.getsize(target) > 0
    if existing and not force:
        raise InvalidMemory(
            f"{target} exists; restoring replaces every memory in it. Pass --force "
            "(force=True) to replace it, or restore to another --db"
        )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    scratch = scratch_path(target, "restore")
    remove_quietly(scratch)
    try:
        _copy(source, scratch)
        facts = inspect_copy(scratch)
        if existing:
            with held_exclusively(target):
                _replace(scratch, target)
        else:
            _replace(scratch, target)
    except BaseException:
        remove_quietly(scratch)
        raise
    logger.info("restored %s from %s (%d memories)", target, source, facts.memories)
    return RestoreReport(source, target, existing, attrs.evolve(facts, path=target))


def _replace(scratch: str, target: str) -> None:
    # A WAL or shared-memory file left by the old database (a crash) must not
    # meet the new one: SQLite would replay that WAL into the wrong file.
    for stale in (f"{target}-wal", f"{target}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    os.replace(scratch, target)


def _copy(source: str, scratch: str) -> None:
    """A consistent copy of ``source`` (its WAL included) without a sync lease."""
    try:
        src = connect(source)
        try:
            dest = connect(scratch)
            try:
                src.backup(dest)
                dest.execute(
                    f"DELETE FROM meta WHERE key IN ({','.join('?' * len(_LEASE_KEYS))})",
                    _LEASE_KEYS,
                )
            finally:
                dest.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        if is_busy(exc):
            raise StorageBusy(f"{source} stayed locked while copying it: {exc}") from exc
        raise StorageError(f"cannot copy {source} to {scratch}: {exc}") from exc
