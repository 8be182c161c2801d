"""memory_recall with a real hub: bounded by its deadline, honest about its status.

The hub is a real subprocess; slowness comes from a real delaying proxy in
front of it (tests/slow_proxy.py), and failures from a real stopped hub, a
revoked key, and a server answering garbage (tests/fault_server.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fault_server import fault_server
from hub_fixtures import HubProcess
from mcp import Client
from slow_proxy import slow_proxy

from actors import AsyncMemorySystem, MemorySystem
from actors.server import build_server
from actors.sync_model import RemoteConfig
from actors.system import Config
from actors.wire import RecallHits, RemoteHit

FACTS = [
    "The staging database runs on port 5433 behind pgbouncer",
    "Deploys to production happen every Tuesday after the standup",
    "The on-call rotation is kept in the team calendar",
]
RECALL_TIMEOUT = 0.5


def _until(predicate: Any, deadline: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A real hub holding FACTS (pushed and embedded), with one tenant key."""
    with HubProcess.running((tmp_path / "hub.db").absolute()) as running:
        key = running.add_key("team")
        running.key = key  # type: ignore[attr-defined]
        config = Config(remote=RemoteConfig(running.url, key, interval=0.1))
        with MemorySystem.open(tmp_path / "loader.db", config=config) as loader:
            for fact in FACTS:
                loader.store(fact, tags=["ops"])
            _until(lambda: loader.count().outbox_pending == 0, what="the push")
        with running.client(key) as client:
            _until(
                lambda: len(client.recall("staging database port", limit=5).hits) >= 1,
                what="the hub to embed",
            )
        yield running


def _system(path: Path, url: str, key: str, **config: Any) -> MemorySystem:
    remote = RemoteConfig(url, key, interval=0.1, timeout=5.0)
    return MemorySystem.open(
        path, config=Config(remote=remote, recall_timeout=RECALL_TIMEOUT, **config)
    )


