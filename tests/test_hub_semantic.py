"""The hub's semantic recall in-process: embedders, the vector index, ranking, the actors.

Real SQLite files, real actors on the threaded runtime, a real loopback
HTTP server for the OpenAI-compatible embedder; the hub processes and the
quality evaluation are in ``tests/test_hub_recall.py``.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from embeddings_server import KEY, embeddings_server
from hub_fixtures import forget, memory, needs_minilm, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import EmbedderError
from actors.hub.core import HubCore
from actors.hub.direct import DirectBackend
from actors.hub.embedders import (
    MINILM_NAME,
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    load_embedder,
    minilm_available,
)
from actors.hub.engines import open_engine
from actors.hub.key_admin import add_key
from actors.hub.search import (
    IDENTIFIER_BOOST,
    EmbedderSpec,
    RecallUnsupported,
    fts_query,
    fuse,
    identifier_phrases,
)
from actors.hub.service import HubConfig, HubService
from actors.hub.transport import mock_transport
from actors.hub.vectors import VectorIndex, from_blob, to_blob
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.wire import RecallHits, RecallQuery


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# -- embedders -------------------------------------------------------------------------------


def test_the_hashing_embedder_is_deterministic_unit_length_and_only_lexical() -> None:
    """Same text, same vector in any process; shared words score high, synonyms do not."""
    embedder = HashingEmbedder()
    texts = ["The deploy key lives in vault", "the DEPLOY keys live in the vault!", "Lunch at noon"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, HashingEmbedder().embed(texts))
    assert float(vectors[0] @ vectors[1]) > 0.6 > float(vectors[0] @ vectors[2])
    synonym = embedder.embed(["where are the release credentials stored"])[0]
    assert float(vectors[0] @ synonym) < 0.3
    assert embedder.semantic is False
    assert not embedder.embed([""]).any()  # no features: a zero row, never NaN


@pytest.mark.minilm  # its model branch runs only where the package is
def test_auto_picks_minilm_when_the_extra_is_installed_and_hashing_otherwise() -> None:
    """``--embedder auto``: the real model where ``memory-actors install-model`` put it."""
    embedder = load_embedder(EmbedderSpec("auto"))
    assert embedder is not None
    if minilm_available():
        assert (embedder.name, embedder.dimension, embedder.semantic) == (MINILM_NAME, 384, True)
    else:
        assert embedder.name == "hashing-ngrams-v1-384"
    assert load_embedder(EmbedderSpec("none")) is None
    with pytest.raises(ValueError, match="embedder-url"):
        EmbedderSpec("openai")


@needs_minilm
def test_minilm_puts_paraphrases_close_and_unrelated_texts_apart() -> None:
    """The real model: a paraphrase with no shared word is nearer than an unrelated text."""
    embedder = MiniLMEmbedder()
    memory_, paraphrase, unrelated = embedder.embed(
        [
            "The deploy key lives in vault under ops/deploy",
            "Which secret manager holds the release credentials?",
            "The cafeteria serves lunch from noon",
        ]
    )
    assert np.allclose(np.linalg.norm([memory_, paraphrase, unrelated], axis=1), 1.0, atol=1e-5)
    assert float(memory_ @ paraphrase) > float(memory_ @ unrelated) + 0.1
    assert embedder.embed([]).shape == (0, 384)


@needs_minilm
@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers (the package's own loader) is not installed",
)
def test_the_numpy_forward_pass_computes_the_same_vectors_as_sentence_transformers() -> None:
    """Our NumPy BERT and the package's PyTorch loader agree to float precision."""
    texts = [
        "The deploy key lives in vault under ops/deploy",
        "x",
        "Ünïcödé, emoji 🎉 and 中文 text",
        "a long memory " * 200,  # beyond 256 tokens: both truncate the same way
    ]
    ours = MiniLMEmbedder("numpy").embed(texts)
    reference = MiniLMEmbedder("sentence-transformers").embed(texts)
    cosines = np.sum(ours * reference, axis=1)
    assert cosines.min() > 0.99999, cosines


