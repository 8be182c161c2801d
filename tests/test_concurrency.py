"""Many writers at once, in one process and across OS processes, on one real file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from actors import MemorySystem

WORKERS = str(Path(__file__).with_name("workers.py"))


def _count_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        total: int = conn.execute("SELECT count(*) FROM memories WHERE deleted = 0").fetchone()[0]
        return total
    finally:
        conn.close()


def test_64_threads_storing_200_each_give_exactly_12800_rows(db_path: Path) -> None:
    """Group commit under 64 concurrent writers loses nothing and raises nothing."""
    errors: list[BaseException] = []
    ids: list[str] = []
    barrier = threading.Barrier(64)

    with MemorySystem.open(db_path) as memory:

        def writer(n: int) -> None:
            barrier.wait()
            for i in range(200):
                try:
                    ids.append(memory.store(f"writer {n} memory {i}").id)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert memory.count().total == 12_800
        assert memory.count().outbox_pending == 12_800
    assert len(set(ids)) == 12_800
    assert _count_rows(db_path) == 12_800


def test_concurrent_readers_see_their_own_acknowledged_writes(system: MemorySystem) -> None:
    """Read-your-writes: a get right after a store always finds it, from any thread."""
    misses: list[str] = []

    def writer_reader(n: int) -> None:
        for i in range(50):
            receipt = system.store(f"ryw {n} {i}")
            if system.get(receipt.id).content != f"ryw {n} {i}":
                misses.append(receipt.id)

    threads = [threading.Thread(target=writer_reader, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert misses == []
    assert system.count().total == 800


@pytest.mark.slow
def test_four_processes_of_16_threads_share_one_file_while_another_holds_the_lock(
    tmp_path: Path,
) -> None:
    """4 OS processes × 16 threads, while a foreign connection holds a write lock for 2 s.

    Every acknowledged id must be in the file; the total must be exact; no errors.
    """
    db = tmp_path / "shared.db"
    with MemorySystem.open(db):
        pass  # migrate once so the lock holder has a schema to lock
    ready = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, WORKERS, "lock", str(db), "2.0", str(ready)],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert holder.poll() is None, "lock holder died"
        assert time.monotonic() < deadline, "lock holder never took the lock"
        time.sleep(0.01)
    writers = [
        subprocess.Popen(
            [sys.executable, WORKERS, "store", str(db), "16", "40", f"proc{p}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    results = []
    for proc in writers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    holder.communicate(timeout=30)
    assert holder.returncode == 0

    acked = [memory_id for result in results for memory_id in result["acked"]]
    assert [result["errors"] for result in results] == [[], [], [], []]
    assert len(acked) == 4 * 16 * 40
    conn = sqlite3.connect(db)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM memories WHERE deleted = 0")}
    finally:
        conn.close()
    assert set(acked) <= stored
    assert len(stored) == 4 * 16 * 40
