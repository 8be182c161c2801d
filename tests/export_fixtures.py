"""Synthetic exports for tests and benchmarks: N distinct memories as an export file.

Lines are made with the format's own writer (:func:`actors.portable.memory_line`),
so a synthetic file is exactly what ``memory-actors export`` would write for
those memories.
"""

from __future__ import annotations

from typing import IO

from actors.model import Memory, content_hash, format_version, uuid7
from actors.portable import ExportFilters, header_line, memory_line

#: Words mixed into the synthetic content, so recall and FTS have something to index.
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def synthetic_memory(n: int, *, namespace: str = "bulk") -> Memory:
    """The ``n``-th synthetic memory: a UUIDv7-shaped id, versions in id order."""
    content = f"synthetic memory {n}: {WORDS[n % len(WORDS)]} {WORDS[(n * 7) % len(WORDS)]}"
    return Memory(
        id=uuid7(1_700_000_000_000 + n, 0, n),
        namespace=namespace,
        content=content,
        content_hash=content_hash(content),
        tags=(f"t{n % 10}",),
        metadata={"n": n},
        created_at=1_700_000_000.0 + n / 1000,
        updated_at=1_700_000_000.0 + n / 1000,
        version=format_version(1_700_000_000_000 + n, 0),
        origin="synthetic",
        deleted=False,
        sync_state="committed",
    )


def write_synthetic_export(out: IO[bytes], count: int, *, namespace: str = "bulk") -> None:
    """An export of ``count`` synthetic memories, written as it goes (flat memory)."""
    out.write(header_line(ExportFilters(), 1_700_000_000.0))
    chunk: list[bytes] = []
    for n in range(count):
        chunk.append(memory_line(synthetic_memory(n, namespace=namespace)))
        if len(chunk) == 10_000:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
