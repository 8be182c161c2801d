"""How recall merges the hub's semantic ranking with the local keyword ranking.

Why not reciprocal-rank fusion, which this replaced: RRF gives a weak keyword
match the same weight as a strong semantic one, and real notes share words
with queries that do not mean them. On a set of paraphrase queries whose
words appear in *other* memories, RRF pushed the right memory out of the top
three for about one query in six that the hub alone ranked well.

The rule, in order:

1. **Exact identifiers first.** A query token that looks like an identifier
   (it holds a digit, or inner punctuation as in ``db-prod-1``, ``deploy.yaml``,
   ``#1A73E8``, or it is written in capitals or mixed case inside a word, as
   ``AWS``, ``PgBouncer``) puts the local hits that contain it verbatim
   first, when it is rare enough to identify something (at most
   :data:`IDENTIFYING_HITS` of the local hits hold it). Meaning-based
   rankings blur such tokens; the user typed them to find one thing.
2. **The hub's order.** The hub ranks every memory it holds, by meaning,
   with its own keyword fallback for memories it has not embedded yet: it
   saw all of them and both signals, so its order stands.
3. **Local memories the hub cannot have.** A local hit not yet on the hub
   (``sync_state`` other than ``synced``) is placed at its keyword rank, so
   a note stored a second ago is found at once.
4. **The rest of the local hits** (on the hub, but outside the hub's answer)
   fill what is left, in keyword order.

A merged hit's ``score`` is its reciprocal rank in the answer (1, 1/2, 1/3,
...): comparable within one answer, as the two source scores are not.

**Local semantic recall** (:func:`fuse_local`, no hub needed, the model
installed) applies the same rule to the local file: the local vector search
takes the hub's place (its order stands: it is the same model, and exact),
and "not on the hub yet" becomes "not embedded yet" (the embedding backlog),
so a note stored a second ago is found by its words at once. With a hub,
the fused local ranking is the local side of :func:`merge_hits`: memories on
the hub are ranked by the hub, local vectors rank only what the hub cannot
have (unsynced memories) and answer alone when the hub is late or down, so
no memory is counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence, Set
from typing import Final

import attrs

from actors.model import RecallHit
from actors.wire import RemoteHit

__all__ = ["IDENTIFYING_HITS", "fuse_local", "identifier_tokens", "merge_hits"]

#: An identifier held by more local hits than this identifies nothing.
IDENTIFYING_HITS: Final = 3

_TOKEN_RE = re.compile(r"[#\w][\w.#:/-]*\w|\w")
_INNER_PUNCTUATION_RE = re.compile(r"\w[.#:/_-]\w|^#\w")
_MIXED_CASE_RE = re.compile(r"[A-Z].*[A-Z]|[a-z][A-Z]")
_SNIPPET_CHARS = 160


def identifier_tokens(query: str) -> set[str]:
    """The tokens of ``query`` that look like identifiers, case-folded (see the module doc)."""
    found = set()
    for token in _TOKEN_RE.findall(query):
        if (
            any(ch.isdigit() for ch in token)
            or _INNER_PUNCTUATION_RE.search(token)
            or _MIXED_CASE_RE.search(token)
        ):
            found.add(token.casefold())
    return found


def _holds(content: str, token: str) -> bool:
    """``content`` contains ``token`` verbatim (case-insensitive), not inside a longer word."""
    pattern = rf"(?<![\w#]){re.escape(token)}(?![\w]|[.#:/-]\w)"
    return re.search(pattern, content, re.IGNORECASE) is not None


def merge_hits(
    remote: tuple[RemoteHit, ...], local: tuple[RecallHit, ...], limit: int, query: str = ""
) -> tuple[RecallHit, ...]:
    """The hub's and the local hits in one ranking of at most ``limit`` (see the module doc)."""
    remote_ids = {found.id for found in remote}

    def mark(hit: RecallHit) -> RecallHit:
        return attrs.evolve(hit, source="both") if hit.id in remote_ids else hit

    return _ordered(
        query,
        [_from_remote(found) for found in remote],
        local,
        limit,
        unseen=lambda hit: hit.sync_state != "synced",
        mark=mark,
    )


def fuse_local(
    semantic: tuple[RecallHit, ...],
    keyword: tuple[RecallHit, ...],
    embedded: Set[str],
    limit: int,
    query: str = "",
) -> tuple[RecallHit, ...]:
    """Local vector and keyword hits in one ranking of at most ``limit``.

    The same rule as :func:`merge_hits`, the local vector search in the
    hub's place: identifiers first, then the vector order, then keyword hits
    of memories not embedded yet (not in ``embedded``) at their keyword rank,
    then the other keyword hits.
    """
    return _ordered(
        query, semantic, keyword, limit, unseen=lambda hit: hit.id not in embedded, mark=_same
    )


def _same(hit: RecallHit) -> RecallHit:
    return hit


def _ordered(
    query: str,
    meaning: Sequence[RecallHit],
    keyword: Sequence[RecallHit],
    limit: int,
    *,
    unseen: Callable[[RecallHit], bool],
    mark: Callable[[RecallHit], RecallHit],
) -> tuple[RecallHit, ...]:
    """The rule of the module doc: ``meaning`` is the semantic ranking (the hub's or the
    local vectors'), ``unseen`` says which keyword hits it cannot hold, ``mark`` how a
    keyword hit looks when both rankings found it."""
    ranked: list[RecallHit] = []
    placed: set[str] = set()

    def place(hit: RecallHit, at: int | None = None) -> None:
        if hit.id in placed:
            return
        placed.add(hit.id)
        if at is None or at >= len(ranked):
            ranked.append(hit)
        else:
            ranked.insert(at, hit)

    meaning_ids = {found.id for found in meaning}
    for token in identifier_tokens(query):
        holders = [hit for hit in keyword if _holds(hit.content, token)]
        if 0 < len(holders) <= IDENTIFYING_HITS:
            for hit in holders:
                place(mark(hit))
    keyword_by_id = {hit.id: hit for hit in keyword}
    for found in meaning:
        mine = keyword_by_id.get(found.id)
        # The keyword copy has the snippet with the query's words marked.
        place(mark(mine) if mine else found)
    for rank, hit in enumerate(keyword):
        if unseen(hit) and hit.id not in meaning_ids:
            place(hit, at=rank)
    for hit in keyword:
        place(mark(hit))
    return tuple(
        attrs.evolve(hit, score=float(f"{1 / (position + 1):.6g}"))
        for position, hit in enumerate(ranked[:limit])
    )


def _from_remote(found: RemoteHit) -> RecallHit:
    content = found.content
    snippet = content if len(content) <= _SNIPPET_CHARS else content[: _SNIPPET_CHARS - 1] + "…"
    return RecallHit(
        id=found.id,
        namespace=found.namespace,
        content=content,
        snippet=snippet,
        tags=found.tags,
        score=found.score,
        source="remote",
        created_at=found.created_at,
        sync_state="synced",
    )
