"""Internal: the figures both benchmarks report the same way (percentiles, the machine).

A harness, not an actor: it may read the clock and the host directly.
"""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["machine", "nearest_rank", "nearest_rank_ms"]

_Sample = TypeVar("_Sample", int, float)


def nearest_rank(ordered: Sequence[_Sample], q: float) -> _Sample | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of sorted samples; None if there are none.

    Nearest rank, not interpolation: every figure reported is a latency that
    one call really had.
    """
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def nearest_rank_ms(ordered_seconds: Sequence[float], q: float) -> float:
    """:func:`nearest_rank` of sorted seconds, in milliseconds (NaN if there are none)."""
    sample = nearest_rank(ordered_seconds, q)
    return math.nan if sample is None else sample * 1000


def machine() -> dict[str, Any]:
    """What ran the benchmark, printed beside its figures."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        # Other load on the host skews every figure: read them next to this.
        # (None where the OS has no load average: Windows.)
        "loadavg_1_5_15": (
            [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        ),
    }
