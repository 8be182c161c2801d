"""Internal: the world a :class:`~actors.sharing.Sharing` runs in, behind one small seam.

Sharing's rules (who owns the file, parking, repeating what is safe to
repeat, ``not_begun``, taking over) are the same everywhere; what they run on
is not. :class:`OSHost` is the real world: ``flock`` on ``<file>.owner``,
Unix sockets, a watcher thread, ``time.monotonic``. The simulation passes
its own host (:mod:`actors.sim.sharing`): a lock granted to one simulated
process at a time, a link whose frames the seeded scheduler delivers, a
virtual clock, so the very same rules run under ``sim.kill`` of the owner.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, Protocol

from actors.owner_link import Message, OwnerProxy
from actors.owner_service import OwnerService
from actors.ownership import (
    OwnerInfo,
    OwnerLock,
    ensure_private_dir,
    read_owner,
    runtime_dir,
    socket_path_for,
    unsupported_reason,
)

__all__ = ["OS_HOST", "Link", "Lock", "OSHost", "Service", "SharingHost", "Watcher"]


class Lock(Protocol):
    """The owner lock of one file (:class:`~actors.ownership.OwnerLock`)."""

    def try_claim(self) -> bool: ...
    def publish(self, info: OwnerInfo) -> None: ...
    def release(self) -> None: ...


class Link(Protocol):
    """A follower's connection to the owner (:class:`~actors.owner_link.OwnerProxy`).

    ``submit``'s future holds the owner's answer, ``{"not_begun": True}``, or
    raises :class:`~actors.errors.OwnerGone` when the link broke first.
    """

    @property
    def broken(self) -> bool: ...
    def submit(self, verb: str, args: Message, *, waited: bool = False) -> Future[Message]:
        """Send a request; ``waited``: its caller will :meth:`wait` for the answer."""

    def wait(self, future: Future[Message], timeout: float) -> Message | None:
        """Wait up to ``timeout`` s for ``future`` (from ``submit(waited=True)``), reading
        the link on this thread if that helps: the answer if this thread read it (then
        ``future`` stays unset), else None; it may return early, not done."""

    def close(self) -> None: ...


class Service(Protocol):
    """The owner's end (:class:`~actors.owner_service.OwnerService`)."""

    @property
    def followers(self) -> int: ...
    def close(self) -> None: ...


class Watcher(Protocol):
    """What :meth:`SharingHost.watch` started; ``join`` waits for it to end (bounded)."""

    def join(self, timeout: float | None = None) -> None: ...


class SharingHost(Protocol):
    """Everything :class:`~actors.sharing.Sharing` asks of the world."""

    def unsupported_reason(self, database: str) -> str | None:
        """Why this process can neither own nor follow ``database`` (None: it can)."""

    def lock(self, database: str) -> Lock:
        """The owner lock of ``database`` (not yet claimed)."""

    def read_owner(self, database: str) -> OwnerInfo | None:
        """The owner last published for ``database`` (maybe gone since)."""

    def connect(self, info: OwnerInfo, *, on_broken: Callable[[], None] | None = None) -> Link:
        """A link to the owner ``info`` names; OSError when nobody listens there.

        ``on_broken`` is called once when the link breaks or the owner closes it."""

    def serve(self, facade: object, database: str) -> tuple[Service, OwnerInfo]:
        """Serve ``facade`` to followers; the service and what to publish."""

    def watch(self, name: str, loop: Callable[[], None], tick: Callable[[], bool]) -> Watcher:
        """Keep the follower's part current: the OS runs ``loop`` on a thread; a
        simulation, which runs no loops, calls ``tick`` (one pass of ``loop``)
        every ``actors.sharing.POLL`` seconds of its clock until it returns False."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def new_future(self) -> Future[Any]:
        """A future a caller of this world may wait on with ``result(timeout)``."""


class OSHost:
    """The real world: ``flock``, Unix sockets in the private runtime dir, a thread."""

    def __repr__(self) -> str:
        return "<OSHost>"

    def unsupported_reason(self, database: str) -> str | None:
        reason = unsupported_reason(database)
        if reason is None:
            try:
                ensure_private_dir(runtime_dir())
            except OSError as exc:
                reason = f"no private socket directory: {exc}"
        return reason

    def lock(self, database: str) -> OwnerLock:
        return OwnerLock(database)

    def read_owner(self, database: str) -> OwnerInfo | None:
        return read_owner(database)

    def connect(
        self, info: OwnerInfo, *, on_broken: Callable[[], None] | None = None
    ) -> OwnerProxy:
        return OwnerProxy(info.socket, default_timeout=0, on_broken=on_broken)

    def serve(self, facade: object, database: str) -> tuple[OwnerService, OwnerInfo]:
        path = socket_path_for(database)
        return OwnerService(facade, path), OwnerInfo(pid=os.getpid(), socket=str(path))

    def watch(
        self, name: str, loop: Callable[[], None], tick: Callable[[], bool]
    ) -> threading.Thread:
        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        return thread

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def new_future(self) -> Future[Any]:
        return Future()


OS_HOST: Final = OSHost()
