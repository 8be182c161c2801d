"""``memory-actors sync status|dead-letters|retry-dead``: a real hub, the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import HubProcess, fast_remote, fault_proxy, wait_until

from actors import MemorySystem
from actors.system import Config

DEADLINE = 30.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub process for the module; each test takes a tenant of its own."""
    with HubProcess.running(tmp_path_factory.mktemp("hub") / "hub.db") as proc:
        yield proc


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``memory-actors`` with no MEMORY_ACTORS_* variables but ``env``."""
    beside = Path(sys.executable).parent / "memory-actors"
    command = str(beside) if beside.exists() else shutil.which("memory-actors")
    assert command is not None, "memory-actors is not installed (pip install -e '.[dev]')"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_ACTORS_")}
    return subprocess.run(
        [command, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=DEADLINE,
        check=False,
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def key_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / "hub.key"
    path.write_text(key + "\n", encoding="utf-8")
    return path


def test_sync_status_reports_syncing_with_a_key_file(hub: HubProcess, tmp_path: Path) -> None:
    """``sync status --json`` connects once: it holds the lease, the key works, it syncs."""
    key = hub.add_key("cli-status")
    db = tmp_path / "memory.db"
    args = ("--db", str(db), "--remote", hub.url, "--api-key-file", str(key_file(tmp_path, key)))
    status = json_of(script(*args, "sync", "status", "--json"))
    assert status["sync"]["state"] == "syncing"
    assert status["sync"]["lease_holder"] is True
    assert status["sync"]["remote"] == hub.url
    assert (status["outbox_pending"], status["dead_letters"]) == (0, 0)
    # The lease was released on exit: the next run syncs at once, from the environment too.
    again = json_of(
        script(
            "--db",
            str(db),
            "sync",
            "status",
            "--json",
            env={"MEMORY_ACTORS_REMOTE": hub.url, "MEMORY_ACTORS_API_KEY": key},
        )
    )
    assert again["sync"]["state"] == "syncing"


def test_sync_status_reports_a_revoked_key_with_the_hubs_reason(
    hub: HubProcess, tmp_path: Path
) -> None:
    """With a revoked key, ``sync status`` says auth-failed and why, and still exits 0."""
    key = hub.add_key("cli-revoked")
    hub.revoke(key)
    args = ("--db", str(tmp_path / "m.db"), "--remote", hub.url, "--api-key", key)
    status = json_of(script(*args, "sync", "status", "--json"))
    assert status["sync"]["state"] == "auth-failed"
    assert "key_revoked" in status["sync"]["reason"]
    assert key not in json.dumps(status)  # the secret never shows


def test_sync_retry_dead_requeues_dead_letters_which_then_push(
    hub: HubProcess, tmp_path: Path
) -> None:
    """``sync dead-letters`` lists what the hub refused; ``sync retry-dead`` puts it back.

    A healthy hub then receives them.
    """
    key = hub.add_key("cli-retry")
    db = tmp_path / "memory.db"
    with fault_proxy(hub.url) as proxy:
        proxy.fault = "status-500"
        remote = fast_remote(proxy.url, key, max_attempts=2)
        with MemorySystem.open(db, config=Config(remote=remote)) as system:
            ids = [system.store(f"refused by the hub {i}").id for i in range(3)]
            wait_until(lambda: system.count().dead_letters == 3, "three dead letters")

    listed = json_of(script("--db", str(db), "sync", "dead-letters", "--limit", "2", "--json"))
    assert listed["total"] == 3
    assert [letter["memory_id"] for letter in listed["letters"]] == ids[:2]  # oldest first
    assert {letter["op"] for letter in listed["letters"]} == {"upsert"}
    assert all("500" in letter["last_error"] for letter in listed["letters"])
    table = script("--db", str(db), "sync", "dead-letters")
    assert table.returncode == 0, table.stderr
    assert all(memory_id in table.stdout for memory_id in ids)
    assert "3 dead letters; `memory-actors sync retry-dead` queues them again" in table.stdout
    assert json_of(script("--db", str(db), "sync", "retry-dead", "--json")) == {"requeued": 3}
    assert script("--db", str(db), "sync", "dead-letters").stdout == "No dead letters.\n"
    status = json_of(script("--db", str(db), "sync", "status", "--json"))
    assert status["dead_letters"] == 0
    assert status["sync"] == {"state": "local-only"}
    with MemorySystem.open(db, config=Config(remote=fast_remote(hub.url, key))) as system:
        wait_until(lambda: system.count().outbox_pending == 0, "the requeued memories pushed")
        assert {system.get(m).sync_state for m in ids} == {"synced"}
    with hub.client(key) as client:
        assert client.count().total == 3


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_a_remote_without_a_key_exits_2_with_a_clear_message(tmp_path: Path, via: str) -> None:
    """``--remote`` (or its variable) without any key: exit 2, one line naming the fix."""
    db = str(tmp_path / "memory.db")
    if via == "flag":
        result = script("--db", db, "--remote", "http://127.0.0.1:9", "sync", "status")
    else:
        env = {"MEMORY_ACTORS_REMOTE": "http://127.0.0.1:9"}
        result = script("--db", db, "sync", "status", env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("error: --remote http://127.0.0.1:9 needs an API key")
    assert "--api-key-file" in message
    assert "MEMORY_ACTORS_API_KEY" in message
    assert "Traceback" not in result.stderr
