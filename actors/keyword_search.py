"""Local keyword recall: FTS5 BM25 over a replica's file, with a bounded cost per query.

Why not one ``MATCH 'a OR b' ORDER BY bm25 LIMIT k``: FTS5 scores every row
that matches before the ``LIMIT`` can cut, so a query holding a word found
in a large share of the memories scored tens of thousands of rows (at 100k
memories: p50 24 ms, p99 190 ms; docs/performance.md).

The rule here. A query word is *selective* when at most :data:`SELECTIVE_ROWS`
memories hold it (counted with a capped scan, which costs no scoring), else
*common*.

- Every memory that holds a selective word is scored **exactly**: the same
  BM25 figure FTS5 gives the whole query (every word's weight, computed over
  the whole file). ``(S) AND (C)`` scores those that also hold a common
  word; BM25 over the selective words ``S`` alone scores the others (for a
  memory holding no common word it is the whole query's figure). Each
  statement names every word it needs once, so BM25 sums the same terms as
  the whole query would.
- Memories that hold only common words are scored among the newest
  :data:`COMMON_WINDOW` of them, and only when the query has no selective
  word or fewer than ``limit`` memories hold one. A common word carries
  little weight (its inverse document frequency is low), so a memory
  holding a selective word nearly always outranks one of common words only
  (at 100k memories the benchmark's queries agree with the whole-file
  ranking as often as before: docs/performance.md); and a memory store's
  readers prefer the recent among near-ties. An older memory of common
  words only is still found by a more specific query, by ``list``, or
  through the hub.

Why the statements are shaped so: FTS5 weighs each phrase of a ``MATCH``
by counting every row that holds it, once per statement, before it scores
a single row (about 2 ms for a word in 70 % of 100k memories, ten times
that at 1M). So each query runs at most one statement naming the common
words (two when the window is needed), and the window is read newest
first in the same statement that scores it.

A mixed query can skip even that count: when its selective words have few
holders, FTS5 scores the selective words alone and only marks, with
``highlight()``, the words of their holders that also hold a common word;
:class:`~actors.bm25.Bm25` completes those few scores with the common
words' terms, from holder counts cached while the file is unchanged and
the marked instances, equal to FTS5's ``bm25()`` to the bit (so the
ranking is the same on either path; the cost rule picks the cheaper one).

So a query of selective words only is exact, and any query scores at most
``words × SELECTIVE_ROWS + COMMON_WINDOW`` rows. Ties are broken newest first.

Snippets are cut by FTS5's own ``snippet()`` on a :class:`Snippets` table in
memory that holds just the chosen rows, inside a transaction rolled back
after the cut: asked of the file, each snippet re-read the doclists of the
query's common words (0.5-0.8 ms a hit at 100k).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from actors._sqlite import connect
from actors.bm25 import MARKED_COLUMNS, TOKENIZE, UNMARKABLE, Bm25, Marked, capped_holders
from actors.model import RecallHit

__all__ = [
    "COMMON_WINDOW",
    "HOLDERS_PER_SCORED_ROW",
    "MAX_QUERY_TERMS",
    "MERGE_ABOVE_SEGMENTS",
    "MERGE_STEP_PAGES",
    "SELECTIVE_ROWS",
    "Snippets",
    "index_segments",
    "merge_step",
    "ranked_hits",
    "search",
]

#: At most this many memories hold a selective word.
SELECTIVE_ROWS: Final = 1_000
#: Memories holding only common words are scored among this many of the newest.
COMMON_WINDOW: Final = 500
MAX_QUERY_TERMS: Final = 32
#: What scoring one row in Python costs, in holders FTS5 counts in the same
#: time (measured at 100k memories: docs/performance.md).
HOLDERS_PER_SCORED_ROW: Final = 500

#: A keyword index in more segments than this is merged into one when its file
#: opens: FTS5 looks every phrase of a query up in each segment, and the 14 of a
#: file built in batches cost a three-word query 19 % at 100k (docs/performance.md).
MERGE_ABOVE_SEGMENTS: Final = 4
#: Pages one merge step writes: ~6 ms a step at 100k, so a write waits at most
#: about that long behind one.
MERGE_STEP_PAGES: Final = 16

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_FROM = (
    "FROM memories_fts JOIN memories m ON m.rowid = memories_fts.rowid "
    "WHERE memories_fts MATCH ? AND m.deleted = 0"
)
# The index holds live memories only (its triggers drop a forgotten one), so
# without filters on ``m`` the join would only re-read each scored row.
_FROM_INDEX = "FROM memories_fts WHERE memories_fts MATCH ?"


def _source(where: str) -> str:
    return f"{_FROM}{where}" if where else _FROM_INDEX


class Snippets:
    """An in-memory FTS5 table with the file's tokenizer, to cut snippets of a few rows.

    Not thread-safe, like the connection it holds: one per owner of a file's
    connection (the StoreActor's :class:`~actors.local_db.LocalDatabase`).
    """

    def __init__(self) -> None:
        self.conn = connect(":memory:")
        self.conn.execute(f"CREATE VIRTUAL TABLE cut USING fts5(content, tokenize='{TOKENIZE}')")

    def cut(self, match: str, contents: Sequence[str]) -> list[str]:
        """The snippet of each of ``contents`` for ``match``, marked ``[...]``, in order."""
        db = self.conn
        numbered = list(enumerate(contents, start=1))
        # Cut inside a transaction that is rolled back: FTS5 reads its own
        # pending rows, and the rollback empties the table for the next cut at
        # no cost (committing, then emptying it, cost 1.5-3 times as much).
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO cut(rowid, content) VALUES (?, ?)", numbered)
            found = dict(
                db.execute(
                    "SELECT rowid, snippet(cut, 0, '[', ']', '…', 16) FROM cut WHERE cut MATCH ?",
                    (match,),
                ).fetchall()
            )
        finally:
            db.execute("ROLLBACK")
        return [found.get(n, content) for n, content in numbered]

    def close(self) -> None:
        self.conn.close()


def search(
    conn: sqlite3.Connection,
    query: str,
    where: str,
    params: Sequence[Any],
    limit: int,
    snippets: Snippets | None = None,
    bm25: Bm25 | None = None,
) -> tuple[RecallHit, ...]:
    """The ``limit`` best memories for any word of ``query``, best first.

    ``where`` and ``params``: extra SQL conditions on ``m`` (the memories
    row), each with a leading ``AND`` (namespace, prefix, tags).
    ``snippets``: the owner's :class:`Snippets` (a throwaway one if None).
    ``bm25``: the owner's :class:`~actors.bm25.Bm25`, whose cached counts
    spare a mixed query FTS5's count of its common words (if None, FTS5
    scores them; the ranking is the same either way).
    """
    phrases = _phrases(query)
    if not phrases:
        return ()
    every = " OR ".join(phrases)
    counts = bm25 if bm25 is not None and bm25.usable(conn) else None
    held = {p: _holders(conn, p, counts) for p in phrases}
    selective = [p for p in phrases if held[p] <= SELECTIVE_ROWS]
    common = [p for p in phrases if p not in selective]
    if not common:
        scored = _score(conn, every, where, params, limit)
    elif not selective:
        scored = _newest(conn, every, where, params, limit)
    else:
        some_selective, some_common = _any(selective), _any(common)
        completed = (
            _with_selective_counted(conn, counts, selective, common, (where, params), limit)
            if counts is not None
            and _scoring_here_pays(conn, counts, sum(held[p] for p in selective))
            and counts.worth_counting(conn, common)
            else None
        )
        scored = (
            completed
            if completed is not None
            else _with_selective(conn, some_selective, some_common, where, params, limit)
        )
        if len(scored) < limit:
            # A memory without a selective word scores over the common words alone.
            scored += _newest(conn, f"{some_common} NOT {some_selective}", where, params, limit)
        # BM25 is negative, better is smaller; ties newest (largest rowid) first.
        scored.sort(key=lambda row: (row[1], -row[0]))
        scored = scored[:limit]
    return _hits(conn, every, scored, snippets)


def ranked_hits(
    conn: sqlite3.Connection,
    query: str,
    scored: Sequence[tuple[int, float]],
    snippets: Snippets | None = None,
) -> tuple[RecallHit, ...]:
    """The hits for rows another search ranked (vector search): ``scored`` is (rowid,
    score), best first, higher better; each snippet marks the query's words it holds."""
    every = " OR ".join(_phrases(query))
    return _hits(conn, every, [(rowid, -score) for rowid, score in scored], snippets)


