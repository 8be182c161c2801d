"""Semantic recall in PostgreSQL: pgvector's HNSW index, shared by every hub process, and the
exact search of a database without it, said out loud.

The session's PostgreSQL (pgserver's, with pgvector 0.6) has the extension;
"without it" is a real database of a real role that may not create it (a
non-superuser: pgvector is not a trusted extension), never a mock.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psycopg
import pytest
from hub_fixtures import HubProcess, memory, wait_until
from pg_fixtures import TestPostgres, with_database

from actors.hub.direct import DirectBackend
from actors.hub.embedders import HashingEmbedder
from actors.hub.engines import vector_search_of
from actors.hub.key_admin import add_key
from actors.hub.pg_schema import (
    HNSW_EF_CONSTRUCTION,
    hnsw_build_memory,
    hnsw_index_name,
    pgvector_binary,
    prepare_pg_database,
    raise_build_memory,
    vector_literal,
)
from actors.hub.postgres import (
    HNSW_MAX_EF_SEARCH,
    PGVECTOR_EF_CONSTRUCTION,
    PostgresEngine,
    _recall_filters,
    ef_search_for,
    estimated_vectors,
    index_ef_construction,
    nearest_sql,
)
from actors.hub.search import EmbedderSpec
from actors.hub.service import HubConfig, HubService
from actors.hub.transport import mock_transport
from actors.hub.vectors import to_blob
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.wire import RecallHits, RecallQuery

pytestmark = pytest.mark.slow

_NOW = ThreadedRuntime().wall_time
_roles = itertools.count(1)


@pytest.fixture
def database(postgres: TestPostgres) -> str:
    """A fresh database (the session's server has pgvector)."""
    return postgres.new_database()


@pytest.fixture
def plain_database(postgres: TestPostgres) -> str:
    """A fresh database owned by a role that may not create the vector extension."""
    role = f"hub_plain_{next(_roles)}_{id(postgres) % 10_000}"
    postgres.query(postgres.admin_url, f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
    url = postgres.new_database()
    postgres.query(postgres.admin_url, f'ALTER DATABASE "{_dbname(url)}" OWNER TO "{role}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname or ''}"))


def _hnsw_indexes(postgres: TestPostgres, database: str) -> list[str]:
    rows = postgres.query(
        database,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'vectors' "
        "AND indexname LIKE 'vectors\\_hnsw\\_%' ORDER BY indexname",
    )
    return [str(row[0]) for row in rows]


def _direct(db: str, embedder: HashingEmbedder | None = None) -> DirectBackend:
    runtime = ThreadedRuntime(seed=3)
    return DirectBackend.open(
        db, new_id=runtime.new_id, now=runtime.wall_time, embedder=embedder or HashingEmbedder()
    )


def _recall(backend: DirectBackend, text: str, **filters: object) -> RecallHits:
    return backend.recall("acme", RecallQuery(text, **filters), 10)  # type: ignore[arg-type]


_FACTS = [
    memory(f"fact {i}: the {word} service runs on host {word}-{i}", namespace=f"ns{i % 3}")
    for i, word in enumerate(
        ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    )
]


# -- with pgvector ---------------------------------------------------------------------------


def test_the_hub_ranks_vectors_in_the_databases_hnsw_index_and_holds_none_in_memory(
    database: str, postgres: TestPostgres
) -> None:
    """A hub on pgvector runs no index actor (no vector in its memory); recall is ranked by
    the database, and the plan of that search is the vector space's HNSW index."""
    key = add_key(database, "acme")
    spec = EmbedderSpec("hashing")
    with (
        HubService.open(HubConfig(db=database, embedder=spec, embed_poll=0.05)) as service,
        HubClient("http://hub.test", key, transport=_transport(service)) as client,
    ):
        assert service.vector_search.in_database
        assert service.vector_search.notice == ""
        assert sorted(service._cells) == ["hub-embedder", "hub-store"]
        client.push(_FACTS)
        answer = _settled(client, "fact 3: the delta service runs on host delta-3")
        assert answer.hits[0].id == _FACTS[3].id
        assert (answer.ranking, answer.note) == ("hybrid", "")
        assert answer.hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert _hnsw_indexes(postgres, database) == [hnsw_index_name("hashing-ngrams-v1-384", 384)]
    where, params = _recall_filters("ns0", ())
    query = to_blob(HashingEmbedder().embed(["delta service"])[0])
    statement = nearest_sql(("hashing-ngrams-v1-384", 384), where, indexed=True)
    with psycopg.connect(database) as conn:
        conn.execute("SET enable_seqscan = off")  # 9 rows: make the planner show what it can use
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                psycopg.sql.SQL("EXPLAIN ") + statement,
                [vector_literal(query), "acme", *params, 100],
            ).fetchall()
        )
    assert f"Index Scan using {hnsw_index_name('hashing-ngrams-v1-384', 384)}" in plan, plan


def test_hnsw_search_finds_the_exact_nearest_vectors_with_their_cosines(database: str) -> None:
    """1,200 random unit vectors: the database's top 10 (HNSW) match NumPy's exact top 10 for
    recall@10 ≥ 0.95, with the same inner products; filters and tenants stay exact."""
    prepare_pg_database(database, now=_NOW)
    engine = PostgresEngine.open(database, new_id=ThreadedRuntime().new_id)
    try:
        vectors = _RandomVectors(engine, count=1200, seed=7)
        assert vectors.recall_at_10(queries=10) >= 0.95
    finally:
        engine.close()


def test_ef_search_grows_with_the_index_from_200_to_pgvectors_1000_sooner_on_a_weaker_graph() -> (
    None
):
    """The measured points (docs/performance.md) and ``rows ** 0.7`` past them: pgvector's
    default graph (ef_construction 64) needs 1,000 at a million, the hub's own (128) 200."""
    old, own = PGVECTOR_EF_CONSTRUCTION, HNSW_EF_CONSTRUCTION
    assert (old, own) == (64, 128)
    assert ef_search_for(0, old) == ef_search_for(100_000, old) == 200
    assert ef_search_for(1_000_000, old) == ef_search_for(5_000_000, old) == HNSW_MAX_EF_SEARCH
    # The planner's estimate of a million (ANALYZE samples) is a little off: still the most.
    assert ef_search_for(991_067, old) == 1000
    assert [ef_search_for(n, old) for n in (150_000, 300_000, 500_000)] == [270, 440, 620]
    assert ef_search_for(100_000, own) == ef_search_for(1_000_000, own) == 200
    assert [ef_search_for(n, own) for n in (2_000_000, 5_000_000, 10_000_000)] == [330, 620, 1000]
    # A graph built wider than measured takes the widest measured one's rule; a narrower
    # one than pgvector's default, the default's.
    assert ef_search_for(2_000_000, 200) == 330
    assert ef_search_for(1_000_000, 32) == 1000
    for graph in (old, own):
        values = [ef_search_for(n, graph) for n in range(0, 12_000_001, 20_000)]
        assert values == sorted(values)
        assert all(value % 10 == 0 for value in values)


def test_searches_take_ef_search_from_the_tables_size_and_the_indexs_graph_and_stay_exact(
    database: str, postgres: TestPostgres
) -> None:
    """A small table searches with 200 candidates. Once the catalog says 2,000,000 rows the
    next refresh (after 500 searches, not the next one) raises it to 330 on the hub's graph;
    on an index of pgvector's default graph (built before the hub set its own) a million
    takes 1,000. The searches, filtered or not, still find the exact nearest.

    The millions are the catalog's estimate written by a superuser, as ANALYZE of such a
    table would leave it (a million real vectors take 20 minutes to index)."""
    prepare_pg_database(database, now=_NOW)
    engine = PostgresEngine.open(database, new_id=ThreadedRuntime().new_id)
    assert engine.size_refresh_searches == 500
    index = hnsw_index_name("random", 32)

    def claim_rows(count: int) -> None:
        postgres.query(
            database, f"UPDATE pg_class SET reltuples = {count} WHERE oid = 'vectors'::regclass"
        )

    def breadth_after_a_refresh() -> int:
        with engine._tx() as cur:
            # One reading serves at most 500 searches: one of these reads the catalog.
            for _ in range(engine.size_refresh_searches):
                engine.search_breadth(cur, ("random", 32))
            return engine.search_breadth(cur, ("random", 32))

    try:
        vectors = _RandomVectors(engine, count=600, seed=11)
        options = "SELECT reloptions FROM pg_class WHERE relname = %s"
        assert postgres.query(database, options, (index,)) == [(["m=16", "ef_construction=128"],)]
        postgres.query(database, "ANALYZE vectors")
        with engine._tx() as cur:
            assert estimated_vectors(cur) == pytest.approx(600, rel=0.05)
            assert index_ef_construction(cur, ("random", 32)) == 128
            assert engine.search_breadth(cur, ("random", 32)) == 200
        assert vectors.recall_at_10(queries=3, ef_search="200") == 1.0
        claim_rows(2_000_000)
        with engine._tx() as cur:
            assert estimated_vectors(cur) == pytest.approx(2_000_000, rel=0.01)
            assert engine.search_breadth(cur, ("random", 32)) == 200  # read 7 searches ago
        assert breadth_after_a_refresh() == 330
        assert vectors.recall_at_10(queries=3, ef_search="330") == 1.0
        # pgvector's default graph, as every index built before this version has it.
        postgres.query(database, f'DROP INDEX "{index}"')
        postgres.query(
            database,
            f'CREATE INDEX "{index}" ON vectors USING hnsw ((vector::vector(32)) vector_ip_ops) '
            "WHERE model = 'random' AND dimension = 32",
        )
        claim_rows(1_000_000)  # the build counted the table's 600 rows
        assert breadth_after_a_refresh() == 1000
        assert vectors.recall_at_10(queries=3, ef_search="1000") == 1.0
        # A filter that keeps one memory: too few from the index, so the exact search answers.
        assert vectors.recall_at_10(queries=1, namespace="lonely", ef_search="1000") == 1.0
        engine.ef_search = 300
        with engine._tx() as cur:
            assert engine.search_breadth(cur, ("random", 32)) == 300
    finally:
        engine.close()


def test_a_memory_waiting_for_its_new_vector_is_found_by_keywords_only(database: str) -> None:
    """A changed memory's old vector is dropped (NULL) until it is embedded again: the
    database's search skips it, and recall still finds it by its words."""
    from actors.wire import EmbedderInfo

    prepare_pg_database(database, now=_NOW)
    engine = PostgresEngine.open(database, new_id=ThreadedRuntime().new_id)
    embedder = HashingEmbedder()
    info = EmbedderInfo(embedder.name, embedder.dimension, embedder.semantic)
    try:
        engine.commit_pushes([("acme", tuple(_FACTS))], _NOW())
        work = engine.take_embed_work(embedder.name, embedder.dimension, 100)
        vectors = embedder.embed([w.content for w in work])
        rows = [(w.key, w.content_hash, to_blob(v)) for w, v in zip(work, vectors, strict=True)]
        assert engine.save_vectors(embedder.name, embedder.dimension, rows) == len(_FACTS)
        changed = memory(
            "the kilo service moved to host kilo-9", id=_FACTS[0].id, version=1_700_000_000_001
        )
        engine.commit_pushes([("acme", (changed,))], _NOW())
        query = to_blob(embedder.embed(["kilo service host"])[0])
        answer = engine.recall(
            "acme", RecallQuery("kilo service host"), None, embedder=info, query_vector=query
        )
        assert answer.pending == 1
        by_id = {h.id: h for h in answer.hits}
        assert by_id[changed.id].similarity is None  # found by its words, not by a stale vector
        assert len(answer.hits) == len(_FACTS)
    finally:
        engine.close()


def test_two_hub_processes_on_one_database_answer_the_same_semantic_recall(
    database: str, tmp_path: Path
) -> None:
    """Push through one process; both rank by the one index in the database, identically."""
    with contextlib.ExitStack() as stack:
        first, second = (
            stack.enter_context(HubProcess.running(database, log_path=tmp_path / f"{n}.log"))
            for n in ("first", "second")
        )
        key = first.add_key("acme")
        with first.client(key) as one, second.client(key) as two:
            one.push(_FACTS)
            query = "which host runs the golf service"
            a = _settled(one, query)
            b = _settled(two, query)
            assert a.hits[0].id == _FACTS[6].id
            assert [(h.id, h.score, h.similarity) for h in a.hits] == [
                (h.id, h.score, h.similarity) for h in b.hits
            ]


def test_a_model_switch_builds_the_new_spaces_index_and_drops_the_old_one(
    database: str, postgres: TestPostgres
) -> None:
    """384 → 256 dimensions: every memory is embedded again, recall ranks in the new space,
    and the one HNSW index left is the new space's."""
    backend = _direct(database)
    try:
        backend.push("acme", tuple(_FACTS), 10)
        assert _recall(backend, "the echo service").hits[0].id == _FACTS[4].id
    finally:
        backend.close()
    assert _hnsw_indexes(postgres, database) == [hnsw_index_name("hashing-ngrams-v1-384", 384)]
    backend = _direct(database, HashingEmbedder(256))
    try:
        answer = _recall(backend, "the echo service")
        assert answer.hits[0].id == _FACTS[4].id
        assert answer.embedder is not None
        assert answer.embedder.dimension == 256
        assert answer.hits[0].similarity is not None
    finally:
        backend.close()
    assert _hnsw_indexes(postgres, database) == [hnsw_index_name("hashing-ngrams-v1-256", 256)]


# -- without pgvector --------------------------------------------------------------------------


def test_without_the_extension_the_hub_says_search_is_exact_at_start_and_in_every_note(
    plain_database: str, tmp_path: Path
) -> None:
    """A role that may not create pgvector: the hub logs how to enable it, every recall's
    note says search is exact and names ``CREATE EXTENSION vector``, and recall works."""
    search = None
    with HubProcess.running(plain_database, log_path=tmp_path / "hub.log") as hub:
        search = vector_search_of(plain_database)
        key = hub.add_key("acme")
        with hub.client(key) as client:
            client.push(_FACTS)
            answer = _settled(client, "which host runs the golf service")
            assert answer.hits[0].id == _FACTS[6].id
    assert not search.in_database
    assert "exact, not indexed" in answer.note
    assert "CREATE EXTENSION vector" in answer.note
    log = (tmp_path / "hub.log").read_text()
    assert "WARNING actors.hub.service: hub semantic recall: semantic search is exact" in log
    assert "CREATE EXTENSION vector" in log


def test_a_database_moves_its_bytea_vectors_into_pgvector_once_the_extension_is_created(
    plain_database: str, postgres: TestPostgres
) -> None:
    """Exact in memory first; an administrator creates the extension; the next start moves
    every vector into pgvector (the same floats), builds the index, and recall answers alike."""
    backend = _direct(plain_database)
    try:
        assert not backend.engine.vector_search.in_database
        backend.push("acme", tuple(_FACTS), 10)
        before = _recall(backend, "the india service", namespace="ns2")
        assert "CREATE EXTENSION vector" in before.note
        feed_before = backend.engine.vector_changes(0, 1000)
    finally:
        backend.close()
    # The administrator's step (a superuser), in the hub's database.
    postgres.query(
        with_database(postgres.admin_url, _dbname(plain_database)), "CREATE EXTENSION vector"
    )
    backend = _direct(plain_database)
    try:
        assert backend.engine.vector_search.in_database
        after = _recall(backend, "the india service", namespace="ns2")
        assert backend.engine.vector_changes(0, 1000) == feed_before
    finally:
        backend.close()
    assert after.note == ""
    assert [(h.id, h.similarity) for h in after.hits] == [(h.id, h.similarity) for h in before.hits]
    assert _hnsw_indexes(postgres, plain_database) == [
        hnsw_index_name("hashing-ngrams-v1-384", 384)
    ]


def test_an_index_build_gets_the_memory_its_graph_needs_and_never_less_than_the_server_gives(
    database: str,
) -> None:
    """64 MB (PostgreSQL's default) holds ~30,000 graph nodes of 384 dimensions: a build over
    a million is raised to its estimate for its own transaction; a larger setting stands."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(b"SET maintenance_work_mem = '64MB'")
        with conn.transaction():
            assert raise_build_memory(conn, 1_000, 384) == "64MB"
            wanted = hnsw_build_memory(1_000_000, 384)
            assert 2 * 1024**3 < wanted < 3 * 1024**3
            assert raise_build_memory(conn, 1_000_000, 384) == f"{wanted // 1024**2}MB"
        # SET LOCAL: the connection's own setting is back after the transaction.
        assert conn.execute(b"SHOW maintenance_work_mem").fetchone() == ("64MB",)
        conn.execute(b"SET maintenance_work_mem = '16GB'")
        with conn.transaction():
            assert raise_build_memory(conn, 1_000_000, 384) == "16GB"


def test_pgvector_reads_the_hubs_float32_vectors_in_binary_exactly(database: str) -> None:
    """The binary COPY that moves vectors into pgvector gives the same floats as the text form."""
    rng = np.random.default_rng(5)
    blobs = [to_blob(rng.standard_normal(384).astype(np.float32)) for _ in range(3)]
    with psycopg.connect(database) as conn, conn.cursor() as cur:
        # A fresh database has the extension once a hub prepared it; this one has no hub.
        cur.execute(b"CREATE EXTENSION IF NOT EXISTS vector")
        cur.execute(b"CREATE TEMPORARY TABLE moved (k bigint, e vector)")
        with cur.copy(b"COPY moved (k, e) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "bytea"])
            for key, blob in enumerate(blobs):
                copy.write_row((key, pgvector_binary(blob)))
        for key, blob in enumerate(blobs):
            same = cur.execute(
                "SELECT e = %s::vector FROM moved WHERE k = %s", (vector_literal(blob), key)
            ).fetchone()
            assert same == (True,)


# -- helpers -----------------------------------------------------------------------------------


class _RandomVectors:
    """``count`` memories with random unit vectors of 32 dimensions in ``engine``'s database:
    five sixths of them tenant acme's (namespaces ns0-ns3, the first in ``lonely``), the
    rest another tenant's."""

    def __init__(self, engine: PostgresEngine, *, count: int, seed: int) -> None:
        self.engine = engine
        self.rng = np.random.default_rng(seed)
        assert engine.vector_search.in_database
        mine = count * 5 // 6
        items = [
            memory(f"random memory {i}", namespace="lonely" if i == 0 else f"ns{i % 4}")
            for i in range(count)
        ]
        engine.commit_pushes([("acme", tuple(items[:mine])), ("other", tuple(items[mine:]))], 0)
        work = engine.take_embed_work("random", 32, 5000)
        vectors = self.rng.standard_normal((len(work), 32)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [(w.key, w.content_hash, to_blob(v)) for w, v in zip(work, vectors, strict=True)]
        assert engine.save_vectors("random", 32, rows) == count
        self.by_key = {w.key: v for w, v in zip(work, vectors, strict=True)}
        number = {w.key: int(w.content.rsplit(" ", 1)[1]) for w in work}
        self.tenant_of = {key: ("acme" if i < mine else "other") for key, i in number.items()}
        self.namespace_of = {key: items[i].namespace for key, i in number.items()}

    def recall_at_10(
        self, *, queries: int, namespace: str | None = None, ef_search: str | None = None
    ) -> float:
        """The share of the exact top 10 that ``_nearest`` finds, plain and in ``namespace``
        (ns1 unless given), with the same inner products and only acme's memories that pass;
        with ``ef_search``, the value the search set for its transaction."""
        found_total = wanted_total = 0
        for _ in range(queries):
            query = self.rng.standard_normal(32).astype(np.float32)
            query /= np.linalg.norm(query)
            for where in (None, namespace or "ns1"):
                exact = sorted(
                    (
                        (float(v @ query), k)
                        for k, v in self.by_key.items()
                        if self.tenant_of[k] == "acme"
                        and (where is None or self.namespace_of[k] == where)
                    ),
                    reverse=True,
                )[:10]
                with self.engine._tx(snapshot=True) as cur:
                    got = self.engine._nearest(
                        cur,
                        "acme",
                        RecallQuery("q", namespace=where, limit=10),
                        ("random", 32),
                        to_blob(query),
                    )
                    if ef_search is not None:
                        assert cur.execute(b"SHOW hnsw.ef_search").fetchone() == (ef_search,)
                assert all(self.tenant_of[k] == "acme" for k, _ in got)
                assert all(where is None or self.namespace_of[k] == where for k, _ in got)
                similarity = dict(got)
                wanted_total += len(exact)
                for score, key in exact:
                    if key in similarity:
                        found_total += 1
                        assert similarity[key] == pytest.approx(score, abs=1e-5)
        return found_total / wanted_total


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _transport(service: HubService) -> httpx.MockTransport:
    return mock_transport(service.core)


def _settled(client: HubClient, query: str) -> RecallHits:
    """Recall once nothing is pending and the vector ranking is in use."""

    def ready() -> RecallHits | None:
        answer = client.recall(query)
        return answer if answer.pending == 0 and answer.ranking != "keyword" else None

    return wait_until(ready, f"recall of {query!r} to settle", deadline=60.0)
