"""What only a PostgreSQL hub can do or suffer: several processes, one database, a server outage.

The rest of the hub suite runs on both engines (``hub_engine``); these tests
are about the PostgreSQL engine's own promises (``actors/hub/postgres.py``,
``docs/hub-protocol.md`` "Cursors and paging"): N hub processes on one
database never skip a change in the feed and converge exactly, migrations
run once when hubs start together, a newer or foreign schema is refused
untouched, and a stopped PostgreSQL is a 503 with ``Retry-After`` followed
by recovery without restarting the hub.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest
from hub_fixtures import ROOT, HubProcess, fast_remote, forget, hub_digest, memory, wait_until
from pg_fixtures import TestPostgres, own_postgres

from actors import Config, MemorySystem
from actors.errors import HubError, HubServerError, NotADatabase, SchemaTooNew, StorageBusy
from actors.hub.pg_schema import PG_LATEST_VERSION, describe_database, prepare_pg_database
from actors.hub.postgres import PostgresEngine
from actors.runtime import ThreadedRuntime
from actors.sync_model import RemoteConfig
from actors.wire import WireMemory

pytestmark = pytest.mark.slow

_NOW = ThreadedRuntime().wall_time


@pytest.fixture
def database(postgres: TestPostgres) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres.new_database()


@contextlib.contextmanager
def hubs_together(database: str, count: int, logs: Path) -> Iterator[list[HubProcess]]:
    """``count`` hub processes on one database, launched at once, stopped (and checked) after."""
    hubs = [HubProcess(database, log_path=logs / f"hub-{n}.log") for n in range(count)]
    try:
        for hub in hubs:
            hub.launch()
        for hub in hubs:
            hub.wait_healthy()
        yield hubs
    finally:
        for hub in hubs:
            if hub.alive:
                hub.stop()
            hub.close_log()


@pytest.fixture
def three_hubs(database: str, tmp_path: Path) -> Iterator[list[HubProcess]]:
    """Three hub processes on one database."""
    with hubs_together(database, 3, tmp_path) as hubs:
        yield hubs


# -- several hub processes on one database ------------------------------------------------------


def test_three_hub_processes_take_concurrent_pushes_and_every_puller_converges_exactly(
    three_hubs: list[HubProcess],
) -> None:
    """6 writers push through rotating hubs while 3 pullers follow the feed through rotating
    hubs: every change reaches every puller (no id missed, seqs strictly rising), and each
    replica equals the hub's state and the last writer by (version, origin), exactly."""
    key = three_hubs[0].add_key("team")
    shared = [memory(f"shared seed {n}", origin="seed").id for n in range(8)]
    pushed: list[WireMemory] = []
    pushed_lock = threading.Lock()
    writers_done = threading.Event()
    failures: list[BaseException] = []

    def writer(w: int) -> None:
        clients = [hub.client(key, timeout=20.0) for hub in three_hubs]
        try:
            for b in range(20):
                batch = [memory(f"writer {w} batch {b} item {i}", origin=f"w{w}") for i in range(4)]
                # One shared id per batch, written by every writer at colliding versions:
                # the database, not a process, decides which write wins.
                batch.append(
                    memory(
                        f"shared {b % 8} by writer {w} at {b}",
                        id=shared[b % 8],
                        version=1_700_000_000_000 + b // 3,
                        origin=f"w{w}",
                    )
                )
                clients[(w + b) % 3].push(batch)
                with pushed_lock:
                    pushed.extend(batch)
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            for client in clients:
                client.close()

    def puller(p: int) -> dict[str, tuple[str, str]]:
        replica: dict[str, tuple[str, str]] = {}
        clients = [hub.client(key, timeout=20.0) for hub in three_hubs]
        cursor: str | None = None
        last_seq = 0
        try:
            for turn in itertools.count():
                finished = writers_done.is_set()  # read before the page: then it is final
                page = clients[(p + turn) % 3].changes(since=cursor, limit=37)
                for change in page.changes:
                    assert change.seq > last_seq, (change.seq, last_seq)
                    last_seq = change.seq
                    replica[change.memory.id] = (change.memory.version, change.memory.origin)
                cursor = page.next_cursor
                if finished and not page.changes and not page.has_more:
                    return replica
                if not page.changes:
                    writers_done.wait(0.005)  # poll interval of a bounded follow
        finally:
            for client in clients:
                client.close()
        raise AssertionError("unreachable")  # pragma: no cover

    with ThreadPoolExecutor(9) as pool:
        pulling = [pool.submit(puller, p) for p in range(3)]
        writing = [pool.submit(writer, w) for w in range(6)]
        for future in writing:
            future.result(timeout=240)
        writers_done.set()
        replicas = [future.result(timeout=120) for future in pulling]
    assert not failures
    expected: dict[str, tuple[str, str]] = {}
    for item in pushed:
        best = expected.get(item.id)
        if best is None or (item.version, item.origin) > best:
            expected[item.id] = (item.version, item.origin)
    assert len(expected) == 6 * 20 * 4 + 8
    with three_hubs[2].client(key) as client:
        state = {e.id: (e.version, e.origin) for e in hub_digest(client)}
        assert client.count().total == len(expected)
    assert state == expected
    for replica in replicas:
        assert replica == expected


