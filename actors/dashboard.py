"""The local dashboard (``memory-actors ui``): a small web page on the memory facade.

A Starlette app over :class:`~actors.aio.AsyncMemorySystem`, never over SQLite:
beside a running MCP server the dashboard's process is a follower of the
file's owner (:mod:`actors.sharing`), like any second process. The page
(``actors/dashboard_static/``: HTML, CSS and JavaScript, no build step, nothing
from the internet) calls the JSON API below.

Security model (docs/operations.md, "Dashboard"):

- a per-launch token (``secrets.token_urlsafe``) on every request: in the
  ``X-Dashboard-Token`` header, or, for a GET only, in the ``token`` query
  parameter (how the printed URL opens the page);
- state changes only by POST with the token in the header, never from a
  query string or a cookie (there are no cookies), so another site cannot
  forge one; a POST whose ``Origin`` (or ``Sec-Fetch-Site``) says it came
  from elsewhere is refused even with the token;
- the ``Host`` header must name the address served (127.0.0.1:PORT or
  localhost:PORT), which defeats DNS rebinding; no CORS headers, ever;
- bodies above :data:`MAX_BODY` bytes are refused before they are read.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actors._http_serve import ServeError, line_buffer_stdout, serve_until_signal
from actors.aio import AsyncMemorySystem
from actors.errors import (
    AskTimeout,
    InvalidMemory,
    MemoryActorsError,
    MemoryNotFound,
    StorageBusy,
    Unavailable,
)
from actors.system import Config, MemorySystem

__all__ = ["MAX_BODY", "TOKEN_HEADER", "ServeError", "create_app", "is_loopback", "serve"]

logger = logging.getLogger(__name__)

#: The header that carries the token on API calls (the page's script sets it).
TOKEN_HEADER = "x-dashboard-token"
#: The largest request body accepted: a tag list is a few hundred bytes.
MAX_BODY = 64 * 1024
#: The page and its assets, shipped as package data.
_STATIC = ("index.html", "dashboard.css", "dashboard.js")
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
#: Sent with every answer: nothing cached, nothing framed, no referrer (the token is in URLs).
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
]
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")


# -- the guard: every request passes it before any route runs ---------------------------------


class _Guard:
    """ASGI middleware: Host, token, method, Origin and body size; security headers out."""

    def __init__(self, app: ASGIApp, token: str, hosts: frozenset[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts
        self.origins = frozenset(f"http://{host}" for host in hosts)

    def __repr__(self) -> str:
        return f"<_Guard hosts={sorted(self.hosts)}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: the dashboard has none
            await send({"type": "websocket.close", "code": 1008})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], *_SECURITY_HEADERS]}
            await send(message)

        refusal = self._refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        host = request.headers.get("host", "")
        if host not in self.hosts:
            # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host.
            return _error(403, f"Host {host!r} is not this dashboard's address")
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            return _error(405, f"method {method} is not allowed")
        given = request.headers.get(TOKEN_HEADER)
        if given is None and method != "POST":
            given = request.query_params.get("token")
        if given is None:
            where = "header" if method == "POST" else "header or ?token= parameter"
            return _error(401, f"the dashboard token is missing (the {TOKEN_HEADER} {where})")
        if not secrets.compare_digest(given.encode(), self.token):
            return _error(401, "the dashboard token is wrong (each launch prints a new one)")
        if method == "POST":
            origin = request.headers.get("origin")
            if origin is not None and origin not in self.origins:
                return _error(403, f"a POST from origin {origin!r} is refused")
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return _error(403, "a cross-site POST is refused")
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return _error(413, f"the body is larger than {MAX_BODY} bytes")
        return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


# -- the API -------------------------------------------------------------------------------


def _status_of(exc: MemoryActorsError) -> int:
    if isinstance(exc, _TooLarge):
        return 413
    if isinstance(exc, MemoryNotFound):
        return 404
    if isinstance(exc, InvalidMemory):
        return 400
    if isinstance(exc, (Unavailable, AskTimeout, StorageBusy)):
        return 503
    return 500


_Handler = Callable[[Request, AsyncMemorySystem], Awaitable[Any]]


def _api(handler: _Handler, memory: AsyncMemorySystem) -> Callable[[Request], Awaitable[Response]]:
    """A route answering ``handler``'s value as JSON, and facade errors as JSON 4xx/5xx."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request, memory))
        except MemoryActorsError as exc:
            return _error(_status_of(exc), str(exc))

    return endpoint


