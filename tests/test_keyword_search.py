"""Local keyword recall with a bounded cost: checked against FTS5's whole-query BM25.

A real SQLite file of a few hundred memories over a Zipf vocabulary, with the
module's thresholds made small, so that every path runs: queries of selective
words only, of common words only, and of both, with and without a namespace
filter. The reference is the plain statement the search replaces
(``MATCH 'a OR b' ORDER BY bm25``), run over every matching row.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors import keyword_search
from actors._sqlite import connect
from actors.bm25 import MARKED_COLUMNS, Bm25, Marked
from actors.local_db import LocalDatabase, _filters
from actors.messages import ForgetMemory, RetagMemory, StoreMemory
from actors.migrations import migrate
from actors.model import content_hash

VOCABULARY = [f"w{n}" for n in range(60)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
SELECTIVE = 20
WINDOW = 30


def _open(path: str, rng: random.Random) -> LocalDatabase:
    """A new file with reproducible ids."""
    migrate(path, now=time.time)
    counter = iter(range(10**9))
    return LocalDatabase.open(
        path,
        new_id=lambda: f"01900000-0000-7000-8000-{next(counter):012d}",
        wall_time=time.time,
        monotonic=time.monotonic,
        jitter=rng.random,
        synchronous="OFF",
    )


def _build(path: str) -> tuple[LocalDatabase, dict]:
    """400 memories in two namespaces; each memory's rowid → (namespace, its words)."""
    rng = random.Random(11)
    db = _open(path, rng)
    batch = []
    for n in range(400):
        words = rng.choices(VOCABULARY, WEIGHTS, k=rng.randint(3, 9))
        text = " ".join(words) + f" unique{n}"
        batch.append(
            StoreMemory(pykka.ThreadingFuture(), text, content_hash(text), f"ns{n % 2}", (), "{}")
        )
    db.commit_writes(batch)
    return db, _live_rows(db)


def _live_rows(db: LocalDatabase) -> dict[int, tuple[str, set[str]]]:
    return {
        rowid: (namespace, set(re.findall(r"\w+", content)))
        for rowid, namespace, content in db.conn.execute(
            "SELECT rowid, namespace, content FROM memories WHERE deleted = 0"
        )
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalDatabase, dict]]:
    db, rows = _build(str(tmp_path_factory.mktemp("fts") / "memory.db"))
    yield db, rows
    db.close()


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_search, "SELECTIVE_ROWS", SELECTIVE)
    monkeypatch.setattr(keyword_search, "COMMON_WINDOW", WINDOW)


def _exact(db: LocalDatabase, words: list[str], namespace: str | None) -> dict[int, float]:
    """Every matching row's BM25 for the whole query, from the one plain statement."""
    where, params = _filters(namespace, ())
    match = " OR ".join(f'"{word}"' for word in dict.fromkeys(words))
    rows = db.conn.execute(
        "SELECT memories_fts.rowid, bm25(memories_fts) FROM memories_fts "
        "JOIN memories m ON m.rowid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND m.deleted = 0{where}",
        [match, *params],
    ).fetchall()
    return dict(rows)


def _expected(
    exact: dict[int, float],
    rows: dict[int, tuple[str, set[str]]],
    words: list[str],
    namespace: str | None,
    limit: int,
) -> list[int]:
    """The documented rule, computed from first principles over the whole file.

    Selectivity is a word's count in the whole file; the window and the
    ranking apply to the rows the filter keeps (those in ``exact``).
    """
    holders = {w: {r for r in rows if w in rows[r][1]} for w in words}
    selective = {w for w in words if len(holders[w]) <= SELECTIVE}
    with_selective = set().union(*(holders[w] for w in selective)) & set(exact)
    only_common = set(exact) - with_selective
    # Only-common memories compete when no word is selective, or when fewer than
    # `limit` memories that pass the filter hold a selective word.
    consulted = not selective or len(with_selective) < limit
    window = sorted(only_common, reverse=True)[:WINDOW] if consulted else []
    candidates = with_selective | set(window)
    return sorted(candidates & set(exact), key=lambda r: (exact[r], -r))[:limit]


