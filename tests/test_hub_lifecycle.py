"""The hub as an operator runs it: keys on the command line, clean stops, crashes and restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hub_fixtures import ROOT, HubProcess, forget, memory

from actors import MemorySystem
from actors.errors import HubAuthError, HubError, NotADatabase
from actors.hub.cli import hub as hub_command
from actors.hub.key_admin import add_key, list_keys, revoke_key
from actors.hub.schema import prepare_hub_file
from actors.runtime import ThreadedRuntime


@pytest.fixture
def hub_process(hub_db: Path | str) -> Iterator[HubProcess]:
    """A hub process of its own (per engine), stopped with SIGTERM (and checked) after the test."""
    with HubProcess.running(hub_db) as hub:
        yield hub


def test_sigterm_and_sigint_stop_the_hub_cleanly_within_seconds(
    hub_db: Path | str,
) -> None:
    """Either signal: uvicorn drains, the actors stop, the process exits 0 in well under 5 s."""
    hub = HubProcess(hub_db)
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            hub.start()
            key = hub.add_key("acme")
            with hub.client(key) as client:
                client.push([memory(f"stored before signal {sig}")])
            assert hub.stop(sig) < 5.0
    finally:
        hub.close_log()
    assert "Traceback" not in hub.log_text()


def test_a_killed_hub_restarts_on_the_same_file_with_its_data_and_cursors(
    hub_db: Path | str,
) -> None:
    """SIGKILL, restart on the same file and port: every acknowledged push is kept, cursors hold."""
    with HubProcess.running(hub_db) as hub:
        key = hub.add_key("acme")
        items = [memory(f"durable {i}") for i in range(20)]
        with hub.client(key) as client:
            client.push(items[:10])
            client.push(items[10:])
            cursor = client.changes(limit=5).next_cursor
            before = client.digest(limit=100)
        hub.kill()
        hub.restart()
        with hub.client(key) as client:
            assert client.digest(limit=100) == before
            assert [c.seq for c in client.changes(since=cursor).changes] == list(range(6, 21))
            replay = client.push(items)  # a client that never saw the answer pushes again
            assert {r.status for r in replay.results} == {"unchanged"}
            client.push([forget(items[0])])
            assert client.count().total == 19


def test_a_hub_killed_mid_push_loses_no_acknowledged_push_and_a_replay_duplicates_nothing(
    hub_db: Path | str,
) -> None:
    """SIGKILL amid pushes: after restart every acked batch is there, and replays are no-ops."""
    with HubProcess.running(hub_db) as hub:
        key = hub.add_key("acme")
        batches = [[memory(f"batch {b} item {i}") for i in range(20)] for b in range(100)]
        acked: list[int] = []
        failed: list[HubError] = []
        enough = threading.Event()

        def pusher() -> None:
            with hub.client(key, timeout=5.0) as client:
                for index, batch in enumerate(batches):
                    try:
                        client.push(batch)
                    except HubError as exc:
                        failed.append(exc)
                        return
                    acked.append(index)
                    if len(acked) == 5:
                        enough.set()

        thread = threading.Thread(target=pusher)
        thread.start()
        assert enough.wait(timeout=30)
        hub.kill()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert failed, "the kill should have interrupted the pushes"
        hub.restart()
        with hub.client(key, timeout=10.0) as client:
            for index in acked:
                assert {r.status for r in client.push(batches[index]).results} == {"unchanged"}
            for batch in batches[len(acked) :]:
                assert {r.status for r in client.push(batch).results} <= {"applied", "unchanged"}
            ids = []
            page = client.digest(limit=5000)
            while True:
                ids += [entry.id for entry in page.entries]
                if not page.has_more:
                    break
                page = client.digest(after=page.next_after, limit=5000)
            assert sorted(ids) == sorted(item.id for batch in batches for item in batch)
            assert client.count().total == 100 * 20


def test_keys_are_added_listed_and_revoked_from_the_command_line(
    hub_db: Path | str, request: pytest.FixtureRequest
) -> None:
    """``hub keys add|list|revoke``: the key prints once, only ids are listed, revoke is final."""
    db = ["--database", hub_db] if isinstance(hub_db, str) else ["--db", str(hub_db)]
    runner = CliRunner()
    added = runner.invoke(hub_command, ["keys", "add", *db, "acme"])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert key.startswith("mah_")
    assert "cannot be shown again" in added.stderr
    key_id = key.split("_")[1]
    listed = runner.invoke(hub_command, ["keys", "list", *db, "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["key_id"], r["tenant"], r["revoked_at"]) for r in rows] == [(key_id, "acme", None)]
    secret = key.split("_", 2)[2]
    if isinstance(hub_db, str):
        stored = request.getfixturevalue("postgres").query(
            hub_db, "SELECT api_keys::text FROM api_keys"
        )
        assert stored
        assert all(secret not in row[0] for row in stored)
    else:
        assert secret not in hub_db.read_bytes().decode("latin-1")
    table = runner.invoke(hub_command, ["keys", "list", *db])
    assert key_id in table.stdout
    assert "acme" in table.stdout
    revoked = runner.invoke(hub_command, ["keys", "revoke", *db, key_id])
    assert revoked.exit_code == 0
    assert "Revoked" in revoked.stdout
    assert list_keys(hub_db)[0].revoked
    unknown = runner.invoke(hub_command, ["keys", "revoke", *db, "ffffffffffff"])
    assert unknown.exit_code == 1
    assert "no key" in unknown.stderr
    bad = runner.invoke(hub_command, ["keys", "add", *db, "bad tenant!"])
    assert bad.exit_code == 1
    assert "invalid" in bad.stderr


def test_a_key_revoked_while_the_hub_serves_is_refused_on_the_next_request(
    hub_process: HubProcess,
) -> None:
    """Revocation by another process (the CLI) takes effect without restarting the hub."""
    key = add_key(hub_process.db, "acme")
    with hub_process.client(key) as client:
        assert client.auth_check().tenant == "acme"
        assert revoke_key(hub_process.db, key.split("_")[1]) is not None
        with pytest.raises(HubAuthError) as info:
            client.auth_check()
    assert info.value.status == 403


def test_serve_refuses_a_file_that_is_not_a_hub_database(tmp_path: Path) -> None:
    """Pointing the hub at a client's memory file fails fast with a sentence; the file is kept."""
    client_db = tmp_path / "memory.db"
    with MemorySystem.open(client_db) as system:
        system.store("a client memory")
    before = client_db.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "actors.hub", "serve", "--db", str(client_db), "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "not a memory-actors hub database" in result.stderr
    assert client_db.read_bytes() == before
    with pytest.raises(NotADatabase):
        prepare_hub_file(str(client_db), now=ThreadedRuntime().wall_time)


def test_python_dash_m_actors_hub_shows_the_commands() -> None:
    """``python -m actors.hub --help`` lists serve and keys."""
    result = subprocess.run(
        [sys.executable, "-m", "actors.hub", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "serve" in result.stdout
    assert "keys" in result.stdout


def test_the_hub_process_answers_health_only_once_its_store_is_ready(
    hub_process: HubProcess,
) -> None:
    """The fixture's readiness check is the hub's own: /healthz 200 means requests are served."""
    response = httpx.get(f"{hub_process.url}/healthz", timeout=5)
    assert response.json()["status"] == "ok"
    key = hub_process.add_key("acme")
    with hub_process.client(key) as client:
        assert client.count().total == 0
