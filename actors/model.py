"""Memory records, validation and normalisation, ids and versions.

Everything here is pure: no I/O, no clocks, no randomness of its own. Ids and
versions are built from numbers that the runtime hands in, so a simulated run
mints the same ids every time.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from actors.errors import InvalidMemory

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_CONTENT_BYTES",
    "MAX_KEY_CHARS",
    "MAX_LIMIT",
    "MAX_METADATA_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_SEARCH_FIELDS",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "CountResult",
    "EmbedItem",
    "EmbeddingReport",
    "ForgetResult",
    "HybridClock",
    "Memory",
    "MemoryPage",
    "MemorySyncState",
    "MigrationReport",
    "RecallHit",
    "RecallResult",
    "RecallSource",
    "RecallStatus",
    "SemanticQuery",
    "StoreReceipt",
    "StoredVector",
    "VectorCandidate",
    "content_hash",
    "format_version",
    "keyed_memory_id",
    "matches_namespace_prefix",
    "namespace_prefix_range",
    "normalize_content",
    "normalize_metadata",
    "normalize_namespace",
    "normalize_namespace_prefix",
    "normalize_new_namespace",
    "normalize_tags",
    "recall_text",
    "uuid7",
    "validate_id",
    "validate_key",
    "validate_limit",
    "validate_query",
]

DEFAULT_NAMESPACE = "default"
#: Large enough for a long note or a code snippet, small enough that one
#: memory cannot dominate a group-commit batch or an MCP response.
MAX_CONTENT_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_QUERY_CHARS = 1_000
MAX_LIMIT = 200
#: A runtime's own keys (LangGraph's, a user's "prefs.theme") fit easily; a key
#: is an address, not content.
MAX_KEY_CHARS = 512
#: Dotted metadata paths one store may copy into its recall text.
MAX_SEARCH_FIELDS = 32

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
_TAG_RE = re.compile(r"[^\x00-\x1f\x7f,]+")
_KEY_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: The UUIDv5 namespace of keyed memory ids (a fixed, random UUID of this project).
_KEYED_ID_NAMESPACE = uuid.UUID("6f0f8a52-3c1e-4b8e-9a55-2d7c41e0b1a7")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Where a memory stands with the hub: on local disk, queued for a push, on the hub,
#: or refused for good. Not the SyncActor's phase (:data:`actors.sync_model.SyncPhase`).
MemorySyncState = Literal["committed", "sync_pending", "synced", "sync_failed"]
#: Which search found a recall hit: local keyword search, the hub's semantic search, or both.
RecallSource = Literal["local", "remote", "both"]
#: How a recall ran: keyword-only, with the hub's results merged, or the hub was too slow.
RecallStatus = Literal["local", "complete", "retry"]


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMemory(
            f"{what} is not valid UTF-8 (unpaired surrogate at position {exc.start})"
        ) from None


def normalize_content(content: object) -> str:
    """Return content in canonical form (NFC, ``\\n`` line ends, trimmed) or raise."""
    if not isinstance(content, str):
        raise InvalidMemory(f"content must be a string, not {type(content).__name__}")
    _check_utf8(content, "content")
    if "\x00" in content:
        raise InvalidMemory("content must not contain NUL characters")
    text = unicodedata.normalize("NFC", content.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.strip()
    if not text:
        raise InvalidMemory("content is empty (or only whitespace)")
    size = len(text.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise InvalidMemory(
            f"content is {size} bytes of UTF-8; the limit is {MAX_CONTENT_BYTES} bytes"
        )
    return text


def content_hash(normalized: str) -> str:
    """SHA-256 of normalised content: the identity used for dedup within a namespace."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def normalize_tags(tags: object) -> tuple[str, ...]:
    """Return tags trimmed, lower-cased, deduplicated and sorted, or raise."""
    if tags is None:
        return ()
    # A list (what JSON gives) skips the Iterable ABC check, 4% of an
    # import's line parse.
    if not isinstance(tags, list) and (
        isinstance(tags, str | bytes) or not isinstance(tags, Iterable)
    ):
        raise InvalidMemory(f"tags must be a list of strings, not {type(tags).__name__}")
    out: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidMemory(f"every tag must be a string, got {type(tag).__name__}")
        _check_utf8(tag, "a tag")
        cleaned = unicodedata.normalize("NFC", tag).strip().lower()
        if not cleaned:
            raise InvalidMemory("tags must not be empty")
        if len(cleaned) > MAX_TAG_CHARS:
            raise InvalidMemory(f"tag {cleaned[:20]!r}... is longer than {MAX_TAG_CHARS} chars")
        if not _TAG_RE.fullmatch(cleaned):
            raise InvalidMemory(f"tag {cleaned!r} contains a comma or a control character")
        out.add(cleaned)
    if len(out) > MAX_TAGS:
        raise InvalidMemory(f"{len(out)} tags given; at most {MAX_TAGS} are allowed")
    return tuple(sorted(out))