def _phrases(query: str) -> list[str]:
    # Quoted, so user text is never parsed as FTS5 syntax; each word once, so
    # a repeated word does not count twice.
    phrases = [f'"{word}"' for word in dict.fromkeys(_WORD_RE.findall(query))]
    return phrases[:MAX_QUERY_TERMS]


def _any(phrases: Sequence[str]) -> str:
    return "(" + " OR ".join(phrases) + ")"


def _with_selective(
    conn: sqlite3.Connection,
    some_selective: str,
    some_common: str,
    where: str,
    params: Sequence[Any],
    limit: int,
) -> list[tuple[int, float]]:
    """The best ``limit`` memories holding a selective word, with whole-query scores.

    BM25 over the selective words alone is the whole query's score for a
    memory that holds no common word, and it is cheap: FTS5 counts each
    phrase's holders to weigh it, and a selective word has few. Only the
    memories holding both kinds need the scan that names the common words,
    so their long doclists are counted once per query, not twice. One
    statement joins the two and keeps the best: each memory once, with its
    ``(S) AND (C)`` score when it holds a common word.
    """
    source = _source(where)
    return conn.execute(
        "WITH alone AS ("
        f"SELECT memories_fts.rowid AS rowid, bm25(memories_fts) AS score {source}"
        "), also_common AS ("
        f"SELECT memories_fts.rowid AS rowid, bm25(memories_fts) AS score {source}"
        ") SELECT alone.rowid, coalesce(also_common.score, alone.score) AS score "
        "FROM alone LEFT JOIN also_common ON also_common.rowid = alone.rowid "
        # BM25 is negative, better is smaller; ties newest (largest rowid) first.
        "ORDER BY score, alone.rowid DESC LIMIT ?",
        [some_selective, *params, f"{some_selective} AND {some_common}", *params, limit],
    ).fetchall()


