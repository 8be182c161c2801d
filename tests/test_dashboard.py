"""The dashboard (``memory-actors ui``) over real HTTP: a real process on a real file.

httpx plays the browser and the attacker: the token on every request, POST
only with the token in a header, the Host and Origin checks, no CORS, and
bad input answered with a precise 4xx that changes nothing. The page itself
is driven in a real Chromium by ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashboard_fixtures import Dashboard, mark_dead_letter
from test_mcp_http import HttpServer, console_script

from actors import MemoryNotFound, MemorySystem
from actors.dashboard import MAX_BODY

pytestmark = pytest.mark.slow

UNKNOWN_ID = "0190a2c4-0000-7000-8000-000000000000"


@pytest.fixture
def stored(db_path: Path) -> dict[str, str]:
    """A small store, written through the library before the dashboard starts."""
    with MemorySystem.open(db_path) as memory:
        ids = {
            "deploy": memory.store("Deploys happen on Tuesdays", tags=["ops"]).id,
            "staging": memory.store(
                "The staging database is at db-staging:5432", tags=["infra", "db"]
            ).id,
            "theme": memory.store("Alice prefers dark mode", namespace="users/alice").id,
        }
        for n in range(25):
            memory.store(f"note number {n}", namespace="notes", tags=["bulk"])
    return ids


@pytest.fixture
def dashboard(db_path: Path, stored: dict[str, str]) -> Iterator[Dashboard]:
    ui = Dashboard(db_path)
    try:
        yield ui
    finally:
        ui.kill()


@pytest.fixture
def client(dashboard: Dashboard) -> Iterator[httpx.Client]:
    """An HTTP client with the token header, as the page's script sends it."""
    with httpx.Client(base_url=dashboard.base, headers=dashboard.headers(), timeout=20) as c:
        yield c


@pytest.fixture
def anonymous(dashboard: Dashboard) -> Iterator[httpx.Client]:
    """An HTTP client without the token."""
    with httpx.Client(base_url=dashboard.base, timeout=20) as c:
        yield c


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message: str = response.json()["error"]
    return message


