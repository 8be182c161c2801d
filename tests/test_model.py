"""Validation, normalisation, ids and versions: the pure parts of the data model."""

from __future__ import annotations

import json
import uuid

import pytest
from hub_fixtures import memory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.errors import InvalidMemory
from actors.model import (
    MAX_CONTENT_BYTES,
    MAX_TAGS,
    HybridClock,
    content_hash,
    normalize_content,
    normalize_metadata,
    normalize_namespace,
    normalize_tags,
    uuid7,
    validate_id,
    validate_limit,
    validate_query,
)
from actors.wire import WireMemory


def test_content_is_trimmed_nfc_normalised_with_unix_line_ends() -> None:
    """Equivalent spellings of the same text normalise to one canonical string."""
    assert normalize_content("  Cafe\u0301\r\nbar\r ") == "Caf\u00e9\nbar"
    assert content_hash(normalize_content("Caf\u00e9")) == content_hash(
        normalize_content("Cafe\u0301 ")
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        (None, "must be a string"),
        (42, "must be a string"),
        (b"bytes", "must be a string"),
        ("a\x00b", "NUL"),
        ("bad \udcff surrogate", "not valid UTF-8"),
        ("x" * (MAX_CONTENT_BYTES + 1), f"limit is {MAX_CONTENT_BYTES} bytes"),
        ("é" * (MAX_CONTENT_BYTES // 2 + 1), "bytes of UTF-8"),
    ],
)
def test_bad_content_is_rejected_with_a_precise_message(bad: object, message: str) -> None:
    """Each kind of bad content names what is wrong."""
    with pytest.raises(InvalidMemory, match=message):
        normalize_content(bad)


def test_content_at_the_size_limit_is_accepted() -> None:
    """The limit is inclusive and counted in UTF-8 bytes."""
    assert len(normalize_content("x" * MAX_CONTENT_BYTES)) == MAX_CONTENT_BYTES


def test_tags_are_lowercased_deduplicated_and_sorted() -> None:
    """Tag order and case never create distinct tags."""
    assert normalize_tags(["Beta", " alpha ", "BETA"]) == ("alpha", "beta")
    assert normalize_tags(None) == ()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("notalist", "list of strings"),
        ([1], "must be a string"),
        ([""], "must not be empty"),
        (["a,b"], "comma"),
        (["x" * 65], "longer than"),
        ([f"t{i}" for i in range(MAX_TAGS + 1)], "at most"),
    ],
)
def test_bad_tags_are_rejected(bad: object, message: str) -> None:
    """Tags that are not short plain strings are refused."""
    with pytest.raises(InvalidMemory, match=message):
        normalize_tags(bad)


def test_metadata_must_be_a_json_object() -> None:
    """Metadata is stored as compact sorted JSON; anything else is refused."""
    assert normalize_metadata({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert normalize_metadata(None) == "{}"
    with pytest.raises(InvalidMemory, match="JSON object"):
        normalize_metadata([1, 2])
    with pytest.raises(InvalidMemory, match="not JSON-serialisable"):
        normalize_metadata({"x": object()})
    with pytest.raises(InvalidMemory, match="not JSON-serialisable"):
        normalize_metadata({"x": float("nan")})
    with pytest.raises(InvalidMemory, match="limit is"):
        normalize_metadata({"x": "y" * 20_000})


def test_namespaces_ids_limits_and_queries_are_validated() -> None:
    """Every other argument has a checked shape and a message naming the rule."""
    assert normalize_namespace(None) == "default"
    assert normalize_namespace("proj/alpha-1") == "proj/alpha-1"
    with pytest.raises(InvalidMemory, match="namespace"):
        normalize_namespace("has space")
    with pytest.raises(InvalidMemory, match="not a memory id"):
        validate_id("nope")
    assert validate_id(" 0190A2B3-C4D5-7E6F-8A9B-0C1D2E3F4A5B ") == (
        "0190a2b3-c4d5-7e6f-8a9b-0c1d2e3f4a5b"
    )
    with pytest.raises(InvalidMemory, match="between 1 and 200"):
        validate_limit(0, default=10)
    with pytest.raises(InvalidMemory, match="integer"):
        validate_limit(True, default=10)
    assert validate_limit(None, default=10) == 10
    with pytest.raises(InvalidMemory, match="empty"):
        validate_query("  ")


@given(st.integers(0, 2**48 - 1), st.integers(0, 2**12 - 1), st.integers(0, 2**62 - 1))
def test_uuid7_carries_version_variant_and_timestamp(ms: int, a: int, b: int) -> None:
    """A minted id is a valid RFC 9562 v7 UUID whose first 48 bits are the timestamp."""
    parsed = uuid.UUID(uuid7(ms, a, b))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == ms


def test_uuid7_sorts_by_time() -> None:
    """Later milliseconds give lexicographically larger ids (lists page by id)."""
    assert uuid7(1000, 0xFFF, 2**62 - 1) < uuid7(1001, 0, 0)


def test_hybrid_clock_never_repeats_or_goes_back() -> None:
    """Versions increase even when the wall clock stalls or jumps backwards."""
    clock = HybridClock()
    versions = [clock.tick(ms) for ms in (100, 100, 50, 101, 101)]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    resumed = HybridClock.resume(versions[-1])
    assert resumed.tick(0) > versions[-1]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


# Generation is slow on a loaded host, not the test: the health check would fail it.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=st.dictionaries(st.text(max_size=5), _json_values, max_size=4))
def test_a_parsed_memory_keeps_the_canonical_metadata_text_it_validated(
    metadata: dict[str, object],
) -> None:
    """``metadata_json()`` of a parsed record is the text a record built by hand gives."""
    built = memory("some words", metadata=metadata)
    parsed = WireMemory.parse(json.loads(json.dumps(built.to_json())))
    assert parsed.metadata_text is not None
    assert parsed.metadata_json() == normalize_metadata(metadata) == built.metadata_json()
    assert parsed == built  # the kept text is no part of the value


def test_the_shared_metadata_encoder_holds_no_state_across_calls() -> None:
    """After a refused value (a cycle, a NaN, an object), the same shapes still encode."""
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    for bad in (cyclic, {"x": float("inf")}, {"x": object()}):
        with pytest.raises(InvalidMemory, match="not JSON-serialisable"):
            normalize_metadata(bad)
    nested = {"self": {"a": 1}}
    assert normalize_metadata(nested) == '{"self":{"a":1}}'
    assert normalize_metadata({}) == "{}"


def test_tags_come_as_any_iterable_of_strings_but_not_a_string() -> None:
    """A list takes the short way; tuples, sets and generators are still read; text is not."""
    expected = ("a", "b")
    assert normalize_tags(["b", "a"]) == expected
    assert normalize_tags(("b", "a")) == expected
    assert normalize_tags({"b", "a"}) == expected
    assert normalize_tags(tag for tag in ["b", "a"]) == expected
    for text in ("ab", b"ab"):
        with pytest.raises(InvalidMemory, match="list of strings"):
            normalize_tags(text)
