"""HubCore: the hub's request logic as a plain class, with no web framework in it.

``HubCore.handle(HubRequest) -> HubResponse`` routes, authenticates,
validates and answers every request, and never raises: bad input is a 4xx
with ``{"error": {"code", "message", "details"?}}``, an unreachable store a
503, and only a bug a 500. The same object serves real HTTP through the
Starlette app (:mod:`actors.hub.app`, which runs ``handle`` on a worker
thread) and the in-process :func:`actors.hub.transport.mock_transport` of
the deterministic simulation.

Storage is behind :class:`HubBackend`: the hub's StoreActor in production
(:class:`actors.hub.service.ActorBackend`), or a plain in-thread database
(:class:`actors.hub.direct.DirectBackend`) where threads are not wanted.
``handle`` blocks on the backend for at most ``storage_timeout`` seconds per
call; it is meant for a worker thread, never for an event loop.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from actors.errors import AskTimeout, StorageBusy, StorageError, Unavailable
from actors.hub.backend import Cursor, CursorUnknown, HubBackend
from actors.hub.keys import StoredKey, key_id_of, verify_key
from actors.hub.openapi import openapi_document
from actors.hub.search import RecallUnsupported
from actors.model import validate_id
from actors.wire import (
    DEFAULT_CHANGES_LIMIT,
    DEFAULT_DIGEST_LIMIT,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    AuthInfo,
    ErrorBody,
    Health,
    HubLimits,
    PushResult,
    RecallQuery,
    ShapeError,
    parse_push_request,
)

__all__ = [
    "ROUTES",
    "HubCore",
    "HubRequest",
    "HubResponse",
    "Route",
    "error_response",
]

logger = logging.getLogger(__name__)

_DIGITS_RE: Final = re.compile(r"[0-9]{1,18}")
_ITEM_PATH_RE: Final = re.compile(r"items\[(\d+)\]")


@attrs.frozen
class HubRequest:
    """A request, framework-free. Header names are lower-case; ``query`` keeps every pair."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class HubResponse:
    """A JSON response: status, body (JSON-serialisable) and extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def body_bytes(self) -> bytes:
        try:
            return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            # Only an error message can echo an unpaired surrogate from the
            # request; ASCII escapes keep the answer valid JSON.
            return json.dumps(self.body, separators=(",", ":")).encode("ascii")

    def all_headers(self) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "cache-control": "no-store",
            PROTOCOL_HEADER.lower(): str(PROTOCOL_VERSION),
            **self.headers,
        }


@attrs.frozen
class Route:
    """One endpoint: method, path, whether it takes a key, and the HubCore method serving it."""

    method: str
    path: str
    authenticated: bool
    handler: str


#: Every endpoint the hub serves; the OpenAPI document describes exactly these
#: (``tests/test_hub_api.py`` checks both directions).
ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/healthz", False, "_healthz"),
    Route("GET", "/openapi.json", False, "_openapi"),
    Route("GET", "/api/auth-check", True, "_auth_check"),
    Route("POST", "/api/memories/batch", True, "_push"),
    Route("GET", "/api/changes", True, "_changes"),
    Route("GET", "/api/memories/digest", True, "_digest"),
    Route("GET", "/api/count", True, "_count"),
    Route("POST", "/api/recall", True, "_recall"),
)


class _Refusal(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.response = HubResponse(
            status, ErrorBody(code, message, dict(details or {})).to_json(), dict(headers or {})
        )


def error_response(status: int, code: str, message: str, **headers: str) -> HubResponse:
    """An error answer: ``{"error": {"code": code, "message": message}}``."""
    return HubResponse(status, ErrorBody(code, message).to_json(), headers)


Handler = Callable[[HubRequest, StoredKey | None], HubResponse]


class HubCore:
    """Routes, authenticates, validates and answers hub requests. Thread-safe; holds no state.

    Runs on whatever thread calls :meth:`handle` (a worker thread of the
    Starlette app, or the simulation's thread through ``mock_transport``).
    """

    def __init__(
        self,
        backend: HubBackend,
        *,
        limits: HubLimits | None = None,
        storage_timeout: float = 10.0,
    ) -> None:
        self.backend = backend
        self.limits = limits or HubLimits()
        self.storage_timeout = storage_timeout
        self._table: dict[str, dict[str, Route]] = {}
        for route in ROUTES:
            self._table.setdefault(route.path, {})[route.method] = route

    def __repr__(self) -> str:
        return f"<HubCore routes={len(ROUTES)} timeout={self.storage_timeout:g}s>"

    # -- entry point ---------------------------------------------------------------

    def handle(self, request: HubRequest) -> HubResponse:
        """Answer one request. Never raises; blocks at most ~2 × ``storage_timeout``."""
        try:
            return self._dispatch(request)
        except _Refusal as refusal:
            return refusal.response
        except ShapeError as exc:
            return self._shape_error(exc)
        except CursorUnknown as exc:
            return error_response(409, "cursor_reset", str(exc))
        except RecallUnsupported as exc:
            return error_response(501, "not_implemented", str(exc))
        except AskTimeout as exc:
            return error_response(
                503, "unavailable", f"the hub's storage did not answer in time: {exc}", **_RETRY
            )
        except (Unavailable, StorageBusy, StorageError) as exc:
            return error_response(
                503, "unavailable", f"the hub's storage cannot answer: {exc}", **_RETRY
            )
        except Exception:
            logger.exception("hub: unexpected error on %s %s", request.method, request.path)
            return error_response(
                500, "internal", "the hub failed unexpectedly; its log has the details"
            )

    def _dispatch(self, request: HubRequest) -> HubResponse:
        methods = self._table.get(request.path)
        if methods is None:
            raise _Refusal(
                404, "not_found", f"no endpoint {request.path[:200]!r}; see /openapi.json"
            )
        route = methods.get(request.method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            raise _Refusal(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}; use {allowed}",
                headers={"allow": allowed},
            )
        wanted = request.headers.get(PROTOCOL_HEADER.lower())
        if wanted is not None and wanted.strip() != str(PROTOCOL_VERSION):
            raise _Refusal(
                400,
                "unsupported_protocol",
                f"this hub speaks protocol {PROTOCOL_VERSION}; the client asked for "
                f"{wanted[:20]!r}. Upgrade the hub or use a matching client.",
            )
        key = self._authenticate(request) if route.authenticated else None
        handler: Handler = getattr(self, route.handler)
        return handler(request, key)

    # -- authentication --------------------------------------------------------------

    def _authenticate(self, request: HubRequest) -> StoredKey:
        header = request.headers.get("authorization")
        if header is None:
            raise _Refusal(
                401,
                "missing_key",
                "no API key: send it as 'Authorization: Bearer <key>'",
                headers=_CHALLENGE,
            )
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(
                401,
                "missing_key",
                "the Authorization header must be 'Bearer <key>'",
                headers=_CHALLENGE,
            )
        key_id = key_id_of(token)
        stored = None if key_id is None else self.backend.lookup_key(key_id, self.storage_timeout)
        # Whether a key id exists is not secret (ids are shown in listings); the
        # secret part is only ever compared as a hash, in constant time.
        if stored is None or not verify_key(token, stored.key_hash):
            raise _Refusal(
                401, "unknown_key", "the API key is unknown to this hub", headers=_CHALLENGE
            )
        if stored.revoked:
            raise _Refusal(
                403,
                "key_revoked",
                f"API key {stored.key_id} was revoked; ask the hub's operator for a new key",
            )
        return stored

    # -- request parts ---------------------------------------------------------------

    @staticmethod
    def _params(request: HubRequest, allowed: tuple[str, ...]) -> dict[str, str]:
        params: dict[str, str] = {}
        for name, value in request.query:
            if name not in allowed:
                takes = ", ".join(allowed) if allowed else "no query parameters"
                raise _Refusal(
                    400,
                    "invalid_parameter",
                    f"unknown query parameter {name[:40]!r}; {request.path} takes {takes}",
                )
            if name in params:
                raise _Refusal(400, "invalid_parameter", f"query parameter {name!r} given twice")
            params[name] = value
        return params

    @staticmethod
    def _limit(params: Mapping[str, str], *, default: int, maximum: int) -> int:
        text = params.get("limit")
        if text is None:
            return default
        if not _DIGITS_RE.fullmatch(text) or not 1 <= int(text) <= maximum:
            raise _Refusal(
                400,
                "invalid_parameter",
                f"limit must be an integer from 1 to {maximum}, got {text[:40]!r}",
            )
        return int(text)

    def _json_body(self, request: HubRequest) -> object:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise _Refusal(
                415,
                "unsupported_media_type",
                f"send the body as application/json (Content-Type was {media[:60]!r})",
            )
        if len(request.body) > self.limits.max_body_bytes:
            raise _Refusal(
                413,
                "payload_too_large",
                f"the body is {len(request.body)} bytes; the limit is "
                f"{self.limits.max_body_bytes} bytes. Send smaller batches.",
            )
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refusal(
                400, "malformed_json", f"the body is not UTF-8 (bad byte at offset {exc.start})"
            ) from None
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise _Refusal(
                400,
                "malformed_json",
                f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None
        except RecursionError:
            raise _Refusal(400, "malformed_json", "the body's JSON is nested too deeply") from None
        except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
            raise _Refusal(400, "malformed_json", f"the body is not valid JSON: {exc}") from None

    @staticmethod
    def _shape_error(exc: ShapeError) -> HubResponse:
        details: dict[str, Any] = {"field": exc.path}
        match = _ITEM_PATH_RE.match(exc.path)
        if match:
            details["index"] = int(match.group(1))
            code = "invalid_item"
        else:
            code = "invalid_body"
        return HubResponse(422, ErrorBody(code, str(exc), details).to_json())

    # -- endpoints ---------------------------------------------------------------------

    def _healthz(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        self._params(request, ())
        state = self.backend.ping(self.storage_timeout)
        if state != "READY":
            return error_response(
                503, "unavailable", f"the hub's storage is {state.lower()}", **_RETRY
            )
        return HubResponse(200, Health("ok", PROTOCOL_VERSION).to_json())

    def _openapi(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        self._params(request, ())
        return HubResponse(200, openapi_document(self.limits))

    def _auth_check(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        self._params(request, ())
        info = AuthInfo(key.tenant, key.key_id, PROTOCOL_VERSION, self.limits)
        return HubResponse(200, info.to_json())

    def _push(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        self._params(request, ())
        items = parse_push_request(self._json_body(request), max_items=self.limits.max_batch_items)
        results = self.backend.push(key.tenant, items, self.storage_timeout)
        return HubResponse(200, PushResult(results).to_json())

    def _changes(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        params = self._params(request, ("since", "limit"))
        limit = self._limit(
            params,
            default=min(DEFAULT_CHANGES_LIMIT, self.limits.max_changes_limit),
            maximum=self.limits.max_changes_limit,
        )
        since: Cursor | None = None
        if params.get("since"):
            try:
                since = Cursor.decode(params["since"])
            except ValueError as exc:
                raise _Refusal(400, "invalid_parameter", str(exc)) from None
        page = self.backend.changes(key.tenant, since, limit, self.storage_timeout)
        return HubResponse(200, page.to_json())

    def _digest(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        params = self._params(request, ("after", "limit"))
        limit = self._limit(
            params,
            default=min(DEFAULT_DIGEST_LIMIT, self.limits.max_digest_limit),
            maximum=self.limits.max_digest_limit,
        )
        after: str | None = None
        if params.get("after"):
            try:
                after = validate_id(params["after"])
            except ValueError as exc:
                raise _Refusal(400, "invalid_parameter", f"after: {exc}") from None
        page = self.backend.digest(key.tenant, after, limit, self.storage_timeout)
        return HubResponse(200, page.to_json())

    def _count(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        self._params(request, ())
        return HubResponse(200, self.backend.counts(key.tenant, self.storage_timeout).to_json())

    def _recall(self, request: HubRequest, key: StoredKey | None) -> HubResponse:
        assert key is not None
        self._params(request, ())
        query = RecallQuery.parse(self._json_body(request), max_limit=self.limits.max_recall_limit)
        hits = self.backend.recall(key.tenant, query, self.storage_timeout)
        return HubResponse(200, hits.to_json())


_RETRY: Final = {"retry-after": "1"}
_CHALLENGE: Final = {"www-authenticate": 'Bearer realm="memory-actors hub"'}


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
