"""Internal: how this project opens SQLite and reads its errors.

One place for the connection settings every owner of a file uses (the
client's MigrationActor and StoreActor, the hub's store, the benchmark), and
for the one test of "another connection holds the lock". Pure: it opens a
connection when asked, and keeps nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal

__all__ = ["CommitOutcomeUnknown", "Connect", "Synchronous", "connect", "is_busy"]

#: Opens a connection on a path; tests pass one that injects faults.
Connect = Callable[[str], sqlite3.Connection]

#: ``PRAGMA synchronous``: FULL survives power loss with every acknowledged
#: write; NORMAL (in WAL mode) may lose the last commits on power loss but
#: never corrupts.
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

#: SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


class CommitOutcomeUnknown(sqlite3.OperationalError):
    """A COMMIT raised, and whether its transaction reached the file cannot be told.

    Its writes must be neither answered as committed nor applied again: the
    caller is told the outcome is unknown.
    """


def is_busy(exc: sqlite3.Error) -> bool:
    """True when SQLite refused because another connection holds the lock (BUSY/LOCKED).

    The one test for it: the store, its sync side and the hub's store all retry
    or report these, and nothing else, as "busy".
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)


def connect(
    path: str, *, busy_timeout: float = 5.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Open a connection in autocommit mode: transactions are explicit ``BEGIN IMMEDIATE``.

    ``check_same_thread=False`` exists for the benchmark's lock-based baseline only.
    """
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=check_same_thread
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return conn
