"""The hub's vector index: the shared exact index (:mod:`actors.vectors`), following the feed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from actors.vectors import Vector, from_blob, to_blob
from actors.vectors import VectorIndex as _ExactIndex

if TYPE_CHECKING:
    from actors.hub.search import VectorChange

__all__ = ["Vector", "VectorIndex", "from_blob", "to_blob"]


class VectorIndex(_ExactIndex):
    """The exact index, plus following the hub's vector feed. Single owner (actors.vectors)."""

    def apply(self, changes: Iterable[VectorChange]) -> None:
        """Follow a page of the vector feed: put each memory's current vector, or drop it.

        The one way both owners (the VectorIndexActor, the DirectBackend)
        follow the feed, so the served hub and the simulation index alike.
        """
        for change in changes:
            if change.vector is None:
                self.remove(change.tenant, change.key)
            else:
                vector = from_blob(change.vector, self.dimension)
                self.put(change.tenant, change.key, change.namespace, change.tags, vector)
