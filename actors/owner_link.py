"""The local link between a file's owner process and its followers, and the follower's proxy.

A Unix stream socket carrying frames: a 4-byte big-endian length, then that
many bytes of UTF-8 JSON, one object per frame. A follower sends
``{"id": n, "verb": ..., "args": {...}}``; the owner answers each with
``{"id": n, ...}`` whenever it is done, in any order, so one connection
carries many requests in flight.

Only the same OS user gets in: the socket sits in a 0700 directory
(:func:`actors.ownership.ensure_private_dir`), is itself 0600, and each side
checks the other's uid with ``SO_PEERCRED`` where the platform has it. A
frame that is too long, not JSON, or not an object closes that one
connection (with a log line) and touches nothing else.

:class:`OwnerProxy` is a follower's end of a facade call: the verb and its
arguments out, the owner's record or error back (:mod:`actors.owner_protocol`).

Threads, not actors: these block in ``recv`` and ``accept``, which no actor
may do. They only move frames; the owner's handler answers through the
actors' futures, never on these threads' time. An answer is written by
whoever has it, often the answering actor's own thread: so a reply never
waits for a follower to read (:class:`_Outbox`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Final, TypeAlias

from actors.errors import AskTimeout, OwnerGone
from actors.owner_protocol import decode_error, decode_result
from actors.runtime import after_notifications

__all__ = [
    "CLOSING",
    "MAX_REPLY_BYTES",
    "MAX_REQUEST_BYTES",
    "NOT_BEGUN",
    "FrameError",
    "FrameReader",
    "LinkClient",
    "LinkServer",
    "OwnerProxy",
    "Reply",
    "json_text",
    "json_value",
    "read_frame",
]

logger = logging.getLogger(__name__)

_HEADER: Final = struct.Struct(">I")
#: The largest request is a session append (1000 items of 64 KiB); a larger
#: frame is a broken or hostile peer.
MAX_REQUEST_BYTES: Final = 80 << 20
#: Replies come from the owner, the same user's process: bounded only against
#: a corrupt length (a whole session log may be read at once).
MAX_REPLY_BYTES: Final = 1 << 30
#: The answer to a request the owner received while closing and never began:
#: safe to repeat with the next owner, whatever the verb.
NOT_BEGUN: Final = "not_begun"
#: The owner's last frame on a clean close (id 0): every request it has not
#: answered was never begun.
CLOSING: Final = "closing"
#: Reply bytes a follower may leave unread before the owner cuts it off: twice
#: the largest answer (a whole session log) and then some.
MAX_BACKLOG: Final = 256 << 20
#: How long a clean close waits for a follower to read its last replies and the
#: ``closing`` frame before it drops the connection anyway.
_CLOSE_FLUSH: Final = 2.0
#: Bytes a reader asks the socket for at once (a frame's header and a small body).
_CHUNK: Final = 64 << 10
#: Sends that never wait (None where the platform has no such flag: queue instead).
_DONT_WAIT: Final = getattr(socket, "MSG_DONTWAIT", None)
#: A poll's events for the end of the stream (POLLRDHUP where the platform has it).
_HANGUP: Final = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
#: What the follower's link thread polls an idle link for: the hang-up alone where
#: the platform reports a peer's half-close (Linux's POLLRDHUP); elsewhere input
#: too, as the end of the stream reads as input (a caller's answer then wakes it).
_IDLE: Final = _HANGUP if hasattr(select, "POLLRDHUP") else _HANGUP | select.POLLIN
#: How long a waiting caller's read sleeps at most before it looks at its deadline
#: again (``SO_RCVTIMEO``, Linux's ``struct timeval``): it then waits in the read
#: itself, one system call, where ``poll`` and then ``recv`` took two. None where
#: the layout is not known to be two native longs: ``poll`` first, as before.
_READ_SLICE: Final = struct.pack("@ll", 0, 50_000) if sys.platform == "linux" else None
#: How much longer than the call's own timeout a follower waits for the owner's
#: answer: the owner answers a timeout itself (AskTimeout), which says more.
_TRANSIT_GRACE: Final = 2.0

Message: TypeAlias = dict[str, Any]
#: How the owner's handler answers one request: call it once, from any thread.
Reply: TypeAlias = Callable[[Message], None]


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class FrameReader:
    """The frames arriving on one socket, read with one ``recv`` each when they are small.

    A frame's header and body usually arrive together: reading up to
    :data:`_CHUNK` bytes at once takes both in one system call (and one
    release of the GIL) where reading the header alone took two.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def exactly(self, size: int) -> bytes | None:
        """``size`` bytes, or None at a clean end of stream before the first byte."""
        buffer = self._buffer
        while len(buffer) < size:
            chunk = self._sock.recv(max(_CHUNK, size - len(buffer)))
            if not chunk:
                if buffer:
                    raise FrameError(
                        f"the stream ended inside a frame ({len(buffer)} of {size} bytes)"
                    )
                return None
            buffer += chunk
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def next_body(self, limit: int) -> bytes | memoryview | None:
        """The next frame's body (its size checked against ``limit``), or None when the
        peer closed between frames.

        A read that brings exactly one whole frame (a follower's request, nearly
        always) gives its body as a view of what was read: no copy into the
        buffer and out again.
        """
        if not self._buffer:
            chunk = self._sock.recv(_CHUNK)
            if not chunk:
                return None
            whole = _whole_frame(chunk, limit)
            if whole is not None:
                return whole
            self._buffer += chunk
        header = self.exactly(_HEADER.size)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        _check_size(size, limit)
        body = self.exactly(size)
        if body is None:
            raise FrameError("the stream ended after a frame header")
        return body


