"""``mock_transport``: HubCore behind an ``httpx.MockTransport``, with no sockets and no threads.

A :class:`~actors.remote.HubClient` built with ``transport=mock_transport(core)``
speaks the real protocol to a real HubCore in the calling thread: what the
deterministic simulation uses, with a :class:`~actors.hub.direct.DirectBackend`
behind the core (or an ``ActorBackend`` where threads are fine).
"""

from __future__ import annotations

import httpx

from actors.hub.core import HubCore, HubRequest

__all__ = ["mock_transport"]


def mock_transport(core: HubCore) -> httpx.MockTransport:
    """An httpx transport that answers every request with ``core.handle``."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = core.handle(
            HubRequest(
                method=request.method,
                path=request.url.path,
                query=tuple(request.url.params.multi_items()),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.read(),
            )
        )
        return httpx.Response(
            answer.status, headers=answer.all_headers(), content=answer.body_bytes()
        )

    return httpx.MockTransport(handler)
