"""The hub's logic in-process: last-writer-wins convergence, group commit, every reply answered.

These run HubCore without sockets (``mock_transport`` over a ``DirectBackend``,
as the simulation will) and the HubStoreActor on the threaded runtime.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pykka
import pytest
from hub_fixtures import HubProcess, memory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_fixtures import HUB_ENGINES, target_for
from starlette.testclient import TestClient

from actors.errors import StorageBusy, StorageError, Unavailable
from actors.hub.app import create_app
from actors.hub.core import HubCore, HubRequest
from actors.hub.database import HubDatabase
from actors.hub.direct import DirectBackend
from actors.hub.engine import EngineOpener, HubEngine
from actors.hub.engines import prepare_target, target_opener
from actors.hub.key_admin import add_key
from actors.hub.messages import HubPush, HubReadCounts
from actors.hub.schema import prepare_hub_file
from actors.hub.service import HubConfig, HubService
from actors.hub.store import HubStoreActor, HubStoreConfig
from actors.hub.transport import mock_transport
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.wire import ItemResult, WireMemory

IDS = [f"00000000-0000-7000-8000-00000000000{i}" for i in range(4)]
_TENANTS = itertools.count()


@pytest.fixture(scope="module", params=HUB_ENGINES)
def direct(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DirectBackend, Path | str]]:
    """A hub database (per engine) served in the test's own thread (no actor, no socket)."""
    runtime = ThreadedRuntime(seed=7)
    db = target_for(request, tmp_path_factory.mktemp("direct"))
    backend = DirectBackend.open(db, new_id=runtime.new_id, now=runtime.wall_time)
    yield backend, db
    backend.close()


def _client(backend: DirectBackend, db: Path | str, tenant: str) -> HubClient:
    return HubClient(
        "http://hub.test", add_key(db, tenant), transport=mock_transport(HubCore(backend))
    )


def _histories(item: st.SearchStrategy[WireMemory]) -> st.SearchStrategy[list[WireMemory]]:
    """1 to 12 writes; a replica never writes two different states under one version:
    (version, origin) names a write, which is what makes a replay "unchanged"."""
    return st.lists(item, min_size=1, max_size=12, unique_by=lambda m: (m.id, m.version, m.origin))


#: Hypothesis on the module's ``direct`` hub (each example works in tenants of its own).
_examples = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

writes = _histories(
    st.builds(
        lambda ident, version, origin, deleted: memory(
            f"the one text of {ident}",  # one text per id: dedup never interferes here
            id=ident,
            version=1_000 + version,
            origin=origin,
            deleted=deleted,
        ),
        st.sampled_from(IDS),
        st.integers(0, 3),
        st.sampled_from(["origin-a", "origin-b"]),
        st.booleans(),
    )
)


@_examples
@given(history=writes, order=st.randoms(use_true_random=False), cut=st.integers(1, 5))
def test_any_delivery_order_and_batching_converges_to_the_greatest_version(
    direct: tuple[DirectBackend, Path | str], history: list[WireMemory], order: Any, cut: int
) -> None:
    """Writes pushed in any order and batching, twice over: the hub holds max(version, origin)."""
    backend, db = direct
    shuffled = list(history)
    order.shuffle(shuffled)
    tenant = f"prop-{next(_TENANTS)}"
    with _client(backend, db, tenant) as client:
        for start in range(0, len(shuffled), cut):
            client.push(shuffled[start : start + cut])
        client.push(shuffled)  # a full replay changes nothing
        state = {m.id: m for m in (c.memory for c in client.changes(limit=1000).changes)}
    winners: dict[str, WireMemory] = {}
    for item in history:
        best = winners.get(item.id)
        if best is None or (item.version, item.origin) > (best.version, best.origin):
            winners[item.id] = item
    assert state == winners


contents = _histories(
    st.builds(
        lambda ident, text, namespace, version, origin, deleted, keyed: attrs.evolve(
            memory(
                text,
                id=ident,
                namespace=namespace,
                version=1_000 + version,
                origin=origin,
                deleted=deleted,
            ),
            key=f"key-{ident[-1]}" if keyed and not deleted else None,
        ),
        st.sampled_from(IDS),
        st.sampled_from(["red", "green", "blue"]),
        st.sampled_from(["ns-a", "ns-b"]),
        st.integers(0, 3),
        st.sampled_from(["origin-a", "origin-b"]),
        st.booleans(),
        st.booleans(),
    )
)


