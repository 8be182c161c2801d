"""A writer that tests run as a real OS process while they back its file up.

``python tests/backup_workers.py write-loop DB STATUS STOP`` stores ``seq 0``,
``seq 1``, ... one at a time (each acknowledged before the next), writes how
many are acknowledged to STATUS after each, and stops once STOP exists. It
prints ``{"stored": n}`` and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import MemorySystem
from actors.system import Config


def write_loop(db: str, status: str, stop: str) -> None:
    stored = 0
    with MemorySystem.open(db, config=Config(busy_timeout=10.0)) as memory:
        while not os.path.exists(stop):
            memory.store(f"seq {stored}", namespace="writer")
            stored += 1
            scratch = f"{status}.tmp"
            Path(scratch).write_text(str(stored), encoding="utf-8")
            os.replace(scratch, status)
    print(json.dumps({"stored": stored}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "write-loop":
        write_loop(*args)
    else:
        sys.exit(f"unknown worker command {command!r}")
