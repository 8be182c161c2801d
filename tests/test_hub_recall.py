"""``POST /api/recall`` end to end: real hub processes, real HTTP, the real client.

- the hashing hub (what every install has): ranking, filters, tenant
  isolation, tombstones, a battery of bad input (never a 5xx), and 501 from
  a hub started with ``--embedder none``;
- a hub whose embeddings service is stalled on purpose: pushes are still
  acknowledged, and the backlog is embedded once the service answers;
- the real model (the model (``memory-actors install-model``); skipped without it): the
  quality evaluation of ``tests/recall_eval.py``, measured through the hub.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from embeddings_server import KEY, embeddings_server
from hub_fixtures import HubProcess, forget, memory, needs_minilm, wait_until
from recall_eval import (
    DISTRACTORS,
    HARD_DISTRACTORS,
    HARD_LEXICAL,
    HARD_PAIRS,
    LEXICAL,
    PAIRS,
    keyword_sets,
    shared_keywords,
)

from actors.errors import HubUnsupported
from actors.hub.search import fts_query
from actors.remote import HubClient
from actors.wire import RecallHits

pytestmark = pytest.mark.slow


@pytest.fixture
def client(hub: HubProcess) -> Iterator[HubClient]:
    """A client of a fresh tenant."""
    with hub.client(hub.add_key(f"t-{uuid.uuid4().hex[:10]}")) as c:
        yield c


def settled(client: HubClient, query: str, deadline: float = 60.0, **kwargs: Any) -> RecallHits:
    """Recall once every memory of the tenant is searchable by vector (bounded polling)."""

    def ready() -> RecallHits | None:
        answer = client.recall(query, **kwargs)
        return answer if answer.pending == 0 and answer.ranking != "keyword" else None

    return wait_until(ready, f"the tenant's memories to be embedded ({query!r})", deadline=deadline)


# -- the hashing hub ---------------------------------------------------------------------------


def test_recall_ranks_the_stored_memory_first_once_it_is_embedded(client: HubClient) -> None:
    """Push, wait until embedded, recall: the matching memory first, with its score."""
    items = [
        memory("The deploy key lives in vault under ops/deploy", tags=("ops",)),
        memory("Lunch is at noon on Fridays"),
        memory("The staging database is postgres 15 on db-stage-2"),
    ]
    client.push(items)
    answer = settled(client, "which vault holds the deploy key?", limit=2)
    assert next(h.id for h in answer.hits) == items[0].id
    assert len(answer.hits) == 2
    top = answer.hits[0]
    assert (top.content, top.tags, top.namespace) == (items[0].content, ("ops",), "default")
    assert top.score >= answer.hits[1].score
    assert answer.embedder is not None
    assert (answer.embedder.name, answer.embedder.semantic) == ("hashing-ngrams-v1-384", False)
    exact = settled(client, "what runs on db-stage-2")
    assert exact.hits[0].id == items[2].id


def test_recall_filters_by_namespace_and_tags(client: HubClient) -> None:
    """``namespace`` and all of ``tags`` restrict the hits, whatever their similarity."""
    work = memory("deploy checklist for the payments service", namespace="work", tags=("a", "b"))
    home = memory("deploy checklist for the garden shed", namespace="home", tags=("a",))
    client.push([work, home])
    settled(client, "deploy checklist")
    assert [h.id for h in client.recall("deploy checklist", namespace="home").hits] == [home.id]
    assert [h.id for h in client.recall("deploy checklist", tags=["b"]).hits] == [work.id]
    assert client.recall("deploy checklist", namespace="home", tags=["b"]).hits == ()


def test_recall_by_namespace_prefix_keeps_the_subtree_and_not_its_siblings(
    client: HubClient,
) -> None:
    """``namespace_prefix`` keeps the namespace and those below it, at any depth, not ``alicex``."""
    inside = [
        memory("tea preferences of alice", namespace="users/alice"),
        memory("tea preferences of alice, ui", namespace="users/alice/prefs"),
        memory("tea preferences of alice, deep", namespace="users/alice/prefs/ui/x"),
    ]
    outside = [
        memory("tea preferences of alicex", namespace="users/alicex"),
        memory("tea preferences of alice-x", namespace="users/alice-x"),
        memory("tea preferences of the users root", namespace="users"),
    ]
    client.push([*inside, *outside])
    settled(client, "tea preferences", limit=20)
    found = client.recall("tea preferences", namespace_prefix="users/alice", limit=20)
    assert {h.id for h in found.hits} == {m.id for m in inside}
    assert found.ranking != "keyword"  # the vector index filtered too, not only the store
    both = client.recall(
        "tea preferences", namespace="users/alicex", namespace_prefix="users/alice", limit=20
    )
    assert both.hits == ()
    everything = client.recall("tea preferences", namespace_prefix="users", limit=20)
    assert len(everything.hits) == 6


def test_a_tenant_never_recalls_another_tenants_memories(hub: HubProcess) -> None:
    """Same words, same ids in two tenants: each recalls only its own."""
    with (
        hub.client(hub.add_key(f"a-{uuid.uuid4().hex[:8]}")) as one,
        hub.client(hub.add_key(f"b-{uuid.uuid4().hex[:8]}")) as two,
        hub.client(hub.add_key(f"c-{uuid.uuid4().hex[:8]}")) as empty,
    ):
        secret = memory("the launch codes are kept in the blue binder")
        one.push([secret])
        two.push([memory("the launch codes are kept in the red binder", id=secret.id)])
        assert [h.content for h in settled(one, "launch codes binder").hits] == [secret.content]
        assert [h.content for h in settled(two, "launch codes binder").hits] == [
            "the launch codes are kept in the red binder"
        ]
        assert empty.recall("launch codes binder").hits == ()


def test_a_forgotten_memory_is_never_recalled_again(client: HubClient) -> None:
    """The tombstone hides it at once (the store filters) and drops its vector."""
    keep, drop = memory("the router admin page is at 10.0.0.1"), memory("the router is blue")
    client.push([keep, drop])
    assert {h.id for h in settled(client, "router").hits} == {keep.id, drop.id}
    client.push([forget(drop)])
    assert [h.id for h in client.recall("router").hits] == [keep.id]
    assert [h.id for h in settled(client, "the router is blue").hits] == [keep.id]


#: (what, body or raw text, expected status, expected code)
RECALL_BATTERY: list[tuple[str, Any, int, str]] = [
    ("no query", {}, 422, "invalid_body"),
    ("query null", {"query": None}, 422, "invalid_body"),
    ("query a number", {"query": 5}, 422, "invalid_body"),
    ("query empty", {"query": "   "}, 422, "invalid_body"),
    ("query too long", {"query": "x" * 1001}, 422, "invalid_body"),
    ("query with NUL", {"query": "a\x00b"}, 200, ""),
    ("query only punctuation", {"query": "?!*()\"'"}, 200, ""),
    ("query of FTS5 syntax", {"query": 'NEAR("a" "b") OR c* AND -d ^e'}, 200, ""),
    ("limit zero", {"query": "x", "limit": 0}, 422, "invalid_body"),
    ("limit negative", {"query": "x", "limit": -1}, 422, "invalid_body"),
    ("limit a string", {"query": "x", "limit": "5"}, 422, "invalid_body"),
    ("limit a float", {"query": "x", "limit": 2.5}, 422, "invalid_body"),
    ("limit true", {"query": "x", "limit": True}, 422, "invalid_body"),
    ("limit too large", {"query": "x", "limit": 201}, 422, "invalid_body"),
    ("limit huge", {"query": "x", "limit": 10**30}, 422, "invalid_body"),
    ("namespace bad", {"query": "x", "namespace": "../etc"}, 422, "invalid_body"),
    ("namespace a number", {"query": "x", "namespace": 3}, 422, "invalid_body"),
    ("prefix empty segment", {"query": "x", "namespace_prefix": "a//b"}, 422, "invalid_body"),
    ("prefix trailing slash", {"query": "x", "namespace_prefix": "a/"}, 422, "invalid_body"),
    ("prefix a number", {"query": "x", "namespace_prefix": 3}, 422, "invalid_body"),
    ("prefix null", {"query": "x", "namespace_prefix": None}, 200, ""),
    ("tags a string", {"query": "x", "tags": "a,b"}, 422, "invalid_body"),
    ("tag with comma", {"query": "x", "tags": ["a,b"]}, 422, "invalid_body"),
    ("too many tags", {"query": "x", "tags": [f"t{i}" for i in range(40)]}, 422, "invalid_body"),
    ("body an array", [], 422, "invalid_body"),
    ("body a string", "query", 422, "invalid_body"),
    ("unknown fields ignored", {"query": "x", "mode": "turbo"}, 200, ""),
    ("not json", "raw:nope", 400, "malformed_json"),
    ("NaN", 'raw:{"query": "x", "limit": NaN}', 400, "malformed_json"),
    ("deep nesting", "raw:" + "[" * 100_000, 400, "malformed_json"),
    ("lone surrogate", 'raw:{"query": "\\ud800"}', 422, "invalid_body"),
    ("not utf-8", b'bytes:{"query": "\xff"}', 400, "malformed_json"),
]  # fmt: skip


def test_bad_recall_input_gets_a_precise_4xx_never_a_5xx(
    hub: HubProcess, client: HubClient
) -> None:
    """Every malformed recall is refused with its code; odd but valid queries answer 200."""
    client.push([memory("something to find")])
    key = client._http.headers["authorization"]
    failures = []
    for what, body, status, code in RECALL_BATTERY:
        headers = {"authorization": key, "content-type": "application/json"}
        if isinstance(body, bytes):
            content = body.removeprefix(b"bytes:")
        elif isinstance(body, str) and body.startswith("raw:"):
            content = body.removeprefix("raw:").encode()
        else:
            content = json.dumps(body).encode()
        response = httpx.post(f"{hub.url}/api/recall", content=content, headers=headers, timeout=10)
        got = response.json()
        if response.status_code != status:
            failures.append(f"{what}: {response.status_code} {got} (wanted {status})")
        elif code and got["error"]["code"] != code:
            failures.append(f"{what}: {got['error']} (wanted {code})")
        elif status == 200 and not isinstance(got.get("hits"), list):
            failures.append(f"{what}: 200 without hits: {got}")
    other = httpx.post(
        f"{hub.url}/api/recall",
        content=b'{"query": "x"}',
        headers={"authorization": key, "content-type": "text/plain"},
        timeout=10,
    )
    assert other.status_code == 415
    no_key = httpx.post(f"{hub.url}/api/recall", json={"query": "x"}, timeout=10)
    assert no_key.status_code == 401
    assert failures == []


def test_a_hub_started_without_an_embedder_answers_501_and_the_client_says_unsupported(
    hub_db: Path | str,
) -> None:
    """``--embedder none``: 501 ``not_implemented``; ``HubClient.recall`` raises HubUnsupported."""
    with (
        HubProcess.running(hub_db, args=("--embedder", "none")) as hub,
        hub.client(hub.add_key("acme")) as client,
    ):
        client.push([memory("stored fine")])
        with pytest.raises(HubUnsupported, match="semantic recall") as info:
            client.recall("stored")
        assert info.value.status == 501


# -- a stalled embeddings service --------------------------------------------------------------


def test_pushes_are_acknowledged_while_the_embedder_is_stalled(
    hub_db: Path | str,
) -> None:
    """The embeddings service holds every backlog request: pushes still answer, recall still
    answers (pending > 0); once the service answers, the backlog is embedded and ranked."""
    with embeddings_server(dimension=64) as server:
        texts = [f"stalled memory {i} about topic {i * 7}" for i in range(40)]
        server.close_gate(set(texts))
        args = (
            "--embedder",
            "openai",
            "--embedder-url",
            server.url,
            "--embedder-model",
            "test-model",
            "--embedder-dimension",
            "64",
        )
        env = {"MEMORY_ACTORS_HUB_EMBEDDER_KEY": KEY}
        with (
            HubProcess.running(hub_db, args=args, env=env) as hub,
            hub.client(hub.add_key("acme"), timeout=10.0) as client,
        ):
            for start in range(0, len(texts), 5):
                batch = [memory(text) for text in texts[start : start + 5]]
                assert {r.status for r in client.push(batch).results} == {"applied"}
            assert client.count().total == len(texts)
            wait_until(lambda: len(server.seen()) > 0, "the embedder to ask the service")
            during = client.recall("memory 3 about topic 21")
            assert during.pending == len(texts)
            server.open_gate()
            after = settled(client, "memory 3 about topic 21")
            assert after.hits[0].content == texts[3]
            assert after.embedder is not None
            assert (after.embedder.name, after.embedder.semantic) == ("openai:test-model", True)
        assert all(r["auth"] == f"Bearer {KEY}" for r in server.seen())
        assert "sk-test" not in hub.log_text()


# -- the real model: quality, honestly measured ------------------------------------------------


def _keyword_top3(memories: list[str], queries: list[tuple[int, str]], *, hub_style: bool) -> int:
    """Targets in the top 3 of keyword search alone: FTS5 BM25 over the same memories.

    ``hub_style``: the hub's query (stop words dropped); else the client's local
    recall (every word OR-ed, as ``actors/local_db.py`` builds it).
    """
    db = sqlite3.connect(":memory:")
    try:
        db.execute(
            "CREATE VIRTUAL TABLE m USING fts5(content, tokenize='porter unicode61 "
            "remove_diacritics 2')"
        )
        db.executemany("INSERT INTO m(rowid, content) VALUES (?, ?)", enumerate(memories))
        found = 0
        for target, query in queries:
            if hub_style:
                match = fts_query(query)
            else:
                match = " OR ".join(f'"{t}"' for t in re.findall(r"\w+", query)[:32])
            if not match:
                continue
            top = [r[0] for r in db.execute(
                "SELECT rowid FROM m WHERE m MATCH ? ORDER BY bm25(m) LIMIT 3", (match,)
            )]  # fmt: skip
            found += target in top
        return found
    finally:
        db.close()


def test_every_query_of_the_evaluation_set_shares_no_keyword_with_its_target() -> None:
    """No query shares a Porter stem or a five-letter prefix of a content word with its target."""
    assert len(PAIRS) >= 50
    assert len({m for m, _ in PAIRS} | set(DISTRACTORS)) == len(PAIRS) + len(DISTRACTORS)
    overlaps = {i: shared_keywords(m, q) for i, (m, q) in enumerate(PAIRS)}
    assert {i: o for i, o in overlaps.items() if o} == {}


def _all_memories() -> list[str]:
    return [m for m, _ in PAIRS] + DISTRACTORS + [m for m, _ in HARD_PAIRS] + HARD_DISTRACTORS


def test_every_memory_across_the_first_and_hard_sets_is_distinct() -> None:
    """No memory appears twice, within a set or across the two sets (case aside)."""
    memories = _all_memories()
    assert len({m.casefold().strip() for m in memories}) == len(memories)
    queries = [q for _, q in PAIRS] + [q for _, q in HARD_PAIRS]
    assert len({q.casefold().strip() for q in queries}) == len(queries)


def test_every_hard_query_shares_no_keyword_with_its_target() -> None:
    """The hard set's rule too: no shared Porter stem or five-letter prefix of a content word."""
    assert len(HARD_PAIRS) == 80
    overlaps = {i: shared_keywords(m, q) for i, (m, q) in enumerate(HARD_PAIRS)}
    assert {i: o for i, o in overlaps.items() if o} == {}


