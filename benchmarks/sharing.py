"""Many processes on one file (a script, not a test): ``python benchmarks/sharing.py``.

Each worker is an OS process with its own MemorySystem on one shared file,
storing distinct memories for ``--seconds``, either one call at a time
(``sequential``) or with ``--in-flight`` calls outstanding (threads). The
same run measures both designs:

- ``direct``: every process runs its own StoreActor on the file
  (``Config(sharing="direct")``), contending through SQLite's lock;
- ``shared``: the first process owns the file, the others follow it over a
  Unix socket, so one StoreActor group-commits for all.

Prints, per design, processes and mode: total stores/s, p50/p99 per call
(all workers' calls together), errors. Then the handover: ``kill -9`` of
the owner while followers store; the time from the kill to the first
acknowledged store of any follower begun after the owner was gone.
"""

from __future__ import annotations

import argparse
import faulthandler
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

from actors import Config, MemorySystem
from actors.errors import MemoryActorsError


def _worker(
    results: Any, db: str, design: str, name: str, seconds: float, in_flight: int, start: Any
) -> None:
    """One process: open, wait for the start signal, store for ``seconds``; report latencies."""
    # `kill -USR1 <pid>` prints every thread's stack: a stuck run can be read.
    faulthandler.register(signal.SIGUSR1)
    config = Config(sharing="direct" if design == "direct" else "auto", synchronous="FULL")
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    with MemorySystem.open(db, config=config) as system:
        role = system.status()["sharing"]["role"]
        start.wait()
        deadline = time.perf_counter() + seconds

        def loop(thread: int) -> None:
            nonlocal errors
            n = 0
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    system.store(f"{name} thread {thread} memory {n}", namespace="bench")
                except MemoryActorsError:
                    with lock:
                        errors += 1
                else:
                    with lock:
                        latencies.append(time.perf_counter() - began)
                n += 1

        threads = [threading.Thread(target=loop, args=(t,)) for t in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    results.put({"role": role, "latencies": latencies, "errors": errors})


def _run(db: Path, design: str, processes: int, seconds: float, in_flight: int) -> dict[str, Any]:
    context = mp.get_context("spawn")
    start = context.Event()
    queue = context.Queue()
    procs = []
    for n in range(processes):
        proc = context.Process(
            target=_worker, args=(queue, str(db), design, f"p{n}", seconds, in_flight, start)
        )
        proc.start()
        procs.append(proc)
        if n == 0:
            time.sleep(1.0)  # the first process opens (and owns) the file first
    time.sleep(1.0 + 0.2 * processes)  # everyone open
    start.set()
    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=1.0))
        except Empty:
            failed = [p for p in procs if p.exitcode not in (None, 0)]
            if len(results) + len(failed) >= len(procs) and failed:
                # A worker died (its traceback is on stderr): count it, do not hang.
                results += [{"role": "failed", "latencies": [], "errors": 1} for _ in failed]
    for proc in procs:
        proc.join()
    latencies = sorted(x for r in results for x in r["latencies"])
    return {
        "design": design,
        "processes": processes,
        "in_flight": in_flight,
        "roles": sorted(r["role"] for r in results),
        "rate": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan"),
        "errors": sum(r["errors"] for r in results),
    }


_FOLLOWER = """
import sys, time
from actors import MemorySystem
from actors.errors import MemoryActorsError
with MemorySystem.open(sys.argv[1]) as system:
    print("ready", flush=True)
    n = 0
    while True:
        began = time.time()
        try:
            system.store(f"{sys.argv[2]} {n}", timeout=30)
        except MemoryActorsError:
            continue
        print(began, time.time(), flush=True)
        n += 1
"""

_OWNER = """
import sys
from actors import MemorySystem
system = MemorySystem.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
"""


