"""Scenarios: small whole runs of the production actors under one seed, with checkers.

A scenario is a function ``(sim) -> None`` that builds a world, runs
concurrent clients, and raises :class:`CheckFailed` when an invariant does not
hold. :func:`run_scenario` wraps it with the universal checks (every reply
future answered at quiescence) and returns the trace.

Scenarios use a real SQLite file, copied from a migrated template so that a
sweep does not pay for migrations thousands of times.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pykka

from actors.embedding import EmbeddingSettings
from actors.errors import MemoryActorsError, MemoryNotFound, Unavailable
from actors.messages import ForgetMemory, GetMemory, Migrate, Ping, RemoteRecall, StoreMemory
from actors.migrations import MigrationActor, migrate
from actors.model import StoreReceipt, content_hash
from actors.sim.faults import FaultPlan
from actors.sim.hub import SimHub
from actors.sim.runtime import Client, Outcome, SimRuntime, Sleep
from actors.sim.sharing import SimNetwork, SimProcess
from actors.sim.sqlite import sqlite_connector
from actors.store import StoreActor, StoreConfig
from actors.system import Config, MemorySystem

__all__ = [
    "SCENARIOS",
    "CheckFailed",
    "Scenario",
    "fresh_database",
    "run_scenario",
]

Scenario = Callable[[SimRuntime], None]


class CheckFailed(AssertionError):
    """An invariant did not hold in a simulated run."""


_TEMPLATE: dict[str, str] = {}


def _scratch_dir() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    if "dir" not in _TEMPLATE:
        _TEMPLATE["dir"] = tempfile.mkdtemp(prefix="memory-actors-sim-", dir=base)
    return _TEMPLATE["dir"]


def fresh_database(name: str) -> str:
    """A path to a copy of a freshly migrated database (made once per process)."""
    folder = _scratch_dir()
    template = os.path.join(folder, "template.db")
    if "path" not in _TEMPLATE:
        migrate(template, now=time.time)
        conn = sqlite3.connect(template)
        conn.execute("PRAGMA journal_mode = DELETE")  # copies need no -wal file
        conn.close()
        _TEMPLATE["path"] = template
    target = os.path.join(folder, f"{name}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.unlink(target + suffix)
    shutil.copyfile(template, target)
    return target


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _stored_ids(path: str) -> dict[str, bool]:
    conn = sqlite3.connect(path)
    try:
        return {row[0]: bool(row[1]) for row in conn.execute("SELECT id, deleted FROM memories")}
    finally:
        conn.close()


def check_all_answered(sim: SimRuntime) -> None:
    """Every reply future that entered a mailbox was answered by quiescence."""
    sim.run(until=sim.now + 3600)
    missing = sim.unanswered()
    if missing:
        raise CheckFailed(f"{len(missing)} reply futures never answered: {missing[:5]}")


def check_no_acknowledged_write_lost(sim: SimRuntime, path: str) -> None:
    """Every store a client saw succeed is in the file, live."""
    stored = _stored_ids(path)
    for entry in sim.trace.history:
        if entry["op"] == "store" and entry["phase"] == "ok":
            memory_id = entry["value"]
            if memory_id not in stored:
                raise CheckFailed(f"acknowledged store {memory_id} is not in the database")
            if stored[memory_id]:
                raise CheckFailed(f"acknowledged store {memory_id} is a tombstone")


def check_named_errors_only(sim: SimRuntime) -> None:
    """Every failed operation failed with an error of our tree (or Pykka's for stop)."""
    for entry in sim.trace.history:
        if entry["phase"] == "fail" and not entry["value"].startswith("named:"):
            raise CheckFailed(f"{entry['client']} {entry['op']} failed unnamed: {entry['value']}")


def _outcome(sim: SimRuntime, client: str, op: str, outcome: Outcome) -> Any:
    """Record an outcome in the history; ambiguous storage errors are 'info'."""
    if outcome.ok:
        value = outcome.value
        sim.trace.record(client, op, "ok", value.id if isinstance(value, StoreReceipt) else None)
        return value
    error = outcome.error
    named = isinstance(error, MemoryActorsError | pykka.ActorDeadError)
    # The scratch folder differs per process: keep it out of the trace.
    message = str(error).replace(_scratch_dir(), "<scratch>")[:200]
    label = f"{'named' if named else 'unnamed'}:{type(error).__name__}:{message}"
    # A failed write may still have committed (an ambiguous commit): that is 'info'.
    sim.trace.record(client, op, "info" if op == "store" and named else "fail", label)
    return None


def _store_request(content: str, tags: tuple[str, ...] = ()) -> Callable[[Any], StoreMemory]:
    digest = content_hash(content)
    return lambda reply: StoreMemory(reply, content, digest, "default", tags, "{}")


def _writer(
    sim: SimRuntime, name: str, ref_of: Callable[[], pykka.ActorRef[Any] | None], items: int
) -> Client:
    """Store ``items`` memories, reading each back (read-your-writes)."""
    rng = sim.rng(f"client.{name}")
    for i in range(items):
        # Some content repeats across clients, so dedup is exercised too.
        content = f"shared note {rng.randrange(3)}" if rng.random() < 0.2 else f"{name} note {i}"
        ref = ref_of()
        if ref is None or not ref.is_alive():
            yield Sleep(0.05)
            continue
        reply = sim.new_future()
        sim.trace.record(name, "store", "invoke", content)
        try:
            ref.tell(_store_request(content)(reply))
        except pykka.ActorDeadError:
            sim.trace.record(name, "store", "fail", "named:ActorDeadError")
            continue
        receipt = _outcome(sim, name, "store", (yield reply))
        if receipt is None or not ref.is_alive():
            continue
        check = sim.new_future()
        try:
            ref.tell(GetMemory(check, receipt.id))
        except pykka.ActorDeadError:
            continue
        got = yield check
        if not got.ok and isinstance(got.error, MemoryNotFound):
            raise CheckFailed(f"{name} could not read its acknowledged write {receipt.id}")
        if got.ok and got.value.content != content:
            raise CheckFailed(f"{name} read {got.value.content!r}, stored {content!r}")


def _stopper(sim: SimRuntime, ref: pykka.ActorRef[Any]) -> Client:
    """Stop the actor at a seeded moment, mid-load."""
    yield Sleep(sim.rng("client.stopper").uniform(0, 0.0004))
    sim.trace.record("stopper", "stop", "invoke")
    try:
        ref.stop(block=False)
    except pykka.ActorDeadError:
        sim.trace.record("stopper", "stop", "info", "named:ActorDeadError")
        return
    # stop()'s future answers through a get hook, which cannot be yielded: poll instead.
    while ref.is_alive():
        yield Sleep(0.001)
    sim.trace.record("stopper", "stop", "ok")


def store_actor_scenario(
    store_class: type[StoreActor] = StoreActor, *, writers: int = 3, items: int = 4
) -> Scenario:
    """The StoreActor alone: group commit under concurrent writers, a stop, and SQLite faults."""

    def scenario(sim: SimRuntime) -> None:
        path = fresh_database(f"store-{sim.seed}")
        try:
            config = StoreConfig(
                path=path,
                synchronous="OFF",
                busy_timeout=0,
                busy_retries=3,
                connect=sqlite_connector(sim),
            )
            ref = sim.spawn(store_class, sim, config)
            clients: list[tuple[str, Client]] = [
                (f"w{n}", _writer(sim, f"w{n}", lambda: ref, items)) for n in range(writers)
            ]
            if sim.rng("scenario").random() < 0.5:
                clients.append(("stopper", _stopper(sim, ref)))
            sim.run_clients(clients)
            check_all_answered(sim)
            if ref.is_alive():
                done = ref.stop(block=False)
                sim.run(until=sim.now + 60)
                del done
            check_all_answered(sim)
            check_no_acknowledged_write_lost(sim, path)
            check_named_errors_only(sim)
        finally:
            _remove(path)

    return scenario


def system_scenario(*, writers: int = 3, items: int = 3) -> Scenario:
    """The whole MemorySystem: supervisor restarts under crashes, stops and SQLite faults."""

    def scenario(sim: SimRuntime) -> None:
        path = fresh_database(f"system-{sim.seed}")
        try:
            system = _open_system(sim, path)
        except MemoryActorsError as exc:
            # Faults may hit the store's first transaction: open() must then fail by name.
            message = str(exc).replace(_scratch_dir(), "<scratch>")
            sim.trace.record("open", "open", "fail", f"named:{type(exc).__name__}:{message}")
            check_all_answered(sim)
            _remove(path)
            return
        try:
            cell = system._cells["store"]
            clients: list[tuple[str, Client]] = [
                (f"w{n}", _writer(sim, f"w{n}", lambda: cell.ref, items)) for n in range(writers)
            ]
            if sim.rng("scenario").random() < 0.5 and cell.ref is not None:
                clients.append(("stopper", _stopper(sim, cell.ref)))
            sim.run_clients(clients)
            check_all_answered(sim)
        finally:
            system.close()
        check_all_answered(sim)
        check_no_acknowledged_write_lost(sim, path)
        check_named_errors_only(sim)
        _remove(path)

    return scenario


def _sim_config(**settings: Any) -> Config:
    """What every scenario's system shares: ``synchronous`` OFF, and no idle merge of the
    keyword index, whose timer would land in the quiet spells the checks wait through
    (and the scenarios' files never gather enough segments for it to act)."""
    return Config(synchronous="OFF", merge_index_idle=None, **settings)


def _open_system(sim: SimRuntime, path: str) -> MemorySystem:
    return MemorySystem.open(
        path,
        runtime=sim,
        config=_sim_config(
            semantic=False,
            busy_timeout=0,
            busy_retries=3,
            connect=sqlite_connector(sim),
            restart_backoff=0.01,
            restart_intensity=3,
            restart_window=1.0,
        ),
    )


def busy_backoff_scenario(sim: SimRuntime) -> None:
    """SQLITE_BUSY on most transactions: retries run on timers; answers are values or StorageBusy.

    Run with a plan of frequent busy faults (see :data:`DEFAULT_FAULTS`); a
    sweep checks in aggregate that backoff timers fired.
    """
    store_actor_scenario(writers=2, items=3)(sim)


def migration_scenario(sim: SimRuntime) -> None:
    """Several MigrationActors race on one fresh file: each step is applied exactly once."""
    folder = _scratch_dir()
    path = os.path.join(folder, f"migrate-{sim.seed}.db")
    _remove(path)
    try:
        refs = [
            sim.spawn(MigrationActor, sim, path, connect=sqlite_connector(sim)) for _ in range(3)
        ]

        def opener(n: int, ref: pykka.ActorRef[Any]) -> Client:
            reply = sim.new_future()
            ref.tell(Migrate(reply))
            sim.trace.record(f"m{n}", "migrate", "invoke")
            outcome = yield reply
            assert outcome is not None
            if outcome.ok:
                sim.trace.record(f"m{n}", "migrate", "ok", list(outcome.value.applied))
            else:
                _outcome(sim, f"m{n}", "migrate", outcome)

        sim.run_clients([(f"m{n}", opener(n, ref)) for n, ref in enumerate(refs)])
        for ref in refs:
            ref.stop(block=False)
        check_all_answered(sim)
        check_named_errors_only(sim)
        for entry in sim.trace.history:
            if entry["phase"] == "fail" and "UNIQUE constraint" in str(entry["value"]):
                raise CheckFailed(f"a migration step was applied twice: {entry['value']}")
        applied = [v for e in sim.trace.history if e["phase"] == "ok" for v in (e["value"] or [])]
        if len(applied) != len(set(applied)):
            raise CheckFailed(f"a migration step was reported applied twice: {applied}")
        if Path(path).exists():
            conn = sqlite3.connect(path)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                try:
                    rows = conn.execute("SELECT version FROM migrations ORDER BY 1").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            finally:
                conn.close()
            recorded = [r[0] for r in rows]
            if recorded != list(range(1, version + 1)):
                raise CheckFailed(f"schema {version} but steps recorded {recorded}")
            if not set(applied) <= set(recorded):
                raise CheckFailed(f"steps {applied} reported applied, {recorded} recorded")
    finally:
        _remove(path)
        for leftover in Path(folder).glob(f"migrate-{sim.seed}.db.*.bak"):
            leftover.unlink()


def ping_scenario(sim: SimRuntime) -> None:
    """The smallest whole run: a store actor on a real file answers a ping and a write."""
    path = fresh_database(f"ping-{sim.seed}")
    try:
        ref = sim.spawn(
            StoreActor,
            sim,
            StoreConfig(
                path=path, synchronous="OFF", busy_timeout=0, connect=sqlite_connector(sim)
            ),
        )
        pong = sim.new_future()
        ref.tell(Ping(pong))
        write = sim.new_future()
        ref.tell(_store_request("ping")(write))
        ref.stop(block=False)
        check_all_answered(sim)
    finally:
        _remove(path)


def _live(path: str) -> dict[tuple[str, str], str]:
    """(namespace, content hash) → id of every live memory in a replica's file."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT namespace, content_hash, id FROM memories WHERE deleted = 0"
        ).fetchall()
    finally:
        conn.close()
    live: dict[tuple[str, str], str] = {}
    for namespace, digest, memory_id in rows:
        if (namespace, digest) in live:
            raise CheckFailed(f"duplicate live content in one replica: {memory_id}")
        live[(namespace, digest)] = memory_id
    return live


def _syncer(
    sim: SimRuntime, name: str, system: MemorySystem, items: int, shared: list[str]
) -> Client:
    """Store (some content shared across replicas) and sometimes forget, through one replica."""
    rng = sim.rng(f"client.{name}")
    for i in range(items):
        content = rng.choice(shared) if rng.random() < 0.3 else f"{name} note {i}"
        sim.trace.record(name, "store", "invoke", content)
        try:
            reply = system.submit("store", _store_request(content))
        except MemoryActorsError as exc:
            sim.trace.record(name, "store", "fail", f"named:{type(exc).__name__}")
            yield Sleep(0.05)
            continue
        receipt = _outcome(sim, name, "store", (yield reply))
        if receipt is not None and rng.random() < 0.2:
            sim.trace.record(name, "forget", "invoke", receipt.id)
            try:
                gone = system.submit("store", functools.partial(_forget_request, receipt.id))
            except MemoryActorsError:
                continue
            outcome = yield gone
            sim.trace.record(name, "forget", "ok" if outcome.ok else "info", receipt.id)
        yield Sleep(rng.uniform(0, 0.02))


def lease_scenario(sim: SimRuntime) -> None:
    """Two processes on one file: one syncs; when it dies, the other takes over in time.

    Checks: never two live lease holders at once (sampled every 50 ms of
    virtual time); after the holder's process dies, the other holds the
    lease within ``lease_ttl`` plus one renewal period; everything stored
    through either process reaches the hub, once.
    """
    folder = _scratch_dir()
    hub_path = os.path.join(folder, f"lease-hub-{sim.seed}.db")
    path = fresh_database(f"lease-{sim.seed}")
    _remove(hub_path)
    hub = SimHub(sim, hub_path)
    hub.faults_on = False  # this scenario is about the lease, not the hub
    ttl = 1.0
    config = _sim_config(
        semantic=False,
        busy_timeout=0,
        remote=hub.remote(hub.add_key("tenant"), lease_ttl=ttl),
        hub_client=hub.client_factory,
    )
    first = _open_until_up(sim, path, config)
    second = _open_until_up(sim, path, config)
    systems = [first, second]

    def holders() -> list[int]:
        found = []
        for n, system in enumerate(systems):
            cell = system._cells["sync"]
            for task in sim._tasks:
                actor = getattr(task, "actor", None)
                if (
                    actor is not None
                    and getattr(task, "phase", "") == "running"  # a killed process holds nothing
                    and cell.ref is not None
                    and actor.actor_ref is cell.ref
                    and actor.lease
                    and sim.monotonic() < actor.lease_expires
                ):
                    found.append(n)
        return found

    def watch(until: float) -> None:
        while sim.now < until:
            sim.run(until=min(until, sim.now + 0.05))
            if len(holders()) > 1:
                raise CheckFailed(f"two processes hold the sync lease at t={sim.now:.3f}")

    try:
        shared = ["fact both processes write"]
        sim.run_clients(
            [
                (f"p{n}", _syncer(sim, f"p{n}", system, 3, shared))
                for n, system in enumerate(systems)
            ]
        )
        watch(sim.now + 2 * ttl)
        owner = holders()
        if len(owner) != 1:
            raise CheckFailed(f"expected one lease holder, found {owner}")
        dead = systems[owner[0]]
        survivor = systems[1 - owner[0]]
        assert dead._supervisor is not None
        sim.kill([*(c.ref for c in dead._cells.values() if c.ref is not None), dead._supervisor])
        killed_at = sim.now
        sim.run_clients([("after", _syncer(sim, "after", survivor, 2, shared))])
        # Expiry, then the survivor's next renewal tick.
        watch(killed_at + ttl + ttl / 3 + 0.2)
        if holders() != [systems.index(survivor)]:
            raise CheckFailed(f"no takeover {sim.now - killed_at:.2f}s after the holder died")
        deadline = sim.now + 10
        while _divergence(hub, _key_of(config), [path]) is not None:
            if sim.now >= deadline:
                raise CheckFailed(f"not converged: {_divergence(hub, _key_of(config), [path])}")
            watch(sim.now + 0.5)
        systems = [survivor]
    finally:
        for system in systems:
            system.close()
        hub.close()
        _remove(path)
        _remove(hub_path)
    check_all_answered(sim)
    check_named_errors_only(sim)


def _sim_embedder() -> Any:
    """The local EmbeddingActor's model in the simulation: the hashing embedder.

    Deterministic (BLAKE2b features, pure NumPy sums) and fast. The real
    MiniLM is not deterministic-runtime material: its floats depend on the
    BLAS build and thread count, and it costs ~10 ms a text; the tests of
    ``tests/test_local_semantic.py`` run it for real.
    """
    from actors.embedders import HashingEmbedder

    return HashingEmbedder(64)


def _check_every_memory_embedded_once(sim: SimRuntime, system: MemorySystem, path: str) -> None:
    """After a crash mid-backlog: every live memory ends with one vector of its text."""
    deadline = sim.now + 60

    def embedded() -> bool:
        conn = sqlite3.connect(path)
        try:
            live = set(conn.execute("SELECT rowid, content_hash FROM memories WHERE deleted = 0"))
            vectors = conn.execute(
                "SELECT memory_rowid, content_hash FROM memory_vectors"
            ).fetchall()
        finally:
            conn.close()
        return set(vectors) == live and len(vectors) == len(live)

    while not embedded():
        if system.status()["actors"]["embedding"]["status"] == "DEGRADED":
            raise CheckFailed("the embedding actor gave up: its restarts exceeded the limit")
        if sim.now >= deadline:
            raise CheckFailed(f"a memory lost its vector or never got one: {system.status()}")
        sim.run(until=sim.now + 0.5)


def recall_scenario(sim: SimRuntime) -> None:
    """Recall against a hub whose answers take up to 2 s: bounded, honest, then cached;
    local semantic recall embedding its backlog while its actor crashes.

    Checks: every recall answers within ``recall_timeout`` of virtual time,
    also while the EmbeddingActor crashes mid-backlog (``FAULT_FOCUS``); a
    late hub answer gives ``retry`` with local hits, and asking again after
    ``retry_after`` gives ``complete`` without a second hub request; identical
    concurrent requests share one hub request; after the crashes every live
    memory holds exactly one vector, of its current text (none lost, none
    duplicated, none stale).
    """
    from actors.embedders import HashingEmbedder

    folder = _scratch_dir()
    hub_path = os.path.join(folder, f"recall-hub-{sim.seed}.db")
    path = fresh_database(f"recall-{sim.seed}")
    _remove(hub_path)
    hub = SimHub(sim, hub_path, embedder=HashingEmbedder())
    hub.faults_on = False
    timeout = 0.5
    config = _sim_config(
        busy_timeout=0,
        remote=hub.remote(hub.add_key("tenant")),
        hub_client=hub.client_factory,
        recall_timeout=timeout,
        embedder=_sim_embedder,
        # Small batches: the backlog takes many steps, so crashes land mid-backlog.
        embedding=EmbeddingSettings(batch=3),
        restart_intensity=50,
    )
    system = _open_until_up(sim, path, config)
    try:
        for fact in ("the staging database listens on port 5433", "deploys happen on tuesday"):
            system.store(fact)
        for n in range(7):
            system.store(f"backlog note {n} about the release train")
        started = sim.now
        during = system.recall("release train notes")
        sim.trace.record("recall", "recall", "ok", during.status)
        if sim.now - started > timeout + 0.01:
            raise CheckFailed(f"recall mid-backlog took {sim.now - started:.3f}s")
        deadline = sim.now + 10
        while system.count().outbox_pending:
            if sim.now >= deadline:
                raise CheckFailed("the facts never reached the hub")
            sim.run(until=sim.now + 0.1)
        hub.faults_on = True
        for query in ("staging database port", "when do deploys happen"):
            before = hub.by_path.get("/api/recall", 0)
            started = sim.now
            result = system.recall(query)
            sim.trace.record("recall", "recall", "ok", result.status)
            if sim.now - started > timeout + 0.01:
                raise CheckFailed(f"recall took {sim.now - started:.3f}s (timeout {timeout}s)")
            if result.status == "retry":
                if any(h.source != "local" for h in result.hits):
                    raise CheckFailed(f"a retry must carry local hits only: {result.hits}")
                if not result.hits and "local store did not answer" not in result.reason:
                    raise CheckFailed(f"a retry without the local hits: {result.reason}")
                deadline = sim.now + 10
                status: str = result.status
                while status != "complete":
                    if sim.now >= deadline:
                        raise CheckFailed(f"the retry never completed: {result}")
                    sim.run(until=sim.now + (result.retry_after or 1.0))
                    result = system.recall(query)
                    status = result.status
            final: str = result.status
            if final != "complete":
                raise CheckFailed(f"expected a complete answer, got {final}: {result}")
            if hub.by_path.get("/api/recall", 0) - before != 1:
                raise CheckFailed("the retry was not served from the cache")
        shared = [system.submit("recall", _remote_recall("shared question")) for _ in range(3)]
        before = hub.by_path.get("/api/recall", 0)
        sim.run(until=sim.now + 5)
        if not all(f.done for f in shared):  # type: ignore[attr-defined]
            raise CheckFailed("a shared recall was never answered")
        if hub.by_path.get("/api/recall", 0) - before > 1:
            raise CheckFailed("identical in-flight recalls did not share one hub request")
        _check_every_memory_embedded_once(sim, system, path)
    finally:
        system.close()
        hub.close()
        _remove(path)
        _remove(hub_path)
    check_all_answered(sim)


def _remote_recall(query: str) -> Callable[[Any], RemoteRecall]:
    return lambda reply: RemoteRecall(reply, query, None, (), 10)


def _key_of(config: Config) -> str:
    assert config.remote is not None
    return config.remote.api_key


def _forget_request(memory_id: str, reply: Any) -> ForgetMemory:
    return ForgetMemory(reply, memory_id)


def sync_scenario(sim: SimRuntime) -> None:
    """Two replicas and a hub through hub faults: once faults stop, all three converge.

    Checks: no duplicate content anywhere; both replicas hold exactly the
    hub's live memories, under the same ids; every acknowledged store is live
    unless some client forgot it (or its twin); no push attempted more than
    ``max_attempts`` times; every reply future answered.
    """
    folder = _scratch_dir()
    hub_path = os.path.join(folder, f"hub-{sim.seed}.db")
    paths = [fresh_database(f"sync-{sim.seed}-{n}") for n in range(2)]
    _remove(hub_path)
    hub = SimHub(sim, hub_path)
    key = hub.add_key("tenant")
    remote = hub.remote(key, max_attempts=3)
    systems: list[MemorySystem] = []
    try:
        config = _sim_config(
            semantic=False,
            busy_timeout=0,
            remote=remote,
            hub_client=hub.client_factory,
            recall_timeout=0.5,
        )
        for path in paths:
            systems.append(_open_until_up(sim, path, config))
        shared = [f"shared fact {n}" for n in range(3)]
        sim.run_clients(
            [
                (f"r{n}", _syncer(sim, f"r{n}", system, 4, shared))
                for n, system in enumerate(systems)
            ]
        )
        for path in paths:
            _check_attempt_cap(path, remote.max_attempts)
        # Faults stop; dead letters are retried by an operator; time passes.
        # Faults stop (all of them), then time passes.
        hub.faults_on = False
        sim.faults = FaultPlan.none()
        sim.record_fault("faults stopped")
        for n, system in enumerate(systems):
            if any(c.status == "DEGRADED" for c in system._cells.values()):
                # The supervisor gave up after a crash storm, as it should: the
                # operator restarts that replica (a new process on the same file).
                sim.trace.record(f"r{n}", "restart", "ok", system.status()["state"])
                system.close()
                systems[n] = _open_until_up(sim, paths[n], config)
        for system in systems:
            _retry_dead(sim, system)
        deadline = sim.now + 30
        while True:
            sim.run(until=sim.now + 0.5)
            difference = _divergence(hub, key, paths)
            if difference is None:
                break
            if sim.now >= deadline:
                raise CheckFailed(f"no convergence 30 s after faults stopped: {difference}")
        check_named_errors_only(sim)
    finally:
        for system in systems:
            system.close()
        hub.close()
        for path in [*paths, hub_path]:
            _remove(path)
    # Closed systems have no periodic timers left: now the world can go quiet.
    check_all_answered(sim)


def _open_until_up(sim: SimRuntime, path: str, config: Config) -> MemorySystem:
    """Open a replica; a crash during startup is a named error, and the operator retries."""
    for _ in range(20):
        try:
            return MemorySystem.open(path, runtime=sim, config=config)
        except Unavailable as exc:
            sim.trace.record("open", "open", "info", f"named:Unavailable:{exc}")
            sim.run(until=sim.now + 0.2)
    raise CheckFailed(f"{path} never opened")


def _check_attempt_cap(path: str, cap: int) -> None:
    """No memory was pushed more often than the cap: past it, it is a dead letter."""
    conn = sqlite3.connect(path)
    try:
        worst = conn.execute("SELECT coalesce(max(attempts), 0) FROM outbox").fetchone()[0]
        live = conn.execute(
            "SELECT count(*) FROM outbox WHERE dead = 0 AND attempts >= ?", (cap,)
        ).fetchone()[0]
    finally:
        conn.close()
    if worst > cap or live:
        raise CheckFailed(f"attempts {worst} past the cap {cap} ({live} still queued)")


def storm_scenario(sim: SimRuntime) -> None:
    """Restart storms: the store crashes often; the supervisor backs off, then gives up.

    Checks (beyond the system scenario's): at quiescence the store is READY or
    DEGRADED, never stuck restarting, and a degraded store says why.
    """
    path = fresh_database(f"storm-{sim.seed}")
    try:
        system = _open_system(sim, path)
    except MemoryActorsError:
        check_all_answered(sim)
        _remove(path)
        return
    try:
        cell = system._cells["store"]
        sim.run_clients([(f"w{n}", _writer(sim, f"w{n}", lambda: cell.ref, 4)) for n in range(3)])
        sim.run(until=sim.now + 30)
        if cell.status not in ("READY", "DEGRADED"):
            raise CheckFailed(f"the store is {cell.status} 30 s after the storm")
        if cell.status == "DEGRADED" and "gave up after" not in cell.reason:
            raise CheckFailed(f"degraded without a reason: {cell.reason!r}")
    finally:
        system.close()
    check_all_answered(sim)
    check_no_acknowledged_write_lost(sim, path)
    check_named_errors_only(sim)
    _remove(path)


def _retry_dead(sim: SimRuntime, system: MemorySystem) -> None:
    """The operator's ``sync retry-dead``, repeated while the store restarts after a crash."""
    for _ in range(100):
        try:
            system.retry_dead_letters()
            return
        except Unavailable:
            sim.run(until=sim.now + 0.2)
    raise CheckFailed(f"the store never came back: {system.status()}")


def _divergence(hub: SimHub, key: str, paths: list[str]) -> str | None:
    """None when every replica holds exactly the hub's live memories, under the same ids."""
    hub_live = {(e.namespace, e.content_hash): e.id for e in _hub_digest(hub, key) if not e.deleted}
    for n, path in enumerate(paths):
        live = _live(path)
        if live != hub_live:
            return f"replica r{n}: {sorted(set(hub_live.items()) ^ set(live.items()))[:3]}"
    return None


def _hub_digest(hub: SimHub, key: str) -> list[Any]:
    client = hub.client_factory(hub.remote(key), hub.sim)
    entries: list[Any] = []
    after = None
    while True:
        page = client.digest(after, 1000)
        entries.extend(page.entries)
        if not page.has_more or page.next_after is None:
            return entries
        after = page.next_after


def _sharing_config(process: SimProcess) -> Config:
    return _sim_config(
        semantic=False,
        busy_timeout=0,
        busy_retries=3,
        connect=process.connector,
        restart_backoff=0.01,
        restart_intensity=3,
        restart_window=1.0,
        ask_timeout=5.0,
        sharing_host=process,
    )


def _record_failure(sim: SimRuntime, client: str, op: str, exc: BaseException) -> None:
    """A failed call of the shared file: named or not; a write's failure is 'info'
    (an ambiguous commit, or an owner killed after committing, may have applied it)."""
    named = isinstance(exc, MemoryActorsError)
    message = str(exc).replace(_scratch_dir(), "<scratch>")[:200]
    label = f"{'named' if named else 'unnamed'}:{type(exc).__name__}:{message}"
    sim.trace.record(client, op, "info" if named else "fail", label)


def _sharer(sim: SimRuntime, process: SimProcess, ops: int) -> Callable[[], None]:
    """A thread of ``process`` calling its facade as an agent session would: stores by
    content (some content shared by every process), keyed upserts, forgets, session appends."""
    name = process.name
    rng = sim.rng(f"client.{name}")

    def run() -> None:
        system = process.system
        assert system is not None
        mine: list[str] = []
        for i in range(ops):
            roll = rng.random()
            op = "store" if roll < 0.4 else "upsert" if roll < 0.6 else "forget"
            if op == "forget" and (roll >= 0.7 or not mine):
                op = "append"
            try:
                if op == "store":
                    content = (
                        f"shared fact {rng.randrange(3)}" if roll < 0.1 else f"{name} note {i}"
                    )
                    sim.trace.record(name, op, "invoke", content)
                    receipt = system.store(content)
                    sim.trace.record(name, op, "ok", [receipt.id, content])
                    mine.append(receipt.id)
                elif op == "upsert":
                    content = f"{name} profile v{i}"
                    sim.trace.record(name, op, "invoke", content)
                    receipt = system.store(content, key=f"{name}-profile")
                    sim.trace.record(name, op, "ok", [receipt.id, content])
                elif op == "forget":
                    memory_id = rng.choice(mine)
                    sim.trace.record(name, op, "invoke", memory_id)
                    system.forget(memory_id)
                    sim.trace.record(name, op, "ok", memory_id)
                else:
                    item = f"{name} turn {i}"
                    sim.trace.record(name, op, "invoke", item)
                    system.session_add(f"session-{name}", [item])
                    sim.trace.record(name, op, "ok", item)
            except MemoryActorsError as exc:
                _record_failure(sim, name, op, exc)
            sim.sleep(rng.uniform(0, 0.01))

    return run


def _start_process(sim: SimRuntime, network: SimNetwork, path: str, name: str) -> SimProcess:
    """Start a process on the file; a fault failing its start is named, and it starts again.

    Ten tries: SQLITE_BUSY comes back at once here (no busy timeout in virtual time),
    where a real open waits out ``busy_timeout`` on each; at the seed's highest busy
    rate, five failed opens in a row happened about once in 600 processes.
    """
    for _ in range(10):
        process = network.process(name)
        try:
            process.system = MemorySystem.open(path, runtime=sim, config=_sharing_config(process))
            return process
        except MemoryActorsError as exc:
            _record_failure(sim, name, "open", exc)
            sim.sleep(0.2)  # the operator (or the MCP client) starts it again shortly
    raise CheckFailed(f"{name} never started")


def _noting_end(body: Callable[[], None], finished: list[str], name: str) -> None:
    """Run a session; note its end, also when its process is killed under it."""
    try:
        body()
    finally:
        finished.append(name)


#: Issue 12: a follower serves the file within 1 s of its owner's death.
HANDOVER_LIMIT = 1.0


def _owner_killer(
    sim: SimRuntime, network: SimNetwork, path: str, kills: int, done: list[bool]
) -> Client:
    """``kill -9`` of the process serving the file, ``kills`` times, at seeded moments."""
    rng = sim.rng("client.killer")
    try:
        for _ in range(kills):
            yield Sleep(rng.uniform(0.0, 0.04))
            while (owner := _serving(network, path)) is None:
                yield Sleep(0.005)  # mid-handover: wait for the next owner to serve
            sim.trace.record("killer", "kill", "ok", owner.name)
            owner.kill()
            killed_at = sim.now
            while _serving(network, path) is None and sim.now - killed_at < HANDOVER_LIMIT:
                yield Sleep(0.005)
            handover = sim.now - killed_at
            sim.trace.record("killer", "handover", "ok", round(handover, 3))
            if handover >= HANDOVER_LIMIT:
                raise CheckFailed(f"nobody served the file {handover:.2f}s after the owner died")
    finally:
        done.append(True)


def _serving(network: SimNetwork, path: str) -> SimProcess | None:
    """The process holding the file's lock once it has published itself, else None."""
    owner = network.holders.get(path)
    published = network.published.get(path)
    return owner if owner is not None and published and published.pid == owner.pid else None


def owner_scenario(sim: SimRuntime) -> None:
    """One owner and three followers on one file; the owner is killed (``kill -9``) once or
    twice mid-load, and the next owner takes over (``actors.sharing``, ``actors.sim.sharing``).

    Every process runs a session calling its facade: stores by content,
    keyed upserts, forgets and session appends. Checks: every acknowledged
    store's id is live (unless someone forgot it) and holds its content; no
    content is live under two ids; a key's memory holds its last acknowledged
    content or a later attempt's; every acknowledged append is in its session
    log exactly once, nothing appears twice, nothing never sent appears, and the
    log keeps each session's order; every reply future answered; named errors
    only; ``PRAGMA integrity_check`` ok.
    """
    path = fresh_database(f"owner-{sim.seed}")
    network = SimNetwork(sim)
    rng = sim.rng("scenario")
    processes: list[SimProcess] = []
    try:
        for n in range(4):
            processes.append(_start_process(sim, network, path, f"p{n}"))
        roles = [p.system._sharing_state()["role"] for p in processes if p.system is not None]
        if roles != ["owner", "follower", "follower", "follower"]:
            raise CheckFailed(f"expected one owner and three followers, got {roles}")
        finished: list[str] = []
        for process in processes:
            sim.thread(
                f"{process.name}:session",
                functools.partial(_noting_end, _sharer(sim, process, 8), finished, process.name),
                group=process.name,
            )
        killed: list[bool] = []
        sim.client("killer", _owner_killer(sim, network, path, rng.randint(1, 2), killed))

        def ended() -> bool:  # a process killed before its session began has none to end
            return bool(killed) and all(p.name in finished or p.dead for p in processes)

        if not sim.wait_until(ended, 120):
            raise CheckFailed(f"sessions never finished: only {finished} (t={sim.now:.3f}s)")
    finally:
        survivors = [p for p in processes if not p.dead and p.system is not None]
        rng.shuffle(survivors)  # a clean exit of the owner first or last: both hand over
        for process in survivors:
            assert process.system is not None
            process.system.close()
    check_all_answered(sim)
    check_named_errors_only(sim)
    _check_shared_file(sim, path)
    _remove(path)


def _check_shared_file(sim: SimRuntime, path: str) -> None:
    """The file after the kills: see :func:`owner_scenario`."""
    conn = sqlite3.connect(path)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = {
            memory_id: (bool(deleted), content, key)
            for memory_id, deleted, content, key in conn.execute(
                "SELECT id, deleted, content, key FROM memories"
            )
        }
        logs: dict[str, list[str]] = {}
        for session_id, item in conn.execute(
            "SELECT session_id, item FROM session_items ORDER BY seq"
        ):
            logs.setdefault(session_id, []).append(json.loads(item))
    finally:
        conn.close()
    if integrity != "ok":
        raise CheckFailed(f"integrity_check: {integrity}")
    _live(path)  # no content live under two ids
    history = sim.trace.history
    for entry in history:
        # The next owner serves within a second, far inside every call's budget: a
        # call safe to repeat that failed for its owner's death was not repeated.
        if (
            entry["op"] in ("store", "upsert", "forget")
            and entry["phase"] == "info"
            and entry["value"].split(":")[1] in ("OwnerGone", "AskTimeout")
        ):
            raise CheckFailed(f"{entry['client']}'s {entry['op']} was not repeated: {entry}")
    forgotten = {e["value"] for e in history if e["op"] == "forget" and e["phase"] == "invoke"}
    for entry in history:
        if entry["phase"] != "ok" or entry["op"] != "store":
            continue
        memory_id, content = entry["value"]
        if memory_id not in rows:
            raise CheckFailed(f"acknowledged store {memory_id} ({content!r}) is not in the file")
        deleted, stored, _ = rows[memory_id]
        if deleted and memory_id not in forgotten:
            raise CheckFailed(f"acknowledged store {memory_id} is a tombstone nobody asked for")
        if not deleted and stored != content:
            raise CheckFailed(f"{memory_id} holds {stored!r}, acknowledged {content!r}")
    for client in sorted({e["client"] for e in history}):
        mine = [e for e in history if e["client"] == client]
        _check_upserts(client, mine, rows)
        _check_appends(client, mine, logs.get(f"session-{client}", []))


def _check_upserts(
    client: str, history: list[dict[str, Any]], rows: dict[str, tuple[bool, str, str | None]]
) -> None:
    """The key's memory holds the last acknowledged upsert, or one attempted after it."""
    attempts = [e["value"] for e in history if e["op"] == "upsert" and e["phase"] == "invoke"]
    acked = [e["value"] for e in history if e["op"] == "upsert" and e["phase"] == "ok"]
    if not acked:
        return
    ids = {memory_id for memory_id, _ in acked}
    if len(ids) != 1:
        raise CheckFailed(f"{client}'s key was written under several ids: {sorted(ids)}")
    memory_id, last = acked[-1]
    deleted, stored, key = rows.get(memory_id, (True, "", None))
    allowed = attempts[attempts.index(last) :]
    if deleted or key != f"{client}-profile" or stored not in allowed:
        raise CheckFailed(f"{client}'s key holds {stored!r}; acknowledged {last!r} last")


def _check_appends(client: str, history: list[dict[str, Any]], log: list[str]) -> None:
    """Each acknowledged append once, none twice, none unsent, in the session's order."""
    attempts = [e["value"] for e in history if e["op"] == "append" and e["phase"] == "invoke"]
    acked = {e["value"] for e in history if e["op"] == "append" and e["phase"] == "ok"}
    doubled = sorted({item for item in log if log.count(item) > 1})
    if doubled:
        raise CheckFailed(f"session-{client}: appended twice: {doubled}")
    if not set(log) <= set(attempts):
        raise CheckFailed(f"session-{client}: items never sent: {sorted(set(log) - set(attempts))}")
    missing = sorted(acked - set(log))
    if missing:
        raise CheckFailed(f"session-{client}: acknowledged appends lost: {missing}")
    if log != [item for item in attempts if item in log]:
        raise CheckFailed(f"session-{client}: out of order: {log}")


#: Named scenarios for sweeps and the soak command. Each gets a fault plan from its seed.
SCENARIOS: dict[str, Scenario] = {
    "store": store_actor_scenario(),
    "system": system_scenario(),
    "busy": busy_backoff_scenario,
    "migration": migration_scenario,
    "ping": ping_scenario,
    "sync": sync_scenario,
    "lease": lease_scenario,
    "recall": recall_scenario,
    "storm": storm_scenario,
    "owner": owner_scenario,
}

#: Scenarios about one mechanism keep only the seed's faults that bear on it: the
#: lease scenario measures takeover time, which SQLite faults, crashes and stalls
#: would only lengthen (they are swept by the other scenarios).
FAULT_FOCUS: dict[str, Callable[[FaultPlan], FaultPlan]] = {
    "lease": lambda plan: attrs.evolve(
        plan,
        sqlite_busy=0.0,
        sqlite_io_error=0.0,
        sqlite_ambiguous_commit=0.0,
        crash=0.0,
        # A stalled survivor takes over late by its stalls (each hop of the renewal
        # can stall); the sweep showed it. Clock jumps stay: the lease ignores them.
        stall=0.0,
    ),
    # Restart storms: frequent crashes of the store (and the seed's SQLite faults).
    "storm": lambda plan: attrs.evolve(plan, crash=0.3),
    # Recall is about latency: every hub request is slow; the EmbeddingActor crashes
    # (mid-backlog: 1 message in 8); nothing else fails.
    "recall": lambda plan: FaultPlan(
        hub_latency=1.0,
        hub_latency_max=2.0,
        stall=plan.stall,
        clock_skew=plan.clock_skew,
        crash=0.125,
        crash_actors=("embedding",),
    ),
}

#: Fault plans a scenario runs with when none is given: the seed decides, except where a
#: scenario is about one fault.
DEFAULT_FAULTS: dict[str, Callable[[SimRuntime], FaultPlan] | None] = {
    "busy": lambda sim: FaultPlan(sqlite_busy=0.6),
}


def run_scenario(
    name: str,
    seed: int,
    *,
    strategy: Any = "random",
    faults: FaultPlan | None = None,
    scenario: Scenario | None = None,
) -> SimRuntime:
    """Run one scenario under ``seed``; raises :class:`CheckFailed` (trace in ``.sim``)."""
    body = scenario or SCENARIOS[name]
    plan: FaultPlan | str = "seed" if faults is None else faults
    if faults is None and name == "busy":
        plan = FaultPlan(sqlite_busy=0.6)
    sim = SimRuntime(seed, strategy=strategy, faults=plan, scenario=name)  # type: ignore[arg-type]
    narrow = FAULT_FOCUS.get(name)
    if faults is None and narrow is not None:
        sim.faults = narrow(sim.faults)
        sim.trace.header["faults"] = sim.faults.to_dict()
    try:
        body(sim)
    except Exception as exc:
        exc.sim = sim  # type: ignore[attr-defined]
        raise
    return sim
