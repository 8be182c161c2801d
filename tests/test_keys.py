"""Key-addressed memories: upsert in place, get and forget by key, sync convergence.

Everything runs on real SQLite files, through MemorySystem and
AsyncMemorySystem; the convergence tests use a real hub process on loopback
and two replicas that write the same key without having seen each other.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import attrs
import pytest
from hub_fixtures import HubProcess, fast_remote, memory, wait_until

from actors import AsyncMemorySystem, InvalidMemory, MemoryNotFound, MemorySystem
from actors._shapes import ShapeError
from actors.model import keyed_memory_id
from actors.server import memory_forget, memory_get, memory_store
from actors.system import Config
from actors.wire import WireMemory

# The hub tests use conftest's module-scoped ``hub``: one hub process per engine.


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT id, namespace, key, content, tags, metadata, deleted FROM memories ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


# -- upsert in place ---------------------------------------------------------------------


def test_a_key_is_replaced_in_place_and_keeps_its_id(system: MemorySystem) -> None:
    """Content, tags and metadata are replaced (tags not merged); id and created_at stay."""
    first = system.store(
        "editor is vim", key="editor", namespace="users/alice", tags=["a"], metadata={"v": 1}
    )
    assert (first.key, first.replaced, first.duplicate) == ("editor", False, False)
    assert first.id == keyed_memory_id("users/alice", "editor")
    before = system.get(key="editor", namespace="users/alice")
    time.sleep(0.002)  # a later millisecond, so updated_at visibly moves

    second = system.store(
        "editor is helix", key="editor", namespace="users/alice", tags=["b"], metadata={"v": 2}
    )
    assert (second.id, second.replaced, second.tags) == (first.id, True, ("b",))
    after = system.get(key="editor", namespace="users/alice")
    assert (after.content, after.tags, after.metadata, after.key) == (
        "editor is helix",
        ("b",),
        {"v": 2},
        "editor",
    )
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert after.version > before.version
    assert system.count().total == 1


def test_keyed_memories_take_no_part_in_content_dedup(system: MemorySystem) -> None:
    """Two keys may hold the same text; an unkeyed store of it is its own memory."""
    a = system.store("same words", key="a")
    b = system.store("same words", key="b")
    plain = system.store("same words")
    again = system.store("same words", tags=["x"])
    assert len({a.id, b.id, plain.id}) == 3
    assert (again.id, again.duplicate) == (plain.id, True)
    # A keyed store never merges tags into the unkeyed twin, nor the reverse.
    assert system.get(a.id).tags == ()
    assert system.count().total == 3


def test_forget_by_key_then_store_again_revives_the_same_id(system: MemorySystem) -> None:
    """A forgotten key reads as not found (naming the key); storing it again starts a new life."""
    first = system.store("temporary", key="k", namespace="scratch")
    gone = system.forget(key="k", namespace="scratch")
    assert (gone.id, gone.forgotten, gone.already_forgotten) == (first.id, True, False)
    with pytest.raises(MemoryNotFound, match=r"\(key 'k' in namespace 'scratch'\) was forgotten"):
        system.get(key="k", namespace="scratch")
    with pytest.raises(MemoryNotFound, match=r"no memory has key 'other' in namespace 'scratch'"):
        system.forget(key="other", namespace="scratch")
    revived = system.store("back again", key="k", namespace="scratch")
    assert (revived.id, revived.replaced) == (first.id, False)
    assert system.get(first.id).content == "back again"


def test_search_fields_feed_keyword_recall(system: MemorySystem) -> None:
    """The chosen metadata fields become recall text; other fields do not."""
    value = {"title": "Blue whale", "body": {"text": "the largest animal"}, "secret": "zebra"}
    receipt = system.store(None, metadata=value, key="whale", search_fields=["title", "body.text"])
    stored = system.get(receipt.id)
    assert stored.content == "Blue whale\nthe largest animal"
    assert stored.metadata == value
    assert [hit.id for hit in system.recall("largest").hits] == [receipt.id]
    assert system.recall("zebra").hits == ()
    # Content and fields together; a missing path adds nothing.
    both = system.store("note:", metadata={"n": 3}, search_fields=["n", "missing.path"])
    assert system.get(both.id).content == "note:\n3"


def test_lists_run_newest_first_by_creation_with_keyed_ids_in_between(
    system: MemorySystem,
) -> None:
    """A keyed id carries no time, yet lists and pages keep creation order."""
    ids = []
    for i in range(7):
        receipt = system.store(f"item {i}", key=f"k{i}") if i % 2 else system.store(f"item {i}")
        ids.append(receipt.id)
        time.sleep(0.002)
    seen: list[str] = []
    before = None
    while True:
        page = system.list(limit=3, before=before)
        seen += [m.id for m in page.memories]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == ids[::-1]
    with pytest.raises(InvalidMemory, match="before: no memory has id"):
        system.list(before="01900000-0000-7000-8000-000000000000")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": "x", "key": ""}, "key is empty"),
        ({"content": "x", "key": "k" * 513}, "key is 513 characters; the limit is 512"),
        ({"content": "x", "key": "a\nb"}, "contains a control character at position 1"),
        ({"content": "x", "key": 7}, "key must be a string, not int"),
        ({"content": "x", "key": "\ud800"}, "key is not valid UTF-8"),
        ({"content": None, "key": "k"}, "content must be a string, not NoneType"),
        (
            {"content": None, "metadata": {"a": ""}, "search_fields": ["a"]},
            "no content given and the search_fields hold no text",
        ),
        ({"content": "x", "search_fields": "title"}, "must be a list of dotted metadata paths"),
        ({"content": "x", "search_fields": ["a..b"]}, "'a..b' is not a dotted metadata path"),
        ({"content": "x", "metadata": [1], "key": "k"}, "metadata must be a JSON object"),
    ],
)
def test_bad_keyed_stores_are_refused_and_store_nothing(
    system: MemorySystem, kwargs: dict[str, object], message: str
) -> None:
    """Each bad argument names itself; the file is unchanged."""
    system.store("kept", key="kept")
    before = _rows(system.path)
    with pytest.raises(InvalidMemory, match=message):
        system.store(**kwargs)  # type: ignore[arg-type]
    assert _rows(system.path) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "name the memory: give its id, or a key"),
        ({"memory_id": keyed_memory_id("default", "k"), "key": "k"}, "either an id or a key"),
        (
            {"memory_id": keyed_memory_id("default", "k"), "namespace": "default"},
            "namespace names a memory only with a key",
        ),
        ({"key": "k", "namespace": "bad namespace"}, "namespace 'bad namespace' is invalid"),
    ],
)
def test_get_and_forget_need_exactly_one_address(
    system: MemorySystem, kwargs: dict[str, str], message: str
) -> None:
    """An id, or a key with its namespace: anything else is a precise error."""
    system.store("kept", key="k")
    for verb in (system.get, system.forget):
        with pytest.raises(InvalidMemory, match=message):
            verb(**kwargs)  # type: ignore[operator]
    assert system.get(key="k").content == "kept"


# -- the async facade and the MCP tools ------------------------------------------------------


def test_64_tasks_upserting_shared_keys_end_in_an_exact_state(db_path: Path) -> None:
    """Rounds of 64 concurrent upserts on 8 shared keys and 64 own keys: exact final state."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            for round_ in range(3):
                receipts = await asyncio.gather(
                    *(
                        memory.store(f"r{round_} task {i}", key=f"shared-{i % 8}", namespace="ns")
                        for i in range(64)
                    ),
                    *(
                        memory.store(f"r{round_} own {i}", key=f"own-{i}", namespace="ns")
                        for i in range(64)
                    ),
                )
                assert len({r.id for r in receipts}) == 8 + 64
            counts = await memory.count(namespace="ns")
            assert counts.total == 8 + 64
            for k in range(8):
                shared = await memory.get(key=f"shared-{k}", namespace="ns")
                assert shared.content in {f"r2 task {i}" for i in range(k, 64, 8)}
            for i in range(64):
                own = await memory.get(key=f"own-{i}", namespace="ns")
                assert own.content == f"r2 own {i}"

    asyncio.run(main())


