"""MemorySystem: the public facade that starts, supervises and stops the actors.

Start order: the MigrationActor brings the file to the current schema and is
stopped (one owner of the file at a time); then the SupervisorActor spawns
the StoreActor and answers once it is ready. Every request from a caller is a
tell carrying a reply future, waited on with a timeout, behind an admission
gate that bounds the requests in flight (Pykka inboxes are unbounded).

A MemorySystem is safe to use from many threads at once: the facade holds no
mutable state of its own beyond what it reads from the supervisor's cells.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from types import TracebackType
from typing import IO, Any, Generic, Literal, ParamSpec, Self, TypeVar, cast

import attrs
import platformdirs
import pykka

from actors._ask import answer_of, ask, lost, overdue, send, stop, wait_alive
from actors._shapes import ShapeError
from actors._sqlite import Connect, Synchronous
from actors.backup import (
    BACKUP_STEP_PAGES,
    BackupReport,
    inspect_copy,
    remove_quietly,
    scratch_path,
)
from actors.embedding import EmbedderLoader, EmbeddingActor, EmbeddingSettings, load_minilm
from actors.errors import (
    AskTimeout,
    InvalidMemory,
    MemoryActorsError,
    Overloaded,
    SchemaTooNew,
    SystemClosed,
    Unavailable,
)
from actors.messages import (
    AppendSessionItems,
    BackupDatabase,
    ClearSession,
    CountMemories,
    EmbeddingStatus,
    EmbedNudge,
    ExportPage,
    ForgetMemory,
    GetMemory,
    ImportMemories,
    ListMemories,
    Migrate,
    PopSessionItem,
    ReadDeadLetters,
    ReadSessionItems,
    RemoteRecall,
    Request,
    RetagMemory,
    RetryDeadLetters,
    SearchMemories,
    Shutdown,
    StartChildren,
    StoreMemory,
    SyncNudge,
    SyncStatus,
)
from actors.migrations import LATEST_VERSION, MigrationActor
from actors.model import (
    MAX_CONTENT_BYTES,
    CountResult,
    EmbeddingReport,
    ForgetResult,
    Memory,
    MemoryPage,
    MigrationReport,
    RecallHit,
    RecallResult,
    StoreReceipt,
    content_hash,
    keyed_memory_id,
    matches_namespace_prefix,
    normalize_content,
    normalize_metadata,
    normalize_namespace,
    normalize_namespace_prefix,
    normalize_new_namespace,
    normalize_tags,
    recall_text,
    validate_id,
    validate_key,
    validate_limit,
    validate_query,
)
from actors.model_package import INSTALL_HINT, minilm_available
from actors.owner_link import Message, OwnerProxy
from actors.owner_protocol import bound_arguments, decode_record
from actors.portable import (
    EXPORT_PAGE,
    IMPORT_BATCH,
    ExportFilters,
    ExportReport,
    ImportCounts,
    ImportReport,
    memory_line,
    run_export,
    run_import,
)
from actors.ranking import merge_hits
from actors.recall import RecallRouter, RecallSettings
from actors.runtime import NO_VALUE, NotifyingFuture, Runtime, ThreadedRuntime
from actors.session_log import (
    SessionItems,
    encode_items,
    validate_items_limit,
    validate_session_id,
)
from actors.sharing import NowOwner, Sharing
from actors.sharing_host import OS_HOST, SharingHost
from actors.store import StoreActor, StoreConfig
from actors.supervisor import ChildCell, ChildSpec, SupervisorActor
from actors.sync import ClientFactory, SyncActor, default_client
from actors.sync_model import DeadLetters, RemoteConfig, SyncReport
from actors.wire import RemoteHit, WireMemory

__all__ = ["DB_ENV_VAR", "SEMANTIC_ENV_VAR", "Config", "MemorySystem", "default_db_path"]

logger = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")

#: Environment variable that names the database file.
DB_ENV_VAR = "MEMORY_ACTORS_DB"

#: Environment variable that turns local semantic recall ``off`` (or ``on``) where
#: ``Config.semantic`` is left at None; unset (or ``auto``): on when the model is installed.
SEMANTIC_ENV_VAR = "MEMORY_ACTORS_SEMANTIC"


def default_db_path() -> str:
    """``$MEMORY_ACTORS_DB``, else ``memory.db`` in the platform's user data dir."""
    from_env = os.environ.get(DB_ENV_VAR)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    return os.path.join(platformdirs.user_data_dir("memory-actors", appauthor=False), "memory.db")


#: True while a follower runs a verb only to validate its arguments (per thread
#: and per task, so concurrent callers never see each other's flag).
_dry_run: ContextVar[bool] = ContextVar("memory_actors_dry_run", default=False)

#: How much longer than the call's own budget a follower waits for the owner's
#: answer: the owner answers a timeout itself (AskTimeout), which says more.
_TRANSIT_GRACE = 2.0


class _Validated(Exception):
    """Internal: a verb run to validate its arguments got as far as asking an actor."""


#: True while the owner runs a follower's verb only to build its one request (see
#: ``MemorySystem._begin``): per thread and per task, as ``_dry_run``.
_capture: ContextVar[bool] = ContextVar("memory_actors_capture", default=False)


@attrs.frozen
class _Captured:
    """Internal: what a one-request verb returns while captured: its request, unsent.

    Returned through the verb's ``return self._run(...)``, not raised: raising
    it (with its traceback through the verb) cost the owner's reader ~5 µs a call.
    """

    call: _Call[Any]


#: The verbs whose body is ``return self._run(self._prepare_...(...))``: one request to
#: one actor, whose answer is the verb's. The owner answers a follower's call of one of
#: these from the actor's reply, with no thread waiting on it (``_begin``). Not the
#: session log's reads and the export's pages: their answers run to MiBs, and the
#: reply is encoded on the answering actor's thread.
_ONE_REQUEST = frozenset(
    {
        "store",
        "get",
        "forget",
        "set_tags",
        "list",
        "dead_letters",
        "retry_dead_letters",
        "session_add",
        "session_pop",
        "session_clear",
    }
)


def _shared(method: Callable[P, R]) -> Callable[P, R]:
    """A verb that a follower sends to the file's owner (see ``_follower_call``)."""
    verb = method.__name__

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        system = args[0]
        assert isinstance(system, MemorySystem)
        if system._following() and not _dry_run.get(False):
            arguments = bound_arguments(method, args, kwargs)
            arguments.pop("self")
            try:
                answer: R = system._follower_call(verb, arguments)
                return answer
            except NowOwner:
                pass  # this process owns the file now: its own actors answer
        return method(*args, **kwargs)

    return call


#: Verbs whose validation reads only their arguments (not this process's config or
#: actors) and whose repetition is safe (``SAFE_TO_REPEAT``): a follower may leave
#: their validation to the owner when :func:`_carried_exactly` holds.
_CHECKED_BY_OWNER = frozenset({"store", "recall", "get", "forget", "set_tags", "list", "count"})

#: Integers JSON carries exactly whatever reads them (and ``str()`` of which is short).
_EXACT_INT = 1 << 53
#: Characters of text a follower leaves to the owner's validation at most, all
#: arguments together (a content's limit, MAX_CONTENT_BYTES): anything longer may
#: be too long, and is refused here, never sent (a frame over the link's limit
#: would close the connection, not answer the caller).
_OWNER_CHECKS_CHARS = MAX_CONTENT_BYTES


def _carried_exactly(arguments: Mapping[str, Any]) -> bool:
    """Whether the owner's validation of ``arguments`` raises exactly what this process's
    would, so that a follower need not run it too (validating on both sides of the
    link cost the follower's crossing ~50 µs, cache-cold).

    True for arguments that reach the owner as the very values given, in a frame
    within the link's limit: ASCII text (it cannot fail to encode, as an unpaired
    surrogate does) of :data:`_OWNER_CHECKS_CHARS` at most, small integers, None,
    lists and tuples of such text. Never with a ``timeout``: this process waits by
    it before the owner could reject it. Anything else (mappings, sets, iterators,
    floats, other text) is validated here first, as before.
    """
    chars = 0
    for name, value in arguments.items():
        if value is None:
            continue
        if name == "timeout":
            return False
        kind = type(value)
        if kind is str and value.isascii():
            chars += len(value)
        elif kind is int and -_EXACT_INT < value < _EXACT_INT:
            continue
        elif (kind is list or kind is tuple) and all(
            type(item) is str and item.isascii() for item in value
        ):
            chars += sum(map(len, value))
        else:
            return False
    return chars <= _OWNER_CHECKS_CHARS


