"""The SQLite fault site of a simulated run: real connections that fail as the plan says.

BUSY at ``BEGIN IMMEDIATE``, an I/O error inside a write transaction, and a
``COMMIT`` that reaches disk and then raises (the caller cannot know the
outcome), each at the :class:`~actors.sim.faults.FaultPlan`'s rate, drawn
from the runtime's seeded ``faults.sqlite`` stream.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.sim.runtime import SimRuntime

__all__ = ["sqlite_connector"]


class _SimConnection(sqlite3.Connection):
    """A real SQLite connection whose statements may fail as the fault plan says."""

    sim: SimRuntime

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        plan = self.sim.faults
        rng = self.sim.rng("faults.sqlite")
        if sql == "BEGIN IMMEDIATE" and plan.sqlite_busy and rng.random() < plan.sqlite_busy:
            self.sim.record_fault("sqlite_busy")
            raise sqlite3.OperationalError("database is locked")
        if (
            self.in_transaction
            and sql.startswith("INSERT")
            and plan.sqlite_io_error
            and rng.random() < plan.sqlite_io_error
        ):
            self.sim.record_fault("sqlite_io_error")
            raise sqlite3.OperationalError("disk I/O error")
        if (
            sql == "COMMIT"
            and plan.sqlite_ambiguous_commit
            and rng.random() < plan.sqlite_ambiguous_commit
        ):
            super().execute(sql, parameters)
            self.sim.record_fault("sqlite_ambiguous_commit")
            raise sqlite3.OperationalError("disk I/O error (after the commit reached disk)")
        return super().execute(sql, parameters)


def sqlite_connector(sim: SimRuntime) -> Any:
    """A connection factory for the StoreActor that injects the plan's SQLite faults.

    No busy timeout: in virtual time nothing else runs while SQLite would
    wait, so BUSY comes back at once and the store's backoff (timer
    messages) is what gets exercised.
    """
    connection_class = type("SimConnection", (_SimConnection,), {"sim": sim})

    def connect(path: str) -> sqlite3.Connection:
        conn: sqlite3.Connection = sqlite3.connect(
            path, timeout=0, isolation_level=None, factory=connection_class
        )
        # One process, no power loss: an in-memory rollback journal keeps SQLite's
        # transactional behaviour at a fraction of WAL's cost (WAL and real
        # locking are covered by the multi-process tests).
        sqlite3.Connection.execute(conn, "PRAGMA journal_mode = MEMORY")
        return conn

    return connect