def test_the_mcp_tools_store_get_and_forget_by_key(system: MemorySystem) -> None:
    """memory_store(key=...) upserts; memory_get/memory_forget accept key and namespace."""

    async def main() -> None:
        memory = AsyncMemorySystem(system)
        first = await memory_store(memory, "uses tabs", key="indent", namespace="style")
        second = await memory_store(memory, "uses spaces", key="indent", namespace="style")
        assert first.structured_content is not None
        assert second.structured_content is not None
        assert second.structured_content["id"] == first.structured_content["id"]
        assert second.structured_content["replaced"] is True
        assert "key 'indent', replaced" in second.content[0].text  # type: ignore[union-attr]
        got = await memory_get(memory, key="indent", namespace="style")
        assert got.structured_content is not None
        assert got.structured_content["content"] == "uses spaces"
        assert got.structured_content["key"] == "indent"
        gone = await memory_forget(memory, key="indent", namespace="style")
        assert gone.structured_content == {
            "id": first.structured_content["id"],
            "forgotten": True,
            "already_forgotten": False,
        }

    asyncio.run(main())


# -- the wire and the hub ------------------------------------------------------------------


def test_the_wire_checks_that_a_keyed_id_matches_its_key() -> None:
    """A keyed record round-trips; an id that is not the key's UUIDv5 is refused."""
    keyed = attrs.evolve(memory("v", id=keyed_memory_id("default", "k")), key="k")
    data = keyed.to_json()
    assert data["key"] == "k"
    assert WireMemory.parse(data) == keyed
    assert "key" not in memory("plain").to_json()
    with pytest.raises(ShapeError, match=r"id: does not match key"):
        WireMemory.parse({**data, "key": "other"})
    with pytest.raises(ShapeError, match=r"key: key is empty"):
        WireMemory.parse({**data, "key": ""})


