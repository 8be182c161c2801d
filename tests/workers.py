"""Worker programs that tests run as real OS processes (``python tests/workers.py ...``).

Each prints one JSON document on stdout and exits 0, or exits non-zero with
the error on stderr.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors import MemorySystem
from actors.system import Config


def store_many(db: str, threads: int, per_thread: int, tag: str) -> None:
    """Store ``threads × per_thread`` distinct memories; report acked ids and errors."""
    acked: list[str] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        start.wait()
        for i in range(per_thread):
            try:
                receipt = memory.store(f"{tag} thread {index} item {i}", tags=[tag])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                acked.append(receipt.id)

    with MemorySystem.open(db, config=Config(busy_timeout=10.0)) as memory:
        pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    print(json.dumps({"acked": acked, "errors": errors}))


def session_append(db: str, session_id: str, tag: str, count: int) -> None:
    """Append ``count`` items ``{"p": tag, "i": i}`` to one session, 1-3 per call, in order."""
    items = [{"p": tag, "i": i} for i in range(count)]
    calls = 0
    with MemorySystem.open(db, config=Config(busy_timeout=10.0)) as memory:
        start = 0
        while start < count:
            size = 1 + calls % 3
            memory.session_add(session_id, items[start : start + size])
            start += size
            calls += 1
    print(json.dumps({"appended": count, "calls": calls}))


def open_only(db: str) -> None:
    """Open (and so migrate) the file, report the migration, close."""
    with MemorySystem.open(db) as memory:
        report = memory.migration
    print(json.dumps({"from": report.from_version, "applied": list(report.applied)}))


def hold_write_lock(db: str, seconds: float, ready_file: str) -> None:
    """Hold a write transaction on ``db`` for ``seconds`` (a foreign writer)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    Path(ready_file).write_text("locked")
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()
    print(json.dumps({"held": seconds}))


def _live(memory: MemorySystem) -> list[dict[str, Any]]:
    """Every live memory of the file, as {id, content, tags} (paged through ``list``)."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        page = memory.list(limit=200, before=before)
        out.extend({"id": m.id, "content": m.content, "tags": list(m.tags)} for m in page.memories)
        if page.next_before is None:
            return out
        before = page.next_before


def sync_plan(plan_path: str) -> None:
    """Run a sync plan (JSON file) against a hub, wait until converged, report the live set.

    The plan: ``db``, ``url``, ``key``, ``remote`` (RemoteConfig knobs),
    ``stores`` ([{content, tags}], spread over ``threads`` threads),
    ``forget_own`` (contents this worker stored, forgotten after storing),
    ``forget_remote`` (contents another replica stores: forgotten once they
    arrive), ``expect`` ([[content, [tags]]]: the converged live set) and
    ``deadline`` (s). Converged means: the live (content, tags) set is
    ``expect``, nothing waits in the outbox, every remote forget was done.
    Exits 3 with the last state on stderr if the deadline passes first.
    """
    from actors.sync_model import RemoteConfig

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    remote = RemoteConfig(plan["url"], plan["key"], **plan.get("remote", {}))
    expect = {(content, tuple(sorted(tags))) for content, tags in plan["expect"]}
    errors: list[str] = []
    slowest = [0.0]
    ids: dict[str, str] = {}

    def writer(items: list[dict[str, Any]]) -> None:
        for item in items:
            started = time.monotonic()
            try:
                receipt = memory.store(item["content"], tags=item.get("tags") or [])
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                ids[item["content"]] = receipt.id
            slowest[0] = max(slowest[0], time.monotonic() - started)

    config = Config(remote=remote, busy_timeout=10.0)
    with MemorySystem.open(plan["db"], config=config) as memory:
        deadline = time.monotonic() + float(plan.get("deadline", 60))
        stores = plan.get("stores", [])
        threads = max(1, int(plan.get("threads", 1)))
        pool = [threading.Thread(target=writer, args=(stores[n::threads],)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        for content in plan.get("forget_own", []):
            memory.forget(ids[content])
        remaining = set(plan.get("forget_remote", []))
        while True:
            counts = memory.count()
            live: list[dict[str, Any]] = []
            if remaining or (counts.total == len(expect) and counts.outbox_pending == 0):
                live = _live(memory)
                for item in live:
                    if item["content"] in remaining:
                        memory.forget(item["id"])
                        remaining.discard(item["content"])
                state = {(m["content"], tuple(sorted(m["tags"]))) for m in live}
                if not remaining and state == expect and counts.outbox_pending == 0:
                    break
            if time.monotonic() > deadline:
                sys.exit(
                    f"not converged: {counts!r}; remaining forgets {sorted(remaining)}; "
                    f"sync {memory.sync_report()!r}; errors {errors[:5]}"
                )
            time.sleep(0.05)  # the cadence of a bounded convergence check
        report = memory.sync_report()
        print(
            json.dumps(
                {
                    "live": live,
                    "ids": ids,
                    "errors": errors,
                    "slowest_store": slowest[0],
                    "dead_letters": counts.dead_letters,
                    "sync": report.to_dict() if report else None,
                }
            )
        )


def sync_serve(plan_path: str) -> None:
    """Open a synced MemorySystem, store ``stores``, then report status until told to stop.

    Every 50 ms the sync state, lease and outbox go to ``status`` (written
    atomically, as JSON); the worker closes cleanly once ``stop`` exists.
    """
    from actors.sync_model import RemoteConfig

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    remote = RemoteConfig(plan["url"], plan["key"], **plan.get("remote", {}))
    status = Path(plan["status"])
    stop = Path(plan["stop"])
    # Direct by default: the sync lease between processes that each run their
    # own SyncActor (with one owner per file, only the owner syncs).
    config = Config(remote=remote, busy_timeout=10.0, sharing=plan.get("sharing", "direct"))
    with MemorySystem.open(plan["db"], config=config) as memory:
        stored = [memory.store(content).id for content in plan.get("stores", [])]
        while not stop.exists():
            report = memory.sync_report()
            counts = memory.count()
            assert report is not None
            data = {
                "pid": os.getpid(),
                "role": memory.status()["sharing"]["role"],
                # The actors this process runs itself (a follower's status() is its owner's).
                "own_actors": sorted(memory._cells),
                "state": report.state,
                "reason": report.reason,
                "lease_holder": report.lease_holder,
                "pushed": report.pushed,
                "outbox_pending": counts.outbox_pending,
                "total": counts.total,
                "stored": stored,
            }
            scratch = status.with_suffix(".tmp")
            scratch.write_text(json.dumps(data), encoding="utf-8")
            os.replace(scratch, status)
            time.sleep(0.05)  # the reporting cadence
    print(json.dumps({"stopped": True, "stored": stored}))


def embed_until_killed(db: str) -> None:
    """Open the file with local semantic recall on and let it embed until SIGKILLed."""
    with MemorySystem.open(db, config=Config(semantic=True)) as memory:
        print(json.dumps({"open": memory.path}), flush=True)
        while True:
            time.sleep(1.0)  # the embedding actor works; this process waits to be killed


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "store":
        store_many(args[0], int(args[1]), int(args[2]), args[3])
    elif command == "session-append":
        session_append(args[0], args[1], args[2], int(args[3]))
    elif command == "open":
        open_only(args[0])
    elif command == "lock":
        hold_write_lock(args[0], float(args[1]), args[2])
    elif command == "sync-plan":
        sync_plan(args[0])
    elif command == "sync-serve":
        sync_serve(args[0])
    elif command == "embed":
        embed_until_killed(args[0])
    else:
        sys.exit(f"unknown worker command {command!r}")
