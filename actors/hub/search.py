"""The pure parts of the hub's semantic recall: settings, records, query text, rank fusion.

No NumPy and no I/O here, so the hub's store (and the simulation's
:class:`~actors.hub.direct.DirectBackend`) import it freely; the embedders
and the vector index live in :mod:`actors.hub.embedders`,
:mod:`actors.hub.vectors` and :mod:`actors.hub.semantic`.

Ranking, chosen by measurement (``tests/recall_eval.py``: 60 paraphrased
queries that share no keyword with their target, 100 memories, and 18
queries naming an exact identifier; figures in ``docs/performance.md``):

- a semantic embedder (MiniLM, an embeddings service): ``vector``: cosine
  similarity, plus :data:`IDENTIFIER_BOOST` for a memory that contains the
  query's identifier-like tokens (``E1234``, ``db-prod-1``, ``#1A73E8``,
  ``LaunchDarkly``: digits, inner punctuation, camelCase), where embeddings
  are weakest. Reciprocal-rank fusion with the BM25 ranking was measured and
  rejected: with a keyword weight of 0.05 to 1 it lifted the identifier
  queries from 94 % to 100 % top-1 but dropped the paraphrases from 77 %
  top-1 / 90 % top-3 to 12-47 % / 40-85 %, since a memory that merely shares
  a word ("book", "bills") outranks the true match; the identifier boost gets
  the 100 % and leaves the paraphrases untouched.
- the hashing fallback (not semantic): ``hybrid``: reciprocal-rank fusion
  of its ranking and the BM25 ranking (:data:`KEYWORD_WEIGHT`); both are
  lexical, and the fusion took identifier queries from 83 % to 100 % top-1.
- no vectors (no embedder yet, a failing one): ``keyword``: BM25 alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias

import attrs

__all__ = [
    "EMBEDDER_KINDS",
    "IDENTIFIER_BOOST",
    "IN_MEMORY",
    "KEYWORD_WEIGHT",
    "RRF_K",
    "STOP_WORDS",
    "EmbedItem",
    "EmbedderKind",
    "EmbedderSpec",
    "RecallUnsupported",
    "VectorChange",
    "VectorChanges",
    "VectorSearch",
    "VectorSearchResult",
    "fts_query",
    "fuse",
    "identifier_phrases",
    "join_notes",
    "vector_ranking",
]

#: The ``--embedder`` choices. ``none`` disables semantic recall (501).
EmbedderKind: TypeAlias = Literal["auto", "minilm", "openai", "hashing", "none"]
EMBEDDER_KINDS: Final[tuple[str, ...]] = ("auto", "minilm", "openai", "hashing", "none")

#: RRF's constant: a hit at rank r (from 0) adds ``weight / (RRF_K + r)``.
RRF_K: Final = 60
#: The keyword ranking's weight in the ``hybrid`` fusion (the vector ranking weighs 1):
#: 0.1 to 1 all reached 100 % on identifier queries; the lower, the less noise.
KEYWORD_WEIGHT: Final = 0.25
#: Added to the cosine similarity of a memory holding all of the query's identifiers
#: (a share of it for some of them). 0.2-0.5 measured alike; 0.3 leaves room both ways.
IDENTIFIER_BOOST: Final = 0.3
#: How deep each ranking is read before fusing.
RANK_DEPTH: Final = 100
#: At most this many query words go to FTS5 (the client's limit too).
MAX_QUERY_TERMS: Final = 32

_WORD_RE: Final = re.compile(r"\w+", re.UNICODE)

#: Words that say nothing about a memory: dropped from the keyword query, so
#: "where do we keep the key" matches memories about keys, not every "the".
_STOP_TEXT: Final = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either
    else ever every few for from further get gets got had has have having he her here hers
    herself him himself his how i if in into is it its itself just let me might mine more most
    much must my myself need no nor not now of off on once only or other ought our ours
    ourselves out over own please same shall she should so some such than that the their theirs
    them themselves then there these they this those through thus to too under until up upon us
    very was we were what whatever when where whether which while who whom whose why will with
    within without would yet you your yours yourself yourselves
"""
STOP_WORDS: Final = frozenset(_STOP_TEXT.split())


class RecallUnsupported(Exception):
    """The hub serves no semantic recall (``--embedder none``, or NumPy is missing): a 501."""