@_examples
@given(history=contents)
def test_one_push_decides_each_item_as_if_the_ones_before_it_were_already_written(
    direct: tuple[DirectBackend, Path | str], history: list[WireMemory]
) -> None:
    """Ids repeated in a batch, texts that move between ids and namespaces, deletions, keys:
    one push of the whole batch answers and stores exactly what one push per item does
    (the engines decide a batch on what they read before writing it; the second write of
    an id, or of a freed dedup slot, must see the first)."""
    backend, _ = direct
    one_by_one, at_once = f"seq-{next(_TENANTS)}", f"batch-{next(_TENANTS)}"
    expected = [backend.push(one_by_one, (item,), 5.0)[0] for item in history]
    assert list(backend.push(at_once, tuple(history), 5.0)) == expected

    def state(tenant: str) -> tuple[Any, ...]:
        page = backend.changes(tenant, None, 1000, 5.0)
        counts = backend.counts(tenant, 5.0)
        return (
            [(change.seq, change.memory) for change in page.changes],
            counts.total,
            dict(counts.by_namespace),
            counts.forgotten,
        )

    assert state(at_once) == state(one_by_one)


def _connect_calling(on_commit: Callable[[], None]) -> Any:
    """A connect that calls ``on_commit()`` before each COMMIT (it may raise, as SQLite would)."""

    class Hooked(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
            if sql == "COMMIT":
                on_commit()
            return super().execute(sql, parameters)

    def connect(path: str) -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, factory=Hooked, timeout=5.0)

    return connect


def _spawn_store(
    db: Path | str, on_commit: Callable[[], None] = lambda: None
) -> tuple[ThreadedRuntime, pykka.ActorRef[Any]]:
    """A HubStoreActor on a new hub database that calls ``on_commit()`` before each commit.

    On SQLite the hook sits in the connection, before COMMIT (so it may raise
    as SQLite would); on PostgreSQL it wraps the engine's ``commit_pushes``.
    """
    runtime = ThreadedRuntime()
    if isinstance(db, str):
        prepare_target(db, now=runtime.wall_time)
        opener = _hooked_engine(target_opener(db), on_commit)
    else:
        prepare_hub_file(str(db), now=runtime.wall_time)
        opener = HubDatabase.opener(str(db), connect=_connect_calling(on_commit))
    return runtime, runtime.spawn(HubStoreActor, runtime, HubStoreConfig(opener))


def _hooked_engine(opener: EngineOpener, on_commit: Callable[[], None]) -> EngineOpener:
    def open_engine(new_id: Callable[[], str], monotonic: Callable[[], float] | None) -> HubEngine:
        engine = opener(new_id, monotonic)
        commit_pushes = engine.commit_pushes

        def hooked(*args: Any, **kwargs: Any) -> list[tuple[ItemResult, ...]]:
            on_commit()
            return commit_pushes(*args, **kwargs)

        engine.commit_pushes = hooked  # type: ignore[method-assign]
        return engine

    return open_engine


def test_concurrent_pushes_are_group_committed_and_each_answered_after_commit(
    hub_db: Path | str,
) -> None:
    """32 threads push at once: every push is answered ``applied``, in fewer commits than pushes."""
    commits: list[int] = []
    runtime, ref = _spawn_store(hub_db, lambda: commits.append(1))
    start = threading.Barrier(32)

    def push(index: int) -> tuple[ItemResult, ...]:
        start.wait(timeout=10)
        reply = runtime.new_future()
        ref.tell(HubPush(reply, "acme", (memory(f"push {index}"),)))
        result: tuple[ItemResult, ...] = reply.get(timeout=10)
        return result

    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(push, range(32)))
    finally:
        ref.stop(block=True, timeout=10)
        runtime.close()
    assert [r[0].status for r in results] == ["applied"] * 32
    assert 1 <= len(commits) < 32


def test_stopping_the_store_answers_every_queued_push(hub_db: Path | str) -> None:
    """Pushes queued when the store stops are committed or failed with Unavailable, never lost."""
    runtime, ref = _spawn_store(hub_db)
    replies = []
    for index in range(200):
        reply = runtime.new_future()
        try:
            ref.tell(HubPush(reply, "acme", (memory(f"queued {index}"),)))
        except pykka.ActorDeadError:
            break
        replies.append(reply)
        if index == 100:
            ref.stop(block=False)
    ref.stop(block=True, timeout=10)
    runtime.close()
    outcomes = []
    for reply in replies:
        try:
            outcomes.append(reply.get(timeout=5)[0].status)
        except Unavailable:
            outcomes.append("unavailable")
    assert len(outcomes) == len(replies) >= 101
    assert outcomes[:101] == ["applied"] * 101


