"""The EmbeddingActor: local semantic recall, no hub needed, when the model is installed.

It owns the embedder (all-MiniLM-L6-v2 run with NumPy, :mod:`actors.embedders`)
and the in-memory exact vector index (:mod:`actors.vectors`) of the local
file's memories. Two jobs, one thread:

- **The backlog, in the background.** A store is acknowledged at commit, as
  ever: nothing on the store path waits for a vector. This actor asks the
  StoreActor (the connection's one owner) for a page of live memories that
  have no vector of the current model (:class:`ReadEmbedBacklog`), embeds
  them, and has the store write the vectors (:class:`WriteVectors`), one
  page of ``batch`` memories at a time. The backlog is the database itself,
  never a queue in memory: it is bounded by nothing but the file, it
  resumes after a crash or a restart exactly where the committed vectors
  end, and a model change (another name) makes every memory backlog again,
  re-embedded in the background while recall keeps answering. A vector is
  written only if its memory still holds the text it is of, and triggers
  drop a memory's vector in the transaction that forgets or changes it
  (schema 6), so no stale vector survives a forget, a keyed replace or a
  change applied by sync.
- **The query.** Recall's :class:`SearchMemories` comes here first when
  semantic recall is on: the query is embedded, the index searched, and the
  request is forwarded to the StoreActor with the candidates, where the
  keyword search runs and :func:`actors.ranking.fuse_local` fuses both. The
  vector search (a matrix product, ~25 ms at 100k memories) never runs on
  the store's thread. A query waits at most for the batch being embedded
  (``batch`` memories: tens of milliseconds).

When it looks: at start a full pass; after a write (``EmbedNudge``, from the
facade) a pass over the rows above the highest it has seen, shortly after,
coalesced; a full pass every ``full_pass_interval`` seconds after a nudge
(a keyed replace keeps its row) and every ``idle_full_pass`` seconds anyway
(sync and other processes write without nudging this one).

Runs on its own thread when threaded (the supervisor's child ``embedding``).
It holds no reply future: a query is forwarded at once (or failed with
``Unavailable`` when the store is down), so stop and failure have nothing to
settle. The model is loaded in :meth:`setup` (~0.4 s); if it cannot load,
the actor stays up in state ``failed`` and forwards queries without
candidates: recall is keyword-only and ``status`` says why.

NumPy and the model's packages are imported here lazily, only when the
actor starts (the client imports nothing of them otherwise).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from actors._base import DEFERRED, ReplyingActor
from actors.errors import EmbedderError, Unavailable
from actors.messages import (
    Answer,
    EmbeddingStatus,
    EmbedNudge,
    ReadEmbedBacklog,
    ReadVectors,
    SearchMemories,
    WriteVectors,
)
from actors.model import EmbeddingReport, SemanticQuery, StoredVector, VectorCandidate
from actors.runtime import Runtime
from actors.supervisor import ChildCell, tell_child

if TYPE_CHECKING:
    from actors.embedders import Embedder
    from actors.vectors import VectorIndex

__all__ = ["EmbedderLoader", "EmbeddingActor", "EmbeddingSettings", "load_minilm"]

logger = logging.getLogger(__name__)

#: Builds the embedder in the actor's thread (the simulation passes a deterministic one).
EmbedderLoader = Callable[[], "Embedder"]

#: The index holds one tenant: this file.
_TENANT: Final = "local"


def load_minilm() -> Embedder:
    """all-MiniLM-L6-v2 from its package (NumPy backend when installed)."""
    if "numpy" not in sys.modules:
        # A background job on the user's machine: one BLAS thread. OpenBLAS's
        # own pool spun on a loaded 2-core host: 16 texts took 17.6 s with it,
        # 0.7 s without (docs/performance.md, "Local semantic recall").
        for knob in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(knob, "1")
    from actors.embedders import MiniLMEmbedder

    return MiniLMEmbedder()


@attrs.frozen
class EmbeddingSettings:
    """How the EmbeddingActor paces its work; every field has a working default."""

    #: Memories per embedding call and per vector transaction. A query waits at most
    #: one batch: 8 MiniLM embeddings take ~0.1 s on an idle core of this machine
    #: (0.5 s with the host loaded 4x).
    batch: int = 8
    #: Vectors per page when the index is loaded at start.
    page: int = 2000
    #: After a nudge, how long to wait for more writes before looking (coalesces bursts).
    nudge_delay: float = 0.05
    #: A full pass this long after a nudge (a keyed replace keeps its row id).
    full_pass_interval: float = 5.0
    #: A full pass this often regardless (sync and other processes do not nudge).
    idle_full_pass: float = 60.0
    #: After a failed step (the store restarting, busy, an embedding error).
    retry_delay: float = 1.0
    #: Vector candidates asked for per recall, as a multiple of its limit (some
    #: may be stale or outside the filters the store checks).
    candidates_factor: int = 2


class _Pass:
    """EmbeddingActor → itself: look for memories without a vector (``full``: from row 0)."""

    def __init__(self, *, full: bool) -> None:
        self.full = full

    def __repr__(self) -> str:
        return f"_Pass(full={self.full})"


class _FullPassTick:
    """Timer → EmbeddingActor: time for a full pass (if a nudge came, or every idle period)."""


class _Resume:
    """Timer → EmbeddingActor: retry the step that failed."""


class EmbeddingActor(ReplyingActor):
    """Embeds the local file's memories in the background and answers vector searches.

    See the module docstring. States: ``loading`` (reading stored vectors),
    ``catching up`` (a pass is embedding), ``idle``, ``failed`` (no model).
    """

    def __init__(
        self,
        runtime: Runtime,
        store: ChildCell,
        settings: EmbeddingSettings,
        *,
        loader: EmbedderLoader = load_minilm,
        name: str = "embedding",
        supervisor: Any = None,
    ) -> None:
        super().__init__(runtime, name=name, supervisor=supervisor)
        self.store = store
        self.settings = settings
        self.loader = loader
        self.embedder: Embedder | None = None
        self.index: VectorIndex | None = None
        #: The text (content hash) each indexed vector is of, by memory row.
        self.hashes: dict[int, str] = {}
        self.phase = "loading"
        self.reason = ""
        self.embedded = 0
        #: Where the running pass has got to (row id), and whether it started at row 0.
        self._cursor = 0
        self._full = False
        self._running = False
        #: The highest row a pass has seen: a quick pass starts above it.
        self._high_water = 0
        #: A nudge came: a quick pass is scheduled; a full pass is due.
        self._quick_scheduled = False
        self._dirty = False
        self._since_full = 0.0
        #: The step to repeat on _Resume (the failed request), if any.
        self._failed_step: Callable[[], None] | None = None

    def __repr__(self) -> str:
        size = 0 if self.index is None else len(self.index)
        return (
            f"<EmbeddingActor {self.phase} indexed={size} embedded={self.embedded} "
            f"cursor={self._cursor} state={self.state}>"
        )

    # -- lifecycle ------------------------------------------------------------

    def setup(self) -> None:
        try:
            embedder = self.loader()
            from actors.vectors import VectorIndex

            self.index = VectorIndex(embedder.name, embedder.dimension)
        except (EmbedderError, ImportError, OSError, ValueError) as exc:
            self.phase = "failed"
            self.reason = f"the model did not load: {exc}"
            logger.warning("local semantic recall is off: %s", self.reason)
            return
        self.embedder = embedder
        self._read_vectors(0)
        self._later(self.settings.full_pass_interval, _FullPassTick())

    def teardown(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None

    # -- dispatch -------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case SearchMemories():
                return self._search(message)
            case Answer(request=ReadVectors() as request):
                self._on_vectors(request, message)
            case Answer(request=ReadEmbedBacklog()):
                self._on_backlog(message)
            case Answer(request=WriteVectors() as request):
                self._on_written(request, message)
            case EmbedNudge():
                self._dirty = True
                if not self._quick_scheduled and self.phase != "failed":
                    self._quick_scheduled = True
                    self._later(self.settings.nudge_delay, _Pass(full=False))
            case _Pass(full=full):
                if not full:
                    self._quick_scheduled = False
                self._start_pass(full=full)
            case _FullPassTick():
                self._since_full += self.settings.full_pass_interval
                if self._dirty or self._since_full >= self.settings.idle_full_pass:
                    self._start_pass(full=True)
                self._later(self.settings.full_pass_interval, _FullPassTick())
            case _Resume():
                step, self._failed_step = self._failed_step, None
                if step is not None:
                    step()
            case EmbeddingStatus():
                return self.report()
            case _:
                return super().handle(message)
        return None

    def report(self) -> EmbeddingReport:
        embedder = self.embedder
        return EmbeddingReport(
            state=self.phase,
            model="" if embedder is None else embedder.name,
            dimension=0 if embedder is None else embedder.dimension,
            indexed=0 if self.index is None else len(self.index),
            embedded=self.embedded,
            reason=self.reason,
        )

    # -- the query --------------------------------------------------------------

    def _search(self, message: SearchMemories) -> Any:
        semantic = None
        if self.embedder is not None and self.index is not None:
            try:
                semantic = self._candidates(message, self.embedder, self.index)
            except EmbedderError as exc:
                logger.warning("%r: the query was not embedded (%s); keyword only", self, exc)
        if not self._to_store(attrs.evolve(message, semantic=semantic)):
            raise Unavailable("the store actor is restarting; retry shortly")
        return DEFERRED  # the store answers the caller's future

    def _candidates(
        self, message: SearchMemories, embedder: Embedder, index: VectorIndex
    ) -> SemanticQuery:
        if len(index) == 0:
            return SemanticQuery(embedder.name, ())
        query = embedder.embed([message.query])[0]
        found = index.search(
            _TENANT,
            query,
            message.limit * self.settings.candidates_factor,
            namespace=message.namespace,
            tags=message.tags,
            namespace_prefix=message.namespace_prefix,
        )
        return SemanticQuery(
            embedder.name,
            tuple(VectorCandidate(row, self.hashes[row], score) for row, score in found),
        )

    # -- loading the stored vectors ---------------------------------------------

    def _read_vectors(self, after: int) -> None:
        model = self._model()
        self._step(lambda: ReadVectors(self.actor_ref, model, after, self.settings.page))

    def _on_vectors(self, request: ReadVectors, answer: Answer) -> None:
        if answer.error is not None:
            self._failed(answer.error, lambda: self._read_vectors(request.after))
            return
        page: tuple[StoredVector, ...] = answer.value
        self._index(page)
        if len(page) == request.limit:
            self._read_vectors(page[-1].rowid)
            return
        logger.info("%r: loaded the stored vectors", self)
        self.phase = "idle"
        self._start_pass(full=True)

    def _index(self, vectors: tuple[StoredVector, ...]) -> None:
        from actors.vectors import from_blob

        index = self.index
        assert index is not None
        for found in vectors:
            vector = from_blob(found.vector, index.dimension)
            index.put(_TENANT, found.rowid, found.namespace, found.tags, vector)
            self.hashes[found.rowid] = found.content_hash

    # -- the backlog --------------------------------------------------------------

    def _start_pass(self, *, full: bool) -> None:
        if self.phase in ("loading", "failed") or self._running:
            return  # a running pass reaches new rows; a full one is due again if dirty
        self._running = True
        self.phase = "catching up"
        self._full = full
        if full:
            self._dirty = False
            self._since_full = 0.0
        self._cursor = 0 if full else self._high_water
        self._read_backlog()

    def _read_backlog(self) -> None:
        model, after = self._model(), self._cursor
        self._step(lambda: ReadEmbedBacklog(self.actor_ref, model, after, self.settings.batch))

    def _on_backlog(self, answer: Answer) -> None:
        if answer.error is not None:
            self._failed(answer.error, self._read_backlog)
            return
        items = answer.value
        if not items:
            self._running = False
            self._high_water = max(self._high_water, self._cursor)
            self.phase = "idle"
            return
        embedder = self.embedder
        assert embedder is not None
        try:
            matrix = embedder.embed([item.text for item in items])
        except EmbedderError as exc:
            self._failed(exc, self._read_backlog)
            return
        from actors.vectors import to_blob

        vectors = tuple(
            StoredVector(item.rowid, item.content_hash, item.namespace, item.tags, to_blob(row))
            for item, row in zip(items, matrix, strict=True)
        )
        self._write(vectors)

    def _write(self, vectors: tuple[StoredVector, ...]) -> None:
        embedder = self.embedder
        assert embedder is not None
        name, size = embedder.name, embedder.dimension
        self._step(lambda: WriteVectors(self.actor_ref, name, size, vectors))

    def _on_written(self, request: WriteVectors, answer: Answer) -> None:
        if answer.error is not None:
            self._failed(answer.error, lambda: self._write(request.vectors))
            return
        written: tuple[StoredVector, ...] = answer.value
        self._index(written)
        self.embedded += len(written)
        self._cursor = request.vectors[-1].rowid
        self._high_water = max(self._high_water, self._cursor)
        self._read_backlog()

    # -- plumbing -------------------------------------------------------------------

    def _model(self) -> str:
        assert self.embedder is not None
        return self.embedder.name

    def _step(self, make: Callable[[], Any]) -> None:
        """Send one request to the store; if it is down, try again after ``retry_delay``."""
        if not self._to_store(make()):
            self._failed(Unavailable("the store actor is not running"), lambda: self._step(make))

    def _failed(self, exc: BaseException, retry: Callable[[], None]) -> None:
        logger.warning("%r: %s; retrying in %gs", self, exc, self.settings.retry_delay)
        self._failed_step = retry
        self._later(self.settings.retry_delay, _Resume())

    def _later(self, delay: float, message: Any) -> None:
        self.runtime.call_later(delay, self.actor_ref, message)

    def _to_store(self, message: Any) -> bool:
        return tell_child(self.store, message)
