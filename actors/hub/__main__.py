"""``python -m actors.hub``: the hub command (``serve``, ``keys add|list|revoke``)."""

from __future__ import annotations

from actors.hub.cli import hub

if __name__ == "__main__":
    hub(prog_name="python -m actors.hub")
