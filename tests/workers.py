"""Worker programs that tests run as real OS processes (``python tests/workers.py ...``).

Each prints one JSON document on stdout and exits 0, or exits non-zero with
the error on stderr.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import MemorySystem
from actors.system import Config


def store_many(db: str, threads: int, per_thread: int, tag: str) -> None:
    """Store ``threads × per_thread`` distinct memories; report acked ids and errors."""
    acked: list[str] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            try:
                receipt = memory.store(f"{tag} thread {index} item {i}", tags=[tag])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                acked.append(receipt.id)

    with MemorySystem.open(db, config=Config(busy_timeout=10.0)) as memory:
        pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    print(json.dumps({"acked": acked, "errors": errors}))


def open_only(db: str) -> None:
    """Open (and so migrate) the file, report the migration, close."""
    with MemorySystem.open(db) as memory:
        report = memory.migration
    print(json.dumps({"from": report.from_version, "applied": list(report.applied)}))


def hold_write_lock(db: str, seconds: float, ready_file: str) -> None:
    """Hold a write transaction on ``db`` for ``seconds`` (a foreign writer)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    Path(ready_file).write_text("locked")
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()
    print(json.dumps({"held": seconds}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "store":
        store_many(args[0], int(args[1]), int(args[2]), args[3])
    elif command == "open":
        open_only(args[0])
    elif command == "lock":
        hold_write_lock(args[0], float(args[1]), args[2])
    else:
        sys.exit(f"unknown worker command {command!r}")
