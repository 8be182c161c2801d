"""HubClient: the one module that speaks HTTP to the hub (protocol version 1, via ``httpx``).

Every method is a plain synchronous call bounded by an explicit timeout, and
returns a typed record of :mod:`actors.wire` (the wire shapes both
sides share). Every failure is one of the :class:`~actors.errors.HubError`
family, raised ``from`` the httpx or JSON error, with a message that names
the URL and what happened (never the key):

==========================================  =============================================
what happened                               raised
==========================================  =============================================
connection refused or reset, DNS failure    :class:`~actors.errors.HubUnreachable`
no complete answer within the timeout       :class:`~actors.errors.HubTimeout`
401 unknown/missing key, 403 revoked key    :class:`~actors.errors.HubAuthError`
409 ``cursor_reset``                        :class:`~actors.errors.HubCursorReset`
other 4xx (413, 422, ...)                   :class:`~actors.errors.HubRejected`
501                                         :class:`~actors.errors.HubUnsupported`
other 5xx                                   :class:`~actors.errors.HubServerError`
garbage JSON, cut-off body, wrong shape,    :class:`~actors.errors.HubProtocolError`
a server that is not a hub
==========================================  =============================================

Transient (retry with backoff): ``HubUnreachable``, ``HubTimeout``,
``HubServerError``, ``HubProtocolError``. Needs an operator: ``HubAuthError``.
Needs a different request: ``HubRejected``. Pushes are idempotent, so
retrying a push after a timeout is always safe.

Timeouts: ``timeout`` bounds connecting, each read and each write. Give a
monotonic ``clock`` (an actor passes ``runtime.monotonic``) and it also
bounds the whole call, so a hub that trickles its answer cannot hold a
caller past ``timeout`` plus one read.

A HubClient is safe to share between threads (httpx's connection pool is),
but it is meant for one owner (the SyncActor). Tests and the simulation pass
``transport=actors.hub.transport.mock_transport(core)`` to talk to an
in-process HubCore without sockets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx

from actors.errors import (
    HubAuthError,
    HubCursorReset,
    HubProtocolError,
    HubRejected,
    HubServerError,
    HubTimeout,
    HubUnreachable,
    HubUnsupported,
)
from actors.wire import (
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    AuthInfo,
    ChangesPage,
    DigestPage,
    ErrorBody,
    Health,
    HubCounts,
    HubLimits,
    PushResult,
    RecallHits,
    RecallQuery,
    ShapeError,
    WireMemory,
    push_request,
)

__all__ = ["DEFAULT_TIMEOUT", "HubClient"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_TIMEOUT: Final = 10.0
#: A hub answer larger than this is refused (a page of 1000 changes of typical
#: memories is well under 10 MiB; the body limit of a push is 8 MiB).
MAX_RESPONSE_BYTES: Final = 256 * 1024 * 1024


class HubClient:
    """A client of one hub with one API key. Methods block for at most their timeout.

    ``base_url`` is the hub's root (``http://127.0.0.1:8765``); ``timeout``
    the default per-call timeout in seconds, overridable per call;
    ``transport`` replaces the network (``httpx.MockTransport``); ``clock``
    (monotonic seconds) enables the whole-call deadline.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"the hub URL {base_url!r} is not a URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"the hub URL must be http(s)://host[:port], got {base_url!r}")
        if not api_key or any(ch.isspace() for ch in api_key):
            raise ValueError("the hub API key is empty or contains whitespace")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.base_url = str(url).rstrip("/")
        self.timeout = timeout
        #: The hub's limits, learnt from the last successful :meth:`auth_check`.
        self.limits: HubLimits | None = None
        self._clock = clock
        self._max_response_bytes = max_response_bytes
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "authorization": f"Bearer {api_key}",
                PROTOCOL_HEADER: str(PROTOCOL_VERSION),
                "accept": "application/json",
                "user-agent": "memory-actors-hub-client/1",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<HubClient {self.base_url} timeout={self.timeout:g}s>"

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections. Idempotent."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the protocol -----------------------------------------------------------------------

    def health(self, *, timeout: float | None = None) -> Health:
        """``GET /healthz``: whether the hub serves (no key needed)."""
        return self._call("GET", "/healthz", Health.parse, timeout=timeout)

    def auth_check(self, *, timeout: float | None = None) -> AuthInfo:
        """``GET /api/auth-check``: the key's tenant and the hub's limits, or HubAuthError.

        The limits are kept in :attr:`limits`; :meth:`push` then refuses an
        oversized batch locally, without sending it.
        """
        info = self._call("GET", "/api/auth-check", AuthInfo.parse, timeout=timeout)
        self.limits = info.limits
        return info

    def push(self, items: Sequence[WireMemory], *, timeout: float | None = None) -> PushResult:
        """``POST /api/memories/batch``: one :class:`ItemResult` per item, in order.

        Idempotent: pushing the same items again answers ``unchanged`` (or the
        same ``duplicate``/``stale``) and changes nothing. A batch with an
        invalid item is refused whole (:class:`HubRejected`, code
        ``invalid_item``, ``details["index"]`` names it).
        """
        if not items:
            return PushResult(())
        body = _encode(push_request(items))
        self._check_push_size(len(items), len(body))
        result = self._call("POST", "/api/memories/batch", PushResult.parse, body, timeout=timeout)
        if len(result.results) != len(items) or any(
            r.id != item.id for r, item in zip(result.results, items, strict=False)
        ):
            raise HubProtocolError(
                f"POST {self.base_url}/api/memories/batch: the hub answered "
                f"{len(result.results)} results for {len(items)} items, or out of order",
                url=f"{self.base_url}/api/memories/batch",
                status=200,
            )
        return result

    def changes(
        self, since: str | None = None, limit: int | None = None, *, timeout: float | None = None
    ) -> ChangesPage:
        """``GET /api/changes``: the next page after cursor ``since`` (None: from the start).

        Store ``page.next_cursor`` only after applying ``page.changes``.
        :class:`HubCursorReset` means: pull again from ``since=None``.
        """
        params = _params(since=since, limit=limit)
        return self._call("GET", "/api/changes", ChangesPage.parse, params=params, timeout=timeout)

    def digest(
        self, after: str | None = None, limit: int | None = None, *, timeout: float | None = None
    ) -> DigestPage:
        """``GET /api/memories/digest``: (id, hash, version) of every memory after id ``after``."""
        params = _params(after=after, limit=limit)
        return self._call(
            "GET", "/api/memories/digest", DigestPage.parse, params=params, timeout=timeout
        )

    def count(self, *, timeout: float | None = None) -> HubCounts:
        """``GET /api/count``: the tenant's live memories per namespace, and tombstones."""
        return self._call("GET", "/api/count", HubCounts.parse, timeout=timeout)

    def recall(
        self,
        query: str,
        *,
        namespace: str | None = None,
        tags: Iterable[str] = (),
        limit: int = 10,
        timeout: float | None = None,
        namespace_prefix: str | None = None,
    ) -> RecallHits:
        """``POST /api/recall``: semantic matches, best first.

        :class:`HubUnsupported` when the hub has no semantic recall (501).
        """
        body = RecallQuery(query, namespace, tuple(tags), limit, namespace_prefix).to_json()
        return self._call("POST", "/api/recall", RecallHits.parse, body, timeout=timeout)

    # -- plumbing -----------------------------------------------------------------------------

    def _check_push_size(self, count: int, size: int) -> None:
        # A hub refuses an oversized body with 413 but, past a few times its limit,
        # drops the connection while the client is still sending: the client would
        # see a broken pipe. Knowing the limits, refuse such a batch here, the same way.
        limits = self.limits
        if limits is None:
            return
        url = f"{self.base_url}/api/memories/batch"
        if size > limits.max_body_bytes:
            message = (
                f"the batch is {size} bytes as JSON; the hub's limit is "
                f"{limits.max_body_bytes} bytes (checked before sending). Send smaller batches."
            )
            code, status = "payload_too_large", 413
        elif count > limits.max_batch_items:
            message = (
                f"the batch holds {count} memories; the hub takes at most "
                f"{limits.max_batch_items} per batch (checked before sending)"
            )
            code, status = "invalid_body", 422
        else:
            return
        raise HubRejected(
            f"POST {url}: {message}", url=url, status=status, code=code, hub_message=message
        )

    def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[object], R],
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> R:
        wait = self.timeout if timeout is None else timeout
        url = f"{self.base_url}{path}"
        where = f"{method} {url}"
        status, data = self._exchange(method, path, url, where, body, params, wait)
        try:
            return parse(data)
        except ShapeError as exc:
            raise HubProtocolError(
                f"{where}: the hub's answer does not have the protocol's shape: {exc}",
                url=url,
                status=status,
            ) from exc

    def _exchange(
        self,
        method: str,
        path: str,
        url: str,
        where: str,
        body: Any,
        params: dict[str, str] | None,
        wait: float,
    ) -> tuple[int, object]:
        content = None
        headers = {}
        if body is not None:
            content = body if isinstance(body, bytes) else _encode(body)
            headers["content-type"] = "application/json"
        deadline = None if self._clock is None else self._clock() + wait
        try:
            request = self._http.build_request(
                method, path, params=params, content=content, headers=headers, timeout=wait
            )
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise HubTimeout(
                f"{where}: no answer within {wait:g}s ({_describe(exc)})", url=url
            ) from exc
        except httpx.TransportError as exc:
            raise HubUnreachable(
                f"{where}: cannot reach the hub ({_describe(exc)})", url=url
            ) from exc
        try:
            raw = self._read(response, where, url, deadline, wait)
        finally:
            response.close()
        status = response.status_code
        if 200 <= status < 300:
            if response.headers.get(PROTOCOL_HEADER) != str(PROTOCOL_VERSION):
                raise HubProtocolError(
                    f"{where}: answered {status} without the {PROTOCOL_HEADER}: "
                    f"{PROTOCOL_VERSION} header; is this URL a memory-actors hub?",
                    url=url,
                    status=status,
                )
            return status, self._decode(raw, where, url, status)
        raise self._error(status, raw, response, where, url)

    def _read(
        self, response: httpx.Response, where: str, url: str, deadline: float | None, wait: float
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise HubProtocolError(
                        f"{where}: the answer is larger than {self._max_response_bytes} bytes",
                        url=url,
                        status=response.status_code,
                    )
                if deadline is not None and self._clock is not None and self._clock() > deadline:
                    raise HubTimeout(
                        f"{where}: the answer did not arrive within {wait:g}s (still reading)",
                        url=url,
                        status=response.status_code,
                    )
        except httpx.TimeoutException as exc:
            raise HubTimeout(
                f"{where}: the answer stalled; not complete within {wait:g}s ({_describe(exc)})",
                url=url,
                status=response.status_code,
            ) from exc
        except httpx.HTTPError as exc:
            # The status line and headers arrived, the body did not: a cut-off answer.
            raise HubProtocolError(
                f"{where}: the answer was cut off after {size} bytes ({_describe(exc)})",
                url=url,
                status=response.status_code,
            ) from exc
        return b"".join(chunks)

    @staticmethod
    def _decode(raw: bytes, where: str, url: str, status: int) -> object:
        try:
            data: object = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
            snippet = raw[:80].decode("utf-8", "replace")
            raise HubProtocolError(
                f"{where}: answered {status} with a body that is not JSON ({exc}): {snippet!r}",
                url=url,
                status=status,
            ) from exc
        return data

    def _error(
        self, status: int, raw: bytes, response: httpx.Response, where: str, url: str
    ) -> Exception:
        try:
            error: ErrorBody | None = ErrorBody.parse(json.loads(raw))
        except (ValueError, RecursionError):  # ShapeError and JSON errors are ValueErrors
            error = None
        if error is not None:
            code, message = error.code, error.message
        else:
            code, message = "", raw[:200].decode("utf-8", "replace").strip() or "(no body)"
        said = f"{where}: the hub answered {status}" + (f" {code}" if code else "") + f": {message}"
        if status in (401, 403):
            return HubAuthError(
                f"{said} (check the API key)", url=url, status=status, code=code, reason=message
            )
        if status == 501:
            return HubUnsupported(said, url=url, status=status)
        if 500 <= status < 600:
            return HubServerError(said, url=url, status=status, retry_after=_retry_after(response))
        if 400 <= status < 500:
            kind = HubCursorReset if status == 409 and code == "cursor_reset" else HubRejected
            return kind(
                said,
                url=url,
                status=status,
                code=code,
                hub_message=message,
                details=dict(error.details) if error is not None else None,
            )
        return HubProtocolError(
            f"{where}: unexpected status {status} (redirects are not followed)",
            url=url,
            status=status,
        )


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _params(**values: str | int | None) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
