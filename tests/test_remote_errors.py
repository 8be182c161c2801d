"""HubClient turns every real failure into the right HubError, naming the URL and the cause.

Faults are real: a hub process that was stopped or frozen (SIGSTOP), and a
small HTTP server on a loopback socket (``tests/fault_server.py``) that
answers 500, garbage, a cut-off body, or nothing in time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fault_server import FaultServer, fault_server
from hub_fixtures import HubProcess, free_port, memory

from actors.errors import (
    HubAuthError,
    HubCursorReset,
    HubError,
    HubProtocolError,
    HubRejected,
    HubServerError,
    HubTimeout,
    HubUnreachable,
    HubUnsupported,
    MemoryActorsError,
)
from actors.hub.core import HubCore
from actors.hub.direct import DirectBackend
from actors.hub.key_admin import add_key
from actors.hub.transport import mock_transport
from actors.remote import HubClient
from actors.runtime import ThreadedRuntime
from actors.wire import HubLimits

KEY = "mah_000000000000_" + "k" * 43


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultServer]:
    """One fault server for the module; each test picks its fault."""
    with fault_server() as server:
        yield server


@pytest.fixture
def client(faulty: FaultServer) -> Iterator[HubClient]:
    """A client of the fault server with a short timeout."""
    faulty.release.clear()
    with HubClient(faulty.url, KEY, timeout=0.5) as hub:
        yield hub


def _raises(client: HubClient, faulty: FaultServer, fault: str) -> HubError:
    faulty.fault = fault
    with pytest.raises(HubError) as info:
        client.count()
    error = info.value
    assert f"GET {faulty.url}/api/count" in str(error)
    assert error.url == f"{faulty.url}/api/count"
    assert KEY not in str(error)
    return error


def test_a_well_formed_answer_parses_into_a_record(client: HubClient, faulty: FaultServer) -> None:
    """The control case: a valid answer from the fault server is a HubCounts."""
    faulty.fault = "ok-count"
    assert client.count().by_namespace == {"default": 1}


def test_a_500_is_a_server_error_with_the_hubs_message(
    client: HubClient, faulty: FaultServer
) -> None:
    """500 → HubServerError carrying the status and the hub's message."""
    error = _raises(client, faulty, "status-500")
    assert type(error) is HubServerError
    assert error.status == 500
    assert "the hub failed unexpectedly" in str(error)


def test_a_503_carries_the_retry_after_hint(client: HubClient, faulty: FaultServer) -> None:
    """503 with Retry-After → HubServerError.retry_after in seconds."""
    error = _raises(client, faulty, "status-503")
    assert isinstance(error, HubServerError)
    assert error.retry_after == 2.0


def test_a_proxys_html_502_is_a_server_error_quoting_the_page(
    client: HubClient, faulty: FaultServer
) -> None:
    """A non-JSON error page still maps by status and is quoted in the message."""
    error = _raises(client, faulty, "html-502")
    assert type(error) is HubServerError
    assert "Bad Gateway" in str(error)


def test_garbage_json_is_a_protocol_error(client: HubClient, faulty: FaultServer) -> None:
    """200 with a body that is not JSON → HubProtocolError from the JSON error."""
    error = _raises(client, faulty, "garbage")
    assert type(error) is HubProtocolError
    assert isinstance(error.__cause__, ValueError)
    assert "not JSON" in str(error)


def test_json_of_the_wrong_shape_is_a_protocol_error(
    client: HubClient, faulty: FaultServer
) -> None:
    """200 with valid JSON missing the protocol's fields → HubProtocolError naming the field."""
    error = _raises(client, faulty, "wrong-shape")
    assert type(error) is HubProtocolError
    assert "by_namespace: is required" in str(error)


def test_a_server_without_the_protocol_header_is_not_taken_for_a_hub(
    client: HubClient, faulty: FaultServer
) -> None:
    """A wrong URL pointing at some other JSON service → HubProtocolError, not bogus data."""
    error = _raises(client, faulty, "not-a-hub")
    assert type(error) is HubProtocolError
    assert "Memory-Hub-Protocol" in str(error)


def test_a_truncated_body_is_a_protocol_error(client: HubClient, faulty: FaultServer) -> None:
    """Headers announce 4096 bytes, 20 arrive, the connection closes → HubProtocolError."""
    error = _raises(client, faulty, "truncated")
    assert type(error) is HubProtocolError
    assert "cut off after 20 bytes" in str(error)
    assert isinstance(error.__cause__, httpx.HTTPError)


def test_a_hang_up_without_an_answer_is_unreachable(client: HubClient, faulty: FaultServer) -> None:
    """The server closes the connection before answering → HubUnreachable (a ConnectionError)."""
    error = _raises(client, faulty, "hang-up")
    assert type(error) is HubUnreachable
    assert isinstance(error, ConnectionError)
    assert isinstance(error.__cause__, httpx.TransportError)


def test_an_answer_slower_than_the_timeout_is_a_timeout(
    client: HubClient, faulty: FaultServer
) -> None:
    """The server sleeps past the client's 0.5 s timeout → HubTimeout, promptly."""
    started = time.monotonic()
    error = _raises(client, faulty, "slow")
    elapsed = time.monotonic() - started
    assert type(error) is HubTimeout
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, httpx.TimeoutException)
    assert elapsed < 3.0
    faulty.release.set()


