"""Faults during load: stop, SQLite errors mid-batch, actor crashes and restarts.

The invariant everywhere: every caller gets an answer (a value or a named
error) within its deadline, and no acknowledged write is lost.

SQLite faults are injected through the StoreActor's connection factory: a
real ``sqlite3`` connection on the real file (``factory=FaultyConnection``)
that raises at a chosen statement. SQLite itself cannot be made to fail
on cue here, so this one seam is a test double; everything around it is real.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from actors import (
    AskTimeout,
    MemorySystem,
    StorageError,
    SystemClosed,
    Unavailable,
)
from actors.runtime import ThreadedRuntime
from actors.system import Config


class FaultyConnection(sqlite3.Connection):
    """A real connection that raises when a switch, set by the test, matches a statement."""

    #: (statement prefix, parameter substring or None, exception factory, remaining count
    #: [, True: raise after the statement ran])
    plan: ClassVar[list[list[Any]]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        for fault in FaultyConnection.plan:
            prefix, needle, make, remaining, *after = fault
            if remaining == 0 or not sql.startswith(prefix):
                continue
            if needle is not None and not any(needle in str(p) for p in parameters):
                continue
            fault[3] = remaining - 1
            if after:
                super().execute(sql, parameters)
            raise make()
        return super().execute(sql, parameters)


def faulty_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, factory=FaultyConnection)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


@pytest.fixture
def faulty(db_path: Path) -> Iterator[MemorySystem]:
    """A MemorySystem whose store connection can be told to fail."""
    FaultyConnection.plan = []
    config = Config(connect=faulty_connect, ask_timeout=10.0, restart_backoff=0.02)
    with MemorySystem.open(db_path, config=config) as memory:
        yield memory
    FaultyConnection.plan = []


def _stored_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM memories WHERE deleted = 0")}
    finally:
        conn.close()


def _restarts(memory: MemorySystem) -> int:
    restarts: int = memory.status()["actors"]["store"]["restarts"]
    return restarts


def _run_writers(
    memory: MemorySystem, threads: int, per_thread: int, *, prefix: str = "m"
) -> tuple[list[str], list[BaseException], list[threading.Thread]]:
    acked: list[str] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        for i in range(per_thread):
            try:
                acked.append(memory.store(f"{prefix} {n} {i}").id)
            except BaseException as exc:
                errors.append(exc)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    return acked, errors, pool


def test_closing_during_load_answers_every_caller_and_keeps_every_ack(db_path: Path) -> None:
    """32 writers race close(): each call returns a receipt or a named error, never hangs."""
    memory = MemorySystem.open(db_path, config=Config(ask_timeout=10.0))
    acked, errors, pool = _run_writers(memory, 32, 400)
    deadline = time.monotonic() + 30
    while len(acked) < 2_000 and time.monotonic() < deadline:
        time.sleep(0.005)
    memory.close()
    for thread in pool:
        thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in pool), "a caller was left waiting"
    assert {type(e) for e in errors} <= {SystemClosed, Unavailable}
    assert len(acked) + len(errors) == 32 * 400
    assert set(acked) <= _stored_ids(db_path)


def test_a_poisoned_write_fails_alone_and_its_batch_mates_commit(
    faulty: MemorySystem, db_path: Path
) -> None:
    """An SQLite error on one write rolls back its batch; the others are retried and commit."""
    FaultyConnection.plan = [
        ["INSERT INTO memories", "POISON", lambda: sqlite3.OperationalError("disk I/O error"), -1]
    ]
    results: dict[str, Any] = {}
    barrier = threading.Barrier(16)

    def writer(n: int) -> None:
        barrier.wait()
        content = "POISON pill" if n == 7 else f"healthy {n}"
        try:
            results[content] = faulty.store(content)
        except BaseException as exc:
            results[content] = exc

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
    poisoned = results.pop("POISON pill")
    assert isinstance(poisoned, StorageError)
    assert "disk I/O error" in str(poisoned)
    assert all(not isinstance(r, BaseException) for r in results.values())
    assert {r.id for r in results.values()} <= _stored_ids(db_path)
    assert faulty.count().total == 15
    assert faulty.status()["actors"]["store"]["restarts"] == 0


def test_a_failing_commit_fails_its_callers_and_the_store_lives_on(
    faulty: MemorySystem, db_path: Path
) -> None:
    """While every COMMIT fails, writers get StorageError; afterwards stores succeed again."""
    FaultyConnection.plan = [
        ["COMMIT", None, lambda: sqlite3.OperationalError("disk I/O error"), 40]
    ]
    acked, errors, pool = _run_writers(faulty, 8, 10)
    for thread in pool:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in pool)
    assert errors, "the injected commit failures reached no caller"
    assert all(isinstance(e, StorageError) for e in errors)
    assert len(acked) + len(errors) == 80
    assert _stored_ids(db_path) == set(acked)
    FaultyConnection.plan = []
    assert faulty.store("after the storm").duplicate is False
    assert faulty.status()["actors"]["store"]["restarts"] == 0


def test_a_crashed_store_is_restarted_and_its_batch_is_answered(
    faulty: MemorySystem, db_path: Path
) -> None:
    """A non-SQLite exception kills the store: its callers get errors, then it is restarted."""
    faulty.store("before the crash")
    FaultyConnection.plan = [["COMMIT", None, lambda: RuntimeError("injected crash"), 1]]
    with pytest.raises(StorageError, match="injected crash"):
        faulty.store("during the crash")
    deadline = time.monotonic() + 10
    # The failure reaches the supervisor asynchronously: wait for the restart to finish.
    while not (faulty.status()["state"] == "ready" and _restarts(faulty) == 1):
        assert time.monotonic() < deadline, faulty.status()
        time.sleep(0.01)
    assert faulty.store("after the restart").duplicate is False
    assert faulty.count().total == 2


def test_a_store_that_keeps_crashing_is_reported_degraded(db_path: Path) -> None:
    """Past the restart intensity the supervisor stops restarting and says why."""
    FaultyConnection.plan = []
    config = Config(
        connect=faulty_connect, restart_intensity=2, restart_backoff=0.01, ask_timeout=5.0
    )
    with MemorySystem.open(db_path, config=config) as memory:
        FaultyConnection.plan = [["COMMIT", None, lambda: RuntimeError("crash loop"), -1]]
        deadline = time.monotonic() + 20
        while memory.status()["state"] != "degraded":
            assert time.monotonic() < deadline, memory.status()
            try:
                memory.store(f"attempt {time.monotonic()}")
            except (StorageError, Unavailable, AskTimeout):
                time.sleep(0.01)
        store = memory.status()["actors"]["store"]
        assert store["status"] == "DEGRADED"
        assert "gave up after 2 restarts" in store["reason"]
        with pytest.raises(Unavailable, match="degraded"):
            memory.store("refused while degraded")
    FaultyConnection.plan = []


def test_killing_the_store_actor_from_outside_is_survived(system: MemorySystem) -> None:
    """An unexpected stop of the store looks to callers like a short 'unavailable, retry'."""
    system.store("kept across the restart")
    ref = system._cells["store"].ref
    assert ref is not None
    ref.stop(block=True, timeout=5)
    deadline = time.monotonic() + 10
    while not (system.status()["state"] == "ready" and _restarts(system) == 1):
        assert time.monotonic() < deadline, system.status()
        time.sleep(0.01)
    assert system.count().total == 1


def test_closing_one_system_leaves_a_shared_runtime_running(tmp_path: Path) -> None:
    """Found by the sync sweep: a system closing must not stop a runtime it did not create.

    Here the second system's close would have stopped the shared timer wheel,
    and the first system's supervisor could no longer schedule a restart.
    """
    runtime = ThreadedRuntime()
    first = MemorySystem.open(
        tmp_path / "a.db", runtime=runtime, config=Config(restart_backoff=0.01)
    )
    try:
        with MemorySystem.open(tmp_path / "b.db", runtime=runtime):
            pass
        ref = first._cells["store"].ref
        assert ref is not None
        ref.stop(block=True, timeout=5)
        deadline = time.monotonic() + 10
        while not (first.status()["state"] == "ready" and _restarts(first) == 1):
            assert time.monotonic() < deadline, first.status()
            time.sleep(0.01)
        assert first.store("still served").duplicate is False
    finally:
        first.close()
        runtime.close()


def _append_together(memory: MemorySystem, count: int) -> dict[str, Any]:
    """``count`` callers append one item each to one session at once: one batch or a few."""
    results: dict[str, Any] = {}
    barrier = threading.Barrier(count)

    def appender(n: int) -> None:
        barrier.wait()
        try:
            results[f"item {n}"] = memory.session_add("s", [f"item {n}"])
        except BaseException as exc:
            results[f"item {n}"] = exc

    pool = [threading.Thread(target=appender, args=(n,)) for n in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in pool)
    return results


def _ioerror() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("disk I/O error")


# Why a switch in the connection and not a real failing disk: SQLite raises after its
# commit point only on an I/O error past it (syncing the directory, unlocking,
# checkpointing), which Python cannot provoke without a VFS shim of its own; the
# owner sweep injects the same fault in virtual time (docs/testing.md).


def test_a_commit_that_raises_after_reaching_the_file_is_answered_once_as_committed(
    faulty: MemorySystem,
) -> None:
    """Found by the owner sweep: retrying such a batch write by write logged every
    session append of it twice, and acknowledged them. The batch's commit mark says it
    committed: every append is answered, and in the log once."""
    FaultyConnection.plan = [["COMMIT", None, _ioerror, 1, True]]
    results = _append_together(faulty, 16)
    assert FaultyConnection.plan[0][3] == 0, "the fault never struck"
    assert results == {f"item {n}": 1 for n in range(16)}
    log = faulty.session_items("s")
    assert sorted(log) == sorted(results)
    assert faulty.status()["actors"]["store"]["restarts"] == 0


def test_a_commit_whose_outcome_cannot_be_read_is_neither_acknowledged_nor_repeated(
    faulty: MemorySystem,
) -> None:
    """When the mark cannot be read back either, the batch's callers hear that the
    outcome is unknown; nothing is written again (here it had committed: once each)."""
    FaultyConnection.plan = [
        ["COMMIT", None, _ioerror, 1, True],
        ["SELECT value FROM meta", "commit:", _ioerror, 1],
    ]
    results = _append_together(faulty, 16)
    assert [fault[3] for fault in FaultyConnection.plan] == [0, 0], "a fault never struck"
    unknown = {item: exc for item, exc in results.items() if isinstance(exc, BaseException)}
    assert unknown, "the batch with the unreadable outcome reached no caller"
    for exc in unknown.values():
        assert isinstance(exc, StorageError)
        assert "may be in the file; read before repeating it" in str(exc)
    assert all(results[item] == 1 for item in results.keys() - unknown.keys())
    assert sorted(faulty.session_items("s")) == sorted(results)


def test_a_commit_that_raises_before_reaching_the_file_is_retried_write_by_write(
    faulty: MemorySystem,
) -> None:
    """The other side of the mark: a COMMIT that failed for real rolled back, and the
    batch's writes commit one by one, each once."""
    FaultyConnection.plan = [["COMMIT", None, _ioerror, 1]]
    results = _append_together(faulty, 16)
    assert FaultyConnection.plan[0][3] == 0, "the fault never struck"
    failed = [item for item, result in results.items() if isinstance(result, BaseException)]
    assert len(failed) <= 1  # a batch of one has nothing to retry: its caller hears
    assert sorted(faulty.session_items("s")) == sorted(results.keys() - set(failed))
