"""The fault plan of a simulated run: which faults, how often.

A plan is derived from the seed unless given, and written whole into the
trace header, so a failing run names every fault it was exposed to. The
sites that inject faults are where the faulty thing lives: the runtime
(crashes, stalls, clock), :mod:`actors.sim.sqlite` (SQLite),
:mod:`actors.sim.hub` (the hub). A plain record: it imports nothing of the
simulation.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

__all__ = ["FaultPlan"]


@attrs.frozen
class FaultPlan:
    """Probabilities (per opportunity) of each fault; all zero means a fault-free run."""

    #: ``BEGIN IMMEDIATE`` answers SQLITE_BUSY (another process holds the lock).
    sqlite_busy: float = 0.0
    #: A statement inside a write transaction raises a disk I/O error.
    sqlite_io_error: float = 0.0
    #: ``COMMIT`` succeeds on disk, then raises: the caller cannot know the outcome.
    sqlite_ambiguous_commit: float = 0.0
    #: An actor crashes instead of handling a message (named actors only).
    crash: float = 0.0
    crash_actors: tuple[str, ...] = ("store",)
    #: An actor stalls (is not scheduled) for up to ``stall_max`` virtual seconds.
    stall: float = 0.0
    stall_max: float = 0.5
    #: Wall-clock skew from the start, and a chance per step of a jump (±``jump_max`` s).
    clock_skew: float = 0.0
    clock_jump: float = 0.0
    jump_max: float = 5.0
    #: Per hub request: a 5xx, a client timeout (the request may have been applied),
    #: no connection, a refused key (401), throttling (429), a garbage body.
    hub_error: float = 0.0
    hub_timeout: float = 0.0
    hub_unreachable: float = 0.0
    hub_auth: float = 0.0
    hub_throttle: float = 0.0
    hub_garbage: float = 0.0
    #: Per hub request: the call takes up to ``hub_latency_max`` seconds (the caller
    #: blocks; what it sends afterwards arrives that much later).
    hub_latency: float = 0.0
    hub_latency_max: float = 2.0
    #: Per change-feed page: the previous page served again, or a page in reverse order.
    hub_duplicate_page: float = 0.0
    hub_reorder_page: float = 0.0

    @classmethod
    def none(cls) -> FaultPlan:
        return cls()

    @classmethod
    def from_seed(cls, rng: random.Random) -> FaultPlan:
        """A plan in which each fault is present in about half the runs, at a modest rate."""

        def maybe(rate: float) -> float:
            return round(rng.uniform(0, rate), 4) if rng.random() < 0.5 else 0.0

        return cls(
            sqlite_busy=maybe(0.3),
            sqlite_io_error=maybe(0.05),
            sqlite_ambiguous_commit=maybe(0.05),
            crash=maybe(0.02),
            stall=maybe(0.05),
            clock_skew=round(rng.uniform(-60, 60), 3) if rng.random() < 0.3 else 0.0,
            clock_jump=maybe(0.01),
            hub_error=maybe(0.2),
            hub_timeout=maybe(0.1),
            hub_unreachable=maybe(0.1),
            hub_auth=maybe(0.05),
            hub_throttle=maybe(0.1),
            hub_garbage=maybe(0.1),
            hub_latency=maybe(0.5),
            hub_duplicate_page=maybe(0.3),
            hub_reorder_page=maybe(0.3),
        )

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["crash_actors"] = list(self.crash_actors)
        return data