def test_the_openai_embedder_speaks_the_api_to_a_real_server() -> None:
    """Bearer key, model, inputs in order; the dimension is learnt from a probe; unit rows."""
    with embeddings_server(dimension=48) as server:
        embedder = OpenAIEmbedder(server.url, KEY, "text-embedding-test")
        try:
            assert (embedder.name, embedder.dimension, embedder.semantic) == (
                "openai:text-embedding-test",
                48,
                True,
            )
            vectors = embedder.embed(["first text", "second text", "first text"])
            assert vectors.shape == (3, 48)
            assert np.allclose(vectors[0], vectors[2])
            assert np.allclose(vectors[0], HashingEmbedder(48).embed(["first text"])[0], atol=1e-6)
            request = server.seen()[-1]
            assert request["path"] == "/v1/embeddings"
            assert request["auth"] == f"Bearer {KEY}"
            assert request["body"] == {
                "model": "text-embedding-test",
                "input": ["first text", "second text", "first text"],
            }
        finally:
            embedder.close()


def test_the_openai_embedder_names_every_failure_without_leaking_the_key() -> None:
    """401, 500, garbage, a wrong size, an unreachable URL: EmbedderError, key never shown."""
    with embeddings_server(dimension=16) as server:
        with pytest.raises(EmbedderError, match="401") as info:
            OpenAIEmbedder(server.url, "wrong-key", "m")
        assert "wrong-key" not in str(info.value)
        embedder = OpenAIEmbedder(server.url, KEY, "m", dimension=16)
        try:
            server.fail = 500
            with pytest.raises(EmbedderError, match="500"):
                embedder.embed(["a"])
            server.fail, server.garbage = None, True
            with pytest.raises(EmbedderError, match="not an embeddings list"):
                embedder.embed(["a"])
            server.garbage, server.dimension = False, 24
            with pytest.raises(EmbedderError, match="24-dimensional"):
                embedder.embed(["a"])
        finally:
            embedder.close()
        url = server.url
    with pytest.raises(EmbedderError, match="cannot reach"):
        OpenAIEmbedder(url, KEY, "m")
    with pytest.raises(ValueError, match=r"not a URL|http"):
        OpenAIEmbedder("ftp://example", KEY, "m", dimension=3)


def test_the_openai_embedder_accepts_a_base_url_or_the_full_endpoint() -> None:
    """``http://h:p``, ``…/v1`` and ``…/v1/embeddings`` all reach ``/v1/embeddings``."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [3.0, 4.0]}]})

    for url in ("http://h:1", "http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/embeddings"):
        embedder = OpenAIEmbedder(url, None, "m", transport=httpx.MockTransport(handler))
        assert np.allclose(embedder.embed(["t"])[0], [0.6, 0.8])
        embedder.close()
    assert set(seen) == {"http://h:1/v1/embeddings"}


# -- ranking helpers -------------------------------------------------------------------------


def test_the_keyword_query_drops_stop_words_and_quotes_every_term() -> None:
    """User text never becomes FTS5 syntax; stop words only when nothing else is left."""
    assert fts_query('Where is the "deploy" key? NEAR(a b) OR *') == (
        '"deploy" OR "key" OR "near" OR "b"'
    )
    assert fts_query("who are you") == '"who" OR "are" OR "you"'
    assert fts_query("?!") is None


def test_identifier_phrases_pick_codes_hosts_and_camel_case_only() -> None:
    """Digits, inner punctuation and camelCase are identifiers; words and acronyms are not."""
    assert identifier_phrases("What does E1234 mean on db-prod-1, per LaunchDarkly?") == [
        "e1234",
        "db prod 1",
        "launchdarkly",
    ]
    assert identifier_phrases("Which API does the UX team use for Okta?") == []
    assert identifier_phrases("#1A73E8 and ops/deploy") == ["1a73e8", "ops deploy"]


def test_rank_fusion_adds_weighted_reciprocal_ranks_deterministically() -> None:
    """A key in both lists wins; ties go to the first list's order."""
    fused = fuse([[1, 2, 3], [3, 4]], [1.0, 0.5], k=60)
    assert [key for key, _ in fused] == [3, 1, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 62 + 0.5 / 60)
    assert [key for key, _ in fuse([[5, 6], [6, 5]], [1.0, 1.0])] == [5, 6]


# -- the vector index ------------------------------------------------------------------------


