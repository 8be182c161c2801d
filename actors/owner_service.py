"""The owner's end of a facade call across processes.

:class:`OwnerService` runs in the file's owner: it listens on the owner's
socket (:class:`~actors.owner_link.LinkServer`) and runs each follower's call
as a task on one event loop of its own, through the owner's
:class:`~actors.aio.AsyncMemorySystem`. So a follower's calls are answered
as they complete, many in flight on one connection, with no thread parked
per call, and they join the owner's group commits.

The follower's end is :class:`actors.owner_link.OwnerProxy`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from actors.aio import AsyncMemorySystem
from actors.errors import InvalidMemory
from actors.owner_link import LinkServer, Message, Reply
from actors.owner_protocol import VERBS, encode_error, encode_result
from actors.system import MemorySystem

__all__ = ["OwnerService"]

logger = logging.getLogger(__name__)


class OwnerService:
    """Serves the owner's facade to followers over the owner's socket until ``close``."""

    def __init__(self, system: MemorySystem, socket_path: str | Path) -> None:
        self._memory = AsyncMemorySystem(system)
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="owner-service", daemon=True
        )
        self._thread.start()
        self._server = LinkServer(socket_path, self._handle)

    def __repr__(self) -> str:
        return f"<OwnerService {self._server.path} followers={self.followers}>"

    @property
    def followers(self) -> int:
        return self._server.followers

    @property
    def socket_path(self) -> Path:
        return self._server.path

    def _handle(self, verb: str, args: Message, reply: Reply) -> None:
        """On a link thread: hand the call to the loop; the task replies."""
        self._loop.call_soon_threadsafe(self._start, verb, args, reply)

    def _start(self, verb: str, args: Message, reply: Reply) -> None:
        task = self._loop.create_task(self._run(verb, args, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, verb: str, args: Message, reply: Reply) -> None:
        try:
            if verb not in VERBS:
                raise InvalidMemory(f"unknown verb {verb!r} (expected one of {sorted(VERBS)})")
            method = getattr(self._memory, verb)
            try:
                call = method(**args)
            except TypeError as exc:
                # Keyword arguments that the verb does not take (binding fails before
                # the coroutine runs): the follower's bug, told as such.
                raise InvalidMemory(f"{verb}: {exc}") from None
            value = await call
            answer: Message = {"ok": encode_result(verb, value)}
        except Exception as exc:  # every error goes back to the caller that caused it
            answer = {"error": encode_error(exc)}
        reply(answer)

    def close(self) -> None:
        """Stop listening (followers see the link break and fail over), then stop the loop."""
        self._server.close()

        async def drain() -> None:
            # Calls already running finish and reply, or their followers retry.
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)

        asyncio.run_coroutine_threadsafe(drain(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
