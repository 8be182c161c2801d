"""Recall benchmark (a script, not a test): ``python benchmarks/recall.py``.

1. Local keyword recall p50/p99 on a file of N memories (default 100k), by
   query shape, through ``MemorySystem.recall`` and, in the same run, the
   plain statement it replaced (every match scored, then ``LIMIT``).
2. Recall wall time against a real hub behind a proxy adding random latency
   (0 to 2x the recall timeout): the maximum must stay under timeout + 50 ms.
3. ``--semantic``: local semantic recall (the EmbeddingActor, all-MiniLM-L6-v2):
   embedding throughput (memories/s through the actor, from a backlog) and
   recall p50/p99 at N memories, including the query's embedding.

Prints figures; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# The hub process and the slow proxy are the test suite's fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import pykka
from hub_fixtures import HubProcess
from slow_proxy import SlowProxy

from actors import MemorySystem
from actors.keyword_search import MERGE_ABOVE_SEGMENTS, index_segments
from actors.local_db import LocalDatabase
from actors.messages import StoreMemory, WriteRequest
from actors.migrations import migrate
from actors.model import content_hash, uuid7
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


#: Query shapes: which words a query draws (ranks in the Zipf vocabulary).
SHAPES = {
    "frequent pair": lambda rng: [rng.choice(VOCABULARY[:20]), rng.choice(VOCABULARY[:20])],
    "frequent + rare": lambda rng: [rng.choice(VOCABULARY[:20]), rng.choice(VOCABULARY[2000:])],
    "one frequent": lambda rng: [rng.choice(VOCABULARY[:20])],
    "zipf 2 words": lambda rng: rng.choices(VOCABULARY, WEIGHTS, k=2),
    "zipf 3 words": lambda rng: rng.choices(VOCABULARY, WEIGHTS, k=3),
    "rare": lambda rng: [rng.choice(VOCABULARY[2000:])],
}


def build_corpus(path: Path, count: int) -> None:
    """``count`` memories of 12 Zipf words, written in 5,000-row transactions."""
    migrate(str(path), now=time.time)
    rng = random.Random(7)
    ids = iter(range(10**12))
    db = LocalDatabase.open(
        str(path),
        new_id=lambda: uuid7(
            1_700_000_000_000 + next(ids), rng.getrandbits(12), rng.getrandbits(62)
        ),
        wall_time=time.time,
        monotonic=time.monotonic,
        jitter=rng.random,
        synchronous="OFF",
    )
    try:
        started = time.perf_counter()
        for start in range(0, count, 5_000):
            batch: list[WriteRequest] = []
            for i in range(start, min(count, start + 5_000)):
                text = _text(rng, 12) + f" n{i}"
                batch.append(
                    StoreMemory(
                        pykka.ThreadingFuture(), text, content_hash(text), "default", (), "{}"
                    )
                )
            db.commit_writes(batch)
        print(f"built {count} memories in {time.perf_counter() - started:.1f}s")
    finally:
        db.close()


def _plain(conn: sqlite3.Connection, words: list[str]) -> list[str]:
    """The statement keyword_search replaces: every match scored, then LIMIT 10."""
    match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
    return [
        row[0]
        for row in conn.execute(
            "SELECT m.id FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid "
            "WHERE memories_fts MATCH ? AND m.deleted = 0 "
            "ORDER BY bm25(memories_fts), memories_fts.rowid DESC LIMIT 10",
            (match,),
        )
    ]


def local_recall(count: int, queries: int, db: Path | None, plain_too: bool = True) -> None:
    """Keyword recall p50/p99 by query shape: through recall, and the plain statement."""
    with tempfile.TemporaryDirectory() as folder:
        path = db or Path(folder) / "bench.db"
        if not path.exists():
            build_corpus(path, count)
        conn = sqlite3.connect(path)
        # Keyword recall alone: with the model installed, semantic recall would
        # start embedding the whole file in the background, and its CPU would
        # be counted as the queries'.
        segments = index_segments(conn)
        with MemorySystem.open(path, config=Config(synchronous="OFF", semantic=False)) as m:
            # The store merges an index found in many segments when the file opens:
            # measured once that is done, a long-running server's steady state.
            started = time.perf_counter()
            if segments > MERGE_ABOVE_SEGMENTS:
                while index_segments(conn) > 1 and time.perf_counter() - started < 600:
                    time.sleep(0.1)
            waited = time.perf_counter() - started
            print(
                f"keyword index: {segments} segments at open, "
                f"{index_segments(conn)} after {waited:.1f} s"
            )
            total = m.count().total
            print(f"local keyword recall at {total} memories, {queries} queries per shape")
            header = f"{'shape':16} {'recall p50':>10} {'p99':>8} {'plain p50':>10} {'p99':>8}"
            print(f"{header}  same top 10  recall CPU p50 / p99")
            for shape, draw in SHAPES.items():
                rng = random.Random(shape)
                ours: list[float] = []
                # The process's CPU time over the recall (every thread: the caller and
                # the actors): on a shared host, wall time also counts waits for a core.
                cpu: list[float] = []
                plain: list[float] = []
                same = 0
                for _ in range(queries):
                    words = draw(rng)
                    c0, t0 = time.process_time(), time.perf_counter()
                    hits = m.recall(" ".join(words), limit=10).hits
                    ours.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.process_time() - c0) * 1000)
                    if plain_too:
                        t0 = time.perf_counter()
                        reference = _plain(conn, words)
                        plain.append((time.perf_counter() - t0) * 1000)
                        same += [hit.id for hit in hits] == reference
                    else:
                        plain.append(float("nan"))
                print(
                    f"{shape:16} {statistics.median(ours):10.2f} {_percentile(ours, 0.99):8.2f} "
                    f"{statistics.median(plain):10.2f} {_percentile(plain, 0.99):8.2f}  "
                    f"{100 * same / queries:10.0f} %  "
                    f"{statistics.median(cpu):8.2f} / {_percentile(cpu, 0.99):.2f}"
                )
        conn.close()


def embedding_throughput(count: int) -> None:
    """Memories/s the EmbeddingActor embeds and stores, from a backlog of ``count``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "throughput.db"
        build_corpus(path, count)
        with MemorySystem.open(path, config=Config(semantic=True)) as m:
            started = time.perf_counter()
            while m.status()["semantic"]["state"] in ("loading", "unknown"):
                time.sleep(0.05)
            while True:
                semantic = m.status()["semantic"]
                if semantic["state"] == "idle" and semantic["indexed"] == count:
                    break
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
        print(
            f"embedding throughput: {count} memories of 13 words in {elapsed:.1f}s = "
            f"{count / elapsed:.1f} memories/s"
        )


