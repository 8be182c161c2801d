"""The SyncActor: pushes the durable outbox to the hub and pulls the hub's changes.

It owns the :class:`~actors.remote.HubClient` (HTTP calls block this actor's
own thread for at most the client timeout, never another actor) and talks
to the StoreActor only by tell-backs (:class:`~actors.messages.TellBack`):
it never waits on the store's future.

Lifecycle, all driven by timer messages on the runtime clock:

- ``LeaseTick``: take or renew the file's sync lease; only the holder syncs,
  so several processes on one file push each memory once. A holder that
  dies stops renewing, and another process takes over when the lease expires.
  With sharing (:mod:`actors.sharing`) only the file's owner process runs a
  SyncActor, and its right to sync is that ownership: it takes over a
  previous owner's lease at once (:data:`~actors.sync_model.OWNER_HOLDER`).
  The lease still keeps direct-mode processes on the same file out.
- ``AuthRecheck``: check the key before syncing; a 401/403 from any call
  stops syncing (stores keep succeeding locally), reports the hub's reason,
  and re-checks on a backoff until the key works again.
- ``SyncTick`` (and ``SyncNudge`` after a store): push and pull, each
  independent of the other: a failing push never skips a pull. A pulled
  page is applied in transactions of ``apply_size`` (a local store never
  waits behind a whole page) while the next page is fetched.
- ``ResyncTick``: full resync by digest comparison (version and origin, never
  counts), a merge join by id range, at start (once the pull has caught up
  with the feed) and every ``resync_interval``. It pushes again what the hub
  lacks (never a dead letter: that waits for ``retry-dead``), and pulls the
  whole feed again only for memories still missing at the next resync.

Push failures: the hub refusing or failing a batch (5xx, garbage, timeout)
costs each memory in it one attempt, retried with jittered exponential
backoff, a dead letter after ``max_attempts``. A hub that cannot be reached
at all costs no attempts: the memories wait, with the whole sync backing off.
Nor does a hub that answers 503 (its storage cannot answer now: PostgreSQL
down or restarting): it is unreachable in all but name, and the whole sync
backs off, never sooner than its ``Retry-After``.
A batch over the hub's body limit is split, at no attempt's cost.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pykka

from actors._base import ReplyingActor
from actors.errors import (
    HubAuthError,
    HubCursorReset,
    HubError,
    HubRejected,
    HubServerError,
    HubUnreachable,
)
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
from actors.supervisor import ChildCell, tell_child
from actors.sync_model import (
    OWNER_HOLDER,
    DigestRow,
    OutboxEntry,
    PushOutcome,
    RemoteConfig,
    SyncPhase,
    SyncReport,
)
from actors.wire import WireMemory

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
        owner: bool = False,
    ) -> None:
        """``owner``: this process owns the file (see :data:`OWNER_HOLDER`)."""
        super().__init__(runtime, name="sync", supervisor=supervisor)
        self.remote = remote
        self.store = store
        self.client_factory = client_factory
        self.client: HubClient | None = None
        self.holder = (OWNER_HOLDER if owner else "") + runtime.new_id()
        self.phase: SyncPhase = "starting"
        self.reason = "waiting for the sync lease"
        self.lease = False
        self.lease_expires = 0.0
        self.auth_ok = False
        self.cursor: str | None = None
        self.meta_loaded = False
        self.push_busy = False
        self.pull_busy = False
        self.pull_more = False
        #: The next page, fetched while the store applies the current one.
        self._prefetched: _Page | None = None
        self._prefetch_after: str | None = None
        #: The rest of the page being applied (in transactions of ``apply_size``).
        self._chunks: list[tuple[WireMemory, ...]] = []
        self._page_cursor: str | None = None
        #: A full resync found memories that pulling from the cursor did not bring:
        #: pull the whole feed again (from no cursor) at the next chance.
        self._repull = False
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
        #: A resync waiting for the pull to catch up with the feed.
        self._resync_deferred = False
        #: What the last full resync found on the hub but not here (id, version, origin).
        self._suspects: frozenset[tuple[str, str, str]] = frozenset()

    def __repr__(self) -> str:
        return (
            f"<SyncActor {self.phase} lease={self.lease} push={self.push_busy} "
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
            case _Prefetch():
                self._prefetch()
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
            state=self.phase,
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
        return tell_child(self.store, message)

    def _active(self) -> bool:
        if self.lease and self.runtime.monotonic() >= self.lease_expires:
            self.lease = False
            self._set_state("standby", "the sync lease expired before it was renewed")
        return self.lease and self.auth_ok and self.meta_loaded

    def _set_state(self, state: SyncPhase, reason: str) -> None:
        if (state, reason) != (self.phase, self.reason):
            logger.info("sync %s → %s: %s", self.phase, state, reason)
        self.phase = state
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
        elif _unreachable(exc):
            self._set_state("unreachable", f"hub unreachable during {during}: {exc}")
            self.unreachable_count += 1
            delay = self._backoff(self.unreachable_count - 1)
            floor = getattr(exc, "retry_after", None) or 0.0
            self.unreachable_until = self.runtime.monotonic() + max(floor, delay)
        else:
            logger.warning("sync %s failed: %s", during, exc)

    def _reachable(self) -> None:
        self.unreachable_count = 0
        self.unreachable_until = 0.0
        if self.phase == "unreachable":
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
                if self._chunks:
                    if not self._send_chunk():
                        self._chunks = []
                        self.pull_busy = False
                    return
                self.pull_busy = False
                self.last_pull_at = self.runtime.wall_time()
                page, self._prefetched = self._prefetched, None
                if page is not None and page.since == self.cursor and not self._repull:
                    self._apply(page)
                elif self.pull_more or self._repull:
                    self._start_pull()
                if not self.pull_busy and self._resync_deferred:
                    self._resync_deferred = False  # caught up with the feed
                    self._start_resync()
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
            self._chunks = []
            self._prefetched = None  # it follows the page that failed: fetch it again
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
            if exc.code == "payload_too_large" and len(entries) > 1:
                return self._send_halves(entries)
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
        except HubError as exc:
            self._on_hub_error(exc, "push")
            if isinstance(exc, HubAuthError) or _unreachable(exc):
                return None  # no fault of these memories: they wait, no attempt spent
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

    def _send_halves(self, entries: tuple[OutboxEntry, ...]) -> list[PushOutcome] | None:
        """A batch over the hub's body limit (large memories): push each half on its own.

        Too large is no failure of any memory in it, so it costs no attempt;
        without this, a burst of large memories was dead-lettered whole.
        """
        half = len(entries) // 2
        first = self._send(entries[:half])
        if first is None:
            return None
        second = self._send(entries[half:])
        if second is None:  # the hub went away in between: the rest waits, no attempt spent
            second = [PushOutcome(e.memory.id, e.max_seq, "skipped") for e in entries[half:]]
        return first + second

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
        if self._repull:
            # LWW apply is idempotent: pulling the whole feed again converges.
            self._repull = False
            self.cursor = None
        self._prefetched = None
        page = self._fetch(self.cursor)
        if page is None:
            return
        self.pull_more = page.has_more
        if not page.memories and page.next_cursor == self.cursor:
            self.last_pull_at = self.runtime.wall_time()
            return
        self._apply(page)

    def _fetch(self, since: str | None) -> _Page | None:
        """One page of the feed after ``since``; None if the hub failed (handled)."""
        try:
            page = self._hub().changes(since, self.remote.page_size)
        except HubCursorReset as exc:
            self.last_error = f"pull: {exc}"
            self.cursor = None
            return None
        except HubError as exc:
            self._on_hub_error(exc, "pull")
            return None
        self._reachable()
        memories = tuple(change.memory for change in page.changes)
        return _Page(since, memories, page.next_cursor, page.has_more)

    def _apply(self, page: _Page) -> None:
        """Hand a page to the store; while it applies, fetch the next one.

        The prefetched page is applied only after this one committed (and
        only if it follows the cursor saved then), so a failed apply can
        never let a later page's cursor skip its changes.
        """
        self.pull_more = page.has_more
        size = max(1, self.remote.apply_size)
        memories = page.memories
        self._chunks = [memories[i : i + size] for i in range(0, len(memories), size)] or [()]
        self._page_cursor = page.next_cursor
        if not self._send_chunk():
            self._chunks = []
            return
        self.pull_busy = True
        if page.has_more:
            self._prefetch_after = page.next_cursor
            self.actor_ref.tell(_Prefetch())

    def _send_chunk(self) -> bool:
        """Send the next transaction of the page; the page's cursor goes with its last one.

        A store queued behind a transaction is served before the next one, so
        no store ever waits for a whole page. If the file is closed halfway,
        the saved cursor is still the page's start: the page is applied again
        (last writer wins makes that harmless).
        """
        chunk = self._chunks.pop(0)
        cursor = self._page_cursor if not self._chunks else self.cursor
        return self._to_store(ApplyChanges(self.actor_ref, chunk, cursor))

    def _prefetch(self) -> None:
        if not self.pull_busy or self._prefetched is not None or not self._active():
            return
        self._prefetched = self._fetch(self._prefetch_after)

    # -- full resync --------------------------------------------------------------------

    def _start_resync(self) -> None:
        if self._resync is not None or not self._active():
            return
        if self.pull_busy and self.pull_more:
            # Catching up with the feed (a fresh replica pulls everything): compare
            # once caught up, or nearly every memory would look missing here.
            self._resync_deferred = True
            return
        self._resync = _Resync()
        self.actor_ref.tell(_ResyncStep())

    def _resync_step(self) -> None:
        """A merge join by id: a page of our digest, then the hub's entries of its id range."""
        resync = self._resync
        if resync is None or not self._active():
            self._resync = None
            return
        if resync.need_local():
            if not self._to_store(
                ReadLocalDigest(self.actor_ref, resync.local_after, _DIGEST_PAGE)
            ):
                self._resync = None
            return  # the answer steps again
        if resync.need_remote():
            try:
                page = self._hub().digest(resync.remote_after, _DIGEST_PAGE)
            except HubError as exc:
                self._on_hub_error(exc, "resync")
                self._resync = None
                return
            resync.remote_page(page.entries, page.next_after, page.has_more)
            self.actor_ref.tell(_ResyncStep())
            return
        to_push = resync.compare()
        for start in range(0, len(to_push), 500):
            self._to_store(RequeueForPush(self.actor_ref, tuple(to_push[start : start + 500])))
        if not resync.done:
            self.actor_ref.tell(_ResyncStep())
            return
        self._resync = None
        self.last_resync_at = self.runtime.wall_time()
        # Memories the hub holds and we lack (or hold older) usually just arrived and
        # come with the next pull. Only those still missing at the next resync were
        # passed by the cursor (a restored file, a lost apply): then pull everything
        # again. Re-pulling at every resync would re-apply the whole feed every time.
        stale = resync.missing & self._suspects
        self._suspects = frozenset(resync.missing)
        if stale:
            self._repull = True
            self._start_pull()
        logger.info(
            "resync: %d to push, %d newer on the hub, pull again: %s",
            resync.pushed,
            len(resync.missing),
            bool(stale),
        )


