"""memory-actors: persistent memory for AI agents, on the actor model.

The public facade is :class:`MemorySystem` (blocking, thread-safe) and
:class:`AsyncMemorySystem` (the same verbs for asyncio); errors live in :mod:`actors.errors`;
the records it returns live in :mod:`actors.model`. The testing tools are
imported explicitly and are not loaded by ``import actors``.
"""

from __future__ import annotations

import logging

from actors.aio import AsyncMemorySystem
from actors.errors import (
    AskTimeout,
    InvalidMemory,
    MemoryActorsError,
    MemoryNotFound,
    MigrationFailed,
    NotADatabase,
    Overloaded,
    SchemaError,
    SchemaTooNew,
    StorageBusy,
    StorageError,
    SystemClosed,
    Unavailable,
)
from actors.model import (
    CountResult,
    ForgetResult,
    Memory,
    MemoryPage,
    RecallHit,
    RecallResult,
    StoreReceipt,
)
from actors.system import Config, MemorySystem, default_db_path

__version__ = "0.1.0"

__all__ = [
    "AskTimeout",
    "AsyncMemorySystem",
    "Config",
    "CountResult",
    "ForgetResult",
    "InvalidMemory",
    "Memory",
    "MemoryActorsError",
    "MemoryNotFound",
    "MemoryPage",
    "MemorySystem",
    "MigrationFailed",
    "NotADatabase",
    "Overloaded",
    "RecallHit",
    "RecallResult",
    "SchemaError",
    "SchemaTooNew",
    "StorageBusy",
    "StorageError",
    "StoreReceipt",
    "SystemClosed",
    "Unavailable",
    "__version__",
    "default_db_path",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
