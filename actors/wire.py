"""The hub protocol's wire shapes (version 1): one definition for both sides.

Every record is a frozen attrs class with ``to_json()`` (what goes on the
wire) and ``parse(data)`` (what comes off it, validated and normalised). The
hub parses requests with these and answers 422 on a :class:`ShapeError`; the
client (:mod:`actors.remote`) parses the hub's answers with the same code and
raises :class:`~actors.errors.HubProtocolError` on one. Content, tags,
metadata, namespaces and ids go through the validators of
:mod:`actors.model`, so the hub enforces exactly the client's limits.

This module is pure (no I/O). ``docs/hub-protocol.md`` is the prose version;
``actors/hub/openapi.py`` the machine-readable one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import attrs

from actors.errors import InvalidMemory
from actors.model import (
    MAX_CONTENT_BYTES,
    MAX_LIMIT,
    Memory,
    content_hash,
    normalize_content,
    normalize_metadata,
    normalize_namespace,
    normalize_tags,
    validate_id,
    validate_query,
)

__all__ = [
    "DEFAULT_CHANGES_LIMIT",
    "DEFAULT_DIGEST_LIMIT",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "AuthInfo",
    "Change",
    "ChangesPage",
    "DigestEntry",
    "DigestPage",
    "EmbedderInfo",
    "ErrorBody",
    "Health",
    "HubCounts",
    "HubLimits",
    "ItemResult",
    "ItemStatus",
    "PushResult",
    "RecallHits",
    "RecallQuery",
    "RecallRanking",
    "RemoteHit",
    "ShapeError",
    "WireMemory",
    "parse_push_request",
    "push_request",
]

#: The protocol version this code speaks. A hub answers every response with
#: it in :data:`PROTOCOL_HEADER`; a client may send it, and a hub refuses a
#: version it does not speak (400 ``unsupported_protocol``).
PROTOCOL_VERSION: Final = 1
PROTOCOL_HEADER: Final = "Memory-Hub-Protocol"

DEFAULT_CHANGES_LIMIT: Final = 500
DEFAULT_DIGEST_LIMIT: Final = 1000

#: A version is a hybrid-logical-clock reading from :func:`actors.model.format_version`:
#: 13 hex digits of milliseconds and 6 of logical counter, so versions sort as strings.
VERSION_RE: Final = re.compile(r"[0-9a-f]{19}")
#: An origin names the replica that wrote a version (a store's origin is a UUID).
ORIGIN_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")

ItemStatus: TypeAlias = Literal["applied", "unchanged", "stale", "duplicate"]
ITEM_STATUSES: Final[tuple[str, ...]] = get_args(ItemStatus)


class ShapeError(ValueError):
    """A JSON document does not have the protocol's shape; ``path`` names the field.

    Internal to the hub package and :mod:`actors.remote`: the hub turns it into
    a 422 answer, the client into :class:`~actors.errors.HubProtocolError`.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# -- field readers ------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(path, f"must be a JSON object, not {_type_name(value)}")
    return value


def _required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise ShapeError(_join(path, key), "is required")
    return obj[key]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ShapeError(path, f"must be a string, not {_type_name(value)}")
    return value