def test_hard_distractors_share_words_with_the_queries() -> None:
    """Each of the 200 distractors shares a content word with some hard query, and each
    hard query has at least two distractors sharing its words."""
    assert len(HARD_DISTRACTORS) == 200
    queries = keyword_sets(q for _, q in HARD_PAIRS)
    sharing = {
        d: [i for i, (qs, qp) in enumerate(queries) if ds & qs or dp & qp]
        for d, (ds, dp) in zip(HARD_DISTRACTORS, keyword_sets(HARD_DISTRACTORS), strict=True)
    }
    assert [d for d, hit in sharing.items() if not hit] == []
    per_query = {i: sum(i in hit for hit in sharing.values()) for i in range(len(queries))}
    assert {i: n for i, n in per_query.items() if n < 2} == {}


def test_hard_lexical_identifiers_are_unique_to_their_target() -> None:
    """Each identifier query names a token found verbatim in its target and in no other memory."""
    assert len(HARD_LEXICAL) == 15
    memories = _all_memories()
    offset = len(PAIRS) + len(DISTRACTORS)
    failures = []
    for target, query in HARD_LEXICAL:
        own = HARD_PAIRS[target][0].casefold()
        others = [m.casefold() for i, m in enumerate(memories) if i != offset + target]
        tokens = [t.strip(".,;:!?()\"'").casefold() for t in query.split()]
        unique = [t for t in tokens if t and t in own and not any(t in m for m in others)]
        if not unique:
            failures.append((target, query))
    assert failures == []


