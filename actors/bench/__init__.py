"""The benchmarks: harnesses that time the library, never loaded by ``import actors``.

- :mod:`actors.bench.command`: ``memory-actors bench``, which runs
  :mod:`actors.bench.store` (the store's write path against the lock-based
  design it replaces) and :mod:`actors.bench.mcp` (``memory_store`` over MCP
  stdio against a no-op server);
- :mod:`actors.bench.sync`: ``memory-actors bench-sync`` (or
  ``python -m actors.bench.sync``), push, full resync and store latency
  against a real hub (needs ``memory-actors[hub]``);
- :mod:`actors.bench.noop_server`: the no-op MCP server the stdio figures are
  compared with.

The command line loads this package only when one of these commands runs, so
that a problem here can never break ``serve``. The figures and how to read
them are in ``docs/performance.md``.
"""

from __future__ import annotations

from actors.bench.command import bench

__all__ = ["bench"]