def _integer(value: object, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShapeError(path, f"must be an integer, not {_type_name(value)}")
    if value < minimum:
        raise ShapeError(path, f"must be at least {minimum}, got {value}")
    return value


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(path, f"must be a number, not {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ShapeError(path, f"must be a finite number >= 0, got {value!r}")
    return number


def _finite(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(path, f"must be a number, not {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ShapeError(path, f"must be a finite number, got {value!r}")
    return number


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ShapeError(path, f"must be true or false, not {_type_name(value)}")
    return value


def _array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ShapeError(path, f"must be an array, not {_type_name(value)}")
    return value


def _matching(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    text = _string(value, path)
    if not pattern.fullmatch(text):
        raise ShapeError(path, f"{text[:80]!r} is not {what}")
    return text


def _version(value: object, path: str) -> str:
    return _matching(
        value, path, VERSION_RE, "a version (19 lower-case hex digits from the hybrid clock)"
    )


def _memory_id(value: object, path: str) -> str:
    try:
        return validate_id(value)
    except InvalidMemory as exc:
        raise ShapeError(path, str(exc)) from None


def _validated(path: str, check: Any, value: object) -> Any:
    try:
        return check(value)
    except InvalidMemory as exc:
        raise ShapeError(path, str(exc)) from None


# -- records ------------------------------------------------------------------------


@attrs.frozen
class WireMemory:
    """One memory on the wire: an upsert or a tombstone (``deleted``), pushed or pulled.

    ``content_hash`` is recomputed from ``content`` when parsed (a sent hash
    that does not match is refused). A tombstone carries no content, tags or
    metadata: forgetting erases them everywhere.
    """

    id: str
    namespace: str
    content: str
    content_hash: str
    tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float
    version: str
    origin: str
    deleted: bool = False

    @classmethod
    def from_memory(cls, memory: Memory) -> WireMemory:
        """The wire form of a local :class:`~actors.model.Memory` (tombstones included)."""
        return cls(
            id=memory.id,
            namespace=memory.namespace,
            content="" if memory.deleted else memory.content,
            content_hash=memory.content_hash,
            tags=() if memory.deleted else memory.tags,
            metadata={} if memory.deleted else dict(memory.metadata),
            created_at=memory.created_at,
            updated_at=memory.updated_at,
            version=memory.version,
            origin=memory.origin,
            deleted=memory.deleted,
        )

    def metadata_json(self) -> str:
        """Metadata as the compact, key-sorted JSON text both stores keep."""
        return normalize_metadata(self.metadata)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "content": self.content,
            "content_hash": self.content_hash,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "origin": self.origin,
            "deleted": self.deleted,
        }

    @classmethod
    def parse(cls, data: object, path: str = "") -> WireMemory:
        obj = _object(data, path)
        memory_id = _memory_id(_required(obj, "id", path), _join(path, "id"))
        namespace = _validated(
            _join(path, "namespace"),
            normalize_namespace,
            _string(_required(obj, "namespace", path), _join(path, "namespace")),
        )
        deleted = _boolean(obj.get("deleted", False), _join(path, "deleted"))
        version = _version(_required(obj, "version", path), _join(path, "version"))
        origin = _matching(
            _required(obj, "origin", path),
            _join(path, "origin"),
            ORIGIN_RE,
            "an origin (1-128 characters from letters, digits and . _ : -)",
        )
        created_at = _number(_required(obj, "created_at", path), _join(path, "created_at"))
        updated_at = _number(_required(obj, "updated_at", path), _join(path, "updated_at"))
        sent_hash = obj.get("content_hash")
        if sent_hash is not None:
            _string(sent_hash, _join(path, "content_hash"))
        if deleted:
            for key, empty in (("content", ""), ("tags", []), ("metadata", {})):
                if obj.get(key, empty) not in (empty, None):
                    raise ShapeError(
                        _join(path, key),
                        f"a tombstone (deleted: true) must not carry {key}; forgetting erases it",
                    )
            digest = sent_hash or ""
            if digest and not _HASH_RE.fullmatch(digest):
                raise ShapeError(_join(path, "content_hash"), "is not a SHA-256 hex digest")
            return cls(
                memory_id,
                namespace,
                "",
                digest,
                (),
                {},
                created_at,
                updated_at,
                version,
                origin,
                True,
            )
        content = _validated(
            _join(path, "content"), normalize_content, _required(obj, "content", path)
        )
        digest = content_hash(content)
        if sent_hash is not None and sent_hash != digest:
            raise ShapeError(
                _join(path, "content_hash"),
                "does not match content (expected the SHA-256 of the NFC-normalised, "
                f"trimmed content: {digest})",
            )
        tags = _validated(_join(path, "tags"), normalize_tags, obj.get("tags"))
        metadata_text = _validated(_join(path, "metadata"), normalize_metadata, obj.get("metadata"))
        metadata = _metadata_from_text(metadata_text)
        return cls(
            memory_id,
            namespace,
            content,
            digest,
            tags,
            metadata,
            created_at,
            updated_at,
            version,
            origin,
            False,
        )


def _metadata_from_text(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value


def push_request(items: Sequence[WireMemory]) -> dict[str, Any]:
    """The body of ``POST /api/memories/batch``."""
    return {"items": [item.to_json() for item in items]}


def parse_push_request(data: object, *, max_items: int) -> tuple[WireMemory, ...]:
    """Validate a push body: ``{"items": [WireMemory, ...]}`` with 1..max_items items."""
    obj = _object(data, "body")
    items = _array(_required(obj, "items", ""), "items")
    if not items:
        raise ShapeError("items", "must hold at least one memory")
    if len(items) > max_items:
        raise ShapeError(
            "items", f"holds {len(items)} memories; at most {max_items} per batch are allowed"
        )
    return tuple(WireMemory.parse(item, f"items[{index}]") for index, item in enumerate(items))


@attrs.frozen
class ItemResult:
    """What the hub did with one pushed item, in the order of the batch.

    - ``applied``: stored (new, or newer than the hub's version of the id);
    - ``unchanged``: the hub already held exactly this version (a replay);
    - ``stale``: the hub holds a newer version (``version``); pull to get it;
    - ``duplicate``: the namespace already holds this content under
      ``canonical_id``; the pushed id was not stored. Re-key the local memory.

    ``version`` is the hub's current version of ``id`` (of ``canonical_id``
    for a duplicate).
    """

    id: str
    status: ItemStatus
    version: str
    canonical_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "status": self.status, "version": self.version}
        if self.canonical_id is not None:
            data["canonical_id"] = self.canonical_id
        return data

    @classmethod
    def parse(cls, data: object, path: str = "") -> ItemResult:
        obj = _object(data, path)
        memory_id = _memory_id(_required(obj, "id", path), _join(path, "id"))
        status = _string(_required(obj, "status", path), _join(path, "status"))
        if status not in ITEM_STATUSES:
            raise ShapeError(_join(path, "status"), f"{status!r} is not one of {ITEM_STATUSES}")
        version = _version(_required(obj, "version", path), _join(path, "version"))
        canonical = obj.get("canonical_id")
        if status == "duplicate":
            canonical_id: str | None = _memory_id(
                _required(obj, "canonical_id", path), _join(path, "canonical_id")
            )
        elif canonical is not None:
            raise ShapeError(_join(path, "canonical_id"), "is only sent with status 'duplicate'")
        else:
            canonical_id = None
        return cls(memory_id, cast("ItemStatus", status), version, canonical_id)


@attrs.frozen
class PushResult:
    """The answer to a push: one :class:`ItemResult` per item, in order."""

    results: tuple[ItemResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {"results": [result.to_json() for result in self.results]}

    @classmethod
    def parse(cls, data: object, path: str = "") -> PushResult:
        obj = _object(data, path)
        items = _array(_required(obj, "results", path), _join(path, "results"))
        return cls(
            tuple(
                ItemResult.parse(item, f"{_join(path, 'results')}[{index}]")
                for index, item in enumerate(items)
            )
        )


@attrs.frozen
class Change:
    """One entry of the change feed: the current state of a memory and its feed position.

    ``seq`` is the tenant's server sequence number of the memory's latest
    change: a memory changed again moves to the end of the feed.
    """

    seq: int
    memory: WireMemory

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "memory": self.memory.to_json()}

    @classmethod
    def parse(cls, data: object, path: str = "") -> Change:
        obj = _object(data, path)
        seq = _integer(_required(obj, "seq", path), _join(path, "seq"), minimum=1)
        return cls(seq, WireMemory.parse(_required(obj, "memory", path), _join(path, "memory")))


@attrs.frozen
class ChangesPage:
    """A page of the change feed, in server order.

    Pass ``next_cursor`` as ``since`` to continue; ``has_more`` says whether
    the next page is already waiting. ``next_cursor`` is opaque.
    """

    changes: tuple[Change, ...]
    next_cursor: str
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [change.to_json() for change in self.changes],
            "next_cursor": self.next_cursor,
            "has_more": self.has_more,
        }

    @classmethod
    def parse(cls, data: object, path: str = "") -> ChangesPage:
        obj = _object(data, path)
        changes = _array(_required(obj, "changes", path), _join(path, "changes"))
        return cls(
            tuple(
                Change.parse(item, f"{_join(path, 'changes')}[{index}]")
                for index, item in enumerate(changes)
            ),
            _string(_required(obj, "next_cursor", path), _join(path, "next_cursor")),
            _boolean(_required(obj, "has_more", path), _join(path, "has_more")),
        )


@attrs.frozen
class DigestEntry:
    """What reconciliation compares for one memory: identity, content hash, version."""

    id: str
    namespace: str
    content_hash: str
    version: str
    origin: str
    deleted: bool

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def parse(cls, data: object, path: str = "") -> DigestEntry:
        obj = _object(data, path)
        return cls(
            id=_memory_id(_required(obj, "id", path), _join(path, "id")),
            namespace=_string(_required(obj, "namespace", path), _join(path, "namespace")),
            content_hash=_string(_required(obj, "content_hash", path), _join(path, "content_hash")),
            version=_version(_required(obj, "version", path), _join(path, "version")),
            origin=_string(_required(obj, "origin", path), _join(path, "origin")),
            deleted=_boolean(_required(obj, "deleted", path), _join(path, "deleted")),
        )


@attrs.frozen
class DigestPage:
    """A page of every memory of the tenant (tombstones included), ordered by id.

    Pass ``next_after`` as ``after`` to continue (None: this was the last
    page). ``cursor`` is the change-feed position when the page was read:
    pull changes since the first page's cursor after a full resync.
    """

    entries: tuple[DigestEntry, ...]
    next_after: str | None
    has_more: bool
    cursor: str

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [entry.to_json() for entry in self.entries],
            "next_after": self.next_after,
            "has_more": self.has_more,
            "cursor": self.cursor,
        }

    @classmethod
    def parse(cls, data: object, path: str = "") -> DigestPage:
        obj = _object(data, path)
        entries = _array(_required(obj, "entries", path), _join(path, "entries"))
        after = _required(obj, "next_after", path)
        return cls(
            tuple(
                DigestEntry.parse(item, f"{_join(path, 'entries')}[{index}]")
                for index, item in enumerate(entries)
            ),
            None if after is None else _memory_id(after, _join(path, "next_after")),
            _boolean(_required(obj, "has_more", path), _join(path, "has_more")),
            _string(_required(obj, "cursor", path), _join(path, "cursor")),
        )


@attrs.frozen
class HubCounts:
    """The tenant's live memories per namespace, its tombstones, and the feed position."""

    total: int
    by_namespace: Mapping[str, int]
    forgotten: int
    cursor: str

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_namespace": dict(self.by_namespace),
            "forgotten": self.forgotten,
            "cursor": self.cursor,
        }

    @classmethod
    def parse(cls, data: object, path: str = "") -> HubCounts:
        obj = _object(data, path)
        spaces = _object(_required(obj, "by_namespace", path), _join(path, "by_namespace"))
        return cls(
            _integer(_required(obj, "total", path), _join(path, "total")),
            {
                _string(name, _join(path, "by_namespace")): _integer(
                    count, _join(_join(path, "by_namespace"), name)
                )
                for name, count in spaces.items()
            },
            _integer(_required(obj, "forgotten", path), _join(path, "forgotten")),
            _string(_required(obj, "cursor", path), _join(path, "cursor")),
        )


@attrs.frozen
class HubLimits:
    """What one request may hold. A hub announces its limits in ``GET /api/auth-check``.

    Defaults: 8 MiB per body and 500 memories per batch. Typical memories (a
    few hundred bytes) make batches of well under 1 MiB; 500 memories near the
    64 KiB content limit exceed the body limit, are refused with 413, and the
    client sends smaller batches.
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_items: int = 500
    max_changes_limit: int = 1000
    max_digest_limit: int = 5000
    max_recall_limit: int = MAX_LIMIT
    max_content_bytes: int = MAX_CONTENT_BYTES

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def parse(cls, data: object, path: str = "") -> HubLimits:
        obj = _object(data, path)
        return cls(
            **{
                field.name: _integer(
                    _required(obj, field.name, path), _join(path, field.name), minimum=1
                )
                for field in attrs.fields(cls)
            }
        )


@attrs.frozen
class AuthInfo:
    """The answer to ``GET /api/auth-check``: whose key this is and what the hub accepts."""

    tenant: str
    key_id: str
    protocol: int
    limits: HubLimits

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "protocol": self.protocol,
            "limits": self.limits.to_json(),
        }

    @classmethod
    def parse(cls, data: object, path: str = "") -> AuthInfo:
        obj = _object(data, path)
        return cls(
            _string(_required(obj, "tenant", path), _join(path, "tenant")),
            _string(_required(obj, "key_id", path), _join(path, "key_id")),
            _integer(_required(obj, "protocol", path), _join(path, "protocol"), minimum=1),
            HubLimits.parse(_required(obj, "limits", path), _join(path, "limits")),
        )


@attrs.frozen
class Health:
    """The answer to ``GET /healthz`` (no key needed)."""

    status: str
    protocol: int

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "protocol": self.protocol}

    @classmethod
    def parse(cls, data: object, path: str = "") -> Health:
        obj = _object(data, path)
        return cls(
            _string(_required(obj, "status", path), _join(path, "status")),
            _integer(_required(obj, "protocol", path), _join(path, "protocol"), minimum=1),
        )


@attrs.frozen
class RecallQuery:
    """The body of ``POST /api/recall``: semantic search over the tenant's memories."""

    query: str
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    limit: int = 10

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "namespace": self.namespace,
            "tags": list(self.tags),
            "limit": self.limit,
        }

    @classmethod
    def parse(cls, data: object, path: str = "", *, max_limit: int = MAX_LIMIT) -> RecallQuery:
        obj = _object(data, path)
        query = _validated(_join(path, "query"), validate_query, _required(obj, "query", path))
        namespace = obj.get("namespace")
        if namespace is not None:
            namespace = _validated(
                _join(path, "namespace"),
                normalize_namespace,
                _string(namespace, _join(path, "namespace")),
            )
        tags = _validated(_join(path, "tags"), normalize_tags, obj.get("tags"))
        limit = _integer(obj.get("limit", 10), _join(path, "limit"), minimum=1)
        if limit > max_limit:
            raise ShapeError(_join(path, "limit"), f"must be at most {max_limit}, got {limit}")
        return cls(query, namespace, tags, limit)


