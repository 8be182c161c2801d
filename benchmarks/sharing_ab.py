"""What a follower adds to a call, two checkouts side by side (a script, not a test).

``python benchmarks/sharing_ab.py --base /path/to/other/checkout``

Each checkout (``--base`` as A, this one as B) runs its own owner process
and follower process on a file of its own; the four take turns in blocks of
50 one-at-a-time ``get`` and ``store`` calls (owner A, follower A, owner B,
follower B, ...), so that both checkouts see the same host, second by second:
on a shared machine, runs one after the other measure the neighbours as much
as the code. Each process imports ``actors`` from its checkout
(``PYTHONPATH``) and times its calls with that checkout's
``benchmarks/sharing.py`` (its ``--overhead-follower`` mode, and
``_timed_calls`` for the owner). As there: ``synchronous=NORMAL`` and no
embedding in the owner, so that the figure is the crossing's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_OWNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1] + "/benchmarks")
from sharing import _timed_calls
from actors import Config, MemorySystem
config = Config(synchronous="NORMAL", semantic=False)
with MemorySystem.open(sys.argv[2], config=config) as system:
    probe = system.store("the memory every get reads", namespace="overhead").id
    print(probe, flush=True)
    for line in sys.stdin:
        verb, label, calls = line.split()
        print(json.dumps(_timed_calls(system, verb, label, probe, int(calls))), flush=True)
"""

_BLOCK = 50


def _spawn(tree: str, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=tree),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _timed(proc: subprocess.Popen[str], line: str) -> list[float]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    took: list[float] = json.loads(proc.stdout.readline())
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other checkout (A)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per verb and process")
    args = parser.parse_args()
    trees = {"A": str(Path(args.base).resolve()), "B": str(Path(__file__).resolve().parents[1])}
    took: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        for side, tree in trees.items():
            db = Path(tmp) / side / "memory.db"
            db.parent.mkdir()
            owner = _spawn(tree, ["-c", _OWNER, tree, str(db)])
            assert owner.stdout is not None
            probe = owner.stdout.readline().strip()
            follower = _spawn(
                tree, [f"{tree}/benchmarks/sharing.py", "--overhead-follower", str(db), probe]
            )
            assert follower.stdout is not None
            assert follower.stdout.readline().strip() == "ready"
            procs[side] = {"owner": owner, "follower": follower}
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for block in range(max(1, args.calls // _BLOCK)):
            for verb in ("get", "store"):
                for side, pair in procs.items():
                    for role, proc in pair.items():
                        took.setdefault((side, verb, role), []).extend(
                            _timed(proc, f"{verb} {role}-{block} {_BLOCK}")
                        )
        for pair in procs.values():
            for proc in pair.values():
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(60)
        print(f"load average {os.getloadavg()[0]:.1f} after")
    for verb in ("get", "store"):
        for side, tree in trees.items():
            owner_ms = statistics.median(took[side, verb, "owner"]) * 1000
            follower_ms = statistics.median(took[side, verb, "follower"]) * 1000
            print(
                f"{side} {verb:<5} p50: owner {owner_ms:.3f} ms, follower {follower_ms:.3f} ms "
                f"(+{follower_ms - owner_ms:.3f} ms)  {tree}"
            )


if __name__ == "__main__":
    main()