def _handover(db: Path, followers: int, rounds: int) -> list[float]:
    """kill -9 of the owner under load: seconds until a follower's next acknowledged store."""
    import subprocess

    times = []
    for _ in range(rounds):
        owner = subprocess.Popen(
            [sys.executable, "-c", _OWNER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert owner.stdout is not None
        owner.stdout.readline()
        procs = [
            subprocess.Popen(
                [sys.executable, "-u", "-c", _FOLLOWER, str(db), f"f{n}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(followers)
        ]
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        time.sleep(0.5)
        killed = time.time()
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        dead = time.time()
        after = []
        for proc in procs:
            assert proc.stdout is not None
            while True:
                line = proc.stdout.readline()
                if not line:
                    break
                began, acknowledged = map(float, line.split())
                # Begun once the owner was gone, so answered by the next one. (A store
                # acknowledged after the kill may have been the dying owner's last.)
                if began > dead:
                    after.append(acknowledged - killed)
                    break
        times.append(min(after))
        for proc in procs:
            proc.kill()
            proc.wait()
    return times


def _timed_calls(
    system: MemorySystem, verb: str, label: str, probe: str, calls: int
) -> list[float]:
    """Seconds each of ``calls`` one-at-a-time ``get`` (of ``probe``) or ``store`` took."""
    took = []
    for n in range(calls):
        began = time.perf_counter()
        if verb == "get":
            system.get(probe)
        else:
            system.store(f"{label} memory {n}", namespace="overhead")
        took.append(time.perf_counter() - began)
    return took


def _overhead_follower(db: str, probe: str) -> None:
    """The follower's side of ``_follower_overhead``: a block of calls per stdin line."""
    import json

    with MemorySystem.open(db) as system:
        assert system.status()["sharing"]["role"] == "follower"
        print("ready", flush=True)
        for line in sys.stdin:
            verb, label, calls = line.split()
            print(json.dumps(_timed_calls(system, verb, label, probe, int(calls))), flush=True)


#: Calls per block; owner and follower take turns, block by block.
_OVERHEAD_BLOCK = 50


def _follower_overhead(db: Path, calls: int) -> dict[str, tuple[float, float]]:
    """p50 ms of ``get`` and ``store`` called one at a time by the owner and by a follower.

    They take turns in blocks (never both at once), so that both see the
    same host: on a shared machine the disk's and the scheduler's moods
    change from second to second. ``synchronous=NORMAL`` (no fsync per
    commit in WAL mode) keeps the disk out of a figure that is about the
    crossing: the follower's link, the owner's service, and back. So does
    ``semantic=False``: with the model installed, the owner's EmbeddingActor
    embeds each stored memory after the answer, ~2 ms of CPU per store,
    which on two shared cores made the ``store`` figure one of scheduling.
    """
    import json
    import subprocess

    took: dict[tuple[str, str], list[float]] = {}
    config = Config(synchronous="NORMAL", semantic=False)
    with MemorySystem.open(db, config=config) as system:
        probe = system.store("the memory every get reads", namespace="overhead").id
        follower = subprocess.Popen(
            [sys.executable, __file__, "--overhead-follower", str(db), probe],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert follower.stdin is not None
        assert follower.stdout is not None
        assert follower.stdout.readline().strip() == "ready"
        for block in range(max(1, calls // _OVERHEAD_BLOCK)):
            for verb in ("get", "store"):
                took.setdefault((verb, "owner"), []).extend(
                    _timed_calls(system, verb, f"owner-{block}", probe, _OVERHEAD_BLOCK)
                )
                follower.stdin.write(f"{verb} follower-{block} {_OVERHEAD_BLOCK}\n")
                follower.stdin.flush()
                took.setdefault((verb, "follower"), []).extend(
                    json.loads(follower.stdout.readline())
                )
        follower.stdin.close()
        follower.wait(timeout=60)
    return {
        verb: (
            statistics.median(took[verb, "owner"]) * 1000,
            statistics.median(took[verb, "follower"]) * 1000,
        )
        for verb in ("get", "store")
    }


def main() -> None:
    if sys.argv[1:2] == ["--overhead-follower"]:
        _overhead_follower(*sys.argv[2:4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,4,8", help="comma-separated process counts")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=8, help="calls outstanding per process")
    parser.add_argument("--handover-rounds", type=int, default=5)
    parser.add_argument("--designs", default="direct,shared", help="direct, shared or both")
    parser.add_argument(
        "--overhead-calls",
        type=int,
        default=2000,
        help="calls per verb measuring what a follower adds to p50 (0: skip)",
    )
    parser.add_argument("--only-overhead", action="store_true", help="measure only that")
    parser.add_argument(
        "--only-handover", action="store_true", help="measure only the handover after kill -9"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; synchronous=FULL")
    if args.overhead_calls and not args.only_handover:
        with tempfile.TemporaryDirectory() as tmp:
            overhead = _follower_overhead(Path(tmp) / "memory.db", args.overhead_calls)
        for verb, (by_owner, by_follower) in overhead.items():
            print(
                f"{verb} one at a time (synchronous=NORMAL, no embedding), p50: "
                f"owner {by_owner:.3f} ms, "
                f"follower {by_follower:.3f} ms (+{by_follower - by_owner:.3f} ms)"
            )
        if args.only_overhead:
            return
    columns = ("stores/s", 10), ("p50 ms", 9), ("p99 ms", 9), ("errors", 8)
    if not args.only_handover:
        print(f"{'design':<8}{'procs':>6}{'mode':>12}" + "".join(f"{c:>{w}}" for c, w in columns))
    for processes in () if args.only_handover else (int(p) for p in args.processes.split(",")):
        for in_flight, mode in ((1, "sequential"), (args.in_flight, f"{args.in_flight} in flight")):
            for design in args.designs.split(","):
                with tempfile.TemporaryDirectory() as tmp:
                    r = _run(Path(tmp) / "memory.db", design, processes, args.seconds, in_flight)
                print(
                    f"{design:<8}{processes:>6}{mode:>12}{r['rate']:>10.0f}"
                    f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8}"
                )
    if args.handover_rounds:
        with tempfile.TemporaryDirectory() as tmp:
            times = _handover(Path(tmp) / "memory.db", 4, args.handover_rounds)
        print(
            f"handover after kill -9 (4 followers, {len(times)} rounds): "
            f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
