"""What travels between a follower and the owner of a file: facade verbs, records, errors.

The unit is a *facade call* (``store``, ``recall``, ... with the keyword
arguments the caller gave), not an actor message: the owner runs it through
its own facade, so a follower's caller gets the owner's validation, group
commit, admission and timeouts, and the same records and errors as if it
had called the owner's facade itself.

- a request is ``{"verb": name, "args": {keyword: JSON value}}``;
- an answer is ``{"ok": value}`` with records as JSON objects (tuples as
  lists), or ``{"error": {"type": name, "message": text, "fields": {...}}}``
  with a class from :mod:`actors.errors` (anything else arrives as
  :class:`~actors.errors.StorageError`, never as a foreign class).

``VERBS`` is the whole vocabulary; ``SAFE_TO_REPEAT`` the verbs a follower
may send again to the next owner when the first owner died before answering
(reads, forgets, and stores: a store by content finds its own earlier write
as a duplicate, a keyed store writes the same content under the same id;
an import batch merges by id and version, so applied twice it changes
nothing the second time, only its counts say "unchanged"; a backup is
made afresh).
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple, Union

import attrs

from actors import errors
from actors.errors import MemoryActorsError, StorageError
from actors.model import (
    CountResult,
    ForgetResult,
    Memory,
    MemoryPage,
    RecallResult,
    StoreReceipt,
)
from actors.portable import ImportCounts
from actors.sync_model import DeadLetters, SyncReport

__all__ = [
    "SAFE_TO_REPEAT",
    "VERBS",
    "bound_arguments",
    "decode_error",
    "decode_record",
    "decode_result",
    "encode_error",
    "encode_result",
]

#: verb → the type of its answer (None: a plain JSON value). The verbs named with
#: an underscore are the steps of the facade's export, import and backup: a
#: follower sends them, its callers never see them.
VERBS: Final[Mapping[str, Any]] = {
    "store": StoreReceipt,
    "recall": RecallResult,
    "get": Memory,
    "forget": ForgetResult,
    "set_tags": Memory,
    "list": MemoryPage,
    "count": CountResult,
    "sync_report": SyncReport,
    "semantic_report": None,
    "dead_letters": DeadLetters,
    "retry_dead_letters": None,
    "session_add": None,
    "session_items": None,
    "session_pop": None,
    "session_clear": None,
    "status": None,
    "_export_page": tuple[Memory, ...],
    "_import_batch": ImportCounts,
    # A BackupReport: its module sits above this one, so the facade decodes it.
    "_backup_to": None,
}

#: Verbs a follower repeats with the next owner if the first died mid-request.
#: Not the session log's appends and pops: a repeated append doubles its items,
#: a repeated pop takes a second item.
SAFE_TO_REPEAT: Final = frozenset(
    {
        "store",
        "recall",
        "get",
        "forget",
        "set_tags",
        "list",
        "count",
        "sync_report",
        "semantic_report",
        "dead_letters",
        "status",
        "_export_page",
        "_import_batch",
        "_backup_to",
    }
)


#: Values JSON carries as they are.
_SCALARS: Final = (str, int, float, bool, type(None))

#: How one value becomes JSON, or an answer's JSON becomes the declared type.
Convert = Callable[[Any], Any]


def _unstructure(value: Any) -> Any:
    """Any value as JSON, by what it is (for values whose declared type says nothing)."""
    if isinstance(value, _SCALARS):
        return value
    if attrs.has(value.__class__):
        return _encoder(value.__class__)(value)
    if isinstance(value, (tuple, list)):
        return [_unstructure(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _unstructure(v) for k, v in value.items()}
    return value


def _options(kind: Any) -> list[Any] | None:
    """The types an Optional/Union stands for, None excluded (None: not a union)."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        return [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return None


def _as_is(kind: Any) -> bool:
    """Whether values of ``kind`` are JSON as they are (scalars, literals, tuples of them:
    the encoder writes a tuple as a list)."""
    options = _options(kind)
    if options is not None:
        return all(_as_is(option) for option in options)
    origin = typing.get_origin(kind)
    if origin is Literal:
        return True
    if origin is dict:  # keys as JSON has them (the encoder writes numbers as text too)
        key, item = typing.get_args(kind)
        return key is str and _as_is(item)
    if origin is tuple:
        args = typing.get_args(kind)
        return len(args) == 2 and args[1] is Ellipsis and _as_is(args[0])
    return kind in _SCALARS


@functools.cache
def _encoder(kind: type) -> Convert:
    """How a record of type ``kind`` becomes JSON, worked out once per type: its
    fields whose declared type JSON carries as it is (scalars, literals, tuples of
    them: the encoder writes a tuple as a list) are left to the JSON encoder; the
    others are walked by what they hold (``_unstructure``).

    A follower's answer is encoded on the answering actor's thread: walking
    every field of a Memory by what it holds took 22 µs, this 6.5 (hot).
    """
    hints = typing.get_type_hints(kind)
    names = tuple(f.name for f in attrs.fields(kind))
    walked = tuple(name for name in names if not _as_is(hints[name]))
    values = operator.attrgetter(*names)
    if len(names) == 1:
        return lambda value: {names[0]: _unstructure(values(value))}

    def encode(value: Any) -> dict[str, Any]:
        out = dict(zip(names, values(value), strict=True))
        for name in walked:
            out[name] = _unstructure(out[name])
        return out

    return encode


