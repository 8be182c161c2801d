"""The deterministic simulation: the production actors under one seed.

Import it explicitly (``import actors.sim``); ``import actors`` never loads it.
See ``docs/testing.md``.

The names below load on first use: pytest imports this package for its
plugin (:mod:`actors.sim.pytest_plugin`) in every run where memory-actors is
installed, and a run that uses no simulation fixture should not pay for the
runtime, the scenarios or the hub they bring.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.sim.faults import FaultPlan
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
    from actors.sim.sqlite import sqlite_connector
    from actors.sim.strategies import PCTStrategy, RandomStrategy, ReplayStrategy
    from actors.sim.trace import Trace, load_trace

#: Public name → the submodule that defines it.
_HOMES = {
    "BlockingCallInHandler": "runtime",
    "Client": "runtime",
    "Deadlock": "runtime",
    "FaultPlan": "faults",
    "Outcome": "runtime",
    "PCTStrategy": "strategies",
    "RandomStrategy": "strategies",
    "ReplayStrategy": "strategies",
    "SimError": "runtime",
    "SimRuntime": "runtime",
    "Sleep": "runtime",
    "StepLimitExceeded": "runtime",
    "Trace": "trace",
    "load_trace": "trace",
    "sqlite_connector": "sqlite",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'actors.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"actors.sim.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
