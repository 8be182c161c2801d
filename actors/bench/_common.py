"""Internal: what the store and MCP sections of the benchmark share.

The content they write, fresh files with the real schema, the row check that
makes a run fail, and how numbers print. A harness: it may read the clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from actors._sqlite import connect
from actors.bench import _stats
from actors.migrations import migrate

__all__ = ["content", "count_rows", "fmt", "fresh_db", "percentile_ms"]

_FILLER = (
    "The agent learned that the build needs Python 3.11, that tests run with "
    "pytest -q, and that the user prefers short answers with code first."
)


def content(run: str, writer: int, op: int) -> str:
    """The text one store writes: unique per run, writer and call, of a realistic size."""
    return f"bench {run} writer {writer} op {op}: {_FILLER}"


def percentile_ms(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in milliseconds (0 if none)."""
    sample = _stats.nearest_rank(sorted_ns, q)
    return 0.0 if sample is None else sample / 1e6


def fresh_db(workdir: str, name: str) -> str:
    """A new file with the real schema (no WAL or SHM left from an earlier run)."""
    path = os.path.join(workdir, f"{name}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    migrate(path, now=time.time)
    return path


def count_rows(path: str) -> tuple[int, int]:
    """Memory rows and outbox rows in the file: each successful store is one of each."""
    conn = connect(path)
    try:
        rows: int = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        outbox: int = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    return rows, outbox


def fmt(value: float | None, spec: str) -> str:
    """A figure for a table cell; a dash where there is none."""
    return "—" if value is None else format(value, spec)
