"""The recall merge rule (actors.ranking): hub order, identifiers first, fresh notes in.

The merge is a pure function of the hub's hits and the local hits, so these
tests hand it both lists directly; ``tests/test_recall_quality.py`` measures
it end to end with a real hub and the real model.
"""

from __future__ import annotations

import pytest

from actors.model import MemorySyncState, RecallHit
from actors.ranking import IDENTIFYING_HITS, identifier_tokens, merge_hits
from actors.wire import RemoteHit


def _local(memory_id: str, content: str = "", state: MemorySyncState = "synced") -> RecallHit:
    return RecallHit(memory_id, "default", content or memory_id, content or memory_id, (), 1.0,
                     "local", 0.0, state)  # fmt: skip


def _remote(memory_id: str, content: str = "") -> RemoteHit:
    return RemoteHit(memory_id, "default", content or memory_id, (), 0.5, 0.0, 0.5)


def _ids(hits: tuple[RecallHit, ...]) -> list[str]:
    return [hit.id for hit in hits]


def test_the_hubs_order_stands_against_keyword_matches_it_did_not_rank() -> None:
    """Synced keyword-only matches never push the hub's answers out of the top."""
    merged = merge_hits(
        (_remote("a"), _remote("b"), _remote("c")), (_local("d"), _local("e"), _local("a")), 3
    )
    assert _ids(merged) == ["a", "b", "c"]
    assert [hit.source for hit in merged] == ["both", "remote", "remote"]
    assert [hit.score for hit in merged] == [1.0, 0.5, 0.333333]


def test_synced_keyword_matches_fill_the_rest_in_keyword_order() -> None:
    merged = merge_hits((_remote("a"),), (_local("d"), _local("a"), _local("e")), 5)
    assert _ids(merged) == ["a", "d", "e"]
    assert merged[0].source == "both"


@pytest.mark.parametrize("state", ["committed", "sync_pending", "sync_failed"])
def test_a_memory_not_on_the_hub_yet_is_placed_at_its_keyword_rank(state: MemorySyncState) -> None:
    """A note stored a second ago (or one the hub refused) is found at once."""
    merged = merge_hits(
        (_remote("a"), _remote("b"), _remote("c")),
        (_local("x"), _local("fresh", state=state), _local("a")),
        3,
    )
    assert _ids(merged) == ["a", "fresh", "b"]
    assert merged[1].source == "local"


def test_an_exact_identifier_puts_its_memory_first() -> None:
    """'db-prod-1' names one memory: it leads, whatever the hub's order."""
    target = _local("t", "The primary runs on db-prod-1 in Frankfurt.")
    merged = merge_hits(
        (_remote("p"), _remote("q"), _remote("t")),
        (_local("near", "db-prod-10 is the replica"), target),
        3,
        "what is db-prod-1",
    )
    assert _ids(merged) == ["t", "p", "q"]
    assert merged[0].source == "both"


def test_an_identifier_held_by_many_hits_identifies_nothing() -> None:
    """A version number in every release note is no reason to reorder."""
    local = tuple(_local(f"n{i}", f"release notes mention 2024 item {i}") for i in range(4))
    assert len(local) > IDENTIFYING_HITS
    merged = merge_hits((_remote("a"), _remote("b")), local, 2, "2024")
    assert _ids(merged) == ["a", "b"]


@pytest.mark.parametrize(
    ("query", "tokens"),
    [
        ("what does E1234 mean", {"e1234"}),
        ("what is db-prod-1", {"db-prod-1"}),
        ("edit deploy.yaml", {"deploy.yaml"}),
        ("brand color #1A73E8", {"#1a73e8"}),
        ("status 429", {"429"}),
        ("our AWS bill", {"aws"}),
        ("PgBouncer settings", {"pgbouncer"}),
        ("Okta login help", set()),
        ("The meeting is tomorrow.", set()),
    ],
)
def test_identifier_tokens(query: str, tokens: set[str]) -> None:
    assert identifier_tokens(query) == tokens