def test_a_per_call_timeout_overrides_the_default(faulty: FaultServer) -> None:
    """``timeout=`` on a call bounds that call, whatever the client's default."""
    faulty.release.clear()
    faulty.fault = "slow"
    with HubClient(faulty.url, KEY, timeout=30.0) as hub:
        started = time.monotonic()
        with pytest.raises(HubTimeout):
            hub.count(timeout=0.3)
        assert time.monotonic() - started < 3.0
    faulty.release.set()


def test_a_trickling_answer_is_cut_by_the_whole_call_deadline(faulty: FaultServer) -> None:
    """With a clock, a body arriving a byte every 50 ms cannot outlast the call's timeout."""
    faulty.release.clear()
    faulty.fault = "trickle"
    with HubClient(faulty.url, KEY, timeout=0.5, clock=time.monotonic) as hub:
        started = time.monotonic()
        with pytest.raises(HubTimeout, match="did not arrive within"):
            hub.count()
        assert time.monotonic() - started < 3.0
    faulty.release.set()


def test_a_redirect_is_not_followed(client: HubClient, faulty: FaultServer) -> None:
    """A 302 is refused as unexpected (a key is never sent on to another host)."""
    error = _raises(client, faulty, "redirect")
    assert type(error) is HubProtocolError
    assert "302" in str(error)


def test_error_codes_map_to_their_own_types(client: HubClient, faulty: FaultServer) -> None:
    """409 cursor_reset, 422 invalid_item and 403 key_revoked each have a precise type."""
    reset = _raises(client, faulty, "cursor-reset")
    assert type(reset) is HubCursorReset
    rejected = _raises(client, faulty, "invalid-item")
    assert type(rejected) is HubRejected
    assert (rejected.status, rejected.code) == (422, "invalid_item")
    assert rejected.details["index"] == 3
    revoked = _raises(client, faulty, "revoked")
    assert type(revoked) is HubAuthError
    assert (revoked.status, revoked.code) == (403, "key_revoked")
    assert "was revoked" in revoked.reason


def test_nothing_listening_is_unreachable() -> None:
    """A port with no hub → HubUnreachable from the connect error, naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    with HubClient(url, KEY, timeout=2.0) as hub, pytest.raises(HubUnreachable) as info:
        hub.auth_check()
    assert f"GET {url}/api/auth-check: cannot reach the hub" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_a_stopped_hub_is_unreachable_and_a_frozen_one_times_out(tmp_path: Path) -> None:
    """A real hub: frozen (SIGSTOP) → HubTimeout; thawed → answers; stopped → HubUnreachable."""
    with HubProcess.running(tmp_path / "hub.db") as hub:
        key = hub.add_key("acme")
        with hub.client(key, timeout=0.5) as client:
            assert client.auth_check(timeout=5.0).tenant == "acme"
            hub.freeze()
            try:
                with pytest.raises(HubTimeout):
                    client.count()
            finally:
                hub.thaw()
            assert client.count(timeout=5.0).total == 0
            hub.stop()
            with pytest.raises(HubUnreachable):
                client.count()


def test_every_hub_error_is_a_memory_actors_error() -> None:
    """Callers can catch the whole family, or everything of ours, in one clause."""
    for kind in (
        HubUnreachable,
        HubTimeout,
        HubAuthError,
        HubRejected,
        HubCursorReset,
        HubServerError,
        HubUnsupported,
        HubProtocolError,
    ):
        assert issubclass(kind, HubError)
        assert issubclass(kind, MemoryActorsError)


def test_a_client_refuses_a_url_that_is_not_http() -> None:
    """Misconfiguration fails at construction with a sentence, not at the first sync."""
    with pytest.raises(ValueError, match="http"):
        HubClient("ftp://example.com", KEY)
    with pytest.raises(ValueError, match="key"):
        HubClient("http://127.0.0.1:1", "")


def test_requests_carry_the_key_and_the_protocol_version() -> None:
    """The client sends ``Authorization: Bearer`` and ``Memory-Hub-Protocol: 1``, JSON bodies."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": []}, headers={"Memory-Hub-Protocol": "1"})

    with (
        HubClient("http://hub.test", KEY, transport=httpx.MockTransport(record)) as hub,
        pytest.raises(HubProtocolError, match="0 results for 1 items"),
    ):
        hub.push([memory("x")])
    (request,) = seen
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["memory-hub-protocol"] == "1"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content)["items"][0]["content"] == "x"


def test_a_batch_over_the_hubs_known_limits_is_refused_before_sending(tmp_path: Path) -> None:
    """After auth_check, an oversized push fails locally like the hub would (413/422), unsent."""
    runtime = ThreadedRuntime()
    db = tmp_path / "hub.db"
    key = add_key(db, "acme")
    backend = DirectBackend.open(db, new_id=runtime.new_id, now=runtime.wall_time)
    core = HubCore(backend, limits=HubLimits(max_body_bytes=4096, max_batch_items=3))
    inner = mock_transport(core)
    sent: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return inner.handle_request(request)

    try:
        with HubClient("http://hub.test", key, transport=httpx.MockTransport(counting)) as hub:
            assert hub.auth_check().limits.max_batch_items == 3
            with pytest.raises(HubRejected) as too_big:
                hub.push([memory("y" * 5000)])
            with pytest.raises(HubRejected) as too_many:
                hub.push([memory(f"item {i}") for i in range(4)])
            assert hub.push([memory("fits")]).results[0].status == "applied"
    finally:
        backend.close()
    assert (too_big.value.status, too_big.value.code) == (413, "payload_too_large")
    assert (too_many.value.status, too_many.value.code) == (422, "invalid_body")
    assert sent == ["/api/auth-check", "/api/memories/batch"]
