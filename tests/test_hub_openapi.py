"""One description of a memory: the OpenAPI schemas equal the wire records and the model's limits.

``actors/hub/openapi.py`` writes its JSON schemas by hand, for the prose
people read. These tests make them a view of :mod:`actors.wire`, not a
second definition: every field of every record is described with its JSON
type, a schema requires exactly what the record's parser requires, real
records validate, and every documented limit or pattern is the constant the
code enforces. A field added to a record, or a limit changed in
:mod:`actors.model`, fails here until the document says so too.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import attrs
import jsonschema
import pytest
from hub_fixtures import forget, memory

from actors import model, wire
from actors.hub.openapi import openapi_document
from actors.wire import (
    AuthInfo,
    Change,
    ChangesPage,
    DigestEntry,
    DigestPage,
    EmbedderInfo,
    ErrorBody,
    Health,
    HubCounts,
    HubLimits,
    ItemResult,
    PushResult,
    RecallHits,
    RecallQuery,
    RemoteHit,
    ShapeError,
    WireMemory,
)

DOCUMENT = openapi_document()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]

_LIVE = memory("The deploy key lives in vault", tags=("ops",), metadata={"n": 1})
_ID = _LIVE.id
_VERSION = _LIVE.version
_HIT = RemoteHit(_ID, "default", "text", ("ops",), 0.5, 1.0, similarity=0.9)
_EMBEDDER = EmbedderInfo("hashing-ngrams-v1-384", 384, semantic=False)
_CURSOR = "0190a5c4-0000-7000-8000-000000000000:3"

#: Each wire record, where its schema sits in the document (a JSON pointer
#: below ``components/schemas``, the fields' object), and examples covering
#: its shapes (a field is required when dropping it fails every example).
RECORDS: dict[type, tuple[str, list[Any]]] = {
    WireMemory: ("Memory", [_LIVE, forget(_LIVE)]),
    ItemResult: (
        "ItemResult",
        [ItemResult(_ID, "applied", _VERSION), ItemResult(_ID, "duplicate", _VERSION, _ID)],
    ),
    PushResult: ("PushResponse", [PushResult((ItemResult(_ID, "stale", _VERSION),))]),
    Change: ("Change", [Change(3, _LIVE)]),
    ChangesPage: ("ChangesPage", [ChangesPage((Change(3, _LIVE),), _CURSOR, has_more=False)]),
    DigestEntry: ("DigestEntry", [DigestEntry(_ID, "default", "", _VERSION, "a", deleted=True)]),
    DigestPage: (
        "DigestPage",
        [
            DigestPage((), None, has_more=False, cursor=_CURSOR),
            DigestPage(
                (DigestEntry(_ID, "work", "", _VERSION, "a", deleted=False),),
                _ID,
                has_more=True,
                cursor=_CURSOR,
            ),
        ],
    ),
    HubCounts: ("Counts", [HubCounts(2, {"default": 2}, 1, _CURSOR)]),
    HubLimits: ("Limits", [HubLimits()]),
    AuthInfo: ("AuthInfo", [AuthInfo("acme", "0123456789ab", 1, HubLimits())]),
    Health: ("Health", [Health("ok", 1)]),
    RecallQuery: ("RecallRequest", [RecallQuery("deploy key", "default", ("ops",), 5)]),
    RemoteHit: (
        "RecallResponse/properties/hits/items",
        [_HIT, attrs.evolve(_HIT, similarity=None)],
    ),
    EmbedderInfo: ("RecallResponse/properties/embedder/oneOf/1", [_EMBEDDER]),
    RecallHits: (
        "RecallResponse",
        [
            RecallHits((_HIT,), "hybrid", _EMBEDDER, pending=2, note="embedding"),
            RecallHits((), "keyword", None, pending=0),
        ],
    ),
    ErrorBody: ("Error/properties/error", [ErrorBody("invalid_item", "bad", {"index": 0})]),
}

#: The JSON object holding a record's fields inside its ``to_json()`` (ErrorBody wraps).
_WRAPPED_IN = {ErrorBody: "error"}


def _at(pointer: str) -> dict[str, Any]:
    node: Any = SCHEMAS
    for part in pointer.split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert isinstance(node, dict), pointer
    return node


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return _at(ref.removeprefix("#/components/schemas/")) if ref else schema


def _fields(record: type) -> Mapping[str, Any]:
    """The record's fields that travel on the wire (not a local cache: ``wire=False``)."""
    local = {f.name for f in attrs.fields(record) if f.metadata.get("wire") is False}
    return {k: v for k, v in typing.get_type_hints(record).items() if k not in local}


def _body(record: type, example: Any) -> dict[str, Any]:
    data: dict[str, Any] = example.to_json()
    wrapper = _WRAPPED_IN.get(record)
    return data[wrapper] if wrapper else data


def _parses(record: type, data: dict[str, Any]) -> bool:
    wrapper = _WRAPPED_IN.get(record)
    try:
        record.parse({wrapper: data} if wrapper else data)  # type: ignore[attr-defined]
    except ShapeError:
        return False
    return True