@attrs.frozen
class EmbedderSpec:
    """How the hub embeds: the ``hub serve --embedder ...`` options.

    ``kind``: ``auto`` (MiniLM when ``memory-actors install-model`` installed it,
    else the hashing fallback), ``minilm``, ``openai`` (needs ``url`` and
    ``model``; ``api_key`` and ``dimension`` optional), ``hashing``, or
    ``none`` (no semantic recall: ``POST /api/recall`` answers 501).
    """

    kind: EmbedderKind = "auto"
    url: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    model: str | None = None
    dimension: int | None = None
    #: Seconds per request to an ``openai`` endpoint (a stalled service can delay
    #: the hub's exit by this much: its request cannot be interrupted).
    timeout: float = 10.0
    #: Memories embedded per backlog batch: a query waits behind at most one.
    batch_size: int = 32

    def __attrs_post_init__(self) -> None:
        if self.kind not in EMBEDDER_KINDS:
            raise ValueError(f"embedder must be one of {', '.join(EMBEDDER_KINDS)}")
        if self.kind == "openai" and (not self.url or not self.model):
            raise ValueError("--embedder openai needs --embedder-url and --embedder-model")
        if self.dimension is not None and self.dimension < 1:
            raise ValueError(f"the embedder dimension must be positive, got {self.dimension}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


# -- records exchanged by the hub's store, embedder and index ------------------------------


@attrs.frozen
class EmbedItem:
    """A live memory waiting for its vector: its row id, content and content hash."""

    key: int
    content: str
    content_hash: str


@attrs.frozen
class VectorChange:
    """One row of the vector feed: put ``vector`` for memory ``key``, or drop it (None)."""

    key: int
    tenant: str
    namespace: str
    tags: tuple[str, ...]
    vector: bytes | None


@attrs.frozen
class VectorChanges:
    """A page of the vector feed after ``after``; ``model`` is the hub's current vector space.

    ``model`` is None while no embedder ever registered. Changes are the
    current state of each memory whose vector changed, in feed order.
    """

    model: str | None
    dimension: int
    changes: tuple[VectorChange, ...]
    next_after: int
    has_more: bool


@attrs.frozen
class VectorSearchResult:
    """The vector index's answer: the model it holds, whether it caught up once, and the hits.

    ``position`` is how far into the vector feed the index has read: the
    store counts what lies beyond it as still pending.
    """

    model: str | None
    ready: bool
    hits: tuple[tuple[int, float], ...]
    position: int = 0


@attrs.frozen
class VectorSearch:
    """Where a hub database's vectors are searched: an engine's capability, fixed while it is open.

    ``in_database``: the engine ranks vectors itself, in an index that every
    hub process on the database shares (PostgreSQL with pgvector); its
    owners pass each recall's query vector to the engine and keep no index.
    Otherwise each owner keeps an exact in-memory index fed from the
    engine's vector feed (SQLite; PostgreSQL without pgvector).

    ``notice``: why the search is not what the operator may expect and how
    to change it; the hub logs it at start and says it in every recall's
    ``note`` ("" when there is nothing to say, as on SQLite).
    """

    in_database: bool
    notice: str = ""


#: Each owner keeps an exact in-memory index, and there is nothing to say (SQLite).
IN_MEMORY: Final = VectorSearch(in_database=False)


def join_notes(*notes: str) -> str:
    """The non-empty notes, in order, as one ``note`` ("; " between them)."""
    return "; ".join(note for note in notes if note)


def vector_ranking(
    found: VectorSearchResult, model: str
) -> tuple[tuple[tuple[int, float], ...] | None, int | None, str]:
    """What a vector search's answer means for a recall of ``model``'s query vector.

    (the vector ranking, None: none; how far the index read the vector
    feed; the note that says why the ranking is missing or partial). Both
    searches (the in-memory index, the database's) answer through it, so
    the hub says the same thing whichever ranked the vectors.
    """
    if found.model != model:
        if found.model is None and found.ready:
            return None, None, "keywords only: no memory has a vector yet"
        return (
            None,
            None,
            (
                f"keywords only: the hub is making vectors with {model} (the index holds "
                f"{found.model or 'none yet'}); semantic ranking returns when they are ready"
            ),
        )
    if not found.ready:
        note = "the vector index is still loading: some memories may be missing"
        return found.hits, found.position, note
    return found.hits, found.position, ""


# -- query text and fusion ------------------------------------------------------------------


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for ``text``: its words OR-ed, quoted, stop words dropped.

    None if no word is left. Quoting every term means user text is never
    parsed as FTS5 syntax. A query made only of stop words keeps them (so
    "who are you" still finds something).
    """
    words = [w.casefold() for w in _WORD_RE.findall(text)]
    kept = [w for w in dict.fromkeys(words) if w not in STOP_WORDS] or list(dict.fromkeys(words))
    if not kept:
        return None
    return " OR ".join(f'"{word}"' for word in kept[:MAX_QUERY_TERMS])


_EDGE_PUNCT: Final = ".,;:!?()[]{}<>\"'`"
_IDENTIFIER_RE: Final = re.compile(
    r"\d"  # a digit: codes, versions, ports, hosts
    r"|\w[-_./:@]\w"  # inner punctuation: db-prod-1, ops/deploy, a.b
    r"|[a-z][A-Z]"  # camelCase: LaunchDarkly, DynamoDB
)


def identifier_phrases(text: str) -> list[str]:
    """The query's identifier-like tokens, each as the phrase of its words (FTS5-safe).

    ``"what does E1234 mean on db-prod-1"`` → ``["e1234", "db prod 1"]``.
    Plain words, capitalised names and all-capital acronyms are not
    identifiers: embeddings handle those, and "API" or "UX" in a question
    says little about which memory is meant.
    """
    phrases: list[str] = []
    for raw in text.split():
        token = raw.strip(_EDGE_PUNCT)
        if not (_IDENTIFIER_RE.search(token) or token.startswith("#")):
            continue
        words = _WORD_RE.findall(token.casefold())
        if words:
            phrase = " ".join(words)
            if phrase not in phrases:
                phrases.append(phrase)
    return phrases[:MAX_QUERY_TERMS]


def fuse(
    rankings: Sequence[Sequence[int]], weights: Sequence[float], *, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Weighted reciprocal-rank fusion: ``Σ weight / (k + rank)``, best first.

    Ties are broken by the first ranking that placed the key, then by rank,
    so the result is deterministic.
    """
    scores: dict[int, float] = {}
    first_seen: dict[int, tuple[int, int]] = {}
    for which, (ranking, weight) in enumerate(zip(rankings, weights, strict=True)):
        for rank, key in enumerate(ranking):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            first_seen.setdefault(key, (which, rank))
    return sorted(scores.items(), key=lambda item: (-item[1], first_seen[item[0]]))


def round_score(value: float) -> float:
    """Scores on the wire: six significant digits (RRF scores are small)."""
    return float(f"{value:.6g}")
