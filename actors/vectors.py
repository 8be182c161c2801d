"""An exact vector index: per tenant, a dot-product search over a NumPy matrix.

Shared: the hub holds one tenant per API key; the client's
:class:`~actors.embedding.EmbeddingActor` one tenant for its local file.

Chosen by measurement (``docs/performance.md``, "Semantic recall (hub)"; the
client's figures are under "Local semantic recall"): at
100,000 vectors of 384 dimensions an exact search takes ~25 ms (one
memory-bound matrix-vector product, 147 MiB), updates cost microseconds
(append into a doubling matrix, remove by moving the last row into the hole),
and namespace and tag filters are exact masks. sqlite-vec does not load
here (this Python's ``sqlite3`` cannot load extensions) and was 2.4× slower
through another driver; HNSW (hnswlib) answers in ~0.2 ms but needs a C++
build at install, 80 s to build 100,000 vectors, and tombstones for deletes.
Exact search stays the right trade until a tenant holds about a million
memories (~250 ms a query).

:class:`VectorIndex` is plain data logic with a single owner (the
:class:`~actors.hub.semantic.VectorIndexActor`, a
:class:`~actors.hub.direct.DirectBackend`, or the client's
:class:`~actors.embedding.EmbeddingActor`); not thread-safe. Keys are
memory row ids (the hub's are unique across tenants).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

from actors.model import matches_namespace_prefix

__all__ = ["Vector", "VectorIndex", "from_blob", "to_blob"]

Vector: TypeAlias = npt.NDArray[np.float32]

_INITIAL_CAPACITY: Final = 256
#: Stored vectors are float32, little-endian, whatever the machine.
_DTYPE: Final = np.dtype("<f4")


def to_blob(vector: Vector) -> bytes:
    """A vector as the hub database stores it (float32, little-endian)."""
    return np.ascontiguousarray(vector, dtype=_DTYPE).tobytes()


def from_blob(blob: bytes, dimension: int) -> Vector:
    """The vector stored as ``blob``; ValueError if its size is not ``dimension`` floats."""
    if len(blob) != 4 * dimension:
        raise ValueError(f"a stored vector has {len(blob)} bytes, expected {4 * dimension}")
    return np.frombuffer(blob, dtype=_DTYPE).astype(np.float32)


class _Tenant:
    """One tenant's rows: ``matrix[:count]`` and, per row, its key, namespace code and tags."""

    __slots__ = ("codes", "count", "keys", "matrix", "namespaces", "position", "tags")

    def __init__(self, dimension: int) -> None:
        self.matrix: Vector = np.zeros((_INITIAL_CAPACITY, dimension), dtype=np.float32)
        self.keys: npt.NDArray[np.int64] = np.zeros(_INITIAL_CAPACITY, dtype=np.int64)
        #: Namespace of each row as a small integer, so a namespace filter is one array compare.
        self.codes: npt.NDArray[np.int32] = np.zeros(_INITIAL_CAPACITY, dtype=np.int32)
        self.namespaces: dict[str, int] = {}
        self.tags: list[frozenset[str]] = []
        self.position: dict[int, int] = {}
        self.count = 0

    def _grow(self) -> None:
        grown = 2 * len(self.keys)
        matrix = np.zeros((grown, self.matrix.shape[1]), dtype=np.float32)
        matrix[: self.count] = self.matrix[: self.count]
        keys = np.zeros(grown, dtype=np.int64)
        keys[: self.count] = self.keys[: self.count]
        codes = np.zeros(grown, dtype=np.int32)
        codes[: self.count] = self.codes[: self.count]
        self.matrix, self.keys, self.codes = matrix, keys, codes

    def put(self, key: int, namespace: str, tags: frozenset[str], vector: Vector) -> None:
        code = self.namespaces.setdefault(namespace, len(self.namespaces))
        row = self.position.get(key)
        if row is None:
            if self.count == len(self.keys):
                self._grow()
            row = self.count
            self.count += 1
            self.position[key] = row
            self.keys[row] = key
            self.tags.append(tags)
        else:
            self.tags[row] = tags
        self.codes[row] = code
        self.matrix[row] = vector

    def drop(self, key: int) -> bool:
        row = self.position.pop(key, None)
        if row is None:
            return False
        last = self.count - 1
        if row != last:  # move the last row into the hole: O(1), order does not matter
            moved = int(self.keys[last])
            self.matrix[row] = self.matrix[last]
            self.keys[row] = moved
            self.codes[row] = self.codes[last]
            self.tags[row] = self.tags[last]
            self.position[moved] = row
        self.tags.pop()
        self.count = last
        return True


class VectorIndex:
    """Exact cosine search per tenant over unit vectors of one model. Single owner.

    ``model`` and ``dimension`` name the vector space the index holds; a
    vector of another size is refused (ValueError).
    """

    def __init__(self, model: str, dimension: int) -> None:
        self.model = model
        self.dimension = dimension
        self._tenants: dict[str, _Tenant] = {}

    def __repr__(self) -> str:
        return f"<VectorIndex {self.model} vectors={len(self)} tenants={len(self._tenants)}>"

    def __len__(self) -> int:
        return sum(t.count for t in self._tenants.values())

    def count(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return 0 if state is None else state.count

    def put(
        self, tenant: str, key: int, namespace: str, tags: Iterable[str], vector: Vector
    ) -> None:
        """Insert or replace the vector of memory ``key`` (and its namespace and tags)."""
        if vector.shape != (self.dimension,):
            raise ValueError(
                f"vector of shape {vector.shape} in an index of dimension {self.dimension}"
            )
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant(self.dimension)
        state.put(key, namespace, frozenset(tags), vector)

    def remove(self, tenant: str, key: int) -> bool:
        """Forget memory ``key``; False if the index did not hold it."""
        state = self._tenants.get(tenant)
        if state is None or not state.drop(key):
            return False
        if state.count == 0:
            del self._tenants[tenant]
        return True

    def search(
        self,
        tenant: str,
        query: Vector,
        k: int,
        *,
        namespace: str | None = None,
        tags: Iterable[str] = (),
        namespace_prefix: str | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best (key, cosine similarity) of the tenant, best first.

        Only rows in ``namespace`` (if given), in or below ``namespace_prefix``
        (if given), carrying every tag of ``tags`` are candidates. Equal
        scores keep no particular order.
        """
        state = self._tenants.get(tenant)
        if state is None or k < 1:
            return []
        count = state.count
        scores = state.matrix[:count] @ np.asarray(query, dtype=np.float32)
        if namespace is not None or namespace_prefix is not None:
            # The namespaces (few) are filtered by name, the rows by their codes.
            codes = [
                code
                for name, code in state.namespaces.items()
                if (namespace is None or name == namespace)
                and (namespace_prefix is None or matches_namespace_prefix(name, namespace_prefix))
            ]
            if not codes:
                return []
            inside = np.isin(state.codes[:count], codes)
            scores = np.where(inside, scores, -np.inf)
            candidates = int(inside.sum())
        else:
            candidates = count
        wanted = frozenset(tags)
        if wanted:
            # Tags are rarer filters: walk the rows best first until k of them qualify.
            order = np.argsort(-scores[:count], kind="stable")[:candidates]
            found: list[tuple[int, float]] = []
            for row in order:
                if wanted <= state.tags[row]:
                    found.append((int(state.keys[row]), float(scores[row])))
                    if len(found) == k:
                        break
            return found
        k = min(k, candidates)
        if k <= 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k] if k < count else np.arange(count)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(state.keys[row]), float(scores[row])) for row in best]