def _filters(request: Request) -> dict[str, Any]:
    """namespace, tag (repeated) and limit from the query string, as the facade takes them."""
    query = request.query_params
    limit = query.get("limit")
    if limit is not None and not limit.isdigit():
        raise InvalidMemory(f"limit must be a whole number, not {limit!r}")
    return {
        "namespace": query.get("namespace") or None,
        "tags": [tag for tag in query.getlist("tag") if tag],
        "limit": int(limit) if limit is not None else None,
    }


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object in the body, read up to :data:`MAX_BODY` bytes (InvalidMemory else)."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY:
            raise _TooLarge(f"the body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(received)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMemory(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMemory(f"the body must be a JSON object, not {type(data).__name__}")
    return data


class _TooLarge(InvalidMemory):
    """A body streamed without a Content-Length that outgrew MAX_BODY (answered 413)."""


async def _overview(request: Request, memory: AsyncMemorySystem) -> Any:
    counts = await memory.count()
    report = await memory.sync_report()
    status = await memory.status()
    return {
        "counts": counts.to_dict(),
        "sync": report.to_dict() if report is not None else {"state": "local-only"},
        "sharing": status["sharing"],
    }


async def _list(request: Request, memory: AsyncMemorySystem) -> Any:
    before = request.query_params.get("before") or None
    return (await memory.list(before=before, **_filters(request))).to_dict()


async def _recall(request: Request, memory: AsyncMemorySystem) -> Any:
    query = request.query_params.get("q", "")
    return (await memory.recall(query, **_filters(request))).to_dict()


async def _get(request: Request, memory: AsyncMemorySystem) -> Any:
    return (await memory.get(request.path_params["memory_id"])).to_dict()


async def _forget(request: Request, memory: AsyncMemorySystem) -> Any:
    body = await _body(request)
    if body.get("confirm") is not True:
        raise InvalidMemory('forgetting needs {"confirm": true} in the body')
    return (await memory.forget(request.path_params["memory_id"])).to_dict()


async def _set_tags(request: Request, memory: AsyncMemorySystem) -> Any:
    body = await _body(request)
    if "tags" not in body:
        raise InvalidMemory('the body needs "tags": a list of strings')
    memory_id = request.path_params["memory_id"]
    return (await memory.set_tags(memory_id, tags=body["tags"])).to_dict()


async def _dead_letters(request: Request, memory: AsyncMemorySystem) -> Any:
    limit = _filters(request)["limit"]
    return (await memory.dead_letters(limit=limit)).to_dict()


async def _retry_dead(request: Request, memory: AsyncMemorySystem) -> Any:
    return {"requeued": await memory.retry_dead_letters()}


def _static(name: str, token: str) -> Callable[[Request], Awaitable[Response]]:
    text = resources.files("actors").joinpath("dashboard_static", name).read_text("utf-8")
    # The page names its assets with the token, so that they pass the guard too.
    text = text.replace("{{token_query}}", urlencode({"token": token}))
    kind = _CONTENT_TYPES[os.path.splitext(name)[1]]

    async def endpoint(request: Request) -> Response:
        return Response(text, media_type=kind)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail))


def create_app(memory: AsyncMemorySystem, token: str, hosts: frozenset[str]) -> ASGIApp:
    """The dashboard: page, assets and JSON API, behind the guard.

    ``hosts``: the ``Host`` header values accepted (``127.0.0.1:PORT``, ...).
    """

    routes = [
        Route("/", _static("index.html", token), methods=["GET"]),
        *(Route(f"/static/{name}", _static(name, token), methods=["GET"]) for name in _STATIC),
        Route("/api/overview", _api(_overview, memory), methods=["GET"]),
        Route("/api/memories", _api(_list, memory), methods=["GET"]),
        Route("/api/recall", _api(_recall, memory), methods=["GET"]),
        Route("/api/memories/{memory_id}", _api(_get, memory), methods=["GET"]),
        Route("/api/memories/{memory_id}/forget", _api(_forget, memory), methods=["POST"]),
        Route("/api/memories/{memory_id}/tags", _api(_set_tags, memory), methods=["POST"]),
        Route("/api/dead-letters", _api(_dead_letters, memory), methods=["GET"]),
        Route("/api/dead-letters/retry", _api(_retry_dead, memory), methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return _Guard(app, token, hosts)


# -- serving -------------------------------------------------------------------------------


def serve(
    path: str | None,
    *,
    config: Config,
    host: str,
    port: int,
    open_browser: bool,
    announce: Callable[[str, str], None],
) -> None:
    """Open the file (as a follower if another process owns it), serve until SIGINT/SIGTERM.

    ``announce`` gets the URL with the token and the database's path once the port
    is bound (and before the browser opens).
    """
    line_buffer_stdout()
    token = secrets.token_urlsafe(32)
    system = MemorySystem.open(path, config=config)
    memory = AsyncMemorySystem(system)

    def hosts_for(bound: int) -> frozenset[str]:
        names = {*_LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
        return frozenset(f"{name}:{bound}" for name in names)

    def on_listening(bound: int) -> None:
        shown = "127.0.0.1" if host == "localhost" else f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/?{urlencode({'token': token})}"
        announce(url, system.path)
        if open_browser and _can_open_browser():
            webbrowser.open(url)

    serve_until_signal(
        system,
        host,
        port,
        lambda bound: create_app(memory, token, hosts_for(bound)),
        graceful_shutdown=2,
        on_listening=on_listening,
    )


def _can_open_browser() -> bool:
    # Without a display, Python's webbrowser falls back to a text browser (lynx,
    # w3m) that would take over this terminal: the printed URL is enough then.
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True