def test_a_hub_process_killed_mid_push_loses_nothing_when_clients_retry_through_another(
    three_hubs: list[HubProcess],
) -> None:
    """kill -9 one of three processes amid pushes: the client retries each failed batch through
    the next process; every memory is stored exactly once, and the feed holds each once."""
    first, second, third = three_hubs
    key = first.add_key("acme")
    batches = [[memory(f"batch {b} item {i}") for i in range(20)] for b in range(60)]
    statuses: list[str] = []
    retried: list[int] = []
    acked = threading.Event()

    def pusher() -> None:
        clients = [hub.client(key, timeout=10.0) for hub in (first, second)]
        try:
            for index, batch in enumerate(batches):
                for client in clients:  # the first process, then the next one
                    try:
                        result = client.push(batch)
                    except HubError:
                        retried.append(index)
                        continue
                    statuses.extend(r.status for r in result.results)
                    break
                else:
                    raise AssertionError(f"batch {index} failed on both processes")
                if index == 5:
                    acked.set()
        finally:
            for client in clients:
                client.close()

    thread = threading.Thread(target=pusher)
    thread.start()
    assert acked.wait(timeout=60)
    first.kill()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert retried, "the kill should have failed a push"
    assert set(statuses) <= {"applied", "unchanged"}
    with third.client(key) as client:
        entries = hub_digest(client)
        feed_ids = []
        cursor = None
        while True:
            page = client.changes(since=cursor, limit=500)
            feed_ids += [c.memory.id for c in page.changes]
            cursor = page.next_cursor
            if not page.has_more:
                break
        assert client.count().total == 60 * 20
    wanted = sorted(item.id for batch in batches for item in batch)
    assert sorted(e.id for e in entries) == wanted
    assert sorted(feed_ids) == wanted


def test_two_hub_processes_started_together_on_an_empty_database_migrate_it_once(
    database: str, postgres: TestPostgres, tmp_path: Path
) -> None:
    """Both serve; the schema steps were applied exactly once; both are one hub (one hub id)."""
    with hubs_together(database, 2, tmp_path) as hubs:
        rows = postgres.query(database, "SELECT version FROM hub_schema ORDER BY version")
        assert rows == [(v,) for v in range(1, PG_LATEST_VERSION + 1)]
        assert postgres.query(database, "SELECT count(*) FROM hub_meta WHERE key = 'hub_id'") == [
            (1,)
        ]
        key = hubs[0].add_key("acme")
        with hubs[0].client(key) as first, hubs[1].client(key) as second:
            first.push([memory("written through the first hub")])
            cursor = first.changes().next_cursor
            second.push([memory("written through the second hub")])
            # A cursor one process issued is valid at the other: one feed, one hub id.
            assert [c.memory.content for c in second.changes(since=cursor).changes] == [
                "written through the second hub"
            ]


def test_concurrent_migrations_apply_each_step_exactly_once(database: str) -> None:
    """Four preparers at once on an empty database: one applies the steps, three find them done."""
    start = threading.Barrier(4)

    def prepare(_: int) -> tuple[int, ...]:
        start.wait(timeout=10)
        return prepare_pg_database(database, now=_NOW).applied

    with ThreadPoolExecutor(4) as pool:
        applied = sorted(pool.map(prepare, range(4)))
    assert applied == [(), (), (), tuple(range(1, PG_LATEST_VERSION + 1))]


