"""A failing hub never fails a local store: retries, dead letters, requeue; a refused key.

The "failing hub" is a real hub behind :class:`hub_fixtures.FaultProxy`: the
key check, pulls and digests reach the hub, while pushes get a 500, garbage
JSON, a cut-off body or no answer within the client's timeout, over real TCP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_fixtures import (
    FaultProxy,
    HubProcess,
    fast_remote,
    fault_proxy,
    hub_live_without_duplicates,
    restore_key,
    wait_until,
)

from actors import MemorySystem
from actors.system import Config

#: The client's per-call timeout here; the ``slow`` fault answers only after it.
TIMEOUT = 0.5
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub process for the module; each test takes a tenant of its own."""
    with HubProcess.running(tmp_path_factory.mktemp("hub") / "hub.db") as proc:
        yield proc


@pytest.fixture
def proxy(hub: HubProcess) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the module's hub (healthy until told otherwise)."""
    with fault_proxy(hub.url) as server:
        yield server


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("status-500", "HubServerError"),
        ("garbage", "HubProtocolError"),
        ("truncated", "HubProtocolError"),
        ("slow", "HubTimeout"),
    ],
)
def test_a_failing_push_is_retried_then_dead_lettered_then_requeued(
    hub: HubProcess, proxy: FaultProxy, tmp_path: Path, fault: str, error: str
) -> None:
    """Pushes that fail are retried up to the cap, dead-lettered with a reason, requeued, pushed."""
    key = hub.add_key(f"faults-{fault}")
    proxy.fault = fault
    remote = fast_remote(
        proxy.url, key, timeout=TIMEOUT, max_attempts=MAX_ATTEMPTS, resync_interval=0.2
    )
    with MemorySystem.open(tmp_path / "client.db", config=Config(remote=remote)) as system:
        wait_until(lambda: system.sync_report().state == "syncing", "the key checked")
        ids = []
        for i in range(5):
            started = time.monotonic()
            receipt = system.store(f"stored while the hub fails {i}")
            # Local stores never wait on the hub: each is acknowledged well within its timeout.
            assert time.monotonic() - started < TIMEOUT
            assert receipt.sync_state == "sync_pending"
            ids.append(receipt.id)

        wait_until(
            lambda: system.count().dead_letters == 5,
            "every memory dead-lettered",
            describe=lambda: (system.count(), proxy.requests),
        )
        # Retried: the failing batch was sent once per attempt (the memories may be
        # split over several batches, each retried on its own schedule).
        assert proxy.requests >= MAX_ATTEMPTS
        assert system.count().outbox_pending == 0
        for memory_id in ids:
            memory = system.get(memory_id)
            assert memory.sync_state == "sync_failed"
            assert memory.sync_error is not None
            assert memory.sync_error.startswith(error)
        dead = system.dead_letters(limit=3)
        assert dead.total == 5
        assert [letter.memory_id for letter in dead.letters] == ids[:3]
        for letter in dead.letters:
            assert (letter.namespace, letter.op, letter.attempts) == (
                "default",
                "upsert",
                MAX_ATTEMPTS,
            )
            assert letter.last_error is not None
            assert letter.last_error.startswith(error)
        # A dead letter stays one until someone requeues it: full resyncs (every
        # 0.2 s here) find it missing on the hub, but leave it alone.
        resyncs: set[float | None] = set()

        def two_more_resyncs() -> bool:
            resyncs.add(system.sync_report().last_resync_at)
            return len(resyncs) > 2

        wait_until(two_more_resyncs, "two more full resyncs")
        assert (system.count().dead_letters, system.count().outbox_pending) == (5, 0)
        # Stores still succeed while everything is dead-lettered.
        assert system.store("stored after the dead letters").sync_state == "sync_pending"

        proxy.fault = "pass"
        assert system.retry_dead_letters() == 5
        assert system.dead_letters().letters == ()
        wait_until(
            lambda: system.count().outbox_pending == 0 and system.count().dead_letters == 0,
            "the requeued memories pushed",
            describe=system.count,
        )
        assert {system.get(memory_id).sync_state for memory_id in ids} == {"synced"}
        with hub.client(key) as client:
            assert set(hub_live_without_duplicates(client)) >= set(ids)
            assert client.count().total == 6


def test_a_hub_answering_503_costs_no_attempt_and_everything_arrives_once_it_answers(
    hub: HubProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    """503 with Retry-After is the hub saying its storage cannot answer now (PostgreSQL down
    or restarting, docs/deploying-the-hub.md): the memories wait, however many pushes it
    refuses, none becomes a dead letter; once it answers, every one arrives."""
    key = hub.add_key("faults-503")
    proxy.fault = "status-503"
    remote = fast_remote(proxy.url, key, timeout=TIMEOUT, max_attempts=MAX_ATTEMPTS)
    with MemorySystem.open(tmp_path / "client.db", config=Config(remote=remote)) as system:
        wait_until(lambda: system.sync_report().state == "syncing", "the key checked")
        ids = [system.store(f"stored while the hub answers 503, {i}").id for i in range(5)]
        wait_until(
            lambda: proxy.requests > 2 * MAX_ATTEMPTS,
            "pushes refused more often than a memory's attempts",
            describe=lambda: (system.count(), proxy.requests),
        )
        counted = system.count()
        assert (counted.dead_letters, counted.outbox_pending) == (0, 5)
        proxy.fault = "pass"
        wait_until(
            lambda: system.count().outbox_pending == 0,
            "the waiting memories pushed",
            describe=system.count,
        )
        assert system.count().dead_letters == 0
        assert {system.get(memory_id).sync_state for memory_id in ids} == {"synced"}
        with hub.client(key) as client:
            assert set(hub_live_without_duplicates(client)) == set(ids)


def test_a_revoked_key_degrades_to_local_only_and_sync_resumes_when_restored(
    hub: HubProcess, tmp_path: Path
) -> None:
    """A revoked key: auth-failed with the hub's reason, stores succeed; restored: all arrives."""
    key = hub.add_key("revoked")
    remote = fast_remote(hub.url, key)
    with MemorySystem.open(tmp_path / "client.db", config=Config(remote=remote)) as system:
        first = system.store("stored while the key works").id
        wait_until(lambda: system.count().outbox_pending == 0, "the first memory pushed")

        hub.revoke(key)
        # The next sync call (a pull every interval) meets the 403.
        report = wait_until(
            lambda: (r := system.sync_report()) is not None and r.state == "auth-failed" and r,
            "sync saw the revocation",
        )
        key_id = key.split("_")[1]
        assert "key_revoked" in report.reason
        assert key_id in report.reason  # the hub's own words name the key
        assert system.count().sync.startswith("auth-failed")
        assert key_id in system.count().sync
        pending = [system.store(f"stored while revoked {i}").id for i in range(5)]
        assert {system.get(m).sync_state for m in pending} == {"sync_pending"}
        assert system.count().outbox_pending == 5
        assert system.count().dead_letters == 0  # a refused key costs no attempts
        with hub.client(hub.add_key("revoked")) as other_key:
            assert set(hub_live_without_duplicates(other_key)) == {first}

        restore_key(hub.db, key)
        wait_until(
            lambda: system.count().outbox_pending == 0,
            "sync resumed by itself",
            describe=system.sync_report,
        )
        assert system.sync_report().state == "syncing"
        assert {system.get(m).sync_state for m in pending} == {"synced"}
        with hub.client(key) as client:
            assert set(hub_live_without_duplicates(client)) == {first, *pending}
