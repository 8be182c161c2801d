"""Internal: readers of untrusted JSON that name the path of what is wrong.

The hub parses requests and the client parses the hub's answers with the
same records (:mod:`actors.wire`); each field goes through one of these, so
a bad document is refused with one precise message
(``items[3].version: must be a string, not a number``) whichever side reads
it. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from actors.errors import InvalidMemory
from actors.model import validate_id

__all__ = [
    "ShapeError",
    "field",
    "join",
    "matching",
    "read_array",
    "read_boolean",
    "read_finite",
    "read_integer",
    "read_memory_id",
    "read_number",
    "read_object",
    "read_string",
    "required",
    "type_name",
    "validated",
]


P = ParamSpec("P")
T = TypeVar("T")


class ShapeError(ValueError):
    """A JSON document does not have the protocol's shape; ``path`` names the field.

    Internal to the hub package and :mod:`actors.remote`: the hub turns it into
    a 422 answer, the client into :class:`~actors.errors.HubProtocolError`.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def field(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    reader: Callable[Concatenate[Any, str, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """The required field ``key`` of ``obj``, read by ``reader`` at ``path.key``.

    ``field(obj, "version", path, read_string)`` is
    ``read_string(required(obj, "version", path), join(path, "version"))``:
    every record's ``parse`` reads its fields this way.
    """
    return reader(required(obj, key, path), join(path, key), *args, **kwargs)


def join(path: str, key: str) -> str:
    """The path of ``key`` inside ``path`` (``items[3]`` + ``version``)."""
    return f"{path}.{key}" if path else key


def type_name(value: object) -> str:
    """How a JSON value's type reads in a message (``a string``, ``null``)."""
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


def read_object(value: object, path: str) -> Mapping[str, Any]:
    """``value`` as a JSON object, or ShapeError."""
    if not isinstance(value, dict):
        raise ShapeError(path, f"must be a JSON object, not {type_name(value)}")
    return value


def required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    """``obj[key]``, or ShapeError naming the missing field."""
    if key not in obj:
        raise ShapeError(join(path, key), "is required")
    return obj[key]


def read_string(value: object, path: str) -> str:
    """``value`` as a string, or ShapeError."""
    if not isinstance(value, str):
        raise ShapeError(path, f"must be a string, not {type_name(value)}")
    return value


def read_integer(value: object, path: str, *, minimum: int = 0) -> int:
    """``value`` as an integer of at least ``minimum`` (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShapeError(path, f"must be an integer, not {type_name(value)}")
    if value < minimum:
        raise ShapeError(path, f"must be at least {minimum}, got {value}")
    return value


def read_number(value: object, path: str) -> float:
    """``value`` as a finite number >= 0 (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(path, f"must be a number, not {type_name(value)}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ShapeError(path, f"must be a finite number >= 0, got {value!r}")
    return number


def read_finite(value: object, path: str) -> float:
    """``value`` as a finite number, of any sign."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(path, f"must be a number, not {type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ShapeError(path, f"must be a finite number, got {value!r}")
    return number


def read_boolean(value: object, path: str) -> bool:
    """``value`` as ``true`` or ``false``, or ShapeError."""
    if not isinstance(value, bool):
        raise ShapeError(path, f"must be true or false, not {type_name(value)}")
    return value


def read_array(value: object, path: str) -> list[Any]:
    """``value`` as a JSON array, or ShapeError."""
    if not isinstance(value, list):
        raise ShapeError(path, f"must be an array, not {type_name(value)}")
    return value


def matching(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    """``value`` as a string that ``pattern`` matches whole; ``what`` names the form."""
    text = read_string(value, path)
    if not pattern.fullmatch(text):
        raise ShapeError(path, f"{text[:80]!r} is not {what}")
    return text


def read_memory_id(value: object, path: str) -> str:
    """``value`` as a memory id (canonical UUID), or ShapeError with the reason."""
    try:
        return validate_id(value)
    except InvalidMemory as exc:
        raise ShapeError(path, str(exc)) from None


def validated(path: str, check: Any, value: object) -> Any:
    """``check(value)``, its InvalidMemory turned into a ShapeError at ``path``."""
    try:
        return check(value)
    except InvalidMemory as exc:
        raise ShapeError(path, str(exc)) from None
