"""This process's part in sharing one database file: owner, follower, or direct.

:meth:`Sharing.join` decides at open (:mod:`actors.ownership` says how); a
watcher thread keeps the part current afterwards:

- an **owner** serves its facade to followers (:meth:`Sharing.serve`);
- a **follower** sends calls to the owner (:meth:`Sharing.submit`). When the
  owner goes, its calls fail with :class:`~actors.errors.OwnerGone`; those
  safe to repeat are *parked* and sent again to whoever owns the file next:
  another process (the watcher reconnects to the owner it publishes), or
  this one (the watcher takes the lock, the MemorySystem starts its actors
  through ``take_over``, and parked calls are handed back with
  :class:`NowOwner` to run here; a file busy meanwhile is tried again, the
  lock kept). Calls that are not safe to repeat fail;
- a **direct** process runs its own actors on the file, as before sharing
  existed; ``reason`` says why.

Only the watcher changes the part; callers read it under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

import attrs

from actors.errors import OwnerGone, StorageBusy, Unavailable
from actors.owner_link import NOT_BEGUN, Message
from actors.owner_protocol import SAFE_TO_REPEAT
from actors.ownership import OwnerInfo, Role
from actors.sharing_host import OS_HOST, Link, Lock, Service, SharingHost, Watcher

__all__ = ["Forwarded", "NowOwner", "Sharing"]

logger = logging.getLogger(__name__)

#: How often a follower checks the owner lock and the owner's socket.
POLL: Final = 0.05
#: The longest wait between two tries to start this process's actors once it holds
#: the lock and the file was busy (the waits double from :data:`POLL`).
TAKEOVER_BACKOFF_MAX: Final = 0.2


class NowOwner(Exception):
    """Internal: this process owns the file now; run the call on its own actors."""


@attrs.define
class Forwarded:
    """One call sent to the owner (or parked until there is one), until it is answered."""

    verb: str
    args: Message
    deadline: float
    #: What the caller waits for: the answer, whichever owner gives it.
    outer: Future[Message]
    #: The first attempt's link and answer, when its caller reads that itself
    #: (:meth:`Sharing.result`); later attempts are read by the link's own thread.
    link: Link | None = None
    first: Future[Message] | None = None


class Sharing:
    """One process's part in one file's sharing; see the module."""

    def __init__(
        self, database: str, lock: Lock | None, role: Role, host: SharingHost = OS_HOST
    ) -> None:
        self.database = database
        #: The world this runs in: the OS, or a simulation (:mod:`actors.sharing_host`).
        self._host = host
        self._lock = lock
        self._role = role
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._proxy: Link | None = None
        self._owner: OwnerInfo | None = None
        self._service: Service | None = None
        self._parked: list[Forwarded] = []
        self._take_over: Callable[[], None] | None = None
        self._stop = threading.Event()
        #: Set when the watcher has something to look at now: the link to the owner
        #: broke, a call was parked, or this process is closing.
        self._wake = threading.Event()
        self._watcher: Watcher | None = None
        #: Taking over found the file busy: tries so far, and when the next one may begin.
        self._takeover_tries = 0
        self._next_takeover = 0.0

    def __repr__(self) -> str:
        return f"<Sharing {self.database} {self._role.name}>"

    # -- deciding ------------------------------------------------------------------

    @classmethod
    def join(cls, database: str, *, wait: float, host: SharingHost = OS_HOST) -> Sharing:
        """Take this process's part for ``database``: owner if the lock is free, else follower.

        A follower is connected to the owner before this returns; waiting up
        to ``wait`` seconds for an owner still migrating the file to publish
        its socket (if it dies meanwhile, this process may become the owner).
        Direct, with the reason, when sharing cannot work here.
        """
        reason = host.unsupported_reason(database)
        if reason is not None:
            logger.warning("%s: direct mode (%s)", database, reason)
            return cls(database, None, Role("direct", reason), host)
        lock = host.lock(database)
        sharing = cls(database, lock, Role("owner"), host)
        deadline = host.monotonic() + wait
        while not lock.try_claim():
            info = host.read_owner(database)
            if info is not None and sharing._connect(info):
                sharing._role = Role("follower")
                return sharing
            if host.monotonic() > deadline:
                lock.release()
                raise Unavailable(
                    f"another process holds {database} but published no socket within "
                    f"{wait:g} s (still migrating?); retry shortly"
                )
            # Polling, because what ends this wait happens in another process and
            # nothing here can be woken by it portably: the lock freed (a blocking
            # flock has no timeout, and would miss the next point) or the owner's
            # socket published (a file written; inotify is Linux-only). Only a
            # process joining while the owner migrates or starts waits here, for
            # at most one POLL more than needed; the host's sleep keeps the
            # simulation in virtual time.
            host.sleep(POLL)
        return sharing

    @property
    def role(self) -> Role:
        with self._mutex:
            return self._role

    @property
    def following(self) -> bool:
        """Whether this process follows another that owns the file (every call asks).

        Read without the lock: reading one attribute is atomic, and the part may
        change right after with or without it (a call then fails over as any
        call in flight does).
        """
        return self._role.name == "follower"

    @property
    def owner_pid(self) -> int | None:
        with self._mutex:
            return self._owner.pid if self._owner is not None else None

    @property
    def followers(self) -> int:
        with self._mutex:
            return self._service.followers if self._service is not None else 0

    def describe(self) -> dict[str, Any]:
        """The part for ``status``: role, owner pid, followers (owner), reason (direct)."""
        role = self.role
        if role.name == "direct":
            return {"role": "direct", "reason": role.reason}
        if role.name == "owner":
            return {"role": "owner", "owner_pid": self.owner_pid, "followers": self.followers}
        return {"role": "follower", "owner_pid": self.owner_pid}

    # -- the owner's side ----------------------------------------------------------

    def serve(self, facade: object) -> None:
        """As the owner: listen for followers and publish where (after the actors started)."""
        assert self._lock is not None
        service, info = self._host.serve(facade, self.database)
        self._lock.publish(info)
        with self._mutex:
            self._service, self._owner, self._role = service, info, Role("owner")
        logger.info(
            "%s: owner (pid %d), serving followers on %s", self.database, info.pid, info.socket
        )

    # -- the follower's side -------------------------------------------------------

    def follow(self, take_over: Callable[[], None]) -> None:
        """As a follower: start the watcher; ``take_over`` starts this process's actors."""
        self._take_over = take_over
        self._watcher = self._host.watch(f"sharing:{self.database}", self._watch, self._watch_once)

    def submit(self, verb: str, args: Message, timeout: float) -> Future[Message]:
        """Send a call to the owner; the Future holds its answer, or raises.

        :class:`NowOwner` when this process took the file over: run the call here.
        """
        return self.send(verb, args, timeout, waited=False).outer

    def send(self, verb: str, args: Message, timeout: float, *, waited: bool = True) -> Forwarded:
        """Send a call to the owner, to be waited for with :meth:`result` (``waited``)
        or through its ``outer`` future."""
        call = Forwarded(verb, args, self._host.monotonic() + timeout, self._host.new_future())
        self._attempt(call, waited=waited)
        return call

    def call(self, verb: str, args: Message, timeout: float) -> Message:
        """Send a call to the owner and wait for its answer: ``result(send(...))``, with
        nothing built for the usual case but the request (what :meth:`result` says)."""
        deadline = self._host.monotonic() + timeout
        with self._mutex:
            proxy = self._proxy if self._role.name == "follower" else None
        if proxy is None or proxy.broken:
            return self.result(self.send(verb, args, timeout), timeout)
        first = proxy.submit(verb, args, waited=True)
        message = proxy.wait(first, timeout)
        if message is not None and not message.get(NOT_BEGUN):
            return message
        call = Forwarded(verb, args, deadline, self._host.new_future())
        return self._after_wait(call, first, message, deadline)

    def result(self, call: Forwarded, timeout: float) -> Message:
        """The answer to ``call`` (as its ``outer`` future's ``result(timeout)``).

        This thread reads the first attempt's answer from the link itself
        when no other thread reads the link: no thread wakes to hand it over.
        An answer so read is returned as it is, without passing through any
        future (a done-callback and two futures' hand-overs per call);
        anything else (the link broke, the owner was closing, another thread
        read it, time ran out) is settled as an unwaited call's answer is.
        """
        deadline = self._host.monotonic() + timeout
        link, first = call.link, call.first
        if link is None or first is None:
            return call.outer.result(max(0.0, deadline - self._host.monotonic()))
        call.link = call.first = None
        message = link.wait(first, timeout)
        if message is not None and not message.get(NOT_BEGUN):
            return message
        return self._after_wait(call, first, message, deadline)

    def _after_wait(
        self, call: Forwarded, first: Future[Message], read: Message | None, deadline: float
    ) -> Message:
        """The first attempt of ``call`` was not simply answered to its waiting caller
        (``read``: the answer it read itself, if any): settle it as :meth:`_settle`
        settles any attempt, and wait for the outcome."""
        if read is not None:
            first.set_result(read)  # never begun (read here, so not set yet)
        elif first.done() and first.exception(0) is None:
            message = first.result(0)
            if not message.get(NOT_BEGUN):
                return message
        first.add_done_callback(lambda done: self._settle(call, done))
        return call.outer.result(max(0.0, deadline - self._host.monotonic()))

    def _attempt(self, call: Forwarded, *, waited: bool = False) -> None:
        with self._mutex:
            if self._role.name == "owner":
                _fail(call.outer, NowOwner())
                return
            if self._role.name == "direct":  # taking over failed
                _fail(call.outer, Unavailable(self._role.reason))
                return
            proxy = self._proxy
            if proxy is None or proxy.broken:
                self._parked.append(call)
                self._wake.set()
                return
        inner = proxy.submit(call.verb, call.args, waited=waited)
        if waited:
            call.link, call.first = proxy, inner  # settled by its caller (``result``)
            return
        inner.add_done_callback(lambda done: self._settle(call, done))

    def _settle(self, call: Forwarded, done: Future[Message]) -> None:
        exc = done.exception()
        if exc is None and done.result().get(NOT_BEGUN) and self._host.monotonic() < call.deadline:
            self._park(call)  # the owner is closing: the next one runs it
        elif exc is None:
            _answer(call.outer, done.result())
        elif (
            isinstance(exc, OwnerGone)
            and call.verb in SAFE_TO_REPEAT
            and self._host.monotonic() < call.deadline
        ):
            logger.info("%s: the owner went during %s; repeating it with the next", self, call.verb)
            self._attempt(call)  # parked now: the proxy is broken
        else:
            _fail(call.outer, exc)

    def _park(self, call: Forwarded) -> None:
        with self._mutex:
            self._parked.append(call)
        self._wake.set()

    def _connect(self, info: OwnerInfo) -> bool:
        """Connect to the owner ``info`` names; whether that worked."""
        try:
            proxy = self._host.connect(info, on_broken=self._wake.set)
        except OSError:
            return False  # not listening yet, or gone already
        with self._mutex:
            old, self._proxy, self._owner = self._proxy, proxy, info
        if old is not None:
            old.close()
        return True

    def _watch(self) -> None:
        """Look again at once when woken (see ``_wake``), else every :data:`POLL` seconds:
        a dying owner's lock may be released a moment after its socket closed."""
        while True:
            self._wake.wait(POLL)
            # Cleared before looking: a wake during the look makes the next wait return.
            self._wake.clear()
            if not self._watch_once():
                return

    def _watch_once(self) -> bool:
        """One look at the lock and the link; False once there is nothing left to watch."""
        assert self._lock is not None
        if self._stop.is_set():
            return False
        if self._lock.try_claim():
            if self._host.monotonic() >= self._next_takeover and self._become_owner():
                return False
            self._resend()  # holding the lock, not serving yet: parked calls expire on time
            return True
        with self._mutex:
            proxy = self._proxy
        if proxy is None or proxy.broken:
            info = self._host.read_owner(self.database)
            if info is not None and self._connect(info):
                logger.info("%s: now following pid %d", self.database, info.pid)
        self._resend()
        return True

    def _resend(self) -> None:
        """Send parked calls again once there is an owner; expire those out of time."""
        with self._mutex:
            proxy = self._proxy
            if proxy is None or proxy.broken:
                now = self._host.monotonic()
                expired = [c for c in self._parked if now >= c.deadline]
                self._parked = [c for c in self._parked if now < c.deadline]
                ready: list[Forwarded] = []
            else:
                expired, ready, self._parked = [], self._parked, []
        for call in expired:
            _fail(
                call.outer, OwnerGone(f"no owner of {self.database} answered {call.verb} in time")
            )
        for call in ready:
            self._attempt(call)

    def _become_owner(self) -> bool:
        """Start this process's actors and serve; False when the file was busy (try later).

        Busy is what another process's write lock answers (a CLI import, a
        direct-mode process, the dead owner's last transaction): it passes,
        so this process keeps the lock and tries again, backing off through
        the host's clock. Letting go instead would hand the same wait to the
        next follower, and when every follower let go, nobody would serve
        the file (the ``owner`` sweep found it). Any other failure will not
        pass by waiting: the lock goes to the next follower.
        """
        assert self._take_over is not None
        if self._takeover_tries == 0:
            logger.info("%s: the owner went; this process takes the file over", self.database)
        try:
            self._take_over()  # starts the actors, then serve()
        except StorageBusy as exc:
            delay = min(POLL * 2**self._takeover_tries, TAKEOVER_BACKOFF_MAX)
            self._takeover_tries += 1
            self._next_takeover = self._host.monotonic() + delay
            logger.warning(
                "%s: taking over found the file busy (%s); try %d in %.2fs",
                self.database,
                exc,
                self._takeover_tries + 1,
                delay,
            )
            return False
        except Exception as exc:
            logger.exception("%s: taking over failed; leaving the file to others", self.database)
            assert self._lock is not None
            self._lock.release()
            with self._mutex:
                self._role = Role("direct", f"taking over as owner failed: {exc}")
                parked, self._parked = self._parked, []
            for call in parked:
                _fail(call.outer, Unavailable(f"taking over {self.database} failed: {exc}"))
            return True
        with self._mutex:
            proxy, self._proxy = self._proxy, None
            parked, self._parked = self._parked, []
        if proxy is not None:
            proxy.close()
        for call in parked:
            _fail(call.outer, NowOwner())
        return True

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching and serving, close the link. The lock is released by :meth:`release`."""
        self._stop.set()
        self._wake.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(10)
        with self._mutex:
            service, self._service = self._service, None
            proxy, self._proxy = self._proxy, None
            parked, self._parked = self._parked, []
        if service is not None:
            service.close()
        if proxy is not None:
            proxy.close()
        for call in parked:
            _fail(call.outer, OwnerGone(f"{self.database}: this process is closing"))

    def release(self) -> None:
        """Give up ownership (after the actors stopped): the next process takes over."""
        if self._lock is not None:
            self._lock.release()


def _answer(outer: Future[Message], message: Message) -> None:
    # A caller that gave up (an asyncio task cancelled) cancelled its future.
    if not outer.done():
        outer.set_result(message)


def _fail(outer: Future[Message], exc: BaseException) -> None:
    if not outer.done():
        outer.set_exception(exc)
