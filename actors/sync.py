"""The SyncActor: pushes the durable outbox to the hub and pulls the hub's changes.

It owns the :class:`~actors.remote.HubClient` (HTTP calls block this actor's
own thread for at most the client timeout, never another actor) and talks
to the StoreActor only by tell-backs (:class:`~actors.messages.TellBack`):
it never waits on the store's future.

Lifecycle, all driven by timer messages on the runtime clock:

- ``LeaseTick``: take or renew the file's sync lease; only the holder syncs,
  so several processes on one file push each memory once. A holder that
  dies stops renewing, and another process takes over when the lease expires.
- ``AuthRecheck``: check the key before syncing; a 401/403 from any call
  stops syncing (stores keep succeeding locally), reports the hub's reason,
  and re-checks on a backoff until the key works again.
- ``SyncTick`` (and ``SyncNudge`` after a store): push and pull, each
  independent of the other: a failing push never skips a pull.
- ``ResyncTick``: full resync by digest comparison (content hash and
  version, never counts), at start and every ``resync_interval``.

Push failures: the hub refusing or failing a batch (5xx, garbage, timeout)
costs each memory in it one attempt, retried with jittered exponential
backoff, a dead letter after ``max_attempts``. A hub that cannot be reached
at all costs no attempts: the memories wait, with the whole sync backing off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors._base import ReplyingActor
from actors.errors import (
    HubAuthError,
    HubCursorReset,
    HubError,
    HubRejected,
    HubUnreachable,
)
from actors.hub.protocol import WireMemory
from actors.messages import (
    AcquireLease,
    Answer,
    ApplyChanges,
    AuthRecheck,
    FetchOutbox,
    LeaseTick,
    ReadLocalDigest,
    ReadSyncMeta,
    RecordPush,
    ReleaseLease,
    RequeueForPush,
    ResyncTick,
    SyncNudge,
    SyncStatus,
    SyncTick,
)
from actors.remote import HubClient
from actors.runtime import Runtime
from actors.supervisor import ChildCell
from actors.sync_model import (
    DigestRow,
    OutboxEntry,
    PushOutcome,
    RemoteConfig,
    SyncReport,
    SyncState,
)

__all__ = ["SyncActor"]

logger = logging.getLogger(__name__)

ClientFactory = Callable[[RemoteConfig, Runtime], HubClient]


def default_client(config: RemoteConfig, runtime: Runtime) -> HubClient:
    return HubClient(config.url, config.api_key, timeout=config.timeout, clock=runtime.monotonic)


class SyncActor(ReplyingActor):
    """Keeps one replica and the hub converged. Runs on its own thread when threaded.

    It holds no reply futures between messages (``SyncStatus`` is answered at
    once), so stop and failure need no settling beyond releasing the lease.
    """

    def __init__(
        self,
        runtime: Runtime,
        remote: RemoteConfig,
        store: ChildCell,
        *,
        client_factory: ClientFactory = default_client,
        supervisor: pykka.ActorRef[Any] | None = None,
    ) -> None:
        super().__init__(runtime, name="sync", supervisor=supervisor)
        self.remote = remote
        self.store = store
        self.client_factory = client_factory
        self.client: HubClient | None = None
        self.holder = runtime.new_id()
        self.sync_state: SyncState = "starting"
        self.reason = "waiting for the sync lease"
        self.lease = False
        self.lease_expires = 0.0
        self.auth_ok = False
        self.cursor: str | None = None
        self.meta_loaded = False
        self.push_busy = False
        self.pull_busy = False
        self.pull_more = False
        self.nudged = False
        self.auth_failures = 0
        self.unreachable_count = 0
        self.unreachable_until = 0.0
        self.ticking = False
        self.push_full = False
        self.pushed = 0
        self.pulled = 0
        self.last_push_at: float | None = None
        self.last_pull_at: float | None = None
        self.last_resync_at: float | None = None
        self.last_error: str | None = None
        self._resync: _Resync | None = None

    def __repr__(self) -> str:
        return (
            f"<SyncActor {self.sync_state} lease={self.lease} push={self.push_busy} "
            f"pull={self.pull_busy} state={self.state}>"
        )

    # -- lifecycle ------------------------------------------------------------

    def setup(self) -> None:
        self.client = self.client_factory(self.remote, self.runtime)
        self.actor_ref.tell(_RetryMeta())
        self.actor_ref.tell(LeaseTick())

    def teardown(self) -> None:
        if self.lease:
            self._to_store(ReleaseLease(self.actor_ref, self.holder))
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- dispatch -------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case Answer():
                self._on_answer(message)
            case LeaseTick():
                self._to_store(AcquireLease(self.actor_ref, self.holder, self.remote.lease_ttl))
                self._later(self.remote.lease_ttl / 3, LeaseTick())
            case AuthRecheck():
                self._check_auth()
            case SyncTick():
                self._cycle()
                self._later(self.remote.interval, SyncTick())
            case SyncNudge():
                if not self.nudged:
                    # Coalesce a burst of stores into one push shortly after.
                    self.nudged = True
                    self._later(0.05, _PushNow())
            case _PushNow():
                self.nudged = False
                self._start_push()
            case ResyncTick():
                self._start_resync()
                self._later(self.remote.resync_interval, ResyncTick())
            case _ResyncStep():
                self._resync_step()
            case _RetryMeta():
                if not self._to_store(ReadSyncMeta(self.actor_ref)):
                    self._later(0.5, _RetryMeta())
            case SyncStatus():
                return self.report()
            case _:
                return super().handle(message)
        return None

    def report(self) -> SyncReport:
        return SyncReport(
            state=self.sync_state,
            reason=self.reason,
            remote=self.remote.url,
            lease_holder=self.lease,
            pushed=self.pushed,
            pulled=self.pulled,
            last_push_at=self.last_push_at,
            last_pull_at=self.last_pull_at,
            last_resync_at=self.last_resync_at,
            last_error=self.last_error,
        )

    # -- plumbing -------------------------------------------------------------

    def _later(self, delay: float, message: Any) -> None:
        self.runtime.call_later(delay, self.actor_ref, message)

    def _to_store(self, message: Any) -> bool:
        # A store still starting queues the message; a dead one refuses it.
        ref = self.store.ref
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def _active(self) -> bool:
        if self.lease and self.runtime.monotonic() >= self.lease_expires:
            self.lease = False
            self._set_state("standby", "the sync lease expired before it was renewed")
        return self.lease and self.auth_ok and self.meta_loaded

    def _set_state(self, state: SyncState, reason: str) -> None:
        if (state, reason) != (self.sync_state, self.reason):
            logger.info("sync %s → %s: %s", self.sync_state, state, reason)
        self.sync_state = state
        self.reason = reason

    def _hub(self) -> HubClient:
        if self.client is None:
            raise HubUnreachable("the hub client is closed", url=self.remote.url, status=None)
        return self.client

    def _on_hub_error(self, exc: HubError, during: str) -> None:
        self.last_error = f"{during}: {exc}"
        if isinstance(exc, HubAuthError):
            self.auth_ok = False
            self._set_state("auth-failed", f"the hub refused the key ({exc.code}): {exc.reason}")
            self._schedule_auth_recheck()
        elif isinstance(exc, HubUnreachable):
            self._set_state("unreachable", f"hub unreachable during {during}: {exc}")
            self.unreachable_count += 1
            delay = self._backoff(self.unreachable_count - 1)
            self.unreachable_until = self.runtime.monotonic() + delay
        else:
            logger.warning("sync %s failed: %s", during, exc)

    def _reachable(self) -> None:
        self.unreachable_count = 0
        self.unreachable_until = 0.0
        if self.sync_state == "unreachable":
            self._set_state("syncing", "")

    def _backoff(self, attempt: int) -> float:
        base = min(self.remote.max_backoff, self.remote.backoff * 2 ** min(attempt, 16))
        return float(base * (0.5 + self.runtime.rng("sync.backoff").random()))

    def _schedule_auth_recheck(self) -> None:
        self.auth_failures += 1
        self._later(self._backoff(self.auth_failures - 1), AuthRecheck())

    # -- answers from the store -------------------------------------------------

    def _on_answer(self, answer: Answer) -> None:
        request = answer.request
        if answer.error is not None:
            self._on_store_error(request, answer.error)
            return
        match request:
            case ReadSyncMeta():
                self.cursor, _origin = answer.value
                self.meta_loaded = True
            case AcquireLease():
                self._on_lease(answer.value)
            case FetchOutbox():
                self._push(answer.value)
            case RecordPush():
                self.push_busy = False
                if self.push_full:
                    self._start_push()
            case ApplyChanges():
                self.pulled += answer.value
                self.cursor = request.cursor
                self.pull_busy = False
                self.last_pull_at = self.runtime.wall_time()
                if self.pull_more:
                    self._start_pull()
            case ReadLocalDigest():
                if self._resync is not None:
                    self._resync.local_page(answer.value)
                    self.actor_ref.tell(_ResyncStep())
            case RequeueForPush():
                self._start_push()
            case ReleaseLease():
                pass

    def _on_store_error(self, request: Any, error: BaseException) -> None:
        self.last_error = f"store: {error}"
        logger.warning("sync: the store answered %r with %s", type(request).__name__, error)
        if isinstance(request, ReadSyncMeta):
            self._later(1.0, _RetryMeta())
        elif isinstance(request, FetchOutbox | RecordPush):
            self.push_busy = False
        elif isinstance(request, ApplyChanges):
            self.pull_busy = False
        elif isinstance(request, ReadLocalDigest):
            self._resync = None

    def _on_lease(self, value: tuple[bool, str, float]) -> None:
        held, _holder, expires = value
        was = self.lease
        self.lease = held
        # Held only until it expires: if a renewal fails (a busy store), this process
        # must stop syncing before another one may take the lease over.
        self.lease_expires = expires if held else 0.0
        if not held:
            self._set_state("standby", "another process on this file syncs (it holds the lease)")
            return
        if not was:
            self._set_state("starting", "lease taken; checking the key")
            self._check_auth()

    # -- auth -----------------------------------------------------------------------

    def _check_auth(self) -> None:
        if not self.lease:
            return
        try:
            self._hub().auth_check()
        except HubError as exc:
            self.auth_ok = False
            if isinstance(exc, HubAuthError):
                self._on_hub_error(exc, "auth check")
            else:
                self._set_state("unreachable", f"cannot check the key: {exc}")
                self._schedule_auth_recheck()
            return
        self.auth_ok = True
        self.auth_failures = 0
        self._set_state("syncing", "")
        if not self.ticking:
            # The periodic chains start once; each message schedules its successor.
            self.ticking = True
            self.actor_ref.tell(SyncTick())
            self.actor_ref.tell(ResyncTick())
        else:
            self._cycle()
            self._start_resync()

    # -- push -------------------------------------------------------------------------

    def _cycle(self) -> None:
        if not self._active():
            return
        if self.runtime.monotonic() < self.unreachable_until:
            return
        self._start_push()
        self._start_pull()

    def _start_push(self) -> None:
        if self.push_busy or not self._active():
            return
        if self._to_store(FetchOutbox(self.actor_ref, self.remote.batch_size)):
            self.push_busy = True

    def _push(self, entries: tuple[OutboxEntry, ...]) -> None:
        if not entries:
            self.push_busy = False
            self.push_full = False
            return
        self.push_full = len(entries) >= self.remote.batch_size
        outcomes = self._send(entries)
        if outcomes is None:
            self.push_busy = False
            return
        if self._to_store(RecordPush(self.actor_ref, tuple(outcomes))):
            return
        self.push_busy = False

    def _send(self, entries: tuple[OutboxEntry, ...]) -> list[PushOutcome] | None:
        """Push one batch; the outcomes to record, or None if nothing should be recorded."""
        items: list[WireMemory] = [entry.memory for entry in entries]
        try:
            result = self._hub().push(items)
        except HubRejected as exc:
            index = exc.details.get("index")
            if exc.code == "invalid_item" and isinstance(index, int) and index < len(entries):
                bad = entries[index]
                return [
                    PushOutcome(
                        e.memory.id,
                        e.max_seq,
                        "dead" if e is bad else "skipped",
                        error=f"the hub refused it: {exc.hub_message}" if e is bad else None,
                    )
                    for e in entries
                ]
            return self._failed(entries, exc)
        except (HubAuthError, HubUnreachable) as exc:
            self._on_hub_error(exc, "push")
            return None
        except HubError as exc:
            self._on_hub_error(exc, "push")
            return self._failed(entries, exc)
        self.last_push_at = self.runtime.wall_time()
        self._reachable()
        outcomes = []
        for entry, item in zip(entries, result.results, strict=False):
            if item.status == "duplicate":
                outcomes.append(
                    PushOutcome(
                        entry.memory.id,
                        entry.max_seq,
                        "rekey",
                        canonical_id=item.canonical_id,
                        hub_version=item.version,
                    )
                )
            else:
                outcomes.append(PushOutcome(entry.memory.id, entry.max_seq, "synced"))
        self.pushed += len(outcomes)
        return outcomes

    def _failed(self, entries: tuple[OutboxEntry, ...], exc: BaseException) -> list[PushOutcome]:
        # Each memory waits out its own jittered backoff (RemoteConfig.backoff doubling
        # per attempt, capped at max_backoff), and never less than the hub's Retry-After.
        floor = getattr(exc, "retry_after", None) or 0.0
        return [
            PushOutcome(
                e.memory.id,
                e.max_seq,
                "failed",
                error=f"{type(exc).__name__}: {exc}",
                retry_in=max(floor, self._backoff(e.attempts)),
            )
            for e in entries
        ]

    # -- pull -------------------------------------------------------------------------

    def _start_pull(self) -> None:
        if self.pull_busy or not self._active():
            return
        try:
            page = self._hub().changes(self.cursor, self.remote.page_size)
        except HubCursorReset as exc:
            self.last_error = f"pull: {exc}"
            self.cursor = None
            return
        except HubError as exc:
            self._on_hub_error(exc, "pull")
            return
        self._reachable()
        memories = tuple(change.memory for change in page.changes)
        self.pull_more = page.has_more
        if not memories and page.next_cursor == self.cursor:
            self.last_pull_at = self.runtime.wall_time()
            return
        if self._to_store(ApplyChanges(self.actor_ref, memories, page.next_cursor)):
            self.pull_busy = True

    # -- full resync --------------------------------------------------------------------

    def _start_resync(self) -> None:
        if self._resync is not None or not self._active():
            return
        self._resync = _Resync()
        self.actor_ref.tell(_ResyncStep())

    def _resync_step(self) -> None:
        """One page at a time (hub digest, then local digest), then the comparison."""
        resync = self._resync
        if resync is None or not self._active():
            self._resync = None
            return
        if not resync.remote_done:
            try:
                page = self._hub().digest(resync.remote_after, 1000)
            except HubError as exc:
                self._on_hub_error(exc, "resync")
                self._resync = None
                return
            resync.remote_page(page.entries, page.next_after, page.has_more)
            self.actor_ref.tell(_ResyncStep())
            return
        if not resync.local_done:
            if not self._to_store(ReadLocalDigest(self.actor_ref, resync.local_after, 1000)):
                self._resync = None
            return
        to_push, needs_pull = resync.compare()
        self._resync = None
        self.last_resync_at = self.runtime.wall_time()
        for start in range(0, len(to_push), 500):
            self._to_store(RequeueForPush(self.actor_ref, tuple(to_push[start : start + 500])))
        if needs_pull:
            # LWW apply is idempotent: pulling the whole feed again converges.
            self.cursor = None
            self._start_pull()
        logger.info("resync: %d to push, pull again: %s", len(to_push), needs_pull)


class _PushNow:
    """SyncActor → itself: the coalesced push after a nudge."""


class _ResyncStep:
    """SyncActor → itself: the next page of a full resync."""


class _RetryMeta:
    """SyncActor → itself: read the saved cursor again after a store error."""


class _Resync:
    """The state of one full resync: what the hub holds, then what we hold."""

    def __init__(self) -> None:
        self.remote: dict[str, tuple[str, str]] = {}
        self.remote_after: str | None = None
        self.remote_done = False
        self.local: dict[str, DigestRow] = {}
        self.local_after: str | None = None
        self.local_done = False

    def remote_page(self, entries: Any, next_after: str | None, has_more: bool) -> None:
        for entry in entries:
            self.remote[entry.id] = (entry.version, entry.origin)
        self.remote_after = next_after
        self.remote_done = not has_more or next_after is None

    def local_page(self, rows: tuple[DigestRow, ...]) -> None:
        for row in rows:
            self.local[row.id] = row
        if rows:
            self.local_after = rows[-1].id
        self.local_done = len(rows) < 1000

    def compare(self) -> tuple[list[str], bool]:
        to_push = [
            row.id
            for row in self.local.values()
            if row.id not in self.remote or (row.version, row.origin) > self.remote[row.id]
        ]
        needs_pull = any(
            memory_id not in self.local
            or (version, origin) > (self.local[memory_id].version, self.local[memory_id].origin)
            for memory_id, (version, origin) in self.remote.items()
        )
        return to_push, needs_pull
