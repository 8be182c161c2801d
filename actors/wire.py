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
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import attrs

from actors._shapes import (
    ShapeError,
    field,
    join,
    matching,
    read_array,
    read_boolean,
    read_finite,
    read_integer,
    read_memory_id,
    read_number,
    read_object,
    read_string,
    required,
    validated,
)
from actors.model import (
    MAX_CONTENT_BYTES,
    MAX_LIMIT,
    Memory,
    content_hash,
    keyed_memory_id,
    normalize_content,
    normalize_metadata,
    normalize_namespace,
    normalize_namespace_prefix,
    normalize_tags,
    validate_key,
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


def _version(value: object, path: str) -> str:
    return matching(
        value, path, VERSION_RE, "a version (19 lower-case hex digits from the hybrid clock)"
    )


# -- records ------------------------------------------------------------------------


@attrs.frozen
class WireMemory:
    """One memory on the wire: an upsert or a tombstone (``deleted``), pushed or pulled.

    ``content_hash`` is recomputed from ``content`` when parsed (a sent hash
    that does not match is refused). A tombstone carries no content, tags or
    metadata: forgetting erases them everywhere.

    ``key`` (optional, absent for memories stored by content) marks a keyed
    memory: its id must be ``keyed_memory_id(namespace, key)``, it takes no
    part in content dedup, and its tombstone keeps the key (an address, not
    content).
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
    key: str | None = None
    #: ``metadata`` as :meth:`metadata_json` gives it, when :meth:`parse` already
    #: encoded it to validate it: every store writes that text, and an import
    #: encoded each line's twice. Not part of the value (``eq``); an
    #: ``attrs.evolve`` that changes ``metadata`` must pass ``metadata_text=None``.
    #: Never sent (``to_json`` leaves it out; ``wire: False`` tells the schema test).
    metadata_text: str | None = attrs.field(
        default=None, eq=False, repr=False, kw_only=True, metadata={"wire": False}
    )

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
            key=memory.key,
        )

    def metadata_json(self) -> str:
        """Metadata as the compact, key-sorted JSON text both stores keep."""
        if self.metadata_text is not None:
            return self.metadata_text
        return normalize_metadata(self.metadata)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
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
        # Absent rather than null: a hub older than keys reads the record as before.
        if self.key is not None:
            data["key"] = self.key
        return data

    @classmethod
    def parse(cls, data: object, path: str = "") -> WireMemory:
        obj = read_object(data, path)
        memory_id = field(obj, "id", path, read_memory_id)
        namespace = validated(
            join(path, "namespace"),
            normalize_namespace,
            field(obj, "namespace", path, read_string),
        )
        memory_key: str | None = None
        if obj.get("key") is not None:
            memory_key = validated(join(path, "key"), validate_key, obj["key"])
            expected = keyed_memory_id(namespace, memory_key)
            if memory_id != expected:
                raise ShapeError(
                    join(path, "id"),
                    "does not match key: a keyed memory's id is the UUIDv5 of its "
                    f"namespace and key ({expected})",
                )
        deleted = read_boolean(obj.get("deleted", False), join(path, "deleted"))
        version = field(obj, "version", path, _version)
        origin = field(
            obj,
            "origin",
            path,
            matching,
            ORIGIN_RE,
            "an origin (1-128 characters from letters, digits and . _ : -)",
        )
        created_at = field(obj, "created_at", path, read_number)
        updated_at = field(obj, "updated_at", path, read_number)
        sent_hash = obj.get("content_hash")
        if sent_hash is not None:
            read_string(sent_hash, join(path, "content_hash"))
        if deleted:
            for key, empty in (("content", ""), ("tags", []), ("metadata", {})):
                if obj.get(key, empty) not in (empty, None):
                    raise ShapeError(
                        join(path, key),
                        f"a tombstone (deleted: true) must not carry {key}; forgetting erases it",
                    )
            digest = sent_hash or ""
            if digest and not _HASH_RE.fullmatch(digest):
                raise ShapeError(join(path, "content_hash"), "is not a SHA-256 hex digest")
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
                memory_key,
            )
        content = validated(
            join(path, "content"), normalize_content, required(obj, "content", path)
        )
        digest = content_hash(content)
        if sent_hash is not None and sent_hash != digest:
            raise ShapeError(
                join(path, "content_hash"),
                "does not match content (expected the SHA-256 of the NFC-normalised, "
                f"trimmed content: {digest})",
            )
        tags = validated(join(path, "tags"), normalize_tags, obj.get("tags"))
        raw_metadata = obj.get("metadata")
        metadata_text = validated(join(path, "metadata"), normalize_metadata, raw_metadata)
        # A JSON document's object is a fresh dict of JSON values already: only
        # its key order differs from the text's, and no reader depends on it.
        metadata = (
            raw_metadata if isinstance(raw_metadata, dict) else _metadata_from_text(metadata_text)
        )
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
            memory_key,
            metadata_text=metadata_text,
        )


def _metadata_from_text(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value


def push_request(items: Sequence[WireMemory]) -> dict[str, Any]:
    """The body of ``POST /api/memories/batch``."""
    return {"items": [item.to_json() for item in items]}


def parse_push_request(data: object, *, max_items: int) -> tuple[WireMemory, ...]:
    """Validate a push body: ``{"items": [WireMemory, ...]}`` with 1..max_items items."""
    obj = read_object(data, "body")
    items = read_array(required(obj, "items", ""), "items")
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
        obj = read_object(data, path)
        memory_id = field(obj, "id", path, read_memory_id)
        status = field(obj, "status", path, read_string)
        if status not in ITEM_STATUSES:
            raise ShapeError(join(path, "status"), f"{status!r} is not one of {ITEM_STATUSES}")
        version = field(obj, "version", path, _version)
        canonical = obj.get("canonical_id")
        if status == "duplicate":
            canonical_id: str | None = field(obj, "canonical_id", path, read_memory_id)
        elif canonical is not None:
            raise ShapeError(join(path, "canonical_id"), "is only sent with status 'duplicate'")
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
        obj = read_object(data, path)
        items = field(obj, "results", path, read_array)
        return cls(
            tuple(
                ItemResult.parse(item, f"{join(path, 'results')}[{index}]")
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
        obj = read_object(data, path)
        seq = field(obj, "seq", path, read_integer, minimum=1)
        return cls(seq, field(obj, "memory", path, WireMemory.parse))


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
        obj = read_object(data, path)
        changes = field(obj, "changes", path, read_array)
        return cls(
            tuple(
                Change.parse(item, f"{join(path, 'changes')}[{index}]")
                for index, item in enumerate(changes)
            ),
            field(obj, "next_cursor", path, read_string),
            field(obj, "has_more", path, read_boolean),
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
        obj = read_object(data, path)
        return cls(
            id=field(obj, "id", path, read_memory_id),
            namespace=field(obj, "namespace", path, read_string),
            content_hash=field(obj, "content_hash", path, read_string),
            version=field(obj, "version", path, _version),
            origin=field(obj, "origin", path, read_string),
            deleted=field(obj, "deleted", path, read_boolean),
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
        obj = read_object(data, path)
        entries = field(obj, "entries", path, read_array)
        after = required(obj, "next_after", path)
        return cls(
            tuple(
                DigestEntry.parse(item, f"{join(path, 'entries')}[{index}]")
                for index, item in enumerate(entries)
            ),
            None if after is None else read_memory_id(after, join(path, "next_after")),
            field(obj, "has_more", path, read_boolean),
            field(obj, "cursor", path, read_string),
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
        obj = read_object(data, path)
        spaces = field(obj, "by_namespace", path, read_object)
        return cls(
            field(obj, "total", path, read_integer),
            {
                read_string(name, join(path, "by_namespace")): read_integer(
                    count, join(join(path, "by_namespace"), name)
                )
                for name, count in spaces.items()
            },
            field(obj, "forgotten", path, read_integer),
            field(obj, "cursor", path, read_string),
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
        obj = read_object(data, path)
        return cls(
            **{
                field.name: read_integer(
                    required(obj, field.name, path), join(path, field.name), minimum=1
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
        obj = read_object(data, path)
        return cls(
            field(obj, "tenant", path, read_string),
            field(obj, "key_id", path, read_string),
            field(obj, "protocol", path, read_integer, minimum=1),
            field(obj, "limits", path, HubLimits.parse),
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
        obj = read_object(data, path)
        return cls(
            field(obj, "status", path, read_string),
            field(obj, "protocol", path, read_integer, minimum=1),
        )


@attrs.frozen
class RecallQuery:
    """The body of ``POST /api/recall``: semantic search over the tenant's memories."""

    query: str
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    limit: int = 10
    #: This namespace and those below it. Optional and sent only when set, so
    #: protocol 1 stays as it was; a hub that ignores it is covered by the
    #: client filtering the hub's hits itself (``actors.system``).
    namespace_prefix: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": self.query,
            "namespace": self.namespace,
            "tags": list(self.tags),
            "limit": self.limit,
        }
        if self.namespace_prefix is not None:
            body["namespace_prefix"] = self.namespace_prefix
        return body

    @classmethod
    def parse(cls, data: object, path: str = "", *, max_limit: int = MAX_LIMIT) -> RecallQuery:
        obj = read_object(data, path)
        query = validated(join(path, "query"), validate_query, required(obj, "query", path))
        namespace = _optional_name(obj, "namespace", path, normalize_namespace)
        tags = validated(join(path, "tags"), normalize_tags, obj.get("tags"))
        limit = read_integer(obj.get("limit", 10), join(path, "limit"), minimum=1)
        if limit > max_limit:
            raise ShapeError(join(path, "limit"), f"must be at most {max_limit}, got {limit}")
        prefix = _optional_name(obj, "namespace_prefix", path, normalize_namespace_prefix)
        return cls(query, namespace, tags, limit, prefix)


