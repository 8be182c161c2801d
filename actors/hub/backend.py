"""The hub's storage interface: what HubCore and the service need of an engine.

HubCore (the request logic) and the service talk to storage only through
:class:`HubBackend`. Its implementations:

- :class:`actors.hub.service.ActorBackend`: the hub's StoreActor owns the
  engine (production; one thread, group-committed pushes);
- :class:`actors.hub.direct.DirectBackend`: the engine in the caller's
  thread (the deterministic simulation, in-process tests).

Both drive a :class:`~actors.hub.engine.HubEngine`
(:class:`actors.hub.database.HubDatabase` is the SQLite one). Another engine
(PostgreSQL) answers the same calls with the same records
(:mod:`actors.wire`) and the same errors, so HubCore, the backends and the
protocol do not change with it.

The contract, for every method: answer within ``timeout`` seconds or raise
:class:`~actors.errors.AskTimeout`; raise :class:`~actors.errors.Unavailable`
when storage is stopped, :class:`~actors.errors.StorageBusy` when it is
locked past its busy timeout (nothing was written), and
:class:`~actors.errors.StorageError` when a write rolled back. A push is
answered only once it is durable; a read sees every push answered before
it. The change feed never skips a change (see ``docs/hub-protocol.md``).
"""

from __future__ import annotations

import re
from typing import Final, Protocol

import attrs

from actors.hub.keys import StoredKey
from actors.wire import (
    ChangesPage,
    DigestPage,
    HubCounts,
    ItemResult,
    RecallHits,
    RecallQuery,
    WireMemory,
)

__all__ = ["Cursor", "CursorUnknown", "HubBackend"]

_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,18}")


@attrs.frozen
class Cursor:
    """A position in a tenant's change feed: the hub database's id and a sequence number.

    On the wire it is opaque (``"<hub id>:<seq>"``). The hub id lets a hub
    recognise a cursor that another database issued (a hub rebuilt from
    scratch) instead of silently skipping changes.
    """

    hub_id: str
    seq: int

    def encode(self) -> str:
        return f"{self.hub_id}:{self.seq}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor; ``ValueError`` names what is wrong with it."""
        hub_id, sep, seq = text.partition(":")
        if not sep or not _UUID_RE.fullmatch(hub_id) or not _DIGITS_RE.fullmatch(seq):
            raise ValueError(
                f"since={text[:80]!r} is not a cursor from this hub; pass a next_cursor "
                "that the hub returned, or omit since to start from the beginning"
            )
        return cls(hub_id, int(seq))


class CursorUnknown(Exception):
    """The store does not recognise a cursor (another database issued it, or it is ahead)."""


class HubBackend(Protocol):
    """The hub's storage, as HubCore uses it. Each call waits at most ``timeout`` seconds.

    Implementations raise :class:`~actors.errors.Unavailable`,
    :class:`~actors.errors.AskTimeout`, :class:`~actors.errors.StorageBusy` or
    :class:`~actors.errors.StorageError` when storage cannot answer, and
    :class:`CursorUnknown` for a cursor they did not issue.
    """

    def ping(self, timeout: float) -> str:
        """The store's state name (``READY``)."""
        ...

    def lookup_key(self, key_id: str, timeout: float) -> StoredKey | None: ...

    def push(
        self, tenant: str, items: tuple[WireMemory, ...], timeout: float
    ) -> tuple[ItemResult, ...]: ...

    def changes(
        self, tenant: str, since: Cursor | None, limit: int, timeout: float
    ) -> ChangesPage: ...

    def digest(self, tenant: str, after: str | None, limit: int, timeout: float) -> DigestPage: ...

    def counts(self, tenant: str, timeout: float) -> HubCounts: ...

    def recall(self, tenant: str, query: RecallQuery, timeout: float) -> RecallHits:
        """Ranked hits; raises :class:`~actors.hub.search.RecallUnsupported` without an embedder."""
        ...
