"""Processes die: the hub is SIGKILLed mid-push and mid-pull; a lease holder is SIGKILLed.

Nothing is lost, nothing is duplicated, nothing is dead-lettered (an
unreachable hub costs no push attempts), and a surviving process on the same
file takes the sync over within about the lease's time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import (
    FAST_SYNC,
    WORKERS,
    HubProcess,
    fast_remote,
    hub_live_without_duplicates,
    local_outbox,
    read_status,
    start_worker,
    stop_workers,
    wait_until,
    worker_result,
)

from actors import MemorySystem
from actors.remote import HubClient
from actors.runtime import Runtime
from actors.sync_model import RemoteConfig
from actors.system import Config
from actors.wire import ChangesPage

WRITES = 2_000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub process of this test's own: the test kills it."""
    with HubProcess.running(tmp_path / "hub.db") as proc:
        yield proc


class PullGate:
    """Holds the SyncActor before its ``nth`` pull request until the test says go."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.calls = 0
        self.reached = threading.Event()
        self.go = threading.Event()

    def client(self, config: RemoteConfig, runtime: Runtime) -> HubClient:
        gate = self

        class GatedClient(HubClient):
            def changes(
                self, since: str | None = None, limit: int | None = None, **kw: Any
            ) -> ChangesPage:
                gate.calls += 1
                if gate.calls == gate.nth:
                    gate.reached.set()
                    assert gate.go.wait(timeout=30), "the test never let the pull go on"
                return super().changes(since, limit, **kw)

        return GatedClient(
            config.url, config.api_key, timeout=config.timeout, clock=runtime.monotonic
        )


def test_the_hub_killed_mid_push_and_mid_pull_loses_and_duplicates_nothing(
    hub: HubProcess, tmp_path: Path
) -> None:
    """SIGKILL the hub while a worker pushes 2,000 memories and while a replica pulls them."""
    key = hub.add_key("crash")
    writer_db = tmp_path / "writer.db"
    contents = [f"written before the crash {i}" for i in range(WRITES)]
    plan = {
        "db": str(writer_db),
        "url": hub.url,
        "key": key,
        # Small batches: the push takes many requests, so the kill lands between them.
        "remote": {**FAST_SYNC, "batch_size": 50},
        "stores": [{"content": text} for text in contents],
        "threads": 4,
        "expect": [[text, []] for text in contents],
        "deadline": 60,
    }
    writer = start_worker("sync-plan", plan, tmp_path / "writer.json")
    with hub.client(key) as client:
        # Mid-push: the hub has taken some of the memories and the writer's outbox holds more.
        landed = wait_until(lambda: (n := client.count().total) >= 300 and n, "pushes landed")
        hub.kill()
        pending, _dead = local_outbox(writer_db)
        print("mid-push kill:", landed, pending)
        assert landed < WRITES or pending > 0, "the writer had nothing left to push"
        hub.restart()
        writer_out = worker_result(writer, deadline=60)
        assert writer_out["errors"] == []
        assert writer_out["dead_letters"] == 0
        written = set(writer_out["ids"].values())
        assert len(written) == WRITES
        assert set(hub_live_without_duplicates(client)) == written

        # Mid-pull: a fresh replica applies four pages, then the hub dies under its fifth.
        gate = PullGate(nth=5)
        config = Config(remote=fast_remote(hub.url, key, page_size=100), hub_client=gate.client)
        with MemorySystem.open(tmp_path / "reader.db", config=config) as reader:
            assert gate.reached.wait(timeout=30)
            partial = reader.count().total
            hub.kill()
            gate.go.set()
            assert 0 < partial < WRITES
            wait_until(
                lambda: reader.sync_report().state == "unreachable",
                "the reader noticed the hub is gone",
            )
            reader.store("written while the hub is down")
            hub.restart()
            wait_until(
                lambda: (c := reader.count()).total == WRITES + 1 and c.outbox_pending == 0,
                "the reader converged after the restart",
                describe=reader.count,
            )
            counts = reader.count()
            assert counts.dead_letters == 0
            live = hub_live_without_duplicates(client)
            assert len(live) == WRITES + 1
            assert set(live) >= written
            assert client.count().total == WRITES + 1


def test_one_process_per_file_syncs_and_another_takes_over_when_it_dies(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Two processes on one file: one syncs, one stands by; SIGKILL the holder, the other syncs."""
    key = hub.add_key("lease")
    db = tmp_path / "shared.db"
    stop = tmp_path / "stop"
    lease_ttl = FAST_SYNC["lease_ttl"]
    names = ("first", "second")
    procs = {}
    for name in names:
        plan = {
            "db": str(db),
            "url": hub.url,
            "key": key,
            "remote": FAST_SYNC,
            "stores": [f"{name} process memory {i}" for i in range(5)],
            "status": str(tmp_path / f"{name}.status"),
            "stop": str(stop),
        }
        procs[name] = start_worker("sync-serve", plan, tmp_path / f"{name}.json")
    statuses = {name: tmp_path / f"{name}.status" for name in names}

    def roles() -> tuple[str, str] | None:
        seen = {name: read_status(path) for name, path in statuses.items()}
        if any(s is None for s in seen.values()):
            return None
        holders = [n for n, s in seen.items() if s and s["lease_holder"]]
        standby = [n for n, s in seen.items() if s and s["state"] == "standby"]
        if len(holders) == 1 and len(standby) == 1 and holders != standby:
            return holders[0], standby[0]
        return None

    with hub.client(key) as client:
        try:
            holder, survivor = wait_until(roles, "one holder and one standby", deadline=30)
            # The holder pushes the file's outbox, including what the standby stored.
            wait_until(lambda: client.count().total == 10, "both processes' memories on the hub")
            assert read_status(statuses[survivor])["pushed"] == 0

            procs[holder].send_signal(signal.SIGKILL)
            procs[holder].communicate(timeout=5)
            killed_at = time.monotonic()
            # Another agent session (no remote: it never syncs) writes to the file meanwhile.
            extra = subprocess.Popen(
                [sys.executable, str(WORKERS), "store", str(db), "2", "10", "late"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            took_over = wait_until(
                lambda: (s := read_status(statuses[survivor])) and s["lease_holder"] and s,
                "the survivor took the lease",
                deadline=10,
            )
            took = time.monotonic() - killed_at
            assert took < lease_ttl + 2.0, f"takeover took {took:.2f}s"
            assert took_over["state"] in ("starting", "syncing")
            late = worker_result(extra, deadline=30)
            assert late["errors"] == []
            assert len(late["acked"]) == 20
            wait_until(
                lambda: client.count().total == 30,
                "what was pending pushed by the new holder",
                describe=lambda: (client.count(), read_status(statuses[survivor])),
            )
            survivor_status = wait_until(
                lambda: (s := read_status(statuses[survivor])) and s["outbox_pending"] == 0 and s,
                "the survivor's outbox drained",
            )
            assert survivor_status["pushed"] >= 20
            assert survivor_status["state"] == "syncing"
            assert len(hub_live_without_duplicates(client)) == 30
        finally:
            stop_workers(stop, procs.values(), 15)
        assert procs[survivor].returncode == 0