class CountingBm25(Bm25):
    """The real scorer, counting the queries it completed (to show its path ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.completed = 0

    def add_phrases(self, *args: Any, **kwargs: Any) -> dict[int, float]:
        self.completed += 1
        return super().add_phrases(*args, **kwargs)


@pytest.mark.usefixtures("small_thresholds")
@pytest.mark.parametrize("scorer", ["fts5", "cached counts"])
@pytest.mark.parametrize("seed", range(6))
def test_search_follows_its_rule_with_whole_query_scores(
    corpus: tuple[LocalDatabase, dict], seed: int, scorer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Selective words exact, common-only words a newest window if needed: ids, order, scores.

    With cached counts every mixed query has its common words scored in
    Python (the cost rule told to always prefer it): the same hits, to the bit.
    """
    db, rows = corpus
    bm25 = CountingBm25() if scorer == "cached counts" else None
    monkeypatch.setattr(keyword_search, "HOLDERS_PER_SCORED_ROW", 0)
    rng = random.Random(seed)
    kinds = {"selective only": 0, "common only": 0, "both": 0, "both, window": 0}
    for _ in range(40):
        words = rng.choices(VOCABULARY, WEIGHTS, k=rng.randint(1, 3))
        if rng.random() < 0.2:
            words.append(f"unique{rng.randrange(400)}")
        namespace = rng.choice([None, "ns1"])
        limit = rng.choice([1, 5, 10])
        where, params = _filters(namespace, ())
        hits = keyword_search.search(db.conn, " ".join(words), where, params, limit, None, bm25)
        exact = _exact(db, words, namespace)
        expected = _expected(exact, rows, list(dict.fromkeys(words)), namespace, limit)
        rowids = [
            db.conn.execute("SELECT rowid FROM memories WHERE id = ?", (hit.id,)).fetchone()[0]
            for hit in hits
        ]
        assert rowids == expected, words
        assert [hit.score for hit in hits] == [float(f"{-exact[r]:.6g}") for r in rowids]
        holders = [sum(1 for _, ws in rows.values() if w in ws) for w in words]
        common = sum(h > SELECTIVE for h in holders)
        kind = "common only" if common == len(words) else "both" if common else "selective only"
        if kind == "both":
            selective_holders = {
                r for r in exact if any(w in rows[r][1] and h <= SELECTIVE
                                        for w, h in zip(words, holders, strict=True))
            }  # fmt: skip
            kind = "both, window" if len(selective_holders) < limit else kind
        kinds[kind] += 1
    # The seeds are chosen so that every path ran.
    assert all(kinds.values()), kinds
    if bm25 is not None:
        assert bm25.completed > 0
        bm25.close()


def test_with_default_thresholds_a_small_file_is_searched_exactly(
    corpus: tuple[LocalDatabase, dict],
) -> None:
    """Below the thresholds every word is selective: the plain statement's top k, exactly."""
    db, _ = corpus
    for words in (["w0"], ["w0", "w1"], ["w3", "w40", "unique7"]):
        hits = keyword_search.search(db.conn, " ".join(words), "", [], 10)
        exact = _exact(db, words, None)
        top = sorted(exact, key=lambda r: (exact[r], -r))[:10]
        ids = [
            db.conn.execute("SELECT id FROM memories WHERE rowid = ?", (r,)).fetchone()[0]
            for r in top
        ]
        assert [hit.id for hit in hits] == ids


def test_user_text_is_never_fts5_syntax(corpus: tuple[LocalDatabase, dict]) -> None:
    """Operators, quotes and stars in a query are words or nothing, never syntax errors."""
    db, _ = corpus
    for query in ('w0 AND "w1', "NEAR(w0 w1)", "w0*", "-w0 ^w1", "(", '""'):
        keyword_search.search(db.conn, query, "", [], 5)
    assert keyword_search.search(db.conn, "?!", "", [], 5) == ()


