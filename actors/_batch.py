"""Internal: group commit, the one implementation the client's and the hub's stores share.

An actor that owns a database keeps a :class:`GroupCommit`. A write request
joins the pending batch; the first one of a batch makes the actor tell
itself a flush message, so every write already in the mailbox arrives
before it and one transaction commits them all. Only then is each caller
answered: an acknowledgement always means committed.

When a transaction fails:

- a database error that says "locked" (``is_busy``) fails the whole batch
  with the engine's busy error, or, when the caller asks, *holds* it: the
  batch stays pending, ahead of later writes, until the caller's retry
  (a timer message on the runtime clock, never a sleep) flushes again;
- a database error that says the outcome is unknown (``outcome_unknown``:
  the COMMIT failed and the file cannot say whether it stands) fails the
  whole batch with that error, and writes nothing again: a repeat could
  apply a write twice;
- any other database error retries the batch one write at a time, so only
  the write that fails is answered with an error and the others commit;
- an error that is not the database's (a bug) fails every write of the
  batch and propagates, so the actor dies of it and its supervisor restarts
  it, with no caller left waiting.

A write whose caller cancelled it (an asyncio caller: see
:class:`~actors.runtime.NotifyingFuture`) is dropped when its batch is
flushed, before the transaction begins: it is never written. A write whose
transaction has begun is committed; a cancellation that comes later loses
only the receipt.

Everything runs on the owning actor's thread; nothing here blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from actors._base import settle, settle_error
from actors.errors import StorageError
from actors.messages import Request
from actors.runtime import is_cancelled, notifications_held

__all__ = ["GroupCommit"]


W = TypeVar("W", bound=Request)


class GroupCommit(Generic[W]):
    """The pending batch of one database owner, and how it is committed and answered.

    ``commit(batch)`` runs one transaction (rolled back on error) and returns
    one result per write, in order: a value to answer with, or an exception
    to answer with (a write refused on its own, such as an unknown id).
    ``schedule()`` tells the owner its flush message. ``translate(exc)``
    turns a database error into the error a caller gets; ``is_busy(exc)``
    says whether it means "another connection holds the lock";
    ``database_errors`` are the exception types that are the database's
    answer (anything else is a bug); ``outcome_unknown(exc)`` whether the
    batch may have committed after all (then it is not retried).
    """

    def __init__(
        self,
        commit: Callable[[list[W]], Sequence[object]],
        *,
        schedule: Callable[[], None],
        translate: Callable[[Exception], BaseException],
        is_busy: Callable[[Exception], bool],
        database_errors: tuple[type[Exception], ...],
        outcome_unknown: Callable[[Exception], bool] = lambda exc: False,
        enabled: bool = True,
    ) -> None:
        self._commit = commit
        self._schedule = schedule
        self._translate = translate
        self._is_busy = is_busy
        self._database_errors = database_errors
        self._outcome_unknown = outcome_unknown
        #: False: every write commits on its own, at once (the benchmark's baseline).
        self.enabled = enabled
        self.pending: list[W] = []
        #: A flush message is on its way: later writes join its batch.
        self.scheduled = False
        #: A busy batch waits for the owner's retry; writes join it meanwhile.
        self.held = False
        #: Transactions committed, for ``repr``.
        self.batches = 0
        #: Writes dropped at a flush because their callers had cancelled them.
        self.dropped = 0

    def __repr__(self) -> str:
        return (
            f"<GroupCommit pending={len(self.pending)} batches={self.batches} "
            f"dropped={self.dropped} held={self.held}>"
        )

    def add(self, write: W, *, hold_if_busy: bool = False) -> bool:
        """Queue ``write``: flush now if disabled, else schedule one flush per batch.

        Returns what :meth:`flush` returns when disabled (True: the busy write
        is held and the caller schedules its retry), else False. An owner that
        retries busy batches on a timer needs that for writes flushed at once too.
        """
        self.pending.append(write)
        if self.held:
            return False  # joins the batch that the owner's busy retry will flush
        if not self.enabled:
            return self.flush(hold_if_busy=hold_if_busy)
        if not self.scheduled:
            self.scheduled = True
            self._schedule()
        return False

    def flush(self, *, hold_if_busy: bool = False) -> bool:
        """Commit the pending batch in one transaction and answer every write in it.

        Returns True when the transaction was refused as busy and
        ``hold_if_busy`` is set: the batch is then held, still pending in
        arrival order, and the caller must schedule the retry that flushes it.
        """
        self.held = False
        batch, self.pending = self._live(self.pending), []
        if not batch:
            return False
        try:
            results = self._commit(batch)
        except self._database_errors as exc:
            if self._is_busy(exc) and hold_if_busy:
                self.pending[:0] = batch  # arrival order: before writes that came since
                self.held = True
                self.scheduled = True
                return True
            if self._is_busy(exc) or self._outcome_unknown(exc) or len(batch) == 1:
                self.fail(batch, self._translate(exc))
            else:
                self._commit_one_by_one(batch)
            return False
        except BaseException as exc:
            # Not the database's answer: the actor dies of it (its supervisor
            # restarts it), but no caller of this batch is left waiting.
            self.fail(batch, StorageError(f"write failed: {exc!r}"))
            raise
        self.batches += 1
        self._answer(batch, results)
        return False

    def fail_pending(self, exc: BaseException) -> None:
        """Answer every pending write with ``exc`` (the owner failed or cannot commit)."""
        pending, self.pending = self.pending, []
        self.held = False
        self.fail(pending, exc)

    @staticmethod
    def fail(batch: Sequence[W], exc: BaseException) -> None:
        for write in batch:
            settle_error(write.reply, exc)

    def _live(self, batch: list[W]) -> list[W]:
        """``batch`` without the writes cancelled by their callers: those never begin."""
        live = [write for write in batch if not is_cancelled(write.reply)]
        self.dropped += len(batch) - len(live)
        return live

    def _commit_one_by_one(self, batch: list[W]) -> None:
        """After a failed batch, find the write that fails: the others still commit."""
        for index, write in enumerate(batch):
            if is_cancelled(write.reply):  # before each transaction, as in flush()
                self.dropped += 1
                continue
            try:
                results = self._commit([write])
            except self._database_errors as exc:
                settle_error(write.reply, self._translate(exc))
                continue
            except BaseException as exc:
                self.fail(batch[index:], StorageError(f"write failed: {exc!r}"))
                raise
            self.batches += 1
            self._answer([write], results)

    @staticmethod
    def _answer(batch: Sequence[W], results: Sequence[object]) -> None:
        # Asyncio callers hear of the batch once it is all answered: one loop wake-up.
        with notifications_held():
            for write, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    settle_error(write.reply, result)
                else:
                    settle(write.reply, result)
