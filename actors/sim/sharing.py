"""Processes sharing one file in a simulated world: the owner lock, the link, the threads.

The rules are the production code's: :class:`~actors.sharing.Sharing` (parking,
repeating what is safe to repeat, ``not_begun``, taking over),
:class:`~actors.owner_service.OwnerService` (answering on the owner's facade)
and :class:`~actors.system.MemorySystem` (the follower's facade). Only the
world under them is simulated, through the seam of :mod:`actors.sharing_host`:

- :class:`SimProcess` is one process's host (``Config(sharing_host=...)``).
  Its watcher ticks, the owner's workers and the owner service's looks at
  unanswered calls are simulated threads of the process
  (:meth:`~actors.sim.runtime.SimRuntime.thread`); its clock is the world's.
  The owner answers a follower's one-request call from the actor's reply
  callback, as in production: the world's notifying futures call back on the
  answering actor's step.
- The owner lock of a file is granted to one process at a time; ``release``
  or the process's death frees it. What the owner published stays after a
  kill, as the lock file does after ``kill -9``; after a clean release it is
  gone, as the lock file is.
- The link: every frame goes through JSON, as on the socket, and is
  delivered by the scheduler, in order in each direction (a stream), at a
  moment the seed decides. When the owner is killed, the replies it had
  already written still arrive (they were in the socket's buffer), then the
  end of the stream: whatever the follower had not had an answer to fails
  with :class:`~actors.errors.OwnerGone`. A clean close sends the
  ``closing`` frame first, as :class:`~actors.owner_link.LinkServer` does.
- :meth:`SimProcess.kill` is ``kill -9``: the process's actors
  (:meth:`~actors.sim.runtime.SimRuntime.kill`), its threads, its lock, its
  listener and its SQLite connections, at once, with nothing run on the way out.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.errors import OwnerGone
from actors.owner_link import CLOSING, NOT_BEGUN, Message, Reply
from actors.owner_service import OwnerService, look, look_delay
from actors.ownership import OwnerInfo
from actors.sharing import POLL
from actors.sim.sqlite import sqlite_connector

if TYPE_CHECKING:
    from actors.owner_service import AnsweredCall
    from actors.sim.runtime import SimRuntime
    from actors.system import MemorySystem

__all__ = ["SimNetwork", "SimProcess"]

Handler = Callable[[str, Message, Reply], None]


class _WorldFuture(Future[Any]):
    """A thread's future whose blocking waits drive the simulated world."""

    def __init__(self, sim: SimRuntime) -> None:
        super().__init__()
        self._sim = sim

    def result(self, timeout: float | None = None) -> Any:
        if not self._sim.wait_until(self.done, timeout):
            raise FutureTimeout()
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._sim.wait_until(self.done, timeout):
            raise FutureTimeout()
        return super().exception(0)


#: The longest a simulated owner takes from an answer to its frame written: a
#: commit's fsync on a slow disk (``synchronous=FULL``), then the writer's turn.
REPLY_LAG = 0.005


class _Stream:
    """One direction of a connection: frames delivered in order, each by a scheduled thread.

    Each thread delivers the *oldest* frame, so the seed decides when frames
    arrive but never their order (a stream socket's guarantee).
    """

    def __init__(self, sim: SimRuntime, name: str) -> None:
        self._sim = sim
        self._name = name
        self._frames: deque[Callable[[], None]] = deque()

    def send(self, deliver: Callable[[], None]) -> None:
        self._frames.append(deliver)
        self._sim.thread(self._name, self._deliver_oldest)

    def _deliver_oldest(self) -> None:
        self._frames.popleft()()


