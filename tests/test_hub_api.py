"""The hub's protocol, end to end: a real hub process on loopback, real HTTP, the real client.

One hub serves the module; each test works in a tenant of its own, which is
also the isolation the hub promises (one tenant never sees another's data).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from hub_fixtures import HubProcess, forget, memory

from actors.errors import HubAuthError, HubCursorReset, HubRejected
from actors.hub.core import ROUTES
from actors.hub.openapi import openapi_document
from actors.wire import ChangesPage, WireMemory


class Tenant:
    """A fresh tenant on the shared hub: its name, key and client."""

    def __init__(self, hub: HubProcess) -> None:
        self.name = f"t-{uuid.uuid4().hex[:10]}"
        self.key = hub.add_key(self.name)
        self.client = hub.client(self.key)
        self.url = hub.url

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw request with this tenant's key (for what the client would never send)."""
        headers = {"authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def feed(self) -> list[tuple[int, WireMemory]]:
        """The whole change feed, as (seq, memory)."""
        out: list[tuple[int, WireMemory]] = []
        cursor = None
        while True:
            page = self.client.changes(since=cursor, limit=1000)
            out += [(change.seq, change.memory) for change in page.changes]
            cursor = page.next_cursor
            if not page.has_more:
                return out


@pytest.fixture
def tenant(hub: HubProcess) -> Iterator[Tenant]:
    """A tenant of its own for this test."""
    t = Tenant(hub)
    yield t
    t.client.close()


@pytest.fixture
def other(hub: HubProcess) -> Iterator[Tenant]:
    """A second tenant, for isolation tests."""
    t = Tenant(hub)
    yield t
    t.client.close()


def _snapshot(t: Tenant) -> tuple[Any, ...]:
    return (t.feed(), t.client.digest(limit=5000).entries, t.client.count())


# -- health, auth ------------------------------------------------------------------------


def test_healthz_answers_without_a_key(hub: HubProcess) -> None:
    """``/healthz`` is public and reports the protocol version."""
    response = httpx.get(f"{hub.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "protocol": 1}
    assert response.headers["memory-hub-protocol"] == "1"


def test_auth_check_names_the_tenant_and_the_limits(tenant: Tenant) -> None:
    """A valid key answers 200 with its tenant, key id, protocol and the hub's limits."""
    info = tenant.client.auth_check()
    assert info.tenant == tenant.name
    assert tenant.key.startswith(f"mah_{info.key_id}_")
    assert info.protocol == 1
    assert info.limits.max_batch_items == 500


def test_a_missing_or_malformed_authorization_is_401(hub: HubProcess) -> None:
    """No header, another scheme, or an empty bearer → 401 ``missing_key`` with a challenge."""
    for headers in ({}, {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Bearer"}):
        response = httpx.get(f"{hub.url}/api/auth-check", headers=headers, timeout=5)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "missing_key"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_unknown_key_is_401_and_a_revoked_key_is_403(hub: HubProcess) -> None:
    """Unknown keys (random, or a real id with a wrong secret) → 401; revoked → 403 at once."""
    key = hub.add_key("revokee")
    forged = key[: -len("x")] + ("y" if not key.endswith("y") else "z")
    for bad in ("mah_000000000000_" + "a" * 43, forged, "not-even-shaped-like-a-key"):
        with hub.client(bad) as client, pytest.raises(HubAuthError) as info:
            client.auth_check()
        assert (info.value.status, info.value.code) == (401, "unknown_key")
    with hub.client(key) as client:
        assert client.auth_check().tenant == "revokee"
        hub.revoke(key)
        with pytest.raises(HubAuthError) as info:
            client.count()
        assert (info.value.status, info.value.code) == (403, "key_revoked")
        assert "revoked" in info.value.reason


# -- push: idempotency, dedup, last writer wins, tombstones -----------------------------------


def test_pushing_the_same_batch_twice_changes_nothing(tenant: Tenant) -> None:
    """The replay answers ``unchanged`` per item; feed, digest and counts are identical."""
    batch = [memory(f"fact number {i}", tags=("a",)) for i in range(5)] + [
        forget(memory("gone"), version=1_700_000_000_500)
    ]
    first = tenant.client.push(batch)
    assert [r.status for r in first.results] == ["applied"] * 6
    before = _snapshot(tenant)
    second = tenant.client.push(batch)
    assert [r.status for r in second.results] == ["unchanged"] * 6
    assert [r.version for r in second.results] == [item.version for item in batch]
    assert _snapshot(tenant) == before
    assert [seq for seq, _ in before[0]] == [1, 2, 3, 4, 5, 6]


def test_identical_content_under_another_id_answers_the_canonical_id(tenant: Tenant) -> None:
    """Same text in the same namespace → ``duplicate`` with the first id; nothing is stored."""
    first = memory("The deploy key lives in vault")
    tenant.client.push([first])
    twin = memory("  The deploy key lives in vault\n", origin="origin-b")
    elsewhere = memory("The deploy key lives in vault", namespace="other")
    results = tenant.client.push([twin, elsewhere]).results
    assert results[0].status == "duplicate"
    assert results[0].canonical_id == first.id
    assert results[0].version == first.version
    assert results[1].status == "applied"  # dedup is per namespace
    assert {m.id for _, m in tenant.feed()} == {first.id, elsewhere.id}


def test_a_forgotten_memory_no_longer_claims_its_content(tenant: Tenant) -> None:
    """After a tombstone, the same text under a new id is applied, not a duplicate."""
    first = memory("temporary note")
    tenant.client.push([first])
    tenant.client.push([forget(first)])
    again = memory("temporary note", version=1_700_000_001_000)
    assert tenant.client.push([again]).results[0].status == "applied"


def test_an_older_version_is_ignored_as_stale(tenant: Tenant) -> None:
    """Last writer wins: an older version is ``stale`` (with the hub's version); newer applies."""
    ident = str(uuid.uuid4())
    current = memory("v2", id=ident, version=2_000, tags=("new",))
    tenant.client.push([current])
    old = memory("v2", id=ident, version=1_000, tags=("old",))
    (result,) = tenant.client.push([old]).results
    assert (result.status, result.version) == ("stale", current.version)
    newer = memory("v2", id=ident, version=3_000, tags=("newest",))
    assert tenant.client.push([newer]).results[0].status == "applied"
    ((seq, stored),) = tenant.feed()
    assert stored.tags == ("newest",)
    assert seq == 2


def test_a_version_tie_is_broken_by_origin_whatever_the_order(hub: HubProcess) -> None:
    """Equal versions: the greater origin wins, so two hubs fed in opposite orders agree."""
    ident = str(uuid.uuid4())
    from_a = memory("shared", id=ident, version=5_000, origin="origin-a", tags=("a",))
    from_b = memory("shared", id=ident, version=5_000, origin="origin-b", tags=("b",))
    one, two = Tenant(hub), Tenant(hub)
    with one.client, two.client:
        one.client.push([from_a])
        assert one.client.push([from_b]).results[0].status == "applied"
        two.client.push([from_b])
        (result,) = two.client.push([from_a]).results
        assert result.status == "stale"
        assert one.feed()[0][1] == two.feed()[0][1] == from_b


def test_tombstones_appear_in_the_change_feed_without_content(tenant: Tenant) -> None:
    """A forget moves the memory to the end of the feed as ``deleted`` with content erased."""
    keep, drop = memory("keep me"), memory("drop me", metadata={"k": "v"}, tags=("x",))
    tenant.client.push([keep, drop])
    tenant.client.push([forget(drop)])
    feed = tenant.feed()
    assert [(seq, m.id) for seq, m in feed] == [(1, keep.id), (3, drop.id)]
    tombstone = feed[1][1]
    assert tombstone.deleted
    assert (tombstone.content, tombstone.tags, dict(tombstone.metadata)) == ("", (), {})
    stale_revival = memory("drop me", id=drop.id)  # the original, older version
    assert tenant.client.push([stale_revival]).results[0].status == "stale"
    count = tenant.client.count()
    assert (count.total, count.forgotten) == (1, 1)


def test_a_tombstone_for_an_unknown_id_is_kept_so_an_older_write_cannot_revive_it(
    tenant: Tenant,
) -> None:
    """Deletes sync like writes: a tombstone that arrives first still wins over the older write."""
    original = memory("written elsewhere", version=1_000)
    tenant.client.push([forget(original, version=2_000)])
    assert tenant.client.push([original]).results[0].status == "stale"
    assert tenant.client.count().total == 0


# -- change feed, digest, count -----------------------------------------------------------


def test_changes_page_by_cursor_in_server_order(tenant: Tenant) -> None:
    """Seven pushes paged by three: exact seqs, cursors, has_more; a change moves to the end."""
    items = [memory(f"item {i}") for i in range(7)]
    for item in items:
        tenant.client.push([item])
    pages: list[ChangesPage] = []
    cursor = None
    while True:
        page = tenant.client.changes(since=cursor, limit=3)
        pages.append(page)
        cursor = page.next_cursor
        if not page.has_more:
            break
    assert [[c.seq for c in p.changes] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [c.memory.id for p in pages for c in p.changes] == [i.id for i in items]
    assert tenant.client.changes(since=cursor).changes == ()
    assert tenant.client.changes(since=cursor).next_cursor == cursor
    tenant.client.push([forget(items[1])])
    (moved,) = tenant.client.changes(since=cursor).changes
    assert (moved.seq, moved.memory.id, moved.memory.deleted) == (8, items[1].id, True)
    assert [c.seq for c in tenant.client.changes(limit=1000).changes] == [1, 3, 4, 5, 6, 7, 8]


def test_a_cursor_the_hub_did_not_issue_is_refused_with_cursor_reset(tenant: Tenant) -> None:
    """Another database's cursor, or one ahead of the feed, → 409 ``cursor_reset``."""
    tenant.client.push([memory("one")])
    cursor = tenant.client.changes().next_cursor
    hub_id, _, seq = cursor.partition(":")
    assert seq == "1"
    with pytest.raises(HubCursorReset, match="another hub database"):
        tenant.client.changes(since=f"{uuid.uuid4()}:1")
    with pytest.raises(HubCursorReset, match="ahead of this hub's change feed"):
        tenant.client.changes(since=f"{hub_id}:99")


def test_digest_pages_by_id_through_every_memory_including_tombstones(tenant: Tenant) -> None:
    """The digest lists (id, hash, version, origin, deleted) in id order, page by page."""
    items = [memory(f"digest {i}") for i in range(5)]
    tenant.client.push(items)
    tenant.client.push([forget(items[2])])
    entries = []
    after = None
    pages = 0
    while True:
        page = tenant.client.digest(after=after, limit=2)
        pages += 1
        entries += page.entries
        after = page.next_after
        if not page.has_more:
            assert after is None
            break
    assert pages == 3
    assert [e.id for e in entries] == sorted(i.id for i in items)
    by_id = {e.id: e for e in entries}
    assert by_id[items[0].id].content_hash == items[0].content_hash
    assert by_id[items[2].id].deleted
    assert by_id[items[2].id].version == forget(items[2]).version
    assert page.cursor == tenant.client.changes(limit=1000).next_cursor


def test_count_reports_live_memories_per_namespace_and_tombstones(tenant: Tenant) -> None:
    """Totals per namespace count live memories; tombstones are counted apart."""
    a1, a2, b1 = (
        memory("a1", namespace="a"),
        memory("a2", namespace="a"),
        memory("b1", namespace="b"),
    )
    tenant.client.push([a1, a2, b1])
    tenant.client.push([forget(a2)])
    count = tenant.client.count()
    assert (count.total, dict(count.by_namespace), count.forgotten) == (2, {"a": 1, "b": 1}, 1)


# -- tenant isolation ---------------------------------------------------------------------------


def test_tenants_never_read_count_overwrite_or_delete_each_others_memories(
    tenant: Tenant, other: Tenant
) -> None:
    """Tenant B pushing A's ids (newer, or tombstones) and A's content touches nothing of A's."""
    mine = [memory(f"secret of A {i}") for i in range(3)]
    tenant.client.push(mine)
    before = _snapshot(tenant)
    assert other.client.changes().changes == ()
    assert other.client.digest().entries == ()
    assert other.client.count().total == 0
    overwrite = memory("B was here", id=mine[0].id, version=9_999_999_999_999)
    delete = forget(mine[1], version=9_999_999_999_999)
    same_text = memory("secret of A 2")
    results = other.client.push([overwrite, delete, same_text]).results
    assert [r.status for r in results] == ["applied", "applied", "applied"]
    assert _snapshot(tenant) == before
    assert {m.content for _, m in other.feed()} == {"B was here", "", "secret of A 2"}


# -- bad input ------------------------------------------------------------------------------------


def _item(**changes: Any) -> dict[str, Any]:
    base = memory("a valid memory").to_json()
    base.update(changes)
    return {key: value for key, value in base.items() if value is not _DROP}


_DROP = object()
_BIG = "x" * (70 * 1024)

#: (what, method, path, extra request kwargs, expected status, expected error code)
BATTERY: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("no content type", "POST", "/api/memories/batch", {"content": b"{}"}, 415, ""),
    ("text/plain", "POST", "/api/memories/batch",
     {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, ""),
    ("truncated json", "POST", "/api/memories/batch", {"json_text": '{"items": ['}, 400,
     "malformed_json"),
    ("not utf-8", "POST", "/api/memories/batch", {"json_bytes": b'{"items": ["\xff\xfe"]}'},
     400, "malformed_json"),
    ("NaN constant", "POST", "/api/memories/batch", {"json_text": '{"items": [NaN]}'}, 400,
     "malformed_json"),
    ("deep nesting", "POST", "/api/memories/batch", {"json_text": "[" * 100_000}, 400,
     "malformed_json"),
    ("huge integer", "POST", "/api/memories/batch",
     {"json_text": '{"items": [{"created_at": ' + "9" * 5000 + "}]}"}, 400, "malformed_json"),
    ("array body", "POST", "/api/memories/batch", {"json": []}, 422, "invalid_body"),
    ("items missing", "POST", "/api/memories/batch", {"json": {}}, 422, "invalid_body"),
    ("items a string", "POST", "/api/memories/batch", {"json": {"items": "x"}}, 422,
     "invalid_body"),
    ("items empty", "POST", "/api/memories/batch", {"json": {"items": []}}, 422, "invalid_body"),
    ("too many items", "POST", "/api/memories/batch",
     {"json": {"items": [_item() for _ in range(501)]}}, 422, "invalid_body"),
    ("item a number", "POST", "/api/memories/batch", {"json": {"items": [1]}}, 422,
     "invalid_item"),
    ("id missing", "POST", "/api/memories/batch", {"json": {"items": [_item(id=_DROP)]}}, 422,
     "invalid_item"),
    ("id not a uuid", "POST", "/api/memories/batch", {"json": {"items": [_item(id="abc")]}},
     422, "invalid_item"),
    ("id a number", "POST", "/api/memories/batch", {"json": {"items": [_item(id=7)]}}, 422,
     "invalid_item"),
    ("bad namespace", "POST", "/api/memories/batch",
     {"json": {"items": [_item(namespace="../etc")]}}, 422, "invalid_item"),
    ("namespace null", "POST", "/api/memories/batch",
     {"json": {"items": [_item(namespace=None)]}}, 422, "invalid_item"),
    ("empty content", "POST", "/api/memories/batch", {"json": {"items": [_item(content="  ")]}},
     422, "invalid_item"),
    ("content too big", "POST", "/api/memories/batch",
     {"json": {"items": [_item(content=_BIG, content_hash=_DROP)]}}, 422, "invalid_item"),
    ("content a list", "POST", "/api/memories/batch", {"json": {"items": [_item(content=[1])]}},
     422, "invalid_item"),
    ("content with NUL", "POST", "/api/memories/batch",
     {"json": {"items": [_item(content="a\x00b", content_hash=_DROP)]}}, 422, "invalid_item"),
    ("lone surrogate", "POST", "/api/memories/batch",
     {"json_text": json.dumps({"items": [_item(content="\ud800", content_hash=_DROP)]})},
     422, "invalid_item"),
    ("hash mismatch", "POST", "/api/memories/batch",
     {"json": {"items": [_item(content_hash="0" * 64)]}}, 422, "invalid_item"),
    ("tags a string", "POST", "/api/memories/batch", {"json": {"items": [_item(tags="a,b")]}},
     422, "invalid_item"),
    ("tag with comma", "POST", "/api/memories/batch", {"json": {"items": [_item(tags=["a,b"])]}},
     422, "invalid_item"),
    ("too many tags", "POST", "/api/memories/batch",
     {"json": {"items": [_item(tags=[f"t{i}" for i in range(40)])]}}, 422, "invalid_item"),
    ("metadata a list", "POST", "/api/memories/batch",
     {"json": {"items": [_item(metadata=[1])]}}, 422, "invalid_item"),
    ("metadata too big", "POST", "/api/memories/batch",
     {"json": {"items": [_item(metadata={"k": "v" * 20_000})]}}, 422, "invalid_item"),
    ("bad version", "POST", "/api/memories/batch", {"json": {"items": [_item(version="v1")]}},
     422, "invalid_item"),
    ("version a number", "POST", "/api/memories/batch", {"json": {"items": [_item(version=5)]}},
     422, "invalid_item"),
    ("origin empty", "POST", "/api/memories/batch", {"json": {"items": [_item(origin="")]}},
     422, "invalid_item"),
    ("created_at a string", "POST", "/api/memories/batch",
     {"json": {"items": [_item(created_at="now")]}}, 422, "invalid_item"),
    ("created_at negative", "POST", "/api/memories/batch",
     {"json": {"items": [_item(created_at=-1)]}}, 422, "invalid_item"),
    ("deleted a string", "POST", "/api/memories/batch",
     {"json": {"items": [_item(deleted="yes")]}}, 422, "invalid_item"),
    ("tombstone with content", "POST", "/api/memories/batch",
     {"json": {"items": [_item(deleted=True)]}}, 422, "invalid_item"),
    ("one bad item among good", "POST", "/api/memories/batch",
     {"json": {"items": [_item(), _item(), _item(version="zz")]}}, 422, "invalid_item"),
    ("body over the limit", "POST", "/api/memories/batch",
     {"json_bytes": b'{"items": ["' + b"x" * (9 * 1024 * 1024) + b'"]}'}, 413,
     "payload_too_large"),
    ("query on push", "POST", "/api/memories/batch?x=1", {"json": {"items": [_item()]}}, 400,
     "invalid_parameter"),
    ("since garbage", "GET", "/api/changes?since=garbage", {}, 400, "invalid_parameter"),
    ("since bad seq", "GET", f"/api/changes?since={uuid.uuid4()}:-1", {}, 400,
     "invalid_parameter"),
    ("limit zero", "GET", "/api/changes?limit=0", {}, 400, "invalid_parameter"),
    ("limit negative", "GET", "/api/changes?limit=-5", {}, 400, "invalid_parameter"),
    ("limit a word", "GET", "/api/changes?limit=ten", {}, 400, "invalid_parameter"),
    ("limit too large", "GET", "/api/changes?limit=100000", {}, 400, "invalid_parameter"),
    ("limit twice", "GET", "/api/changes?limit=1&limit=2", {}, 400, "invalid_parameter"),
    ("unknown parameter", "GET", "/api/changes?sinec=x", {}, 400, "invalid_parameter"),
    ("after not an id", "GET", "/api/memories/digest?after=zzz", {}, 400, "invalid_parameter"),
    ("digest limit zero", "GET", "/api/memories/digest?limit=0", {}, 400, "invalid_parameter"),
    ("count with params", "GET", "/api/count?namespace=x", {}, 400, "invalid_parameter"),
    ("recall no query", "POST", "/api/recall", {"json": {}}, 422, "invalid_body"),
    ("recall limit huge", "POST", "/api/recall", {"json": {"query": "x", "limit": 10**6}}, 422,
     "invalid_body"),
    ("recall not json", "POST", "/api/recall", {"json_text": "nope"}, 400, "malformed_json"),
    ("unknown path", "GET", "/api/nothing", {}, 404, "not_found"),
    ("root path", "GET", "/", {}, 404, "not_found"),
    ("wrong method", "DELETE", "/api/count", {}, 405, "method_not_allowed"),
    ("put on batch", "PUT", "/api/memories/batch", {"json": {}}, 405, "method_not_allowed"),
    ("future protocol", "GET", "/api/count", {"headers": {"memory-hub-protocol": "2"}}, 400,
     "unsupported_protocol"),
    ("wrong secret", "GET", "/api/count",
     {"headers": {"authorization": "Bearer mah_000000000000_" + "b" * 43}}, 401, "unknown_key"),
    ("basic auth", "GET", "/api/count", {"headers": {"authorization": "Basic eDp5"}}, 401,
     "missing_key"),
    ("very long key", "GET", "/api/count", {"headers": {"authorization": "Bearer " + "k" * 8000}},
     401, "unknown_key"),
]  # fmt: skip


def _send(t: Tenant, method: str, path: str, extra: dict[str, Any]) -> httpx.Response:
    kwargs = dict(extra)
    headers = dict(kwargs.pop("headers", {}))
    if "json_text" in kwargs:
        kwargs["content"] = kwargs.pop("json_text").encode("utf-8", "surrogatepass")
        headers.setdefault("content-type", "application/json")
    if "json_bytes" in kwargs:
        kwargs["content"] = kwargs.pop("json_bytes")
        headers.setdefault("content-type", "application/json")
    return t.raw(method, path, headers=headers, **kwargs)


def test_bad_input_never_gets_a_5xx_and_changes_nothing(tenant: Tenant) -> None:
    """A battery of malformed requests: each gets its precise 4xx JSON error; data is unchanged."""
    tenant.client.push([memory("existing one"), forget(memory("existing two"))])
    before = _snapshot(tenant)
    failures = []
    for what, method, path, extra, status, code in BATTERY:
        response = _send(tenant, method, path, extra)
        try:
            error = response.json()["error"]
        except (ValueError, KeyError):
            failures.append(f"{what}: {response.status_code} without a JSON error body")
            continue
        if response.status_code != status or (code and error["code"] != code):
            failures.append(f"{what}: {response.status_code} {error} (wanted {status} {code})")
        elif not error["message"]:
            failures.append(f"{what}: empty message")
    assert failures == []
    assert _snapshot(tenant) == before


def test_an_invalid_item_is_named_by_index_and_field(tenant: Tenant) -> None:
    """422 ``invalid_item`` says which item and which field, and the client exposes both."""
    items = [memory("fine"), memory("also fine")]
    body_item = _item(version="not-a-version")
    response = _send(tenant, "POST", "/api/memories/batch",
                     {"json": {"items": [i.to_json() for i in items] + [body_item]}})  # fmt: skip
    error = response.json()["error"]
    assert error["details"] == {"index": 2, "field": "items[2].version"}
    assert "items[2].version" in error["message"]
    assert tenant.client.count().total == 0
    with pytest.raises(HubRejected) as info:
        tenant.client.push([memory("x" * 10, tags=("ok",)), memory("y", namespace="ok")] * 300)
    assert (info.value.status, info.value.code) == (422, "invalid_body")
    assert "at most 500" in info.value.hub_message


def test_recall_answers_ranked_hits_and_says_how_it_ranked_them(tenant: Tenant) -> None:
    """``POST /api/recall`` ranks the tenant's memories; the answer names ranking and embedder."""
    tenant.client.push([memory("The deploy key lives in vault"), memory("Lunch is at noon")])
    answer = tenant.client.recall("where is the deploy key", limit=5)
    assert answer.hits[0].content == "The deploy key lives in vault"
    assert answer.ranking in ("hybrid", "keyword")
    assert answer.embedder is not None
    assert (answer.embedder.name, answer.embedder.semantic) == ("hashing-ngrams-v1-384", False)


# -- OpenAPI -----------------------------------------------------------------------------------


def test_the_openapi_document_describes_exactly_the_served_routes(hub: HubProcess) -> None:
    """Every route the hub serves is in the served document, and nothing else is."""
    document = httpx.get(f"{hub.url}/openapi.json", timeout=5).json()
    assert document["openapi"] == "3.1.0"
    assert document == json.loads(json.dumps(openapi_document()))
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == {(route.method, route.path) for route in ROUTES}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            assert ("security" in operation) == path.startswith("/api/"), (method, path)
    jsonschema.Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})


def _validate(document: dict[str, Any], schema: str, instance: Any) -> None:
    jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    ).validate(instance)


def test_real_answers_match_the_openapi_schemas(hub: HubProcess, tenant: Tenant) -> None:
    """Answers of a running hub, successes and errors, validate against the served schemas."""
    document = openapi_document()
    item = memory("schema check", tags=("t",), metadata={"n": 1})
    push = tenant.raw("POST", "/api/memories/batch", json={"items": [item.to_json()]})
    _validate(document, "PushRequest", {"items": [item.to_json()]})
    _validate(document, "PushResponse", push.json())
    _validate(document, "ChangesPage", tenant.raw("GET", "/api/changes").json())
    _validate(document, "DigestPage", tenant.raw("GET", "/api/memories/digest").json())
    _validate(document, "Counts", tenant.raw("GET", "/api/count").json())
    _validate(document, "AuthInfo", tenant.raw("GET", "/api/auth-check").json())
    _validate(document, "Health", httpx.get(f"{hub.url}/healthz", timeout=5).json())
    _validate(
        document, "RecallResponse", tenant.raw("POST", "/api/recall", json={"query": "q"}).json()
    )
    for response in (
        tenant.raw("GET", "/api/changes?limit=0"),
        tenant.raw("POST", "/api/recall", json={"query": "q", "limit": 0}),
        httpx.get(f"{hub.url}/api/count", timeout=5),
    ):
        assert response.status_code >= 400
        _validate(document, "Error", response.json())


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Property-based requests to every route of ``/openapi.json`` (schemathesis, fixed seed):
    never a 5xx, and every answer conforms to the document, on each engine."""
    key = hub.add_key(f"fuzz-{uuid.uuid4().hex[:8]}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{hub.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "30",
            "--seed",
            "1",
        ],
        cwd=tmp_path,  # its example database stays out of the repository
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"(\d+) generated, \1 passed", result.stdout), result.stdout[-2000:]