@attrs.frozen
class RemoteHit:
    """One match from the hub, in rank order.

    ``score`` is what the hub ranked by (higher is better; comparable only
    within one answer of one ``ranking``). ``similarity`` is the cosine
    similarity of the memory's vector with the query's, when the vector
    ranking found it (None: found by keywords only, or sent by a hub that
    does not report it).
    """

    id: str
    namespace: str
    content: str
    tags: tuple[str, ...]
    score: float
    created_at: float
    similarity: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def parse(cls, data: object, path: str = "") -> RemoteHit:
        obj = _object(data, path)
        score = _finite(_required(obj, "score", path), _join(path, "score"))
        similarity = obj.get("similarity")
        tags = _array(obj.get("tags", []), _join(path, "tags"))
        return cls(
            id=_memory_id(_required(obj, "id", path), _join(path, "id")),
            namespace=_string(_required(obj, "namespace", path), _join(path, "namespace")),
            content=_string(_required(obj, "content", path), _join(path, "content")),
            tags=tuple(_string(tag, _join(path, "tags")) for tag in tags),
            score=score,
            created_at=_number(_required(obj, "created_at", path), _join(path, "created_at")),
            similarity=None
            if similarity is None
            else _finite(similarity, _join(path, "similarity")),
        )


@attrs.frozen
class EmbedderInfo:
    """Which embedder made the vectors a recall compared: name, dimension, and whether it
    models meaning (``semantic``) or is the keyword-ish hashing fallback."""

    name: str
    dimension: int
    semantic: bool

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def parse(cls, data: object, path: str = "") -> EmbedderInfo:
        obj = _object(data, path)
        return cls(
            _string(_required(obj, "name", path), _join(path, "name")),
            _integer(_required(obj, "dimension", path), _join(path, "dimension"), minimum=1),
            _boolean(_required(obj, "semantic", path), _join(path, "semantic")),
        )


