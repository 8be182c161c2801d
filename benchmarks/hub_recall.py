"""Benchmark of the hub's semantic recall: the numbers of docs/performance.md, reproducible.

Not a test (pytest collects tests/ only). Run from the repository root::

    .venv/bin/python benchmarks/hub_recall.py index     # VectorIndex at 10k/100k/300k
    .venv/bin/python benchmarks/hub_recall.py embed     # MiniLM: numpy vs sentence-transformers
    .venv/bin/python benchmarks/hub_recall.py hub       # a real hub: 100k memories, recall p50/p99
    .venv/bin/python benchmarks/hub_recall.py push      # push latency, idle vs embedding a backlog

Each prints one JSON document. Timings are wall-clock on whatever else the
machine is doing: run each a few times and keep the median run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

# The hub process and the memory factory are the test suite's fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hub_fixtures import HubProcess, memory

from actors.hub.vectors import VectorIndex

DIM = 384


def _pct(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "p99_ms": round(p99 * 1e3, 2),
        "n": len(ordered),
    }


def _unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = rng.standard_normal((500, DIM)).astype(np.float32)
    rows = centres[rng.integers(0, 500, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def bench_index() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for n in (10_000, 100_000, 300_000):
        rows = _unit_rows(rng, n)
        index = VectorIndex("bench", DIM)
        started = time.perf_counter()
        for key in range(n):
            index.put("t", key, f"ns{key % 10}", ("a",) if key % 3 == 0 else (), rows[key])
        put_us = (time.perf_counter() - started) / n * 1e6
        queries = _unit_rows(rng, 200)
        plain, in_namespace, tagged = [], [], []
        for query in queries:
            t = time.perf_counter()
            index.search("t", query, 100)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search("t", query, 100, namespace="ns3")
            in_namespace.append(time.perf_counter() - t)
            t = time.perf_counter()
            index.search("t", query, 100, tags=("a",))
            tagged.append(time.perf_counter() - t)
        started = time.perf_counter()
        for key in range(2000):
            index.remove("t", key)
        remove_us = (time.perf_counter() - started) / 2000 * 1e6
        out[str(n)] = {
            "search_k100": _pct(plain),
            "search_k100_namespace": _pct(in_namespace),
            "search_k100_tag": _pct(tagged),
            "put_us": round(put_us, 2),
            "remove_us": round(remove_us, 2),
            "matrix_mib": round(n * DIM * 4 / 2**20, 1),
        }
    return out


def bench_embed() -> dict[str, Any]:
    from actors.hub.embedders import MiniLMEmbedder

    texts = [
        f"Memory {i}: the {w} service on host app-{i % 17} was moved to the new cluster after "
        f"the incident review, and its owner is the {w} team."
        for i, w in enumerate(["payments", "search", "billing", "auth"] * 64)
    ]
    queries = [f"who owns the {w} service now?" for w in ["payments", "auth", "search"] * 20]
    out: dict[str, Any] = {}
    for backend in ("numpy", "sentence-transformers"):
        try:
            t = time.perf_counter()
            embedder = MiniLMEmbedder(backend)  # type: ignore[arg-type]
            load_s = time.perf_counter() - t
        except Exception as exc:
            out[backend] = {"error": repr(exc)}
            continue
        embedder.embed(texts[:8])
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            for start in range(0, len(texts), 32):
                embedder.embed(texts[start : start + 32])
            runs.append(len(texts) / (time.perf_counter() - t))
        single = []
        for query in queries:
            t = time.perf_counter()
            embedder.embed([query])
            single.append(time.perf_counter() - t)
        out[backend] = {
            "load_s": round(load_s, 2),
            "batch32_texts_per_s": round(statistics.median(runs), 1),
            "query": _pct(single),
        }
    return out


def _fill(db: Path, tenant: str, n: int) -> None:
    """``n`` memories with random MiniLM-sized vectors, written straight into a hub file."""
    import sqlite3

    from actors.hub.database import HubDatabase
    from actors.hub.embedders import MINILM_NAME
    from actors.hub.schema import prepare_hub_file
    from actors.runtime import ThreadedRuntime

    rt = ThreadedRuntime(seed=1)
    prepare_hub_file(str(db), now=rt.wall_time)
    database = HubDatabase.open(str(db), new_id=rt.new_id, synchronous="OFF")
    words = ["alpha", "beta", "gamma", "delta", "service", "host", "cluster", "owner"]
    rng = np.random.default_rng(1)
    try:
        for start in range(0, n, 5000):
            items = tuple(
                memory(
                    f"memory {i}: {' '.join(rng.choice(words, 12))} #{i}",
                    namespace=f"ns{i % 10}",
                )
                for i in range(start, min(n, start + 5000))
            )
            database.commit_pushes([(tenant, items)], time.time())
    finally:
        database.close()
    conn = sqlite3.connect(db)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('embed_model', ?), "
            "('embed_dimension', '384')",
            (MINILM_NAME,),
        )
        rows = conn.execute("SELECT rowid, tenant, id, content_hash FROM memories").fetchall()
        vectors = _unit_rows(rng, len(rows))
        conn.executemany(
            "INSERT INTO vectors(mem_rowid, tenant, id, model, dimension, content_hash, vector, "
            "vseq) VALUES (?, ?, ?, ?, 384, ?, ?, ?)",
            (
                (row[0], row[1], row[2], MINILM_NAME, row[3], vectors[i].tobytes(), i + 1)
                for i, row in enumerate(rows)
            ),
        )
        conn.execute("DELETE FROM embed_queue")
        conn.execute("COMMIT")
    finally:
        conn.close()


def bench_hub(n: int = 100_000) -> dict[str, Any]:
    """A real hub process with ``n`` memories of one tenant: recall latency over HTTP."""
    out: dict[str, Any] = {"memories": n}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "hub.db"
        started = time.perf_counter()
        _fill(db, "bench", n)
        out["fill_s"] = round(time.perf_counter() - started, 1)
        with HubProcess.running(db, args=("--embedder", "minilm")) as hub:
            started = time.perf_counter()
            with hub.client(hub.add_key("bench"), timeout=60.0) as client:
                while client.recall("warm up", limit=1).pending:
                    time.sleep(0.2)
                out["index_load_s"] = round(time.perf_counter() - started, 1)
                for label, kwargs in (
                    ("recall_limit10", {}),
                    ("recall_limit10_namespace", {"namespace": "ns3"}),
                    ("recall_identifier_query", {"query": "which memory is #4242"}),
                ):
                    samples = []
                    for i in range(200):
                        query = kwargs.get("query", f"who owns the cluster deploy key {i}")
                        extra = {k: v for k, v in kwargs.items() if k != "query"}
                        t = time.perf_counter()
                        client.recall(str(query), limit=10, **extra)  # type: ignore[arg-type]
                        samples.append(time.perf_counter() - t)
                    out[label] = _pct(samples)
    return out


def bench_push() -> dict[str, Any]:
    """Push latency on a MiniLM hub, idle, then while it embeds a 3,000-memory backlog."""
    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        HubProcess.running(Path(tmp) / "hub.db", args=("--embedder", "minilm")) as hub,
        hub.client(hub.add_key("bench"), timeout=30.0) as client,
    ):

        def timed(count: int) -> list[float]:
            samples = []
            for _ in range(count):
                item = memory(f"push {uuid.uuid4().hex} of the benchmark")
                t = time.perf_counter()
                client.push([item])
                samples.append(time.perf_counter() - t)
            return samples

        timed(20)
        while client.recall("x", limit=1).pending:
            time.sleep(0.2)
        out["push_idle"] = _pct(timed(200))
        backlog = [memory(f"backlog memory {i} about the {i % 13} service") for i in range(3000)]
        for start in range(0, len(backlog), 500):
            client.push(backlog[start : start + 500])
        started = time.perf_counter()
        out["push_while_embedding"] = _pct(timed(200))
        pending = client.recall("x", limit=1).pending
        out["pending_after_pushes"] = pending
        while client.recall("x", limit=1).pending:
            time.sleep(0.5)
        took = time.perf_counter() - started
        out["backlog_embedded_per_s"] = round((len(backlog) + 200) / took, 1)
    return out


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "index"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bench = {"index": bench_index, "embed": bench_embed, "hub": bench_hub, "push": bench_push}
    result = bench[what]()
    result["cpus"] = os.cpu_count()
    result["threads_at_end"] = threading.active_count()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