#: One encoder for all metadata: ``json.dumps`` with any option builds a new
#: encoder per call, about half the cost of encoding a small object (an
#: import encodes every line's).
_METADATA_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def normalize_metadata(metadata: object) -> str:
    """Return metadata as compact, key-sorted JSON text of an object, or raise."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise InvalidMemory(
            f"metadata must be a JSON object (a mapping), not {type(metadata).__name__}"
        )
    if not metadata:
        return "{}"
    try:
        text = _METADATA_ENCODER.encode(metadata)
    except (TypeError, ValueError) as exc:
        raise InvalidMemory(f"metadata is not JSON-serialisable: {exc}") from None
    _check_utf8(text, "metadata")
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidMemory(
            f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes"
        )
    return text


def normalize_namespace(namespace: object) -> str:
    """Return a valid namespace name (``default`` when None), or raise."""
    if namespace is None:
        return DEFAULT_NAMESPACE
    return _check_name(namespace, "namespace")


def _check_name(value: object, what: str) -> str:
    """``value`` if it is a string of the namespace alphabet and length, or raise."""
    if not isinstance(value, str):
        raise InvalidMemory(f"{what} must be a string, not {type(value).__name__}")
    if not _NAMESPACE_RE.fullmatch(value):
        raise InvalidMemory(
            f"{what} {value[:80]!r} is invalid: use 1-64 characters from "
            "letters, digits and . _ : / -, starting with a letter or digit"
        )
    return value


def _check_segments(namespace: str, what: str) -> None:
    """Refuse a namespace path with an empty segment (``a//b``, a trailing ``/``)."""
    # A leading "/" never gets here: the name must start with a letter or digit.
    if namespace.endswith("/"):
        raise InvalidMemory(
            f"{what} {namespace[:80]!r} ends with '/': segments are separated by "
            "'/' and none may be empty (write 'users/alice', not 'users/alice/')"
        )
    if "//" in namespace:
        raise InvalidMemory(
            f"{what} {namespace[:80]!r} has an empty segment ('//'): segments are "
            "separated by a single '/' (write 'users/alice', not 'users//alice')"
        )


def normalize_new_namespace(namespace: object) -> str:
    """As :func:`normalize_namespace`, for a memory being stored: the hierarchy rule too.

    A namespace is a path of segments separated by ``/`` and no segment may
    be empty. Only new stores are held to it: a namespace with an empty
    segment stored before the rule existed (or synced from such a replica)
    still reads, lists, counts and syncs through :func:`normalize_namespace`.
    """
    name = normalize_namespace(namespace)
    _check_segments(name, "namespace")
    return name


def normalize_namespace_prefix(prefix: object) -> str:
    """Return a valid namespace prefix (a namespace path without empty segments), or raise."""
    name = _check_name(prefix, "namespace_prefix")
    _check_segments(name, "namespace_prefix")
    return name


def matches_namespace_prefix(namespace: str, prefix: str) -> bool:
    """True if ``namespace`` is ``prefix`` or below it (``users/alice`` ⊃ ``users/alice/prefs``).

    Segment-wise: ``users/alice`` does not match ``users/alicex``. The SQL
    filters (``actors.local_db``, the hub's) are proven equal to this by a
    property test.
    """
    return namespace == prefix or namespace.startswith(prefix + "/")


def namespace_prefix_range(prefix: str) -> tuple[str, str]:
    """The half-open range ``[low, high)`` of the namespaces strictly below ``prefix``.

    Below ``p`` means starting ``p/``; every such name sorts in
    ``[p + '/', p + '0')`` because ``'0'`` is the character after ``'/'``
    (byte order, SQLite's BINARY collation). SQL filters use
    ``namespace = p OR (namespace >= low AND namespace < high)``: no ``LIKE``
    on user text, and the range walks a namespace index.
    """
    return prefix + "/", prefix + "0"


def validate_id(memory_id: object) -> str:
    """Return a canonical (lower-case) memory id, or raise."""
    if not isinstance(memory_id, str):
        raise InvalidMemory(f"id must be a string, not {type(memory_id).__name__}")
    canonical = memory_id.strip().lower()
    if not _UUID_RE.fullmatch(canonical):
        raise InvalidMemory(f"{memory_id[:80]!r} is not a memory id (a UUID)")
    return canonical


def validate_key(key: object) -> str:
    """Return a memory key (1-512 characters, no control characters), or raise.

    Keys are compared exactly: no trimming or case folding, because a runtime
    hands in its own keys and must read them back unchanged.
    """
    if not isinstance(key, str):
        raise InvalidMemory(f"key must be a string, not {type(key).__name__}")
    _check_utf8(key, "key")
    if not key:
        raise InvalidMemory("key is empty")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidMemory(f"key is {len(key)} characters; the limit is {MAX_KEY_CHARS}")
    control = _KEY_CONTROL_RE.search(key)
    if control is not None:
        raise InvalidMemory(
            f"key {key[:40]!r} contains a control character at position {control.start()}"
        )
    return key


def keyed_memory_id(namespace: str, key: str) -> str:
    """The id of the memory stored under ``key`` in ``namespace``: the same on every replica.

    A UUIDv5 of the pair, so two replicas that write one key without having
    seen each other mint one memory, and last-writer-wins settles its content
    (an id minted by whichever replica wrote first would leave two memories).
    The NUL separator cannot occur in either part.
    """
    return str(uuid.uuid5(_KEYED_ID_NAMESPACE, f"{namespace}\x00{key}"))


def recall_text(content: object, metadata: Mapping[str, Any] | None, fields: object) -> object:
    """``content`` with the text of the metadata ``fields`` appended: what recall searches.

    ``fields`` are dotted paths (``"profile.bio"``); a missing path adds
    nothing, a string adds itself, any other JSON value its compact JSON.
    With no ``content`` (None) the fields' text alone is the content. The
    result still goes through :func:`normalize_content`.
    """
    if fields is None:
        return content
    if isinstance(fields, str | bytes) or not isinstance(fields, Sequence):
        raise InvalidMemory(
            f"search_fields must be a list of dotted metadata paths, not {type(fields).__name__}"
        )
    if len(fields) > MAX_SEARCH_FIELDS:
        raise InvalidMemory(
            f"{len(fields)} search_fields given; at most {MAX_SEARCH_FIELDS} are allowed"
        )
    parts: list[str] = []
    if content is not None:
        if not isinstance(content, str):
            raise InvalidMemory(f"content must be a string, not {type(content).__name__}")
        parts.append(content)
    for path in fields:
        if not isinstance(path, str) or not path or path.startswith(".") or ".." in path:
            raise InvalidMemory(f"search_fields: {path!r} is not a dotted metadata path")
        value: Any = metadata or {}
        for step in path.split("."):
            value = value.get(step) if isinstance(value, Mapping) else None
        if value is None:
            continue
        if isinstance(value, str):
            parts.append(value)
        else:
            try:
                parts.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
            except (TypeError, ValueError) as exc:
                raise InvalidMemory(f"search_fields: {path!r} is not JSON: {exc}") from None
    if content is None and not any(part.strip() for part in parts):
        raise InvalidMemory("content is empty: no content given and the search_fields hold no text")
    return "\n".join(parts)


def validate_limit(limit: object, *, default: int, maximum: int = MAX_LIMIT) -> int:
    """Return a limit in 1..maximum, or raise."""
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidMemory(f"limit must be an integer, not {type(limit).__name__}")
    if not 1 <= limit <= maximum:
        raise InvalidMemory(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def validate_query(query: object) -> str:
    """Return a trimmed search query, or raise."""
    if not isinstance(query, str):
        raise InvalidMemory(f"query must be a string, not {type(query).__name__}")
    _check_utf8(query, "query")
    text = unicodedata.normalize("NFC", query).strip()
    if not text:
        raise InvalidMemory("query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidMemory(f"query is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    return text


def uuid7(unix_ms: int, rand_a: int, rand_b: int) -> str:
    """Format a UUIDv7 (RFC 9562) from a millisecond timestamp and random bits.

    The caller supplies the numbers so that ids come from the runtime's clock
    and seeded random stream; ``rand_a`` is 12 bits, ``rand_b`` 62 bits.
    """
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & 0x3FFF_FFFF_FFFF_FFFF
    # Same text as str(uuid.UUID(int=value)) in a third of the time (0.55 vs 1.7 µs):
    # the StoreActor mints one id per stored memory on its critical path.
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def format_version(physical_ms: int, logical: int) -> str:
    """Encode a hybrid-logical-clock reading as a string that sorts in clock order."""
    return f"{physical_ms:013x}{logical:06x}"


@attrs.frozen
class Memory:
    """One stored memory, as the store returns it."""

    id: str
    namespace: str
    content: str
    content_hash: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    version: str
    origin: str
    deleted: bool
    sync_state: MemorySyncState
    #: Why the last push failed, when ``sync_state`` is ``sync_failed``.
    sync_error: str | None = None
    #: The caller's key for an upserted memory (None: stored by content).
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "key": self.key,
            "content": self.content,
            "content_hash": self.content_hash,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "origin": self.origin,
            "deleted": self.deleted,
            "sync_state": self.sync_state,
            "sync_error": self.sync_error,
        }


@attrs.frozen
class StoreReceipt:
    """The answer to a store: sent only after the write is committed."""

    id: str
    namespace: str
    duplicate: bool
    tags: tuple[str, ...]
    sync_state: MemorySyncState
    #: The key of a keyed store (None for a store by content).
    key: str | None = None
    #: A keyed store that replaced a live memory under its key (False: created or revived).
    replaced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "duplicate": self.duplicate,
            "tags": list(self.tags),
            "sync_state": self.sync_state,
            "key": self.key,
            "replaced": self.replaced,
        }

    def summary(self) -> str:
        """One line for a person: ``Stored <id> (new) in namespace default with tags a, b``."""
        if self.key is not None:
            kind = f"key {self.key!r}, " + ("replaced" if self.replaced else "new")
        else:
            kind = "duplicate; tags merged" if self.duplicate else "new"
        line = f"Stored {self.id} ({kind}) in namespace {self.namespace}"
        if self.tags:
            line += f" with tags {', '.join(self.tags)}"
        return line


@attrs.frozen
class ForgetResult:
    """The answer to a forget: the tombstone is committed."""

    id: str
    forgotten: bool
    already_forgotten: bool

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class RecallHit:
    """One ranked match; ``source`` says which search found it."""

    id: str
    namespace: str
    content: str
    snippet: str
    tags: tuple[str, ...]
    score: float
    source: RecallSource
    created_at: float
    #: Where the memory stands with the hub (``synced`` for a hit found only on the hub).
    sync_state: MemorySyncState | None = None

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["tags"] = list(self.tags)
        return data


@attrs.frozen
class RecallResult:
    """Ranked matches plus the honest status of the search.

    ``status`` is ``local`` while recall is keyword-only (no hub), ``complete``
    when remote semantic results are merged in, ``retry`` when the remote did
    not answer in time (``retry_after`` seconds is a hint).
    """

    query: str
    hits: tuple[RecallHit, ...]
    status: RecallStatus
    reason: str
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "status": self.status,
            "reason": self.reason,
            "retry_after": self.retry_after,
            "hits": [hit.to_dict() for hit in self.hits],
        }


