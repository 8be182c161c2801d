"""The protocol between actors: every message, in one place.

Each message is a frozen attrs class. A *request* carries ``reply``, a future
made by the caller's runtime; the receiving actor answers it exactly once
with a value or an exception from :mod:`actors.errors`, even when it stops
or fails (see :class:`actors._base.ReplyingActor`). Requests are sent with
``tell``, never ``ask``: the reply may be settled later than the handler
returns (group commit), which Pykka's ask cannot express.
"""

from __future__ import annotations

from typing import Any

import attrs
import pykka

__all__ = [
    "ChildFailed",
    "ChildReady",
    "ChildStopped",
    "CountMemories",
    "Flush",
    "ForgetMemory",
    "GetMemory",
    "ListMemories",
    "Migrate",
    "Ping",
    "Request",
    "RestartChild",
    "SearchMemories",
    "Shutdown",
    "StartChildren",
    "StoreMemory",
    "WriteRequest",
]


@attrs.frozen(eq=False)
class Request:
    """Base of every message that expects an answer on ``reply``."""

    reply: pykka.Future[Any] = attrs.field(repr=False)


# -- StoreActor ---------------------------------------------------------------


@attrs.frozen(eq=False)
class WriteRequest(Request):
    """Base of the writes the StoreActor group-commits."""


@attrs.frozen(eq=False)
class StoreMemory(WriteRequest):
    """Caller → StoreActor: store validated, normalised content.

    Answered with a :class:`~actors.model.StoreReceipt` only after the
    transaction holding the memory and its outbox row has committed. Content
    already stored in the namespace answers its existing id (``duplicate``),
    with the new tags merged in.
    """

    content: str
    content_hash: str
    namespace: str
    tags: tuple[str, ...]
    metadata_json: str


@attrs.frozen(eq=False)
class ForgetMemory(WriteRequest):
    """Caller → StoreActor: tombstone a memory (content erased, id kept so it can sync).

    Answered with a :class:`~actors.model.ForgetResult` after commit, or
    :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str


@attrs.frozen
class Flush:
    """StoreActor → itself: commit the pending batch in one transaction.

    Told once per batch, so every write already in the mailbox joins the batch
    before the flush runs. ``attempt`` counts retries after ``SQLITE_BUSY``;
    a retry is a timer message on the runtime clock, never a sleep.
    """

    attempt: int = 0


@attrs.frozen(eq=False)
class GetMemory(Request):
    """Caller → StoreActor: one memory by id → :class:`~actors.model.Memory`.

    Pending writes are flushed first, so a caller reads its acknowledged writes.
    Forgotten or unknown ids answer :class:`~actors.errors.MemoryNotFound`.
    """

    memory_id: str


@attrs.frozen(eq=False)
class SearchMemories(Request):
    """Caller → StoreActor: local keyword search (FTS5, BM25) → tuple of RecallHit."""

    query: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int


@attrs.frozen(eq=False)
class ListMemories(Request):
    """Caller → StoreActor: most recent first → :class:`~actors.model.MemoryPage`."""

    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    before: str | None


@attrs.frozen(eq=False)
class CountMemories(Request):
    """Caller → StoreActor: counts and diagnostics → :class:`~actors.model.CountResult`."""

    namespace: str | None
    tags: tuple[str, ...]


@attrs.frozen(eq=False)
class Ping(Request):
    """Supervisor or caller → any actor: answered with the actor's state name once ready."""


# -- MigrationActor -----------------------------------------------------------


@attrs.frozen(eq=False)
class Migrate(Request):
    """MemorySystem → MigrationActor: bring the file to the code's schema version.

    Answered with a :class:`~actors.migrations.MigrationReport`, or
    :class:`~actors.errors.SchemaTooNew`, :class:`~actors.errors.NotADatabase`,
    :class:`~actors.errors.MigrationFailed`; in each error case the file is
    left as it was.
    """


# -- Supervision --------------------------------------------------------------


@attrs.frozen(eq=False)
class ChildReady:
    """Child → Supervisor: ``on_start`` finished; the child serves requests now."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)


@attrs.frozen(eq=False)
class ChildFailed:
    """Child → Supervisor: the child died of an exception (in ``on_start`` or a handler)."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)
    reason: str
    error: BaseException | None = None


@attrs.frozen(eq=False)
class ChildStopped:
    """Child → Supervisor: the child stopped in an orderly way (by whoever stopped it)."""

    name: str
    ref: pykka.ActorRef[Any] = attrs.field(repr=False)


@attrs.frozen(eq=False)
class StartChildren(Request):
    """MemorySystem → Supervisor: spawn every child in order.

    Answered with ``None`` once each child reported :class:`ChildReady`, or
    with the first child's start error (the others are then stopped).
    """


@attrs.frozen(eq=False)
class Shutdown(Request):
    """MemorySystem → Supervisor: stop restarting children; answered with ``None``.

    The MemorySystem then stops the children itself (it may block; an actor may not).
    """


@attrs.frozen(eq=False)
class RestartChild:
    """Supervisor → itself (a timer): start a fresh instance of the named child."""

    name: str