def test_embedding_work_is_claimed_by_one_process_and_a_newer_text_voids_the_claim(
    database: str,
) -> None:
    """Two engines (two hub processes) take from one queue: disjoint claims, and a newer text
    of a claimed memory voids the claim at once (the old vector is refused)."""
    prepare_pg_database(database, now=_NOW)
    runtime = ThreadedRuntime()
    first = PostgresEngine.open(database, new_id=runtime.new_id)
    second = PostgresEngine.open(database, new_id=runtime.new_id)
    try:
        items = [memory(f"to embed {n}") for n in range(5)]
        first.commit_pushes([("acme", tuple(items))], _NOW())
        taken_first = first.take_embed_work("m", 4, 3)
        taken_second = second.take_embed_work("m", 4, 10)
        assert len(taken_first) == 3
        assert len(taken_second) == 2
        assert not {w.key for w in taken_first} & {w.key for w in taken_second}
        assert first.take_embed_work("m", 4, 10) == ()
        # A newer text of a claimed memory is queued again, unclaimed.
        changed = memory("to embed 0, changed", id=items[0].id, version=1_700_000_000_001)
        second.commit_pushes([("acme", (changed,))], _NOW())
        again = second.take_embed_work("m", 4, 10)
        assert [w.content for w in again] == ["to embed 0, changed"]
        saved = first.save_vectors(
            "m", 4, [(w.key, w.content_hash, b"\0" * 16) for w in taken_first]
        )
        assert saved == 2  # the changed memory's vector of its old text is refused
        assert first.pending_embeddings("acme") == 3  # two of second's, the changed one
    finally:
        first.close()
        second.close()


def test_an_embedding_claim_that_is_never_saved_passes_to_another_process(database: str) -> None:
    """A process that claims work and dies: once the claim lapses, another process takes it."""
    prepare_pg_database(database, now=_NOW)
    runtime = ThreadedRuntime()
    dying = PostgresEngine.open(database, new_id=runtime.new_id)
    other = PostgresEngine.open(database, new_id=runtime.new_id)
    try:
        dying.claim_seconds = 0.3
        dying.commit_pushes([("acme", (memory("orphaned work"),))], _NOW())
        assert len(dying.take_embed_work("m", 4, 10)) == 1
        assert other.take_embed_work("m", 4, 10) == ()
        taken = wait_until(
            lambda: other.take_embed_work("m", 4, 10), "the lapsed claim to pass on", deadline=10
        )
        assert [w.content for w in taken] == ["orphaned work"]
    finally:
        dying.close()
        other.close()


# -- schemas the hub must refuse -----------------------------------------------------------------


def _tables(postgres: TestPostgres, database: str) -> list[tuple[Any, ...]]:
    return postgres.query(
        database,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "ORDER BY table_name",
    )


