"""The hub's OpenAPI 3.1 document, written by hand in one place and served at ``/openapi.json``.

Schemas are JSON Schema 2020-12 (what OpenAPI 3.1 uses), so tests validate
real answers of a running hub against them. ``tests/test_hub_api.py`` checks
that the document describes exactly the routes of
:data:`actors.hub.core.ROUTES`. The limits in it are the serving hub's own.

Written by hand, for the descriptions people read, but not a second
definition: ``tests/test_hub_openapi.py`` proves each schema equal to its
record in :mod:`actors.wire` (every field, its JSON type, whether the parser
requires it) and every limit and pattern equal to the constant it documents,
which is imported here wherever one exists.
"""

from __future__ import annotations

from typing import Any

from actors.model import (
    MAX_KEY_CHARS,
    MAX_METADATA_BYTES,
    MAX_QUERY_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
)
from actors.wire import ORIGIN_RE, PROTOCOL_HEADER, PROTOCOL_VERSION, VERSION_RE, HubLimits

__all__ = ["openapi_document"]

_UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_VERSION = f"^{VERSION_RE.pattern}$"
_HASH = "^([0-9a-f]{64})?$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_AUTH_ERRORS = {
    "401": _error("Missing or unknown API key (`missing_key`, `unknown_key`)."),
    "403": _error("The API key was revoked (`key_revoked`)."),
    "400": _error(
        "Bad query parameter (`invalid_parameter`) or protocol version (`unsupported_protocol`)."
    ),
    "503": _error("The hub's storage is unavailable or slow (`unavailable`); retry later."),
}

_BODY_ERRORS = {
    "400": _error(
        "Malformed JSON or a body that is not UTF-8 (`malformed_json`), a bad query parameter "
        "(`invalid_parameter`) or protocol version (`unsupported_protocol`)."
    ),
    "413": _error("The body is larger than `max_body_bytes` (`payload_too_large`)."),
    "415": _error("The body is not `application/json` (`unsupported_media_type`)."),
    "422": _error(
        "The JSON does not have the expected shape (`invalid_body`), or one item is invalid "
        "(`invalid_item`, with `details.index` and `details.field`). Nothing was applied."
    ),
}