#: Digest entries per page, ours and the hub's.
_DIGEST_PAGE = 1000
#: Memories remembered between resyncs as "on the hub, not here" (bounds memory).
_SUSPECTS_CAP = 10_000


@attrs.frozen
class _Page:
    """A page of the hub's change feed: the changes after ``since``, up to ``next_cursor``."""

    since: str | None
    memories: tuple[WireMemory, ...]
    next_cursor: str | None
    has_more: bool


class _Prefetch:
    """SyncActor → itself: fetch the next page of the feed while the store applies one."""


class _PushNow:
    """SyncActor → itself: the coalesced push after a nudge."""


class _ResyncStep:
    """SyncActor → itself: the next page of a full resync."""


class _RetryMeta:
    """SyncActor → itself: read the saved cursor again after a store error."""


class _Resync:
    """One full resync: a merge join of our digest and the hub's, one id range at a time.

    Each page of ours covers the ids after the previous page, up to its last id
    (to the end, on the last page); the hub's entries of that range are read
    right after it. Ours first: a memory pushed meanwhile is then already on
    the hub's side, not re-pushed (comparing whole digests read the hub's long
    before ours, and pushed again every memory pushed in between). One that
    arrives by pull meanwhile looks missing here, which a single resync never
    acts on (see ``_suspects``). About a page of each side is held at once.
    """

    def __init__(self) -> None:
        #: The current page of ours (None: to be read), and its last id (None: to the end).
        self.local: tuple[DigestRow, ...] | None = None
        self.upper: str | None = None
        self.local_after: str | None = None
        self.local_done = False
        #: Hub entries read but not compared yet (ordered by id).
        self.remote: list[Any] = []
        self.remote_after: str | None = None
        self.remote_done = False
        self.pushed = 0
        #: Hub entries newer than ours or missing here: (id, version, origin).
        self.missing: set[tuple[str, str, str]] = set()

    @property
    def done(self) -> bool:
        return self.local_done and self.remote_done and self.local is None and not self.remote

    def need_local(self) -> bool:
        return self.local is None and not self.local_done

    def local_page(self, rows: tuple[DigestRow, ...]) -> None:
        self.local = rows
        if rows:
            self.local_after = rows[-1].id
        self.local_done = len(rows) < _DIGEST_PAGE
        self.upper = None if self.local_done else self.local_after

    def need_remote(self) -> bool:
        """Whether the hub's entries of the current range are not all read yet."""
        if self.remote_done:
            return False
        return self.upper is None or not self.remote or self.remote[-1].id <= self.upper

    def remote_page(self, entries: Any, next_after: str | None, has_more: bool) -> None:
        self.remote.extend(entries)
        self.remote_after = next_after
        self.remote_done = not has_more or next_after is None

    def compare(self) -> list[str]:
        """Compare the current range; the ids of ours that the hub lacks or holds older."""
        mine, self.local = self.local or (), None
        if self.upper is None:
            theirs, self.remote = self.remote, []
        else:
            cut = bisect.bisect_right([entry.id for entry in self.remote], self.upper)
            theirs, self.remote = self.remote[:cut], self.remote[cut:]
        remote = {entry.id: (entry.version, entry.origin) for entry in theirs}
        to_push = [
            row.id
            for row in mine
            if row.id not in remote or (row.version, row.origin) > remote[row.id]
        ]
        local = {row.id: (row.version, row.origin) for row in mine}
        for memory_id, (version, origin) in remote.items():
            ours = local.get(memory_id)
            if (ours is None or (version, origin) > ours) and len(self.missing) < _SUSPECTS_CAP:
                self.missing.add((memory_id, version, origin))
        self.pushed += len(to_push)
        return to_push


def _unreachable(exc: HubError) -> bool:
    """No answer from the hub, or its 503: its storage cannot answer now (PostgreSQL down
    or restarting, a statement timed out), so nothing says these memories are at fault."""
    return isinstance(exc, HubUnreachable) or (
        isinstance(exc, HubServerError) and exc.status == 503
    )
