"""A delaying reverse proxy on loopback: a real hub, made slow on chosen paths.

Requests are forwarded over real TCP to ``upstream``; those whose path starts
with one of ``slow_paths`` are held for ``delay`` seconds first (on an event
that teardown sets, so the proxy stops at once). Everything else passes
through untouched, so sync keeps working while recall is slow.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class SlowProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, *, delay: float, slow_paths: tuple[str, ...]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.delay = delay
        self.slow_paths = slow_paths
        self.stopping = threading.Event()
        self.slow_requests = 0
        self._count = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SlowProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _forward(self) -> None:
        proxy = self.server
        if self.path.startswith(proxy.slow_paths):
            with proxy._count:
                proxy.slow_requests += 1
            proxy.stopping.wait(proxy.delay)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()


@contextlib.contextmanager
def slow_proxy(
    upstream: str, *, delay: float, slow_paths: tuple[str, ...] = ("/api/recall",)
) -> Iterator[SlowProxy]:
    """Run a :class:`SlowProxy` in a thread for the duration of the block."""
    proxy = SlowProxy(upstream, delay=delay, slow_paths=slow_paths)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stopping.set()
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)
