"""Hierarchical namespaces: the segment rule on store, and prefix filters on list, recall, count.

Everything runs on a real SQLite file: through MemorySystem and
AsyncMemorySystem, and (for the property test) through LocalDatabase, whose
SQL range filter must equal :func:`actors.model.matches_namespace_prefix`.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import AsyncMemorySystem, InvalidMemory, MemorySystem
from actors.local_db import LocalDatabase
from actors.messages import StoreMemory
from actors.migrations import migrate
from actors.model import (
    content_hash,
    matches_namespace_prefix,
    normalize_namespace,
    normalize_namespace_prefix,
)

#: A tree with a sibling that shares the prefix's characters but not its segment.
TREE = {
    "users/alice": "alice likes tea",
    "users/alice/prefs": "alice prefers dark mode tea",
    "users/alice/prefs/ui/deep": "alice deep tea setting",
    "users/alicex": "alicex is another user with tea",
    "users/alice-x": "alice-x sorts before the slash tea",
    "users/bob": "bob likes tea",
    "users": "the users root tea",
}
ALICE = {"users/alice", "users/alice/prefs", "users/alice/prefs/ui/deep"}


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, namespace, content FROM memories ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def tree(system: MemorySystem) -> MemorySystem:
    """The system with one memory in each namespace of TREE."""
    for namespace, content in TREE.items():
        system.store(content, namespace=namespace)
    return system


def test_list_by_prefix_keeps_the_namespace_and_those_below_it(tree: MemorySystem) -> None:
    """``users/alice`` lists itself and its descendants at any depth, never ``users/alicex``."""
    page = tree.list(namespace_prefix="users/alice")
    assert {m.namespace for m in page.memories} == ALICE
    assert {m.namespace for m in tree.list(namespace_prefix="users").memories} == set(TREE)
    deep = tree.list(namespace_prefix="users/alice/prefs/ui")
    assert [m.namespace for m in deep.memories] == ["users/alice/prefs/ui/deep"]
    assert tree.list(namespace_prefix="users/ali").memories == ()


def test_list_by_prefix_pages_like_any_list(tree: MemorySystem) -> None:
    """``next_before`` continues within the prefix: two pages give the three of alice once."""
    first = tree.list(namespace_prefix="users/alice", limit=2)
    assert first.next_before is not None
    rest = tree.list(namespace_prefix="users/alice", limit=2, before=first.next_before)
    assert rest.next_before is None
    seen = [m.namespace for m in (*first.memories, *rest.memories)]
    assert sorted(seen) == sorted(ALICE)


def test_recall_by_prefix_searches_only_the_subtree(tree: MemorySystem) -> None:
    """Every word matches every memory; the prefix alone decides which come back."""
    result = tree.recall("tea", namespace_prefix="users/alice", limit=20)
    assert result.status == "local"
    assert {h.namespace for h in result.hits} == ALICE


def test_count_by_prefix_counts_each_namespace_of_the_subtree(tree: MemorySystem) -> None:
    """``by_namespace`` holds the subtree's namespaces only, and the total is their sum."""
    counts = tree.count(namespace_prefix="users/alice")
    assert counts.by_namespace == dict.fromkeys(sorted(ALICE), 1)
    assert counts.total == 3


def test_prefix_and_namespace_combine_as_both_filters(tree: MemorySystem) -> None:
    """Given both, a memory must be in ``namespace`` and below ``namespace_prefix``."""
    page = tree.list(namespace="users/alice/prefs", namespace_prefix="users/alice")
    assert [m.namespace for m in page.memories] == ["users/alice/prefs"]
    assert tree.list(namespace="users/bob", namespace_prefix="users/alice").memories == ()