@attrs.frozen
class MemoryPage:
    """A page of memories, most recent first; pass ``next_before`` to get the next page."""

    memories: tuple[Memory, ...]
    next_before: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "memories": [m.to_dict() for m in self.memories],
            "next_before": self.next_before,
        }


@attrs.frozen
class CountResult:
    """Counts and diagnostics."""

    total: int
    by_namespace: dict[str, int]
    forgotten: int
    outbox_pending: int
    dead_letters: int
    schema_version: int
    database: str
    sync: str
    #: Local semantic recall: on (its model and progress) or off, and then how to turn it on.
    semantic: str = ""
    #: This process's part in sharing the file: ``owner (2 followers)``,
    #: ``follower of pid 4242``, or ``direct: <why>``.
    sharing: str = ""

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class HybridClock:
    """A hybrid logical clock: versions that follow wall time but never repeat or go back.

    Owned by exactly one actor (the StoreActor of a replica), so it needs no lock.
    """

    def __init__(self, physical_ms: int = 0, logical: int = 0) -> None:
        self.physical_ms = physical_ms
        self.logical = logical

    def __repr__(self) -> str:
        return f"<HybridClock {format_version(self.physical_ms, self.logical)}>"

    @classmethod
    def resume(cls, last_version: str | None) -> HybridClock:
        """Continue after the highest version already written (None for a new replica)."""
        if not last_version:
            return cls()
        try:
            return cls(int(last_version[:13], 16), int(last_version[13:], 16))
        except ValueError:
            # A malformed version must not stop the store from opening; the
            # wall clock still orders every later version after this one.
            return cls()

    @property
    def version(self) -> str:
        """The last version produced or observed."""
        return format_version(self.physical_ms, self.logical)

    def observe(self, version: str | None) -> None:
        """Move past ``version`` (written by another process on the same file)."""
        if not version:
            return
        try:
            seen = (int(version[:13], 16), int(version[13:], 16))
        except ValueError:
            return
        if seen > (self.physical_ms, self.logical):
            self.physical_ms, self.logical = seen

    def tick(self, now_ms: int) -> str:
        """A new version, greater than every version this clock produced or observed."""
        if now_ms > self.physical_ms:
            self.physical_ms, self.logical = now_ms, 0
        else:
            self.logical += 1
        return format_version(self.physical_ms, self.logical)


