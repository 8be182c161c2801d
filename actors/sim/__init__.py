"""The deterministic simulation: the production actors under one seed.

Import it explicitly (``import actors.sim``); ``import actors`` never loads it.
See ``docs/testing.md``.
"""

from __future__ import annotations

from actors.sim.faults import FaultPlan, sqlite_connector
from actors.sim.runtime import (
    BlockingCallInHandler,
    Client,
    Deadlock,
    Outcome,
    SimError,
    SimRuntime,
    Sleep,
    StepLimitExceeded,
)
from actors.sim.strategies import PCTStrategy, RandomStrategy, ReplayStrategy
from actors.sim.trace import Trace, load_trace

__all__ = [
    "BlockingCallInHandler",
    "Client",
    "Deadlock",
    "FaultPlan",
    "Outcome",
    "PCTStrategy",
    "RandomStrategy",
    "ReplayStrategy",
    "SimError",
    "SimRuntime",
    "Sleep",
    "StepLimitExceeded",
    "Trace",
    "load_trace",
    "sqlite_connector",
]
