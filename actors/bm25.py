"""FTS5's own BM25 for a few chosen rows, without FTS5 counting every holder of a word.

Why: FTS5's ``bm25()`` weighs each phrase of a ``MATCH`` by counting every
row that holds it, once per statement, before it scores a single row. For a
word held by most of the file that count walks its whole doclist (at 100k
memories about 2 ms a word, most of a mixed query's cost), although the
statement then scores a few dozen rows.

Here the same figure is computed in Python, term by term, in the order
FTS5 sums it, so that it is equal to the last bit (checked against
``bm25()`` on real files: tests/test_keyword_search.py):

- each phrase's count of holders (``nHit``) is counted once and kept in a
  :class:`Bm25` cache that is exact by construction: it is dropped whenever
  the file may have changed (a commit by any connection moves ``PRAGMA
  data_version``, a write by this one moves ``total_changes``), and never
  kept or used inside an open transaction (a rollback would undo what it
  counted);
- the row count and total tokens are FTS5's own totals record (kept with
  the counts, dropped with them), each row's token count its ``docsize``
  row, read by the statement that chose the row;
- each chosen row's term frequencies are FTS5's own instances: the same
  statement returns every column as ``highlight()`` marks it
  (:data:`MARKED_COLUMNS`), each marked span is tokenised with the file's
  tokenizer (a word's few spellings, cached), and a phrase's instances are
  its runs of tokens within the spans. A row whose text holds a mark
  character could not be read back (:data:`UNMARKABLE`): the caller then
  lets FTS5 score. Marking costs less than tokenising the whole row in
  memory, as this module first did (docs/performance.md, kw-fast).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Final

from actors._sqlite import connect

__all__ = ["MARKED_COLUMNS", "TOKENIZE", "UNMARKABLE", "Bm25", "Marked", "capped_holders"]

#: The file's tokenizer (actors/migrations.py): the same words, the same stems.
TOKENIZE: Final = "porter unicode61 remove_diacritics 2"
# FTS5's constants in fts5_aux.c (fts5Bm25Function).
_K1: Final = 1.2
_B: Final = 0.75
_IDF_FLOOR: Final = 1e-6
# FTS5's id of its totals record (FTS5_AVERAGES_ROWID): row count, then tokens per column.
_TOTALS_ID: Final = 1

#: What :meth:`Bm25.add_phrases` needs of a matched row (:data:`Marked`): its
#: docsize record, and every column with its phrases' instances marked by
#: FTS5's ``highlight()`` between two control characters (a source that
#: holds one is :data:`UNMARKABLE`).
MARKED_COLUMNS: Final = (
    "(SELECT sz FROM memories_fts_docsize WHERE id = memories_fts.rowid), "
    "highlight(memories_fts, 0, char(1), char(2)), highlight(memories_fts, 1, char(1), char(2))"
)
#: A row as :data:`MARKED_COLUMNS` selects it: sizes, content, tags.
Marked = tuple[bytes, str, str]
#: True for a row whose own text holds a mark: its spans could not be told apart.
UNMARKABLE: Final = (
    "(instr(memories_fts.content, char(1)) OR instr(memories_fts.content, char(2)) "
    "OR instr(memories_fts.tags, char(1)) OR instr(memories_fts.tags, char(2)))"
)
_MARKED_SPAN: Final = re.compile("\x01([^\x01\x02]*)\x02")
# Spans are spelled as they occur (case, stems): bounded, as a runaway file could vary them.
_MAX_SPELLINGS: Final = 4_096


class Bm25:
    """Counts of holders kept for one connection, and the in-memory table that spells words.

    Not thread-safe, like the connection it serves: one per owner of a
    file's connection (the StoreActor's :class:`~actors.local_db.LocalDatabase`).
    """

    def __init__(self) -> None:
        self._holders: dict[str, int] = {}
        # phrase → (cap, count up to the cap), from the capped counts that sort words.
        self._capped: dict[str, tuple[int, int]] = {}
        # A text's tokens depend on the tokenizer alone: the phrases and the
        # spans highlight() marked (the query's words as the rows spell them).
        self._spellings: dict[str, tuple[str, ...]] = {}
        # Phrases a query wanted counted since the file last changed, uncounted.
        self._wanted: set[str] = set()
        self._valid_for: tuple[int, int] | None = None
        # FTS5's row count and total tokens, read once while the file is unchanged.
        self._totals: tuple[int, int] | None = None
        self._memory = connect(":memory:")
        # Contentless: the words are only tokenised, never read back.
        self._memory.execute(
            f"CREATE VIRTUAL TABLE spelling USING fts5(content, content='', tokenize='{TOKENIZE}')"
        )
        self._memory.execute(
            "CREATE VIRTUAL TABLE spelling_at USING fts5vocab(spelling, 'instance')"
        )

    def usable(self, conn: sqlite3.Connection) -> bool:
        """Whether scores can be computed here now: not inside a transaction.

        Inside one, FTS5's totals record lags its pending writes and a count
        taken could be rolled back. Called first by each query: it drops
        what the file may have changed since (:meth:`holders`,
        :meth:`worth_counting` and :meth:`rows` then read no
        ``data_version`` of their own).
        """
        if conn.in_transaction:
            return False
        self._follow(conn)
        return True

    def worth_counting(self, conn: sqlite3.Connection, phrases: Sequence[str]) -> bool:
        """Whether ``phrases``' counts are cached, or worth counting now.

        Counting a common word costs what FTS5's own scoring spends on it, so
        it pays only if the count is used again before the file changes. A
        first query after a write leaves its words wanted and lets FTS5
        score; a second one wanting them with the file unchanged (a run of
        recalls) counts them. So a recall after every write costs what it
        did before this cache, and a run of recalls pays one count a word.
        Valid after :meth:`usable` in the same query.
        """
        missing = {phrase for phrase in phrases if phrase not in self._holders}
        if missing <= self._wanted:
            return True
        self._wanted |= missing
        return False

    def holders(self, conn: sqlite3.Connection, phrase: str, cap: int) -> int:
        """How many memories hold ``phrase``, counted up to ``cap``.

        Kept with the counts: a query's words are sorted into selective and
        common by this count before any is scored. Valid after
        :meth:`usable` in the same query.
        """
        known = self._holders.get(phrase)
        if known is not None:
            return min(known, cap)
        counted_to, count = self._capped.get(phrase, (0, 0))
        # A count below its cap is exact; one that reached it answers any lower cap.
        if count == counted_to < cap:
            count = capped_holders(conn, phrase, cap)
            self._capped[phrase] = (cap, count)
        return min(count, cap)

    def add_phrases(
        self,
        conn: sqlite3.Connection,
        partial: Mapping[int, float],
        phrases: Sequence[str],
        marked: Mapping[int, Marked],
    ) -> dict[int, float]:
        """Each row's ``bm25()`` once ``phrases`` follow the phrases ``partial`` was scored on.

        ``partial``: rowid → ``bm25()`` of a statement whose phrases are the
        first ones of the statement wanted (FTS5 sums phrase by phrase, so
        its running sum there is exactly that score). ``phrases``: the
        quoted words that follow, in order. ``marked``: each of those rows
        as :data:`MARKED_COLUMNS` of a statement naming every phrase returned
        it (its source holding no mark: :data:`UNMARKABLE`).
        """
        if not partial:
            return {}
        self._follow(conn)
        rows = sorted(partial)
        rows_total, tokens_total = self._read_totals(conn)
        average_length = tokens_total / rows_total
        weights = [self._idf(conn, phrase, rows_total) for phrase in phrases]
        frequencies = self._frequencies(marked, phrases)
        scores: dict[int, float] = {}
        for rowid in rows:
            # FTS5 returns -1.0 * score: negating back is exact.
            score = -partial[rowid]
            # The row's tokens over every column, from FTS5's docsize record.
            length = sum(_varints(marked[rowid][0]))
            for weight, counts in zip(weights, frequencies, strict=True):
                # fts5Bm25Function's expression, operation for operation.
                freq = float(counts.get(rowid, 0))
                score += weight * (
                    (freq * (_K1 + 1.0)) / (freq + _K1 * (1 - _B + _B * length / average_length))
                )
            scores[rowid] = -1.0 * score
        return scores

    def close(self) -> None:
        self._memory.close()

    def _follow(self, conn: sqlite3.Connection) -> None:
        """Drop the counts if the file may have changed since they were taken."""
        (data_version,) = conn.execute("PRAGMA data_version").fetchone()
        state = (int(data_version), conn.total_changes)
        if state != self._valid_for:
            self._holders.clear()
            self._capped.clear()
            self._wanted.clear()
            self._totals = None
            self._valid_for = state

    def count(self, conn: sqlite3.Connection, phrase: str) -> int:
        """How many memories hold ``phrase`` (FTS5's ``nHit``), from the cache when it can be."""
        self._follow(conn)
        return self._count(conn, phrase)

    def _count(self, conn: sqlite3.Connection, phrase: str) -> int:
        holders = self._holders.get(phrase)
        if holders is None:
            (holders,) = conn.execute(
                "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?", (phrase,)
            ).fetchone()
            self._holders[phrase] = holders
        return int(holders)

    def rows(self, conn: sqlite3.Connection) -> int:
        """How many memories the index holds (FTS5's row count). Valid after :meth:`usable`."""
        return self._read_totals(conn)[0]

    def _idf(self, conn: sqlite3.Connection, phrase: str, rows_total: int) -> float:
        holders = self._count(conn, phrase)
        idf = math.log((rows_total - holders + 0.5) / (holders + 0.5))
        return idf if idf > 0.0 else _IDF_FLOOR

    def _read_totals(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """FTS5's row count and total tokens (every column), as ``bm25()`` reads them."""
        if self._totals is None:
            row = conn.execute(
                "SELECT block FROM memories_fts_data WHERE id = ?", (_TOTALS_ID,)
            ).fetchone()
            counts = _varints(row[0])
            self._totals = counts[0], sum(counts[1:])
        return self._totals

    def _frequencies(
        self, marked: Mapping[int, Marked], phrases: Sequence[str]
    ) -> list[dict[int, int]]:
        """For each phrase, rowid → its instances in the row (every column), as ``xInst`` counts.

        ``highlight()`` marks every instance of every phrase of its statement
        (overlapping ones as one span), so each instance lies within one
        marked span, and counting a phrase's tokens as a run inside each
        span's tokens counts its instances: FTS5's own positions, with no
        row tokenised but the few words marked.
        """
        spellings = [self._spelling(phrase) for phrase in phrases]
        counts: list[dict[int, int]] = [{} for _ in phrases]
        for rowid, (_, content, tags) in marked.items():
            for span in _MARKED_SPAN.findall(content) + _MARKED_SPAN.findall(tags):
                tokens = self._tokens(span)
                for spelling, found in zip(spellings, counts, strict=True):
                    times = _runs(tokens, spelling)
                    if times:
                        found[rowid] = found.get(rowid, 0) + times
        return counts

    def _spelling(self, phrase: str) -> tuple[str, ...]:
        """The tokens FTS5 makes of a quoted word: it may stem, or split into several
        (a phrase FTS5 then matches as consecutive tokens)."""
        return self._tokens(phrase[1:-1])

    def _tokens(self, text: str) -> tuple[str, ...]:
        """The tokens FTS5 makes of ``text``, in order."""
        tokens = self._spellings.get(text)
        if tokens is None:
            memory = self._memory
            with memory:
                memory.execute("BEGIN")
                memory.execute("INSERT INTO spelling(spelling) VALUES ('delete-all')")
                memory.execute("INSERT INTO spelling(rowid, content) VALUES (1, ?)", (text,))
            tokens = tuple(
                term for (term,) in memory.execute("SELECT term FROM spelling_at ORDER BY offset")
            )
            if len(self._spellings) >= _MAX_SPELLINGS:
                self._spellings.clear()
            self._spellings[text] = tokens
        return tokens


def capped_holders(conn: sqlite3.Connection, phrase: str, cap: int) -> int:
    """How many memories hold ``phrase``, counted up to ``cap`` (no further: a common
    word's doclist is long)."""
    (count,) = conn.execute(
        "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
        (phrase, cap),
    ).fetchone()
    return int(count)


def _runs(tokens: Sequence[str], terms: Sequence[str]) -> int:
    """How many times ``terms`` occur as consecutive tokens of ``tokens`` (overlapping
    runs too, as FTS5 counts a phrase's instances)."""
    if not terms:
        return 0
    if len(terms) == 1:
        return tokens.count(terms[0])
    width = len(terms)
    wanted = tuple(terms)
    return sum(
        1 for at in range(len(tokens) - width + 1) if tuple(tokens[at : at + width]) == wanted
    )


def _varints(blob: bytes) -> list[int]:
    """SQLite's varints, as FTS5 stores sizes: 7 bits a byte, big-endian, the 9th whole."""
    values: list[int] = []
    at = 0
    while at < len(blob):
        value = 0
        for n in range(9):
            byte = blob[at]
            at += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        values.append(value)
    return values
