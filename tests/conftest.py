"""Shared fixtures: a real SQLite file per test, and a MemorySystem on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import MemorySystem


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A path for a fresh database file in the test's own temp dir."""
    return tmp_path / "memory.db"


@pytest.fixture
def system(db_path: Path) -> Iterator[MemorySystem]:
    """A MemorySystem on a fresh file, closed after the test."""
    with MemorySystem.open(db_path) as memory:
        yield memory