def test_a_repeated_word_counts_once(corpus: tuple[LocalDatabase, dict]) -> None:
    """'w5 w5' ranks as 'w5' (the plain OR statement counted it twice)."""
    db, _ = corpus
    once = keyword_search.search(db.conn, "w5", "", [], 10)
    twice = keyword_search.search(db.conn, "w5 w5", "", [], 10)
    assert once == twice


@pytest.mark.usefixtures("small_thresholds")
def test_a_forgotten_memory_is_never_found_on_any_path(tmp_path: Path) -> None:
    """Without filters the search reads the index alone (no join to ``memories``): it
    relies on the index's triggers to unindex a forgotten memory. Forget a third of
    the file, the best-ranked first, and every path still follows the rule over the rest.
    """
    db, _ = _build(str(tmp_path / "memory.db"))
    try:
        queries = [["w0"], ["w0", "w1"], ["w30"], ["w2", "w45"], ["w1", "w7", "unique3"]]
        doomed = {
            hit.id
            for words in queries
            for hit in keyword_search.search(db.conn, " ".join(words), "", [], 5)
        }
        doomed |= {row[0] for row in db.conn.execute("SELECT id FROM memories WHERE rowid % 3 = 0")}
        db.commit_writes([ForgetMemory(pykka.ThreadingFuture(), memory_id) for memory_id in doomed])
        rows = _live_rows(db)
        assert len(rows) == 400 - len(doomed)
        for words in queries:
            hits = keyword_search.search(db.conn, " ".join(words), "", [], 10)
            assert not {hit.id for hit in hits} & doomed, words
            exact = _exact(db, words, None)
            expected = _expected(exact, rows, list(dict.fromkeys(words)), None, 10)
            ids = [
                db.conn.execute("SELECT id FROM memories WHERE rowid = ?", (r,)).fetchone()[0]
                for r in expected
            ]
            assert [hit.id for hit in hits] == ids, words
    finally:
        db.close()


def test_snippets_mark_the_query_words_of_each_cut_alone() -> None:
    """One Snippets table serves many cuts: each marks its own rows and query only."""
    cutter = keyword_search.Snippets()
    try:
        first = cutter.cut('"deploy" OR "hosts"', ["we deploy on friday", "two hosts down"])
        assert first == ["we [deploy] on friday", "two [hosts] down"]
        # Porter stems both sides, so "hosts" marks "host"; a row without a match is as stored.
        second = cutter.cut('"hosts"', ["one host up", "nothing here"])
        assert second == ["one [host] up", "nothing here"]
        assert cutter.cut('"friday"', []) == []
    finally:
        cutter.close()


# Words that stem ("deploying"), split in two tokens ("db_prod"), or sit in the
# tags column: every way FTS5 counts a term's instances and a row's length.
_RICH_WORDS = ["deploy", "deploying", "deployed", "db_prod", "db", "prod", "alpha", "beta", "gamma"]


def _rich_file(path: str, count: int, seed: int) -> LocalDatabase:
    rng = random.Random(seed)
    db = _open(path, rng)
    db.commit_writes([_rich_memory(rng, n) for n in range(count)])
    return db


def _rich_memory(rng: random.Random, n: int) -> StoreMemory:
    words = rng.choices(_RICH_WORDS, k=rng.randint(1, 12))
    text = " ".join(words) + f" rare{n % 50} note{n}"
    tags = tuple(sorted(set(rng.choices(["alpha", "prod", "deploys"], k=rng.randint(0, 2)))))
    return StoreMemory(pykka.ThreadingFuture(), text, content_hash(text), "default", tags, "{}")


