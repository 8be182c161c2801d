"""Key administration on a hub database, for the CLI: add, list and revoke API keys.

``db`` is a SQLite file's path or a ``postgresql://`` URL
(:mod:`actors.hub.engines`). Each call migrates the database if needed,
opens its engine, does one thing through the
:class:`~actors.hub.engine.HubEngine` interface and closes it. The engine's
locking (SQLite's file lock, PostgreSQL's transactions) makes this safe
while hubs serve the same database; a revoked key is refused from the next
request on, because the hub reads the key row on every request (no cache).

Not in :mod:`actors.hub.keys`: that module holds the pure key helpers that
the engine itself imports, and this one opens the engine; together they
would import each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from actors.hub.engine import HubEngine
from actors.hub.engines import open_engine, prepare_target
from actors.hub.keys import KeyInfo, hash_key, new_key, validate_tenant
from actors.runtime import ThreadedRuntime

__all__ = ["add_key", "list_keys", "revoke_key"]


def add_key(
    db: str | os.PathLike[str], tenant: str, *, now: Callable[[], float] | None = None
) -> str:
    """Mint an API key for ``tenant`` in the hub file ``db`` (created if missing).

    Returns the plaintext key: it is shown once and only its hash is stored.
    Raises ``ValueError`` for an invalid tenant name.
    """
    tenant = validate_tenant(tenant)
    clock = now or ThreadedRuntime().wall_time
    key_id, plaintext = new_key()
    with _engine(db, clock) as engine:
        engine.add_key(key_id, tenant, hash_key(plaintext), clock())
    return plaintext


def list_keys(db: str | os.PathLike[str]) -> list[KeyInfo]:
    """Every key of the hub file ``db``, oldest first (ids and tenants; never the keys)."""
    with _engine(db, ThreadedRuntime().wall_time) as engine:
        return engine.list_keys()


def revoke_key(
    db: str | os.PathLike[str], key_id: str, *, now: Callable[[], float] | None = None
) -> KeyInfo | None:
    """Revoke the key ``key_id`` (idempotent); None if the hub file has no such key.

    A running hub refuses the key (403) from its next request on.
    """
    clock = now or ThreadedRuntime().wall_time
    with _engine(db, clock) as engine:
        return engine.revoke_key(key_id, clock())


@contextmanager
def _engine(db: str | os.PathLike[str], now: Callable[[], float]) -> Iterator[HubEngine]:
    prepare_target(db, now=now)
    # new_id is called only if no hub has opened this database yet: then the CLI mints its id.
    engine = open_engine(db, new_id=ThreadedRuntime().new_id)
    try:
        yield engine
    finally:
        engine.close()