def test_the_vector_index_filters_by_tenant_namespace_and_all_tags() -> None:
    """Search sees one tenant; namespace and tag filters are exact; removal is immediate."""
    index = VectorIndex("m", 3)
    index.put("a", 1, "work", ["x"], _unit(1, 0, 0))
    index.put("a", 2, "home", ["x", "y"], _unit(0.9, 0.1, 0))
    index.put("a", 3, "work", [], _unit(0, 1, 0))
    index.put("b", 4, "work", ["x"], _unit(1, 0, 0))
    query = _unit(1, 0, 0)
    assert [k for k, _ in index.search("a", query, 10)] == [1, 2, 3]
    assert [k for k, _ in index.search("a", query, 10, namespace="work")] == [1, 3]
    assert [k for k, _ in index.search("a", query, 10, tags=["y"])] == [2]
    assert index.search("a", query, 10, namespace="nowhere") == []
    index.put("a", 5, "work/deep", [], _unit(0.8, 0.2, 0))
    index.put("a", 6, "workx", [], _unit(1, 0, 0))
    assert [k for k, _ in index.search("a", query, 10, namespace_prefix="work")] == [1, 5, 3]
    assert index.search("a", query, 10, namespace_prefix="wor") == []
    assert index.remove("a", 5)
    assert index.remove("a", 6)
    assert index.search("c", query, 10) == []
    index.put("a", 1, "home", ["y"], _unit(0, 0, 1))  # replaced: new vector, namespace, tags
    assert [k for k, _ in index.search("a", query, 1)] == [2]
    assert [k for k, _ in index.search("a", query, 10, namespace="work")] == [3]
    assert index.remove("a", 2)
    assert not index.remove("a", 2)
    assert [k for k, _ in index.search("a", _unit(0, 1, 0.5), 10)] == [3, 1]
    assert (len(index), index.count("a"), index.count("b")) == (3, 2, 1)
    with pytest.raises(ValueError, match="dimension"):
        index.put("a", 9, "work", [], _unit(1, 0))


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 40), st.sampled_from(["n1", "n2", "n1/a", "n1x"])),
        max_size=120,
    ),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 12),
)
def test_the_vector_index_always_answers_what_a_brute_force_search_would(
    ops: list[tuple[bool, int, str]], seed: int, k: int
) -> None:
    """Random puts and removals (growth, holes, moves): search equals exact brute force.

    Filters included: a namespace, a prefix (``n1`` holds ``n1/a``, not ``n1x``), both.
    """
    rng = np.random.default_rng(seed)
    index = VectorIndex("m", 8)
    truth: dict[int, tuple[str, np.ndarray]] = {}
    for put, key, namespace in ops:
        if put:
            vector = rng.standard_normal(8).astype(np.float32)
            vector /= np.linalg.norm(vector)
            index.put("t", key, namespace, [], vector)
            truth[key] = (namespace, vector)
        else:
            assert index.remove("t", key) == (key in truth)
            truth.pop(key, None)
    query = rng.standard_normal(8).astype(np.float32)
    for namespace, prefix in ((None, None), ("n1", None), (None, "n1"), ("n1/a", "n1")):
        expected = sorted(
            (
                (float(v @ query), key)
                for key, (ns, v) in truth.items()
                if (namespace is None or ns == namespace)
                and (prefix is None or ns == prefix or ns.startswith(prefix + "/"))
            ),
            reverse=True,
        )[:k]
        found = index.search("t", query, k, namespace=namespace, namespace_prefix=prefix)
        # A tolerance, not rounding: float32 dot products summed in another order
        # differ in the last bits, and rounding to 4 places turns a difference of
        # 1e-7 into 1e-4 when it straddles a boundary (Hypothesis found one).
        assert [s for _, s in found] == pytest.approx([s for s, _ in expected], abs=1e-5)
        assert {key for key, _ in found} <= {key for key, _ in truth.items()}


def test_vectors_round_trip_through_their_stored_form() -> None:
    """float32 little-endian, and a blob of the wrong size is refused."""
    vector = _unit(1, 2, 3, 4)
    assert np.array_equal(from_blob(to_blob(vector), 4), vector)
    with pytest.raises(ValueError, match="bytes"):
        from_blob(to_blob(vector), 5)


# -- the database and the in-thread backend --------------------------------------------------


@pytest.fixture
def direct(hub_db: Path | str) -> Iterator[DirectBackend]:
    """A hub database (per engine) with the hashing embedder, served in the test's thread."""
    runtime = ThreadedRuntime(seed=5)
    backend = DirectBackend.open(
        hub_db,
        new_id=runtime.new_id,
        now=runtime.wall_time,
        embedder=HashingEmbedder(),
    )
    yield backend
    backend.close()