def _fts5_scores(conn: sqlite3.Connection, match: str) -> dict[int, float]:
    return dict(
        conn.execute(
            "SELECT rowid, bm25(memories_fts) FROM memories_fts WHERE memories_fts MATCH ?",
            (match,),
        ).fetchall()
    )


def _marked(conn: sqlite3.Connection, match: str) -> dict[int, Marked]:
    return {
        rowid: (sizes, content, tags)
        for rowid, sizes, content, tags in conn.execute(
            f"SELECT rowid, {MARKED_COLUMNS} FROM memories_fts WHERE memories_fts MATCH ?",
            (match,),
        )
    }


def _assert_bm25_is_fts5s(conn: sqlite3.Connection, bm25: Bm25, rng: random.Random) -> int:
    """For random splits of a query into leading and following phrases: the scores
    completed from the leading phrases' ``bm25()`` equal ``bm25()`` of the whole, exactly."""
    compared = 0
    for _ in range(25):
        words = list(dict.fromkeys(rng.choices([*_RICH_WORDS, "rare3", "note7"], k=4)))
        if len(words) < 2:
            continue
        cut = rng.randint(1, len(words) - 1)
        leading = [f'"{w}"' for w in words[:cut]]
        following = [f'"{w}"' for w in words[cut:]]
        first = "(" + " OR ".join(leading) + ")"
        whole = _fts5_scores(conn, f"{first} AND (" + " OR ".join(following) + ")")
        partial = _fts5_scores(conn, first)
        marked = _marked(conn, f"{first} AND (" + " OR ".join(following) + ")")
        ours = bm25.add_phrases(conn, {r: partial[r] for r in whole}, following, marked)
        # Equal to the last bit, not approximately: the ranking breaks ties on it.
        assert ours == whole, words
        compared += len(whole)
    return compared


def test_scores_completed_from_cached_counts_are_fts5s_own(tmp_path: Path) -> None:
    db = _rich_file(str(tmp_path / "memory.db"), 600, seed=3)
    bm25 = Bm25()
    try:
        assert _assert_bm25_is_fts5s(db.conn, bm25, random.Random(1)) > 1000
    finally:
        bm25.close()
        db.close()


def test_a_stale_count_is_impossible_after_any_write(tmp_path: Path) -> None:
    """Counts cached, then the file changes in every way it can: stores (new
    holders, longer rows), forgets, retags, a write by another connection on
    the same file. After each, the completed scores are still FTS5's own."""
    path = str(tmp_path / "memory.db")
    db = _rich_file(path, 300, seed=5)
    bm25 = Bm25()
    rng = random.Random(2)
    try:
        _assert_bm25_is_fts5s(db.conn, bm25, rng)
        before = bm25.count(db.conn, '"deploy"')

        db.commit_writes([_rich_memory(rng, n) for n in range(300, 420)])
        assert bm25.count(db.conn, '"deploy"') > before
        _assert_bm25_is_fts5s(db.conn, bm25, rng)

        ids = [row[0] for row in db.conn.execute("SELECT id FROM memories WHERE rowid % 4 = 0")]
        db.commit_writes([ForgetMemory(pykka.ThreadingFuture(), i) for i in ids])
        _assert_bm25_is_fts5s(db.conn, bm25, rng)

        (some,) = db.conn.execute("SELECT id FROM memories WHERE deleted = 0 LIMIT 1").fetchone()
        db.commit_writes([RetagMemory(pykka.ThreadingFuture(), some, ("deploy", "db_prod"))])
        _assert_bm25_is_fts5s(db.conn, bm25, rng)

        # Another connection's commit: this one's total_changes does not move.
        other = connect(path)
        try:
            changes = db.conn.total_changes
            other.execute(
                "DELETE FROM memories WHERE rowid IN (SELECT rowid FROM memories LIMIT 40)"
            )
            assert db.conn.total_changes == changes
        finally:
            other.close()
        _assert_bm25_is_fts5s(db.conn, bm25, rng)
    finally:
        bm25.close()
        db.close()