class _Listener:
    """The owner's socket (as :class:`~actors.owner_link.LinkServer`)."""

    def __init__(self, process: SimProcess, path: Path, handler: Handler) -> None:
        network = process.network
        self.path = path
        self._network = network
        self._handler = handler
        self._process = process
        self._pid = process.pid
        self._lag = process.sim.rng(f"reply-lag.{process.name}")
        self._links: list[_Link] = []
        self._draining = False
        self._dead = False
        network.listeners[str(path)] = self

    @property
    def followers(self) -> int:
        return len(self._links)

    def accept(self, link: _Link) -> None:
        if self._draining or self._dead:
            raise ConnectionRefusedError(f"nobody listens on {self.path}")
        self._links.append(link)

    def receive(self, link: _Link, frame: str) -> None:
        """A request frame arrives (on the owner's connection thread)."""
        if self._dead or link not in self._links:
            return  # a dead process reads nothing
        request = json.loads(frame)
        reply = self._replier(link, request["id"])
        if self._draining:
            reply({NOT_BEGUN: True})  # closing: never begun
            return
        self._handler(request["verb"], request["args"], reply)

    def _replier(self, link: _Link, request_id: int) -> Reply:
        def write(frame: str) -> None:
            if self._dead or link not in self._links:
                return  # killed before writing it, or the follower left
            link.to_follower.send(lambda: link.deliver(frame))

        def reply(message: Message) -> None:
            # Written by a thread of the owner's process, up to REPLY_LAG later (seeded):
            # a simulated COMMIT is instant, a real one's fsync is not, and the answers
            # leave after it and after the batch's last answer (``_Outbox``). A
            # ``kill -9`` in that window loses the answer, not the write: the follower
            # cannot know, which is what its rule for repeating calls is about.
            frame = json.dumps({**message, "id": request_id})
            process = self._process
            process.sim.thread(
                f"{process.name}:reply",
                functools.partial(write, frame),
                group=process.name,
                delay=self._lag.uniform(0.0, REPLY_LAG),
            )

        return reply

    def leave(self, link: _Link) -> None:
        if link in self._links:
            self._links.remove(link)

    def _stop_listening(self) -> None:
        if self._network.listeners.get(str(self.path)) is self:
            del self._network.listeners[str(self.path)]

    def drain(self) -> None:
        self._draining = True
        self._stop_listening()

    def close(self) -> None:
        """Clean close: the ``closing`` frame (not begun, the rest), then the end of stream."""
        self.drain()
        links, self._links = self._links, []
        closing = json.dumps({"id": 0, CLOSING: True})
        for link in links:
            link.to_follower.send(functools.partial(link.deliver, closing))
            link.to_follower.send(functools.partial(link.end, "the owner process closed"))

    def kill(self) -> None:
        """``kill -9``: no more frames written; what was written arrives, then the end."""
        self._dead = True
        self._stop_listening()
        links, self._links = self._links, []
        reason = f"the owner process (pid {self._pid}) of {self.path} died"
        for link in links:
            link.to_follower.send(functools.partial(link.end, reason))