def test_a_slow_hub_gets_retry_with_local_results_then_the_cached_answer(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Past the deadline: status retry and local hits; the retry is served from the cache."""
    key: str = hub.key  # type: ignore[attr-defined]
    with (
        slow_proxy(hub.url, delay=2.0) as proxy,
        _system(tmp_path / "c.db", proxy.url, key) as mem,
    ):
        _until(lambda: mem.count().total == len(FACTS), what="the pull through the proxy")
        started = time.monotonic()
        first = mem.recall("staging database port")
        elapsed = time.monotonic() - started
        assert first.status == "retry"
        assert first.retry_after is not None
        assert "call memory_recall again" in first.reason
        assert [hit.source for hit in first.hits] == ["local"]
        assert elapsed < RECALL_TIMEOUT + 1.0
        _until(lambda: mem.recall("staging database port").status == "complete", what="cache")
        done = mem.recall("staging database port")
        assert done.status == "complete"
        assert done.hits[0].content == FACTS[0]
        assert done.hits[0].source == "both"
        # Retries while the first request ran shared it; the answer came from the cache.
        assert proxy.slow_requests == 1


def test_stores_never_wait_on_recalls_against_a_hub_that_does_not_answer(
    hub: HubProcess, tmp_path: Path
) -> None:
    """20 recalls stuck at the hub, 8 threads storing meanwhile: every store completes."""
    key: str = hub.key  # type: ignore[attr-defined]
    with (
        slow_proxy(hub.url, delay=60.0) as proxy,
        _system(tmp_path / "c.db", proxy.url, key) as mem,
    ):
        statuses: list[str] = []
        stored: list[str] = []
        errors: list[BaseException] = []

        def recaller(n: int) -> None:
            try:
                statuses.append(mem.recall(f"question number {n}").status)
            except BaseException as exc:
                errors.append(exc)

        def storer(n: int) -> None:
            for i in range(25):
                try:
                    stored.append(mem.store(f"writer {n} note {i}").id)
                except BaseException as exc:
                    errors.append(exc)

        recallers = [threading.Thread(target=recaller, args=(n,)) for n in range(20)]
        storers = [threading.Thread(target=storer, args=(n,)) for n in range(8)]
        for thread in recallers + storers:
            thread.start()
        for thread in storers:
            thread.join(timeout=30)
        # The hub has not answered a single recall, yet all 200 stores are done.
        assert proxy.slow_requests >= 1
        assert len(stored) == 200
        for thread in recallers:
            thread.join(timeout=30)
        assert errors == []
        assert statuses == ["retry"] * 20


@pytest.mark.parametrize("era", ["auto", "legacy"])
def test_an_mcp_client_gets_progress_and_a_retry_status(
    hub: HubProcess, tmp_path: Path, era: str
) -> None:
    """The real SDK client sees progress at start and at the timeout, and status retry."""
    key: str = hub.key  # type: ignore[attr-defined]
    with (
        slow_proxy(hub.url, delay=2.0) as proxy,
        _system(tmp_path / "c.db", proxy.url, key) as mem,
    ):
        server = build_server(mem)
        seen: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            seen.append((done, total, message))

        async def scenario() -> dict[str, Any]:
            async with Client(server, mode=era) as client:
                result = await client.call_tool(
                    "memory_recall", {"query": "deploy day"}, progress_callback=progress
                )
                assert result.structured_content is not None
                return result.structured_content

        data = anyio.run(scenario)
        assert data["status"] == "retry"
        assert [round(done) for done, _, _ in seen] == [0, 1]
        assert seen[-1][2] is not None
        assert seen[-1][2].startswith("retry")


def test_a_stopped_hub_means_local_results_with_the_reason(hub: HubProcess, tmp_path: Path) -> None:
    """Hub down: status local, the reason names the failure, local hits still come."""
    key: str = hub.key  # type: ignore[attr-defined]
    with _system(tmp_path / "c.db", hub.url, key) as mem:
        _until(lambda: mem.count().total == len(FACTS), what="the pull")
        hub.stop()
        result = mem.recall("staging database port")
        assert result.status == "local"
        assert "remote recall failed" in result.reason
        assert result.hits
        assert result.hits[0].source == "local"


def test_a_revoked_key_means_local_results_with_the_reason(hub: HubProcess, tmp_path: Path) -> None:
    """401/403 from the hub: status local, the reason says the key was refused."""
    key: str = hub.key  # type: ignore[attr-defined]
    hub.revoke(key)
    with _system(tmp_path / "c.db", hub.url, key) as mem:
        mem.store("a local note about the staging database")
        result = mem.recall("staging database")
        assert result.status == "local"
        assert "403" in result.reason or "revoked" in result.reason
        assert [hit.source for hit in result.hits] == ["local"]


def test_garbage_from_the_hub_means_local_results_with_the_reason(tmp_path: Path) -> None:
    """A server answering garbage: status local with the protocol error as the reason."""
    with fault_server() as bad:
        bad.fault = "garbage"
        with MemorySystem.open(
            tmp_path / "c.db",
            config=Config(remote=RemoteConfig(bad.url, "mah_x_y"), recall_timeout=2.0, sync=False),
        ) as mem:
            mem.store("garbage in, local out")
            result = mem.recall("garbage")
            assert result.status == "local"
            assert "remote recall failed" in result.reason
            assert [hit.source for hit in result.hits] == ["local"]


def test_a_hub_that_ignores_namespace_prefix_still_gives_only_the_subtree(
    tmp_path: Path,
) -> None:
    """An older hub answers hits from every namespace: the client drops those outside the prefix."""
    hits = [
        RemoteHit(str(uuid.uuid4()), namespace, f"remote tea of {namespace}", (), 0.9, 1.0)
        for namespace in ("users/alice/prefs", "users/alicex", "users/alice", "team")
    ]
    with fault_server() as old:
        old.fault = "canned"
        old.canned = json.dumps(RecallHits(tuple(hits), ranking="hybrid").to_json()).encode()
        config = Config(remote=RemoteConfig(old.url, "mah_x_y"), recall_timeout=5.0, sync=False)
        with MemorySystem.open(tmp_path / "c.db", config=config) as mem:
            mem.store("local tea of alice", namespace="users/alice/x")
            mem.store("local tea of alicex", namespace="users/alicex")
            result = mem.recall("tea", namespace_prefix="users/alice", limit=10)
            assert json.loads(old.last_body)["namespace_prefix"] == "users/alice"
    assert result.status == "complete"
    assert sorted((h.namespace, h.source) for h in result.hits) == [
        ("users/alice", "remote"),
        ("users/alice/prefs", "remote"),
        ("users/alice/x", "local"),
    ]


def test_the_async_facade_recalls_complete_and_retry_as_the_blocking_one(
    hub: HubProcess, tmp_path: Path
) -> None:
    """AsyncMemorySystem.recall: complete with the hub's hits; past the deadline, retry."""
    key: str = hub.key  # type: ignore[attr-defined]
    with _system(tmp_path / "c.db", hub.url, key) as mem:
        _until(lambda: mem.count().total == len(FACTS), what="the pull")
        memory = AsyncMemorySystem(mem)

        def recall() -> Any:
            return asyncio.run(memory.recall("staging database port"))

        _until(lambda: recall().status == "complete", what="the hub's answer")
        done = recall()
        assert (done.status, done.hits[0].content, done.hits[0].source) == (
            "complete",
            FACTS[0],
            "both",
        )
    with (
        slow_proxy(hub.url, delay=2.0) as proxy,
        _system(tmp_path / "d.db", proxy.url, key) as mem,
    ):
        _until(lambda: mem.count().total == len(FACTS), what="the pull through the proxy")
        started = time.monotonic()
        late = asyncio.run(AsyncMemorySystem(mem).recall("staging database port"))
        assert late.status == "retry"
        assert [hit.source for hit in late.hits] == ["local"]
        assert time.monotonic() - started < RECALL_TIMEOUT + 1.0