def _nullable(schema: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Whether ``schema`` admits null, and the schema of its non-null values."""
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        rest = [kind for kind in kinds if kind != "null"]
        return True, {**schema, "type": rest[0] if len(rest) == 1 else rest}
    options = schema.get("oneOf", [])
    if {"type": "null"} in options:
        (rest,) = [option for option in options if option != {"type": "null"}]
        return True, rest
    return False, schema


def _check(schema: dict[str, Any], hint: Any, where: str, *, required: bool) -> None:
    """Assert that ``schema`` describes values of the Python type ``hint``."""
    args = get_args(hint)
    if get_origin(hint) in (types.UnionType, typing.Union) and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        nullable, rest = _nullable(schema)
        # None travels as null, or as an absent field (to_json leaves it out).
        assert nullable or not required, f"{where}: None has no JSON form"
        _check(rest, inner, where, required=required)
        return
    if attrs.has(hint):
        assert _resolve(schema) == _at(RECORDS[hint][0]), f"{where}: not the {hint.__name__} schema"
        return
    if get_origin(hint) is Literal:
        assert (schema["type"], schema["enum"]) == ("string", list(args)), where
        return
    if get_origin(hint) is tuple:
        assert schema["type"] == "array", where
        _check(schema["items"], args[0], f"{where}[]", required=True)
        return
    if get_origin(hint) is Mapping:
        assert schema["type"] == "object", where
        if args[1] is not Any:
            _check(schema["additionalProperties"], args[1], f"{where}{{}}", required=True)
        return
    expected = {str: "string", bool: "boolean", int: "integer", float: "number"}[hint]
    assert schema["type"] == expected, f"{where}: {schema['type']} for {hint}"


def test_every_wire_record_is_checked_against_the_document() -> None:
    """Each attrs record of actors.wire has its schema listed here, so none drifts unchecked."""
    records = {getattr(wire, name) for name in wire.__all__}
    assert {r for r in records if attrs.has(r)} == set(RECORDS)


@pytest.mark.parametrize("record", list(RECORDS), ids=lambda r: r.__name__)
def test_a_schema_describes_every_field_of_its_record_with_its_json_type(record: type) -> None:
    """Same field names as the record, and each property's JSON type is the field's Python type."""
    pointer, _ = RECORDS[record]
    schema = _at(pointer)
    assert set(schema["properties"]) == set(_fields(record)), pointer
    required = set(schema.get("required", ()))
    for name, hint in _fields(record).items():
        _check(schema["properties"][name], hint, f"{pointer}.{name}", required=name in required)


@pytest.mark.parametrize("record", list(RECORDS), ids=lambda r: r.__name__)
def test_a_schema_requires_exactly_the_fields_the_records_parser_requires(record: type) -> None:
    """A field is required iff dropping it makes parse() refuse every example of the record."""
    pointer, examples = RECORDS[record]
    bodies = [_body(record, example) for example in examples]
    assert all(_parses(record, body) for body in bodies)
    refused = {
        name
        for name in _fields(record)
        if not any(_parses(record, {k: v for k, v in body.items() if k != name}) for body in bodies)
    }
    assert set(_at(pointer).get("required", ())) == refused, pointer


@pytest.mark.parametrize("record", list(RECORDS), ids=lambda r: r.__name__)
def test_real_records_validate_against_their_schemas(record: type) -> None:
    """Every example's to_json() is valid under its schema (and round-trips through parse)."""
    pointer, examples = RECORDS[record]
    if record in _WRAPPED_IN:
        pointer = pointer.split("/")[0]
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{pointer}", "components": DOCUMENT["components"]}
    )
    for example in examples:
        validator.validate(example.to_json())
        assert record.parse(example.to_json()) == example  # type: ignore[attr-defined]


def test_the_documented_limits_and_patterns_are_the_ones_the_code_enforces() -> None:
    """Tags, content, metadata, queries, recall limits, ids, versions, origins: the model's own."""
    memory_schema = _at("Memory/properties")
    assert memory_schema["tags"]["maxItems"] == model.MAX_TAGS
    assert memory_schema["tags"]["items"]["maxLength"] == model.MAX_TAG_CHARS
    assert f"at most {model.MAX_CONTENT_BYTES} bytes" in memory_schema["content"]["description"]
    assert f"At most {model.MAX_METADATA_BYTES} bytes" in memory_schema["metadata"]["description"]
    assert memory_schema["id"]["pattern"] == f"^{model._UUID_RE.pattern}$"
    assert memory_schema["namespace"]["pattern"] == f"^{model._NAMESPACE_RE.pattern}$"
    assert memory_schema["version"]["pattern"] == f"^{wire.VERSION_RE.pattern}$"
    assert memory_schema["origin"]["pattern"] == f"^{wire.ORIGIN_RE.pattern}$"
    query = _at("RecallRequest/properties")
    assert query["namespace_prefix"]["pattern"] == f"^{model._NAMESPACE_RE.pattern}$"
    assert (query["query"]["minLength"], query["query"]["maxLength"]) == (1, model.MAX_QUERY_CHARS)
    assert query["limit"]["maximum"] == model.MAX_LIMIT
    limits = _at("Limits/properties")
    assert {name: limit["const"] for name, limit in limits.items()} == HubLimits().to_json()
    assert (HubLimits().max_content_bytes, HubLimits().max_recall_limit) == (
        model.MAX_CONTENT_BYTES,
        model.MAX_LIMIT,
    )


def test_a_hub_with_other_limits_documents_its_own() -> None:
    """The served document states the serving hub's limits, not the defaults."""
    limits = HubLimits(max_batch_items=7, max_recall_limit=9, max_content_bytes=1000)
    schemas = openapi_document(limits)["components"]["schemas"]
    assert schemas["PushRequest"]["properties"]["items"]["maxItems"] == 7
    assert schemas["RecallRequest"]["properties"]["limit"]["maximum"] == 9
    assert "at most 1000 bytes" in schemas["Memory"]["properties"]["content"]["description"]
    assert {k: v["const"] for k, v in schemas["Limits"]["properties"].items()} == limits.to_json()
