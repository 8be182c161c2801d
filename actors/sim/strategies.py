"""Scheduling strategies: which runnable task runs next.

A strategy sees the runnable tasks as a list in a stable order (spawn order)
and answers an index into it. Every answer is recorded in the trace as a
decision, so :class:`ReplayStrategy` can re-run a schedule without the seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "PCTStrategy",
    "RandomStrategy",
    "ReplayExhausted",
    "ReplayStrategy",
    "Strategy",
    "make_strategy",
]


class Strategy(Protocol):
    """Chooses the next task among ``runnable`` (names, in a stable order)."""

    name: str

    def choose(self, step: int, runnable: Sequence[str]) -> int: ...

    def describe(self) -> dict[str, object]: ...


class RandomStrategy:
    """Uniformly random among the runnable tasks: good coverage of common interleavings."""

    name = "random"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, step: int, runnable: Sequence[str]) -> int:
        return self._rng.randrange(len(runnable))

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


class PCTStrategy:
    """Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010).

    Each task gets a random priority when first seen; the highest-priority
    runnable task always runs, and at ``depth - 1`` random change points the
    running task drops below every other. A bug that needs d specific
    ordering constraints is found with probability at least 1/(n·k^(d-1)),
    far more often than uniform scheduling finds rare orderings.
    """

    name = "pct"

    def __init__(self, rng: random.Random, *, depth: int = 3, max_steps: int = 2_000) -> None:
        self._rng = rng
        self.depth = depth
        self.max_steps = max_steps
        self._priorities: dict[str, float] = {}
        self._change_points = sorted(rng.randrange(1, max_steps) for _ in range(depth - 1))
        self._low = 0.0

    def choose(self, step: int, runnable: Sequence[str]) -> int:
        for name in runnable:
            if name not in self._priorities:
                self._priorities[name] = 1.0 + self._rng.random()
        best = max(range(len(runnable)), key=lambda i: self._priorities[runnable[i]])
        while self._change_points and self._change_points[0] <= step:
            self._change_points.pop(0)
            self._low -= 1.0
            self._priorities[runnable[best]] = self._low
            best = max(range(len(runnable)), key=lambda i: self._priorities[runnable[i]])
        return best

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "depth": self.depth, "max_steps": self.max_steps}


class ReplayExhausted(Exception):
    """The recorded decision list ended before the run did: the code changed since."""


class ReplayStrategy:
    """Re-runs a recorded decision list exactly; no seed needed for scheduling."""

    name = "replay"

    def __init__(self, decisions: Sequence[int]) -> None:
        self._decisions = list(decisions)
        self._next = 0

    def choose(self, step: int, runnable: Sequence[str]) -> int:
        if self._next >= len(self._decisions):
            raise ReplayExhausted(f"the recording has {len(self._decisions)} decisions")
        choice = self._decisions[self._next]
        self._next += 1
        if not 0 <= choice < len(runnable):
            raise ReplayExhausted(
                f"decision {self._next - 1} chose {choice} of {len(runnable)} runnable tasks"
            )
        return choice

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "decisions": len(self._decisions)}


def make_strategy(spec: str | Strategy, rng: random.Random) -> Strategy:
    """``"random"`` or ``"pct"`` (optionally ``"pct:5"`` for depth 5), or a strategy object."""
    if not isinstance(spec, str):
        return spec
    name, _, arg = spec.partition(":")
    if name == "random":
        return RandomStrategy(rng)
    if name == "pct":
        return PCTStrategy(rng, depth=int(arg) if arg else 3)
    raise ValueError(f"unknown strategy {spec!r}: use 'random', 'pct' or 'pct:DEPTH'")
