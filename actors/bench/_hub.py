"""Internal: real hub processes and pushed memories, for the benchmarks that talk to a hub.

``hub_processes`` starts ``python -m actors.hub serve`` processes on loopback
(one on a SQLite file, any number on one PostgreSQL database) and stops them
with SIGTERM; ``wire_batch`` builds the memories a client pushes. A harness:
it may use ``time``, ``subprocess`` and sockets directly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO

import attrs
import click

from actors.errors import HubError
from actors.hub.engines import is_postgres
from actors.model import content_hash, format_version, normalize_content
from actors.remote import HubClient
from actors.wire import WireMemory

__all__ = [
    "FILLER",
    "RunningHub",
    "cpu_seconds",
    "free_port",
    "hub_processes",
    "wait_for",
    "wire_batch",
]

FILLER = "learned while working on the sync benchmark; the user prefers short answers."


@attrs.frozen
class RunningHub:
    """One hub process of :func:`hub_processes`: where it serves, and its process id."""

    url: str
    pid: int


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far; None off Linux.

    ``reaped_children``: add those of its children that exited and it waited
    for (how a PostgreSQL server's ended backends are counted by its postmaster).
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # After "(comm)", which may hold spaces: utime, stime, cutime, cstime
            # are fields 14-17 (indexes 11-14 of what follows the name).
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(f) for f in fields[11 : 15 if reaped_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def resident_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (VmRSS); None off Linux."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def free_port() -> int:
    """A TCP port free on loopback right now (for a hub process to listen on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], object], what: str, deadline: float) -> None:
    """Poll ``predicate`` until it is true; a ClickException naming ``what`` after ``deadline``."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise click.ClickException(f"{what}: not within {deadline:g}s")
        time.sleep(0.01)


@contextmanager
def _one_hub(target: str, log: IO[bytes], hub_args: Sequence[str]) -> Iterator[RunningHub]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flag = "--database" if is_postgres(target) else "--db"
    command = [sys.executable, "-m", "actors.hub", "serve", flag, target, "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning", *hub_args], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        with HubClient(url, "health-check", timeout=1.0) as probe:

            def healthy() -> bool:
                if proc.poll() is not None:
                    raise click.ClickException(f"a hub process exited with {proc.returncode}")
                try:
                    probe.health()
                except HubError:
                    return False
                return True

            wait_for(healthy, "the hub to serve", 60.0)
        yield RunningHub(url, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def hub_processes(
    target: str, count: int, workdir: str, hub_args: Sequence[str] = ()
) -> Iterator[list[RunningHub]]:
    """``count`` hub processes serving ``target`` (a file, or a URL); yields them.

    They start one after the other (the first migrates a new database), log
    to ``workdir/hub-N.log`` and are stopped with SIGTERM on exit.
    """
    if count > 1 and not is_postgres(target):
        raise click.UsageError("several hub processes need a PostgreSQL database")
    with ExitStack() as stack:
        hubs = []
        for n in range(count):
            log = stack.enter_context(open(os.path.join(workdir, f"hub-{n}.log"), "ab"))
            hubs.append(stack.enter_context(_one_hub(target, log, hub_args)))
        yield hubs


def wire_batch(
    prefix: str, first: int, count: int, *, origin: str, new_id: Callable[[], str]
) -> list[WireMemory]:
    """``count`` new memories numbered from ``first``, as a client's push carries them."""
    now_ms = int(time.time() * 1000)
    items = []
    for n in range(first, first + count):
        text = normalize_content(f"{prefix} {n}: {FILLER}")
        items.append(
            WireMemory(
                id=new_id(),
                namespace="default",
                content=text,
                content_hash=content_hash(text),
                tags=("bench",),
                metadata={},
                created_at=now_ms / 1000,
                updated_at=now_ms / 1000,
                version=format_version(now_ms, n),
                origin=origin,
                deleted=False,
            )
        )
    return items
