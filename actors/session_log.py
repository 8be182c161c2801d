"""An ordered log of items per agent session: its validation and its SQL.

The table is ``session_items`` (schema step 5): one row per item, ordered by
``seq``, the compact JSON text of the item. It is local to the file and never
synced: a conversation's history belongs to the process family that runs the
agent, and a hub has no use for it.

No actor code here. The writes run inside the StoreActor's group-commit
transaction (:meth:`actors.local_db.LocalDatabase.apply_write` calls
:func:`append`, :func:`pop` and :func:`clear`), so a pop is one read and one
delete under one write lock, also across processes (``BEGIN IMMEDIATE``).
The facade validates with :func:`validate_session_id`, :func:`encode_items`
and :func:`validate_items_limit` before any request is built, so bad input
never reaches the store.

Errors: the SQL raises ``sqlite3.Error`` (the owner's group commit retries or
translates it); the validators raise :class:`~actors.errors.InvalidMemory`.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections.abc import Sequence
from typing import Any, TypeAlias

from actors.errors import InvalidMemory

__all__ = [
    "MAX_ITEMS_PER_CALL",
    "MAX_ITEM_BYTES",
    "MAX_SESSION_ID_CHARS",
    "SessionItems",
    "append",
    "clear",
    "encode_items",
    "pop",
    "read",
    "validate_items_limit",
    "validate_session_id",
]

#: Ids come from agent frameworks (UUIDs, user/thread composites): 256 leaves room.
MAX_SESSION_ID_CHARS = 256
#: One item is one message or tool call: as large as a memory's content may be.
MAX_ITEM_BYTES = 64 * 1024
#: Items in one append: a turn writes a handful; 1000 bounds one request (~64 MiB).
MAX_ITEMS_PER_CALL = 1000

#: A session's items as callers get them: decoded JSON values, oldest first.
SessionItems: TypeAlias = list[Any]

#: Rows per multi-row INSERT: 3 parameters a row, far below SQLite's 32,766 limit.
_CHUNK = 500


# -- validation (the facade's, before any request is built) --------------------------


def validate_session_id(session_id: object) -> str:
    """``session_id`` if it is a non-empty string of at most 256 characters, no control
    characters; else :class:`~actors.errors.InvalidMemory`."""
    if not isinstance(session_id, str):
        raise InvalidMemory(f"session_id must be a string, not {type(session_id).__name__}")
    if not session_id:
        raise InvalidMemory("session_id is empty")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidMemory(
            f"session_id has {len(session_id)} characters; at most {MAX_SESSION_ID_CHARS}"
        )
    for index, char in enumerate(session_id):
        category = unicodedata.category(char)
        if category == "Cc":
            raise InvalidMemory(
                f"session_id contains a control character ({char!r}) at position {index}"
            )
        if category == "Cs":  # cannot be stored as UTF-8
            raise InvalidMemory(f"session_id has an unpaired surrogate at position {index}")
    return session_id


def encode_items(items: object) -> tuple[str, ...]:
    """Each item as compact JSON text, or :class:`~actors.errors.InvalidMemory` naming
    the first item that is not JSON, too large, or the call that has too many."""
    if not isinstance(items, list | tuple):
        raise InvalidMemory(f"items must be a list, not {type(items).__name__}")
    if len(items) > MAX_ITEMS_PER_CALL:
        raise InvalidMemory(
            f"{len(items)} items given; at most {MAX_ITEMS_PER_CALL} per call (split the list)"
        )
    return tuple(_encode(item, index) for index, item in enumerate(items))


def _encode(item: object, index: int) -> str:
    try:
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMemory(f"items[{index}] is not JSON-serialisable: {exc}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidMemory(
            f"items[{index}] is not valid UTF-8 (unpaired surrogate in its JSON at {exc.start})"
        ) from None
    if size > MAX_ITEM_BYTES:
        raise InvalidMemory(
            f"items[{index}] is {size} bytes as compact JSON; at most {MAX_ITEM_BYTES}"
        )
    return text


def validate_items_limit(limit: object) -> int | None:
    """``limit`` if it is None (every item) or a positive int; else ``InvalidMemory``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidMemory(f"limit must be an integer or None, not {type(limit).__name__}")
    if limit < 1:
        raise InvalidMemory(f"limit must be at least 1 (or None for every item), got {limit}")
    return limit


# -- SQL (inside the owner's transaction for writes) ----------------------------------


def append(conn: sqlite3.Connection, session_id: str, items: Sequence[str], now: float) -> int:
    """Append encoded ``items`` after the session's newest; returns how many."""
    for start in range(0, len(items), _CHUNK):
        part = items[start : start + _CHUNK]
        conn.execute(
            "INSERT INTO session_items(session_id, item, created_at) VALUES "
            + ",".join(["(?,?,?)"] * len(part)),
            [value for item in part for value in (session_id, item, now)],
        )
    return len(items)


def read(conn: sqlite3.Connection, session_id: str, limit: int | None) -> SessionItems:
    """The latest ``limit`` items (all when None), decoded, oldest first."""
    if limit is None:
        rows = conn.execute(
            "SELECT item FROM session_items WHERE session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT item FROM session_items WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, limit),
        ).fetchall()
        rows.reverse()
    return [json.loads(text) for (text,) in rows]


def pop(conn: sqlite3.Connection, session_id: str) -> Any:
    """Delete the session's newest item and return it decoded; None when it is empty."""
    rows = conn.execute(
        "DELETE FROM session_items WHERE seq = "
        "(SELECT max(seq) FROM session_items WHERE session_id = ?) RETURNING item",
        (session_id,),
    ).fetchall()  # fetched to the end, so no statement is left open before COMMIT
    return json.loads(rows[0][0]) if rows else None


def clear(conn: sqlite3.Connection, session_id: str) -> int:
    """Delete every item of the session; returns how many there were."""
    return conn.execute("DELETE FROM session_items WHERE session_id = ?", (session_id,)).rowcount