def _recall(backend: DirectBackend, tenant: str, text: str, **filters: object) -> RecallHits:
    return backend.recall(tenant, RecallQuery(text, **filters), 10)  # type: ignore[arg-type]


def test_the_in_thread_backend_recalls_by_namespace_prefix_in_both_rankings(
    direct: DirectBackend,
) -> None:
    """namespace_prefix holds for the hybrid ranking and the keyword one (a query of no vector)."""
    inside = [
        memory("deploy notes of alice", namespace="users/alice"),
        memory("deploy notes of alice, nested", namespace="users/alice/work/x"),
    ]
    outside = [memory("deploy notes of alicex", namespace="users/alicex")]
    direct.push("acme", (*inside, *outside), 10)
    answer = _recall(direct, "acme", "deploy notes", namespace_prefix="users/alice")
    assert answer.ranking == "hybrid"
    assert {h.id for h in answer.hits} == {m.id for m in inside}
    keyword = direct.engine.recall(
        "acme", RecallQuery("deploy notes", namespace_prefix="users/alice"), None
    )
    assert keyword.ranking == "keyword"
    assert {h.id for h in keyword.hits} == {m.id for m in inside}


def test_recall_filters_by_namespace_and_tags_and_never_answers_the_forgotten(
    direct: DirectBackend,
) -> None:
    """Filters hold for every ranking; a tombstone drops the memory and its vector at once."""
    deploy = memory("The deploy key lives in vault under ops/deploy", tags=("ops", "secrets"))
    other = memory("The deploy calendar lives in the wiki", namespace="work", tags=("ops",))
    lunch = memory("Lunch is at noon on Fridays")
    direct.push("acme", (deploy, other, lunch), 10)
    answer = _recall(direct, "acme", "deploy key vault")
    assert [h.id for h in answer.hits][:2] == [deploy.id, other.id]
    assert (answer.ranking, answer.pending) == ("hybrid", 0)
    assert all(h.similarity is not None for h in answer.hits)
    assert [h.id for h in _recall(direct, "acme", "deploy", namespace="work").hits] == [other.id]
    assert [h.id for h in _recall(direct, "acme", "deploy", tags=("secrets",)).hits] == [deploy.id]
    assert _recall(direct, "acme", "deploy", tags=("ops", "nope")).hits == ()
    direct.push("acme", (forget(deploy),), 10)
    assert deploy.id not in {h.id for h in _recall(direct, "acme", "deploy key vault").hits}
    # The vector is gone; its row stays in the feed and tells the index to drop it.
    feed = direct.engine.vector_changes(0, 10_000).changes
    assert [(c.namespace, c.tags, c.vector is None) for c in feed] == [
        ("work", ("ops",), False),
        ("default", (), False),
        ("default", (), True),
    ]


def test_recall_never_crosses_tenants(direct: DirectBackend) -> None:
    """Another tenant's identical text, ids and vectors are invisible."""
    mine = memory("The staging database is postgres 15 on db-stage-2")
    theirs = memory("The staging database is postgres 15 on db-stage-2", id=mine.id)
    direct.push("acme", (mine,), 10)
    direct.push("globex", (theirs, memory("globex only: postgres tuning notes")), 10)
    assert [h.content for h in _recall(direct, "acme", "postgres staging").hits] == [mine.content]
    assert _recall(direct, "initech", "postgres").hits == ()


def test_a_changed_memory_is_re_embedded_and_found_by_its_new_text(
    direct: DirectBackend,
) -> None:
    """A newer version with new content drops the old vector and queues the memory again."""
    first = memory("The office wifi password is on the whiteboard", version=1_000)
    direct.push("acme", (first,), 10)
    assert _recall(direct, "acme", "wifi whiteboard").hits[0].id == first.id
    changed = memory("Parking closes at eleven", id=first.id, version=2_000)
    direct.push("acme", (changed,), 10)
    top = _recall(direct, "acme", "parking eleven").hits[0]
    assert (top.id, top.content) == (first.id, "Parking closes at eleven")
    assert top.similarity is not None
    assert top.similarity > 0.5


E1234 = "Error code E1234 means the license file is missing or expired."


