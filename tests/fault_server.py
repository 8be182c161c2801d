"""A tiny fault-injecting HTTP server: a real socket on loopback, served from a thread.

Each test sets ``server.fault`` and the next requests get that misbehaviour,
whatever their path, so a :class:`~actors.remote.HubClient` pointed at it
meets the failure over real TCP:

======================  ==============================================================
fault                   the answer
======================  ==============================================================
``ok-count``            a valid ``/api/count`` answer (the control case)
``status-500``          500 with the hub's JSON error shape
``status-503``          503 with ``Retry-After: 2``
``html-502``            502 with an HTML page, as a reverse proxy would
``garbage``             200 with the protocol header and a body that is not JSON
``wrong-shape``         200 with valid JSON of the wrong shape
``not-a-hub``           200 with valid JSON but without the protocol header
``truncated``           200 announcing 4096 bytes, sending 20, then closing
``hang-up``             closes the connection without answering
``slow``                answers only after ``server.release`` is set (or 30 s)
``trickle``             sends a byte every 50 ms for a long time
``redirect``            302 to another URL
``cursor-reset``        409 ``cursor_reset``
``invalid-item``        422 ``invalid_item`` with details
``revoked``             403 ``key_revoked``
``canned``              200 with ``server.canned`` as the body (a hub's valid answer)
======================  ==============================================================

Waiting faults wait on an event that teardown sets, so the server stops at once.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNT_BODY = {"total": 1, "by_namespace": {"default": 1}, "forgotten": 0, "cursor": "c"}


def _error(code: str, message: str, **details: Any) -> bytes:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return json.dumps(body).encode()


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fault = "ok-count"
        self.release = threading.Event()
        self.requests = 0
        #: The body the ``canned`` fault answers, and the last request body received.
        self.canned = b"{}"
        self.last_body = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        hub: bool = True,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if hub:
            self.send_header("Memory-Hub-Protocol", "1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.server.last_body = self.rfile.read(length)
        self.server.requests += 1
        fault = self.server.fault
        if fault == "ok-count":
            self._send(200, json.dumps(COUNT_BODY).encode())
        elif fault == "status-500":
            self._send(500, _error("internal", "the hub failed unexpectedly"))
        elif fault == "status-503":
            self._send(503, _error("unavailable", "storage busy"), headers={"Retry-After": "2"})
        elif fault == "html-502":
            self._send(502, b"<html><body>Bad Gateway</body></html>", content_type="text/html")
        elif fault == "garbage":
            self._send(200, b"<html>this is not json")
        elif fault == "wrong-shape":
            self._send(200, json.dumps({"totally": "different"}).encode())
        elif fault == "not-a-hub":
            self._send(200, json.dumps(COUNT_BODY).encode(), hub=False)
        elif fault == "truncated":
            self._send(200, json.dumps(COUNT_BODY).encode()[:20], length=4096)
            self.close_connection = True
        elif fault == "hang-up":
            self.close_connection = True
        elif fault == "slow":
            self.server.release.wait(timeout=30)
            self._send(200, json.dumps(COUNT_BODY).encode())
        elif fault == "trickle":
            body = json.dumps(COUNT_BODY).encode() + b" " * 10_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Memory-Hub-Protocol", "1")
            self.end_headers()
            for offset in range(len(body)):
                if self.server.release.wait(timeout=0.05):
                    return
                self.wfile.write(body[offset : offset + 1])
                self.wfile.flush()
        elif fault == "redirect":
            self._send(302, b"", headers={"Location": "http://example.invalid/"})
        elif fault == "cursor-reset":
            self._send(409, _error("cursor_reset", "cursor issued by another hub database"))
        elif fault == "invalid-item":
            self._send(
                422,
                _error("invalid_item", "items[3].content: content is empty", index=3, field="x"),
            )
        elif fault == "revoked":
            self._send(403, _error("key_revoked", "API key 0123 was revoked"))
        elif fault == "canned":
            self._send(200, self.server.canned)
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown fault {fault!r}")

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._serve()

    def do_POST(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._serve()


@contextlib.contextmanager
def fault_server() -> Iterator[FaultServer]:
    """Serve from a thread; on exit, release every waiting handler and stop (bounded)."""
    server = FaultServer()
    thread = threading.Thread(target=server.serve_forever, name="fault-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()
