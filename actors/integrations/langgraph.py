"""LangGraph's ``BaseStore`` on memory-actors: :class:`MemoryActorsStore`.

A graph compiled with ``store=MemoryActorsStore(memory)`` keeps its long-term
memory in a memory-actors file: every process (and every MCP session) on that
file sees the same items, writes share group commits, and a configured hub
syncs them.

How LangGraph's model maps onto ours:

- an item is a *keyed* memory: ``put`` upserts ``(namespace, key)`` in place,
  ``delete`` forgets it. The value (a JSON object, at most 16 KiB as compact
  JSON) is the memory's ``metadata``; its recall text (``content``) is the
  text at the store's index fields (``IndexConfig["fields"]``, or ``put``'s
  ``index=[...]``), else the compact JSON of the value. Every item carries
  the tag ``langgraph`` (``tag=``): the store sees only the memories it
  wrote, not the MCP tools' notes in the same namespaces;
- a namespace tuple is one namespace path, its labels joined by ``/``, each
  label escaped by :func:`encode_namespace` (reversibly, so
  ``list_namespaces`` reads them back);
- ``search`` with a ``query`` is our recall (keyword, BM25; with a hub its
  semantic matches merged in), limited to the namespace prefix, each item
  with recall's ``score`` and in recall's order; the ``filter`` is applied
  to the hits. Without a query, ``search`` pages through the namespace,
  newest first, and filters in Python;
- within one batch the writes apply first (several puts of one key: the
  last wins), then the reads see them, as LangGraph's PostgresStore does.

TTL is not supported (``supports_ttl = False``): ``put(..., ttl=...)`` raises
``NotImplementedError``, as LangGraph's own stores without TTL do.

Needs the ``memory-actors[langgraph]`` extra. LangGraph is imported here and
nowhere else in the package.
"""

from __future__ import annotations

import asyncio
import json
import string
import unicodedata
from collections.abc import Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import attrs

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        IndexConfig,
        InvalidNamespaceError,
        Item,
        ListNamespacesOp,
        MatchCondition,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        get_text_at_path,
        tokenize_path,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "actors.integrations.langgraph needs LangGraph: "
        "pip install 'memory-actors[langgraph]'"
        f" ({exc})"
    ) from exc

from actors.aio import AsyncMemorySystem
from actors.errors import InvalidMemory, MemoryActorsError, MemoryNotFound
from actors.model import (
    MAX_CONTENT_BYTES,
    MAX_LIMIT,
    Memory,
    MemoryPage,
    RecallResult,
    normalize_metadata,
    normalize_tags,
    validate_key,
)
from actors.system import MemorySystem

__all__ = [
    "DEFAULT_TAG",
    "MAX_NAMESPACE_CHARS",
    "MemoryActorsStore",
    "decode_namespace",
    "encode_namespace",
]

T = TypeVar("T")

#: The tag on every memory the store writes; it reads only memories that carry it.
DEFAULT_TAG = "langgraph"
#: Our namespace limit (``actors.model``), which the encoded tuple must fit.
MAX_NAMESPACE_CHARS = 64
#: Characters a label keeps as they are: the namespace alphabet less ``/``
#: (the label separator) and ``.`` (the escape, free because LangGraph
#: refuses ``.`` in labels).
_LITERAL = frozenset(string.ascii_letters + string.digits + "_:-")
_HEX = frozenset("0123456789abcdef")
#: Written before a namespace whose first label does not start with a letter
#: or digit (our names must): that character is escaped, so the name starts
#: ``0..``, which no escape can produce (an escape is ``.`` and two hex digits).
_LEAD = "0."


# -- the namespace escape ------------------------------------------------------------


