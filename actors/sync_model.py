"""Records that the SyncActor and the StoreActor exchange, and the sync configuration.

Pure values: no I/O. The hub's wire shapes live in :mod:`actors.wire`.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from actors.wire import WireMemory

__all__ = [
    "OWNER_HOLDER",
    "DeadLetter",
    "DeadLetters",
    "DigestRow",
    "OutboxEntry",
    "PushOutcome",
    "RemoteConfig",
    "SyncPhase",
    "SyncReport",
]


#: How the SyncActor of a file's owner process names itself in the sync lease
#: (``owner:<id>``). Its right to sync is the file's ownership (one owner at a
#: time, decided by the kernel: :mod:`actors.ownership`), so a lease another
#: owner holds is a previous owner's, dead or gone: the new owner takes it at
#: once rather than waiting for it to expire. Direct processes keep the lease
#: as it was (they wait for any live holder, an owner included).
OWNER_HOLDER: Final = "owner:"


@attrs.frozen
class RemoteConfig:
    """Where the hub is and how to talk to it; its presence turns sync on."""

    url: str
    api_key: str = attrs.field(repr=False)
    #: Per HTTP call: connect, each read and write, and the whole call.
    timeout: float = 5.0
    #: How often push and pull run without a nudge.
    interval: float = 2.0
    #: Memories per push request (the hub accepts up to 500; a batch over its body
    #: limit is split in halves). 500 rather than 200: ~1.4× the push throughput.
    batch_size: int = 500
    #: Memories per pull request (the hub answers up to 1000).
    page_size: int = 1000
    #: Pulled memories per store transaction. A store waits behind at most one
    #: such transaction, so stores during a resync stay fast; the next page is
    #: fetched meanwhile.
    apply_size: int = 250
    #: Attempts of one memory (hub errors, timeouts) before it is a dead letter.
    max_attempts: int = 5
    #: First retry delay; doubles per attempt, jittered, capped at ``max_backoff``.
    backoff: float = 1.0
    max_backoff: float = 60.0
    #: A full resync (digest comparison) at start and this often.
    resync_interval: float = 600.0
    #: The lease that makes one process per file the syncing one.
    lease_ttl: float = 15.0


@attrs.frozen
class OutboxEntry:
    """One memory due for a push: its latest local state and the outbox rows it settles."""

    memory: WireMemory
    max_seq: int
    attempts: int


@attrs.frozen
class PushOutcome:
    """What the store must record for one pushed memory.

    ``synced``: the hub holds this version or a newer one (delete the rows).
    ``failed``: retry later (one more attempt; a dead letter at the cap).
    ``dead``: the hub refused the item for good.
    ``rekey``: the hub holds the same content under ``canonical_id``.
    ``skipped``: not sent (its batch failed for another item): no attempt spent.

    ``retry_in``: for ``failed``, seconds until the next attempt (the
    SyncActor's jittered backoff from :class:`RemoteConfig`, at least the
    hub's ``Retry-After``); None falls back to the store's own schedule.
    """

    memory_id: str
    max_seq: int
    status: Literal["synced", "failed", "dead", "rekey", "skipped"]
    error: str | None = None
    canonical_id: str | None = None
    hub_version: str | None = None
    retry_in: float | None = None


@attrs.frozen
class DigestRow:
    """One local memory, as full resync compares it with the hub."""

    id: str
    content_hash: str
    version: str
    origin: str
    deleted: bool


#: What the SyncActor is doing; per memory, see :data:`actors.model.MemorySyncState`.
SyncPhase = Literal["local-only", "starting", "standby", "syncing", "auth-failed", "unreachable"]


@attrs.frozen
class SyncReport:
    """The SyncActor's view, for ``status`` and ``memory_count``."""

    state: SyncPhase
    reason: str
    remote: str | None
    lease_holder: bool
    pushed: int = 0
    pulled: int = 0
    last_push_at: float | None = None
    last_pull_at: float | None = None
    last_resync_at: float | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def summary(self) -> str:
        """One line for ``memory_count``'s ``sync`` field."""
        if self.state == "local-only":
            return "local-only: no remote configured"
        text = f"{self.state}: {self.remote}"
        return f"{text} ({self.reason})" if self.reason else text


@attrs.frozen
class DeadLetter:
    """A memory whose push the hub kept refusing: it waits for ``retry_dead_letters``."""

    memory_id: str
    #: The memory's namespace ('' if the row is gone, e.g. merged into another id since).
    namespace: str
    op: Literal["upsert", "delete"]
    attempts: int
    last_error: str | None
    #: When the write was queued (Unix seconds).
    enqueued_at: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class DeadLetters:
    """The dead letters, oldest first (at most ``limit`` of them), and how many there are."""

    letters: tuple[DeadLetter, ...]
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"letters": [letter.to_dict() for letter in self.letters], "total": self.total}