class _Link:
    """A follower's connection to the owner (as :class:`~actors.owner_link.LinkClient`)."""

    def __init__(
        self,
        process: SimProcess,
        listener: _Listener,
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        sim = process.sim
        self._process = process
        self._listener = listener
        self._on_broken = on_broken
        self._pending: dict[int, Future[Message]] = {}
        self._ids = itertools.count(1)
        self._broken: str | None = None
        name = f"{process.name}<->{listener.path.name}"
        self.to_owner = _Stream(sim, f"link:{name}:request")
        self.to_follower = _Stream(sim, f"link:{name}:reply")
        listener.accept(self)

    def __repr__(self) -> str:
        return f"<SimLink {self._process.name} broken={self._broken is not None}>"

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def submit(self, verb: str, args: Message, *, waited: bool = False) -> Future[Message]:
        future: Future[Message] = self._process.new_future()
        if self._broken is not None:
            future.set_result({NOT_BEGUN: True})  # never sent
            return future
        request_id = next(self._ids)
        self._pending[request_id] = future
        frame = json.dumps({"id": request_id, "verb": verb, "args": args})
        self.to_owner.send(lambda: self._listener.receive(self, frame))
        return future

    def wait(self, future: Future[Message], timeout: float) -> Message | None:
        """Nothing to read here: the scheduler delivers each frame (``deliver``)."""
        return None

    def deliver(self, frame: str) -> None:
        """A reply frame arrives (on the follower's reader thread)."""
        message: Message = json.loads(frame)
        if message.get(CLOSING):
            self._break("the owner process closed")
            pending, self._pending = self._pending, {}
            for waiting in pending.values():
                waiting.set_result({NOT_BEGUN: True})
            return
        future = self._pending.pop(message["id"], None)
        if future is not None:
            future.set_result(message)

    def end(self, reason: str) -> None:
        """The end of the stream: what is still waiting cannot be known, so OwnerGone."""
        self._break(reason)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(OwnerGone(reason))

    def _break(self, reason: str) -> None:
        """Broken from now on; the first time, ``on_broken`` is told (as LinkClient does)."""
        if self._broken is None:
            self._broken = reason
            if self._on_broken is not None:
                self._on_broken()

    def close(self) -> None:
        self._listener.leave(self)
        self.end("the link to the owner was closed")


class _Workers(Executor):
    """The owner's worker pool: each call on a simulated thread of its process."""

    def __init__(self, process: SimProcess) -> None:
        self._process = process
        self._running = 0
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shut:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[Any] = Future()
        self._running += 1

        def work() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            finally:
                self._running -= 1

        self._process.sim.thread(
            f"{self._process.name}:owner-service", work, group=self._process.name
        )
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shut = True
        if wait:
            self._process.sim.wait_until(lambda: self._running == 0, None)


class _ServiceWatch:
    """The owner service's watch: each look a simulated thread of the owner's process,
    at the moment the production watch looks (give or take its 50 ms ticks)."""

    def __init__(self, process: SimProcess) -> None:
        self._process = process
        self._closed = False

    def add(self, call: AnsweredCall) -> None:
        def once() -> None:
            if not self._closed and not look(call):
                self.add(call)

        process = self._process
        process.sim.thread(
            f"{process.name}:owner-service-watch",
            once,
            group=process.name,
            delay=look_delay(call),
        )

    def discard(self, call: AnsweredCall) -> None:
        """Nothing to drop: the look already scheduled finds the call answered."""

    def wait_until(self, done: Callable[[], bool]) -> None:
        self._process.sim.wait_until(done, None)

    def close(self) -> None:
        self._closed = True


class _NoThread:
    """A watcher made of scheduled ticks: nothing to join."""

    def join(self, timeout: float | None = None) -> None:
        return None


class _Lock:
    """One process's hold on one file's owner lock."""

    def __init__(self, process: SimProcess, database: str) -> None:
        self._process = process
        self._network = process.network
        self._database = database
        self._closed = False

    def try_claim(self) -> bool:
        if self._closed or self._process.dead:
            return False
        holder = self._network.holders.setdefault(self._database, self._process)
        return holder is self._process

    def publish(self, info: OwnerInfo) -> None:
        if self._network.holders.get(self._database) is not self._process:
            raise RuntimeError("only the owner publishes")
        self._network.published[self._database] = info

    def release(self) -> None:
        self._closed = True
        if self._network.holders.get(self._database) is self._process:
            del self._network.holders[self._database]
            # A clean exit removes the lock file, and what it said.
            self._network.published.pop(self._database, None)


class SimNetwork:
    """The files' owner locks and the listening sockets of one simulated world."""

    def __init__(self, sim: SimRuntime) -> None:
        self.sim = sim
        self.holders: dict[str, SimProcess] = {}
        self.published: dict[str, OwnerInfo] = {}
        self.listeners: dict[str, _Listener] = {}
        self._pids = itertools.count(1001)

    def process(self, name: str) -> SimProcess:
        """A new process of this world (its pid from a counter: the trace stays stable)."""
        return SimProcess(self, name, next(self._pids))


class SimProcess:
    """One simulated process: the :class:`~actors.sharing_host.SharingHost` of its MemorySystem."""

    def __init__(self, network: SimNetwork, name: str, pid: int) -> None:
        self.network = network
        self.sim = network.sim
        self.name = name
        self.pid = pid
        self.dead = False
        #: The MemorySystem this process opened (set by whoever opens it).
        self.system: MemorySystem | None = None
        self._connections: list[sqlite3.Connection] = []
        self._listeners: list[_Listener] = []
        self._links: list[_Link] = []
        self._connect = sqlite_connector(self.sim)

    def __repr__(self) -> str:
        return f"<SimProcess {self.name} pid={self.pid}{' dead' if self.dead else ''}>"

    def connector(self, path: str) -> sqlite3.Connection:
        """``Config.connect`` for this process: the world's SQLite, closed when it dies."""
        conn: sqlite3.Connection = self._connect(path)
        self._connections.append(conn)
        return conn

    # -- SharingHost ----------------------------------------------------------------

    def unsupported_reason(self, database: str) -> str | None:
        return None

    def lock(self, database: str) -> _Lock:
        return _Lock(self, database)

    def read_owner(self, database: str) -> OwnerInfo | None:
        return self.network.published.get(database)

    def connect(self, info: OwnerInfo, *, on_broken: Callable[[], None] | None = None) -> _Link:
        listener = self.network.listeners.get(info.socket)
        if listener is None:
            raise ConnectionRefusedError(f"nobody listens on {info.socket}")
        link = _Link(self, listener, on_broken)
        self._links.append(link)
        return link

    def serve(self, facade: object, database: str) -> tuple[OwnerService, OwnerInfo]:
        path = f"{database}.sock"

        def listen(where: Path, handler: Handler) -> _Listener:
            listener = _Listener(self, where, handler)
            self._listeners.append(listener)
            return listener

        service = OwnerService(
            facade, path, listen=listen, pool=_Workers(self), watch=_ServiceWatch(self)
        )
        return service, OwnerInfo(pid=self.pid, socket=str(Path(path)))

    def watch(self, name: str, loop: Callable[[], None], tick: Callable[[], bool]) -> _NoThread:
        # Named by the process, not ``name`` (the file's path): traces of one seed
        # stay identical wherever the scratch folder is.
        thread = f"{self.name}:watcher"

        def once() -> None:
            if tick():
                self.sim.thread(thread, once, group=self.name, delay=POLL)

        self.sim.thread(thread, once, group=self.name, delay=POLL)
        return _NoThread()

    def monotonic(self) -> float:
        return self.sim.monotonic()

    def sleep(self, seconds: float) -> None:
        self.sim.sleep(seconds)

    def new_future(self) -> Future[Any]:
        return _WorldFuture(self.sim)

    # -- death ----------------------------------------------------------------------

    def kill(self) -> None:
        """``kill -9``: actors, threads, lock, listener and connections go at once."""
        self.dead = True
        self.sim.kill_group(self.name)
        system = self.system
        if system is not None:
            refs = [cell.ref for cell in system._cells.values() if cell.ref is not None]
            if system._supervisor is not None:
                refs.append(system._supervisor)
            self.sim.kill(refs)
        for database, holder in list(self.network.holders.items()):
            if holder is self:
                del self.network.holders[database]
        for listener in self._listeners:
            listener.kill()
        for link in self._links:
            link.close()  # its end of every connection closes with it
        for conn in self._connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
