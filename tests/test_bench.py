"""``memory-actors bench`` as a correctness smoke test: structure, row check, no errors.

Never a timing assertion: the figures depend on the machine. What must hold
everywhere is that every design stores exactly one memory row and one outbox
row per acknowledged store, and that nothing fails.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from actors.bench.command import bench
from actors.bench.store import DESIGNS
from actors.model import uuid7

QUICK = ["--ops", "5", "--threads", "1,4", "--sync", "NORMAL", "--no-mcp"]


def _run(args: list[str], tmp_path: Path) -> Any:
    result = CliRunner().invoke(bench, [*args, "--dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_every_design_stores_one_row_and_one_outbox_row_per_acknowledged_store(
    tmp_path: Path,
) -> None:
    """The JSON report covers each design at each point, with its row check passed and 0 errors."""
    report = json.loads(_run([*QUICK, "--json"], tmp_path).stdout)
    results = report["results"]
    assert {(r["design"], r["threads"]) for r in results} == {
        (design, threads) for design in DESIGNS for threads in (1, 4)
    }
    for r in results:
        assert r["sync"] == "NORMAL"
        assert r["errors"] == 0, r
        assert r["rows_ok"] is True, r
        assert r["ok"] == 5 * r["threads"] == r["rows"] == r["outbox_rows"], r
        assert r["p50_ms"] <= r["p99_ms"]
        assert r["of_raw"] is not None
        if r["design"] != "raw":
            assert r["x_lock_throughput"] is not None
    assert report["rows_ok"] is True
    assert report["errors"] == 0
    assert report["problems"] == []
    assert report["machine"]["sqlite"]


def test_the_table_names_every_design_and_says_the_row_check_passed(tmp_path: Path) -> None:
    """The human report prints the table and an explicit row-check line, and no MISMATCH."""
    output = _run(QUICK, tmp_path).output
    for design in DESIGNS:
        assert design in output
    for column in ("stores/s", "p50 ms", "p99 ms", "errors", "× lock thr", "of raw"):
        assert column in output
    assert "row check: ok" in output
    assert "MISMATCH" not in output
    assert "ERRORS" not in output


def test_bad_options_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """An unknown sync mode is a usage error (exit 2), not a crash."""
    result = CliRunner().invoke(bench, ["--sync", "SOMETIMES", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "SOMETIMES" in result.output


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_uuid7_formatting_matches_the_uuid_module(seed: int) -> None:
    """The hot path's hand-formatted UUIDv7 text is exactly str(uuid.UUID(...))."""
    rng = random.Random(seed)
    for _ in range(2_000):
        ms, a, b = rng.getrandbits(48), rng.getrandbits(12), rng.getrandbits(62)
        text = uuid7(ms, a, b)
        assert text == str(uuid.UUID(text))


@pytest.mark.slow
def test_the_mcp_section_stores_every_acknowledged_call_over_stdio(tmp_path: Path) -> None:
    """memory_store over real stdio: no errors, every acknowledged call is a row on disk."""
    args = ["--mcp-only", "--mcp-calls", "8", "--mcp-concurrency", "1,4", "--sync", "NORMAL"]
    report = json.loads(_run([*args, "--json"], tmp_path).stdout)
    assert report["results"] == []
    mcp = report["mcp"]
    assert [(m["server"], m["concurrency"]) for m in mcp] == [
        ("noop", 1),
        ("memory", 1),
        ("noop", 4),
        ("memory", 4),
    ]
    for m in mcp:
        assert m["errors"] == 0, m
        assert m["ok"] == m["calls"] == 8, m
        if m["server"] == "memory":
            assert m["rows_ok"] is True, m
            assert m["x_noop"] is not None
    assert report["problems"] == []
