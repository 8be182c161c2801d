"""A tiny OpenAI-compatible embeddings server on loopback, for the hub's ``openai`` embedder.

``POST /v1/embeddings`` with ``{"model": ..., "input": [...]}`` and
``Authorization: Bearer <key>`` answers the API's shape::

    {"object": "list", "model": ..., "usage": {...},
     "data": [{"object": "embedding", "index": 0, "embedding": [...]}, ...]}

The vectors come from the hub's own hashing embedder (deterministic, so a
test knows what ranks first). Knobs, set by the test while it runs:
``fail`` (answer that status), ``garbage`` (answer non-JSON), ``dimension``
(the size answered), and a gate: requests embedding any text of
``blocked`` wait until :meth:`open_gate` (bounded), which makes the
embedder as slow as a test wants without any timing.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from actors.hub.embedders import HashingEmbedder

KEY = "sk-test-embeddings"
#: How long a gated request waits for the gate before failing (a bound, not a pace).
GATE_DEADLINE = 60.0


class EmbeddingsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dimension: int = 64) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dimension = dimension
        self.fail: int | None = None
        self.garbage = False
        self.blocked: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def close_gate(self, texts: set[str]) -> None:
        """Requests that embed any of ``texts`` wait until :meth:`open_gate`."""
        self.blocked = set(texts)
        self.gate.clear()

    def open_gate(self) -> None:
        self.gate.set()

    def seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)


class _Handler(BaseHTTPRequestHandler):
    server: EmbeddingsServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with server.lock:
            server.requests.append(
                {"path": self.path, "auth": self.headers.get("authorization"), "body": body}
            )
        if self.path != "/v1/embeddings":
            self._answer(404, b'{"error": {"message": "not found"}}')
            return
        if self.headers.get("authorization") != f"Bearer {KEY}":
            self._answer(401, b'{"error": {"message": "invalid api key"}}')
            return
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if server.blocked & set(texts) and not server.gate.wait(GATE_DEADLINE):
            self._answer(503, b'{"error": {"message": "gate stayed closed"}}')
            return
        if server.fail is not None:
            self._answer(server.fail, b'{"error": {"message": "simulated failure"}}')
            return
        if server.garbage:
            self._answer(200, b"<html>not json</html>", "text/html")
            return
        vectors = HashingEmbedder(server.dimension).embed(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
            for i, vector in enumerate(vectors)
        ]
        data.reverse()  # the API does not promise order: clients sort by index
        answer = {
            "object": "list",
            "model": body.get("model"),
            "data": data,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        self._answer(200, json.dumps(answer).encode())


@contextlib.contextmanager
def embeddings_server(dimension: int = 64) -> Iterator[EmbeddingsServer]:
    """Serve on a free loopback port in a background thread; shut down at exit."""
    server = EmbeddingsServer(dimension)
    thread = threading.Thread(target=server.serve_forever, name="embeddings-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.open_gate()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
