"""The MemorySystem facade on a real SQLite file: the behaviour library users rely on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from actors import (
    InvalidMemory,
    MemoryNotFound,
    MemorySystem,
    SystemClosed,
)
from actors.migrations import LATEST_VERSION


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        sql = "SELECT id, content, tags, deleted FROM memories ORDER BY id"
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_store_returns_a_committed_receipt_and_get_reads_it_back(system: MemorySystem) -> None:
    """A stored memory is readable at once with everything that was given."""
    receipt = system.store("The deploy key lives in vault", tags=["Ops"], metadata={"by": "a"})
    assert receipt.duplicate is False
    assert receipt.sync_state == "committed"
    assert receipt.tags == ("ops",)
    memory = system.get(receipt.id)
    assert memory.content == "The deploy key lives in vault"
    assert memory.metadata == {"by": "a"}
    assert memory.namespace == "default"
    assert memory.deleted is False


def test_identical_content_answers_the_existing_id_and_merges_tags(system: MemorySystem) -> None:
    """Dedup is per namespace, by normalised content."""
    first = system.store("same text", tags=["a"])
    second = system.store("  same text\r\n", tags=["b"])
    other_ns = system.store("same text", namespace="other")
    assert second.id == first.id
    assert second.duplicate is True
    assert second.tags == ("a", "b")
    assert other_ns.id != first.id
    assert system.count().by_namespace == {"default": 1, "other": 1}


def test_recall_ranks_keyword_matches_with_snippets_and_filters(system: MemorySystem) -> None:
    """FTS5 finds words in any form (porter stemming), ranks, and honours filters."""
    a = system.store("Postgres connection pooling is configured with pgbouncer", tags=["db"])
    system.store("The frontend uses React with Vite", tags=["web"])
    b = system.store("Connections to Postgres time out after 30 seconds", namespace="infra")
    result = system.recall("postgres connections")
    assert result.status == "local"
    assert {hit.id for hit in result.hits} == {a.id, b.id}
    assert all(hit.source == "local" for hit in result.hits)
    assert any("[" in hit.snippet for hit in result.hits)
    assert [h.id for h in system.recall("postgres", namespace="infra").hits] == [b.id]
    assert [h.id for h in system.recall("postgres", tags=["DB"]).hits] == [a.id]
    assert system.recall("kubernetes").hits == ()


def test_recall_treats_fts_syntax_in_queries_as_plain_words(system: MemorySystem) -> None:
    """Quotes, operators and stars from an agent never raise a syntax error."""
    system.store("alpha beta gamma")
    for query in ['"unbalanced', "alpha AND (", "NEAR(alpha", "*", "beta* OR", "-alpha"]:
        result = system.recall(query)
        assert result.status == "local"
    assert system.recall("?!").reason.startswith("the query has no searchable words")


def test_forget_tombstones_erases_content_and_keeps_the_id(
    system: MemorySystem, db_path: Path
) -> None:
    """A forgotten memory vanishes from reads and search; a tombstone row remains to sync."""
    receipt = system.store("secret to forget")
    result = system.forget(receipt.id)
    assert (result.forgotten, result.already_forgotten) == (True, False)
    assert system.forget(receipt.id).already_forgotten is True
    with pytest.raises(MemoryNotFound, match="was forgotten"):
        system.get(receipt.id)
    assert system.recall("secret").hits == ()
    counts = system.count()
    assert (counts.total, counts.forgotten, counts.outbox_pending) == (0, 1, 2)
    assert _rows(db_path) == [(receipt.id, "", "[]", 1)]
    # The same content may be stored again as a new memory.
    assert system.store("secret to forget").id != receipt.id


def test_list_pages_most_recent_first(system: MemorySystem) -> None:
    """Pages follow each other with next_before and never repeat a memory."""
    ids = [system.store(f"note number {i}", tags=["n"] if i % 2 else None).id for i in range(7)]
    seen: list[str] = []
    before = None
    while True:
        page = system.list(limit=3, before=before)
        seen.extend(m.id for m in page.memories)
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == list(reversed(ids))
    assert [m.id for m in system.list(tags=["n"]).memories] == [ids[5], ids[3], ids[1]]


def test_count_reports_diagnostics(system: MemorySystem, db_path: Path) -> None:
    """Count says where the data is, its schema, the outbox and that sync is off."""
    system.store("one", tags=["x"])
    system.store("two")
    counts = system.count()
    assert counts.total == 2
    assert counts.schema_version == LATEST_VERSION
    assert counts.database == str(db_path)
    assert counts.dead_letters == 0
    assert counts.sync.startswith("local-only")
    assert system.count(tags=["x"]).total == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.store(""), InvalidMemory, "empty"),
        (lambda s: s.store("x", tags="oops"), InvalidMemory, "list of strings"),
        (lambda s: s.store("x", tags=[3]), InvalidMemory, "must be a string"),
        (lambda s: s.store("x", metadata=[1]), InvalidMemory, "JSON object"),
        (lambda s: s.store("\ud800"), InvalidMemory, "UTF-8"),
        (lambda s: s.store("x" * 70_000), InvalidMemory, "limit"),
        (lambda s: s.get("0190a2b3-c4d5-7e6f-8a9b-0c1d2e3f4a5b"), MemoryNotFound, "no memory"),
        (lambda s: s.forget("0190a2b3-c4d5-7e6f-8a9b-0c1d2e3f4a5b"), MemoryNotFound, "no memory"),
        (lambda s: s.get("12"), InvalidMemory, "not a memory id"),
        (lambda s: s.recall("x", limit=0), InvalidMemory, "between"),
        (lambda s: s.list(limit=10_000), InvalidMemory, "between"),
        (lambda s: s.list(before="zz"), InvalidMemory, "not a memory id"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    system: MemorySystem, db_path: Path, call: object, error: type[Exception], message: str
) -> None:
    """Each bad call raises its precise error; stored data stays byte-identical."""
    system.store("keep me", tags=["k"])
    before = _rows(db_path)
    with pytest.raises(error, match=message):
        call(system)  # type: ignore[operator]
    assert _rows(db_path) == before
    assert system.count().total == 1


def test_a_closed_system_refuses_calls_and_closing_twice_is_harmless(db_path: Path) -> None:
    """close() is idempotent and later calls name the problem."""
    memory = MemorySystem.open(db_path)
    memory.store("before close")
    memory.close()
    memory.close()
    with pytest.raises(SystemClosed, match="closed"):
        memory.store("after close")
    with MemorySystem.open(db_path) as again:
        assert again.count().total == 1


def test_status_reports_each_actor(system: MemorySystem) -> None:
    """status() is the supervisor's view."""
    status = system.status()
    assert status["state"] == "ready"
    assert status["actors"]["store"]["status"] == "READY"


def test_default_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEMORY_ACTORS_DB overrides the platform data dir."""
    target = tmp_path / "env.db"
    monkeypatch.setenv("MEMORY_ACTORS_DB", str(target))
    with MemorySystem.open() as memory:
        memory.store("via env")
        assert memory.path == str(target)
    assert target.exists()