def test_a_database_written_by_newer_code_is_refused_with_nothing_changed(
    database: str, postgres: TestPostgres
) -> None:
    """Schema 99: prepare raises SchemaTooNew, ``hub serve`` exits 1 naming it; nothing moves."""
    prepare_pg_database(database, now=_NOW)
    postgres.query(database, "INSERT INTO hub_schema VALUES (99, 'from the future', 0)")
    before = (_tables(postgres, database), postgres.query(database, "TABLE hub_schema"))
    with pytest.raises(SchemaTooNew, match="newer than this code supports"):
        prepare_pg_database(database, now=_NOW)
    result = subprocess.run(
        [sys.executable, "-m", "actors.hub", "serve", "--database", database, "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "newer than this code supports" in result.stderr
    assert (_tables(postgres, database), postgres.query(database, "TABLE hub_schema")) == before


def test_a_database_with_foreign_tables_is_not_taken_for_a_hub(
    database: str, postgres: TestPostgres
) -> None:
    """A database whose ``memories`` table is someone else's: NotADatabase, nothing created."""
    postgres.query(database, "CREATE TABLE memories (note text)")
    with pytest.raises(NotADatabase, match="not a memory-actors hub database"):
        prepare_pg_database(database, now=_NOW)
    assert _tables(postgres, database) == [("memories",)]


# -- locks and outages ---------------------------------------------------------------------------


def test_a_push_waits_for_its_tenants_transaction_in_flight_then_a_lock_timeout_is_busy(
    database: str, postgres: TestPostgres
) -> None:
    """The feed's ordering lock, seen from outside: a push whose tenant row another transaction
    holds waits (it takes no sequence number meanwhile), and past the lock timeout answers
    StorageBusy with nothing written; once the lock is gone, pushes go on."""
    import psycopg

    prepare_pg_database(database, now=_NOW)
    runtime = ThreadedRuntime()
    engine = PostgresEngine.open(database, new_id=runtime.new_id, lock_timeout=1.0)
    try:
        engine.commit_pushes([("acme", (memory("first"),))], _NOW())
        with psycopg.connect(database) as holder:
            holder.execute("SELECT 1 FROM tenants WHERE tenant = 'acme' FOR UPDATE")
            outcome: list[BaseException | str] = []
            pusher = threading.Thread(
                target=lambda: outcome.append(_push_or_error(engine, "blocked"))
            )
            pusher.start()
            wait_until(
                lambda: (
                    postgres.query(
                        database,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'",
                    )
                    == [(1,)]
                ),
                "the push to wait on the tenant's lock",
                deadline=10.0,
            )
            pusher.join(timeout=10)
            assert not pusher.is_alive()
            holder.rollback()
        assert len(outcome) == 1
        assert isinstance(outcome[0], StorageBusy)
        assert "retry shortly" in str(outcome[0])
        engine.commit_pushes([("acme", (memory("after the lock"),))], _NOW())
        assert engine.counts("acme").total == 2
        assert [c.seq for c in engine.changes("acme", None, 10).changes] == [1, 2]
    finally:
        engine.close()


def _push_or_error(engine: PostgresEngine, text: str) -> BaseException | str:
    try:
        engine.commit_pushes([("acme", (memory(text),))], _NOW())
    except BaseException as exc:
        return exc
    return "applied"


def test_postgresql_stopped_under_load_answers_503_with_retry_after_then_the_hub_recovers(
    tmp_path: Path,
) -> None:
    """A PostgreSQL of the test's own is stopped while a client pushes: the hub answers 503 with
    Retry-After (never 500), keeps serving, and once PostgreSQL is back the same hub process
    takes pushes again; every acknowledged push is stored, exactly once."""
    with own_postgres() as server:
        database = server.new_database()
        with HubProcess.running(database, log_path=tmp_path / "hub.log") as hub:
            key = hub.add_key("acme")
            acked: list[WireMemory] = []
            attempted: list[WireMemory] = []
            unavailable: list[HubServerError] = []
            others: list[HubError] = []
            stop = threading.Event()

            def pusher() -> None:
                with hub.client(key, timeout=30.0) as client:
                    for n in itertools.count():
                        if stop.is_set():
                            return
                        item = memory(f"pushed under load {n}")
                        attempted.append(item)
                        try:
                            client.push([item])
                        except HubServerError as exc:
                            if exc.status != 503:
                                others.append(exc)
                            unavailable.append(exc)
                            stop.wait(0.05)  # the client's own backoff, shortened
                        except HubError as exc:
                            others.append(exc)
                        else:
                            acked.append(item)

            thread = threading.Thread(target=pusher)
            thread.start()
            try:
                wait_until(lambda: len(acked) >= 5, "pushes before the outage")
                server.stop_server()
                down = time.monotonic()
                wait_until(lambda: unavailable, "a 503 while PostgreSQL is down", deadline=30.0)
                assert all(exc.retry_after is not None for exc in unavailable)
                assert time.monotonic() - down < 30.0
                acked_while_down = len(acked)
                server.start_server()
                wait_until(
                    lambda: len(acked) >= acked_while_down + 5,
                    "pushes to succeed again after PostgreSQL restarted",
                    deadline=60.0,
                )
            finally:
                stop.set()
                thread.join(timeout=60)
            assert not thread.is_alive()
            assert others == []
            assert hub.alive  # recovered without a restart
            with hub.client(key) as client:
                stored = {e.id for e in hub_digest(client) if not e.deleted}
            assert {m.id for m in acked} <= stored <= {m.id for m in attempted}


def test_a_syncing_client_spends_no_attempt_while_postgresql_is_down_under_load(
    tmp_path: Path,
) -> None:
    """A real client at its default 5 s timeout, one attempt per memory, beside six other
    clients pushing: while PostgreSQL is stopped, every 503 comes before that timeout (the
    calls queued in the hub's store actor once waited 3 s each: 6-10 s, and a push timed
    out at the client costs an attempt), nothing becomes a dead letter, all of it arrives."""
    with own_postgres() as server:
        database = server.new_database()
        with HubProcess.running(database, log_path=tmp_path / "hub.log") as hub:
            key = hub.add_key("acme")
            remote = fast_remote(hub.url, key, max_attempts=1)
            assert remote.timeout == RemoteConfig(hub.url, key).timeout  # the default
            stop = threading.Event()
            refused: list[tuple[int, float]] = []  # (status, seconds to the answer)

            def other_client() -> None:
                with hub.client(key, timeout=30.0) as client:
                    for n in itertools.count():
                        if stop.is_set():
                            return
                        sent = time.monotonic()
                        try:
                            client.push([memory(f"from another client {n}")])
                        except HubServerError as exc:
                            refused.append((exc.status, time.monotonic() - sent))
                            stop.wait(0.05)

            config = Config(remote=remote)
            with (
                MemorySystem.open(tmp_path / "client.db", config=config) as system,
                ThreadPoolExecutor(6) as others,
            ):
                first = system.store("stored before the outage").id
                wait_until(lambda: system.count().outbox_pending == 0, "the first push")
                pushing = [others.submit(other_client) for _ in range(6)]
                try:
                    server.stop_server()
                    during = [
                        system.store(f"stored while PostgreSQL is down {i}").id for i in range(5)
                    ]
                    # Long enough for pushes that time out at 5 s to have spent their one attempt.
                    time.sleep(8.0)
                    counted = system.count()
                    assert (counted.dead_letters, counted.outbox_pending) == (0, 5)
                    assert {status for status, _ in refused} == {503}
                    # A bound, not a speed: past it a client's push times out and spends an attempt.
                    assert max(seconds for _, seconds in refused) < remote.timeout
                    server.start_server()
                    wait_until(
                        lambda: system.count().outbox_pending == 0,
                        "the waiting memories pushed once PostgreSQL is back",
                        deadline=60.0,
                        describe=system.count,
                    )
                finally:
                    stop.set()
                for future in pushing:
                    future.result(timeout=60)
                assert system.count().dead_letters == 0
            with hub.client(key) as client:
                stored = {e.id for e in hub_digest(client) if not e.deleted}
            assert {first, *during} <= stored


# -- the command line ----------------------------------------------------------------------------


def test_the_database_is_named_by_database_or_its_environment_variable_and_never_twice(
    database: str, tmp_path: Path
) -> None:
    """``--database URL`` or ``$MEMORY_ACTORS_HUB_DATABASE`` selects PostgreSQL; an explicit
    ``--db`` wins over the variable; both flags, or a path given as a URL, are usage errors."""
    from click.testing import CliRunner

    from actors.hub.cli import hub as hub_command

    runner = CliRunner()
    env = {"MEMORY_ACTORS_HUB_DATABASE": database}
    added = runner.invoke(hub_command, ["keys", "add", "acme"], env=env)
    assert added.exit_code == 0, added.output
    assert "postgresql://" in added.stderr
    listed = runner.invoke(hub_command, ["keys", "list", "--json", "--database", database])
    assert [row["tenant"] for row in json.loads(listed.stdout)] == ["acme"]
    local = tmp_path / "hub.db"
    sqlite_list = runner.invoke(
        hub_command, ["keys", "list", "--json", "--db", str(local)], env=env
    )
    assert json.loads(sqlite_list.stdout) == []
    assert local.exists()
    both = runner.invoke(hub_command, ["keys", "list", "--db", str(local), "--database", database])
    assert both.exit_code == 2
    assert "not both" in both.output
    path = runner.invoke(hub_command, ["keys", "list", "--database", str(local)])
    assert path.exit_code == 2
    assert "postgresql:// URL" in path.output


def test_messages_name_the_database_but_never_its_password() -> None:
    """What logs and errors print of a URL: user, host, port, database; never the password."""
    shown = describe_database("postgresql://hub:s3cret@db.internal:6432/team?sslmode=require")
    assert shown == "postgresql://hub@db.internal:6432/team"


# -- moving a SQLite hub to PostgreSQL -----------------------------------------------------------


def test_migrate_to_copies_a_sqlite_hub_exactly_and_refuses_a_target_that_is_not_empty(
    database: str, tmp_path: Path
) -> None:
    """``hub migrate-to``: keys (revoked ones stay revoked), every memory of every tenant with its
    version and origin, tombstones and keyed memories; counts checked; a second run refused."""
    from click.testing import CliRunner

    from actors.hub.cli import hub as hub_command
    from actors.hub.direct import DirectBackend
    from actors.hub.engines import open_engine
    from actors.hub.key_admin import add_key, revoke_key
    from actors.model import keyed_memory_id

    source = tmp_path / "hub.db"
    runtime = ThreadedRuntime(seed=11)
    keys = {tenant: add_key(source, tenant) for tenant in ("acme", "beta")}
    revoked = add_key(source, "acme")
    revoke_key(source, revoked.split("_")[1])
    backend = DirectBackend.open(source, new_id=runtime.new_id, now=runtime.wall_time)
    try:
        items = [memory(f"fact {n}", namespace=f"ns{n % 3}", logical=n) for n in range(1_200)]
        for start in range(0, len(items), 400):
            backend.push("acme", tuple(items[start : start + 400]), 10)
        newer = memory("fact 7, corrected", id=items[7].id, version=1_700_000_000_009)
        keyed = attrs.evolve(
            memory("editor is helix", namespace="users/alice"),
            id=keyed_memory_id("users/alice", "editor"),
            key="editor",
        )
        backend.push("acme", (newer, forget(items[8]), keyed), 10)
        backend.push("beta", (memory("beta's only memory"),), 10)
    finally:
        backend.close()
    runner = CliRunner()
    moved = runner.invoke(hub_command, ["migrate-to", "--db", str(source), "--database", database])
    assert moved.exit_code == 0, moved.output
    assert "Copied 1202 memories of 2 tenants and 3 keys" in moved.stdout
    assert "the counts match" in moved.stdout

    def state(engine: Any, tenant: str) -> list[Any]:
        entries, after = [], None
        while True:
            page = engine.digest(tenant, after, 500)
            entries += page.entries
            if not page.has_more:
                return entries
            after = page.next_after

    old = open_engine(source, new_id=runtime.new_id)
    new = open_engine(database, new_id=runtime.new_id)
    try:
        for tenant in ("acme", "beta"):
            assert state(new, tenant) == state(old, tenant)
        assert [(k.key_id, k.tenant, k.revoked) for k in new.list_keys()] == [
            (k.key_id, k.tenant, k.revoked) for k in old.list_keys()
        ]
        for key in (*keys.values(), revoked):
            key_id = key.split("_")[1]
            assert new.lookup_key(key_id) == old.lookup_key(key_id)
        assert new.hub_id != old.hub_id  # old cursors are refused (409): clients resync
        assert new.pending_embeddings("acme") == 1_200  # re-embedded in the background
    finally:
        old.close()
        new.close()
    again = runner.invoke(hub_command, ["migrate-to", "--db", str(source), "--database", database])
    assert again.exit_code == 1
    assert "already holds a hub's keys or memories" in again.output


def _as_hub_schema_2(path: Path) -> None:
    """Undo hub schema step 3 (additive: the ``key`` column and the dedup index's
    ``key IS NULL``) in place: the file a hub of the release before keyed memories left."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP INDEX memories_dedup")
        conn.execute("ALTER TABLE memories DROP COLUMN key")
        conn.execute(
            "CREATE UNIQUE INDEX memories_dedup ON memories(tenant, namespace, content_hash) "
            "WHERE deleted = 0"
        )
        conn.execute("DELETE FROM migrations WHERE version = 3")
        conn.execute("PRAGMA user_version = 2")


def test_migrate_to_copies_a_hub_an_older_release_served_and_refuses_one_newer_code_wrote(
    postgres: TestPostgres, tmp_path: Path
) -> None:
    """A SQLite hub at an older schema is migrated and copied (it was refused while counting,
    told to run ``hub serve`` first); one at a newer schema is refused as too new, with
    the advice to upgrade (it was told ``hub serve`` would migrate it), and left as it was."""
    from click.testing import CliRunner

    from actors.hub.cli import hub as hub_command
    from actors.hub.direct import DirectBackend
    from actors.hub.key_admin import add_key

    older = tmp_path / "older.db"
    add_key(older, "acme")
    runtime = ThreadedRuntime(seed=12)
    backend = DirectBackend.open(older, new_id=runtime.new_id, now=runtime.wall_time)
    try:
        backend.push("acme", tuple(memory(f"fact {n}") for n in range(3)), 10)
    finally:
        backend.close()
    _as_hub_schema_2(older)
    runner = CliRunner()
    moved = runner.invoke(
        hub_command, ["migrate-to", "--db", str(older), "--database", postgres.new_database()]
    )
    assert moved.exit_code == 0, moved.output
    assert "Copied 3 memories of 1 tenants and 1 keys" in moved.stdout

    newer = tmp_path / "newer.db"
    add_key(newer, "acme")
    with contextlib.closing(sqlite3.connect(newer)) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = newer.read_bytes()
    refused = runner.invoke(
        hub_command, ["migrate-to", "--db", str(newer), "--database", postgres.new_database()]
    )
    assert refused.exit_code == 1
    assert "newer than this code supports (3); upgrade memory-actors" in refused.output
    assert "which migrates it" not in refused.output
    assert newer.read_bytes() == before


def test_user_text_never_becomes_full_text_query_syntax(database: str) -> None:
    """Queries full of tsquery operators and quotes rank by their words; none is an error."""
    from actors.hub.direct import DirectBackend
    from actors.wire import RecallQuery

    runtime = ThreadedRuntime(seed=4)
    backend = DirectBackend.open(database, new_id=runtime.new_id, now=runtime.wall_time)
    try:
        stored = memory("the deploy key of db-prod-1 is in the vault")
        backend.push("acme", (stored,), 10)
        engine = backend.engine
        for text in ("deploy & | ! <-> key", "'deploy':* (key)", 'the "vault" OR *', "db-prod-1"):
            hits = engine.recall("acme", RecallQuery(text), None).hits
            assert [hit.id for hit in hits] == [stored.id], text
        assert engine.recall("acme", RecallQuery("?! & |"), None).hits == ()
    finally:
        backend.close()


def test_a_recall_answers_its_limit_when_the_best_ranked_rows_are_gone_or_filtered(
    database: str,
) -> None:
    """The hits' rows are read for the first ``limit`` ranked first; when some of them are
    forgotten, another tenant's or filtered out, the rest of the ranking fills the answer."""
    from actors.hub.direct import DirectBackend
    from actors.wire import EmbedderInfo, RecallQuery

    runtime = ThreadedRuntime(seed=5)
    backend = DirectBackend.open(database, new_id=runtime.new_id, now=runtime.wall_time)
    try:
        ours = [memory(f"note {n}", namespace="a") for n in range(4)]
        elsewhere = memory("note in another namespace", namespace="b")
        theirs = memory("note of another tenant", namespace="a")
        backend.push("acme", (*ours, elsewhere), 10)
        backend.push("other", (theirs,), 10)
        backend.push("acme", (forget(ours[0]),), 10)
        engine = backend.engine
        with engine._tx() as cur:
            rowid = {str(i): int(r) for r, i in cur.execute("SELECT rowid, id FROM memories")}
        # A ranking as an in-memory index could give it: stale and unfiltered at its head.
        ranking = [ours[0], theirs, elsewhere, ours[1], ours[2], ours[3]]
        vector_hits = [(rowid[item.id], 1.0 - n / 10) for n, item in enumerate(ranking)]
        answer = engine.recall(
            "acme",
            RecallQuery("note", namespace="a", limit=2),
            vector_hits,
            embedder=EmbedderInfo("test", 3, True),
        )
        assert [hit.id for hit in answer.hits] == [ours[1].id, ours[2].id]
        # With the head all live and passing, the answer is the head.
        answer = engine.recall(
            "acme",
            RecallQuery("note", limit=2),
            vector_hits[3:],
            embedder=EmbedderInfo("test", 3, True),
        )
        assert [hit.id for hit in answer.hits] == [ours[1].id, ours[2].id]
    finally:
        backend.close()