def _check_labels(labels: object) -> tuple[str, ...]:
    """LangGraph's label rules (``_validate_namespace_labels``), same messages."""
    namespace = tuple(labels) if isinstance(labels, tuple | list) else labels
    if not isinstance(namespace, tuple):
        raise InvalidNamespaceError(
            f"Namespace must be a tuple of strings, got {type(labels).__name__}."
        )
    for label in namespace:
        if not isinstance(label, str):
            raise InvalidNamespaceError(
                f"Invalid namespace label '{label}' found in {namespace}. Namespace labels"
                f" must be strings, but got {type(label).__name__}."
            )
        if "." in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label '{label}' found in {namespace}. "
                "Namespace labels cannot contain periods ('.')."
            )
        if "\x00" in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label '{label}' found in {namespace}. "
                "Namespace labels cannot contain NUL bytes ('\\x00')."
            )
        if not label:
            raise InvalidNamespaceError(
                f"Namespace labels cannot be empty strings. Got {label} in {namespace}"
            )
    return namespace


def _check_put_namespace(labels: object) -> tuple[str, ...]:
    """LangGraph's rules for a namespace written to (``_validate_namespace``)."""
    namespace = _check_labels(labels)
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {namespace}'
        )
    return namespace


def _escape(char: str) -> str:
    try:
        raw = char.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNamespaceError(
            f"namespace label character {char!r} is not valid UTF-8 (an unpaired "
            "surrogate); memory-actors stores namespaces as UTF-8"
        ) from None
    return "".join(f".{byte:02x}" for byte in raw)


def encode_namespace(namespace: tuple[str, ...]) -> str:
    """The memory-actors namespace of a LangGraph namespace tuple; reversed by
    :func:`decode_namespace`.

    Labels are joined with ``/``. Inside a label, letters, digits, ``_``, ``:``
    and ``-`` stay as they are and every other character becomes ``.`` plus
    two lower-case hex digits per UTF-8 byte (``"my notes"`` → ``my.20notes``,
    ``"é"`` → ``.c3.a9``): LangGraph forbids ``.`` in a label, so a ``.``
    always starts an escape. Our names start with a letter or digit, so when
    the first label does not, its first character is escaped as well and the
    name gets the prefix ``0.``: ``("_drafts",)`` → ``0..5fdrafts`` (no escape
    is ``..``, so the prefix cannot be mistaken for text).

    Raises ``InvalidNamespaceError`` for a tuple LangGraph refuses (empty, an
    empty label, ``.`` or NUL in a label, a label that is not a string), for
    a label that is not valid UTF-8, and for a tuple longer than
    :data:`MAX_NAMESPACE_CHARS` once encoded.
    """
    labels = _check_labels(namespace)
    if not labels:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    parts = []
    for position, label in enumerate(labels):
        chars = [c if c in _LITERAL else _escape(c) for c in label]
        if position == 0 and not (label[0] in _LITERAL and label[0].isalnum()):
            chars[0] = _LEAD + _escape(label[0])
        parts.append("".join(chars))
    name = "/".join(parts)
    if len(name) > MAX_NAMESPACE_CHARS:
        raise InvalidNamespaceError(
            f"namespace {labels!r} is {len(name)} characters once encoded for "
            f"memory-actors ({name[:80]!r}...), over its limit of {MAX_NAMESPACE_CHARS}: "
            "each label costs its length plus one, and each character other than "
            "A-Z a-z 0-9 _ : - costs 3 per UTF-8 byte; use shorter labels"
        )
    return name


def decode_namespace(name: str) -> tuple[str, ...] | None:
    """The tuple :func:`encode_namespace` made ``name`` from; None if it made no such name.

    Only the canonical encoding decodes, so a memory stored outside the
    adapter under a name like ``notes.v2`` never shows up as a LangGraph
    namespace, and decoding then encoding gives ``name`` back.
    """
    body = name[len(_LEAD) :] if name.startswith(_LEAD + ".") else name
    labels: list[str] = []
    for segment in body.split("/"):
        raw = bytearray()
        at = 0
        while at < len(segment):
            char = segment[at]
            if char == ".":
                digits = segment[at + 1 : at + 3]
                if len(digits) != 2 or not set(digits) <= _HEX:
                    return None
                raw.append(int(digits, 16))
                at += 3
            elif char in _LITERAL:
                raw.append(ord(char))
                at += 1
            else:
                return None
        try:
            labels.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    decoded = tuple(labels)
    try:
        canonical = encode_namespace(decoded)
    except InvalidNamespaceError:
        return None
    return decoded if canonical == name else None