def test_async_facade_filters_by_prefix_the_same_way(db_path: Path) -> None:
    """AsyncMemorySystem's list, recall and count take the same prefix with the same answers."""

    async def main() -> None:
        async with AsyncMemorySystem.open(db_path) as memory:
            for namespace, content in TREE.items():
                await memory.store(content, namespace=namespace)
            page = await memory.list(namespace_prefix="users/alice")
            assert {m.namespace for m in page.memories} == ALICE
            found = await memory.recall("tea", namespace_prefix="users/alice", limit=20)
            assert {h.namespace for h in found.hits} == ALICE
            counts = await memory.count(namespace_prefix="users/alice")
            assert counts.total == 3
            with pytest.raises(InvalidMemory, match="empty segment"):
                await memory.store("x", namespace="users//alice")

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ("users//alice", r"'users//alice' has an empty segment \('//'\)"),
        ("users/alice/", r"'users/alice/' ends with '/'"),
        ("/users/alice", r"'/users/alice' is invalid: .*starting with a letter or digit"),
        ("a" * 65, r"is invalid: use 1-64 characters"),
        (7, r"namespace must be a string, not int"),
    ],
)
def test_a_store_in_a_bad_namespace_is_refused_and_stores_nothing(
    system: MemorySystem, db_path: Path, namespace: object, message: str
) -> None:
    """Each bad namespace names what is wrong; the file is unchanged."""
    system.store("keep me", namespace="users/alice")
    before = _rows(db_path)
    with pytest.raises(InvalidMemory, match=message):
        system.store("refused", namespace=namespace)  # type: ignore[arg-type]
    assert _rows(db_path) == before


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("users//alice", r"namespace_prefix 'users//alice' has an empty segment"),
        ("users/", r"namespace_prefix 'users/' ends with '/'"),
        ("", r"namespace_prefix '' is invalid"),
        ("users/*", r"namespace_prefix 'users/\*' is invalid"),
        (["users"], r"namespace_prefix must be a string, not list"),
    ],
)
def test_a_bad_prefix_is_refused_by_every_verb(
    system: MemorySystem, prefix: object, message: str
) -> None:
    """list, recall and count refuse the same bad prefix with the same message."""
    with pytest.raises(InvalidMemory, match=message):
        system.list(namespace_prefix=prefix)  # type: ignore[arg-type]
    with pytest.raises(InvalidMemory, match=message):
        system.recall("x", namespace_prefix=prefix)  # type: ignore[arg-type]
    with pytest.raises(InvalidMemory, match=message):
        system.count(namespace_prefix=prefix)  # type: ignore[arg-type]


def test_a_namespace_stored_before_the_rule_still_reads_lists_and_counts(
    system: MemorySystem, db_path: Path
) -> None:
    """``a//b`` written by an older version (or synced in) stays reachable by every read."""
    system.store("written before the segment rule", namespace="legacy/old")
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE memories SET namespace = 'legacy//old'")
    conn.close()
    assert [m.namespace for m in system.list(namespace="legacy//old").memories] == ["legacy//old"]
    assert system.count(namespace_prefix="legacy").by_namespace == {"legacy//old": 1}
    hits = system.recall("segment", namespace="legacy//old").hits
    assert [h.namespace for h in hits] == ["legacy//old"]
    memory = system.list().memories[0]
    assert system.get(memory.id).namespace == "legacy//old"


# -- the SQL range equals the Python rule -----------------------------------------------------

#: Characters on both sides of '/' (0x2f) in byte order: '-' '.' before it, '0' right after.
_CHARS = "a0.-_:"


def _paths(min_segment: int) -> st.SearchStrategy[str]:
    """Names that start with a letter or digit; ``min_segment=0`` allows old ``a//b`` names."""
    head = st.tuples(st.sampled_from("a0"), st.text(alphabet=_CHARS, max_size=2)).map("".join)
    tail = st.lists(st.text(alphabet=_CHARS, min_size=min_segment, max_size=3), max_size=3)
    return st.tuples(head, tail).map(lambda parts: "/".join([parts[0], *parts[1]]))


def _valid_prefix(name: str) -> bool:
    try:
        normalize_namespace_prefix(name)
    except InvalidMemory:
        return False
    return True


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDatabase]:
    """One LocalDatabase for every example: the reference reads whatever it holds."""
    path = str(tmp_path_factory.mktemp("ns") / "memory.db")
    migrate(path, now=lambda: 1_800_000_000.0)
    ids = itertools.count()
    db = LocalDatabase.open(
        path,
        new_id=lambda: f"0190a2b3-c4d5-7e6f-8a9b-{next(ids):012x}",
        wall_time=lambda: 1_800_000_000.0,
        monotonic=lambda: 0.0,
        jitter=lambda: 0.5,
        busy_timeout=5.0,
    )
    yield db
    db.close()


_counter = itertools.count()


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(_paths(0), min_size=1, max_size=6),
    prefix=_paths(1),
)
def test_the_sql_prefix_filter_equals_the_python_rule(
    database: LocalDatabase, names: list[str], prefix: str
) -> None:
    """Over random namespaces (old ``a//b`` ones included), SQL and Python pick the same."""
    assert all(normalize_namespace(n) == n for n in names)
    assert normalize_namespace_prefix(prefix) == prefix
    writes = []
    for name in names:
        text = f"memory {next(_counter)}"
        writes.append(
            StoreMemory(pykka.ThreadingFuture(), text, content_hash(text), name, (), "{}")
        )
    database.commit_writes(writes)
    stored = {n for (n,) in database.conn.execute("SELECT DISTINCT namespace FROM memories")}
    expected = {n for n in stored if matches_namespace_prefix(n, prefix)}
    counted = database.count(namespace=None, tags=(), namespace_prefix=prefix).by_namespace
    assert set(counted) == expected
    for probe in (prefix, *(n for n in names if _valid_prefix(n))):
        listed = database.list_memories(
            namespace=None, tags=(), before=None, limit=200, namespace_prefix=probe
        )
        want = {n for n in stored if matches_namespace_prefix(n, probe)}
        assert {m.namespace for m in listed.memories} <= want
        got = database.count(namespace=None, tags=(), namespace_prefix=probe).by_namespace
        assert set(got) == want