def test_the_store_answers_sqlite_failures_as_our_storage_errors_and_serves_on(
    tmp_path: Path,
) -> None:
    """A locked file answers StorageBusy, an I/O error StorageError, never sqlite3; it serves on.

    SQLite's own errors, injected in its connection; PostgreSQL's real ones
    (a held lock, a stopped server) are tests/test_hub_postgres.py's.
    """
    failures: list[str] = []

    def commit() -> None:
        if failures:
            raise sqlite3.OperationalError(failures.pop())

    runtime, ref = _spawn_store(tmp_path / "hub.db", commit)

    def push(text: str) -> tuple[ItemResult, ...]:
        reply = runtime.new_future()
        ref.tell(HubPush(reply, "acme", (memory(text),)))
        result: tuple[ItemResult, ...] = reply.get(timeout=10)
        return result

    try:
        assert push("before the faults")[0].status == "applied"  # setup committed the hub id
        failures.append("database is locked")
        with pytest.raises(StorageBusy, match="stayed locked while the hub tried to store a push"):
            push("locked out")
        failures.append("disk I/O error")
        with pytest.raises(StorageError, match=r"could not store a push in .*disk I/O error"):
            push("lost to the disk")
        assert push("after the faults")[0].status == "applied"
        reply = runtime.new_future()
        ref.tell(HubReadCounts(reply, "acme"))
        assert reply.get(timeout=10).total == 2  # the failed pushes rolled back
    finally:
        ref.stop(block=True, timeout=10)
        runtime.close()


def test_a_direct_read_that_the_database_refuses_raises_a_storage_error_naming_it(
    hub_db: Path | str,
) -> None:
    """DirectBackend's callers get StorageError (what failed, where), never the driver's error."""
    runtime = ThreadedRuntime(seed=3)
    backend = DirectBackend.open(hub_db, new_id=runtime.new_id, now=runtime.wall_time)
    backend.close()
    where = r"postgresql://.*/hub_" if isinstance(hub_db, str) else r".*hub\.db"
    with pytest.raises(StorageError, match=rf"the hub could not count memories in {where}"):
        backend.counts("acme", 1.0)


def test_the_service_serves_the_core_and_stops_its_actors(hub_db: Path | str) -> None:
    """HubService in-process: requests through mock_transport, then a bounded, complete stop."""
    db = hub_db
    key = add_key(db, "acme")
    before = set(threading.enumerate())
    with (
        HubService.open(HubConfig(db=str(db))) as service,
        HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
    ):
        assert client.push([memory("via the actor")]).results[0].status == "applied"
        assert client.count().total == 1
        assert client.health().status == "ok"
    leftover = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert leftover == []


def test_many_clients_pushing_at_once_over_http_get_one_feed_without_gaps(
    hub_db: Path | str,
) -> None:
    """8 threads × 25 pushes to a real hub: 200 memories at sequence numbers exactly 1..200."""
    with HubProcess.running(hub_db) as hub:
        key = hub.add_key("acme")

        def pusher(index: int) -> list[str]:
            with hub.client(key) as client:
                return [
                    client.push([memory(f"thread {index} push {n}")]).results[0].status
                    for n in range(25)
                ]

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(pusher, range(8)) for s in batch]
        assert statuses == ["applied"] * 200
        with hub.client(key) as client:
            assert [c.seq for c in client.changes(limit=1000).changes] == list(range(1, 201))


def test_the_starlette_app_serves_an_open_service_it_does_not_own(hub_db: Path | str) -> None:
    """``create_app(service=...)`` answers over ASGI and leaves the service open for its owner."""
    db = hub_db
    key = add_key(db, "acme")
    with HubService.open(HubConfig(db=str(db))) as service:
        with TestClient(create_app(service=service)) as http:
            assert http.get("/healthz").json() == {"status": "ok", "protocol": 1}
            counted = http.get("/api/count", headers={"authorization": f"Bearer {key}"})
            assert counted.json()["total"] == 0
            assert http.get("/api/count").status_code == 401
        assert service.core.handle(HubRequest("GET", "/healthz")).status == 200
    with pytest.raises(ValueError, match="HubConfig"):
        create_app()