def _same(value: Any) -> Any:
    return value


@functools.cache
def _decoder(kind: Any) -> Convert:
    """How an answer's JSON becomes the declared type ``kind`` (records, tuples of
    them, optionals), worked out once per type: resolving a record's annotations
    takes ~0.3 ms (an ``eval`` per field), and a follower decodes every answer.
    Asking ``typing`` about each field's type on every answer, as the plan did
    before, took a Memory 31 µs; this 5 (hot)."""
    options = _options(kind)
    if options is not None:
        if len(options) != 1:
            return _same
        inner = _decoder(options[0])
        return _same if inner is _same else lambda data: None if data is None else inner(data)
    if typing.get_origin(kind) is tuple:
        item = _decoder(typing.get_args(kind)[0])
        if item is _same:
            return _tuple_of
        return lambda data: None if data is None else tuple(item(element) for element in data)
    if isinstance(kind, type) and attrs.has(kind):
        hints = typing.get_type_hints(kind)
        plan = tuple((f.name, _decoder(hints[f.name])) for f in attrs.fields(kind))
        return lambda data: (
            None
            if data is None
            else kind(
                **{
                    name: data[name] if convert is _same else convert(data[name])
                    for name, convert in plan
                }
            )
        )
    return _same


def _tuple_of(data: Any) -> Any:
    return None if data is None else tuple(data)


def decode_record(kind: Any, data: Any) -> Any:
    """``data`` (an answer's JSON) as the record type ``kind``."""
    return _decoder(kind)(data)


def encode_result(verb: str, value: Any) -> Any:
    """The JSON of a verb's answer."""
    kind = VERBS.get(verb)
    if value.__class__ is kind:  # the record the verb declares: its plan at once
        return _encoder(kind)(value)
    return _unstructure(value)


def decode_result(verb: str, data: Any) -> Any:
    """A verb's answer from its JSON: the very record the owner's facade returned."""
    kind = VERBS[verb]
    return data if kind is None else _decoder(kind)(data)


def encode_error(exc: BaseException) -> dict[str, Any]:
    """The JSON of an error the owner's facade raised."""
    fields = {
        name: value
        for name, value in vars(exc).items()
        if isinstance(value, (str, int, float, bool, type(None)))
    }
    if isinstance(exc, MemoryActorsError):
        return {"type": type(exc).__name__, "message": str(exc), "fields": fields}
    # A bug in the owner: the follower's caller learns that storage failed, and why.
    return {
        "type": "StorageError",
        "message": f"the owner process failed: {type(exc).__name__}: {exc}",
        "fields": {},
    }


def decode_error(data: Mapping[str, Any]) -> MemoryActorsError:
    """The error the owner's facade raised, rebuilt as the same class with the same message."""
    name, message = str(data.get("type")), str(data.get("message"))
    kind = getattr(errors, name, None) if name in errors.__all__ else None
    if not (isinstance(kind, type) and issubclass(kind, MemoryActorsError)):
        return StorageError(f"the owner answered with an unknown error {name}: {message}")
    # Built without its own __init__ (some take keyword fields): the message and
    # the fields are the owner's exactly.
    exc = kind.__new__(kind)
    Exception.__init__(exc, message)
    fields = data.get("fields")
    if isinstance(fields, Mapping):
        vars(exc).update(fields)
    return exc


class _Parameters(NamedTuple):
    signature: inspect.Signature
    #: Those a caller may give by position, in order (None: not a plain signature,
    #: with ``*args``, ``**kwargs`` or positional-only parameters).
    positional: tuple[str, ...] | None
    by_keyword: frozenset[str]
    required: frozenset[str]


@functools.cache
def _parameters(function: Any) -> _Parameters:
    signature = inspect.signature(function)
    kinds = {p.name: p.kind for p in signature.parameters.values()}
    plain = all(
        kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        for kind in kinds.values()
    )
    return _Parameters(
        signature,
        tuple(n for n, k in kinds.items() if k is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if plain
        else None,
        frozenset(kinds),
        frozenset(
            p.name for p in signature.parameters.values() if p.default is inspect.Parameter.empty
        ),
    )


def bound_arguments(
    function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of ``function(*args, **kwargs)`` by name (those given, not defaults),
    or the TypeError of a call that does not fit, as ``inspect.Signature.bind`` has them.

    A facade call is bound on both sides of the link (the follower names its
    caller's arguments, the owner checks a follower's): the plain case is
    matched here by name, in a tenth of ``bind``'s time; any other goes to ``bind``.
    """
    parameters = _parameters(function)
    positional = parameters.positional
    if positional is not None and len(args) <= len(positional):
        given = dict(zip(positional, args, strict=False))  # the first few, by position
        if (
            given.keys().isdisjoint(kwargs)
            and parameters.by_keyword.issuperset(kwargs)
            and parameters.required <= given.keys() | kwargs.keys()
        ):
            given.update(kwargs)
            return given
    return dict(parameters.signature.bind(*args, **kwargs).arguments)