def _random_vectors(path: Path, model: str, dimension: int) -> int:
    """Give every memory without one a random unit vector of ``model`` (see semantic_recall)."""
    import numpy as np

    rng = np.random.default_rng(7)
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT rowid, content_hash FROM memories m WHERE deleted = 0 AND NOT EXISTS "
            "(SELECT 1 FROM memory_vectors v WHERE v.memory_rowid = m.rowid AND v.model = ?)",
            (model,),
        ).fetchall()
        for start in range(0, len(rows), 10_000):
            part = rows[start : start + 10_000]
            matrix = rng.standard_normal((len(part), dimension)).astype("<f4")
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            conn.executemany(
                "INSERT OR REPLACE INTO memory_vectors VALUES (?, ?, ?, ?, ?)",
                [
                    (rowid, digest, model, dimension, vector.tobytes())
                    for (rowid, digest), vector in zip(part, matrix, strict=True)
                ],
            )
            conn.commit()
    finally:
        conn.close()
    return len(rows)


def semantic_recall(count: int, queries: int, db: Path | None) -> None:
    """Local semantic recall p50/p99 at ``count`` memories, query embedding included.

    Embedding 100k memories with MiniLM takes an hour on this machine, so the
    stored vectors are random unit vectors carrying MiniLM's name and
    dimension: a query's cost does not depend on their values (the query is
    embedded by the real model, the exact search scans every vector, the
    store checks and fuses the candidates with its keyword hits).
    """
    from actors.embedders import MINILM_NAME

    with tempfile.TemporaryDirectory() as folder:
        path = db or Path(folder) / "bench.db"
        if not path.exists():
            build_corpus(path, count)
        migrate(str(path), now=time.time)
        added = _random_vectors(path, MINILM_NAME, 384)
        with MemorySystem.open(path, config=Config(synchronous="OFF", semantic=True)) as m:
            total = m.count().total
            started = time.perf_counter()
            while True:
                semantic = m.status()["semantic"]
                if semantic["state"] == "idle" and semantic["indexed"] == total:
                    break
                time.sleep(0.1)
            print(
                f"local semantic recall at {total} memories ({added} random vectors added); "
                f"index loaded in {time.perf_counter() - started:.1f}s; {queries} queries per shape"
            )
            print(f"{'shape':16} {'p50 ms':>8} {'p99 ms':>8}")
            every: list[float] = []
            for shape, draw in SHAPES.items():
                rng = random.Random(shape)
                times: list[float] = []
                for _ in range(queries):
                    t0 = time.perf_counter()
                    answer = m.recall(" ".join(draw(rng)), limit=10)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert "semantic" in answer.reason, answer.reason
                every += times
                print(f"{shape:16} {statistics.median(times):8.2f} {_percentile(times, 0.99):8.2f}")
            print(f"{'all':16} {statistics.median(every):8.2f} {_percentile(every, 0.99):8.2f}")


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
    parser.add_argument(
        "--db", type=Path, help="Reuse (or build once) this corpus file instead of a temporary one."
    )
    parser.add_argument("--local-only", action="store_true", help="Skip the bounded-recall part.")
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="Only local semantic recall: embedding throughput, then p50/p99 at --memories.",
    )
    parser.add_argument("--throughput-memories", type=int, default=500)
    parser.add_argument(
        "--no-plain",
        action="store_true",
        help="Skip the plain statement (seconds a query at 1M memories); no 'same top 10'.",
    )
    args = parser.parse_args()
    if args.semantic:
        embedding_throughput(args.throughput_memories)
        semantic_recall(args.memories, args.queries, args.db)
        return
    local_recall(args.memories, args.queries, args.db, plain_too=not args.no_plain)
    if not args.local_only:
        bounded_recall(args.recalls, args.timeout)


if __name__ == "__main__":
    main()