def _with_selective_counted(
    conn: sqlite3.Connection,
    bm25: Bm25,
    selective: Sequence[str],
    common: Sequence[str],
    filters: tuple[str, Sequence[Any]],
    limit: int,
) -> list[tuple[int, float]] | None:
    """What :func:`_with_selective` returns, with no statement scoring a common word.

    FTS5 scores the selective words (cheap: they have few holders), and
    marks, without scoring, the words of those memories that also hold a
    common word (``highlight()``); :class:`~actors.bm25.Bm25` adds the
    common words' terms to those few, from cached counts and the marked
    instances, as ``bm25()`` of ``(S) AND (C)`` would. None when a memory's
    text holds a character the marks are made of (FTS5 then scores).
    """
    where, params = filters
    some_selective = _any(selective)
    rows = conn.execute(
        "WITH also_common AS MATERIALIZED ("
        f"SELECT rowid, {MARKED_COLUMNS}, {UNMARKABLE} AS unmarkable "
        "FROM memories_fts WHERE memories_fts MATCH ?"
        "), alone AS MATERIALIZED ("
        f"SELECT memories_fts.rowid AS rowid, bm25(memories_fts) AS score {_source(where)}"
        # Every memory that holds a common word too (its score is to be
        # completed), and the best of the others (their score is final).
        ") SELECT alone.rowid, score, also_common.* FROM alone JOIN also_common USING (rowid) "
        "UNION ALL SELECT * FROM ("
        "SELECT rowid, score, NULL, NULL, NULL, NULL, NULL FROM alone "
        "WHERE rowid NOT IN (SELECT rowid FROM also_common) "
        # BM25 is negative, better is smaller; ties newest (largest rowid) first.
        "ORDER BY score, rowid DESC LIMIT ?)",
        [f"{some_selective} AND {_any(common)}", some_selective, *params, limit],
    ).fetchall()
    alone = {row[0]: row[1] for row in rows}
    marked: dict[int, Marked] = {row[0]: row[3:6] for row in rows if row[2] is not None}
    if any(row[6] for row in rows if row[2] is not None):
        return None
    alone.update(bm25.add_phrases(conn, {r: alone[r] for r in marked}, common, marked))
    # BM25 is negative, better is smaller; ties newest (largest rowid) first.
    return sorted(alone.items(), key=lambda row: (row[1], -row[0]))[:limit]


def _scoring_here_pays(conn: sqlite3.Connection, counts: Bm25, selective_holders: int) -> bool:
    """Whether completing the scores in Python costs less than FTS5 counting the common words.

    FTS5 would count the common words' ``H`` holders. The rows to complete
    are the selective words' holders that also hold a common word: about
    ``selective_holders × H / rows``. Each costs about what FTS5 spends
    counting :data:`HOLDERS_PER_SCORED_ROW` holders (marked by
    ``highlight()``, its spans spelled, summed in Python). ``H`` cancels
    out, so the rule needs no count (one not yet cached would cost what it
    saves). Either way the scores are the same.
    """
    return selective_holders * HOLDERS_PER_SCORED_ROW < counts.rows(conn)


