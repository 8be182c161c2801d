"""Export, import and backup on a follower: the file's owner (another process) does them.

Real processes on one real file: an owner process stores continuously while
this test's process, a follower, exports, imports and backs up through it.
The CLI does the same beside a running owner.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from export_fixtures import synthetic_memory, write_synthetic_export

import actors.system
from actors import Config, MemorySystem
from actors.errors import InvalidImport
from actors.portable import memory_line

SCRIPT = str(Path(sys.executable).parent / "memory-actors")

#: Owns the file (started first) and stores until stdin closes; then prints how many.
_BUSY_OWNER = """
import json, sys, threading
from actors import MemorySystem
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with MemorySystem.open(sys.argv[1]) as system:
    print(system.status()["sharing"]["role"], flush=True)
    n = 0
    while not stop.is_set():
        system.store(f"owner memory {n}", namespace="owner", tags=["busy"])
        n += 1
    print(json.dumps({"stored": n}), flush=True)
"""


class _Owner:
    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BUSY_OWNER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "owner"

    def stop(self) -> int:
        """Stop storing and exit; how many memories it stored."""
        out, _ = self.proc.communicate("", timeout=120)
        assert self.proc.returncode == 0
        return int(json.loads(out.splitlines()[-1])["stored"])


@pytest.fixture
def busy_owner(tmp_path: Path) -> Iterator[tuple[Path, _Owner]]:
    db = tmp_path / "memory.db"
    owner = _Owner(db)
    yield db, owner
    if owner.proc.poll() is None:
        owner.proc.kill()
        owner.proc.communicate(timeout=30)


@pytest.fixture
def small_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export pages and import parts of 4 KiB: many frames cross for a few memories."""
    monkeypatch.setattr(actors.system, "_FORWARDED_BYTES", 4096)


def _follower(db: Path) -> MemorySystem:
    system = MemorySystem.open(db)
    assert system.status()["sharing"]["role"] == "follower"
    return system


def _rows(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, content FROM memories WHERE deleted = 0"))


@pytest.mark.usefixtures("small_frames")
def test_a_follower_exports_a_consistent_file_while_the_owner_writes(
    busy_owner: tuple[Path, _Owner], tmp_path: Path
) -> None:
    db, owner = busy_owner
    out = tmp_path / "export.jsonl"
    with _follower(db) as follower:
        before = follower.count().total
        report = follower.export_memories(out, tags=["busy"])
    stored = owner.stop()
    lines = out.read_bytes().splitlines()
    memories = [json.loads(line) for line in lines[1:]]
    ids = [m["id"] for m in memories]
    assert report.memories == len(memories) >= before > 0
    assert ids == sorted(set(ids)), "in id order, each memory once"
    rows = _rows(db)
    assert len(rows) == stored
    assert {m["id"]: m["content"] for m in memories} == {i: rows[i] for i in ids}


@pytest.mark.usefixtures("small_frames")
def test_a_follower_imports_through_the_owner_exactly_and_idempotently(
    busy_owner: tuple[Path, _Owner], tmp_path: Path
) -> None:
    db, owner = busy_owner
    dump = tmp_path / "dump.jsonl"
    with dump.open("wb") as fh:
        write_synthetic_export(fh, 1200)
    progress: list[int] = []
    with _follower(db) as follower:
        first = follower.import_memories(
            dump, batch_size=500, progress=lambda r: progress.append(r.last_line)
        )
        again = follower.import_memories(dump, batch_size=500)
        assert (first.read, first.inserted, first.updated, first.unchanged) == (1200, 1200, 0, 0)
        assert (again.read, again.inserted, again.updated, again.unchanged) == (1200, 0, 0, 1200)
        assert progress == [501, 1001, 1201]
        assert follower.count(namespace="bulk").total == 1200
        # A bad line stops the import there: the lines before it are committed.
        bad = tmp_path / "bad.jsonl"
        header = dump.read_bytes().splitlines(keepends=True)[0]
        fresh = [memory_line(synthetic_memory(10_000 + n, namespace="fresh")) for n in range(900)]
        bad.write_bytes(b"".join([header, *fresh[:700], b'{"id": "not an id"}\n', *fresh[700:]]))
        with pytest.raises(InvalidImport) as raised:
            follower.import_memories(bad, batch_size=500)
        assert raised.value.line == 702
        assert "lines 2-701 were committed (read 700: 700 inserted" in str(raised.value)
        assert follower.count(namespace="fresh").total == 700
    stored = owner.stop()
    assert len(_rows(db)) == stored + 1200 + 700


def test_a_follower_backs_up_through_the_owner(
    busy_owner: tuple[Path, _Owner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, owner = busy_owner
    elsewhere = tmp_path / "here"
    elsewhere.mkdir()
    # A relative path is this process's, not the owner's (whose directory differs).
    monkeypatch.chdir(elsewhere)
    with _follower(db) as follower:
        before = follower.count().total
        report = follower.backup("copy.db")
    owner.stop()
    copy = elsewhere / "copy.db"
    assert report.path == str(copy)
    assert report.facts.integrity == "ok"
    assert report.facts.memories >= before > 0
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        counted = conn.execute("SELECT count(*) FROM memories WHERE deleted = 0").fetchone()
    assert counted == (report.facts.memories,)
    assert not list(elsewhere.glob("*partial*")), "no scratch file left behind"


def test_the_cli_exports_imports_and_backs_up_beside_a_running_owner(
    busy_owner: tuple[Path, _Owner], tmp_path: Path
) -> None:
    db, owner = busy_owner

    def cli(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [SCRIPT, "--db", str(db), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    dump = tmp_path / "dump.jsonl"
    with dump.open("wb") as fh:
        write_synthetic_export(fh, 300)
    imported = cli("import", str(dump))
    assert (imported["inserted"], imported["unchanged"]) == (300, 0)
    exported = cli("export", str(tmp_path / "out.jsonl"), "--namespace-prefix", "bulk")
    assert exported["memories"] == 300
    backed_up = cli("backup", str(tmp_path / "copy.db"))
    assert backed_up["integrity"] == "ok"
    assert isinstance(backed_up["memories"], int)
    assert backed_up["memories"] >= 300
    stored = owner.stop()
    # The owner stayed the owner throughout: the commands followed it.
    assert len(_rows(db)) == stored + 300
    with MemorySystem.open(tmp_path / "copy.db", config=Config(sharing="direct")) as copy:
        assert copy.count(namespace="bulk").total == 300