def test_the_printed_url_opens_the_page_and_its_assets(
    dashboard: Dashboard, anonymous: httpx.Client
) -> None:
    """The URL carries the token; the page names its assets with it, so they load too."""
    assert dashboard.base.startswith("http://127.0.0.1:")
    page = anonymous.get(dashboard.url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<main>" in page.text
    assert f"/static/dashboard.js?token={dashboard.token}" in page.text
    script = anonymous.get(f"/static/dashboard.js?token={dashboard.token}")
    assert script.status_code == 200
    assert "X-Dashboard-Token" in script.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http" not in page.headers["content-security-policy"]  # nothing from the internet


def test_every_request_needs_the_token(dashboard: Dashboard, anonymous: httpx.Client) -> None:
    """Page, assets and API: no token or a wrong one is 401."""
    for path in ("/", "/static/dashboard.css", "/api/overview", "/api/memories", "/nothing"):
        assert "missing" in _error(anonymous.get(path), 401)
        wrong = anonymous.get(path, headers={"X-Dashboard-Token": dashboard.token + "x"})
        assert "wrong" in _error(wrong, 401)
        assert "wrong" in _error(anonymous.get(path, params={"token": "guess"}), 401)


def test_another_launch_prints_another_token(db_path: Path, dashboard: Dashboard) -> None:
    """The token is per launch: a second dashboard refuses the first one's token."""
    second = Dashboard(db_path)
    try:
        assert second.token != dashboard.token
        assert len(second.token) >= 40
        refused = httpx.get(f"{second.base}/api/overview", headers=dashboard.headers())
        assert refused.status_code == 401
    finally:
        second.kill()


def test_the_host_header_must_name_the_dashboard(dashboard: Dashboard) -> None:
    """DNS rebinding: a page of another name that resolves to 127.0.0.1 is refused."""
    api = f"{dashboard.base}/api/overview"
    for host in (f"evil.example:{dashboard.port}", "127.0.0.1", "127.0.0.1:1"):
        refused = httpx.get(api, headers={**dashboard.headers(), "Host": host})
        assert "not this dashboard's address" in _error(refused, 403)
    for host in (f"127.0.0.1:{dashboard.port}", f"localhost:{dashboard.port}"):
        assert httpx.get(api, headers={**dashboard.headers(), "Host": host}).status_code == 200


def test_a_post_needs_the_token_in_its_header_not_the_url_nor_a_cookie(
    dashboard: Dashboard, stored: dict[str, str], db_path: Path
) -> None:
    """What a forged form or link could carry is never enough to change anything."""
    forget = f"{dashboard.base}/api/memories/{stored['deploy']}/forget"
    body = {"confirm": True}
    by_query = httpx.post(forget, params={"token": dashboard.token}, json=body)
    assert "missing" in _error(by_query, 401)
    by_cookie = httpx.post(forget, json=body, cookies={"token": dashboard.token})
    assert "missing" in _error(by_cookie, 401)
    by_get = httpx.get(forget, headers=dashboard.headers())
    assert _error(by_get, 405)
    with MemorySystem.open(db_path) as memory:
        assert memory.get(stored["deploy"]).content == "Deploys happen on Tuesdays"


def test_a_cross_origin_post_is_refused_even_with_the_token(
    client: httpx.Client, stored: dict[str, str], db_path: Path
) -> None:
    """Origin and Sec-Fetch-Site, when a browser sends them, must say this page."""
    forget = f"/api/memories/{stored['deploy']}/forget"
    evil = client.post(forget, json={"confirm": True}, headers={"Origin": "http://evil.example"})
    assert "origin" in _error(evil, 403)
    cross = client.post(forget, json={"confirm": True}, headers={"Sec-Fetch-Site": "cross-site"})
    assert "cross-site" in _error(cross, 403)
    with MemorySystem.open(db_path) as memory:
        assert memory.get(stored["deploy"]).content == "Deploys happen on Tuesdays"


def test_no_cors_headers_and_no_preflight(client: httpx.Client, dashboard: Dashboard) -> None:
    """Another origin's script can neither read answers nor pass a preflight."""
    answer = client.get("/api/overview", headers={"Origin": "http://evil.example"})
    preflight = client.options(
        "/api/overview",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    _error(preflight, 405)
    for response in (answer, preflight):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_bad_input_gets_a_precise_4xx_and_changes_nothing(
    client: httpx.Client, stored: dict[str, str], db_path: Path
) -> None:
    """Unknown or malformed ids, bad JSON, wrong shapes, huge bodies, bad tags and limits."""
    deploy = stored["deploy"]
    assert "no memory has id" in _error(client.get(f"/api/memories/{UNKNOWN_ID}"), 404)
    assert "no memory has id" in _error(
        client.post(f"/api/memories/{UNKNOWN_ID}/forget", json={"confirm": True}), 404
    )
    assert _error(client.get("/api/memories/not-an-id"), 400)
    forget = f"/api/memories/{deploy}/forget"
    tags = f"/api/memories/{deploy}/tags"
    assert "not valid JSON" in _error(client.post(forget, content=b"{confirm"), 400)
    assert "not valid JSON" in _error(client.post(tags, content=b"\xff\xfe"), 400)
    assert "JSON object" in _error(client.post(tags, json=["ops"]), 400)
    assert "confirm" in _error(client.post(forget, json={}), 400)
    assert "confirm" in _error(client.post(forget, json={"confirm": "yes"}), 400)
    assert '"tags"' in _error(client.post(tags, json={}), 400)
    assert "comma" in _error(client.post(tags, json={"tags": ["a,b"]}), 400)
    assert "list of strings" in _error(client.post(tags, json={"tags": "ops"}), 400)
    huge = b'{"tags": ["' + b"x" * MAX_BODY + b'"]}'
    assert "larger than" in _error(client.post(tags, content=huge), 413)
    streamed = client.post(tags, content=iter([huge[:100], huge[100:]]))  # no Content-Length
    assert "larger than" in _error(streamed, 413)
    assert "whole number" in _error(client.get("/api/memories", params={"limit": "ten"}), 400)
    assert "limit" in _error(client.get("/api/memories", params={"limit": "100000"}), 400)
    assert _error(client.get("/api/recall", params={"q": ""}), 400)
    assert _error(client.post("/api/overview"), 405)
    assert _error(client.get("/api/nothing"), 404)
    with MemorySystem.open(db_path) as memory:
        assert memory.get(deploy).tags == ("ops",)
        assert memory.count().total == 28
        assert memory.count().forgotten == 0


def test_list_pages_newest_first_and_filters(client: httpx.Client, stored: dict[str, str]) -> None:
    """Pages follow next_before; namespace and tags filter as the library's list does."""
    first = client.get("/api/memories", params={"limit": 20}).json()
    assert len(first["memories"]) == 20
    assert first["memories"][0]["content"] == "note number 24"
    rest = client.get("/api/memories", params={"limit": 20, "before": first["next_before"]})
    assert len(rest.json()["memories"]) == 8
    assert rest.json()["next_before"] is None
    created = [m["created_at"] for m in first["memories"] + rest.json()["memories"]]
    assert created == sorted(created, reverse=True)
    alice = client.get("/api/memories", params={"namespace": "users/alice"}).json()
    assert [m["id"] for m in alice["memories"]] == [stored["theme"]]
    tagged = client.get("/api/memories", params=[("tag", "infra"), ("tag", "db")]).json()
    assert [m["id"] for m in tagged["memories"]] == [stored["staging"]]


def test_search_shows_the_recall_status_and_reason(
    client: httpx.Client, stored: dict[str, str]
) -> None:
    """Recall's hits with its honest status; filters apply to search too."""
    found = client.get("/api/recall", params={"q": "staging database"}).json()
    assert found["hits"][0]["id"] == stored["staging"]
    assert found["status"] == "local"
    assert found["reason"]
    none = client.get("/api/recall", params={"q": "staging", "namespace": "notes"}).json()
    assert none["hits"] == []


def test_open_edit_tags_and_forget_reach_the_store(
    client: httpx.Client, stored: dict[str, str], db_path: Path
) -> None:
    """The page's three state changes, checked through the library."""
    deploy = stored["deploy"]
    opened = client.get(f"/api/memories/{deploy}").json()
    assert opened["content"] == "Deploys happen on Tuesdays"
    retagged = client.post(f"/api/memories/{deploy}/tags", json={"tags": ["Release", "ops"]})
    assert retagged.json()["tags"] == ["ops", "release"]
    forgot = client.post(f"/api/memories/{stored['theme']}/forget", json={"confirm": True})
    assert forgot.json() == {"id": stored["theme"], "forgotten": True, "already_forgotten": False}
    assert "forgotten" in _error(client.get(f"/api/memories/{stored['theme']}"), 404)
    with MemorySystem.open(db_path) as memory:
        assert memory.get(deploy).tags == ("ops", "release")
        with pytest.raises(MemoryNotFound):
            memory.get(stored["theme"])


def test_overview_counts_and_dead_letters_retry(
    client: httpx.Client, stored: dict[str, str], db_path: Path
) -> None:
    """Counts, sync state and sharing; the retry button requeues every dead letter."""
    mark_dead_letter(db_path, stored["deploy"], "HubRejected: 422")
    overview = client.get("/api/overview").json()
    counts = overview["counts"]
    assert counts["total"] == 28
    assert counts["by_namespace"] == {"default": 2, "notes": 25, "users/alice": 1}
    assert counts["dead_letters"] == 1
    assert overview["sync"] == {"state": "local-only"}
    assert overview["sharing"]["role"] == "owner"
    dead = client.get("/api/dead-letters").json()
    assert dead["total"] == 1
    (letter,) = dead["letters"]
    assert letter["memory_id"] == stored["deploy"]
    assert (letter["namespace"], letter["op"], letter["attempts"]) == ("default", "upsert", 5)
    assert letter["last_error"] == "HubRejected: 422"
    assert client.post("/api/dead-letters/retry", json={}).json() == {"requeued": 1}
    assert client.get("/api/overview").json()["counts"]["dead_letters"] == 0
    assert client.get("/api/dead-letters").json() == {"letters": [], "total": 0}


def test_beside_an_mcp_server_the_dashboard_is_a_follower(tmp_path: Path) -> None:
    """One owner per file: the MCP server owns it, the dashboard's calls go through it."""
    server = HttpServer(tmp_path)
    try:
        server.wait_until_accepting()
        with MemorySystem.open(server.db) as memory:
            receipt = memory.store("Shared with the MCP server", tags=["mcp"])
        ui = Dashboard(server.db)
        try:
            with httpx.Client(base_url=ui.base, headers=ui.headers(), timeout=20) as client:
                overview = client.get("/api/overview").json()
                assert overview["sharing"] == {"role": "follower", "owner_pid": server.proc.pid}
                assert overview["counts"]["total"] == 1
                dead = client.get("/api/dead-letters").json()
                assert dead == {"letters": [], "total": 0}
                hits = client.get("/api/recall", params={"q": "shared"}).json()["hits"]
                assert [hit["id"] for hit in hits] == [receipt.id]
                client.post(f"/api/memories/{receipt.id}/tags", json={"tags": ["ui"]})
                client.post(f"/api/memories/{receipt.id}/forget", json={"confirm": True})
            assert ui.stop() == 0
        finally:
            ui.kill()
        with MemorySystem.open(server.db) as memory:
            assert memory.status()["sharing"]["role"] == "follower"
            assert memory.count().forgotten == 1
    finally:
        server.kill()


def test_a_stop_signal_wrapped_by_an_import_still_counts_as_a_stop() -> None:
    """SIGTERM during a lazy import surfaced as RuntimeError("Error calling __set_name__"):
    the signal behind it is still found, and an unrelated error is not taken for one."""
    from actors._http_serve import _stop_signal_behind, _Terminated

    wrapped = RuntimeError("Error calling __set_name__ on 'Field'")
    wrapped.__cause__ = _Terminated(0)
    assert _stop_signal_behind(wrapped) == "SIGTERM"
    assert _stop_signal_behind(KeyboardInterrupt()) == "SIGINT"
    assert _stop_signal_behind(ValueError("a bug")) is None


def test_the_server_names_the_signal_even_when_asyncio_swallows_its_re_raise() -> None:
    """uvicorn re-raises a caught SIGINT after shutting down; asyncio's runner can take it
    as a request to cancel a task that is already returning, and no KeyboardInterrupt
    comes out (a CI run under load). The server itself remembers the first signal."""
    import uvicorn

    from actors._http_serve import _signal_naming_server

    server = _signal_naming_server()(uvicorn.Config(app=None))
    assert server.stopped_by is None
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.stopped_by == "SIGINT"
    assert server.should_exit


def test_sigterm_stops_it_cleanly(dashboard: Dashboard) -> None:
    """Ctrl-C or SIGTERM: exit 0 after the system is closed."""
    # The logs say why, should it ever exit otherwise (it did once in a CI run under load).
    assert dashboard.stop() == 0, dashboard.logs()
    assert "memory system closed" in dashboard.err.read_text()


def test_beyond_loopback_only_when_asked_and_with_a_warning(
    db_path: Path, dashboard: Dashboard
) -> None:
    """The default binds 127.0.0.1 silently; --host 0.0.0.0 warns on stderr."""
    assert "warning" not in dashboard.err.read_text()
    wide = Dashboard(db_path, "--host", "0.0.0.0")
    try:
        assert "beyond loopback" in wide.err.read_text()
        reached = httpx.get(
            f"http://127.0.0.1:{wide.port}/api/overview", headers={"X-Dashboard-Token": wide.token}
        )
        assert reached.status_code == 200
    finally:
        wide.kill()


def test_a_taken_port_exits_1_with_the_reason(db_path: Path, dashboard: Dashboard) -> None:
    """The port is bound before anything is announced; failing, the command says why."""
    port = str(dashboard.port)
    taken = subprocess.run(
        [console_script(), "--db", str(db_path), "ui", "--no-browser", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{dashboard.port}" in taken.stderr
    assert "http://" not in taken.stdout
