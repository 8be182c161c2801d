"""One owner per database file: the OS lock, the private socket directory, the local link.

Real OS processes hold and lose the lock (``kill -9`` included); real Unix
sockets carry the frames; a real second uid (the machine's ``nobody``; the
suite runs as root in CI) is refused. Wiring the link into the facades comes
next (issue 12); these are its parts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors import Config, MemorySystem, owner_link
from actors.errors import OwnerGone, Unavailable
from actors.owner_link import (
    CLOSING,
    MAX_REQUEST_BYTES,
    NOT_BEGUN,
    FrameReader,
    LinkClient,
    LinkServer,
    OwnerProxy,
    Reply,
    read_frame,
)
from actors.ownership import (
    OwnerInfo,
    OwnerLock,
    ensure_private_dir,
    filesystem_type,
    lock_path_for,
    read_owner,
    socket_path_for,
    unsupported_reason,
)

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")

_HOLDER = """
import sys, time
from actors.ownership import OwnerInfo, OwnerLock
lock = OwnerLock(sys.argv[1])
assert lock.try_claim(), "the holder could not claim"
lock.publish(OwnerInfo(pid=__import__("os").getpid(), socket="/nowhere.sock"))
print("held", flush=True)
if sys.argv[2] == "release":
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
time.sleep(60)
"""


def _start_holder(db: Path, mode: str = "hold") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate(timeout=10)  # waits, and closes the pipes


def test_the_first_process_owns_and_publishes_itself(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    holder = _start_holder(db)
    try:
        other = OwnerLock(db)
        assert not other.try_claim()
        assert read_owner(db) == OwnerInfo(pid=holder.pid, socket="/nowhere.sock")
        assert os.stat(lock_path_for(db)).st_mode & 0o777 == 0o600
        other.release()
    finally:
        _stop(holder)


def test_kill_9_of_the_owner_hands_the_lock_to_a_waiting_follower(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    holder = _start_holder(db)
    follower = OwnerLock(db)
    claimed = threading.Event()
    try:
        assert not follower.try_claim()
        follower.wait_in_background(claimed.set, poll=0.02)
        assert not claimed.wait(0.3), "claimed while the owner lives"
        killed_at = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        assert claimed.wait(10), "no handover after the owner died"
        handover = time.monotonic() - killed_at
        assert follower.held
        print(f"handover after kill -9: {handover * 1000:.1f} ms")
    finally:
        _stop(holder)
        follower.release()
    # Released: the next process takes it at once.
    assert OwnerLock(db).try_claim()


def test_a_clean_release_hands_over_and_unpublishes(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    holder = _start_holder(db, "release")
    follower = OwnerLock(db)
    claimed = threading.Event()
    try:
        follower.wait_in_background(claimed.set, poll=0.02)
        assert holder.stdin is not None
        assert holder.stdout is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert claimed.wait(10)
        # The old owner emptied the file: nobody dials its socket any more.
        assert read_owner(db) is None
    finally:
        _stop(holder)
        follower.release()


def test_a_closed_follower_stops_waiting_and_never_claims(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    holder = _start_holder(db)
    follower = OwnerLock(db)
    claimed = threading.Event()
    thread = follower.wait_in_background(claimed.set, poll=0.02)
    follower.release()
    thread.join(5)
    assert not thread.is_alive()
    _stop(holder)
    assert not claimed.is_set()
    assert not follower.try_claim(), "a released lock object must stay out"


def test_socket_paths_are_short_private_and_follow_the_real_path(tmp_path: Path) -> None:
    db = tmp_path / "a" / "memory.db"
    db.parent.mkdir()
    (tmp_path / "link").symlink_to(db.parent)
    assert socket_path_for(db) == socket_path_for(tmp_path / "link" / "memory.db")
    assert socket_path_for(db) != socket_path_for(tmp_path / "other.db")
    assert len(str(socket_path_for(db))) < 100


def test_the_runtime_directory_must_be_ours_and_closed(tmp_path: Path) -> None:
    fresh = tmp_path / "run"
    ensure_private_dir(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o700
    ensure_private_dir(fresh)  # an existing private one is fine

    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(PermissionError, match="open to other users"):
        ensure_private_dir(open_dir)

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(PermissionError, match="not a directory"):
        ensure_private_dir(not_a_dir)


@needs_root
def test_a_runtime_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match=f"belongs to uid {NOBODY}"):
        ensure_private_dir(theirs)


def test_network_filesystems_are_recognised_from_the_mount_table() -> None:
    mountinfo = (
        "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
        "40 22 0:50 / /mnt/share rw - nfs4 server:/export rw\n"
        "41 22 0:51 / /mnt/my\\040drive rw - fuse.sshfs me@host: rw\n"
    )
    assert filesystem_type(Path("/home/me/memory.db"), mountinfo) == "ext4"
    assert filesystem_type(Path("/mnt/share/team/memory.db"), mountinfo) == "nfs4"
    assert filesystem_type(Path("/mnt/sharex/memory.db"), mountinfo) == "ext4"
    assert filesystem_type(Path("/mnt/my drive/memory.db"), mountinfo) == "fuse.sshfs"
    # This machine's own table parses, and a local temp dir can take part.
    assert filesystem_type(Path.cwd()) is not None


def test_a_local_writable_directory_can_take_part(tmp_path: Path) -> None:
    assert unsupported_reason(tmp_path / "memory.db") is None


@pytest.fixture
def world_reachable(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A directory under /tmp that another uid can reach (pytest's own base is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="memory-actors-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@needs_root
def test_a_read_only_directory_means_direct_mode(world_reachable: Path) -> None:
    # Root may write anywhere, so ask as nobody about a directory only root may write.
    locked = world_reachable / "ro"
    locked.mkdir(mode=0o755)
    code = (
        "import os, sys; from actors.ownership import unsupported_reason;"
        "os.setgid(65534); os.setuid(65534);"
        "print(unsupported_reason(sys.argv[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(locked / "memory.db")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "is not writable" in out
    assert str(locked) in out


@needs_root
def test_a_file_in_a_folder_this_user_cannot_write_is_refused_for_that_not_as_broken(
    world_reachable: Path,
) -> None:
    """Direct mode cannot help here: SQLite itself writes beside a WAL file. The error says
    so (it said the file was not a usable SQLite database), and the file is left as it was."""
    locked = world_reachable / "ro"
    locked.mkdir(mode=0o755)
    db = locked / "memory.db"
    with MemorySystem.open(db, config=Config(sharing="direct")) as memory:
        memory.store("written while the folder was writable")
    db.chmod(0o666)
    before = db.read_bytes()
    code = (
        "import os, sys; from actors import MemorySystem; from actors.errors import StorageError\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    MemorySystem.open(sys.argv[1]).close()\n"
        "except StorageError as exc:\n    print(type(exc).__name__, exc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("StorageError cannot open"), out
    assert "the file and its folder must be writable by this user" in out
    assert db.read_bytes() == before


# -- the link --------------------------------------------------------------------------------


class _EchoOwner:
    """An owner handler that answers from another thread, later, in reverse order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._held: list[tuple[dict[str, Any], Reply]] = []
        self._lock = threading.Lock()

    def __call__(self, verb: str, args: dict[str, Any], reply: Reply) -> None:
        with self._lock:
            self.calls.append((verb, args))
            if verb == "hold":
                self._held.append((args, reply))
                return
        threading.Thread(target=reply, args=({"ok": {"verb": verb, "args": args}},)).start()

    def release_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for args, reply in reversed(held):
            reply({"ok": args})