@attrs.frozen
class MigrationReport:
    """What a migration run did."""

    path: str
    from_version: int
    to_version: int
    applied: tuple[int, ...]
    backups: tuple[str, ...]


# -- local semantic recall (the EmbeddingActor and the StoreActor) ---------------------------


@attrs.frozen
class EmbedItem:
    """A live memory without a vector of the current model: the embedding backlog."""

    rowid: int
    #: The text the vector will be of: it is stored only if the memory still holds it.
    content_hash: str
    text: str
    namespace: str
    tags: tuple[str, ...]


@attrs.frozen
class StoredVector:
    """A memory's vector as the local file keeps it: float32, little-endian bytes."""

    rowid: int
    content_hash: str
    namespace: str
    tags: tuple[str, ...]
    vector: bytes


@attrs.frozen
class VectorCandidate:
    """One vector search hit: the row, the text its vector is of, the cosine similarity."""

    rowid: int
    content_hash: str
    score: float


@attrs.frozen
class SemanticQuery:
    """The embedding actor's best rows for a query, best first, for the store to check and fuse.

    The store keeps a candidate only if the memory is live and still holds
    the text its vector is of (:func:`actors.ranking.fuse_local` has the rule).
    """

    model: str
    candidates: tuple[VectorCandidate, ...]


@attrs.frozen
class EmbeddingReport:
    """Where local semantic recall stands (``status``'s ``semantic`` entry).

    ``state``: ``loading`` (reading the stored vectors), ``catching up``
    (embedding the backlog), ``idle`` (every memory embedded at the last
    look), ``failed`` (the model did not load: ``reason`` says why).
    """

    state: str
    model: str
    dimension: int
    #: Vectors in the in-memory index (what recall searches).
    indexed: int
    #: Memories embedded by this process since it started.
    embedded: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.state != "failed", **attrs.asdict(self)}
