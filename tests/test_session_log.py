"""The session log on both facades: order, limits, atomic pops, bad input, durability.

Each test opens a real MemorySystem on its own file; the SQL is checked
through the facade, and the table directly where "nothing stored" or "not
synced" must be seen from outside.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import AsyncMemorySystem, Config, InvalidMemory, MemorySystem
from actors.session_log import MAX_ITEM_BYTES, MAX_ITEMS_PER_CALL

FAST = Config(synchronous="OFF")


@pytest.fixture
def memory(db_path: Path) -> Iterator[MemorySystem]:
    """A MemorySystem without fsync (these tests are about order and validation)."""
    with MemorySystem.open(db_path, config=FAST) as system:
        yield system


def _rows(db_path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT session_id, item FROM session_items ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_items_come_back_oldest_first_and_limit_takes_the_latest(memory: MemorySystem) -> None:
    """Appends keep order across calls; ``limit`` keeps the newest N, still oldest first."""
    assert memory.session_add("s", [{"n": 0}, {"n": 1}]) == 2
    assert memory.session_add("s", [{"n": 2}]) == 1
    assert memory.session_items("s") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert memory.session_items("s", limit=2) == [{"n": 1}, {"n": 2}]
    assert memory.session_items("s", limit=10) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert memory.session_items("unknown") == []


def test_sessions_are_independent(memory: MemorySystem) -> None:
    """Pop and clear touch only their own session."""
    memory.session_add("a", ["a1", "a2"])
    memory.session_add("b", ["b1"])
    assert memory.session_pop("a") == "a2"
    assert memory.session_clear("b") == 1
    assert memory.session_items("a") == ["a1"]
    assert memory.session_items("b") == []


def test_pop_returns_the_newest_then_none_once_empty(memory: MemorySystem) -> None:
    """Pop takes items newest first; an empty log answers None and clear answers 0."""
    memory.session_add("s", [1, "two", {"three": [3]}])
    assert [memory.session_pop("s") for _ in range(4)] == [{"three": [3]}, "two", 1, None]
    assert memory.session_clear("s") == 0


def test_items_are_stored_as_compact_json_and_returned_decoded(
    memory: MemorySystem, db_path: Path
) -> None:
    """The row holds compact JSON (non-ASCII kept as is); callers get the values back."""
    item = {"role": "user", "content": "héllo 漢字", "n": [1, 2.5, None, True]}
    memory.session_add("s", [item])
    assert _rows(db_path) == [("s", '{"role":"user","content":"héllo 漢字","n":[1,2.5,null,true]}')]
    assert memory.session_items("s") == [item]


def test_a_full_call_of_1000_items_at_the_size_limit_is_accepted(memory: MemorySystem) -> None:
    """The limits are inclusive: 1000 items in one call, an item of exactly 64 KiB."""
    memory.session_add("s", list(range(MAX_ITEMS_PER_CALL)))
    big = "x" * (MAX_ITEM_BYTES - 2)  # the quotes make it 64 KiB of JSON
    memory.session_add("s", [big])
    items = memory.session_items("s")
    assert items[:-1] == list(range(MAX_ITEMS_PER_CALL))
    assert items[-1] == big


@pytest.mark.parametrize(
    ("session_id", "items", "message"),
    [
        ("", ["x"], "session_id is empty"),
        (7, ["x"], "session_id must be a string, not int"),
        ("s" * 257, ["x"], "session_id has 257 characters; at most 256"),
        ("a\nb", ["x"], r"session_id contains a control character \('\\n'\) at position 1"),
        ("a\ud800", ["x"], "session_id has an unpaired surrogate at position 1"),
        ("s", "not a list", "items must be a list, not str"),
        ("s", {"role": "user"}, "items must be a list, not dict"),
        ("s", None, "items must be a list, not NoneType"),
        ("s", ["ok", {1, 2}], r"items\[1\] is not JSON-serialisable: Object of type set"),
        ("s", [float("nan")], r"items\[0\] is not JSON-serialisable: Out of range float"),
        ("s", [{"t": "\udc00"}], r"items\[0\] is not valid UTF-8"),
        ("s", ["x" * MAX_ITEM_BYTES], r"items\[0\] is 65538 bytes as compact JSON; at most 65536"),
        ("s", [0] * (MAX_ITEMS_PER_CALL + 1), "1001 items given; at most 1000 per call"),
    ],
)
def test_bad_input_is_refused_precisely_and_stores_nothing(
    memory: MemorySystem, db_path: Path, session_id: Any, items: Any, message: str
) -> None:
    """Wrong types, oversized or non-JSON items, bad ids: InvalidMemory; the table stays empty."""
    with pytest.raises(InvalidMemory, match=message):
        memory.session_add(session_id, items)
    assert _rows(db_path) == []


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (0, "limit must be at least 1"),
        (-3, "limit must be at least 1"),
        (True, "limit must be an integer or None, not bool"),
        ("5", "limit must be an integer or None, not str"),
    ],
)
def test_a_bad_limit_is_refused(memory: MemorySystem, limit: Any, message: str) -> None:
    """``limit`` is a positive int or None."""
    with pytest.raises(InvalidMemory, match=message):
        memory.session_items("s", limit=limit)


def test_pop_and_clear_validate_the_session_id(memory: MemorySystem) -> None:
    """Every verb checks its session id before a request is built."""
    with pytest.raises(InvalidMemory, match="session_id is empty"):
        memory.session_pop("")
    with pytest.raises(InvalidMemory, match="session_id must be a string"):
        memory.session_clear(None)


def test_the_log_survives_close_and_reopen(db_path: Path) -> None:
    """Items committed before close are there, in order, after the file is opened again."""
    with MemorySystem.open(db_path) as memory:
        memory.session_add("s", [{"n": 1}, {"n": 2}, {"n": 3}])
        memory.session_pop("s")
    with MemorySystem.open(db_path) as memory:
        assert memory.session_items("s") == [{"n": 1}, {"n": 2}]
        memory.session_add("s", [{"n": 4}])
        assert memory.session_items("s") == [{"n": 1}, {"n": 2}, {"n": 4}]


def test_session_writes_never_enter_the_sync_outbox(memory: MemorySystem) -> None:
    """The log is local: appends, pops and clears leave the outbox and the memories alone."""
    memory.session_add("s", ["a", "b"])
    memory.session_pop("s")
    memory.session_clear("s")
    counts = memory.count()
    assert (counts.total, counts.outbox_pending) == (0, 0)


def test_both_facades_share_one_log_and_batch_with_stores(memory: MemorySystem) -> None:
    """Async appends racing with stores in one group commit; reads on either facade agree."""
    facade = AsyncMemorySystem(memory)

    async def body() -> list[Any]:
        await asyncio.gather(
            *(facade.session_add("s", [i]) for i in range(20)),
            *(facade.store(f"note {i}") for i in range(20)),
        )
        assert await facade.session_pop("s") == 19
        return await facade.session_items("s", limit=3)

    assert asyncio.run(body()) == [16, 17, 18]
    assert memory.session_items("s") == list(range(19))
    assert memory.count().total == 20
