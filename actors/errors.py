"""The one exception tree of memory-actors.

::

    MemoryActorsError
    ├── operational: the caller handles these, usually by retrying later
    │   ├── Unavailable(..., ConnectionError)   an actor is restarting or the system is degraded
    │   │   └── Overloaded                       too many requests in flight (admission control)
    │   ├── AskTimeout(..., TimeoutError)        an actor did not answer within the deadline
    │   ├── StorageBusy                          locked past the timeout; PostgreSQL unreachable
    │   │   └── DatabaseInUse                    restore: a live process holds the target file
    │   ├── StorageError                         the database failed (I/O error, disk full, ...)
    │   ├── SchemaError
    │   │   ├── SchemaTooNew                     the file was written by a newer memory-actors
    │   │   ├── NotADatabase                     the file is not a SQLite database
    │   │   └── MigrationFailed                  a migration step failed and was rolled back
    │   ├── EmbedderError                        the hub's embedder failed (no model, service down)
    │   └── HubError                             the remote hub did not do what was asked (``url``)
    │       ├── HubUnreachable(..., ConnectionError)  refused, reset, DNS: no answer came back
    │       ├── HubTimeout(..., TimeoutError)    no complete answer within the client's timeout
    │       ├── HubAuthError                     401 unknown key / 403 revoked key (``reason``)
    │       ├── HubRejected                      another 4xx: the hub refused the request (``code``)
    │       │   └── HubCursorReset               409: the change cursor is unknown; pull from start
    │       ├── HubServerError                   5xx: the hub failed; retry later (``retry_after``)
    │       │   └── HubUnsupported               501: this hub does not implement the endpoint
    │       └── HubProtocolError                 garbage JSON, cut-off body, wrong shape, not a hub
    └── misuse: the caller fixes these
        ├── InvalidMemory(..., ValueError)       content, tags, metadata, namespace, limits
        │   └── InvalidImport                    an import stopped at a bad line (``line``)
        ├── MemoryNotFound(..., KeyError)        no memory has that id
        └── SystemClosed(..., RuntimeError)      the MemorySystem was closed

Foreign exceptions are translated where the foreign library is owned: only
``actors/_sqlite.py``, ``actors/local_db.py`` and ``actors/session_log.py``
(the StoreActor's SQL), ``actors/migrations.py`` and ``actors/backup.py`` (a
backup's checks, restore) see ``sqlite3`` (and, on
the hub's side, its SQLite engine: ``actors/hub/database.py`` and
``actors/hub/schema.py``); only the hub's PostgreSQL engine
(``actors/hub/postgres.py``, ``actors/hub/pg_schema.py``) sees ``psycopg``; only
``actors/remote.py`` turns ``httpx`` failures into the ``HubError`` family.
A recall that runs out of time is a value (a ``retry`` status), not an exception.
"""

from __future__ import annotations

