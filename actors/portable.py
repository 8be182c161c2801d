"""The export format (JSONL, version 1) and the streams that write and read it.

One header line, then one memory per line, in id order::

    {"format":"memory-actors-export","version":1,"exported_at":1764594000.5,"filters":{...}}
    {"id":"0190...","namespace":"default","key":null,"content":"...","content_hash":"...",
     "tags":["a"],"metadata":{},"created_at":1764590000.25,"updated_at":1764590000.25,
     "version":"0190c3a46f1e7000000","origin":"0190...","deleted":false}

A memory line is a :class:`~actors.wire.WireMemory` (the hub protocol's
record, so an import is validated exactly as a pulled change is: ids, keys
against their id, content against its hash, tags, metadata) with ``key``
always present. Lines are compact JSON with the keys in that order, UTF-8
without escapes, so the same memories always give the same bytes: export →
import into an empty file → export gives identical memory lines.

Pure of actors: the facades (:mod:`actors.system`) hand these functions a
callable that fetches a page or applies a batch through the StoreActor.
Reading is streaming (one batch in memory at a time) and stops at the first
bad line unless asked to skip: see :func:`run_import`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final

import attrs

from actors._shapes import ShapeError
from actors.errors import InvalidImport, InvalidMemory
from actors.model import Memory, normalize_namespace_prefix, normalize_tags
from actors.wire import WireMemory

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "IMPORT_BATCH",
    "MAX_SKIPPED_LISTED",
    "ExportFilters",
    "ExportReport",
    "ImportCounts",
    "ImportReport",
    "SkippedLine",
    "header_line",
    "memory_line",
    "parse_since",
    "run_export",
    "run_import",
]

#: The header's ``format``: what tells this file from any other JSONL.
EXPORT_FORMAT: Final = "memory-actors-export"
#: The format version this code writes and the newest it reads.
EXPORT_VERSION: Final = 1
#: Memories per import transaction: large enough that the commit's fsync is
#: shared by many rows, small enough that a batch stays a few MB of memory.
IMPORT_BATCH: Final = 2000
#: Memories per export page read from the StoreActor.
EXPORT_PAGE: Final = 2000
#: How much of a bad value an error message quotes.
_QUOTE = 60
#: Skipped lines listed in a report (all are counted): a file of garbage must
#: not grow the report without bound.
MAX_SKIPPED_LISTED: Final = 1000


@attrs.frozen
class ExportFilters:
    """Which memories an export holds (all by default); ``since`` is a Unix time."""

    namespace_prefix: str | None = None
    tags: tuple[str, ...] = ()
    since: float | None = None
    include_deleted: bool = False

    @classmethod
    def build(
        cls,
        *,
        namespace_prefix: object = None,
        tags: object = None,
        since: object = None,
        include_deleted: bool = False,
    ) -> ExportFilters:
        """Validated filters: :class:`~actors.errors.InvalidMemory` names a bad one."""
        return cls(
            None if namespace_prefix is None else normalize_namespace_prefix(namespace_prefix),
            normalize_tags(tags),
            parse_since(since),
            bool(include_deleted),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace_prefix": self.namespace_prefix,
            "tags": list(self.tags),
            "since": self.since,
            "include_deleted": self.include_deleted,
        }


def parse_since(since: object) -> float | None:
    """``since`` as a Unix time: a number, or an ISO 8601 date or time (UTC if no zone)."""
    if since is None:
        return None
    if isinstance(since, dt.datetime):
        moment = since
    elif isinstance(since, int | float) and not isinstance(since, bool):
        return float(since)
    elif isinstance(since, str):
        try:
            return float(since)
        except ValueError:
            pass
        try:
            moment = dt.datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidMemory(
                f"since: {since[:40]!r} is neither a Unix time nor an ISO 8601 date "
                "(2026-12-01 or 2026-12-01T09:30:00Z)"
            ) from None
    else:
        raise InvalidMemory(f"since must be a time, not {type(since).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def header_line(filters: ExportFilters, exported_at: float) -> bytes:
    """The first line of an export."""
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": exported_at,
        "filters": filters.to_dict(),
    }
    return _dumps(header)


def memory_line(memory: Memory) -> bytes:
    """One memory as its export line (a tombstone carries no content, tags or metadata)."""
    deleted = memory.deleted
    return _dumps(
        {
            "id": memory.id,
            "namespace": memory.namespace,
            "key": memory.key,
            "content": "" if deleted else memory.content,
            "content_hash": memory.content_hash,
            "tags": [] if deleted else list(memory.tags),
            "metadata": {} if deleted else memory.metadata,
            "created_at": memory.created_at,
            "updated_at": memory.updated_at,
            "version": memory.version,
            "origin": memory.origin,
            "deleted": deleted,
        }
    )


def _dumps(data: dict[str, Any]) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


@attrs.frozen
class ExportReport:
    """What an export wrote: how many memories (tombstones among them) and with which filters."""

    memories: int
    tombstones: int
    filters: ExportFilters

    def to_dict(self) -> dict[str, Any]:
        return {
            "memories": self.memories,
            "tombstones": self.tombstones,
            "filters": self.filters.to_dict(),
        }


def run_export(
    out: IO[bytes],
    fetch: Callable[[str | None], Sequence[Memory]],
    filters: ExportFilters,
    exported_at: float,
) -> ExportReport:
    """Write the header, then every page ``fetch(after_id)`` answers, until an empty page."""
    out.write(header_line(filters, exported_at))
    written = tombstones = 0
    after: str | None = None
    while True:
        page = fetch(after)
        if not page:
            break
        out.write(b"".join(memory_line(memory) for memory in page))
        written += len(page)
        tombstones += sum(memory.deleted for memory in page)
        after = page[-1].id
    out.flush()
    return ExportReport(written, tombstones, filters)


# -- import ------------------------------------------------------------------------------


@attrs.frozen
class ImportCounts:
    """What one import batch did to the file (the StoreActor's answer)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@attrs.frozen
class SkippedLine:
    """A line ``--skip-invalid`` passed over, and why."""

    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


@attrs.frozen
class ImportReport:
    """What an import did: ``read`` memory lines = inserted + updated + unchanged + skipped.

    ``updated`` counts memories changed here: a newer version of an id this
    file held, or content this namespace already held under another id
    (merged into the imported id, tags united, as a pull from the hub does).
    ``last_line`` is the last line committed (the header is line 1);
    ``skipped_lines`` lists the first :data:`MAX_SKIPPED_LISTED` skipped.
    """

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    skipped_lines: tuple[SkippedLine, ...] = ()
    last_line: int = 0
    format_version: int = EXPORT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "skipped_lines": [s.to_dict() for s in self.skipped_lines],
            "last_line": self.last_line,
            "format_version": self.format_version,
        }

    def summary(self) -> str:
        """One line for a person."""
        return (
            f"read {self.read}: {self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped"
        )


