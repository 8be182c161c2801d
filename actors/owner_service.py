"""The owner's end of a facade call across processes.

:class:`OwnerService` runs in the file's owner: it listens on the owner's
socket (:class:`~actors.owner_link.LinkServer`) and runs each follower's call
on the owner's blocking facade, on a bounded pool of worker threads. So the
follower's caller gets the owner's validation, admission control, timeouts
and group commit: the calls of all followers and the owner's own callers
share the StoreActor's batches.

Threads, because a follower's call waits on the facade exactly as a local
caller does; the pool bounds them (calls beyond it queue, unanswered, and
the owner's admission gate still bounds what reaches the actors). The
follower's end is :class:`actors.owner_link.OwnerProxy`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol

from actors.errors import InvalidMemory
from actors.owner_link import NOT_BEGUN, LinkServer, Message, Reply
from actors.owner_protocol import VERBS, encode_error, encode_result

__all__ = ["OwnerService"]

logger = logging.getLogger(__name__)

#: Follower calls served at once; as many as a busy group commit gathers.
WORKERS: Final = 64


class Listener(Protocol):
    """Where followers' requests arrive (:class:`~actors.owner_link.LinkServer`)."""

    @property
    def path(self) -> Path: ...
    @property
    def followers(self) -> int: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


#: Starts listening on a path, handing each request to a handler.
Listen = Callable[[Path, Callable[[str, Message, Reply], None]], Listener]


class OwnerService:
    """Serves ``facade`` (the owner's MemorySystem) to followers until ``close``.

    ``facade`` is any object with the verbs of :data:`~actors.owner_protocol.VERBS`
    as methods taking keyword arguments. ``listen`` and ``pool`` are the
    socket server and the worker threads; the simulation passes its own
    (:mod:`actors.sim.sharing`).
    """

    def __init__(
        self,
        facade: object,
        socket_path: str | Path,
        *,
        workers: int = WORKERS,
        listen: Listen = LinkServer,
        pool: Executor | None = None,
    ) -> None:
        self._facade = facade
        self._pool = pool or ThreadPoolExecutor(workers, thread_name_prefix="owner-service")
        self._closing = False
        self._server = listen(Path(socket_path), self._handle)

    def __repr__(self) -> str:
        return f"<OwnerService {self._server.path} followers={self.followers}>"

    @property
    def followers(self) -> int:
        return self._server.followers

    @property
    def socket_path(self) -> Path:
        return self._server.path

    def _handle(self, verb: str, args: Message, reply: Reply) -> None:
        """On a link thread: queue the call; a worker answers it."""
        # Shutting down (RuntimeError): the follower sees the link close instead.
        with contextlib.suppress(RuntimeError):
            self._pool.submit(self._run, verb, args, reply)

    def _run(self, verb: str, args: Message, reply: Reply) -> None:
        if self._closing:
            reply({NOT_BEGUN: True})  # queued when the owner began to close
            return
        try:
            method = self._method(verb)
            try:
                bound = _bind(method, args)
            except TypeError as exc:
                # Keyword arguments the verb does not take: the follower's bug, told as such.
                raise InvalidMemory(f"{verb}: {exc}") from None
            answer: Message = {"ok": encode_result(verb, bound())}
        except Exception as exc:  # every error goes back to the caller that caused it
            answer = {"error": encode_error(exc)}
        reply(answer)

    def _method(self, verb: str) -> Callable[..., Any]:
        if verb not in VERBS:
            raise InvalidMemory(f"unknown verb {verb!r} (expected one of {sorted(VERBS)})")
        method: Callable[..., Any] = getattr(self._facade, verb)
        return method

    def close(self) -> None:
        """Finish and answer the calls begun, then drop the followers (they fail over).

        Calls received but not begun are answered ``not_begun``: their
        followers repeat them with the next owner, whatever the verb.
        """
        self._closing = True
        self._server.drain()
        self._pool.shutdown(wait=True)
        self._server.close()


def _bind(method: Callable[..., Any], args: Message) -> Callable[[], Any]:
    """``method`` with ``args`` bound, or TypeError if the verb does not take them."""
    inspect.signature(method).bind(**args)
    return lambda: method(**args)