class TableEmbedder:
    """A semantic embedder whose vectors the test writes down: text -> direction in 2-D.

    It stands for a model whose vectors rank an identifier's memory below others,
    as real embeddings do for codes like E1234, deterministically and without one.
    """

    name = "table-2d"
    dimension = 2
    semantic = True

    def __init__(self, cosines: dict[str, float]) -> None:
        #: The cosine of each text to the direction (1, 0), where the query points.
        self.cosines = cosines

    def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> np.ndarray:
        rows = [(c, (1 - c * c) ** 0.5) for c in (self.cosines[text] for text in texts)]
        return np.array(rows, dtype=np.float32)

    def close(self) -> None:
        pass


def _identifier_scenario(db: Path | str, embedder: Embedder) -> tuple[RecallHits, str]:
    """Three memories, one holding E1234; recall "what does E1234 mean" (and its id)."""
    runtime = ThreadedRuntime(seed=6)
    backend = DirectBackend.open(
        db, new_id=runtime.new_id, now=runtime.wall_time, embedder=embedder
    )
    try:
        items = (
            memory(E1234),
            memory("Error code E4321 means the disk is full."),
            memory("The license server runs on lic-01."),
        )
        backend.push("acme", items, 10)
        return _recall(backend, "acme", "what does E1234 mean"), items[0].id
    finally:
        backend.close()


def test_identifier_queries_find_their_memory_even_when_its_vector_ranks_it_last(
    hub_db: Path | str,
) -> None:
    """Codes and hosts in a query are matched exactly: E1234 lifts its memory from last to first."""
    embedder = TableEmbedder(
        {
            "what does E1234 mean": 1.0,
            "Error code E4321 means the disk is full.": 0.6,
            "The license server runs on lic-01.": 0.5,
            E1234: 0.4,
        }
    )
    answer, wanted = _identifier_scenario(hub_db, embedder)
    assert answer.ranking == "vector"
    assert [h.similarity for h in answer.hits] == pytest.approx([0.4, 0.6, 0.5])
    assert answer.hits[0].id == wanted
    assert answer.hits[0].score == pytest.approx(0.4 + IDENTIFIER_BOOST)


@needs_minilm
def test_with_the_minilm_model_an_identifier_query_finds_its_memory_first(
    hub_db: Path | str,
) -> None:
    """The same query through the real model: the E1234 memory first, boosted above its cosine."""
    answer, wanted = _identifier_scenario(hub_db, MiniLMEmbedder())
    assert answer.ranking == "vector"
    assert answer.hits[0].id == wanted
    assert answer.hits[0].score > answer.hits[0].similarity  # type: ignore[operator]


def test_a_backend_without_an_embedder_answers_recall_with_501(
    hub_db: Path | str,
) -> None:
    """No embedder, no semantic recall: RecallUnsupported, which HubCore answers 501."""
    runtime = ThreadedRuntime(seed=8)
    db = hub_db
    backend = DirectBackend.open(db, new_id=runtime.new_id, now=runtime.wall_time)
    try:
        with pytest.raises(RecallUnsupported):
            backend.recall("acme", RecallQuery("anything"), 10)
        key = add_key(db, "acme")
        client = HubClient("http://hub.test", key, transport=mock_transport(HubCore(backend)))
        response = client._http.post("/api/recall", json={"query": "x"})
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "not_implemented"
    finally:
        backend.close()


# -- the actors ------------------------------------------------------------------------------


def _open(db: Path | str, spec: EmbedderSpec, **config: object) -> HubService:
    return HubService.open(
        HubConfig(db=str(db), embedder=spec, embed_poll=0.05, index_poll=0.05, **config)  # type: ignore[arg-type]
    )


def _settled(client: HubClient, query: str, **kwargs: object) -> RecallHits:
    """Recall once nothing is pending and the vector ranking is in use."""

    def ready() -> RecallHits | None:
        answer = client.recall(query, **kwargs)  # type: ignore[arg-type]
        return answer if answer.pending == 0 and answer.ranking != "keyword" else None

    return wait_until(ready, f"recall of {query!r} to settle", deadline=60.0)


def test_the_service_embeds_in_the_background_and_recall_follows(
    hub_db: Path | str,
) -> None:
    """Pushes through the real actors: every memory gets a vector; recall ranks by it."""
    db = hub_db
    key = add_key(db, "acme")
    items = [memory(f"note {i}: the {word} is blue") for i, word in enumerate("abcdefgh")]
    before = set(threading.enumerate())
    with (
        _open(db, EmbedderSpec("hashing")) as service,
        HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
    ):
        client.push(items)
        answer = _settled(client, "note 3 the d is blue", limit=3)
        assert answer.hits[0].id == items[3].id
        assert answer.embedder is not None
        assert answer.embedder.semantic is False
    leftover = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert leftover == []


