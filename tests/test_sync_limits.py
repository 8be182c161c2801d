"""Sync stays within the hub's limits: a batch over the body limit is split, never dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import HubProcess, fast_remote, hub_live_without_duplicates, wait_until

from actors import MemorySystem
from actors.system import Config


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    # No embedder: this is about the push path. With one, the hub was still hashing
    # 60 KB memories at SIGTERM (~0.4 s each, 32 a batch here) and missed its 5 s exit.
    with HubProcess.running(tmp_path / "hub.db", args=("--embedder", "none")) as proc:
        yield proc


def test_large_memories_whose_batch_exceeds_the_body_limit_all_push(
    hub: HubProcess, tmp_path: Path
) -> None:
    """150 memories of 60 KB (9 MB, over the hub's 8 MiB body limit in one batch) all arrive."""
    key = hub.add_key("large")
    db = tmp_path / "memory.db"
    filler = "x" * 60_000
    # Stored while offline, so that the first push takes them all in one batch.
    with MemorySystem.open(db) as offline:
        ids = {offline.store(f"large memory {i} {filler}").id for i in range(150)}
    # One attempt: a batch that is too large must be split, not count as a failure.
    remote = fast_remote(hub.url, key, max_attempts=1)
    with (
        MemorySystem.open(db, config=Config(remote=remote)) as system,
        hub.client(key) as client,
    ):
        wait_until(
            lambda: system.count().outbox_pending == 0,
            "every large memory pushed",
            describe=lambda: (system.count(), system.sync_report()),
        )
        assert system.count().dead_letters == 0
        assert set(hub_live_without_duplicates(client)) == ids