def test_inside_a_transaction_fts5_scores_and_the_cache_is_not_used(tmp_path: Path) -> None:
    """FTS5's totals lag its pending writes inside a transaction, and a rollback
    would undo what was counted: the search then scores with FTS5 alone."""
    db = _rich_file(str(tmp_path / "memory.db"), 200, seed=9)
    bm25 = Bm25()
    try:
        db.conn.execute("BEGIN")
        assert not bm25.usable(db.conn)
        db.conn.execute("ROLLBACK")
        assert bm25.usable(db.conn)
    finally:
        bm25.close()
        db.close()


@pytest.mark.usefixtures("small_thresholds")
def test_common_words_are_counted_only_when_a_second_recall_wants_them_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count costs what FTS5's scoring of the word costs: the first mixed query after a
    write lets FTS5 score, the next one with the file unchanged counts and completes the
    scores here. Either way the hits are the same."""
    monkeypatch.setattr(keyword_search, "HOLDERS_PER_SCORED_ROW", 0)
    db = _rich_file(str(tmp_path / "memory.db"), 600, seed=4)
    bm25 = CountingBm25()
    rng = random.Random(8)
    try:

        def recall() -> tuple[Any, ...]:
            return keyword_search.search(db.conn, "rare3 alpha", "", [], 5, None, bm25)

        for _ in range(2):
            first = recall()
            assert bm25.completed == 0  # FTS5 scored; the words are now wanted
            assert recall() == first
            assert bm25.completed == 1  # counted and completed here
            assert recall() == first
            assert bm25.completed == 2  # from the cache
            db.commit_writes([_rich_memory(rng, 1000)])
            bm25.completed = 0
    finally:
        bm25.close()
        db.close()


@pytest.mark.usefixtures("small_thresholds")
def test_a_memory_holding_a_mark_character_is_scored_by_fts5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """highlight()'s marks are two control characters: a memory whose own text holds
    one could not be read back, so a query whose rows hold it lets FTS5 score (the
    same hits), while the other queries still complete their scores here."""
    monkeypatch.setattr(keyword_search, "HOLDERS_PER_SCORED_ROW", 0)
    db = _rich_file(str(tmp_path / "memory.db"), 300, seed=6)
    bm25 = CountingBm25()
    try:
        # A phrase of two tokens whose instance spans a mark: its span would be cut in two.
        odd = ["rare3 db\x01prod", "rare3 \x01db_prod\x02 db\x02prod", "rare3 db_prod"]
        db.commit_writes(
            [
                StoreMemory(pykka.ThreadingFuture(), text, content_hash(text), "default", (), "{}")
                for text in odd
            ]
        )
        for query, completed in (("rare3 db_prod", False), ("rare7 db_prod", True)):
            bm25.completed = 0
            for _ in range(2):  # the second wants the common words' counts again
                hits = keyword_search.search(db.conn, query, "", [], 10, None, bm25)
            plain = keyword_search.search(db.conn, query, "", [], 10)
            assert hits == plain, query
            exact = _exact(db, query.split(), None)
            expected = _expected(exact, _live_rows(db), query.split(), None, 10)
            assert [hit.score for hit in hits] == [float(f"{-exact[r]:.6g}") for r in expected]
            assert (bm25.completed > 0) == completed, query
    finally:
        bm25.close()
        db.close()


def test_a_cut_leaves_its_table_empty() -> None:
    """Each cut's rows are rolled back, so the next cut starts from an empty table."""
    cutter = keyword_search.Snippets()
    try:
        assert cutter.cut('"deploy"', ["we deploy", "deploy again"]) == [
            "we [deploy]",
            "[deploy] again",
        ]
        assert cutter.conn.execute("SELECT count(*) FROM cut").fetchone() == (0,)
        assert not cutter.conn.in_transaction
    finally:
        cutter.close()
