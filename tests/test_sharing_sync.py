"""Sync with one owner per file: only the owner syncs, and its right to is the ownership.

Real processes on one real file, a real hub process over loopback: the
follower runs no SyncActor; ``kill -9`` of the owner while its outbox is
full, and the next owner pushes that outbox at once (not a lease's time
later), with the hub ending exactly where one push of each memory leaves it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import (
    FAST_SYNC,
    WORKERS,
    HubProcess,
    hub_live_without_duplicates,
    local_outbox,
    read_status,
    start_worker,
    stop_workers,
    wait_until,
    worker_result,
)

from actors import Config, MemorySystem
from actors._sqlite import connect
from actors.local_db import LocalDatabase
from actors.model import HybridClock
from actors.sync_model import OWNER_HOLDER

#: Far longer than the test waits for the next owner to push: only the
#: ownership, not the lease's expiry, can let it push in time.
LEASE_TTL = 60.0


def test_only_the_owner_syncs_and_the_next_owner_pushes_its_outbox_at_once(
    tmp_path: Path,
) -> None:
    with HubProcess.running(tmp_path / "hub.db") as hub:  # this test kills and restarts it
        _only_the_owner_syncs(hub, tmp_path)


def _only_the_owner_syncs(hub: HubProcess, tmp_path: Path) -> None:
    key = hub.add_key("owners")
    db = tmp_path / "shared.db"
    stop = tmp_path / "stop"
    names = ("first", "second")
    statuses = {name: tmp_path / f"{name}.status" for name in names}
    procs = {}
    for name in names:
        plan = {
            "db": str(db),
            "url": hub.url,
            "key": key,
            "remote": {**FAST_SYNC, "lease_ttl": LEASE_TTL},
            "sharing": "auto",
            "stores": [f"{name} process memory {i}" for i in range(5)],
            "status": str(statuses[name]),
            "stop": str(stop),
        }
        procs[name] = start_worker("sync-serve", plan, tmp_path / f"{name}.json")
        # One after the other: the first owns the file.
        wait_until(lambda n=name: read_status(statuses[n]), f"{name} reporting")

    def seen(name: str) -> dict[str, Any]:
        status = read_status(statuses[name])
        assert status is not None
        return status

    with hub.client(key) as client:
        try:
            assert seen("first")["role"] == "owner"
            assert "sync" in seen("first")["own_actors"]
            assert seen("second")["role"] == "follower"
            assert seen("second")["own_actors"] == [], "a follower runs no actor, sync included"
            # The owner pushes the file's outbox, the follower's stores included.
            wait_until(lambda: client.count().total == 10, "both processes' memories on the hub")

            # The hub goes: what is stored now waits in the file's outbox (and no push
            # of the owner's can reach the hub late, as one held in a frozen hub's
            # socket would).
            hub.kill()
            late = subprocess.Popen(
                [sys.executable, str(WORKERS), "store", str(db), "2", "10", "late"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            acked = worker_result(late, deadline=60)
            assert acked["errors"] == []
            assert len(acked["acked"]) == 20
            assert local_outbox(db) == (20, 0)

            procs["first"].send_signal(signal.SIGKILL)
            procs["first"].communicate(timeout=10)
            killed_at = time.monotonic()
            wait_until(lambda: seen("second")["role"] == "owner", "the follower took the file over")
            took_over = time.monotonic() - killed_at
            hub.restart()
            back_at = time.monotonic()
            wait_until(
                lambda: client.count().total == 30,
                "the next owner pushed the outbox",
                deadline=15,
                describe=lambda: (client.count(), seen("second")),
            )
            resumed = time.monotonic() - back_at
            assert time.monotonic() - killed_at < LEASE_TTL / 2, "pushed only as the lease expired"
            survivor = wait_until(
                lambda: (s := seen("second"))["outbox_pending"] == 0 and s["lease_holder"] and s,
                "the next owner's outbox drained, as the lease holder",
            )
            assert survivor["pushed"] >= 20
            assert "sync" in survivor["own_actors"]
            # Each memory once on the hub, whatever the dead owner sent before it died.
            live = hub_live_without_duplicates(client)
            assert len(live) == 30
            print(
                f"kill -9 of the owner: the next owner after {took_over * 1000:.0f} ms; "
                f"the outbox on the hub {resumed * 1000:.0f} ms after the hub was back"
            )
        finally:
            stop_workers(stop, procs.values(), 30)
    assert procs["second"].returncode == 0


def test_an_owner_succeeds_an_owners_lease_and_a_direct_process_waits_for_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "memory.db"
    MemorySystem.open(db, config=Config(sharing="direct")).close()  # migrated
    now = [100.0]
    lease = LocalDatabase(
        connect(str(db)),
        path=str(db),
        origin="local-origin",
        clock=HybridClock(),
        new_id=lambda: pytest.fail("a lease mints no id"),
        wall_time=lambda: 1_800_000_000.0,
        monotonic=lambda: now[0],
        jitter=lambda: 0.5,
    )
    first, second = f"{OWNER_HOLDER}one", f"{OWNER_HOLDER}two"
    try:
        assert lease.acquire_lease(first, 15.0) == (True, first, 115.0)
        # A direct process waits for a live lease, an owner's too ...
        assert lease.acquire_lease("direct", 15.0) == (False, first, 115.0)
        # ... while the next owner takes it at once: owners never overlap.
        now[0] = 101.0
        assert lease.acquire_lease(second, 15.0) == (True, second, 116.0)
        assert lease.acquire_lease(first, 15.0) == (True, first, 116.0)
        # A direct process's live lease holds an owner off until it expires.
        assert lease.release_lease(first)
        assert lease.acquire_lease("direct", 15.0) == (True, "direct", 116.0)
        assert lease.acquire_lease(second, 15.0) == (False, "direct", 116.0)
        now[0] = 117.0
        assert lease.acquire_lease(second, 15.0) == (True, second, 132.0)
    finally:
        lease.conn.close()