def _newest(
    conn: sqlite3.Connection, match: str, where: str, params: Sequence[Any], limit: int
) -> list[tuple[int, float]]:
    """The best ``limit`` among the ``COMMON_WINDOW`` newest memories matching ``match``."""
    # One statement: FTS5 walks its doclists newest first for ORDER BY rowid DESC
    # and scores just the window's rows (a first statement to find the window's
    # floor cost as much again); the best are picked in SQL, not by handing
    # the whole window to Python.
    return conn.execute(
        "SELECT rowid, score FROM ("
        f"SELECT memories_fts.rowid AS rowid, bm25(memories_fts) AS score {_source(where)} "
        "ORDER BY memories_fts.rowid DESC LIMIT ?"
        # BM25 is negative, better is smaller; ties newest (largest rowid) first.
        ") ORDER BY score, rowid DESC LIMIT ?",
        [match, *params, COMMON_WINDOW, limit],
    ).fetchall()


def _holders(conn: sqlite3.Connection, phrase: str, counts: Bm25 | None) -> int:
    """How many memories hold ``phrase``, counted up to ``SELECTIVE_ROWS + 1``."""
    if counts is not None:
        return counts.holders(conn, phrase, SELECTIVE_ROWS + 1)
    return capped_holders(conn, phrase, SELECTIVE_ROWS + 1)


def _score(
    conn: sqlite3.Connection, match: str, where: str, params: Sequence[Any], limit: int
) -> list[tuple[int, float]]:
    """The best ``limit`` (rowid, BM25) for ``match``; ties newest first."""
    return conn.execute(
        f"SELECT memories_fts.rowid, bm25(memories_fts) {_source(where)} "
        "ORDER BY bm25(memories_fts), memories_fts.rowid DESC LIMIT ?",
        [match, *params, limit],
    ).fetchall()


def _hits(
    conn: sqlite3.Connection,
    every: str,
    scored: Sequence[tuple[int, float]],
    snippets: Snippets | None,
) -> tuple[RecallHit, ...]:
    """The hits for the chosen rows, in order, each snippet marking every query word."""
    if not scored:
        return ()
    marks = ",".join("?" * len(scored))
    rows = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT rowid, id, namespace, content, tags, created_at, sync_state FROM memories "
            f"WHERE rowid IN ({marks})",
            [rowid for rowid, _ in scored],
        )
    }
    chosen = [(rows[rowid], score) for rowid, score in scored if rowid in rows]
    cutter = snippets or Snippets()
    try:
        contents = [row[2] for row, _ in chosen]
        cuts = cutter.cut(every, contents) if every else contents
    finally:
        if snippets is None:
            cutter.close()
    return tuple(
        RecallHit(
            id=row[0],
            namespace=row[1],
            content=row[2],
            snippet=cut,
            tags=tuple(json.loads(row[3])),
            # BM25 is tiny on small stores: keep significant digits, not decimals.
            score=float(f"{-score:.6g}"),
            source="local",
            created_at=row[4],
            sync_state=row[5],
        )
        for (row, score), cut in zip(chosen, cuts, strict=True)
    )


def index_segments(conn: sqlite3.Connection) -> int:
    """How many segments (b-trees) the keyword index is in: one ``segid`` each in its idx table."""
    (count,) = conn.execute("SELECT count(DISTINCT segid) FROM memories_fts_idx").fetchone()
    return int(count)


def merge_step(conn: sqlite3.Connection, *, first: bool) -> bool:
    """One bounded step of merging the keyword index into one segment; whether more remains.

    FTS5's incremental ``optimize``: the first step (a negative page count)
    puts every segment on one level and begins; later ones (positive) carry
    that merge on, even if writes meanwhile added segments; a step that
    changes fewer than two rows found nothing left (FTS5's documented test).
    The rankings do not change: the same rows, the same counts.
    """
    before = conn.total_changes
    pages = -MERGE_STEP_PAGES if first else MERGE_STEP_PAGES
    conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('merge', ?)", (pages,))
    return conn.total_changes - before >= 2