def test_two_replicas_writing_one_key_converge_on_one_memory(
    hub: HubProcess, tmp_path: Path
) -> None:
    """Written on both sides before either syncs: one id, last writer's whole state, no twin."""
    key = hub.add_key("keys-converge")
    offline = Config()
    # Both write first, offline, so neither has seen the other's version.
    with MemorySystem.open(tmp_path / "a.db", config=offline) as a:
        a.store("theme is light", key="theme", namespace="prefs", tags=["from-a"])
        a.store("shared text", key="a-only", namespace="prefs")
    time.sleep(0.005)
    with MemorySystem.open(tmp_path / "b.db", config=offline) as b:
        later = b.store("theme is dark", key="theme", namespace="prefs", tags=["from-b"])
        b.store("shared text", namespace="prefs")  # unkeyed twin of a keyed text
    online = Config(remote=fast_remote(hub.url, key))
    with (
        MemorySystem.open(tmp_path / "a.db", config=online) as a,
        MemorySystem.open(tmp_path / "b.db", config=online) as b,
    ):

        def settled() -> bool:
            views = []
            for system in (a, b):
                counts = system.count()
                if counts.outbox_pending or counts.total != 3:
                    return False
                views.append(
                    sorted(
                        (m.id, m.key, m.content, m.tags)
                        for m in system.list(namespace="prefs").memories
                    )
                )
            return views[0] == views[1]

        wait_until(settled, "both replicas hold the same three memories")
        for system in (a, b):
            theme = system.get(key="theme", namespace="prefs")
            # Last writer wins whole: B's content and B's tags only, no union.
            assert (theme.id, theme.content, theme.tags) == (
                later.id,
                "theme is dark",
                ("from-b",),
            )
        with hub.client(key) as client:
            assert client.count().total == 3


def test_a_keyed_push_is_never_a_duplicate_on_the_hub(hub: HubProcess) -> None:
    """The hub applies a keyed memory whose text an unkeyed one already holds."""
    key = hub.add_key("keys-dedup")
    plain = memory("the same text")
    keyed = attrs.evolve(memory("the same text", id=keyed_memory_id("default", "k")), key="k")
    with hub.client(key) as client:
        assert [r.status for r in client.push([plain, keyed]).results] == ["applied", "applied"]
        pulled = {m.id: m for m in (c.memory for c in client.changes().changes)}
        assert pulled[keyed.id].key == "k"
        assert pulled[plain.id].key is None
        assert json.loads(json.dumps(pulled[keyed.id].to_json()))["key"] == "k"
