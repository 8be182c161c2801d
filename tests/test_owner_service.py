"""Facade calls across processes: an owner process serves its MemorySystem to followers.

A real owner process (a MemorySystem on a real SQLite file, serving on a real
Unix socket), followers in this process and in other OS processes. The
records and errors a follower gets must be those of the owner's facade.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from actors import MemorySystem
from actors.errors import InvalidMemory, MemoryNotFound, OwnerGone, SchemaTooNew
from actors.model import CountResult, Memory, MemoryPage, RecallResult, StoreReceipt
from actors.owner_link import OwnerProxy
from actors.owner_protocol import SAFE_TO_REPEAT, VERBS, decode_error, encode_error
from actors.ownership import ensure_private_dir

_OWNER = """
import sys
from actors import MemorySystem
from actors.owner_service import OwnerService
system = MemorySystem.open(sys.argv[1])
service = OwnerService(system, sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
service.close()
system.close()
print("closed", flush=True)
"""

_FOLLOWER = """
import sys
from actors.owner_link import OwnerProxy
proxy = OwnerProxy(sys.argv[1], default_timeout=10)
writer, count = sys.argv[2], int(sys.argv[3])
for n in range(count):
    proxy.call("store", content=f"{writer} memory {n}", namespace=writer)
print("done", flush=True)
"""


class _Owner:
    def __init__(self, db: Path, socket_path: Path) -> None:
        self.db, self.socket_path = db, socket_path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OWNER, str(db), str(socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.stdout is not None
            assert self.proc.stdout.readline().strip() == "closed"
        self.proc.communicate(timeout=30)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[_Owner]:
    run = tmp_path / "run"
    ensure_private_dir(run)
    started = _Owner(tmp_path / "memory.db", run / "owner.sock")
    yield started
    started.close()


@pytest.fixture
def proxy(owner: _Owner) -> Iterator[OwnerProxy]:
    follower = OwnerProxy(owner.socket_path, default_timeout=10)
    yield follower
    follower.close()


def test_every_verb_answers_with_the_owners_records(owner: _Owner, proxy: OwnerProxy) -> None:
    receipt = proxy.call("store", content="billing keeps invoices", tags=["db"], namespace="team")
    assert isinstance(receipt, StoreReceipt)
    assert receipt.tags == ("db",)
    keyed = proxy.call("store", content="v1", key="prefs", metadata={"a": [1, 2]})
    assert proxy.call("store", content="v2", key="prefs").replaced

    memory = proxy.call("get", memory_id=receipt.id)
    assert isinstance(memory, Memory)
    assert (memory.content, memory.tags, memory.namespace) == (
        "billing keeps invoices",
        ("db",),
        "team",
    )
    assert proxy.call("get", key="prefs").id == keyed.id

    page = proxy.call("list", namespace="team")
    assert isinstance(page, MemoryPage)
    assert [m.id for m in page.memories] == [receipt.id]

    found = proxy.call("recall", query="invoices")
    assert isinstance(found, RecallResult)
    assert [hit.id for hit in found.hits] == [receipt.id]
    assert found.status == "local"

    counted = proxy.call("count")
    assert isinstance(counted, CountResult)
    assert counted.total == 2

    assert proxy.call("forget", memory_id=receipt.id).forgotten
    assert proxy.call("session_add", session_id="s", items=[{"role": "user"}, "two"]) == 2
    assert proxy.call("session_items", session_id="s") == [{"role": "user"}, "two"]
    assert proxy.call("session_pop", session_id="s") == "two"
    assert proxy.call("session_clear", session_id="s") == 1
    assert proxy.call("retry_dead_letters") == 0
    assert proxy.call("sync_report") is None
    assert proxy.call("status")["state"] == "ready"

    # The owner's file holds exactly what the follower was told.
    with MemorySystem.open(owner.db) as direct:
        assert direct.get(keyed.id) == proxy.call("get", memory_id=keyed.id)
        assert direct.count().total == 1


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("store", {"content": ""}),
        ("store", {"content": "x", "tags": 5}),
        ("store", {"content": "x", "namespace": "no spaces"}),
        ("store", {"content": "x" * 70_000}),
        ("get", {"memory_id": "not-an-id"}),
        ("get", {"memory_id": "0190a2c4-0000-7000-8000-000000000000"}),
        ("recall", {"query": ""}),
        ("list", {"limit": 10_000}),
        ("session_add", {"session_id": "", "items": []}),
    ],
)
def test_errors_are_the_owners_class_and_message(
    owner: _Owner, proxy: OwnerProxy, tmp_path: Path, verb: str, args: dict[str, Any]
) -> None:
    misuse = (InvalidMemory, MemoryNotFound)
    with pytest.raises(misuse) as across:
        proxy.call(verb, **args)
    with MemorySystem.open(tmp_path / "direct.db") as direct, pytest.raises(misuse) as local:
        getattr(direct, verb)(**args)
    assert type(across.value) is type(local.value)
    assert str(across.value) == str(local.value)


def test_misuse_of_the_link_is_answered_not_crashed(proxy: OwnerProxy) -> None:
    with pytest.raises(InvalidMemory, match="unknown verb 'drop_table'"):
        proxy.call("drop_table")
    with pytest.raises(InvalidMemory, match=r"store: .*unexpected keyword argument 'colour'"):
        proxy.call("store", content="x", colour="red")
    assert proxy.call("count").total == 0


def test_error_fields_survive_the_trip() -> None:
    rebuilt = decode_error(encode_error(SchemaTooNew("/data/m.db", 9, 5)))
    assert isinstance(rebuilt, SchemaTooNew)
    assert (rebuilt.path, rebuilt.found, rebuilt.supported) == ("/data/m.db", 9, 5)
    assert "newer than this code supports" in str(rebuilt)
    assert str(decode_error({"type": "os.system", "message": "m"})).startswith(
        "the owner answered with an unknown error os.system"
    )
    bug = decode_error(encode_error(ZeroDivisionError("division by zero")))
    assert "ZeroDivisionError: division by zero" in str(bug)


def test_every_verb_is_a_facade_verb_and_only_idempotent_ones_repeat() -> None:
    for verb in VERBS:
        assert callable(getattr(MemorySystem, verb)), verb
    assert set(VERBS) >= SAFE_TO_REPEAT
    assert not {"session_add", "session_pop", "session_clear"} & SAFE_TO_REPEAT


def test_followers_in_other_processes_share_the_owners_commits(
    owner: _Owner, proxy: OwnerProxy
) -> None:
    writers, each = 4, 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FOLLOWER, str(owner.socket_path), f"w{n}", str(each)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    # Meanwhile this process keeps many calls in flight on one connection.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: proxy.call("store", content=f"local {n}"), range(200)))
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert out.strip() == "done"
    counted = proxy.call("count")
    assert counted.total == writers * each + 200
    assert counted.by_namespace == {"default": 200} | {f"w{n}": each for n in range(writers)}


def test_calls_in_flight_when_the_owner_dies_fail_with_owner_gone(owner: _Owner) -> None:
    proxy = OwnerProxy(owner.socket_path, default_timeout=10)
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(proxy.call, "store", content=f"m{n}") for n in range(400)]
            owner.kill()
            outcomes = [f.exception() or f.result() for f in futures]
        gone = [o for o in outcomes if isinstance(o, OwnerGone)]
        acknowledged = [o for o in outcomes if isinstance(o, StoreReceipt)]
        assert len(gone) + len(acknowledged) == 400
        assert gone, "the owner died before answering everything"
    finally:
        proxy.close()
    # Every acknowledged write is in the file.
    with MemorySystem.open(owner.db) as direct:
        for receipt in acknowledged:
            assert direct.get(receipt.id).content.startswith("m")