@attrs.frozen
class _Batch:
    memories: tuple[WireMemory, ...]
    last_line: int
    #: Memory lines read, and skipped, up to and including this batch.
    read: int
    skipped: int
    skipped_lines: tuple[SkippedLine, ...]


class _Reader:
    """Lines of an export in, validated batches out; remembers the first bad line."""

    def __init__(self, source: IO[bytes], *, skip_invalid: bool, batch_size: int) -> None:
        self._source = source
        self._skip = skip_invalid
        self._size = batch_size
        self.format_version = EXPORT_VERSION
        #: The line that stopped the import (without ``skip_invalid``): (number, reason).
        self.failure: tuple[int, str] | None = None
        self._skipped: list[SkippedLine] = []
        self._skipped_count = 0
        self._read = 0

    def batches(self) -> Iterator[_Batch]:
        lines = enumerate(self._source, start=1)
        if not self._header(lines):
            return
        batch: list[WireMemory] = []
        last = 1
        for number, raw in lines:
            if not raw.strip():
                continue  # a blank line (the final newline's, or a spacer) is no memory
            self._read += 1
            try:
                batch.append(_parse_memory(raw))
            except _BadLine as bad:
                if not self._skip:
                    self._read -= 1  # not read into the file: the error names it
                    self.failure = (number, bad.reason)
                    break
                self._skipped_count += 1
                if len(self._skipped) < MAX_SKIPPED_LISTED:
                    self._skipped.append(SkippedLine(number, bad.reason))
            last = number
            if len(batch) >= self._size:
                yield self._cut(batch, last)
                batch = []
        if batch or self._skipped_count or last > 1:
            yield self._cut(batch, last)

    def _cut(self, batch: list[WireMemory], last: int) -> _Batch:
        return _Batch(tuple(batch), last, self._read, self._skipped_count, tuple(self._skipped))

    def _header(self, lines: Iterator[tuple[int, bytes]]) -> bool:
        first = next(lines, None)
        if first is None:
            self.failure = (1, "the file is empty: an export starts with its header line")
            return False
        try:
            header = _json_object(first[1])
        except _BadLine as bad:
            self.failure = (1, f"not an export header: {bad.reason}")
            return False
        if header.get("format") != EXPORT_FORMAT:
            self.failure = (
                1,
                f"not an export header: format is {_quote(header.get('format'))}, "
                f"expected {EXPORT_FORMAT!r}",
            )
            return False
        version = header.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.failure = (1, f"version {_quote(version)} is not a format version (1, 2, ...)")
            return False
        if version > EXPORT_VERSION:
            self.failure = (
                1,
                f"format version {version} is newer than this memory-actors reads "
                f"({EXPORT_VERSION}); upgrade memory-actors",
            )
            return False
        self.format_version = version
        return True


