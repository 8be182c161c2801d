"""The hub's Starlette app: real HTTP in front of :class:`~actors.hub.core.HubCore`.

One ASGI endpoint takes every request: it reads the body (refusing one
larger than the limit before reading it, when Content-Length says so, and
as soon as the stream passes the limit otherwise), then runs
``HubCore.handle`` on a worker thread through ``anyio.to_thread.run_sync``
with a dedicated :class:`anyio.CapacityLimiter`. The event loop never waits
on a Pykka future: awaiting one blocks the loop (``docs`` of the MCP SDK
notes measured a second-long freeze). ``abandon_on_cancel`` lets a request
whose client went away return at once; its worker finishes within the
store timeout.

The lifespan opens the :class:`~actors.hub.service.HubService` (migrating
the file and starting the actors) before the first request and closes it
after the last: uvicorn runs it on SIGTERM/SIGINT after draining
connections, so a stopped hub leaves no actor thread behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from actors.hub.core import HubCore, HubRequest, HubResponse, error_response
from actors.hub.service import HubConfig, HubService

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class _Endpoint:
    """The ASGI endpoint for every path; forwards to HubCore on a worker thread."""

    def __init__(self, max_concurrency: int) -> None:
        self.core: HubCore | None = None
        self.limiter = anyio.CapacityLimiter(max_concurrency)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - websockets are not routed here
            return
        request = Request(scope, receive)
        answer = await self._answer(request)
        response = Response(
            answer.body_bytes(), status_code=answer.status, headers=answer.all_headers()
        )
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> HubResponse:
        core = self.core
        if core is None:
            return error_response(
                503, "unavailable", "the hub is starting or stopping", **{"retry-after": "1"}
            )
        limit = core.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            return error_response(400, "invalid_request", "Content-Length is not a number")
        body = bytearray()
        try:
            if declared is None or int(declared) <= limit:
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        break
            if len(body) > limit or (declared is not None and int(declared) > limit):
                # Read (and drop) a moderately oversized body so the client, which
                # is still sending, gets this answer instead of a broken pipe.
                await _drain(request, _DRAIN_FACTOR * limit - len(body))
                return error_response(
                    413,
                    "payload_too_large",
                    f"the body is larger than the limit of {limit} bytes; send smaller batches",
                )
        except ClientDisconnect:
            return error_response(400, "invalid_request", "the client went away mid-body")
        hub_request = HubRequest(
            method=request.method,
            path=request.url.path,
            query=tuple(request.query_params.multi_items()),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=bytes(body),
        )
        return await anyio.to_thread.run_sync(
            partial(core.handle, hub_request), abandon_on_cancel=True, limiter=self.limiter
        )


#: An oversized body is drained up to this multiple of the limit; beyond, the
#: connection is dropped after the 413.
_DRAIN_FACTOR = 4


async def _drain(request: Request, budget: int) -> None:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > budget:
            return


def create_app(config: HubConfig | None = None, *, service: HubService | None = None) -> Starlette:
    """The hub as an ASGI app, for uvicorn.

    Give a ``config`` (the app's lifespan opens the HubService before the first
    request and closes it after the last) or an open ``service`` (the caller
    keeps ownership and closes it).
    """
    if service is not None:
        if config is not None:
            raise ValueError("pass either config or service, not both")
        config = service.config
    elif config is None:
        raise ValueError("pass a HubConfig (or an open HubService)")
    endpoint = _Endpoint(config.max_concurrency)
    hub_config = config

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        owned: HubService | None = None
        if service is not None:
            endpoint.core = service.core
        else:
            owned = await anyio.to_thread.run_sync(HubService.open, hub_config)
            endpoint.core = owned.core
        try:
            yield {}
        finally:
            endpoint.core = None
            if owned is not None:
                # Shielded: a second SIGINT must not cancel the stop and leave actors alive.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(owned.close)
                logger.info("hub stopped")

    return Starlette(routes=[Mount("/", app=endpoint)], lifespan=lifespan)
