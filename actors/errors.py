"""The one exception tree of memory-actors.

::

    MemoryActorsError
    ├── operational: the caller handles these, usually by retrying later
    │   ├── Unavailable(..., ConnectionError)   an actor is restarting or the system is degraded
    │   │   └── Overloaded                       too many requests in flight (admission control)
    │   ├── AskTimeout(..., TimeoutError)        an actor did not answer within the deadline
    │   ├── StorageBusy                          SQLite stayed locked by another process
    │   ├── StorageError                         SQLite failed (I/O error, disk full, ...)
    │   └── SchemaError
    │       ├── SchemaTooNew                     the file was written by a newer memory-actors
    │       ├── NotADatabase                     the file is not a SQLite database
    │       └── MigrationFailed                  a migration step failed and was rolled back
    └── misuse: the caller fixes these
        ├── InvalidMemory(..., ValueError)       content, tags, metadata, namespace, limits
        ├── MemoryNotFound(..., KeyError)        no memory has that id
        └── SystemClosed(..., RuntimeError)      the MemorySystem was closed

Foreign exceptions are translated where the foreign library is owned: only
``actors/store.py`` and ``actors/migrations.py`` see ``sqlite3``.
A recall that runs out of time is a value (a ``retry`` status), not an exception.
"""

from __future__ import annotations

__all__ = [
    "AskTimeout",
    "InvalidMemory",
    "MemoryActorsError",
    "MemoryNotFound",
    "MigrationFailed",
    "NotADatabase",
    "Overloaded",
    "SchemaError",
    "SchemaTooNew",
    "StorageBusy",
    "StorageError",
    "SystemClosed",
    "Unavailable",
]


class MemoryActorsError(Exception):
    """Base of every error memory-actors raises on purpose."""


class Unavailable(MemoryActorsError, ConnectionError):
    """The actor that serves this request is not running; retry shortly."""


class Overloaded(Unavailable):
    """Admission control refused the request: too many are already in flight."""


class AskTimeout(MemoryActorsError, TimeoutError):
    """An actor did not answer within the caller's deadline.

    The request may still complete later (a store may still commit); callers
    that retry a store get the existing id back thanks to content dedup.
    """


class StorageBusy(MemoryActorsError):
    """SQLite stayed locked by another process past the busy timeout and backoff."""


class StorageError(MemoryActorsError):
    """SQLite reported an error; the transaction was rolled back and nothing changed."""


class SchemaError(MemoryActorsError):
    """The database file cannot be used at this code's schema version."""


class SchemaTooNew(SchemaError):
    """The database was written by a newer memory-actors; it is left untouched."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"database schema {found} in {path} is newer than this code supports "
            f"({supported}); upgrade memory-actors. The file was not modified."
        )


class NotADatabase(SchemaError):
    """The path exists but is not a SQLite database; it is left untouched."""


class MigrationFailed(SchemaError):
    """A migration step raised; it was rolled back and the file is at the previous version."""


class InvalidMemory(MemoryActorsError, ValueError):
    """An argument was rejected; nothing was stored or changed."""


class MemoryNotFound(MemoryActorsError, KeyError):
    """No memory has that id (or it was forgotten)."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; ours is a sentence.
        return str(self.args[0]) if self.args else "memory not found"


class SystemClosed(MemoryActorsError, RuntimeError):
    """The MemorySystem was closed; open a new one."""