class _BadLine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise _BadLine(str(exc)) from None
    if not isinstance(value, dict):
        raise _BadLine(f"a line must be a JSON object, not {_kind(value)}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name} is not a JSON number")


#: One decoder for every line: ``json.loads`` with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _parse_memory(raw: bytes) -> WireMemory:
    data = _json_object(raw)
    try:
        return WireMemory.parse(data)
    except ShapeError as exc:
        raise _BadLine(str(exc)) from None


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _quote(value: object) -> str:
    return repr(value)[:_QUOTE]


def run_import(
    source: IO[bytes],
    send: Callable[[tuple[WireMemory, ...]], Callable[[], ImportCounts]],
    *,
    skip_invalid: bool = False,
    batch_size: int = IMPORT_BATCH,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Read an export from ``source`` and apply it in batches; the report of what was done.

    ``send(batch)`` hands a batch to the StoreActor and returns a callable
    that waits for its answer: the next batch is parsed while the store
    commits this one (one batch in flight). A bad line stops the import
    (unless ``skip_invalid``) after the lines before it are committed: the
    :class:`~actors.errors.InvalidImport` raised names the line and carries
    the report of what was committed. ``progress`` hears each committed batch.
    """
    reader = _Reader(source, skip_invalid=skip_invalid, batch_size=batch_size)
    report = ImportReport()
    waiting: tuple[_Batch, Callable[[], ImportCounts]] | None = None

    def settle() -> None:
        nonlocal report, waiting
        if waiting is None:
            return
        batch, wait = waiting
        waiting = None
        report = _tally(report, batch, wait(), reader.format_version)
        if progress is not None:
            progress(report)

    for batch in reader.batches():
        pending = send(batch.memories) if batch.memories else _nothing
        settle()
        waiting = (batch, pending)
    settle()
    if reader.failure is not None:
        line, reason = reader.failure
        committed = (
            f"lines 2-{report.last_line} were committed ({report.summary()})"
            if report.last_line > 1
            else "nothing was imported"
        )
        raise InvalidImport(line, reason, report, committed)
    return report


def _nothing() -> ImportCounts:
    return ImportCounts()


def _tally(report: ImportReport, batch: _Batch, counts: ImportCounts, version: int) -> ImportReport:
    return ImportReport(
        read=batch.read,
        inserted=report.inserted + counts.inserted,
        updated=report.updated + counts.updated,
        unchanged=report.unchanged + counts.unchanged,
        skipped=batch.skipped,
        skipped_lines=batch.skipped_lines,
        last_line=batch.last_line,
        format_version=version,
    )