@pytest.fixture
def link(tmp_path: Path) -> Any:
    directory = tmp_path / "run"
    ensure_private_dir(directory)
    owner = _EchoOwner()
    server = LinkServer(directory / "x.sock", owner)
    yield server, owner
    server.close()


def test_requests_and_replies_cross_the_link_out_of_order(link: Any) -> None:
    server, owner = link
    client = LinkClient(server.path)
    try:
        held = [client.submit("hold", {"n": n}) for n in range(50)]
        quick = client.submit("count", {"namespace": "ünïcode"})
        assert quick.result(5) == {
            "id": 51,
            "ok": {"verb": "count", "args": {"namespace": "ünïcode"}},
        }
        owner.release_held()
        assert [f.result(5)["ok"]["n"] for f in held] == list(range(50))
        assert server.followers == 1
        assert os.stat(server.path).st_mode & 0o777 == 0o600
    finally:
        client.close()


def _silent_owner_process(tmp_path: Path) -> tuple[Path, subprocess.Popen[str]]:
    """A real owner process listening on a socket (returned), answering nothing."""
    directory = tmp_path / "run"
    ensure_private_dir(directory)
    path = directory / "x.sock"
    code = (
        "import sys, time; from actors.owner_link import LinkServer;"
        "LinkServer(sys.argv[1], lambda verb, args, reply: None);"
        "print('up', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    return path, proc


def test_a_waiting_caller_reads_its_own_answer_and_hands_on_the_others(link: Any) -> None:
    server, owner = link
    client = LinkClient(server.path)
    try:
        held = [client.submit("hold", {"n": n}, waited=True) for n in range(3)]
        mine = client.submit("count", {}, waited=True)
        answer = client.wait(mine, 5)
        # Read by the caller itself: taken as read, its future never set.
        assert answer is not None
        assert answer["ok"]["verb"] == "count"
        assert not mine.done()

        def read_and_release() -> None:
            late = client.submit("echo", {"last": True}, waited=True)
            owner.release_held()
            read = client.wait(late, 5)
            # wait() returns early when another thread reads; the answer then reaches
            # the future from that thread.
            message = read if read is not None else late.result(5)
            assert message["ok"]["args"] == {"last": True}

        thread = threading.Thread(target=read_and_release)
        thread.start()
        thread.join(10)
        # Read by that thread on its way to its own answer, or by the link's thread
        # after it: each answer reaches its own future either way.
        assert [f.result(5)["ok"]["n"] for f in held] == [0, 1, 2]
        # Nobody waits for this one: the link's own thread reads it.
        assert client.submit("count", {}).result(5)["ok"]["verb"] == "count"
    finally:
        client.close()


def test_a_caller_sleeping_in_the_read_gives_up_at_its_deadline(link: Any) -> None:
    """The caller waits in the read itself (SO_RCVTIMEO slices on Linux, poll elsewhere),
    yet returns at its deadline with nothing; the answer, when it comes, reaches the
    future through the link's own thread, and a second caller reads its own again."""
    server, owner = link
    client = LinkClient(server.path)
    try:
        held = client.submit("hold", {"n": 0}, waited=True)
        began = time.monotonic()
        assert client.wait(held, 0.3) is None
        assert 0.3 <= time.monotonic() - began < 0.3 + 1.0
        assert not held.done()
        owner.release_held()
        assert held.result(5)["ok"]["n"] == 0
        after = client.submit("count", {}, waited=True)
        answer = client.wait(after, 5)
        assert answer is not None
        assert answer["ok"]["verb"] == "count"
    finally:
        client.close()


def test_an_idle_link_notices_its_owner_is_gone(tmp_path: Path) -> None:
    # No call in flight, so no caller reads: the link's thread sees the hang-up.
    path, proc = _silent_owner_process(tmp_path)
    broken = threading.Event()
    client = LinkClient(path, on_broken=broken.set)
    try:
        assert not client.broken
        proc.kill()
        proc.communicate(timeout=10)
        assert broken.wait(5), "the link's thread did not see the owner go"
        assert client.broken
        assert client.submit("count", {}).result(1) == {NOT_BEGUN: True}, "never sent"
    finally:
        client.close()


def test_a_reply_as_large_as_a_page_of_memories_arrives(link: Any) -> None:
    server, _ = link
    client = LinkClient(server.path)
    try:
        content = "x" * (MAX_REQUEST_BYTES // 2)
        assert client.submit("echo", {"c": content}).result(10)["ok"]["args"]["c"] == content
    finally:
        client.close()


def test_a_request_json_cannot_carry_is_refused_and_leaves_nothing_waiting(link: Any) -> None:
    server, owner = link
    client = LinkClient(server.path)
    try:
        with pytest.raises(TypeError):
            client.submit("echo", {"c": object()})
        assert client._pending == {}
        assert owner.calls == []  # nothing was sent
        assert client.submit("echo", {"c": "next"}).result(5)["ok"]["args"] == {"c": "next"}
    finally:
        client.close()


def _raw_connection(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.settimeout(5)
    return sock


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", MAX_REQUEST_BYTES + 1),  # oversized: refused before reading it
        _frame(b"\xff\xfe\x00{"),  # not UTF-8
        _frame(b"[]"),  # not an object
        _frame(b'{"id": "one"}'),  # no integer id
        _frame(b'{"id": 1, "verb": 7}'),  # verb not a string
        struct.pack(">I", 50) + b"{}",  # cut off inside the frame
        _frame(b"[" * 100_000 + b"]" * 100_000),  # nested deeper than the decoder recurses
    ],
    ids=["oversized", "not-utf8", "not-object", "no-id", "bad-verb", "truncated", "too-deep"],
)
def test_a_bad_frame_closes_that_connection_only(link: Any, garbage: bytes) -> None:
    server, owner = link
    good = LinkClient(server.path)
    bad = _raw_connection(server.path)
    try:
        bad.sendall(garbage)
        if garbage.endswith(b"{}"):
            bad.shutdown(socket.SHUT_WR)
        assert bad.recv(1) == b"", "the server should close the bad connection"
        assert good.submit("count", {}).result(5)["ok"]["verb"] == "count"
        assert not good.broken
        assert [verb for verb, _ in owner.calls] == ["count"]
    finally:
        bad.close()
        good.close()


def test_a_clean_close_answers_what_was_never_begun(link: Any) -> None:
    server, owner = link
    client = LinkClient(server.path)
    waiting = [client.submit("hold", {"n": n}) for n in range(3)]
    client.submit("count", {}).result(5)  # the holds have reached the owner
    owner.calls.clear()
    server.drain()
    late = client.submit("count", {})  # arrives while draining: never begun
    assert late.result(5) == {"id": 5, NOT_BEGUN: True}
    # (The service answers what it began before it closes; these stand for
    # requests it received and never began.)
    server.close()
    for future in waiting:
        assert future.result(5) == {NOT_BEGUN: True}
    assert client.broken
    assert client.submit("count", {}).result(1) == {NOT_BEGUN: True}, "never sent"
    assert owner.calls == []
    with pytest.raises(OwnerGone, match="did not begin count"):
        OwnerProxy.answer("count", {NOT_BEGUN: True})
    assert issubclass(OwnerGone, Unavailable)  # callers that retry Unavailable retry this
    client.close()


def test_requests_waiting_on_a_dead_owner_fail_with_owner_gone(tmp_path: Path) -> None:
    # A real owner process, killed: no closing frame, so nothing is known.
    path, proc = _silent_owner_process(tmp_path)
    client = LinkClient(path)
    waiting = [client.submit("hold", {"n": n}) for n in range(3)]
    time.sleep(0.2)
    proc.kill()
    proc.communicate(timeout=10)
    for future in waiting:
        with pytest.raises(OwnerGone, match="closed the connection"):
            future.result(5)
    client.close()


def test_a_follower_that_dies_mid_request_leaves_the_owner_serving(link: Any) -> None:
    server, owner = link
    code = (
        "import sys; from actors.owner_link import LinkClient;"
        "c = LinkClient(sys.argv[1]); c.submit('hold', {'n': 1});"
        "c.submit('count', {}).result(5); print('sent', flush=True);"
        "import time; time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(server.path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "sent"
    proc.kill()
    proc.communicate(timeout=10)
    owner.release_held()  # the reply to a dead follower goes nowhere, quietly
    survivor = LinkClient(server.path)
    try:
        assert survivor.submit("count", {}).result(5)["ok"]["verb"] == "count"
    finally:
        survivor.close()


@needs_root
def test_another_user_is_refused_by_peer_credentials(world_reachable: Path) -> None:
    # A directory and socket anyone may reach, so that only SO_PEERCRED stands between.
    shared = world_reachable / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    owner = _EchoOwner()
    server = LinkServer(shared / "x.sock", owner)
    os.chmod(server.path, 0o666)
    code = (
        "import json, os, socket, struct, sys; os.setgid(65534); os.setuid(65534);"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5);"
        "print('connected', flush=True);"
        "body = json.dumps({'id': 1, 'verb': 'count', 'args': {}}).encode();"
        "s.sendall(struct.pack('>I', len(body)) + body);"
        "print(repr(s.recv(100)))"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(server.path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Connected (the socket was reachable), then dropped without an answer:
        # a clean end of stream, or a reset / broken pipe (the request was left unread).
        assert out.stdout.startswith("connected"), out
        dropped = out.stdout.split() == ["connected", "b''"] or any(
            error in out.stderr for error in ("ConnectionResetError", "BrokenPipeError")
        )
        assert dropped, out
        assert owner.calls == []
    finally:
        server.close()


def test_the_published_owner_is_json_a_person_can_read(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    lock = OwnerLock(db)
    assert lock.try_claim()
    lock.publish(OwnerInfo(pid=os.getpid(), socket="/run/x.sock"))
    assert json.loads(lock_path_for(db).read_text()) == {
        "pid": os.getpid(),
        "socket": "/run/x.sock",
    }
    lock.release()
    with pytest.raises(RuntimeError, match="only the owner"):
        lock.publish(OwnerInfo(pid=1, socket="/x"))


def test_a_draining_owner_takes_no_follower_and_turns_late_ones_away_with_its_goodbye(
    link: Any,
) -> None:
    """Once draining, the socket is gone, so a follower finds no owner (and waits for the
    next) instead of a connection that would be reset; one accepted after the goodbye is
    told ``closing`` before it is closed, never reset: a reset could not be told from an
    owner killed after reading the request."""
    server, _ = link
    server.drain()
    with pytest.raises(FileNotFoundError):
        LinkClient(server.path)
    owner_end, follower_end = socket.socketpair()
    with follower_end:
        owner_link._turn_away(owner_end)
        frames = FrameReader(follower_end)
        assert read_frame(frames, owner_link.MAX_REPLY_BYTES) == {"id": 0, CLOSING: True}
        assert read_frame(frames, owner_link.MAX_REPLY_BYTES) is None


def test_frames_are_the_json_the_standard_encoder_writes_and_reads() -> None:
    """The C encoder and scanner called directly give what ``json`` gives, errors included."""
    messages: list[Any] = [
        {"id": 1, "verb": "get", "args": {"memory_id": "0190a2c4-0000-7000-8000-000000000000"}},
        {"id": 2, "ok": {"content": 'ünïcode ✓ \u2028 "quoted" \\', "tags": ("a", "b")}},
        {"id": 3, "ok": {"n": 10**30, "x": -0.0, "f": 1e-300, "nan": float("nan")}},
        {"id": 4, "ok": [None, True, False, [], {}, {"nested": [{"deep": [1.5]}]}]},
        {"id": 5, "error": {"type": "InvalidMemory", "message": "", "fields": {"1": 2}}},
    ]
    compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    for message in messages:
        text = owner_link.json_text(message)
        assert text == compact.encode(message)
        assert repr(owner_link.json_value(text)) == repr(json.loads(text))
    # What the encoder never writes still reads as ``json.loads`` reads it.
    for text in (' {"id": 1} ', '{"id": 1}\n', "[1, 2]", '"s"'):
        assert owner_link.json_value(text) == json.loads(text)
    for bad in ("", " ", "{", '{"id": 1} x', "nope", '{"id": 1}{"id": 2}'):
        with pytest.raises(json.JSONDecodeError) as ours:
            owner_link.json_value(bad)
        with pytest.raises(json.JSONDecodeError) as theirs:
            json.loads(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        owner_link.json_text({"id": 1, "args": {"tags": {"a"}}})
