"""The OpenAI Agents SDK's ``Session`` on memory-actors: :class:`MemoryActorsSession`.

A session is an ordered log of the conversation's items (the SDK's input
items, JSON dicts), kept in the memory file's ``session_items`` table by its
StoreActor (see :mod:`actors.session_log`): appends, pops and clears are
group-committed with every other write, a pop is one transaction, and
several processes may share one file. Nothing of it is synced to a hub.

::

    from agents import Agent, Runner
    from actors import AsyncMemorySystem
    from actors.integrations.openai_agents import MemoryActorsSession

    async with AsyncMemorySystem.open("memory.db") as memory:
        session = MemoryActorsSession("user-42", memory)
        await Runner.run(agent, "Hello", session=session)

Needs the extra: ``pip install 'memory-actors[openai-agents]'`` (openai-agents
0.8 or newer: ``Session.session_settings``). Every method is a coroutine that
awaits the asyncio facade, so none blocks the event loop; errors are those of
:class:`~actors.aio.AsyncMemorySystem` (:class:`~actors.errors.InvalidMemory`
for an item that is not JSON or larger than 64 KiB, nothing stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.aio import AsyncMemorySystem
from actors.session_log import MAX_ITEMS_PER_CALL, validate_session_id
from actors.system import MemorySystem

try:
    from agents.memory import SessionSettings
except ImportError as exc:
    raise ImportError(
        "actors.integrations.openai_agents needs the OpenAI Agents SDK (openai-agents); "
        "install it with: pip install 'memory-actors[openai-agents]'"
    ) from exc

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["MemoryActorsSession"]


class MemoryActorsSession:
    """An Agents SDK ``Session`` (the protocol: ``isinstance(s, agents.memory.Session)``)
    whose history lives in a memory-actors file.

    ``system`` is an :class:`~actors.aio.AsyncMemorySystem`, or a
    :class:`~actors.system.MemorySystem`, which is wrapped (and not closed by
    this session: its opener closes it). ``session_settings.limit`` is the
    default of :meth:`get_items`, as in the SDK's ``SQLiteSession``.

    Cancellation follows :mod:`actors.aio`: a cancelled write that has not
    reached its transaction is never written; one that has is committed and
    only its answer (a popped item) is lost, as with ``SQLiteSession``.
    """

    def __init__(
        self,
        session_id: str,
        system: AsyncMemorySystem | MemorySystem,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> None:
        self.session_id = validate_session_id(session_id)
        self.memory = system if isinstance(system, AsyncMemorySystem) else AsyncMemorySystem(system)
        if isinstance(session_settings, Mapping):
            session_settings = SessionSettings(**session_settings)
        self.session_settings: SessionSettings | None = session_settings or SessionSettings()

    def __repr__(self) -> str:
        return f"<MemoryActorsSession {self.session_id!r} on {self.memory.path}>"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items (default ``session_settings.limit``; None: all),
        oldest first."""
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit <= 0:
            # SQLiteSession's SQL meaning: LIMIT 0 selects nothing, a negative LIMIT everything.
            if limit == 0:
                return []
            limit = None
        return await self.memory.session_items(self.session_id, limit=limit)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order; returns after they are committed.

        More than 1000 items are appended 1000 at a time, each part atomic.
        """
        for start in range(0, len(items), MAX_ITEMS_PER_CALL):
            await self.memory.session_add(
                self.session_id, items[start : start + MAX_ITEMS_PER_CALL]
            )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None when the session is empty), atomically."""
        item: TResponseInputItem | None = await self.memory.session_pop(self.session_id)
        return item

    async def clear_session(self) -> None:
        """Delete every item of this session."""
        await self.memory.session_clear(self.session_id)