def _schemas(limits: HubLimits) -> dict[str, Any]:
    memory_id = {"type": "string", "pattern": _UUID, "description": "A UUID (lower-case)."}
    version = {
        "type": "string",
        "pattern": _VERSION,
        "description": "Hybrid-logical-clock version: 13 hex digits of Unix milliseconds then "
        "6 of logical counter; versions sort as strings.",
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "description": "Machine-readable code."},
                        "message": {"type": "string", "description": "What happened, for people."},
                        "details": {"type": "object"},
                    },
                }
            },
        },
        "Memory": {
            "type": "object",
            "description": "A memory or a tombstone (`deleted: true`: no content, tags or "
            "metadata). Unknown fields are ignored.",
            "required": ["id", "namespace", "version", "origin", "created_at", "updated_at"],
            "properties": {
                "id": memory_id,
                "namespace": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"},
                "content": {
                    "type": "string",
                    "description": f"Required unless deleted; at most {limits.max_content_bytes} "
                    "bytes of UTF-8 once normalised (NFC, trimmed).",
                },
                "content_hash": {
                    "type": "string",
                    "pattern": _HASH,
                    "description": "SHA-256 of the normalised content; the hub recomputes it "
                    "and refuses a mismatch.",
                },
                "tags": {
                    "type": "array",
                    "maxItems": MAX_TAGS,
                    "items": {"type": "string", "maxLength": MAX_TAG_CHARS},
                },
                "metadata": {
                    "type": "object",
                    "description": f"At most {MAX_METADATA_BYTES} bytes as compact JSON.",
                },
                "created_at": {"type": "number", "minimum": 0},
                "updated_at": {"type": "number", "minimum": 0},
                "version": version,
                "origin": {
                    "type": "string",
                    "pattern": f"^{ORIGIN_RE.pattern}$",
                    "description": "The replica that wrote this version; breaks version ties.",
                },
                "deleted": {"type": "boolean", "default": False},
                "key": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_KEY_CHARS,
                    "description": (
                        "Present on a key-addressed memory: its id must be the UUIDv5 of "
                        "namespace and key; it takes no part in content dedup. Tombstones "
                        "keep it."
                    ),
                },
            },
        },
        "PushRequest": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": limits.max_batch_items,
                    "items": _ref("Memory"),
                }
            },
        },
        "ItemResult": {
            "type": "object",
            "required": ["id", "status", "version"],
            "properties": {
                "id": memory_id,
                "status": {
                    "type": "string",
                    "enum": ["applied", "unchanged", "stale", "duplicate"],
                    "description": "applied: stored. unchanged: the hub already had this exact "
                    "version. stale: the hub holds a newer version (`version`). duplicate: the "
                    "namespace holds this content under `canonical_id`; the item was not stored.",
                },
                "version": {
                    **version,
                    "description": "The hub's current version of the id "
                    "(of `canonical_id` for a duplicate).",
                },
                "canonical_id": memory_id,
            },
        },
        "PushResponse": {
            "type": "object",
            "required": ["results"],
            "properties": {"results": {"type": "array", "items": _ref("ItemResult")}},
        },
        "Change": {
            "type": "object",
            "required": ["seq", "memory"],
            "properties": {
                "seq": {"type": "integer", "minimum": 1},
                "memory": _ref("Memory"),
            },
        },
        "ChangesPage": {
            "type": "object",
            "required": ["changes", "next_cursor", "has_more"],
            "properties": {
                "changes": {"type": "array", "items": _ref("Change")},
                "next_cursor": {"type": "string", "description": "Opaque; pass as `since`."},
                "has_more": {"type": "boolean"},
            },
        },
        "DigestEntry": {
            "type": "object",
            "required": ["id", "namespace", "content_hash", "version", "origin", "deleted"],
            "properties": {
                "id": memory_id,
                "namespace": {"type": "string"},
                "content_hash": {"type": "string", "pattern": _HASH},
                "version": version,
                "origin": {"type": "string"},
                "deleted": {"type": "boolean"},
            },
        },
        "DigestPage": {
            "type": "object",
            "required": ["entries", "next_after", "has_more", "cursor"],
            "properties": {
                "entries": {"type": "array", "items": _ref("DigestEntry")},
                "next_after": {"type": ["string", "null"], "description": "Pass as `after`."},
                "has_more": {"type": "boolean"},
                "cursor": {
                    "type": "string",
                    "description": "The change-feed position when this page was read.",
                },
            },
        },
        "Counts": {
            "type": "object",
            "required": ["total", "by_namespace", "forgotten", "cursor"],
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "by_namespace": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
                "forgotten": {"type": "integer", "minimum": 0},
                "cursor": {"type": "string"},
            },
        },
        "Limits": {
            "type": "object",
            "required": [
                "max_body_bytes",
                "max_batch_items",
                "max_changes_limit",
                "max_digest_limit",
                "max_recall_limit",
                "max_content_bytes",
            ],
            "properties": {
                "max_body_bytes": {"type": "integer", "const": limits.max_body_bytes},
                "max_batch_items": {"type": "integer", "const": limits.max_batch_items},
                "max_changes_limit": {"type": "integer", "const": limits.max_changes_limit},
                "max_digest_limit": {"type": "integer", "const": limits.max_digest_limit},
                "max_recall_limit": {"type": "integer", "const": limits.max_recall_limit},
                "max_content_bytes": {"type": "integer", "const": limits.max_content_bytes},
            },
        },
        "AuthInfo": {
            "type": "object",
            "required": ["tenant", "key_id", "protocol", "limits"],
            "properties": {
                "tenant": {"type": "string"},
                "key_id": {"type": "string"},
                "protocol": {"type": "integer", "const": PROTOCOL_VERSION},
                "limits": _ref("Limits"),
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "protocol"],
            "properties": {
                "status": {"type": "string", "const": "ok"},
                "protocol": {"type": "integer", "const": PROTOCOL_VERSION},
            },
        },
        "RecallRequest": {
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
                "namespace": {"type": ["string", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "integer", "minimum": 1, "maximum": limits.max_recall_limit},
                "namespace_prefix": {
                    "type": ["string", "null"],
                    "pattern": "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
                    "description": "Optional: only this namespace and those below it "
                    "(`users/alice` keeps `users/alice/prefs`, not `users/alicex`); no empty "
                    "segment. Added within protocol 1: a hub that predates it ignores it, "
                    "and clients filter such a hub's hits themselves.",
                },
            },
        },
        "RecallResponse": {
            "type": "object",
            "required": ["hits"],
            "properties": {
                "hits": {
                    "type": "array",
                    "description": "Best first; only the tenant's live memories that pass the "
                    "filters.",
                    "items": {
                        "type": "object",
                        "required": ["id", "namespace", "content", "score", "created_at"],
                        "properties": {
                            "id": memory_id,
                            "namespace": {"type": "string"},
                            "content": {"type": "string"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "score": {
                                "type": "number",
                                "description": "What the hub ranked by (higher is better); "
                                "comparable only within one answer.",
                            },
                            "similarity": {
                                "type": ["number", "null"],
                                "description": "Cosine similarity of the memory's vector with "
                                "the query's; null when only keywords found it.",
                            },
                            "created_at": {"type": "number"},
                        },
                    },
                },
                "ranking": {
                    "type": "string",
                    "enum": ["vector", "hybrid", "keyword"],
                    "description": "vector: cosine similarity of embeddings, boosted for "
                    "memories holding the query's exact identifiers (codes, hosts); hybrid: the "
                    "hashing fallback fused with keyword relevance (reciprocal-rank fusion); "
                    "keyword: no vector ranking was available (`note` says why).",
                },
                "embedder": {
                    "description": "The embedder of the vector ranking. `semantic: false` is "
                    "the hashing fallback, which matches shared words, not meaning.",
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["name", "dimension", "semantic"],
                            "properties": {
                                "name": {"type": "string"},
                                "dimension": {"type": "integer", "minimum": 1},
                                "semantic": {"type": "boolean"},
                            },
                        },
                    ],
                },
                "pending": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The tenant's memories not searchable by vector yet "
                    "(being embedded); keywords still find them.",
                },
                "note": {"type": "string", "description": "Why the answer is limited, if it is."},
            },
        },
    }


