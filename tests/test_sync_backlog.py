"""A large offline backlog drains without stalling the replica's own stores and reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import HubProcess, fast_remote, hub_live_without_duplicates, wait_until

from actors import MemorySystem
from actors.system import Config

BACKLOG = 8_000
#: A stall bound, not a benchmark: the drain must never hold the store's one
#: thread for seconds (before the fix, settling a batch scanned the whole
#: outbox once per memory, and a 20k backlog made every caller time out).
STALL = 2.0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    with HubProcess.running(tmp_path / "hub.db") as proc:
        yield proc


def test_an_offline_backlog_drains_while_stores_and_counts_stay_responsive(
    hub: HubProcess, tmp_path: Path
) -> None:
    """8,000 memories stored offline push on reconnect; meanwhile no store or count stalls."""
    key = hub.add_key("backlog")
    db = tmp_path / "memory.db"
    with MemorySystem.open(db) as offline:
        pool = [
            threading.Thread(
                target=lambda n=n: [offline.store(f"offline {n}-{i}") for i in range(250)]
            )
            for n in range(BACKLOG // 250)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert offline.count().outbox_pending == BACKLOG

    with (
        MemorySystem.open(db, config=Config(remote=fast_remote(hub.url, key))) as system,
        hub.client(key) as client,
    ):
        latencies: list[float] = []
        done = threading.Event()

        def probe() -> None:
            # A store and a count every ~20 ms, each timed, for as long as the drain runs.
            while not done.wait(0.02):
                started = time.monotonic()
                system.store(f"probe {len(latencies)}")
                system.count()
                latencies.append(time.monotonic() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            wait_until(lambda: client.count().total >= BACKLOG, "the backlog pushed", deadline=60)
        finally:
            done.set()
            prober.join(timeout=30)
        assert latencies, "the probe never ran"
        slowest = max(latencies)
        assert slowest < STALL, f"a store and a count took {slowest:.2f}s while it drained"
        total = BACKLOG + len(latencies)
        wait_until(
            lambda: system.count().outbox_pending == 0 and client.count().total == total,
            "the probes pushed too",
        )
        assert system.count().dead_letters == 0
        assert len(hub_live_without_duplicates(client)) == total