def _optional_name(
    obj: Mapping[str, Any], name: str, path: str, check: Callable[[str], str]
) -> str | None:
    """The optional string field ``name`` of ``obj`` (null or absent: None), through ``check``."""
    value = obj.get(name)
    if value is None:
        return None
    checked: str = validated(join(path, name), check, read_string(value, join(path, name)))
    return checked


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
        obj = read_object(data, path)
        score = field(obj, "score", path, read_finite)
        similarity = obj.get("similarity")
        tags = read_array(obj.get("tags", []), join(path, "tags"))
        return cls(
            id=field(obj, "id", path, read_memory_id),
            namespace=field(obj, "namespace", path, read_string),
            content=field(obj, "content", path, read_string),
            tags=tuple(read_string(tag, join(path, "tags")) for tag in tags),
            score=score,
            created_at=field(obj, "created_at", path, read_number),
            similarity=None
            if similarity is None
            else read_finite(similarity, join(path, "similarity")),
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
        obj = read_object(data, path)
        return cls(
            field(obj, "name", path, read_string),
            field(obj, "dimension", path, read_integer, minimum=1),
            field(obj, "semantic", path, read_boolean),
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
        obj = read_object(data, path)
        hits = field(obj, "hits", path, read_array)
        ranking = obj.get("ranking")
        if ranking is not None:
            read_string(ranking, join(path, "ranking"))
            if ranking not in RECALL_RANKINGS:
                ranking = None  # a ranking added by a later hub: still an answer
        embedder = obj.get("embedder")
        return cls(
            tuple(
                RemoteHit.parse(hit, f"{join(path, 'hits')}[{index}]")
                for index, hit in enumerate(hits)
            ),
            cast("RecallRanking | None", ranking),
            None if embedder is None else EmbedderInfo.parse(embedder, join(path, "embedder")),
            read_integer(obj.get("pending", 0), join(path, "pending")),
            read_string(obj.get("note", ""), join(path, "note")),
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
        obj = read_object(data, path)
        error = field(obj, "error", path, read_object)
        details = error.get("details", {})
        return cls(
            read_string(required(error, "code", "error"), "error.code"),
            read_string(required(error, "message", "error"), "error.message"),
            dict(read_object(details, "error.details")),
        )
