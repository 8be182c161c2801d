"""Benchmark of semantic recall on a PostgreSQL hub: exact (no pgvector) against HNSW (pgvector).

Not a test. Run from the repository root (dev extra installed: pgserver brings
PostgreSQL 16 with pgvector 0.6)::

    .venv/bin/python benchmarks/hub_recall_pg.py --vectors 100000
    .venv/bin/python benchmarks/hub_recall_pg.py --vectors 1000000 --maintenance-work-mem 4GB

One run, one JSON document on stdout (progress on stderr):

1. a PostgreSQL of its own (pgserver, in a temp dir, deleted at the end) and a
   database owned by a role that may not create the vector extension, so the
   hub starts without pgvector;
2. ``--vectors`` memories of one tenant and their vectors (synthetic clustered
   unit vectors of 384 dimensions, labelled as MiniLM's so the hub keeps
   them) written with ``COPY``;
3. a real ``hub serve --embedder minilm`` process: 200 recalls over HTTP, plain
   and with a namespace filter (one namespace of ten), p50 / p99: **exact**,
   each hub process holding every vector in memory;
4. a superuser runs ``CREATE EXTENSION vector``; the next start moves the
   vectors into pgvector and builds the HNSW index (timed);
5. the same recalls through a new hub process: **HNSW** in the database;
6. in-process, the database's HNSW top 10 against the exact top 10 (NumPy)
   for 200 queries drawn like the data, and the two SQL searches' latency:
   first at the hub's own ``hnsw.ef_search`` (it follows the table's size),
   then at each ``--ef-search`` value pinned;
7. where the time of an HTTP recall goes, in-process: the query's MiniLM
   embedding, the engine's whole recall (vector search, filters, fetch,
   pending count) and its vector search alone; the rest is HTTP and the
   hub's actors.

``--keep DIR`` keeps PostgreSQL's data in ``DIR`` and, on a later run with the
same ``--vectors``, reuses the database built there (skipping steps 1-4): a
million vectors take ~20 minutes to load and index. ``--shared-buffers``
sets PostgreSQL's cache (pgserver's default is 128MB, smaller than the
1.9 GB index at a million) and restarts the server.
"""

from __future__ import annotations

import os

# As `hub serve` does before NumPy loads (actors/hub/cli.py): one BLAS thread, so that
# step 7 embeds queries as the hub process does. OpenBLAS's own pool on a busy
# 2-core host took a query's embedding from ~16 ms to over 100 ms here.
for _knob in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_knob, "1")

# ruff: noqa: E402 - the imports below load NumPy, after the BLAS setting above
import argparse
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hub_fixtures import HubProcess
from hub_recall import DIM, _pct
from pg_fixtures import TestPostgres, with_database

from actors.errors import HubServerError
from actors.hub.embedders import MINILM_NAME
from actors.hub.pg_schema import prepare_pg_database, vector_literal
from actors.hub.postgres import (
    PostgresEngine,
    _recall_filters,
    estimated_vectors,
    index_ef_construction,
    nearest_sql,
)
from actors.hub.vectors import to_blob
from actors.model import format_version
from actors.runtime import ThreadedRuntime
from actors.wire import EmbedderInfo, RecallQuery

TENANT = "bench"
WORDS = ["alpha", "beta", "gamma", "delta", "service", "host", "cluster", "owner", "deploy"]