def test_keyword_search_alone_misses_the_hard_targets() -> None:
    """Keyword BM25 over the 280 hard memories puts at most 20 % of the targets in the top 3,
    with the hub's query (stop words dropped) and the client's (every word): the distractors
    bite. The identifier queries, in contrast, find their target."""
    memories = [m for m, _ in HARD_PAIRS] + HARD_DISTRACTORS
    queries = list(enumerate(q for _, q in HARD_PAIRS))
    hub = _keyword_top3(memories, queries, hub_style=True) / len(queries)
    client = _keyword_top3(memories, queries, hub_style=False) / len(queries)
    print(f"\nhard set, keyword BM25 alone top-3: {client:.0%} (every word) / {hub:.0%} (hub)")
    assert hub <= 0.2
    assert client <= 0.2
    lexical = _keyword_top3(memories, HARD_LEXICAL, hub_style=True)
    assert lexical == len(HARD_LEXICAL)


@needs_minilm
def test_semantic_recall_finds_paraphrases_that_keyword_search_cannot(
    hub_db: Path | str,
) -> None:
    """all-MiniLM-L6-v2 through a real hub: ≥ 90 % of 60 no-shared-keyword paraphrases find
    their memory in the top 3 of 100; keyword search alone finds almost none."""
    memories = [m for m, _ in PAIRS] + DISTRACTORS
    with (
        HubProcess.running(hub_db, args=("--embedder", "minilm")) as hub,
        hub.client(hub.add_key("eval"), timeout=30.0) as client,
    ):
        items = [memory(text) for text in memories]
        for start in range(0, len(items), 50):
            client.push(items[start : start + 50])
        first = settled(client, PAIRS[0][1], deadline=240.0, limit=3)
        assert first.embedder is not None
        assert first.embedder.semantic
        assert first.ranking == "vector"
        ranks: list[int | None] = []
        for index, (_, query) in enumerate(PAIRS):
            answer = client.recall(query, limit=3)
            found = [h.id for h in answer.hits]
            ranks.append(found.index(items[index].id) if items[index].id in found else None)
        lexical = [
            items[target].id in [h.id for h in client.recall(query, limit=3).hits]
            for target, query in LEXICAL
        ]
    semantic_top3 = sum(r is not None for r in ranks) / len(PAIRS)
    semantic_top1 = sum(r == 0 for r in ranks) / len(PAIRS)
    pairs = list(enumerate(q for _, q in PAIRS))
    keyword_hub = _keyword_top3(memories, pairs, hub_style=True) / len(PAIRS)
    keyword_client = _keyword_top3(memories, pairs, hub_style=False) / len(PAIRS)
    print(
        f"\nsemantic recall eval ({len(PAIRS)} queries, {len(memories)} memories): "
        f"hub top-3 {semantic_top3:.0%} (top-1 {semantic_top1:.0%}); keyword BM25 alone top-3 "
        f"{keyword_client:.0%} (every word) / {keyword_hub:.0%} (stop words dropped); "
        f"identifier queries top-3 {sum(lexical)}/{len(lexical)}; "
        f"misses: {[i for i, r in enumerate(ranks) if r is None]}"
    )
    assert semantic_top3 >= 0.9
    assert keyword_client <= 0.2
    assert keyword_hub <= 0.2
    assert all(lexical)
