"""Real hub processes for tests: a free loopback port, /healthz readiness, stop, kill, restart.

A hub runs as ``python -m actors.hub serve --db <file> --port <port>``, exactly
as an operator would run it. Keys are minted with the key functions straight
on the hub's file, before or while it serves (SQLite's locking makes that
safe; the hub reads key rows on every request).

Use it from a test module (fixtures are not imported by name, so that ruff
does not see them as redefined)::

    from hub_fixtures import HubProcess

    @pytest.fixture(scope="module")
    def hub(tmp_path_factory):
        with HubProcess.running(tmp_path_factory.mktemp("hub") / "hub.db") as proc:
            yield proc

or list ``"hub_fixtures"`` in ``pytest_plugins`` of the root conftest to get
the ``hub_process`` fixture below. Every wait is bounded; stopping asserts
that the process exits by itself within a few seconds of SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from actors.hub.protocol import WireMemory
from actors.hub.store import add_key, revoke_key
from actors.model import content_hash, format_version, normalize_content
from actors.remote import HubClient

ROOT = Path(__file__).resolve().parents[1]

#: How long a hub may take to answer /healthz after it is started.
START_DEADLINE = 20.0
#: How long a hub may take to exit after SIGTERM.
STOP_DEADLINE = 5.0


def memory(
    content: str = "",
    *,
    id: str | None = None,
    namespace: str = "default",
    version: int = 1_700_000_000_000,
    logical: int = 0,
    origin: str = "origin-a",
    deleted: bool = False,
    tags: tuple[str, ...] = (),
    metadata: Mapping[str, Any] | None = None,
) -> WireMemory:
    """A memory as a client would push it; ``version`` is the clock's milliseconds."""
    text = "" if deleted else normalize_content(content)
    return WireMemory(
        id=id or str(uuid.uuid4()),
        namespace=namespace,
        content=text,
        content_hash=content_hash(normalize_content(content)) if content else "",
        tags=() if deleted else tags,
        metadata={} if deleted else dict(metadata or {}),
        created_at=1_700_000_000.0,
        updated_at=version / 1000,
        version=format_version(version, logical),
        origin=origin,
        deleted=deleted,
    )


def forget(
    item: WireMemory, *, version: int | None = None, origin: str | None = None
) -> WireMemory:
    """The tombstone of ``item``, one millisecond newer unless told otherwise."""
    physical = int(item.version[:13], 16) + 1 if version is None else version
    return memory(
        id=item.id,
        namespace=item.namespace,
        version=physical,
        origin=origin or item.origin,
        deleted=True,
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HubProcess:
    """One hub server process on ``db`` and a fixed loopback port (kept across restarts)."""

    def __init__(self, db: Path, *, port: int | None = None) -> None:
        self.db = Path(db)
        self.port = port or free_port()
        self.log_path = self.db.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"<HubProcess {self.url} {self.db.name} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @classmethod
    @contextlib.contextmanager
    def running(cls, db: Path, *, port: int | None = None) -> Iterator[Self]:
        """Start a hub, yield it, and stop it with SIGTERM (asserting a clean exit)."""
        hub = cls(db, port=port)
        hub.start()
        try:
            yield hub
        finally:
            if hub.alive:
                hub.stop()
            hub.close_log()

    # -- keys ------------------------------------------------------------------------

    def add_key(self, tenant: str) -> str:
        """Mint a key for ``tenant`` in the hub's file (works before and while it runs)."""
        return add_key(self.db, tenant)

    def revoke(self, key: str) -> None:
        """Revoke ``key`` (a plaintext key from :meth:`add_key`)."""
        key_id = key.split("_")[1]
        assert revoke_key(self.db, key_id) is not None

    def client(self, key: str, **kwargs: Any) -> HubClient:
        """A HubClient for this hub with ``key`` (close it, or use it as a context manager)."""
        kwargs.setdefault("timeout", 5.0)
        return HubClient(self.url, key, **kwargs)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, deadline: float = START_DEADLINE) -> None:
        """Start the process and wait until /healthz answers 200 (bounded by ``deadline``)."""
        assert not self.alive, "already running"
        self.close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the hub runs
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actors.hub",
                "serve",
                "--db",
                str(self.db),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_healthy(deadline)

    def wait_healthy(self, deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        last: object = None
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"hub exited with {self.proc.returncode} before serving:\n{self.log_text()}"
                )
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=1.0)
            except httpx.HTTPError as exc:
                last = exc
            else:
                if response.status_code == 200:
                    return
                last = response.status_code
            time.sleep(0.02)  # poll interval of a bounded wait, not a synchronisation sleep
        raise AssertionError(f"hub not healthy within {deadline}s ({last!r}):\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, deadline: float = STOP_DEADLINE) -> float:
        """Send ``sig`` and assert that the hub exits by itself, with status 0, within ``deadline``.

        Returns how long the exit took.
        """
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=deadline)
            raise AssertionError(
                f"hub did not exit within {deadline}s of signal {sig}:\n{self.log_text()}"
            ) from None
        took = time.monotonic() - started
        assert code == 0, f"hub exited with {code} after signal {sig}:\n{self.log_text()}"
        return took

    def kill(self) -> None:
        """SIGKILL: the hub dies at once, with no cleanup (as on a crash or power loss)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=STOP_DEADLINE)

    def freeze(self) -> None:
        """SIGSTOP: the hub's socket still accepts connections, but nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same file and port (after :meth:`stop` or :meth:`kill`)."""
        self.start()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub process of its own on a fresh file, stopped (and checked) after the test."""
    with HubProcess.running(tmp_path / "hub.db") as hub:
        yield hub