def _encoded_or_none(namespace: tuple[str, ...]) -> str | None:
    """The encoded name, or None when nothing can be stored there (empty, too long)."""
    try:
        return encode_namespace(namespace)
    except InvalidNamespaceError:
        return None


# -- keys, values, filters -----------------------------------------------------------


def _key_or_none(key: object) -> str | None:
    try:
        return validate_key(key)
    except InvalidMemory:
        return None


def _clip_utf8(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")


def _matches(value: Mapping[str, Any], conditions: Mapping[str, Any] | None) -> bool:
    """LangGraph's filter on an item's value (as InMemoryStore), operators included."""
    if not conditions:
        return True
    return all(_compare(value.get(field), wanted) for field, wanted in conditions.items())


def _compare(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if any(name.startswith("$") for name in wanted):
            return all(_apply(actual, name, operand) for name, operand in wanted.items())
        if not isinstance(actual, dict):
            return False
        return all(_compare(actual.get(field), inner) for field, inner in wanted.items())
    if isinstance(wanted, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def _apply(actual: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(actual == operand)
    if operator == "$ne":
        return bool(actual != operand)
    comparisons = {
        "$gt": float.__gt__,
        "$gte": float.__ge__,
        "$lt": float.__lt__,
        "$lte": float.__le__,
    }
    if operator not in comparisons:
        raise ValueError(f"Unsupported operator: {operator}")
    try:
        left, right = float(actual), float(operand)
    except (TypeError, ValueError):
        # InMemoryStore raises here (float(None)); Postgres compares JSONB and
        # finds no match. A missing or non-numeric field matching nothing is
        # the answer a filter wants.
        return False
    return bool(comparisons[operator](left, right))


def _does_match(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    return all(want == "*" or label == want for label, want in pairs)


# -- the plans: one logic for both facades --------------------------------------------

Verb = Literal["store", "get", "forget", "list", "recall", "count"]


@attrs.frozen
class _Call:
    """Internal: one facade call a plan asks for; ``MemorySystem`` and
    ``AsyncMemorySystem`` take the same verbs and keywords."""

    verb: Verb
    kwargs: Mapping[str, Any]


#: A plan yields the calls it needs next (run together: concurrently on the
#: async facade) and is sent back their outcomes, each a value or the
#: memory-actors error the call raised.
_Plan = Generator[list[_Call], list[Any], T]


def _value(outcome: Any) -> Any:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _run(system: MemorySystem, plan: _Plan[T]) -> T:
    """Drive ``plan`` on the blocking facade, one call after another."""
    try:
        calls = next(plan)
        while True:
            calls = plan.send([_call(system, call) for call in calls])
    except StopIteration as done:
        result: T = done.value
        return result


def _call(system: MemorySystem, call: _Call) -> Any:
    try:
        return getattr(system, call.verb)(**call.kwargs)
    except MemoryActorsError as exc:
        return exc


async def _arun(memory: AsyncMemorySystem, plan: _Plan[T]) -> T:
    """Drive ``plan`` on the asyncio facade: each round's calls awaited together."""
    try:
        calls = next(plan)
        while True:
            outcomes = await asyncio.gather(*(_acall(memory, call) for call in calls))
            calls = plan.send(list(outcomes))
    except StopIteration as done:
        result: T = done.value
        return result


async def _acall(memory: AsyncMemorySystem, call: _Call) -> Any:
    try:
        return await getattr(memory, call.verb)(**call.kwargs)
    except MemoryActorsError as exc:
        return exc


@attrs.frozen
class _Write:
    """Internal: a validated PutOp; ``call`` None is a delete of what cannot exist."""

    namespace: tuple[str, ...]
    key: str
    call: _Call | None


@attrs.frozen
class _Read:
    """Internal: a validated read op and the encoded namespace it reads."""

    op: GetOp | SearchOp | ListNamespacesOp
    name: str | None


class MemoryActorsStore(BaseStore):
    """A LangGraph ``BaseStore`` whose items are keyed memories in a memory-actors file.

    Build it from an open :class:`~actors.MemorySystem` or
    :class:`~actors.AsyncMemorySystem`; the store does not close it. ``batch``
    (and ``get``, ``put``, ...) runs on the blocking facade, ``abatch`` (and
    ``aget``, ``aput``, ...) on the asyncio facade, awaited without a thread
    pool; either works whichever facade you passed.

    ``index``: LangGraph's ``IndexConfig``; only ``fields`` is used (which
    parts of a value recall searches; ``dims`` and ``embed`` are ignored:
    recall is keyword search here, semantic on a hub). Without it, recall
    searches the compact JSON of each value. ``tag``: the tag that marks the
    store's memories (default ``langgraph``); stores with different tags on
    one file do not see each other's items.

    Errors: LangGraph's ``InvalidNamespaceError`` for a namespace it refuses
    or one longer than 64 characters once encoded (:func:`encode_namespace`);
    ``actors.errors.InvalidMemory`` (a ``ValueError``) for a key that is
    empty, over 512 characters or holds a control character, and for a value
    that is not a JSON object or is over 16 KiB. A batch with such a write
    stores nothing. Reads of what cannot be stored (a key too long, a
    namespace too long) find nothing. Operational errors are memory-actors'
    (``Unavailable``, ``AskTimeout``, ``StorageBusy``, ...).

    TTL: not supported (``supports_ttl`` is False); a ``ttl`` raises
    ``NotImplementedError`` and ``refresh_ttl`` is ignored.
    """

    supports_ttl = False

    def __init__(
        self,
        memory: MemorySystem | AsyncMemorySystem,
        *,
        index: IndexConfig | None = None,
        tag: str = DEFAULT_TAG,
    ) -> None:
        if isinstance(memory, AsyncMemorySystem):
            self.system, self.memory = memory.system, memory
        elif isinstance(memory, MemorySystem):
            self.system, self.memory = memory, AsyncMemorySystem(memory)
        else:
            raise TypeError(
                f"MemoryActorsStore needs a MemorySystem or an AsyncMemorySystem, "
                f"not {type(memory).__name__}"
            )
        self.index_config = index
        # LangGraph's default fields are ["$"], the whole value.
        fields = None if index is None else (index.get("fields") or ["$"])
        self._fields = None if fields is None else [_tokenized(path) for path in fields]
        (self.tag,) = normalize_tags([tag])

    def __repr__(self) -> str:
        return f"<MemoryActorsStore {self.system.path} tag={self.tag}>"

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` on the blocking facade; results in input order."""
        return _run(self.system, self._batch(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` on the asyncio facade; results in input order."""
        return await _arun(self.memory, self._batch(ops))

    # -- one batch -------------------------------------------------------------------

    def _batch(self, ops: Iterable[Op]) -> _Plan[list[Result]]:
        prepared = [self._prepare(op) for op in ops]  # every check before any write
        writes: dict[tuple[tuple[str, ...], str], _Write] = {}
        for step in prepared:
            if isinstance(step, _Write):
                writes[(step.namespace, step.key)] = step  # the last write of a key wins
        calls = [write.call for write in writes.values() if write.call is not None]
        if calls:
            for call, outcome in zip(calls, (yield calls), strict=True):
                if not (call.verb == "forget" and isinstance(outcome, MemoryNotFound)):
                    _value(outcome)
        results: list[Result] = [None] * len(prepared)
        gets = [
            (position, step)
            for position, step in enumerate(prepared)
            if isinstance(step, _Read) and isinstance(step.op, GetOp) and step.name is not None
        ]
        if gets:
            outcomes = yield [self._get_call(step) for _, step in gets]
            for (position, _), outcome in zip(gets, outcomes, strict=True):
                if not isinstance(outcome, MemoryNotFound):
                    results[position] = self._item(_value(outcome))
        for position, step in enumerate(prepared):
            if isinstance(step, _Read) and isinstance(step.op, SearchOp):
                results[position] = yield from self._search(step.op, step.name)
            elif isinstance(step, _Read) and isinstance(step.op, ListNamespacesOp):
                results[position] = yield from self._list_namespaces(step.op)
        return results

    def _prepare(self, op: Op) -> _Write | _Read:
        """Check one op the way LangGraph does, and ours; raise before anything runs."""
        if isinstance(op, PutOp):
            return self._prepare_put(op)
        if isinstance(op, GetOp):
            namespace = _check_labels(op.namespace)
            known = _key_or_none(op.key) is not None
            return _Read(op, _encoded_or_none(namespace) if known else None)
        if isinstance(op, SearchOp):
            prefix = _check_labels(op.namespace_prefix)
            if op.filter is not None and not isinstance(op.filter, Mapping):
                raise InvalidMemory(f"filter must be a dict, not {type(op.filter).__name__}")
            return _Read(op, _encoded_or_none(prefix) if prefix else "")
        if isinstance(op, ListNamespacesOp):
            for condition in op.match_conditions or ():
                _check_labels(condition.path)
            return _Read(op, None)
        raise ValueError(f"Unknown operation type: {type(op)}")

    def _prepare_put(self, op: PutOp) -> _Write:
        if op.value is None:
            namespace = _check_labels(op.namespace)
            name, key = _encoded_or_none(namespace), _key_or_none(op.key)
            if name is None or key is None:  # nothing can be stored there
                return _Write(namespace, str(op.key), None)
            return _Write(namespace, key, _Call("forget", {"namespace": name, "key": key}))
        if op.ttl is not None:
            raise NotImplementedError(
                "TTL is not supported by MemoryActorsStore. Use a store implementation "
                "that supports TTL or set ttl=None."
            )
        namespace = _check_put_namespace(op.namespace)
        name = encode_namespace(namespace)
        key = validate_key(op.key)  # here too, so that a batch with a bad key stores nothing
        metadata = normalize_metadata(op.value)
        call = _Call(
            "store",
            {
                "content": self._recall_text(op.value, op.index, metadata),
                "namespace": name,
                "key": key,
                "tags": [self.tag],
                "metadata": json.loads(metadata),
            },
        )
        return _Write(namespace, key, call)

    def _recall_text(
        self, value: Mapping[str, Any], index: Literal[False] | list[str] | None, compact: str
    ) -> str:
        """What recall searches: the index fields' text, else the value's compact JSON."""
        if index is False:
            paths = None
        elif index is None:
            paths = self._fields
        else:
            paths = [_tokenized(path) for path in index]
        texts: list[str] = []
        for path, tokens in paths or ():
            texts.extend([compact] if path == "$" else get_text_at_path(value, tokens))
        text = unicodedata.normalize("NFC", "\n".join(texts).replace("\x00", " ")).strip()
        # NFC of the clipped text may differ by a few bytes; the margin keeps it in.
        return _clip_utf8(text or compact, MAX_CONTENT_BYTES - 256)

    def _get_call(self, step: _Read) -> _Call:
        assert isinstance(step.op, GetOp)
        return _Call("get", {"namespace": step.name, "key": step.op.key})

    def _item(self, memory: Memory) -> Item | None:
        """The item a memory is, or None if it is not one of this store's."""
        namespace = decode_namespace(memory.namespace)
        if namespace is None or memory.key is None or self.tag not in memory.tags:
            return None
        return Item(
            value=dict(memory.metadata),
            key=memory.key,
            namespace=namespace,
            created_at=datetime.fromtimestamp(memory.created_at, tz=UTC),
            updated_at=datetime.fromtimestamp(memory.updated_at, tz=UTC),
        )

    def _search_item(self, memory: Memory, score: float | None) -> SearchItem | None:
        item = self._item(memory)
        if item is None:
            return None
        return SearchItem(
            namespace=item.namespace,
            key=item.key,
            value=item.value,
            created_at=item.created_at,
            updated_at=item.updated_at,
            score=score,
        )

    def _search(self, op: SearchOp, prefix: str | None) -> _Plan[list[SearchItem]]:
        """Recall for a query (its ranking and scores), else a filtered walk of ``list``."""
        if prefix is None:  # a prefix too long to encode holds nothing
            return []
        scope = prefix or None
        window = slice(op.offset, op.offset + op.limit)
        query = (op.query or "").strip()
        found: list[SearchItem] = []
        if query:
            # Recall ranks at most MAX_LIMIT hits; a filter is applied after it,
            # so it gets the most candidates.
            wanted = op.offset + op.limit if op.filter is None else MAX_LIMIT
            recall = _Call(
                "recall",
                {
                    "query": query,
                    "namespace_prefix": scope,
                    "tags": [self.tag],
                    "limit": max(1, min(MAX_LIMIT, wanted)),
                },
            )
            result: RecallResult = _value((yield [recall])[0])
            hits = result.hits
            fetched = yield [_Call("get", {"memory_id": hit.id}) for hit in hits]
            for hit, outcome in zip(hits, fetched, strict=True):
                if isinstance(outcome, MemoryNotFound):
                    continue  # forgotten since, or a hub's hit not pulled yet
                item = self._search_item(_value(outcome), hit.score)
                if item is not None and _matches(item.value, op.filter):
                    found.append(item)
            return found[window]
        enough = op.offset + op.limit if min(op.offset, op.limit) >= 0 else None
        before: str | None = None
        while enough is None or len(found) < enough:
            listing = _Call(
                "list",
                {
                    "namespace_prefix": scope,
                    "tags": [self.tag],
                    "limit": MAX_LIMIT,
                    "before": before,
                },
            )
            page: MemoryPage = _value((yield [listing])[0])
            for memory in page.memories:
                item = self._search_item(memory, None)
                if item is not None and _matches(item.value, op.filter):
                    found.append(item)
            if page.next_before is None:
                break
            before = page.next_before
        return found[window]

    def _list_namespaces(self, op: ListNamespacesOp) -> _Plan[list[tuple[str, ...]]]:
        """The namespaces holding this store's items, from ``count``, matched in Python."""
        conditions = tuple(op.match_conditions or ())
        # A prefix condition's leading labels narrow the count itself.
        fixed: list[str] = []
        for condition in conditions[:1]:
            if condition.match_type == "prefix":
                for label in condition.path:
                    if label == "*":
                        break
                    fixed.append(label)
        scope = _encoded_or_none(tuple(fixed)) if fixed else None
        if fixed and scope is None:
            return []
        counted = _Call("count", {"tags": [self.tag], "namespace_prefix": scope})
        by_namespace: dict[str, int] = _value((yield [counted])[0]).by_namespace
        namespaces = [
            labels
            for name, count in by_namespace.items()
            if count > 0 and (labels := decode_namespace(name)) is not None
        ]
        namespaces = [ns for ns in namespaces if all(_does_match(c, ns) for c in conditions)]
        if op.max_depth is not None:
            namespaces = list({ns[: op.max_depth] for ns in namespaces})
        return sorted(namespaces)[op.offset : op.offset + op.limit]


def _tokenized(path: str) -> tuple[str, list[str]]:
    return (path, [path] if path == "$" else tokenize_path(path))
