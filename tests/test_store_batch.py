"""The batched write path gives exactly the results of applying writes one by one.

``LocalDatabase.apply_writes`` gathers new memories into multi-row INSERTs
(the hot path at 64 writers, see ``docs/performance.md``). These tests drive
one batch at a time through ``commit_writes`` (the group commit's one
transaction) on two databases over two files, one with the batched path and
one with the plain per-write ``apply_write``, and compare every answer and
the final tables, ids mapped to order of appearance.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors._sqlite import connect
from actors.local_db import LocalDatabase
from actors.messages import ForgetMemory, StoreMemory, WriteRequest
from actors.migrations import migrate
from actors.model import content_hash
from actors.runtime import ThreadedRuntime

_counter = itertools.count()


class _OneByOne(LocalDatabase):
    """The reference: every write through ``apply_write``, as before the batched path."""

    def apply_writes(self, batch: Sequence[WriteRequest], now: float) -> list[object]:
        return [self.apply_write(request, now) for request in batch]


def _open(tmp_path: Path, cls: type[LocalDatabase]) -> LocalDatabase:
    path = str(tmp_path / f"{cls.__name__}-{next(_counter)}.db")
    migrate(path, now=lambda: 1.0)
    runtime = ThreadedRuntime(seed=1)
    return cls.open(
        path,
        new_id=runtime.new_id,
        wall_time=runtime.wall_time,
        monotonic=runtime.monotonic,
        jitter=runtime.rng("sync.backoff").random,
        synchronous="OFF",
    )


def _reply() -> pykka.Future[Any]:
    """A write's reply future: the database never settles it (its owner does)."""
    return pykka.ThreadingFuture()


# An op: ("store", content index, namespace index, tags), ("forget", earlier receipt index),
# or ("keyed", ...) below.
_store_op = st.tuples(
    st.just("store"),
    st.integers(0, 3),
    st.integers(0, 1),
    st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2),
)
_forget_op = st.tuples(st.just("forget"), st.integers(0, 40))
# ("keyed", content index, namespace index, tags, key index): an upsert in place.
_keyed_op = st.tuples(
    st.just("keyed"),
    st.integers(0, 3),
    st.integers(0, 1),
    st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2),
    st.integers(0, 2),
)
_batches = st.lists(
    st.lists(st.one_of(_store_op, _store_op, _forget_op, _keyed_op), max_size=8), max_size=5
)


def _run(db: LocalDatabase, batches: list[list[tuple[Any, ...]]]) -> list[Any]:
    """Apply the batches; answers with ids replaced by their order of first appearance."""
    ids: dict[str, int] = {}
    known: list[str] = []
    answers: list[Any] = []
    for ops in batches:
        batch: list[WriteRequest] = []
        for op in ops:
            if op[0] in ("store", "keyed"):
                text = f"memory number {op[1]}"
                batch.append(
                    StoreMemory(
                        _reply(),
                        text,
                        content_hash(text),
                        f"ns{op[2]}",
                        tuple(sorted(op[3])),
                        "{}",
                        f"key-{op[4]}" if op[0] == "keyed" else None,
                    )
                )
            elif known:
                batch.append(ForgetMemory(_reply(), known[op[1] % len(known)]))
        if not batch:
            continue
        for result in db.commit_writes(batch):
            data = result.to_dict() if hasattr(result, "to_dict") else repr(result)
            if isinstance(data, dict) and "id" in data:
                if data["id"] not in ids:
                    ids[data["id"]] = len(ids)
                    known.append(data["id"])
                data["id"] = ids[data["id"]]
            answers.append(data)
    rows = db.conn.execute(
        "SELECT id, namespace, content, tags, metadata, deleted, sync_state FROM memories "
        "ORDER BY rowid"
    ).fetchall()
    outbox = db.conn.execute("SELECT memory_id, op FROM outbox ORDER BY seq").fetchall()
    answers.append([(ids.get(r[0], r[0]), *r[1:]) for r in rows])
    answers.append([(ids.get(memory_id, memory_id), op) for memory_id, op in outbox])
    versions = [r[0] for r in db.conn.execute("SELECT version FROM outbox ORDER BY seq")]
    assert versions == sorted(versions), "versions are minted in arrival order"
    return answers


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_batches)
def test_batched_writes_answer_and_store_exactly_what_one_by_one_writes_do(
    tmp_path: Path, batches: list[list[tuple[Any, ...]]]
) -> None:
    """Duplicates within a batch, tag merges and forgets in between: same answers, same rows."""
    batched, reference = _open(tmp_path, LocalDatabase), _open(tmp_path, _OneByOne)
    try:
        assert _run(batched, batches) == _run(reference, batches)
    finally:
        batched.close()
        reference.close()


def test_a_batch_of_new_memories_is_one_transaction_with_an_outbox_row_each(
    tmp_path: Path,
) -> None:
    """64 new stores in one batch: 64 rows, 64 outbox rows, all searchable (FTS5 triggers)."""
    db = _open(tmp_path, LocalDatabase)
    try:
        batch: list[WriteRequest] = []
        for i in range(64):
            text = f"note {i} about pelicans"
            batch.append(StoreMemory(_reply(), text, content_hash(text), "default", (), "{}"))
        receipts = db.commit_writes(batch)
        assert len({r.id for r in receipts}) == 64  # type: ignore[attr-defined]
        assert db.conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 64
        assert db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 64
        hits = db.conn.execute(
            "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'pelicans'"
        ).fetchone()[0]
        assert hits == 64
    finally:
        db.close()


@pytest.mark.parametrize("size", [1, 300])
def test_batches_larger_than_one_statement_are_split(tmp_path: Path, size: int) -> None:
    """A batch beyond the per-statement chunk is written in several multi-row INSERTs."""
    db = _open(tmp_path, LocalDatabase)
    try:
        batch: list[WriteRequest] = []
        for i in range(size):
            text = f"chunked {i}"
            batch.append(StoreMemory(_reply(), text, content_hash(text), "default", ("t",), "{}"))
        db.commit_writes(batch)
        conn = connect(db.path)
        try:
            assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == size
            tags = {json.loads(t) == ["t"] for (t,) in conn.execute("SELECT tags FROM memories")}
            assert tags == {True}
        finally:
            conn.close()
    finally:
        db.close()