__all__ = [
    "AskTimeout",
    "DatabaseInUse",
    "EmbedderError",
    "HubAuthError",
    "HubCursorReset",
    "HubError",
    "HubProtocolError",
    "HubRejected",
    "HubServerError",
    "HubTimeout",
    "HubUnreachable",
    "HubUnsupported",
    "InvalidImport",
    "InvalidMemory",
    "MemoryActorsError",
    "MemoryNotFound",
    "MigrationFailed",
    "NotADatabase",
    "Overloaded",
    "OwnerGone",
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


class OwnerGone(Unavailable):
    """The process that owns the database file went away before answering.

    Whether it applied the request first cannot be known: a follower retries
    only requests that are safe to repeat (reads, forgets, keyed and
    content-deduplicated stores) with the next owner, and raises this for
    the rest.
    """


class AskTimeout(MemoryActorsError, TimeoutError):
    """An actor did not answer within the caller's deadline.

    The request may still complete later (a store may still commit); callers
    that retry a store get the existing id back thanks to content dedup.
    """


class StorageBusy(MemoryActorsError):
    """Storage cannot answer right now; retry shortly.

    SQLite stayed locked by another process past the busy timeout and backoff;
    or PostgreSQL was unreachable, shutting down, or a statement or lock
    wait ran out (the hub answers 503 with ``Retry-After``).
    """


class DatabaseInUse(StorageBusy):
    """A restore found its target open in a live process; nothing was replaced.

    Stop the process (a running ``memory-actors serve``, an agent session)
    and run the restore again.
    """


class StorageError(MemoryActorsError):
    """The database reported an error; the transaction was rolled back and nothing changed."""


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


class InvalidImport(InvalidMemory):
    """An import stopped at a bad line: nothing from that line on was applied.

    ``line`` is the line number (the header is line 1), ``reason`` what is
    wrong with it, and ``report`` (an :class:`actors.portable.ImportReport`)
    what the lines before it did (they were committed), which ``committed``
    says in words.
    """

    def __init__(self, line: int, reason: str, report: object, committed: str) -> None:
        self.line = line
        self.reason = reason
        self.report = report
        super().__init__(
            f"line {line}: {reason}; {committed}; nothing from line {line} on was applied"
        )


class MemoryNotFound(MemoryActorsError, KeyError):
    """No memory has that id (or it was forgotten)."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; ours is a sentence.
        return str(self.args[0]) if self.args else "memory not found"


class SystemClosed(MemoryActorsError, RuntimeError):
    """The MemorySystem was closed; open a new one."""


# -- The remote hub (raised by actors/remote.py) --------------------------------


class HubError(MemoryActorsError):
    """The remote hub did not do what was asked. Local stores are never affected.

    ``url`` is the request's URL (never the API key); ``status`` is the HTTP
    status when the hub answered at all. Every message names the URL and what
    happened.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class HubUnreachable(HubError, ConnectionError):
    """No conversation with the hub: connection refused or reset, DNS failure. Retry later."""


class HubTimeout(HubError, TimeoutError):
    """The hub did not answer completely within the client's timeout.

    A push may still have been applied: pushes are idempotent by memory id, so
    pushing the same batch again is safe.
    """


class HubAuthError(HubError):
    """The hub refused the API key: 401 (unknown or missing key) or 403 (revoked).

    ``reason`` is the hub's explanation, ``code`` its machine-readable code.
    Retrying with the same key does not help until an operator acts.
    """

    def __init__(self, message: str, *, url: str, status: int, code: str, reason: str) -> None:
        super().__init__(message, url=url, status=status)
        self.code = code
        self.reason = reason


class HubRejected(HubError):
    """The hub refused this request (a 4xx other than 401/403): retrying it unchanged won't help.

    ``code`` and ``hub_message`` are the hub's error; ``details`` may name the
    offending batch item (``{"index": 3, "field": "content"}``).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int,
        code: str,
        hub_message: str,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.code = code
        self.hub_message = hub_message
        self.details = details or {}


class HubCursorReset(HubRejected):
    """The hub does not know the change cursor (its database was replaced or restored).

    Pull again from the beginning (``since=None``) and reconcile with a digest.
    """


class HubServerError(HubError):
    """The hub failed (5xx). Retry later; ``retry_after`` (seconds) is the hub's hint, if any."""

    def __init__(
        self, message: str, *, url: str, status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class HubUnsupported(HubServerError):
    """The hub does not implement this endpoint (501), e.g. semantic recall on a plain hub."""


class HubProtocolError(HubError):
    """The hub's answer was not the protocol: garbage JSON, a truncated body, a wrong shape.

    Also raised when the server does not identify as a memory-actors hub (a
    wrong URL pointing at some other service).
    """


# -- The hub's semantic recall (raised in actors/hub/embedders.py) ----------------


class EmbedderError(MemoryActorsError):
    """The hub's embedder could not embed: its model is missing, or its service failed.

    Only the hub sees it: a backlog batch is retried with backoff, and a
    recall falls back to keyword ranking and says why.
    """
