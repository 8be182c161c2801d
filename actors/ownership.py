"""Who owns a database file: one process per file, decided by an OS lock.

Each process that opens a memory file tries to take an exclusive ``flock``
on a sidecar lock file next to it (``<file>.owner``). The kernel holds that
lock for exactly as long as the process lives, so there is no pid file to
guess about: a process killed with ``kill -9`` loses it at once, and a
process still running keeps it however slow it is.

- The process that takes the lock is the file's **owner**: it runs the
  StoreActor (and sync, and embedding) and listens on a Unix socket; it
  writes its pid and the socket's path into the lock file so that others
  find it whatever their environment.
- Every other process is a **follower**: it sends its requests to the owner
  (:mod:`actors.owner_link`) and polls, on a daemon thread, to become the
  owner when the present one exits.
- A process that can take part in neither (the directory is read-only, the
  file is on a network filesystem whose locks cannot be trusted, no Unix
  sockets, or the runtime directory is not private) runs in **direct** mode:
  its own StoreActor on the file, contending through SQLite's locks as
  before; :attr:`Role.reason` says why.

Sockets live in a private runtime directory (``$XDG_RUNTIME_DIR/memory-actors``
or ``/tmp/memory-actors-<uid>``, mode 0700, owned by this user, else refused)
because a socket path is limited to ~100 bytes and a directory a user does
not own is a place where another user could plant a socket.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import attrs

__all__ = [
    "LOCK_SUFFIX",
    "OwnerInfo",
    "OwnerLock",
    "Role",
    "ensure_private_dir",
    "filesystem_type",
    "lock_path_for",
    "read_owner",
    "runtime_dir",
    "socket_path_for",
    "unsupported_reason",
]

logger = logging.getLogger(__name__)

LOCK_SUFFIX: Final = ".owner"

#: Filesystems whose ``flock`` is emulated, local to one client, or absent:
#: two machines could both believe they own the file, so they go direct.
_NETWORK_FILESYSTEMS: Final = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "fuse.sshfs"}
)

RoleName = Literal["owner", "follower", "direct"]


@attrs.frozen
class OwnerInfo:
    """What an owner publishes in the lock file for its followers."""

    pid: int
    socket: str


@attrs.frozen
class Role:
    """This process's part for one file, and why when it is ``direct``."""

    name: RoleName
    reason: str = ""


def lock_path_for(database: str | os.PathLike[str]) -> Path:
    """The sidecar lock file of ``database`` (same directory, so same filesystem)."""
    path = Path(database).resolve()
    return path.with_name(path.name + LOCK_SUFFIX)


def runtime_dir() -> Path:
    """The private directory for this user's sockets (not created here)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "memory-actors"
    return Path("/tmp") / f"memory-actors-{os.getuid()}"


def socket_path_for(database: str | os.PathLike[str]) -> Path:
    """The owner's socket for ``database``: named by a digest of its real path."""
    digest = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:24]
    return runtime_dir() / f"{digest}.sock"


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding ``path``, from Linux's mount table, else None.

    ``mountinfo`` is the text of ``/proc/self/mountinfo`` (read when None).
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    lines = mountinfo.splitlines()
    best, best_type = "", None
    target = str(path)
    for line in lines:
        # "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw"
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, right.split()[0]
    return best_type


def unsupported_reason(database: str | os.PathLike[str]) -> str | None:
    """Why this process cannot own or follow ``database`` (None: it can)."""
    if not hasattr(socket, "AF_UNIX") or sys.platform == "win32":
        return "this platform has no Unix domain sockets"
    directory = Path(database).resolve().parent
    if not os.access(directory, os.W_OK):
        return f"the directory {directory} is not writable (the owner lock lives there)"
    fs_type = filesystem_type(directory)
    if fs_type in _NETWORK_FILESYSTEMS:
        return f"{directory} is on a network filesystem ({fs_type}) whose locks cannot be trusted"
    return None


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or check an existing one is ours and private.

    Raises PermissionError naming what is wrong: a directory owned by someone
    else, or open to others, is where a planted socket would be believed.
    """
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700, parents=False)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(f"{directory} is open to other users (mode {info.st_mode & 0o777:o})")


def read_owner(database: str | os.PathLike[str]) -> OwnerInfo | None:
    """The owner published in the lock file, or None while there is none (or not yet)."""
    try:
        text = lock_path_for(database).read_text(encoding="utf-8")
        data = json.loads(text)
        return OwnerInfo(pid=int(data["pid"]), socket=str(data["socket"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class OwnerLock:
    """The owner lock of one database file, held by this process or waited for.

    ``try_claim`` takes it without waiting; ``wait_in_background`` polls for
    it on a daemon thread and calls back once it is ours (the previous owner
    exited or died). ``release`` gives it up. One instance per open
    MemorySystem; thread-safe.
    """

    def __init__(self, database: str | os.PathLike[str]) -> None:
        self.database = Path(database).resolve()
        self.path = lock_path_for(self.database)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._held = False
        self._closed = False
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"<OwnerLock {self.path} held={self._held}>"

    @property
    def held(self) -> bool:
        return self._held

    def _open(self) -> int:
        if self._fd is None:
            # 0600: the lock file names the owner's socket, a same-user secret.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def try_claim(self) -> bool:
        """Take the lock now if nobody holds it; whether this process is the owner."""
        import fcntl

        with self._lock:
            if self._closed:
                return False
            if self._held:
                return True
            while True:
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        return False
                    raise
                if self._still_at_path(fd):
                    self._held = True
                    return True
                # The owner we waited on removed the file as it left: this lock is
                # on a file nobody else will open. Again, on the path's file.
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                self._fd = None

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def publish(self, info: OwnerInfo) -> None:
        """Write the owner's pid and socket into the lock file (the owner only)."""
        with self._lock:
            if not self._held or self._fd is None:
                raise RuntimeError("only the owner publishes")
            payload = json.dumps({"pid": info.pid, "socket": info.socket}).encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, payload, 0)

    def wait_in_background(
        self, on_claimed: Callable[[], None], *, poll: float = 0.05
    ) -> threading.Thread:
        """Poll for the lock on a daemon thread; once it is ours, call ``on_claimed``.

        Polling (every ``poll`` seconds, so a handover waits at most that
        long) rather than a blocking ``flock``: a blocked ``flock`` cannot be
        interrupted, so a follower closed while an owner lives would leave
        a thread behind for good. ``release`` stops the poll.
        """

        def wait() -> None:
            while not self._stop.wait(poll):
                if self.try_claim():
                    on_claimed()
                    return

        thread = threading.Thread(target=wait, name=f"owner-wait:{self.database.name}", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give up the lock (if held) and stop waiting for it. Idempotent."""
        import fcntl

        self._stop.set()
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, None
            if fd is None:
                return
            if self._held:
                # Removed while still locked, so the directory keeps no trace of a
                # clean exit; a waiter that locks the removed file sees it is no
                # longer at the path and starts again (try_claim).
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                fcntl.flock(fd, fcntl.LOCK_UN)
                self._held = False
            os.close(fd)