def read_frame(frames: FrameReader, limit: int) -> Message | None:
    """The next frame's object, or None when the peer closed between frames."""
    body = frames.next_body(limit)
    return None if body is None else _message(body)


def _whole_frame(data: bytes, limit: int) -> memoryview | None:
    """The body of the frame ``data`` holds exactly, as a view of it (no copy), or None
    when ``data`` is part of a frame or more than one; FrameError if it says it is
    larger than ``limit``."""
    if len(data) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(data)
    _check_size(size, limit)
    if len(data) != _HEADER.size + size:
        return None
    return memoryview(data)[_HEADER.size :]


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise FrameError(f"a frame of {size} bytes exceeds the limit of {limit}")


def _message(body: bytes | memoryview) -> Message:
    """A frame's body as its object, or FrameError."""
    try:
        message = json_value(str(body, "utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the decoder goes (no request of ours is);
        # escaping, it ended the connection's thread with a traceback, not this warning.
        raise FrameError(f"a frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("id"), int):
        raise FrameError("a frame is not an object with an integer id")
    return message


class _FrameBuffer:
    """Bytes received and not yet whole frames: whoever reads the socket feeds them here.

    The follower's reads never block on a partial frame (see
    :meth:`LinkClient.wait`), so frames are cut from what has arrived, not
    read to their length as :class:`FrameReader` does.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()

    def wanted(self) -> int:
        """Bytes to ask the socket for: the rest of a large frame at once, else a chunk."""
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return _CHUNK
        size: int = _HEADER.unpack_from(buffer)[0]
        return max(_CHUNK, _HEADER.size + size - len(buffer))

    def feed(self, data: bytes) -> list[Message]:
        """The frames ``data`` completes, in order (FrameError for a malformed one)."""
        buffer = self._buffer
        if not buffer:
            whole = _whole_frame(data, self._limit)
            if whole is not None:  # one whole frame, the usual read: no copy
                return [_message(whole)]
        buffer += data
        frames = []
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            _check_size(size, self._limit)
            end = _HEADER.size + size
            if len(buffer) < end:
                break
            frames.append(_message(bytes(buffer[_HEADER.size : end])))
            del buffer[:end]
        return frames


def _not_json(value: object) -> object:
    """The encoder's answer to a value JSON has no form for (``JSONEncoder.default``'s)."""
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


#: One encoder for every frame: ``json.dumps`` with options other than the defaults
#: builds a new encoder per call, a fifth of what encoding a ``get``'s answer cost.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: The C encoder under ``_ENCODER``, made once: ``JSONEncoder.encode`` makes one per call,
#: with a dict that checks for cycles (a frame is built from records and arguments
#: already checked, never cyclic; one would raise RecursionError): a ``get``'s answer
#: 11.7 to 5.0 µs (hot), the same text. None where ``json`` has no C speedups.
#: (``c_make_encoder`` and ``scan_once`` are what ``json`` itself calls; typeshed
#: does not list them, hence the lookups by name.)
_MAKE_C_ENCODER: Final[Callable[..., Callable[[Any, int], Any]] | None] = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODE: Final = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
)
#: The C scanner under ``json.loads``, called directly (see :func:`json_value`).
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def json_text(message: Message) -> str:
    """``message`` as compact JSON text, as ``_ENCODER.encode`` writes it."""
    if _C_ENCODE is None:
        return _ENCODER.encode(message)
    return "".join(_C_ENCODE(message, 0))


def json_value(text: str) -> Any:
    """``json.loads(text)``: a frame as the encoder wrote it (no space around the value)
    is scanned directly, skipping ``loads``' checks around it (6.2 to 3.8 µs for a
    ``get``'s answer, hot); anything else goes to ``loads``, which decides."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # not a value at 0 (space first, or none): its error
    if end != len(text):
        return json.loads(text)  # space or more after it
    return value


def encode_frame(message: Message) -> bytes:
    """``message`` as one frame's bytes: the header, then the JSON."""
    body = json_text(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body


class _Outbox:
    """The frames bound for one follower, written without ever making the writer wait.

    Replies are sent from whichever thread has the answer: the actor that
    answered, a worker, the connection's reader. None of them may wait for a
    follower to read (an actor held up by a slow follower would hold up every
    caller). So :meth:`send` writes what the socket's buffer takes at once
    (``MSG_DONTWAIT``, under a short lock that keeps frames whole and in
    order); the rest waits in a queue, which a writer thread of this
    connection, started the first time it is needed, sends with blocking
    writes. While the queue holds anything, later frames join it behind.
    The answers of one group commit go out in one write (see :meth:`send`).
    A follower that leaves more than :data:`MAX_BACKLOG` bytes unread is cut
    off: its connection is shut down, and its reader ends it as for any
    follower that went away.
    """

    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self._name = name
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        #: Frames handed over and not yet written or queued (see :meth:`send`).
        self._gathered: list[bytes] = []
        self._gathering = False
        #: Unsent bytes, oldest first; the head may be partly sent (a memoryview).
        self._queue: deque[bytes | memoryview] = deque()
        self._backlog = 0
        self._writer: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<_Outbox {self._name} backlog={self._backlog} closed={self._closed}>"

    def send(self, frame: bytes) -> None:
        """Send ``frame`` now if the socket takes it, else queue it (any thread; never waits).

        Inside a group commit's answers (:func:`~actors.runtime.notifications_held`)
        the frames of the whole batch go out together, in one write after its
        last answer, instead of one system call each.
        """
        with self._lock:
            if self._closed:
                return  # gone: the follower's end fails its calls itself
            self._gathered.append(frame)
            if self._gathering:
                return  # the write on its way takes this one too
            self._gathering = True
        after_notifications(self._write_gathered)

    def _write_gathered(self) -> None:
        with self._lock:
            self._gathering = False
            frames, self._gathered = self._gathered, []
            if self._closed or not frames:
                return
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            if not self._queue and _DONT_WAIT is not None:
                try:
                    sent = self._sock.send(data, _DONT_WAIT)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close_locked()  # the reader sees the end too
                    return
                if sent == len(data):
                    self._ready.notify_all()  # a closing outbox may wait for this
                    return
                self._queue.append(memoryview(data)[sent:])
                self._backlog += len(data) - sent
            else:
                self._queue.append(data)
                self._backlog += len(data)
            if self._backlog > MAX_BACKLOG:
                logger.warning(
                    "cut off a follower on %s: %d bytes of replies unread",
                    self._name,
                    self._backlog,
                )
                self._close_locked()
                return
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="owner-link-writer", daemon=True
                )
                self._writer.start()
            self._ready.notify_all()  # the writer (a closing flush may wait too)

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                head = self._queue[0]
            try:
                sent = self._sock.send(head)  # waits for the follower: outside the lock
            except OSError:
                with self._lock:
                    self._close_locked()
                return
            with self._lock:
                if self._closed:
                    return
                self._backlog -= sent
                if sent == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = memoryview(head)[sent:]
                if self._sent_all():
                    self._ready.notify_all()  # a closing outbox may wait for this

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued frame to be sent; whether it was."""
        with self._lock:
            return self._ready.wait_for(self._sent_all, timeout) and not self._closed

    def _sent_all(self) -> bool:
        return self._closed or not (self._queue or self._gathered)

    def close(self) -> None:
        """Drop what is unsent and shut the connection down (both ways)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._gathered.clear()
        self._backlog = 0
        self._ready.notify_all()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (None where the platform cannot tell)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class LinkServer:
    """The owner's listener: accepts followers and hands each request to ``handler``.

    ``handler(verb, args, reply)`` must return promptly and call ``reply``
    once, later, from any thread (typically a future's done-callback).
    """

    def __init__(
        self, path: str | os.PathLike[str], handler: Callable[[str, Message, Reply], None]
    ) -> None:
        self.path = Path(path)
        self._handler = handler
        self._lock = threading.Lock()
        #: Each follower's connection and its outgoing frames.
        self._connections: dict[socket.socket, _Outbox] = {}
        self._closed = False
        self._draining = False
        # The caller holds the file's owner lock, so a socket file here is a
        # dead owner's: nobody else can be listening on it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"owner-link:{self.path.name}", daemon=True
        )
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"<LinkServer {self.path} followers={self.followers}>"

    @property
    def followers(self) -> int:
        """Connected followers (connections, strictly: one per follower process)."""
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            uid = peer_uid(conn)
            if uid is not None and uid != os.getuid():
                logger.warning("refused a connection from uid %d on %s", uid, self.path)
                conn.close()
                continue
            with self._lock:
                closed = self._closed
                if not closed:
                    self._connections[conn] = _Outbox(conn, str(self.path))
            if closed:
                _turn_away(conn)
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="owner-link-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            outbox = self._connections[conn]

        def replier(request_id: int) -> Reply:
            def reply(message: Message) -> None:
                outbox.send(encode_frame({**message, "id": request_id}))

            return reply

        frames = FrameReader(conn)
        try:
            while True:
                request = read_frame(frames, MAX_REQUEST_BYTES)
                if request is None:
                    return
                verb, args = request.get("verb"), request.get("args", {})
                if not isinstance(verb, str) or not isinstance(args, dict):
                    raise FrameError("a request needs a string verb and an object of args")
                if self._draining:
                    # Closing: never begun, so the follower may repeat it elsewhere.
                    replier(request["id"])({NOT_BEGUN: True})
                    continue
                self._handler(verb, args, replier(request["id"]))
        except FrameError as exc:
            logger.warning("closed a follower's connection on %s: %s", self.path, exc)
        except OSError:
            pass  # the follower went away
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            outbox.close()
            conn.close()

    def drain(self) -> None:
        """Stop starting requests (each is answered ``not_begun``) and taking followers;
        replies to those started still go out."""
        self._draining = True
        # Unlinked, not closed: no follower can connect from now on, and the ones
        # whose connection waits in the listener's backlog are told the owner is
        # closing (:meth:`close`). Closing the listener would reset them, which a
        # follower cannot tell from an owner killed after reading its request.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        """Tell every follower this owner is closing, then drop their connections.

        Call it once every request the handler began is answered (the
        OwnerService drains its workers first): after :meth:`drain` no request
        is begun, so the ``closing`` frame tells a follower that whatever it
        has not had an answer to was never begun (a ``kill -9`` sends no such
        frame, and then nothing is known).
        """
        self.drain()
        with self._lock:
            self._closed = True
            connections = list(self._connections.items())
        closing = encode_frame({"id": 0, CLOSING: True})
        for _conn, outbox in connections:
            outbox.send(closing)
        deadline = time.monotonic() + _CLOSE_FLUSH
        for _conn, outbox in connections:
            # A follower that reads nothing sees the end without the closing frame:
            # what it has no answer to fails as OwnerGone (repeated if safe).
            outbox.flush(max(0.0, deadline - time.monotonic()))
            outbox.close()
        # The backlog holds only connections made before drain unlinked the path.
        try:
            self._listener.setblocking(False)
            while True:
                conn, _ = self._listener.accept()
                _turn_away(conn)
        except OSError:
            pass  # empty (the accept loop turns away what it takes), or closed before
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop
        self._listener.close()


def _turn_away(conn: socket.socket) -> None:
    """Close a connection accepted after the owner said goodbye, saying so first: the
    follower then knows its request, if it sent one, was never begun."""
    with contextlib.suppress(OSError):
        conn.settimeout(_CLOSE_FLUSH)
        conn.sendall(encode_frame({"id": 0, CLOSING: True}))
    conn.close()


class _Pending(Future[Message]):
    """A request's future that knows its id, so that its own waiter can take its answer
    as read (:meth:`LinkClient.wait`)."""

    request_id = 0


class LinkClient:
    """A follower's connection to the owner: ``submit`` a request, get a Future of the reply.

    Whoever waits for an answer reads it: a caller blocked on its own call
    reads the socket itself (:meth:`wait`), so its answer wakes it directly,
    not a reader thread that then wakes it (one thread wake-up less per call,
    a tenth of a follower's round trip). One reader at a time holds the
    right to read (``_reading``); the frames it reads for others are handed
    to their futures. A watch thread reads when no caller does: answers to
    futures nobody reads for (an asyncio caller's, a parked call's), and the
    end of the stream of an idle link, which it notices by polling for the
    hang-up only, so a caller's answer never wakes it.

    When the connection breaks, every request still waiting fails with
    :class:`~actors.errors.OwnerGone`; whether the owner applied it first
    cannot be known, which is why the caller retries only what is safe to
    repeat. A broken client stays broken: make a new one for the next owner.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        connect_timeout: float = 1.0,
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        #: Called once the link breaks or the owner says it is closing (on the thread
        #: that read it).
        self._on_broken = on_broken
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        if _READ_SLICE is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _READ_SLICE)
        uid = peer_uid(self._sock)
        if uid is not None and uid != os.getuid():
            self._sock.close()
            raise PermissionError(f"the socket {self.path} belongs to uid {uid}, not this user")
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        #: The right to read the socket (a waiting caller's, or the watch thread's).
        self._reading = threading.Lock()
        self._frames = _FrameBuffer(MAX_REPLY_BYTES)
        #: Used by the holder of ``_reading`` only.
        self._read_poll = select.poll()
        self._read_poll.register(self._sock, select.POLLIN | _HANGUP)
        self._pending: dict[int, Future[Message]] = {}
        self._ids = itertools.count(1)
        self._broken: str | None = None
        #: The stream ended (or was closed here): nothing more will be read.
        self._ended = False
        #: Whether the watch thread waits for answers too (else only for the hang-up).
        self._listening = False
        #: Written to make the watch thread look again (see ``_watch``).
        self._nudge_in, self._nudge_out = os.pipe()
        os.set_blocking(self._nudge_out, False)
        self._watcher = threading.Thread(target=self._watch, name="owner-link-client", daemon=True)
        self._watcher.start()

    def __repr__(self) -> str:
        return f"<LinkClient {self.path} broken={self._broken is not None}>"

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def submit(self, verb: str, args: Message, *, waited: bool = False) -> Future[Message]:
        """Send one request; the Future holds the owner's reply.

        ``waited``: the caller will :meth:`wait` for it, reading the answer
        itself; else the watch thread is told to read it.
        """
        future = _Pending()
        with self._lock:
            if self._broken is not None:
                # Never sent, so certainly never begun: any verb may go elsewhere.
                future.set_result({NOT_BEGUN: True})
                return future
            request_id = future.request_id = next(self._ids)
            self._pending[request_id] = future
            nudge = not waited and not self._listening
        if nudge:
            self._nudge()
        try:
            frame = encode_frame({"id": request_id, "verb": verb, "args": args})
        except BaseException:
            # Arguments JSON cannot carry: never sent, so nothing may wait for an answer.
            with self._lock:
                self._pending.pop(request_id, None)
            raise
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError:
            # Not (wholly) sent, so never begun. The others are settled by whoever
            # reads next: the owner's closing frame, or the end of the stream.
            with self._lock:
                mine = self._pending.pop(request_id, None)
            if mine is not None:
                mine.set_result({NOT_BEGUN: True})
        return future

    def wait(self, future: Future[Message], timeout: float) -> Message | None:
        """Wait up to ``timeout`` seconds for ``future`` (from :meth:`submit`), reading
        the socket on this thread while nobody else does.

        The answer, when this thread read it: taken as read, ``future`` left
        unset (nobody else waits on it; setting it and reading it back cost a
        follower's call five lock round trips). None otherwise: ``future``
        holds the answer (another thread read it, or the link broke), or it
        returned early, ``future`` not done, when another thread reads (it
        hands this answer over, so wait on ``future`` itself then) or the time
        ran out.
        """
        own = future.request_id if isinstance(future, _Pending) else 0
        # Still waiting for its answer, read as: still pending. Whoever takes an answer
        # (or fails it) pops it first, under the lock, so "not pending" may come a moment
        # before ``future`` is set, never after: the caller then waits on ``future``.
        # (``future.done()`` enters the future's condition: four Python calls a look.)
        if not (own in self._pending if own else not future.done()):
            return None
        if not self._reading.acquire(blocking=False):
            return None
        try:
            deadline = time.monotonic() + timeout
            while (own in self._pending if own else not future.done()) and not self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if _READ_SLICE is not None:
                    # Sleeps in the read until something arrives or the slice ends.
                    answer = self._read_ready(own, wait=True)
                # Milliseconds, rounded up: poll(0) would return at once, again and again.
                elif self._read_poll.poll(int(left * 1000) + 1):
                    answer = self._read_ready(own)
                else:
                    continue
                if answer is not None:
                    return answer
            return None
        finally:
            self._reading.release()
            self._after_reading()

    def _after_reading(self) -> None:
        """A reader stopped: if answers are still due, the watch thread reads them."""
        if not self._pending:
            # Read without the lock: a request added after this look was added after
            # the right to read was given back, so its caller reads, or nudges, itself.
            return
        with self._lock:
            nudge = bool(self._pending) and not self._listening and not self._ended
        if nudge:
            self._nudge()

    def _nudge(self) -> None:
        with self._lock:  # never after the watch thread closed the pipe (a reused fd)
            if self._nudge_out >= 0:
                with contextlib.suppress(BlockingIOError):  # full: it will look anyway
                    os.write(self._nudge_out, b"\0")

    def _watch(self) -> None:
        """Read what no caller reads for, and notice the end of the stream of an idle link.

        Polls for answers only while some are due and no caller reads; else
        for the hang-up alone, so a caller reading its own answer does not
        wake this thread as well. Whatever changes that is followed by a
        nudge (the pipe), which makes it poll afresh.
        """
        watch = select.poll()
        watch.register(self._nudge_in, select.POLLIN)
        try:
            while not self._ended:
                with self._lock:
                    self._listening = bool(self._pending) and not self._reading.locked()
                    events = (select.POLLIN | _HANGUP) if self._listening else _IDLE
                watch.register(self._sock, events)
                ready = dict(watch.poll())
                if self._nudge_in in ready:
                    os.read(self._nudge_in, 4096)
                if self._sock.fileno() in ready:
                    # Waits for a caller reading meanwhile: it reads to its own answer.
                    with self._reading:
                        self._read_ready()
        finally:
            with self._reading:
                self._sock.close()  # a broken link is never used again
            with self._lock:
                os.close(self._nudge_in)
                os.close(self._nudge_out)
                self._nudge_out = -1

    def _read_ready(self, own: int = 0, *, wait: bool = False) -> Message | None:
        """Read what has arrived without waiting (``wait``: or what arrives within
        :data:`_READ_SLICE`); hand each answer over (holding ``_reading``), except the
        answer to request ``own``, which is returned (None: not among them)."""
        if self._ended:
            return None
        try:
            chunk = self._sock.recv(self._frames.wanted(), 0 if wait else _DONT_WAIT or 0)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._end(f"the link to the owner process of {self.path} failed: {exc}")
            return None
        if not chunk:
            self._end(f"the owner process of {self.path} closed the connection")
            return None
        try:
            messages = self._frames.feed(chunk)
        except FrameError as exc:
            self._end(f"the link to the owner process of {self.path} failed: {exc}")
            return None
        answer = None
        for message in messages:
            if message["id"] == own and own and self._take(own):
                answer = message
            else:
                self._deliver(message)
        return answer

    def _take(self, request_id: int) -> bool:
        """Whether request ``request_id`` was still waiting (it is not, from now on)."""
        with self._lock:
            return self._pending.pop(request_id, None) is not None

    def _deliver(self, message: Message) -> None:
        if message.get(CLOSING):
            self._not_begun()
            self._tell_broken()
            return
        with self._lock:
            future = self._pending.pop(message["id"], None)
        if future is not None:
            future.set_result(message)

    def _tell_broken(self) -> None:
        if self._on_broken is not None:
            self._on_broken()

    def _not_begun(self) -> None:
        """The owner closed cleanly: what it did not answer, it never began."""
        with self._lock:
            self._broken = f"the owner process of {self.path} closed"
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_result({NOT_BEGUN: True})

    def _end(self, reason: str) -> None:
        """Nothing more will be read: what is still waiting fails with ``reason``."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self._broken is None:
                self._broken = reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(OwnerGone(reason))
        self._nudge()  # the watch thread ends
        self._tell_broken()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            # Wakes whoever reads; the watch thread closes the socket once nobody does.
            self._sock.shutdown(socket.SHUT_RDWR)
        self._end(f"the link to {self.path} was closed")


class OwnerProxy(LinkClient):
    """A follower's facade calls, answered by the owner; the records and errors are the owner's.

    The link itself, not a wrapper around one: ``submit``, ``wait`` and
    ``broken`` are on the way of every follower's call, and a wrapper's
    delegation added a Python call to each.
    """

    def __init__(
        self,
        socket_path: str | Path,
        *,
        default_timeout: float,
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(socket_path, on_broken=on_broken)
        self._default_timeout = default_timeout

    def __repr__(self) -> str:
        return f"<OwnerProxy {self.path} broken={self.broken}>"

    def call(self, verb: str, **args: Any) -> Any:
        """Run ``verb`` in the owner and return its answer, or raise its error."""
        timeout = args.get("timeout")
        budget = (self._default_timeout if timeout is None else timeout) + _TRANSIT_GRACE
        deadline = time.monotonic() + budget
        future = self.submit(verb, args, waited=True)
        message = self.wait(future, budget)
        if message is None:
            try:
                message = future.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                raise AskTimeout(
                    f"the owner process did not answer {verb} within {budget:g} s"
                ) from None
        return self.answer(verb, message)

    @staticmethod
    def answer(verb: str, message: Message) -> Any:
        """The record (or error) in the owner's answer to ``verb``."""
        if message.get(NOT_BEGUN):
            raise OwnerGone(f"the owner was closing and did not begin {verb}; repeat it")
        if "error" in message:
            raise decode_error(message["error"])
        return decode_result(verb, message.get("ok"))
