"""The hub in the simulation: its own core logic behind a fault-injecting MockTransport.

No sockets and no threads: ``HubCore`` (the same code the Starlette app runs)
answers through ``httpx.MockTransport`` on the simulation's thread, with a
``DirectBackend`` on a real SQLite file. Faults come from the world's
:class:`~actors.sim.faults.FaultPlan` and its ``faults.hub`` random stream,
and stop when :attr:`SimHub.faults_on` is cleared ("faults stop, time passes").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from actors.hub.core import HubCore, HubRequest
from actors.hub.direct import DirectBackend
from actors.hub.key_admin import add_key
from actors.remote import HubClient
from actors.sync_model import RemoteConfig

if TYPE_CHECKING:
    from actors.runtime import Runtime
    from actors.sim.runtime import SimRuntime

__all__ = ["SimHub"]

_HUB_URL = "http://hub.sim"


class SimHub:
    """One in-process hub for a simulated world; hands out clients for its replicas."""

    def __init__(self, sim: SimRuntime, path: str, *, embedder: Any = None) -> None:
        self.sim = sim
        self.path = path
        self.backend = DirectBackend.open(
            path, new_id=sim.new_id, now=sim.wall_time, embedder=embedder
        )
        self.core = HubCore(self.backend)
        self.faults_on = True
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self._last_changes: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        self.transport = httpx.MockTransport(self._handle)

    def __repr__(self) -> str:
        return f"<SimHub requests={self.requests} faults={'on' if self.faults_on else 'off'}>"

    def add_key(self, tenant: str) -> str:
        return add_key(self.path, tenant, now=self.sim.wall_time)

    def remote(self, key: str, **knobs: Any) -> RemoteConfig:
        """A RemoteConfig for this hub, with fast simulated intervals unless overridden."""
        settings: dict[str, Any] = {
            "interval": 0.05,
            "timeout": 1.0,
            "backoff": 0.01,
            "max_backoff": 0.2,
            "lease_ttl": 1.0,
            "resync_interval": 2.0,
            **knobs,
        }
        return RemoteConfig(_HUB_URL, key, **settings)

    def client_factory(self, remote: RemoteConfig, runtime: Runtime) -> HubClient:
        return HubClient(
            remote.url,
            remote.api_key,
            timeout=remote.timeout,
            transport=self.transport,
            clock=runtime.monotonic,
        )

    def close(self) -> None:
        self.backend.close()

    def _fault(self, name: str) -> bool:
        rate: float = getattr(self.sim.faults, name)
        if self.faults_on and rate and self.sim.rng("faults.hub").random() < rate:
            self.sim.record_fault(name)
            return True
        return False

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.by_path[request.url.path] = self.by_path.get(request.url.path, 0) + 1
        if self._fault("hub_latency"):
            delay = self.sim.rng("faults.hub").uniform(0, self.sim.faults.hub_latency_max)
            limit = (request.extensions.get("timeout") or {}).get("read") or float("inf")
            self.sim.block_for(min(delay, limit))
            if delay > limit:
                raise httpx.ReadTimeout(
                    "simulated: slower than the client timeout", request=request
                )
        if self._fault("hub_unreachable"):
            raise httpx.ConnectError("simulated: connection refused", request=request)
        if self._fault("hub_auth"):
            return _error(401, "unknown_key", "simulated: the key was refused")
        if self._fault("hub_throttle"):
            return _error(429, "rate_limited", "simulated: slow down")
        if self._fault("hub_error"):
            return _error(503, "unavailable", "simulated: the hub failed")
        feed = request.url.path == "/api/changes"
        key = str(request.url)
        if feed and key in self._last_changes and self._fault("hub_duplicate_page"):
            status, headers, content = self._last_changes[key]
            return httpx.Response(status, headers=headers, content=content)
        answer = self.core.handle(
            HubRequest(
                method=request.method,
                path=request.url.path,
                query=tuple(request.url.params.multi_items()),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=request.read(),
            )
        )
        # A timeout after the hub applied the request: the client cannot know.
        if self._fault("hub_timeout"):
            raise httpx.ReadTimeout("simulated: no answer in time", request=request)
        body = answer.body_bytes()
        if self._fault("hub_garbage"):
            body = body[: len(body) // 2]
        elif feed and answer.status == 200 and self._fault("hub_reorder_page"):
            data = json.loads(body)
            data["changes"].reverse()
            body = json.dumps(data).encode()
        headers = list(answer.all_headers().items())
        if feed:
            self._last_changes[key] = (answer.status, headers, body)
        return httpx.Response(answer.status, headers=headers, content=body)


def _error(status: int, code: str, message: str) -> httpx.Response:
    from actors.wire import PROTOCOL_HEADER, PROTOCOL_VERSION

    return httpx.Response(
        status,
        headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
        json={"error": {"code": code, "message": message}},
    )