RecallRanking: TypeAlias = Literal["vector", "hybrid", "keyword"]
RECALL_RANKINGS: Final[tuple[str, ...]] = get_args(RecallRanking)


@attrs.frozen
class RecallHits:
    """The answer to ``POST /api/recall``: matches, best first, and how they were ranked.

    - ``ranking``: ``vector`` (cosine similarity with the query's embedding,
      boosted for memories holding the query's exact identifiers), ``hybrid``
      (the hashing fallback's ranking fused with keyword relevance), or
      ``keyword`` (no vector ranking was available; ``note`` says why). None
      from a hub that does not say.
    - ``embedder``: the embedder of the vector ranking (``semantic: false``
      for the hashing fallback, which only matches shared words), or None.
    - ``pending``: the tenant's memories still waiting for a vector; they can
      only be found by keywords until they have one.
    - ``note``: a sentence for people when something limited the answer.
    """

    hits: tuple[RemoteHit, ...]
    ranking: RecallRanking | None = None
    embedder: EmbedderInfo | None = None
    pending: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"hits": [hit.to_json() for hit in self.hits]}
        if self.ranking is not None:
            data["ranking"] = self.ranking
        data["embedder"] = None if self.embedder is None else self.embedder.to_json()
        data["pending"] = self.pending
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def parse(cls, data: object, path: str = "") -> RecallHits:
        obj = _object(data, path)
        hits = _array(_required(obj, "hits", path), _join(path, "hits"))
        ranking = obj.get("ranking")
        if ranking is not None:
            _string(ranking, _join(path, "ranking"))
            if ranking not in RECALL_RANKINGS:
                ranking = None  # a ranking added by a later hub: still an answer
        embedder = obj.get("embedder")
        return cls(
            tuple(
                RemoteHit.parse(hit, f"{_join(path, 'hits')}[{index}]")
                for index, hit in enumerate(hits)
            ),
            cast("RecallRanking | None", ranking),
            None if embedder is None else EmbedderInfo.parse(embedder, _join(path, "embedder")),
            _integer(obj.get("pending", 0), _join(path, "pending")),
            _string(obj.get("note", ""), _join(path, "note")),
        )


@attrs.frozen
class ErrorBody:
    """Every error answer: ``{"error": {"code": ..., "message": ..., "details": {...}}}``."""

    code: str
    message: str
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = dict(self.details)
        return {"error": error}

    @classmethod
    def parse(cls, data: object, path: str = "") -> ErrorBody:
        obj = _object(data, path)
        error = _object(_required(obj, "error", path), _join(path, "error"))
        details = error.get("details", {})
        return cls(
            _string(_required(error, "code", "error"), "error.code"),
            _string(_required(error, "message", "error"), "error.message"),
            dict(_object(details, "error.details")),
        )