def test_changing_the_model_re_embeds_everything_in_the_background(
    hub_db: Path | str,
) -> None:
    """Restart with another embedder: vectors of the old one are replaced, recall keeps working."""
    db = hub_db
    key = add_key(db, "acme")
    items = [memory(f"fact {i} about the {w} service") for i, w in enumerate("mnopqrst")]
    with (
        _open(db, EmbedderSpec("hashing")) as service,
        HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
    ):
        client.push(items)
        assert _settled(client, "fact 2 about the o service").hits[0].id == items[2].id
    with (
        _open(db, EmbedderSpec("hashing", dimension=256)) as service,
        HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
    ):
        during = client.recall("fact 2 about the o service")  # keyword or partial: never an error
        assert during.ranking in ("keyword", "hybrid")
        after = _settled(client, "fact 2 about the o service")
        assert after.hits[0].id == items[2].id
        assert after.embedder is not None
        assert after.embedder.dimension == 256
    engine = open_engine(db, new_id=ThreadedRuntime().new_id)
    try:
        feed = engine.vector_changes(0, 10_000)
    finally:
        engine.close()
    assert feed.model == "hashing-ngrams-v1-256"
    assert len(feed.changes) == len(items)
    assert all(change.vector is not None for change in feed.changes)


def test_a_restarted_index_reloads_and_a_failing_embedder_only_delays_vectors(
    hub_db: Path | str,
) -> None:
    """Kill the index actor: the supervisor restarts it, it reloads the feed; an embeddings
    service that fails keeps its batch (retried with backoff) while pushes and recall go on.
    Where the database searches the vectors (pgvector), the store is the actor killed."""
    db = hub_db
    key = add_key(db, "acme")
    with embeddings_server(dimension=32) as server:
        spec = EmbedderSpec("openai", url=server.url, api_key=KEY, model="m", dimension=32)
        with (
            _open(db, spec, restart_backoff=0.01) as service,
            HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
        ):
            first = memory("alpha beta gamma")
            client.push([first])
            assert _settled(client, "alpha beta").hits[0].id == first.id
            searcher = "hub-store" if service.vector_search.in_database else "hub-index"
            index = service._cells[searcher]
            old = index.ref
            assert old is not None
            old.stop(block=True, timeout=10)
            wait_until(
                lambda: index.ref is not old and index.status == "READY", "the index to restart"
            )
            assert _settled(client, "alpha beta").hits[0].id == first.id
            server.fail = 503
            second = memory("delta epsilon zeta")
            assert client.push([second]).results[0].status == "applied"
            answer = client.recall("delta epsilon")
            assert answer.pending == 1
            server.fail = None
            assert _settled(client, "delta epsilon").hits[0].id == second.id


def test_a_hub_started_without_numpy_or_embedder_says_why_recall_is_501(
    hub_db: Path | str,
) -> None:
    """``--embedder none``: every other endpoint serves; recall is 501 with the reason."""
    db = hub_db
    key = add_key(db, "acme")
    with (
        _open(db, EmbedderSpec("none")) as service,
        HubClient("http://hub.test", key, transport=mock_transport(service.core)) as client,
    ):
        assert client.push([memory("x")]).results[0].status == "applied"
        response = client._http.post("/api/recall", json={"query": "x"})
        assert response.status_code == 501
        assert "--embedder none" in response.json()["error"]["message"]
    assert sorted(service._cells) == ["hub-store"]
    assert isinstance(db, str) or os.path.exists(db)


def test_hub_serve_refuses_an_incomplete_embedder_configuration_before_binding(
    tmp_path: Path,
) -> None:
    """``--embedder openai`` without URL and model is a usage error (exit 2), named."""
    from click.testing import CliRunner

    from actors.hub.cli import hub as hub_command

    result = CliRunner().invoke(
        hub_command, ["serve", "--db", str(tmp_path / "hub.db"), "--embedder", "openai"]
    )
    assert result.exit_code == 2
    assert "--embedder-url" in result.output
    assert not (tmp_path / "hub.db").exists()
    help_text = CliRunner().invoke(hub_command, ["serve", "--help"]).output
    assert "--embedder [auto|minilm|openai|hashing|none]" in help_text
