"""Traces of simulated runs: JSONL, byte-identical for the same seed.

Line 1 is the header (seed, scenario, strategy, the whole fault plan,
versions). Then one line per event (``[kind, step, t, who, detail]``), then
the client history (``{"client", "op", "phase", "value"}``: invoke / ok /
fail / info), and last the scheduler's decision list, which replays the run
even without the seed (``ReplayStrategy``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["Trace", "load_trace"]

Phase = Literal["invoke", "ok", "fail", "info"]


class Trace:
    """Events, history and decisions of one run; serialised only when asked."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = header
        self.events: list[tuple[str, int, float, str, str]] = []
        self.history: list[dict[str, Any]] = []
        self.decisions: list[int] = []

    def event(self, kind: str, step: int, t: float, who: str, detail: str) -> None:
        self.events.append((kind, step, t, who, detail))

    def decide(self, choice: int) -> None:
        self.decisions.append(choice)

    def record(self, client: str, op: str, phase: Phase, value: Any = None) -> None:
        """Append a client history entry (checkers read these)."""
        self.history.append({"client": client, "op": op, "phase": phase, "value": value})

    def lines(self) -> list[str]:
        dump = json.dumps
        out = [dump({"header": self.header}, sort_keys=True)]
        out.extend(dump([k, s, round(t, 9), w, d]) for k, s, t, w, d in self.events)
        out.extend(dump({"history": h}, sort_keys=True, default=repr) for h in self.history)
        out.append(dump({"decisions": self.decisions}))
        return out

    def digest(self) -> str:
        """SHA-256 of the serialised trace: equal digests mean byte-identical runs."""
        sha = hashlib.sha256()
        for line in self.lines():
            sha.update(line.encode())
            sha.update(b"\n")
        return sha.hexdigest()

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(self.lines()) + "\n", encoding="utf-8")
        return target


def load_trace(path: str | Path) -> tuple[dict[str, Any], list[int]]:
    """The header and the decision list of a written trace."""
    header: dict[str, Any] = {}
    decisions: list[int] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if isinstance(record, dict) and "header" in record:
            header = record["header"]
        elif isinstance(record, dict) and "decisions" in record:
            decisions = record["decisions"]
    return header, decisions
