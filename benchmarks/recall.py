"""Recall benchmark (a script, not a test): ``python benchmarks/recall.py``.

1. Local keyword recall p50/p99 on a file of N memories (default 100k).
2. Recall wall time against a real hub behind a proxy adding random latency
   (0 to 2x the recall timeout): the maximum must stay under timeout + 50 ms.

Prints figures; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# The hub process and the slow proxy are the test suite's fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hub_fixtures import HubProcess
from slow_proxy import SlowProxy

from actors import MemorySystem
from actors.sync_model import RemoteConfig
from actors.system import Config

#: Words of the bounded-recall queries (distinct queries defeat the cache on purpose).
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]

#: A Zipf-distributed vocabulary, like real notes: a few words are everywhere,
#: most are rare. (A 40-word vocabulary makes every query match a quarter of
#: the file, which measures BM25 sorting, not recall.)
VOCABULARY = [f"w{n}" for n in range(20_000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCABULARY, WEIGHTS, k=words))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def local_recall(count: int, queries: int) -> None:
    rng = random.Random(7)
    with (
        tempfile.TemporaryDirectory() as folder,
        MemorySystem.open(Path(folder) / "bench.db", config=Config(synchronous="OFF")) as m,
    ):
        if True:
            started = time.perf_counter()

            def writer(offset: int) -> None:
                local = random.Random(offset)
                for i in range(offset, count, 32):
                    m.store(_text(local, 12) + f" #{i}")

            pool = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            print(f"loaded {m.count().total} memories in {time.perf_counter() - started:.1f}s")
            latencies = []
            for _ in range(queries):
                query = _text(rng, 2)
                t0 = time.perf_counter()
                m.recall(query, limit=10)
                latencies.append((time.perf_counter() - t0) * 1000)
            print(
                f"local keyword recall at {count}: p50 {statistics.median(latencies):.2f} ms, "
                f"p99 {_percentile(latencies, 0.99):.2f} ms ({queries} queries)"
            )


class RandomLatencyProxy(SlowProxy):
    """Each recall waits a random 0..max seconds (the proxy's own RNG, seeded)."""

    def __init__(self, upstream: str, maximum: float) -> None:
        super().__init__(upstream, delay=0.0, slow_paths=("/api/recall",))
        self.maximum = maximum
        self.rng = random.Random(11)

    def process_request(self, request: object, client_address: object) -> None:
        self.delay = self.rng.uniform(0, self.maximum)
        super().process_request(request, client_address)  # type: ignore[arg-type]


def bounded_recall(recalls: int, timeout: float) -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        HubProcess.running((Path(folder) / "hub.db").absolute()) as hub,
    ):
        key = hub.add_key("bench")
        proxy = RandomLatencyProxy(hub.url, 2 * timeout)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            config = Config(remote=RemoteConfig(proxy.url, key), recall_timeout=timeout)
            with MemorySystem.open(Path(folder) / "c.db", config=config) as m:
                for word in WORDS:
                    m.store(f"a note about {word}")
                walls: list[float] = []
                statuses: dict[str, int] = {}
                lock = threading.Lock()

                def caller(n: int) -> None:
                    rng = random.Random(n)
                    for _ in range(recalls // 8):
                        # Distinct queries, so the cache does not hide the hub's latency.
                        query = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.random():.6f}"
                        t0 = time.perf_counter()
                        result = m.recall(query)
                        wall = time.perf_counter() - t0
                        with lock:
                            walls.append(wall)
                            statuses[result.status] = statuses.get(result.status, 0) + 1

                pool = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
        finally:
            proxy.stopping.set()
            proxy.shutdown()
            proxy.server_close()
        worst = max(walls)
        verdict = "ok" if worst <= timeout + 0.05 else "MISSED"
        print(
            f"{len(walls)} recalls, hub latency uniform 0..{2 * timeout:.2f}s, "
            f"timeout {timeout:.2f}s: p50 {statistics.median(walls) * 1000:.1f} ms, "
            f"p99 {_percentile(walls, 0.99) * 1000:.1f} ms, max {worst * 1000:.1f} ms "
            f"(bound {1000 * (timeout + 0.05):.0f} ms: {verdict}); "
            f"statuses {statuses}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--recalls", type=int, default=1_000)
    parser.add_argument("--timeout", type=float, default=0.25)
    args = parser.parse_args()
    local_recall(args.memories, args.queries)
    bounded_recall(args.recalls, args.timeout)


if __name__ == "__main__":
    main()