def _limit_param(default: int, maximum: int, what: str) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"How many {what} per page (default {default}).",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def openapi_document(limits: HubLimits | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a hub with ``limits`` (the defaults when None)."""
    limits = limits or HubLimits()
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memory-actors hub",
            "version": str(PROTOCOL_VERSION),
            "summary": "Sync hub for memory-actors: push, pull, reconcile, recall.",
            "description": (
                "Protocol version 1. Every `/api` request carries `Authorization: Bearer "
                "<key>`; each key belongs to one tenant, and a tenant only ever sees its own "
                f"memories. Every response carries the `{PROTOCOL_HEADER}` header. Errors are "
                '`{"error": {"code", "message", "details"?}}`. Prose: docs/hub-protocol.md.'
            ),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `memory-actors hub keys add TENANT`.",
                }
            },
            "schemas": _schemas(limits),
        },
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and readiness; no key needed.",
                    "responses": {
                        "200": _json(_ref("Health"), "The hub serves requests."),
                        "503": _error("The hub's storage is not ready."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document; no key needed.",
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
                }
            },
            "/api/auth-check": {
                "get": {
                    "operationId": "authCheck",
                    "summary": "Validate the key cheaply; learn the tenant and the hub's limits.",
                    "security": secured,
                    "responses": {
                        "200": _json(_ref("AuthInfo"), "The key is valid."),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/memories/batch": {
                "post": {
                    "operationId": "push",
                    "summary": "Push upserts and tombstones; idempotent by memory id.",
                    "description": (
                        "Applied atomically: an invalid item refuses the whole batch (422 with "
                        "its index). For each item, last writer wins by (version, origin); a "
                        "second push of the same batch changes nothing (`unchanged`); content "
                        "already live under another id in the namespace answers `duplicate` "
                        "with `canonical_id`."
                    ),
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("PushRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("PushResponse"), "One result per item, in order."),
                        **_AUTH_ERRORS,
                        **_BODY_ERRORS,
                    },
                }
            },
            "/api/changes": {
                "get": {
                    "operationId": "changes",
                    "summary": "Pull the tenant's changes in server order, paged by cursor.",
                    "description": (
                        "Each change is the memory's current state at the sequence number of "
                        "its latest change; a memory changed again moves to the end of the feed, "
                        "so following `next_cursor` until `has_more` is false never misses a "
                        "change."
                    ),
                    "security": secured,
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "description": "A `next_cursor` from this hub; omit to start over.",
                            "schema": {"type": "string"},
                        },
                        _limit_param(500, limits.max_changes_limit, "changes"),
                    ],
                    "responses": {
                        "200": _json(_ref("ChangesPage"), "A page of changes."),
                        "409": _error(
                            "The cursor was issued by another hub database or is ahead of the "
                            "feed (`cursor_reset`): pull again without `since`."
                        ),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/memories/digest": {
                "get": {
                    "operationId": "digest",
                    "summary": "Page through (id, content hash, version) of every memory, by id.",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "description": "A `next_after` from the previous page.",
                            "schema": {"type": "string", "pattern": _UUID},
                        },
                        _limit_param(1000, limits.max_digest_limit, "entries"),
                    ],
                    "responses": {
                        "200": _json(_ref("DigestPage"), "A page of the digest."),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/count": {
                "get": {
                    "operationId": "count",
                    "summary": "Live memories per namespace, and tombstones.",
                    "security": secured,
                    "responses": {
                        "200": _json(_ref("Counts"), "The tenant's totals."),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/api/recall": {
                "post": {
                    "operationId": "recall",
                    "summary": "Semantic search over the tenant's memories.",
                    "description": "Ranks the tenant's live memories by the similarity of "
                    "their embeddings to the query's, with keyword relevance where it ranks "
                    "better (see `ranking`); `namespace`, `namespace_prefix` and all of `tags` "
                    "filter. Memories are embedded in the background after each push: "
                    "`pending` counts those not searchable by vector yet. A hub started "
                    "with `--embedder none` answers 501 and clients fall back to local recall.",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RecallRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("RecallResponse"), "Matches, best first."),
                        "501": _error("This hub serves no semantic recall (`not_implemented`)."),
                        **_AUTH_ERRORS,
                        **_BODY_ERRORS,
                    },
                }
            },
        },
    }
