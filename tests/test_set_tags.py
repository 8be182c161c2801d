"""``set_tags``: replace a memory's tags (the dashboard's tag editor), on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from actors import AsyncMemorySystem, InvalidMemory, MemoryNotFound, MemorySystem


def _outbox_versions(path: Path, memory_id: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT version FROM outbox WHERE memory_id = ? ORDER BY seq", (memory_id,)
        )
        return [version for (version,) in rows]
    finally:
        conn.close()


def test_set_tags_replaces_the_tags_as_a_new_version(system: MemorySystem, db_path: Path) -> None:
    """Tags are added and removed in one call; the change is a new version queued for the hub."""
    receipt = system.store("Deploys happen on Tuesdays", tags=["ops", "old"])
    before = system.get(receipt.id)
    updated = system.set_tags(receipt.id, tags=["Ops", "release"])
    assert updated.tags == ("ops", "release")
    assert updated.version > before.version
    assert updated.content == before.content
    assert system.get(receipt.id) == updated
    assert system.list(tags=["old"]).memories == ()
    assert _outbox_versions(db_path, receipt.id)[-1] == updated.version


def test_the_same_tags_change_nothing(system: MemorySystem, db_path: Path) -> None:
    """Setting the tags a memory already has writes no version and queues nothing."""
    receipt = system.store("Same tags twice", tags=["a", "b"])
    before = system.get(receipt.id)
    assert system.set_tags(receipt.id, tags=["b", "a"]) == before
    assert _outbox_versions(db_path, receipt.id) == [before.version]


def test_set_tags_by_key_and_to_none(system: MemorySystem) -> None:
    """A keyed memory is named by its key; an empty list removes every tag."""
    receipt = system.store("prefers dark mode", key="theme", namespace="u/a", tags=["ui"])
    assert system.set_tags(key="theme", namespace="u/a", tags=[]).tags == ()
    assert system.get(receipt.id).tags == ()


def test_unknown_forgotten_and_bad_tags_are_refused_and_change_nothing(
    system: MemorySystem,
) -> None:
    """Precise errors; the memory keeps its tags."""
    receipt = system.store("Keep these tags", tags=["keep"])
    with pytest.raises(InvalidMemory, match="comma"):
        system.set_tags(receipt.id, tags=["fine", "not,fine"])
    with pytest.raises(InvalidMemory, match="list of strings"):
        system.set_tags(receipt.id, tags="keep")
    with pytest.raises(MemoryNotFound, match="no memory has id"):
        system.set_tags("0190a2c4-0000-7000-8000-000000000000", tags=["x"])
    assert system.get(receipt.id).tags == ("keep",)
    gone = system.store("Forget me")
    system.forget(gone.id)
    with pytest.raises(MemoryNotFound, match="forgotten"):
        system.set_tags(gone.id, tags=["x"])


def test_a_follower_sets_tags_through_the_owner(db_path: Path) -> None:
    """The verb travels to the file's owner like the others (one owner per file)."""
    with MemorySystem.open(db_path) as owner, MemorySystem.open(db_path) as follower:
        assert follower.status()["sharing"]["role"] == "follower"
        receipt = owner.store("Shared between processes", tags=["a"])
        assert follower.set_tags(receipt.id, tags=["b"]).tags == ("b",)
        assert owner.get(receipt.id).tags == ("b",)


def test_the_async_facade_sets_tags(db_path: Path) -> None:
    """AsyncMemorySystem has the same verb."""

    async def main() -> tuple[str, ...]:
        async with AsyncMemorySystem.open(db_path) as memory:
            receipt = await memory.store("async tags", tags=["x"])
            return (await memory.set_tags(receipt.id, tags=["y", "z"])).tags

    assert asyncio.run(main()) == ("y", "z")