def _timeout_of(verb: str, arguments: Mapping[str, Any], config: Config) -> float | None:
    """The caller's budget for ``verb`` (None: the default ask timeout)."""
    timeout = arguments.get("timeout")
    if verb == "recall" and timeout is None:
        return config.recall_timeout
    return timeout if isinstance(timeout, (int, float)) else None


#: Argument types JSON carries as they are: no need to ask the ABCs about them (lists
#: are still copied, as a call parked for the next owner keeps its arguments).
_JSON_AS_IS = frozenset({str, int, float, bool, type(None)})


def _jsonable(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as JSON carries them: any iterable (tags, items, fields) as a list."""
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        if type(value) in _JSON_AS_IS:
            out[name] = value
            continue
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
            value = list(value)
        out[name] = value
    return out


@attrs.frozen
class Config:
    """Tuning for a MemorySystem; every field has a working default."""

    synchronous: Synchronous = "FULL"
    #: How long a caller waits for an answer before :class:`AskTimeout`.
    ask_timeout: float = 30.0
    #: Requests in flight at once (all callers together) before :class:`Overloaded`.
    max_in_flight: int = 1024
    #: How long a caller waits for an admission slot.
    admission_wait: float = 5.0
    busy_timeout: float = 5.0
    busy_retries: int = 5
    group_commit: bool = True
    #: Seconds without a write after which a keyword index that gathered more than
    #: a few segments (one per commit, about) is merged, as at open; None: at open only.
    merge_index_idle: float | None = 30.0
    migrate_timeout: float = 300.0
    stop_timeout: float = 10.0
    restart_intensity: int = 5
    restart_window: float = 60.0
    restart_backoff: float = 0.1
    #: Connection factory (fault injection in tests); None opens a plain sqlite3 connection.
    connect: Connect | None = None
    #: The hub to sync with; None keeps the system purely local.
    remote: RemoteConfig | None = None
    #: With a remote: run the SyncActor (False: remote recall only, e.g. a one-shot
    #: CLI recall, leaving sync to the long-running server on the same file).
    sync: bool = True
    #: Builds the SyncActor's hub client (the simulation passes an in-process transport).
    hub_client: ClientFactory | None = None
    #: How long recall waits for the hub before answering "retry" with local results
    #: (well under MCP clients' own 60 s limits).
    recall_timeout: float = 5.0
    recall: RecallSettings = attrs.field(factory=RecallSettings)
    #: Local semantic recall: None (the default) follows ``$MEMORY_ACTORS_SEMANTIC``,
    #: else turns it on when the model is installed (``memory-actors install-model``);
    #: False keeps recall keyword-only.
    semantic: bool | None = None
    #: Builds the embedder (None: all-MiniLM-L6-v2 from its package). The
    #: simulation passes a deterministic one; tests may pass another model.
    embedder: EmbedderLoader | None = None
    embedding: EmbeddingSettings = attrs.field(factory=EmbeddingSettings)
    #: ``auto``: the first process on a file owns it and serves the others
    #: (followers), so one StoreActor commits for all (docs/architecture.md,
    #: "Across processes"); ``direct``: this process runs its own actors on the
    #: file whatever others do, contending through SQLite's lock.
    sharing: Literal["auto", "direct"] = "auto"
    #: The world sharing runs in: None is this OS (``flock``, Unix sockets, a
    #: watcher thread); the simulation passes its own, one per simulated process.
    sharing_host: SharingHost | None = None


class MemorySystem:
    """Persistent memory for agents: store, recall, get, forget, list, count.

    Open with :meth:`open` and use as a context manager (or call
    :meth:`close`). All methods are thread-safe and raise errors from
    :mod:`actors.errors`: misuse (``InvalidMemory``, ``MemoryNotFound``,
    ``SystemClosed``) or operational (``Unavailable``, ``AskTimeout``,
    ``StorageBusy``, ``StorageError``).
    """

    def __init__(
        self, path: str, runtime: Runtime, config: Config, sharing: Sharing | None = None
    ) -> None:
        self.path = path
        self.runtime = runtime
        self.config = config
        #: What opening the file migrated (a follower: the owner's schema, nothing applied).
        self.migration = MigrationReport(path, 0, 0, (), ())
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._cells: dict[str, ChildCell] = {}
        self._sharing = sharing
        self._gate = runtime.gate(config.max_in_flight)
        self._closed = False
        self._owns_runtime = False

    def __repr__(self) -> str:
        children = " ".join(f"{c.name}={c.status}" for c in self._cells.values())
        return f"<MemorySystem {self.path} {children}{' closed' if self._closed else ''}>"

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        config: Config | None = None,
        runtime: Runtime | None = None,
    ) -> Self:
        """Migrate the file at ``path`` (default: :func:`default_db_path`) and start the actors.

        Raises :class:`~actors.errors.SchemaTooNew`, :class:`~actors.errors.NotADatabase`
        or :class:`~actors.errors.MigrationFailed` (the file is then untouched
        or at its previous version), or the store's start error.
        """
        config = config or Config()
        db_path = os.path.abspath(os.fspath(path)) if path is not None else default_db_path()
        owns_runtime = runtime is None
        rt: Runtime = runtime if runtime is not None else ThreadedRuntime()
        try:
            # The file's folder first, as migrating the file would make it: the owner
            # lock lives beside the file, and a folder not made yet is not "unwritable".
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(db_path), exist_ok=True)
            # Sharing needs real processes and sockets, or a simulation of them.
            host = config.sharing_host
            shared = config.sharing == "auto" and (
                host is not None or isinstance(rt, ThreadedRuntime)
            )
            sharing = (
                Sharing.join(db_path, wait=config.migrate_timeout, host=host or OS_HOST)
                if shared
                else None
            )
        except BaseException:
            if owns_runtime:
                rt.close()
            raise
        system = cls(db_path, rt, config, sharing)
        system._owns_runtime = owns_runtime
        try:
            if sharing is not None and sharing.role.name == "follower":
                system._follow(sharing)
            else:
                system._start_actors()
                if sharing is not None and sharing.role.name == "owner":
                    sharing.serve(system)
        except BaseException:
            system.close()
            raise
        rt.at_process_exit(system.close)
        return system

    def _start_actors(self, *, taking_over: bool = False) -> None:
        """Migrate the file and start this process's actors on it (owner or direct;
        ``taking_over``: from a dead owner, whose followers wait)."""
        rt, config, db_path = self.runtime, self.config, self.path
        report = self._migrate(rt, db_path, config)
        remote = config.remote
        store_config = StoreConfig(
            path=db_path,
            synchronous=config.synchronous,
            busy_timeout=config.busy_timeout,
            busy_retries=config.busy_retries,
            group_commit=config.group_commit,
            connect=config.connect,
            sync_configured=remote is not None,
            sync_max_attempts=remote.max_attempts if remote else 5,
            merge_index=True,
            merge_index_idle=config.merge_index_idle,
        )
        cells = {"store": ChildCell("store")}

        def spawn_store(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
            return rt.spawn(StoreActor, rt, store_config, supervisor=supervisor)

        specs: dict[str, ChildSpec] = {"store": spawn_store}
        if _semantic_on(config):
            loader = config.embedder or load_minilm
            cells["embedding"] = ChildCell("embedding")

            def spawn_embedding(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
                return rt.spawn(
                    EmbeddingActor,
                    rt,
                    cells["store"],
                    config.embedding,
                    loader=loader,
                    supervisor=supervisor,
                )

            specs["embedding"] = spawn_embedding
        if remote is not None:
            factory = config.hub_client or default_client

            # Starting actors with sharing on means owning the file (or taking it over).
            owner = self._sharing is not None and self._sharing.role.name != "direct"

            def spawn_sync(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
                return rt.spawn(
                    SyncActor,
                    rt,
                    remote,
                    cells["store"],
                    client_factory=factory,
                    supervisor=supervisor,
                    owner=owner,
                )

            if config.sync:
                cells["sync"] = ChildCell("sync")
                specs["sync"] = spawn_sync
            cells["recall"] = ChildCell("recall")
            recall_settings = config.recall

            def spawn_recall(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
                return rt.spawn(
                    RecallRouter,
                    rt,
                    remote,
                    recall_settings,
                    factory,
                    supervisor=supervisor,
                )

            specs["recall"] = spawn_recall
        supervisor = rt.spawn(
            SupervisorActor,
            rt,
            specs,
            cells,
            intensity=config.restart_intensity,
            window=config.restart_window,
            backoff=config.restart_backoff,
        )
        self.migration = report
        self._cells, self._supervisor = cells, supervisor
        # Taking the file over, stores wait for nothing but the store: the
        # embedding model loads meanwhile (0.3 s and more; 1.2 s on a busy host),
        # and recall goes without it until it is ready, as while it restarts.
        answer_after = frozenset(cells) - {"embedding"} if taking_over else None
        ask(
            rt,
            supervisor,
            lambda reply: StartChildren(reply, answer_after),
            config.migrate_timeout,
            "the store to open",
        )

    def _follow(self, sharing: Sharing) -> None:
        """As a follower: stand by to take the file over, and check the owner's schema.

        The watcher starts first: the owner may be closing as this process
        joins, and then this very call is parked until the next owner (which
        may be this process) answers it.
        """
        sharing.follow(self._take_over)
        try:
            counted = self._forwarded("count", {}, None)
        except NowOwner:
            return  # taken over meanwhile: _start_actors migrated the file and said so
        if counted.schema_version > LATEST_VERSION:
            raise SchemaTooNew(self.path, counted.schema_version, LATEST_VERSION)
        self.migration = MigrationReport(
            self.path, counted.schema_version, counted.schema_version, (), ()
        )
        if self.config.remote is not None:
            # Sync runs in the owner only: this process's remote waits unused, and an
            # owner started without one (the dashboard, say) syncs nothing meanwhile.
            logger.warning(
                "%s: sync is the owner's (pid %s: %s); this process's remote %s is used "
                "only if it takes the file over",
                self.path,
                sharing.owner_pid,
                counted.sync,
                self.config.remote.url,
            )

    def _take_over(self) -> None:
        """On the sharing watcher: the owner went and this process holds the lock now."""
        assert self._sharing is not None
        if self._closed:
            return
        try:
            self._start_actors(taking_over=True)
        except BaseException:
            # Whatever did start goes: Sharing may try again (the file was busy), and
            # a second supervisor beside a leftover one would run two stores.
            supervisor, self._supervisor = self._supervisor, None
            if supervisor is not None:
                self._stop_actors(supervisor)
            self._cells = {}
            raise
        self._sharing.serve(self)

    @staticmethod
    def _migrate(rt: Runtime, path: str, config: Config) -> MigrationReport:
        kwargs: dict[str, Any] = {} if config.connect is None else {"connect": config.connect}
        ref = rt.spawn(MigrationActor, rt, path, **kwargs)
        try:
            return ask(rt, ref, Migrate, config.migrate_timeout, "the migration")
        finally:
            stop(ref, config.stop_timeout)

    def close(self) -> None:
        """Commit pending writes, stop every actor, and wait for them (bounded). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sharing is not None:
            # First: followers fail over while this process commits and stops.
            self._sharing.close()
        if self._supervisor is not None:
            self._stop_actors(self._supervisor)
        if self._sharing is not None:
            # Last: the next owner opens the file only after this one let go of it.
            self._sharing.release()
        if self._owns_runtime:
            # A runtime passed in may serve other systems (or a simulated world).
            self.runtime.close()

    def _stop_actors(self, supervisor: pykka.ActorRef[Any]) -> None:
        try:
            ask(self.runtime, supervisor, Shutdown, self.config.stop_timeout, "the supervisor")
        except (AskTimeout, Unavailable) as exc:
            logger.warning("supervisor did not acknowledge shutdown: %s", exc)
        for cell in reversed(list(self._cells.values())):
            if cell.ref is not None:
                stop(cell.ref, self.config.stop_timeout)
            cell.status = ChildCell.STOPPED
        stop(supervisor, self.config.stop_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the memory API ------------------------------------------------------------
    #
    # Each verb is prepared once (validation, normalisation, the request built
    # around its reply future: a _Call) and run by either facade: here with a
    # blocking wait, in actors.aio with an await. What happens after the answer
    # (a sync nudge, the sync summary of count, recall's merge) is shared too.

    @_shared
    def store(
        self,
        content: str | None,
        *,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        key: str | None = None,
        search_fields: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> StoreReceipt:
        """Store ``content``; answered only after commit.

        Without ``key``, identical content in the namespace returns its id
        (``duplicate``) with the tags merged. With ``key``, the memory under
        ``(namespace, key)`` is created or replaced in place: content, tags
        and metadata, one id on every replica (``replaced`` says which).

        ``search_fields``: dotted paths into ``metadata`` whose values are
        appended to the content, the text that keyword and semantic recall
        search; ``content`` may then be None.
        """
        return self._run(
            self._prepare_store(content, tags, metadata, namespace, timeout, key, search_fields)
        )

    @_shared
    def recall(
        self,
        query: str,
        *,
        limit: int | None = None,
        tags: Iterable[str] | None = None,
        namespace: str | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> RecallResult:
        """Ranked matches for ``query``, answered within ``recall_timeout`` (or ``timeout``).

        Local keyword search (FTS5, BM25) always; with a hub, its semantic
        matches merged in (``status: "complete"``). If the hub has not answered
        by the deadline: ``status: "retry"`` with the local results, and the
        same call again soon gets the hub's answer from the cache. Without a
        hub, or when it fails: ``status: "local"`` with the reason.

        ``namespace_prefix`` keeps ``namespace_prefix`` and the namespaces
        below it (``users/alice`` holds ``users/alice/prefs``, not
        ``users/alicex``); it can be combined with ``namespace``.
        """
        plan = self._plan_recall(query, limit, tags, namespace, timeout, namespace_prefix)
        deadline = self.runtime.monotonic() + plan.budget
        remote: pykka.Future[tuple[RemoteHit, ...]] | None = None
        remote_error = ""
        if plan.has_remote:
            # Sent first, so the hub works while the local search runs.
            try:
                remote = self.submit("recall", plan.remote)
            except Unavailable as exc:
                remote_error = str(exc)
        try:
            local = self._run(plan.local_call())
        except (AskTimeout, Unavailable) as exc:
            if remote is not None:
                with contextlib.suppress(Exception):
                    remote.get(timeout=max(0.0, deadline - self.runtime.monotonic()))
            return plan.store_late(exc)
        early = plan.without_hub(local, remote_error, sent=remote is not None)
        if early is not None or remote is None:
            assert early is not None
            return early
        try:
            found = remote.get(timeout=max(0.0, deadline - self.runtime.monotonic()))
        except pykka.Timeout:
            return plan.hub_late(local)
        except MemoryActorsError as exc:
            return plan.hub_failed(local, exc)
        return plan.complete(local, found)

    @_shared
    def get(
        self,
        memory_id: str | None = None,
        *,
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Memory:
        """The memory with ``memory_id``, or under ``key`` in ``namespace`` (default ``default``).

        :class:`MemoryNotFound` if unknown or forgotten.
        """
        return self._run(self._prepare_get(memory_id, timeout, namespace, key))

    @_shared
    def forget(
        self,
        memory_id: str | None = None,
        *,
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> ForgetResult:
        """Tombstone the memory, by id or by key: its content is erased, the tombstone syncs."""
        return self._run(self._prepare_forget(memory_id, timeout, namespace, key))

    @_shared
    def set_tags(
        self,
        memory_id: str | None = None,
        *,
        tags: Iterable[str],
        namespace: str | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Memory:
        """Replace the memory's tags (by id, or by key); answers the updated memory.

        Unlike a store, which only adds tags, this also removes them; the
        change syncs as a new version. :class:`MemoryNotFound` if unknown or
        forgotten, :class:`InvalidMemory` for bad tags (nothing changed).
        """
        return self._run(self._prepare_set_tags(memory_id, tags, timeout, namespace, key))

    @_shared
    def list(
        self,
        *,
        namespace: str | None = None,
        tags: Iterable[str] | None = None,
        limit: int | None = None,
        before: str | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> MemoryPage:
        """Memories, most recent first; pass the page's ``next_before`` to continue.

        ``namespace_prefix``: only that namespace and those below it (as recall).
        """
        return self._run(
            self._prepare_list(namespace, tags, limit, before, timeout, namespace_prefix)
        )

    @_shared
    def count(
        self,
        *,
        namespace: str | None = None,
        tags: Iterable[str] | None = None,
        namespace_prefix: str | None = None,
        timeout: float | None = None,
    ) -> CountResult:
        """Counts and diagnostics (outbox, dead letters, schema version, path, sync).

        ``namespace_prefix``: count only that namespace and those below it.
        """
        result = self._run(self._prepare_count(namespace, tags, timeout, namespace_prefix))
        return self._with_sync(result, self.sync_report(), self.semantic_report())

    @_shared
    def sync_report(self) -> SyncReport | None:
        """The SyncActor's state (None without a remote); never waits more than 2 s."""
        call = self._prepare_sync_status()
        if call is None:
            return None
        try:
            return self._run(call)
        except (Unavailable, AskTimeout) as exc:
            return self._sync_unknown(exc)

    @_shared
    def retry_dead_letters(self, *, timeout: float | None = None) -> int:
        """Put every dead letter back in the outbox; returns how many memories were requeued."""
        return self._run(self._prepare_retry_dead(timeout))

    @_shared
    def dead_letters(
        self, *, limit: int | None = None, timeout: float | None = None
    ) -> DeadLetters:
        """The memories the hub kept refusing (oldest first, ``limit`` default 20), with why."""
        return self._run(self._prepare_dead_letters(limit, timeout))

    # -- the session log: an ordered list of JSON items per agent session (local only)

    @_shared
    def session_add(
        self, session_id: str, items: Sequence[Any], *, timeout: float | None = None
    ) -> int:
        """Append JSON ``items`` to the session's log, in order; answered after commit.

        Returns how many were appended. Each item is at most 64 KiB as compact
        JSON, 1000 per call; bad input raises :class:`InvalidMemory`, nothing stored.
        """
        return self._run(self._prepare_session_add(session_id, items, timeout))

    @_shared
    def session_items(
        self, session_id: str, *, limit: int | None = None, timeout: float | None = None
    ) -> SessionItems:
        """The session's latest ``limit`` items (all when None), oldest first."""
        return self._run(self._prepare_session_items(session_id, limit, timeout))

    @_shared
    def session_pop(self, session_id: str, *, timeout: float | None = None) -> Any:
        """Remove and return the session's newest item (None when empty), atomically."""
        return self._run(self._prepare_session_pop(session_id, timeout))

    @_shared
    def session_clear(self, session_id: str, *, timeout: float | None = None) -> int:
        """Delete every item of the session; returns how many there were."""
        return self._run(self._prepare_session_clear(session_id, timeout))

    # -- export, import, backup (actors/portable.py, actors/backup.py) --------------------

    def export_memories(
        self,
        destination: str | os.PathLike[str] | IO[bytes],
        *,
        namespace_prefix: str | None = None,
        tags: Iterable[str] | None = None,
        since: float | str | None = None,
        include_deleted: bool = False,
        timeout: float | None = None,
    ) -> ExportReport:
        """Write memories to ``destination`` (a path, or a binary file) as export JSONL.

        The format is :mod:`actors.portable`'s (``docs/operations.md``): a
        header line, then one memory per line in id order. Filters:
        ``namespace_prefix`` (that namespace and those below it), ``tags``
        (all of them), ``since`` (updated at or after: a Unix time or an ISO
        8601 date), tombstones with ``include_deleted``. Read a page at a time
        through the StoreActor; a path is written to a scratch file renamed
        into place at the end, so it never holds half an export. A follower
        asks the file's owner for each page (at most 4 MiB of lines) and
        writes the file itself.
        """
        filters = ExportFilters.build(
            namespace_prefix=namespace_prefix,
            tags=tags,
            since=since,
            include_deleted=include_deleted,
        )

        def fetch(after: str | None) -> Sequence[Memory]:
            # Through the owner: pages cut to a byte budget, so a frame stays small.
            budget = _FORWARDED_BYTES if self._following() else None
            return self._export_page(
                after,
                namespace_prefix=filters.namespace_prefix,
                tags=filters.tags,
                since=filters.since,
                include_deleted=filters.include_deleted,
                max_bytes=budget,
                timeout=timeout,
            )

        with _binary_output(destination) as out:
            return run_export(out, fetch, filters, self.runtime.wall_time())

    def import_memories(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        skip_invalid: bool = False,
        progress: Callable[[ImportReport], None] | None = None,
        batch_size: int = IMPORT_BATCH,
        timeout: float | None = None,
    ) -> ImportReport:
        """Merge an export (a path, or a binary file) into this file; what it did.

        Idempotent: importing the same file again changes nothing. Merged as
        sync merges a pull (by id, last writer wins by ``(version, origin)``;
        then by content in a namespace), in group-committed batches of
        ``batch_size``; every memory that changed is queued for the hub like
        a local write. A bad line raises :class:`~actors.errors.InvalidImport`
        (its number, why, and the report of the lines committed before it);
        with ``skip_invalid`` it is skipped and listed in the report instead.
        ``progress`` hears the report after each committed batch. A follower
        reads and checks the lines itself and sends each batch to the file's
        owner (in parts of at most 4 MiB), whose StoreActor commits it.
        """
        size = validate_limit(batch_size, default=IMPORT_BATCH, maximum=_MAX_IMPORT_BATCH)
        wait = self.config.ask_timeout if timeout is None else timeout

        def send(batch: tuple[WireMemory, ...]) -> Callable[[], ImportCounts]:
            if self._following():
                return self._import_through_owner(batch, wait)
            return self._import_here(batch, wait)

        with _binary_input(source) as stream:
            return run_import(
                stream, send, skip_invalid=skip_invalid, batch_size=size, progress=progress
            )

    def backup(
        self,
        path: str | os.PathLike[str],
        *,
        pages_per_step: int = BACKUP_STEP_PAGES,
        timeout: float = 3600.0,
    ) -> BackupReport:
        """Copy the database to ``path``: a consistent snapshot, checked, then renamed into place.

        The StoreActor copies the file with SQLite's online backup from one
        read snapshot (other processes keep writing meanwhile), into a
        scratch file next to ``path``; the copy must pass ``PRAGMA
        integrity_check`` before it replaces ``path``. The report says how
        many memories it holds. On a follower the file's owner makes the copy,
        at ``path`` made absolute here.
        """
        # Absolute here: on a follower the owner makes the copy, from its own directory.
        return self._backup_to(
            os.path.abspath(os.fspath(path)), pages_per_step=pages_per_step, timeout=timeout
        )

    # -- the steps of export, import and backup, which a follower asks of the owner ------

    @_shared
    def _export_page(
        self,
        after: str | None,
        *,
        namespace_prefix: str | None,
        tags: Iterable[str],
        since: float | None,
        include_deleted: bool,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> tuple[Memory, ...]:
        """The export's next page after ``after``; with ``max_bytes``, only as many
        memories as fit in that many bytes of export lines (one at least)."""
        wanted = tuple(tags)
        page = self._run(
            _Call(
                "store",
                lambda reply: ExportPage(
                    reply, after, EXPORT_PAGE, namespace_prefix, wanted, since, include_deleted
                ),
                timeout,
            )
        )
        if max_bytes is None:
            return page
        return _within_bytes(page, max_bytes, lambda memory: len(memory_line(memory)))

    def _import_here(
        self, batch: tuple[WireMemory, ...], wait: float
    ) -> Callable[[], ImportCounts]:
        """Send an import batch to this process's StoreActor; a callable waits for its counts."""
        ref = self._ready("store")
        future: pykka.Future[ImportCounts] = self._send(
            "store", lambda reply: ImportMemories(reply, batch), self.runtime.new_future()
        )

        def answer() -> ImportCounts:
            counts = wait_alive(self.runtime, future, ref, wait, "the store actor")
            self._nudge_sync()
            return counts

        return answer

    def _import_through_owner(
        self, batch: tuple[WireMemory, ...], wait: float
    ) -> Callable[[], ImportCounts]:
        """Send an import batch to the owner, in parts that keep each frame small, one
        part in flight at a time (so the file sees the lines in order)."""
        parts = _within_parts(batch, _FORWARDED_BYTES, lambda m: _json_bytes(m.to_json()))

        def send(part: tuple[WireMemory, ...]) -> Callable[[], Any]:
            memories = [m.to_json() for m in part]
            return self._forward_later("_import_batch", {"memories": memories, "timeout": wait})

        first = send(parts[0])

        def answer() -> ImportCounts:
            total = ImportCounts()
            for number, part in enumerate(parts):
                try:
                    counts = (first if number == 0 else send(part))()
                except NowOwner:  # this process took the file over: its own store applies it
                    counts = self._import_here(part, wait)()
                total = _added(total, counts)
            return total

        return answer

    def _import_batch(
        self, memories: Sequence[Mapping[str, Any]], *, timeout: float | None = None
    ) -> ImportCounts:
        """The owner's end of a follower's import batch (export lines as JSON objects)."""
        try:
            batch = tuple(WireMemory.parse(m, f"memories[{n}]") for n, m in enumerate(memories))
        except ShapeError as exc:
            # The follower checked every line: this is its bug, told as such.
            raise InvalidMemory(f"a follower's import batch: {exc}") from None
        wait = self.config.ask_timeout if timeout is None else timeout
        return self._import_here(batch, wait)()

    @_shared
    def _backup_to(self, target: str, *, pages_per_step: int, timeout: float) -> BackupReport:
        """:meth:`backup` to the absolute path ``target``, run by the file's owner."""
        if not os.path.isabs(target):
            raise InvalidMemory(f"{target} is not an absolute path; name the backup file fully")
        if os.path.exists(target) and os.path.samefile(target, self.path):
            raise InvalidMemory(f"{target} is the database itself; back it up to another path")
        if os.path.isdir(target):
            raise InvalidMemory(f"{target} is a directory; name the backup file")
        self._check_open()  # before touching any file
        scratch = scratch_path(target, "partial")
        remove_quietly(scratch)
        start = self.runtime.monotonic()
        try:
            pages = self._run(
                _Call(
                    "store",
                    lambda reply: BackupDatabase(reply, scratch, pages_per_step),
                    timeout,
                )
            )
            facts = inspect_copy(scratch)
            os.replace(scratch, target)
        except BaseException:
            remove_quietly(scratch)
            raise
        return BackupReport(
            self.path,
            target,
            attrs.evolve(facts, path=target),
            pages,
            self.runtime.monotonic() - start,
        )

    # -- each verb prepared once, for both facades -------------------------------------

    def _prepare_store(
        self,
        content: str | None,
        tags: Iterable[str] | None,
        metadata: Mapping[str, Any] | None,
        namespace: str | None,
        timeout: float | None,
        key: str | None = None,
        search_fields: Sequence[str] | None = None,
    ) -> _Call[StoreReceipt]:
        meta = normalize_metadata(metadata)
        text = normalize_content(recall_text(content, metadata, search_fields))
        digest = content_hash(text)
        ns = normalize_new_namespace(namespace)
        tag_tuple = normalize_tags(tags)
        address = None if key is None else validate_key(key)
        return _Call(
            "store",
            lambda reply: StoreMemory(reply, text, digest, ns, tag_tuple, meta, address),
            timeout,
            nudge=True,
        )

    def _plan_recall(
        self,
        query: str,
        limit: int | None,
        tags: Iterable[str] | None,
        namespace: str | None,
        timeout: float | None,
        namespace_prefix: str | None = None,
    ) -> _RecallPlan:
        return _RecallPlan(
            text=validate_query(query),
            namespace=None if namespace is None else normalize_namespace(namespace),
            namespace_prefix=_prefix(namespace_prefix),
            tags=normalize_tags(tags),
            limit=validate_limit(limit, default=10),
            budget=self.config.recall_timeout if timeout is None else timeout,
            has_remote="recall" in self._cells,
            semantic=self._semantic_child(),
        )

    def _semantic_child(self) -> str:
        """Where local recall goes: the EmbeddingActor while it serves, else the store."""
        cell = self._cells.get("embedding")
        return "embedding" if cell is not None and cell.status == ChildCell.READY else "store"

    def _prepare_get(
        self,
        memory_id: str | None,
        timeout: float | None,
        namespace: str | None = None,
        key: str | None = None,
    ) -> _Call[Memory]:
        canonical, label = _address(memory_id, namespace, key)
        return _Call("store", lambda reply: GetMemory(reply, canonical, label), timeout)

    def _prepare_forget(
        self,
        memory_id: str | None,
        timeout: float | None,
        namespace: str | None = None,
        key: str | None = None,
    ) -> _Call[ForgetResult]:
        canonical, label = _address(memory_id, namespace, key)
        return _Call(
            "store", lambda reply: ForgetMemory(reply, canonical, label), timeout, nudge=True
        )

    def _prepare_set_tags(
        self,
        memory_id: str | None,
        tags: Iterable[str],
        timeout: float | None,
        namespace: str | None = None,
        key: str | None = None,
    ) -> _Call[Memory]:
        canonical, _ = _address(memory_id, namespace, key)
        tag_tuple = normalize_tags(tags)
        return _Call(
            "store", lambda reply: RetagMemory(reply, canonical, tag_tuple), timeout, nudge=True
        )

    def _prepare_list(
        self,
        namespace: str | None,
        tags: Iterable[str] | None,
        limit: int | None,
        before: str | None,
        timeout: float | None,
        namespace_prefix: str | None = None,
    ) -> _Call[MemoryPage]:
        ns = None if namespace is None else normalize_namespace(namespace)
        prefix = _prefix(namespace_prefix)
        tag_tuple = normalize_tags(tags)
        top = validate_limit(limit, default=20)
        cursor = None if before is None else validate_id(before)
        return _Call(
            "store",
            lambda reply: ListMemories(reply, ns, tag_tuple, top, cursor, prefix),
            timeout,
        )

    def _prepare_count(
        self,
        namespace: str | None,
        tags: Iterable[str] | None,
        timeout: float | None,
        namespace_prefix: str | None = None,
    ) -> _Call[CountResult]:
        ns = None if namespace is None else normalize_namespace(namespace)
        prefix = _prefix(namespace_prefix)
        tag_tuple = normalize_tags(tags)
        return _Call("store", lambda reply: CountMemories(reply, ns, tag_tuple, prefix), timeout)

    def _with_sync(
        self, result: CountResult, report: SyncReport | None, semantic: Mapping[str, Any]
    ) -> CountResult:
        """``count``'s answer with the sync, semantic recall and sharing summaries filled in."""
        result = attrs.evolve(
            result, semantic=_semantic_summary(semantic), sharing=self._sharing_summary()
        )
        if report is not None:
            return attrs.evolve(result, sync=report.summary())
        if self.config.remote is not None:
            return attrs.evolve(
                result,
                sync=f"not syncing in this process (remote {self.config.remote.url}; "
                "`serve` pushes the outbox)",
            )
        return result

    def _sharing_summary(self) -> str:
        """One line of :meth:`_sharing_state`, for ``count``."""
        state = self._sharing_state()
        if state["role"] == "owner":
            followers = state["followers"]
            return f"owner ({followers} follower{'' if followers == 1 else 's'})"
        if state["role"] == "follower":
            return f"follower of pid {state['owner_pid']}"
        return f"direct: {state['reason']}"

    def _prepare_sync_status(self) -> _Call[SyncReport] | None:
        if self.config.remote is None or "sync" not in self._cells:
            return None
        return _Call("sync", SyncStatus, min(2.0, self.config.ask_timeout))

    def _sync_unknown(self, exc: Exception) -> SyncReport:
        assert self.config.remote is not None
        return SyncReport(
            state="starting", reason=str(exc), remote=self.config.remote.url, lease_holder=False
        )

    def _prepare_semantic_status(self) -> _Call[EmbeddingReport] | None:
        if "embedding" not in self._cells:
            return None
        return _Call("embedding", EmbeddingStatus, min(2.0, self.config.ask_timeout))

    def _semantic_unknown(self, exc: Exception) -> dict[str, Any]:
        return {"enabled": True, "state": "unknown", "reason": str(exc)}

    @_shared
    def semantic_report(self) -> dict[str, Any]:
        """Local semantic recall: on (its state) or off, and then how to turn it on."""
        if self._closed:
            return {"enabled": "embedding" in self._cells, "state": "closed", "reason": ""}
        call = self._prepare_semantic_status()
        if call is None:
            return _semantic_off(self.config)
        try:
            return self._run(call).to_dict()
        except (Unavailable, AskTimeout) as exc:
            return self._semantic_unknown(exc)

    def _prepare_dead_letters(self, limit: int | None, timeout: float | None) -> _Call[DeadLetters]:
        top = validate_limit(limit, default=20)
        return _Call("store", lambda reply: ReadDeadLetters(reply, top), timeout)

    def _prepare_retry_dead(self, timeout: float | None) -> _Call[int]:
        return _Call("store", RetryDeadLetters, timeout, nudge=True)

    def _prepare_session_add(
        self, session_id: str, items: Sequence[Any], timeout: float | None
    ) -> _Call[int]:
        sid = validate_session_id(session_id)
        texts = encode_items(items)
        return _Call("store", lambda reply: AppendSessionItems(reply, sid, texts), timeout)

    def _prepare_session_items(
        self, session_id: str, limit: int | None, timeout: float | None
    ) -> _Call[SessionItems]:
        sid = validate_session_id(session_id)
        top = validate_items_limit(limit)
        return _Call("store", lambda reply: ReadSessionItems(reply, sid, top), timeout)

    def _prepare_session_pop(self, session_id: str, timeout: float | None) -> _Call[Any]:
        sid = validate_session_id(session_id)
        return _Call("store", lambda reply: PopSessionItem(reply, sid), timeout)

    def _prepare_session_clear(self, session_id: str, timeout: float | None) -> _Call[int]:
        sid = validate_session_id(session_id)
        return _Call("store", lambda reply: ClearSession(reply, sid), timeout)

    def _run(self, call: _Call[R]) -> R:
        """The blocking facade's half of a verb: ask, wait, finish."""
        if _capture.get(False):
            # The verb's answer is then its request (see ``_begin``); only the verbs
            # whose body is ``return self._run(...)`` are ever captured.
            return cast(R, _Captured(call))
        return self._finish(call, self._ask(call.child, call.make, call.timeout))

    def _begin(
        self, verb: str, arguments: Mapping[str, Any], on_settled: Callable[[], None]
    ) -> _Begun[Any] | None:
        """Prepare ``verb`` (the owner's end of a follower's call) to be sent without waiting.

        The request is validated, built and admitted as the blocking verb
        does it, raising the same errors up to there; :meth:`_Begun.send`
        then tells it to its actor, and ``on_settled`` runs once, on the
        answering actor's thread, when its answer is in; :meth:`_Begun.answer`
        gives the verb's answer or raises its error. The caller must watch
        :meth:`_Begun.verdict` meanwhile: an actor may die without answering
        (Pykka's window) or answer too late.

        Prepared and sent in two steps so that the caller registers its watch
        in between, with nothing left to do after the tell: the actor it wakes
        then does not wait for the caller's thread to let go of the GIL.

        None when ``verb`` is not one request (:data:`_ONE_REQUEST`) or no
        admission slot is free at once: run the verb itself, which waits.
        """
        if verb not in _ONE_REQUEST:
            return None
        token = _capture.set(True)
        try:
            captured = getattr(type(self), verb).__wrapped__(self, **arguments)
        finally:
            _capture.reset(token)
        if not isinstance(captured, _Captured):
            raise AssertionError(f"{verb} is listed as one request but is not one")
        call: _Call[Any] = captured.call
        self._check_open()
        if not self._gate.acquire(0):
            return None
        try:
            ref = self._ready(call.child)
        except BaseException:
            self._gate.release()
            raise
        reply = self.runtime.new_notifying_future(on_settled)
        timeout = self.config.ask_timeout if call.timeout is None else call.timeout
        return _Begun(self, call, reply, ref, self.runtime.monotonic() + timeout, timeout)

    def _finish(self, call: _Call[R], value: R) -> R:
        self._after_answer(call)
        return value

    def _after_answer(self, call: _Call[Any]) -> None:
        """What follows a verb's answer: after a write, the sync and embedding nudge."""
        if call.nudge:
            self._nudge_sync()

    def status(self) -> dict[str, Any]:
        """Each actor's status, restarts and reason (the supervisor's view); sync; semantics;
        the file's sharing. A follower answers with its owner's view, and its own part in
        ``sharing``."""
        if self._following():
            try:
                state: dict[str, Any] = self._forwarded("status", {}, None)
                return state | {"sharing": self._sharing_state()}
            except NowOwner:
                pass
        if self._closed:
            return self._status(None, self.semantic_report())
        return self._status(self.sync_report(), self.semantic_report())

    def _sharing_state(self) -> dict[str, Any]:
        if self._sharing is None:
            return {"role": "direct", "reason": "sharing is off (Config.sharing or the runtime)"}
        return self._sharing.describe()

    def _status(self, report: SyncReport | None, semantic: dict[str, Any]) -> dict[str, Any]:
        state: Literal["ready", "degraded", "restarting", "closed"] = "ready"
        if self._closed:
            state = "closed"
        elif any(c.status == ChildCell.DEGRADED for c in self._cells.values()):
            state = "degraded"
        elif any(c.status != ChildCell.READY for c in self._cells.values()):
            state = "restarting"
        return {
            "state": state,
            "database": self.path,
            "runtime": self.runtime.name,
            "sync": report.to_dict() if report is not None else {"state": "local-only"},
            "semantic": semantic,
            "actors": {
                c.name: {"status": c.status, "restarts": c.restarts, "reason": c.reason}
                for c in self._cells.values()
            },
            "sharing": self._sharing_state(),
        }

    # -- sharing the file with other processes ------------------------------------------

    def _following(self) -> bool:
        """Whether calls go to another process that owns the file."""
        return self._sharing is not None and self._sharing.following

    def _follower_call(self, verb: str, arguments: dict[str, Any]) -> Any:
        """A verb of a follower, blocking: validated here (unless the owner's validation
        raises exactly what this one would: :func:`_carried_exactly`), then answered by
        the owner.

        :class:`NowOwner` when this process has taken the file over meanwhile.
        """
        self._check_before_forwarding(verb, arguments)
        return self._forwarded(verb, arguments, _timeout_of(verb, arguments, self.config))

    def _check_before_forwarding(self, verb: str, arguments: dict[str, Any]) -> None:
        """A follower's checks before it sends ``verb`` (either facade's): the verb's own
        validation, unless the owner's raises exactly the same (:func:`_carried_exactly`)."""
        if verb in _CHECKED_BY_OWNER and _carried_exactly(arguments):
            self._check_open()
        else:
            self._validate_only(verb, arguments)

    def _validate_only(self, verb: str, arguments: dict[str, Any]) -> None:
        """Run the verb's own validation here, so a follower raises a caller's mistake
        exactly as a direct call does (even for arguments JSON cannot carry)."""
        self._check_open()
        token = _dry_run.set(True)
        try:
            getattr(type(self), verb).__wrapped__(self, **arguments)
        except _Validated:
            pass
        finally:
            _dry_run.reset(token)

    def _forwarded(self, verb: str, arguments: dict[str, Any], budget: float | None) -> Any:
        if not self._gate.acquire(self.config.admission_wait):
            raise Overloaded(
                f"{self.config.max_in_flight} requests already in flight; retry shortly"
            )
        assert self._sharing is not None
        wait = self._forward_wait(budget)
        try:
            message = self._sharing.call(verb, _jsonable(arguments), wait)
        except FutureTimeout:
            raise self._owner_late(verb, wait) from None
        finally:
            self._gate.release()
        return self._as_follower(verb, OwnerProxy.answer(verb, message))

    def _forward_later(
        self, verb: str, arguments: dict[str, Any], budget: float | None = None
    ) -> Callable[[], Any]:
        """Send a follower's call now; the callable waits for the owner's answer and
        returns it (or raises its error, or :class:`NowOwner`)."""
        assert self._sharing is not None
        sharing = self._sharing
        wait = self._forward_wait(budget)
        call = sharing.send(verb, _jsonable(arguments), wait)

        def answer() -> Any:
            try:
                message = sharing.result(call, wait)
            except FutureTimeout:
                raise self._owner_late(verb, wait) from None
            return OwnerProxy.answer(verb, message)

        return answer

    def _as_follower(self, verb: str, answer: Any) -> Any:
        """The owner's answer, told from this process: ``count`` names this one's part."""
        if verb == "count":
            return attrs.evolve(answer, sharing=self._sharing_summary())
        if verb == "_backup_to":
            # Its record lives above the protocol's layer, so the protocol hands it over as JSON.
            return decode_record(BackupReport, answer)
        return answer

    def _forward(
        self, verb: str, arguments: dict[str, Any], budget: float | None
    ) -> tuple[Future[Message], float]:
        """Send a follower's call (the asyncio facade's); the future and how long to wait."""
        assert self._sharing is not None
        wait = self._forward_wait(budget)
        return self._sharing.submit(verb, _jsonable(arguments), wait), wait

    def _forward_wait(self, budget: float | None) -> float:
        """How long a follower waits for the owner's answer to a call given ``budget``."""
        return (self.config.ask_timeout if budget is None else budget) + _TRANSIT_GRACE

    def _owner_late(self, verb: str, wait: float) -> AskTimeout:
        return AskTimeout(
            f"the owner process of {self.path} did not answer {verb} within {wait:g} s"
        )

    # -- plumbing --------------------------------------------------------------------

    def _nudge_sync(self) -> None:
        """After a write: the SyncActor pushes it, the EmbeddingActor embeds it."""
        for child, nudge in (("sync", SyncNudge), ("embedding", EmbedNudge)):
            cell = self._cells.get(child)
            if cell is None or cell.ref is None:
                continue
            with contextlib.suppress(pykka.ActorDeadError):
                cell.ref.tell(nudge())

    def submit(self, child: str, make: Callable[[pykka.Future[R]], Request[R]]) -> pykka.Future[R]:
        """Send one request to a child actor and return its reply future without waiting.

        The seam for the deterministic simulation (its clients yield this
        future) and for callers that bound their own concurrency: it bypasses
        the admission gate. ``make`` builds the request around the reply
        future, e.g. ``lambda reply: GetMemory(reply, memory_id)``.
        """
        return self._send(child, make, self.runtime.new_future())

    def _send(
        self, child: str, make: Callable[[pykka.Future[R]], Request[R]], reply: pykka.Future[R]
    ) -> pykka.Future[R]:
        """Tell the child the request built around ``reply`` (either facade's future)."""
        self._check_open()
        return send(self.runtime, self._ready(child), make, if_dead=_restarting(child), reply=reply)

    def _check_open(self) -> None:
        if self._closed:
            raise SystemClosed("this MemorySystem is closed; open a new one")
        if _dry_run.get(False):
            raise _Validated  # a follower's validation reached the point of asking

    def _ask(
        self, child: str, make: Callable[[pykka.Future[R]], Request[R]], timeout: float | None
    ) -> R:
        """Ask a child actor, behind the admission gate; ``timeout`` None: ``ask_timeout``."""
        self._check_open()
        wait = self.config.ask_timeout if timeout is None else timeout
        if not self._gate.acquire(self.config.admission_wait):
            raise Overloaded(
                f"{self.config.max_in_flight} requests already in flight; retry shortly"
            )
        try:
            ref = self._ready(child)
            what = f"the {child} actor"
            return ask(self.runtime, ref, make, wait, what, if_dead=_restarting(child))
        finally:
            self._gate.release()

    def _ready(self, child: str) -> pykka.ActorRef[Any]:
        """The child's ref while it serves requests; ``Unavailable`` saying why otherwise."""
        if child not in self._cells and self._following():
            # Every verb crosses to the owner before it gets here: a new one that does
            # not is a bug, told as such rather than as a KeyError.
            raise Unavailable(
                f"this process follows the owner of {self.path} (pid "
                f"{self._sharing_state().get('owner_pid')}), which runs the {child} actor; "
                "this call does not cross to the owner: open the MemorySystem with "
                "Config(sharing='direct') to run it here"
            )
        cell = self._cells.get(child)
        if cell is None:  # taking the file over failed: this process runs no actors
            reason = self._sharing_state().get("reason") or "it runs no actors"
            raise Unavailable(f"this process cannot run the {child} actor: {reason}")
        if cell.ref is None or cell.status != ChildCell.READY:
            raise Unavailable(
                f"the {child} actor is {cell.status.lower()}"
                f"{': ' + cell.reason if cell.reason else ''}; retry shortly"
            )
        return cell.ref


class _Begun(Generic[R]):
    """Internal: a verb prepared by :meth:`MemorySystem._begin`, until answered.

    Its waiter calls :meth:`send` once, then :meth:`answer` exactly once: after
    the actor answered, or with the error :meth:`verdict` or :meth:`send` found;
    then :meth:`release` once, which frees the admission slot (the owner's
    service calls it after the answer's frame is written).
    """

    __slots__ = ("_call", "_system", "deadline", "ref", "reply", "timeout")

    def __init__(
        self,
        system: MemorySystem,
        call: _Call[R],
        reply: NotifyingFuture,
        ref: pykka.ActorRef[Any],
        deadline: float,
        timeout: float,
    ) -> None:
        self._system, self._call = system, call
        self.reply, self.ref, self.deadline, self.timeout = reply, ref, deadline, timeout

    @property
    def what(self) -> str:
        return _the_actor(self._call.child)

    def send(self) -> None:
        """Tell the actor the request; ``Unavailable`` if it is dead (then settle the call
        with that error through :meth:`answer`, and :meth:`release` it)."""
        call = self._call
        send(
            self._system.runtime,
            self.ref,
            call.make,
            if_dead=_restarting(call.child),
            reply=self.reply,
        )

    def answer(self, failure: Exception | None = None) -> R:
        """Once, when answered, or with the ``failure`` :meth:`verdict` or :meth:`send`
        found: the verb's answer, or its error (as the blocking verb's)."""
        if failure is not None:
            raise failure
        value: R = self.reply.value()
        if value is NO_VALUE:
            value = answer_of(self.reply, self.what)  # its error, as a blocking caller's
        return value

    def release(self, answered: bool) -> None:
        """Once, after :meth:`answer`: frees the admission slot, and after a write that
        ``answered`` does what the blocking verb does after its answer (``_finish``:
        the sync and embedding nudge)."""
        self._system._gate.release()
        if answered:
            self._system._after_answer(self._call)

    def left(self) -> float:
        """Seconds until its timeout (negative: past it)."""
        return self.deadline - self._system.runtime.monotonic()

    def verdict(self) -> MemoryActorsError | None:
        """Still unanswered: the error that settles it now (its actor died, or its
        time is up; the slot is freed), or None to look again later."""
        if self.reply.done:
            return None  # answered: ``on_settled`` is on its way
        alive = self.ref.is_alive()
        if alive and self.left() > 0:
            return None
        return overdue(self.what, self.timeout) if alive else lost(self.what)


#: Memories per import transaction at most: a batch is held in memory whole.
_MAX_IMPORT_BATCH = 20_000
#: Bytes of memories one export page or import part carries between processes at
#: most (at least one memory): frames stay far below the link's limits.
_FORWARDED_BYTES = 4 << 20


def _within_bytes(items: Sequence[T], budget: int, size: Callable[[T], int]) -> tuple[T, ...]:
    """The longest prefix of ``items`` within ``budget`` bytes, one item at least."""
    kept: list[T] = []
    used = 0
    for item in items:
        used += size(item)
        if kept and used > budget:
            break
        kept.append(item)
    return tuple(kept)


def _within_parts(items: Sequence[T], budget: int, size: Callable[[T], int]) -> list[tuple[T, ...]]:
    """``items`` cut in order into parts of at most ``budget`` bytes (one item at least)."""
    parts: list[tuple[T, ...]] = []
    rest = tuple(items)
    while rest:
        part = _within_bytes(rest, budget, size)
        parts.append(part)
        rest = rest[len(part) :]
    return parts


def _json_bytes(data: Mapping[str, Any]) -> int:
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _added(one: ImportCounts, other: ImportCounts) -> ImportCounts:
    return ImportCounts(
        inserted=one.inserted + other.inserted,
        updated=one.updated + other.updated,
        unchanged=one.unchanged + other.unchanged,
    )


@contextlib.contextmanager
def _binary_output(destination: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary file to write to: a path's scratch file, renamed onto it on success."""
    if not isinstance(destination, str | os.PathLike):
        yield destination
        return
    target = os.path.abspath(os.fspath(destination))
    scratch = scratch_path(target, "partial")
    try:
        with open(scratch, "wb") as out:
            yield out
        os.replace(scratch, target)
    except BaseException:
        remove_quietly(scratch)
        raise


@contextlib.contextmanager
def _binary_input(source: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary file to read: a path opened, or the file given."""
    if not isinstance(source, str | os.PathLike):
        yield source
        return
    try:
        stream = open(os.fspath(source), "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidMemory(f"cannot read {os.fspath(source)}: {exc.strerror}") from exc
    with stream:
        yield stream


@functools.cache
def _restarting(child: str) -> str:
    # A child found dead when told was alive a moment ago: its supervisor restarts it.
    # Built once per child: every request passes it, almost none uses it.
    return f"the {child} actor is restarting; retry shortly"


@functools.cache
def _the_actor(child: str) -> str:
    return f"the {child} actor"


#: The retry hint of a recall that timed out, in seconds.
_RETRY_AFTER = 2.0


@attrs.frozen
class _Call(Generic[R]):
    """Internal: one verb's request, validated and built once for both facades.

    ``make`` builds the request around a reply future (a blocking one, or the
    asyncio facade's :class:`~actors.runtime.NotifyingFuture`); ``timeout``
    None means ``Config.ask_timeout``; ``nudge``: a write, after which the
    SyncActor is nudged to push.
    """

    child: str
    make: Callable[[pykka.Future[R]], Request[R]]
    timeout: float | None
    nudge: bool = False


@attrs.frozen
class _RecallPlan:
    """Internal: a recall validated once, and how each outcome becomes its answer.

    Both facades send :meth:`remote` first (when ``has_remote``), run
    :meth:`local_call`, and wait for the hub until ``budget`` seconds after
    they started; the methods below turn what happened into the RecallResult.
    """

    text: str
    namespace: str | None
    tags: tuple[str, ...]
    limit: int
    budget: float
    has_remote: bool
    namespace_prefix: str | None = None
    #: The child that answers the local search: ``embedding`` (vectors fused with
    #: keywords) or ``store`` (keywords only).
    semantic: str = "store"

    def remote(self, reply: pykka.Future[tuple[RemoteHit, ...]]) -> RemoteRecall:
        return RemoteRecall(
            reply, self.text, self.namespace, self.tags, self.limit, self.namespace_prefix
        )

    def local_call(self) -> _Call[tuple[RecallHit, ...]]:
        return _Call(
            self.semantic,
            lambda reply: SearchMemories(
                reply, self.text, self.namespace, self.tags, self.limit, self.namespace_prefix
            ),
            self.budget,
        )

    def store_late(self, exc: Exception) -> RecallResult:
        # Recall answers within its deadline, always: a busy or restarting
        # store makes it a retry, not an error (found by the recall sweep).
        return RecallResult(
            self.text,
            (),
            "retry",
            f"the local store did not answer in time ({exc}); call memory_recall "
            "again with the same arguments in a few seconds",
            retry_after=_RETRY_AFTER,
        )

    def without_hub(
        self, local: tuple[RecallHit, ...], remote_error: str, *, sent: bool
    ) -> RecallResult | None:
        """The answer when the hub's is not needed or not coming; None: wait for the hub."""
        if not any(ch.isalnum() for ch in self.text):
            return RecallResult(
                self.text, local, "local", "the query has no searchable words (letters or digits)"
            )
        if sent:
            return None
        reason = (
            f"{self._local_kind()}; remote recall unavailable: {remote_error}"
            if remote_error
            else f"{self._local_kind()}; no remote configured"
        )
        return RecallResult(self.text, local, "local", reason)

    def _local_kind(self) -> str:
        if self.semantic == "embedding":
            return "local semantic and keyword search (local vectors fused with SQLite FTS5)"
        return f"local keyword search (SQLite FTS5, BM25); semantic recall is off: {INSTALL_HINT}"

    def hub_late(self, local: tuple[RecallHit, ...]) -> RecallResult:
        return RecallResult(
            self.text,
            local,
            "retry",
            "the hub is still searching: call memory_recall again with the same "
            "arguments in a few seconds to get its semantic matches; these are the "
            "local matches meanwhile",
            retry_after=_RETRY_AFTER,
        )

    def hub_failed(self, local: tuple[RecallHit, ...], exc: Exception) -> RecallResult:
        return RecallResult(
            self.text, local, "local", f"{self._local_kind()}; remote recall failed: {exc}"
        )

    def complete(self, local: tuple[RecallHit, ...], found: tuple[RemoteHit, ...]) -> RecallResult:
        prefix = self.namespace_prefix
        if prefix is not None:
            # A hub older than namespace_prefix ignores the field (protocol 1
            # readers skip unknown fields): filter its hits here, so the
            # answer is right with any hub, at worst with fewer remote hits.
            found = tuple(f for f in found if matches_namespace_prefix(f.namespace, prefix))
        return RecallResult(
            self.text,
            merge_hits(found, local, self.limit, self.text),
            "complete",
            "semantic matches from the hub merged with local keyword matches",
        )


def _semantic_on(config: Config) -> bool:
    """Whether this system runs an EmbeddingActor (see ``Config.semantic``)."""
    if config.semantic is not None:
        return config.semantic
    if config.embedder is not None:
        return True
    setting = os.environ.get(SEMANTIC_ENV_VAR, "auto").strip().lower()
    if setting in ("off", "on"):
        return setting == "on"
    return minilm_available()


def _semantic_summary(semantic: Mapping[str, Any]) -> str:
    """``status``'s ``semantic`` entry in one line (``count`` and the MCP count tool)."""
    if not semantic.get("enabled"):
        return f"semantic recall off: {semantic.get('reason', '')}"
    if "model" not in semantic:
        return f"semantic recall on ({semantic.get('state')}: {semantic.get('reason', '')})"
    return (
        f"semantic recall on ({semantic['model']}, {semantic['indexed']} memories "
        f"indexed, {semantic['state']}{': ' + semantic['reason'] if semantic['reason'] else ''})"
    )


def _semantic_off(config: Config) -> dict[str, Any]:
    """``status``'s ``semantic`` entry when no EmbeddingActor runs: why, and how to turn it on."""
    if config.semantic is False or os.environ.get(SEMANTIC_ENV_VAR, "").lower() == "off":
        reason = f"turned off in this process (Config.semantic=False or ${SEMANTIC_ENV_VAR}=off)"
    else:
        reason = f"the semantic model is not installed: {INSTALL_HINT}"
    return {"enabled": False, "state": "off", "reason": reason}


def _address(memory_id: object, namespace: object, key: object) -> tuple[str, str | None]:
    """The id a get or forget names, and how it was named (for a not-found message)."""
    if key is None:
        if memory_id is None:
            raise InvalidMemory("name the memory: give its id, or a key (with its namespace)")
        if namespace is not None:
            raise InvalidMemory("namespace names a memory only with a key; an id alone names it")
        return validate_id(memory_id), None
    if memory_id is not None:
        raise InvalidMemory("give either an id or a key, not both")
    name = validate_key(key)
    ns = normalize_namespace(namespace)
    return keyed_memory_id(ns, name), f"key {name!r} in namespace {ns!r}"


def _prefix(namespace_prefix: object) -> str | None:
    """A validated ``namespace_prefix`` filter, or None for no filter."""
    return None if namespace_prefix is None else normalize_namespace_prefix(namespace_prefix)
