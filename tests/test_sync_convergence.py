"""Replicas converge through a real hub: separate processes, tenants, a resync under load, skew.

Every hub here is a real ``memory-actors hub serve`` process on loopback;
replicas are real MemorySystems (in worker processes where the test says
so). Waits are bounded polls (:func:`hub_fixtures.wait_until`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import (
    HubProcess,
    fast_remote,
    forget,
    hub_live_without_duplicates,
    memory,
    preload,
    start_worker,
    wait_until,
    worker_result,
)

from actors import MemorySystem
from actors.errors import MemoryNotFound
from actors.runtime import ThreadedRuntime
from actors.system import Config


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub process for the module; each test takes a tenant of its own."""
    with HubProcess.running(tmp_path_factory.mktemp("hub") / "hub.db") as proc:
        yield proc


def _synced(system: MemorySystem, total: int) -> bool:
    counts = system.count()
    return counts.total == total and counts.outbox_pending == 0


def _live_ids(system: MemorySystem) -> set[str]:
    ids: set[str] = set()
    before = None
    while True:
        page = system.list(limit=200, before=before)
        ids.update(m.id for m in page.memories)
        if page.next_before is None:
            return ids
        before = page.next_before


def test_two_processes_converge_through_one_hub_with_stores_and_forgets(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Stores and forgets on either of two processes appear on both; the hub holds no duplicate."""
    key = hub.add_key("converge")
    shared = [f"shared fact {j}" for j in range(5)]

    def plan(me: str, other: str, drop_own: list[int], drop_other: list[int]) -> dict[str, Any]:
        stores = [{"content": f"{me} note {i}", "tags": [me]} for i in range(30)]
        stores += [{"content": text, "tags": [f"from-{me}"]} for text in shared]
        return {
            "db": str(tmp_path / f"{me}.db"),
            "url": hub.url,
            "key": key,
            "remote": {"interval": 0.1, "backoff": 0.05, "max_backoff": 0.5, "lease_ttl": 1.0},
            "stores": stores,
            "threads": 2,
            "forget_own": [f"{me} note {i}" for i in drop_own],
            "forget_remote": [f"{other} note {i}" for i in drop_other],
            "deadline": 45,
        }

    alpha = plan("alpha", "beta", drop_own=[0, 1, 2], drop_other=[3, 4])
    beta = plan("beta", "alpha", drop_own=[5, 6], drop_other=[7, 8])
    gone = {"alpha": {0, 1, 2, 7, 8}, "beta": {3, 4, 5, 6}}
    expect = [
        [f"{name} note {i}", [name]]
        for name in ("alpha", "beta")
        for i in range(30)
        if i not in gone[name]
    ]
    expect += [[text, ["from-alpha", "from-beta"]] for text in shared]
    alpha["expect"] = beta["expect"] = expect

    procs = [
        start_worker("sync-plan", alpha, tmp_path / "alpha.json"),
        start_worker("sync-plan", beta, tmp_path / "beta.json"),
    ]
    results = [worker_result(proc, deadline=60) for proc in procs]

    for result in results:
        assert result["errors"] == []
        assert result["dead_letters"] == 0
    # The same memories under the same ids (and tags) on both sides.
    views = [{(m["id"], m["content"], tuple(m["tags"])) for m in r["live"]} for r in results]
    assert views[0] == views[1]
    assert len(views[0]) == len(expect)
    # The same text stored on both ends as one memory, one id, both tags.
    merged = {content: tags for _, content, tags in views[0] if content in shared}
    assert merged == dict.fromkeys(shared, ("from-alpha", "from-beta"))
    with hub.client(key) as client:
        live = hub_live_without_duplicates(client)
        assert set(live) == {memory_id for memory_id, _, _ in views[0]}
        assert client.count().total == len(expect)
        assert client.count().forgotten >= sum(len(g) for g in gone.values())


def test_tenants_never_see_each_others_memories(hub: HubProcess, tmp_path: Path) -> None:
    """Tenants A and B on one hub: neither reads, counts, overwrites or deletes the other's."""
    key_a, key_b = hub.add_key("tenant-a"), hub.add_key("tenant-b")
    config_a = Config(remote=fast_remote(hub.url, key_a))
    config_b = Config(remote=fast_remote(hub.url, key_b))
    with (
        MemorySystem.open(tmp_path / "a.db", config=config_a) as a,
        MemorySystem.open(tmp_path / "b.db", config=config_b) as b,
    ):
        a_ids = {a.store(f"a private {i}").id for i in range(10)}
        b_ids = {b.store(f"b private {i}").id for i in range(10)}
        # The same text in both tenants stays two memories: dedup never crosses tenants.
        a_same, b_same = a.store("the same text").id, b.store("the same text").id
        assert a_same != b_same
        with hub.client(key_a) as hub_a, hub.client(key_b) as hub_b:
            wait_until(lambda: hub_b.count().total == 11, "B's memories on the hub")
            wait_until(lambda: hub_a.count().total == 11, "A's memories on the hub")
            # Key A pushes B's ids (a tombstone, an overwrite): they land in A's tenant only.
            victim = next(iter(b_ids))
            tomb = forget(memory("x", id=victim), version=int(time.time() * 1000) + 60_000)
            rewrite = memory("taken over", id=b_same, version=int(time.time() * 1000) + 60_000)
            results = hub_a.push([tomb, rewrite]).results
            assert [r.status for r in results] == ["applied", "applied"]
            # A sentinel pushed last to each tenant: once a replica holds it, it has
            # pulled everything its tenant's feed held before it.
            sentinel_a = memory("sentinel for a", origin="test")
            sentinel_b = memory("sentinel for b", origin="test")
            hub_a.push([sentinel_a])
            hub_b.push([sentinel_b])

            def has(system: MemorySystem, memory_id: str) -> bool:
                try:
                    system.get(memory_id)
                except MemoryNotFound:
                    return False
                return True

            wait_until(lambda: has(a, sentinel_a.id), "A pulled its sentinel")
            wait_until(lambda: has(b, sentinel_b.id), "B pulled its sentinel")
            wait_until(lambda: _synced(a, 13) and _synced(b, 12), "both outboxes drained")

            assert _live_ids(a) == a_ids | {a_same, sentinel_a.id, b_same}
            assert _live_ids(b) == b_ids | {b_same, sentinel_b.id}
            assert b.get(victim).content.startswith("b private")
            assert b.get(b_same).content == "the same text"
            assert a.get(b_same).content == "taken over"  # A's own memory under that id
            assert {e.id for e in hub_live_without_duplicates(hub_b).values()} == _live_ids(b)
            assert hub_b.count().total == 12
            assert hub_b.count().forgotten == 0


def test_stores_from_32_threads_during_a_full_resync_of_20k_all_arrive(
    hub: HubProcess, tmp_path: Path
) -> None:
    """32 threads store while a fresh replica pulls 20k memories: no error, all on both sides."""
    key = hub.add_key("resync")
    with hub.client(key, timeout=30.0) as client:
        preloaded = set(preload(client, 20_000, "preloaded memory"))
        config = Config(remote=fast_remote(hub.url, key))
        with MemorySystem.open(tmp_path / "fresh.db", config=config) as system:
            errors: list[str] = []
            acked: list[str] = []
            start = threading.Barrier(32)

            def writer(n: int) -> None:
                start.wait(timeout=10)
                for i in range(25):
                    try:
                        acked.append(system.store(f"new during resync {n}-{i}").id)
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")

            pool = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join(timeout=60)
            assert errors == []
            assert len(acked) == 800
            total = 20_000 + 800
            wait_until(
                lambda: _synced(system, total) and client.count().total == total,
                "20k pulled and 800 pushed",
                deadline=60,
                describe=lambda: (system.count(), client.count()),
            )
            assert system.count().dead_letters == 0
            local = _live_ids(system)
            assert local == preloaded | set(acked)
            assert set(hub_live_without_duplicates(client)) == local


class SkewedRuntime(ThreadedRuntime):
    """The threaded runtime on a machine whose wall clock is ``skew`` seconds off."""

    def __init__(self, skew: float) -> None:
        super().__init__()
        self.skew = skew

    def wall_time(self) -> float:
        return super().wall_time() + self.skew


def test_a_replica_with_a_slow_clock_still_forgets_and_merges_what_it_pulled(
    hub: HubProcess, tmp_path: Path
) -> None:
    """A forget or tag union on a replica 30 s behind outranks the write it saw (HLC receive)."""
    key = hub.add_key("skew")
    remote = fast_remote(hub.url, key)
    with (
        MemorySystem.open(
            tmp_path / "ahead.db", config=Config(remote=remote), runtime=SkewedRuntime(0.0)
        ) as ahead,
        MemorySystem.open(
            tmp_path / "behind.db", config=Config(remote=remote), runtime=SkewedRuntime(-30.0)
        ) as behind,
    ):
        doomed = ahead.store("written on the machine that is ahead").id
        tagged = ahead.store("tagged on both machines", tags=["ahead"]).id

        def pulled() -> bool:
            return _synced(behind, 2)

        wait_until(pulled, "the slow replica pulled both memories")
        behind.forget(doomed)
        assert behind.store("tagged on both machines", tags=["behind"]).id == tagged

        def converged() -> bool:
            try:
                ahead.get(doomed)
            except MemoryNotFound:
                return _synced(ahead, 1) and ahead.get(tagged).tags == ("ahead", "behind")
            return False

        wait_until(converged, "the forget and the tag union reached the fast replica")
        wait_until(lambda: _synced(behind, 1), "the slow replica settled")
        with pytest.raises(MemoryNotFound):
            behind.get(doomed)
        assert behind.get(tagged).tags == ("ahead", "behind")
        with hub.client(key) as client:
            live = hub_live_without_duplicates(client)
            assert set(live) == {tagged}