def _clustered(centres: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unit vectors around ``centres`` (as ``benchmarks/hub_recall.py`` makes them)."""
    rows = centres[rng.integers(0, len(centres), n)]
    rows = rows + 0.6 * rng.standard_normal((n, centres.shape[1])).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _load(url: str, vectors: np.ndarray) -> None:
    """The memories and their vectors, straight into the hub's tables with COPY."""
    n = len(vectors)
    rng = np.random.default_rng(2)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            version = format_version(1_700_000_000_000, 0)
            with cur.copy(
                "COPY memories (tenant, id, namespace, content, content_hash, tags, metadata, "
                "created_at, updated_at, version, origin, deleted, seq, received_at, fts, words) "
                "FROM STDIN"
            ) as copy:
                # COPY's text format, written out: nothing here needs escaping.
                for i in range(n):
                    words = " ".join(rng.choice(WORDS, 12))
                    lexemes = " ".join(f"'{w}'" for w in sorted(set(words.split())))
                    fields = (
                        f"{TENANT}\t{uuid.UUID(int=i + 1)}\tns{i % 10}\tmemory {i}: {words} #{i}"
                        f"\t{i:064x}\t{{}}\t{{}}\t1.7e9\t1.7e9\t{version}\tbench\tf\t{i + 1}"
                        f"\t1.7e9\t{lexemes}\t{lexemes} '{i}'\n"
                    )
                    copy.write(fields)
            rows = cur.execute(
                "SELECT rowid, id, content_hash FROM memories ORDER BY seq"
            ).fetchall()
            with cur.copy(
                "COPY vectors (mem_rowid, tenant, id, model, dimension, content_hash, vector, "
                "vseq) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "text", "text", "text", "int4", "text", "bytea", "int8"])
                for i, (rowid, memory_id, digest) in enumerate(rows):
                    copy.write_row(
                        (
                            rowid,
                            TENANT,
                            memory_id,
                            MINILM_NAME,
                            DIM,
                            digest,
                            to_blob(vectors[i]),
                            i + 1,
                        )
                    )
            cur.execute("INSERT INTO tenants (tenant, last_seq) VALUES (%s, %s)", (TENANT, n))
            cur.execute("UPDATE vector_feed SET last_vseq = %s", (n,))
            cur.execute(
                "INSERT INTO hub_meta (key, value) VALUES ('embed_model', %s), "
                "('embed_dimension', %s)",
                (MINILM_NAME, str(DIM)),
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def _recall_text(i: int) -> str:
    return f"who owns the cluster deploy key {i}"


def _http(database: str, log: Path, n: int, rounds: int = 1, count: int = 200) -> dict[str, Any]:
    """``count`` recalls per shape through a real hub process, after it is ready (``rounds``
    times: the first round after a build or a restart reads a cold index)."""
    out: dict[str, Any] = {}
    started = time.perf_counter()
    hub = HubProcess(database, args=("--embedder", "minilm"), log_path=log)
    # A million vectors on a busy host: the fixtures' 20 s start deadline is for tests.
    hub.start(deadline=600.0)
    try:
        out["start_s"] = round(time.perf_counter() - started, 1)
        with hub.client(hub.add_key(TENANT), timeout=120.0) as client:
            unavailable = 0
            while True:
                try:
                    answer = client.recall("warm up", limit=1)
                except HubServerError:
                    # A 503 (statement timeout): at 1,000,000 the first recall on a
                    # fresh index outlasted the hub's 5 s. Counted, not fatal.
                    unavailable += 1
                    if time.perf_counter() - started > 900:
                        raise
                    time.sleep(2.0)
                    continue
                if not answer.pending and "loading" not in answer.note:
                    break
                time.sleep(0.5)
            out["warm_up_503s"] = unavailable
            out["ready_s"] = round(time.perf_counter() - started, 1)
            out["note"] = answer.note
            out["ranking"] = answer.ranking
            for round_number in range(1, rounds + 1):
                suffix = "" if round_number == 1 else f"_round{round_number}"
                for label, extra in (("plain", {}), ("namespace", {"namespace": "ns3"})):
                    samples = []
                    for i in range(count):
                        t = time.perf_counter()
                        found = client.recall(_recall_text(i), limit=10, **extra)  # type: ignore[arg-type]
                        samples.append(time.perf_counter() - t)
                        assert len(found.hits) == 10, found
                    out[f"recall_limit10_{label}{suffix}"] = _pct(samples)
    finally:
        hub.stop(deadline=120.0)
        hub.close_log()
    return out


def _quality(
    database: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    exact_sql: int,
    *,
    ef_search: int | None = None,
) -> dict[str, Any]:
    """The database's HNSW top 10 against NumPy's exact top 10; both SQL searches timed
    (the exact one on the first ``exact_sql`` queries: seconds each at a million)."""
    # The exact scan takes seconds a query at a million: past the hub's 5 s statement
    # timeout, which ended the first 1,000,000 run here.
    engine = PostgresEngine.open(database, new_id=ThreadedRuntime().new_id, statement_timeout=900.0)
    try:
        keys = {}
        with engine._tx() as cur:
            for rowid, seq in cur.execute("SELECT rowid, seq FROM memories").fetchall():
                keys[int(rowid)] = int(seq) - 1
        # None: the hub's own choice, from the table's size (what a hub process searches with).
        engine.ef_search = ef_search
        with engine._tx() as cur:
            out: dict[str, Any] = {
                "ef_search": engine.search_breadth(cur, (MINILM_NAME, DIM)),
                "ef_search_rule": "pinned" if ef_search is not None else "hub default",
                "estimated_vectors": round(estimated_vectors(cur)),
                "index_ef_construction": index_ef_construction(cur, (MINILM_NAME, DIM)),
            }
            plan = cur.execute(
                psycopg.sql.SQL("EXPLAIN ") + nearest_sql((MINILM_NAME, DIM), "", indexed=True),
                [vector_literal(to_blob(queries[0])), TENANT, 100],
            ).fetchall()
        # The query vector spelled out (384 numbers) says nothing about the plan.
        out["plan"] = [re.sub(r"'\[[^]]*\]'", "'[…]'", str(row[0])) for row in plan]
        for label, namespace in (("plain", None), ("namespace", "ns3")):
            hits, hnsw_s, exact_s = 0, [], []
            where, params = _recall_filters(namespace, ())
            allowed = np.arange(len(vectors)) % 10 == 3 if namespace else None
            for number, query in enumerate(queries):
                scores = vectors @ query
                if allowed is not None:
                    scores = np.where(allowed, scores, -np.inf)
                truth = set(np.argpartition(-scores, 10)[:10].tolist())
                with engine._tx(snapshot=True) as cur:
                    t = time.perf_counter()
                    found = engine._nearest(
                        cur,
                        TENANT,
                        RecallQuery("q", namespace=namespace, limit=10),
                        (MINILM_NAME, DIM),
                        to_blob(query),
                    )
                    hnsw_s.append(time.perf_counter() - t)
                    if number < exact_sql:
                        t = time.perf_counter()
                        cur.execute(
                            nearest_sql((MINILM_NAME, DIM), where, indexed=False),
                            [vector_literal(to_blob(query)), TENANT, *params, 100],
                        ).fetchall()
                        exact_s.append(time.perf_counter() - t)
                hits += len(truth & {keys[key] for key, _ in found[:10]})
            out[label] = {
                "recall_at_10": round(hits / (10 * len(queries)), 4),
                "sql_hnsw_k100": _pct(hnsw_s),
                **({"sql_exact_k100": _pct(exact_s)} if exact_s else {}),
            }
        return out
    finally:
        engine.close()


def _phases(database: str, count: int) -> dict[str, Any]:
    """Where an HTTP recall's time goes, measured in-process on the same queries and database:
    the query's embedding, then the engine's recall with that vector (all of the store's part),
    and the vector search alone inside it."""
    from actors.embedders import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    info = EmbedderInfo(embedder.name, embedder.dimension, embedder.semantic)
    engine = PostgresEngine.open(database, new_id=ThreadedRuntime().new_id)
    try:
        out: dict[str, Any] = {}
        for label, namespace in (("plain", None), ("namespace", "ns3")):
            embed_s, recall_s, search_s = [], [], []
            for i in range(count):
                query = RecallQuery(_recall_text(i), namespace=namespace, limit=10)
                t = time.perf_counter()
                vector = to_blob(embedder.embed([query.query])[0])
                embed_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                engine.recall(TENANT, query, None, embedder=info, query_vector=vector)
                recall_s.append(time.perf_counter() - t)
                with engine._tx(snapshot=True) as cur:
                    t = time.perf_counter()
                    engine._nearest(cur, TENANT, query, (MINILM_NAME, DIM), vector)
                    search_s.append(time.perf_counter() - t)
            out[label] = {
                "embed_query": _pct(embed_s),
                "engine_recall": _pct(recall_s),
                "vector_search": _pct(search_s),
            }
        return out
    finally:
        engine.close()


def _built(state: Path, n: int) -> str | None:
    """The database URL an earlier ``--keep`` run built for ``n`` vectors, if any."""
    if not state.exists():
        return None
    saved = json.loads(state.read_text())
    return str(saved["database"]) if saved.get("vectors") == n else None


def _build(
    server: TestPostgres,
    options: argparse.Namespace,
    n: int,
    vectors: np.ndarray,
    tmp: Path,
    out: dict[str, Any],
) -> str:
    """Steps 1-4: the database (its URL), loaded, searched exactly, then indexed."""
    admin = server.admin_url
    server.query(admin, f"ALTER SYSTEM SET maintenance_work_mem = '{options.maintenance_work_mem}'")
    server.query(admin, "SELECT pg_reload_conf()")
    server.query(admin, "CREATE ROLE bench LOGIN NOSUPERUSER")
    url = server.new_database("bench")
    name = url.split("?")[0].rsplit("/", 1)[1]
    server.query(admin, f'ALTER DATABASE "{name}" OWNER TO bench')
    database = url.replace("://postgres:@", "://bench@").replace("://postgres@", "://bench@")
    prepare_pg_database(database, now=time.time)
    _say(f"loading {n} memories and vectors")
    started = time.perf_counter()
    _load(database, vectors)
    out["load_s"] = round(time.perf_counter() - started, 1)
    if not options.skip_exact_http:
        _say("exact: a hub without pgvector")
        out["exact_http"] = _http(database, tmp / "exact.log", n)
        _say(json.dumps({"exact_http": out["exact_http"]}))
    out["load_average_after_exact"] = os.getloadavg()
    server.query(with_database(admin, name), "CREATE EXTENSION vector")
    _say("moving the vectors into pgvector and building the HNSW index")
    started = time.perf_counter()
    prepare_pg_database(database, now=time.time)
    out["to_pgvector_and_hnsw_build_s"] = round(time.perf_counter() - started, 1)
    # As docs/deploying-the-hub.md advises after a large move (it rewrote every row).
    started = time.perf_counter()
    server.query(with_database(admin, name), "VACUUM ANALYZE vectors")
    out["vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
    out["load_average_after_build"] = os.getloadavg()
    return database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--maintenance-work-mem", default="1GB")
    parser.add_argument(
        "--exact-sql-queries",
        type=int,
        default=200,
        help="how many queries time pgvector's exact scan (about 10 s each at 1,000,000)",
    )
    parser.add_argument(
        "--ef-search",
        default="",
        help="comma-separated hnsw.ef_search values to measure recall@10 and SQL time at "
        "as well, after the hub's own choice (e.g. 400,1000)",
    )
    parser.add_argument(
        "--skip-exact-http",
        action="store_true",
        help="skip the phase of a hub without pgvector (minutes at a million)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep PostgreSQL's data in this directory; reuse the database an earlier run "
        "built there for the same --vectors",
    )
    parser.add_argument(
        "--shared-buffers",
        default="",
        help="PostgreSQL's shared_buffers for the run (e.g. 4GB), set before the HNSW phase",
    )
    parser.add_argument(
        "--http-rounds", type=int, default=1, help="how many times the HTTP recalls run"
    )
    parser.add_argument(
        "--http-queries",
        type=int,
        default=200,
        help="recalls per shape and round over HTTP, and per shape in the phase split",
    )
    options = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    n = options.vectors
    out: dict[str, Any] = {"vectors": n, "dimensions": DIM, "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="ma-bench-pg-") as tmp:
        home = options.keep or Path(tmp) / "pg"
        state = home.parent / f"{home.name}.json"
        server = TestPostgres.start(home, keep=options.keep is not None)
        try:
            admin = server.admin_url
            database = _built(state, n)
            rng = np.random.default_rng(1)
            centres = rng.standard_normal((500, DIM)).astype(np.float32)
            vectors = _clustered(centres, rng, n)
            if database is None:
                database = _build(server, options, n, vectors, Path(tmp), out)
                if options.keep is not None:
                    state.write_text(json.dumps({"vectors": n, "database": database}))
            else:
                _say(f"reusing the database built in {home} ({state})")
            if options.shared_buffers:
                server.query(admin, f"ALTER SYSTEM SET shared_buffers = '{options.shared_buffers}'")
                server.stop_server()
                server.start_server()
            out["shared_buffers"] = server.query(admin, "SHOW shared_buffers")[0][0]
            out["index_size"] = server.query(
                database,
                "SELECT pg_size_pretty(pg_relation_size(indexname::regclass)) FROM pg_indexes "
                "WHERE indexname LIKE 'vectors_hnsw_%'",
            )[0][0]
            _say("HNSW: a hub on pgvector")
            out["hnsw_http"] = _http(
                database, Path(tmp) / "hnsw.log", n, options.http_rounds, options.http_queries
            )
            _say(json.dumps({"hnsw_http": out["hnsw_http"]}))
            _say("where an HTTP recall's time goes")
            out["phases"] = _phases(database, options.http_queries)
            _say(json.dumps({"phases": out["phases"]}))
            _say("recall@10 against exact")
            queries = _clustered(centres, np.random.default_rng(3), options.queries)
            out["hnsw_vs_exact"] = _quality(database, vectors, queries, options.exact_sql_queries)
            _say(json.dumps({"hnsw_vs_exact": out["hnsw_vs_exact"]}))
            for ef_search in [int(value) for value in options.ef_search.split(",") if value]:
                _say(f"recall@10 at hnsw.ef_search {ef_search}")
                out[f"hnsw_vs_exact_ef{ef_search}"] = _quality(
                    database, vectors, queries, 0, ef_search=ef_search
                )
                _say(json.dumps({f"ef{ef_search}": out[f"hnsw_vs_exact_ef{ef_search}"]}))
        finally:
            server.close()
    out["load_average_end"] = os.getloadavg()
    out["cpus"] = os.cpu_count()
    out["threads_at_end"] = threading.active_count()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
