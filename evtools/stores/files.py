"""File stores: ``JsonlStore`` (JSON lines) and ``ParquetStore`` (via polars).

Files are for import and export. ``mode="r"`` (the default) opens an existing file
read-only; ``mode="w"`` creates or truncates it for export and ``mode="a"`` continues an
existing export (both append through the ordinary ``append``). ``open_store("x.jsonl")``
and ``open_store("x.parquet")`` pick the class by suffix.

Positions: a record keeps the global position it carries (``evposition`` / ``position``,
e.g. from the store it was exported from); a record without one gets its 1-based record
number in the file. An export through ``append`` numbers records 1, 2, ... Reads follow
file order, and ``read_all(from_position)`` skips records below ``from_position``. A
stream's records are read as the file holds them, a version repeated or out of order too:
an export of what a consumer was delivered keeps its faults, for the rehydration checks to
report (``evtools rehydrate`` names each one).

A file store keeps an index in memory, built by one pass over the file the first time it
is needed: one entry per stream (its last version) and, for JSONL, where each record
starts (two 8-byte integers per record, never the decoded events), so that
``read_stream`` reads and decodes that stream's lines only. A JSONL file that has changed
since it was indexed (size, modification time or inode) is indexed again. Events
themselves are read lazily, batch by batch, every time.

JSONL
=====

One event per line, in either of two forms (reading accepts both in one file; writing
uses ``format="cloudevents"``, the default, or ``format="flat"``):

* a CloudEvents 1.0 structured JSON envelope, as :func:`evtools.events.to_cloudevent`
  writes it (stream, version, schema version, position and metadata travel in the
  ``evstream``, ``evversion``, ``evschemaversion``, ``evposition`` and ``evmetadata``
  extensions);
* a flat record::

      {"stream": "order-1", "version": 0, "type": "OrderPlaced",
       "data": {"order_id": 1},            // the payload, a JSON value copied verbatim
       "metadata": {"user": "u1"},         // optional, a JSON value copied verbatim
       "id": "0b6c...", "recorded_at": "2024-05-01T12:00:00.123456Z",
       "position": 17, "content_type": "application/json", "schema_version": 1}

  ``stream``, ``version`` and ``type`` are required, everything else optional (id ``""``,
  no time, position from the record number, ``application/json``, schema version 1).
  A payload that is not JSON goes in ``"data_base64"`` instead of ``"data"`` (likewise
  ``"metadata_base64"``); unknown keys are an error, so that a misspelt key is not
  silently dropped.

A line whose object repeats a member (two ``"evstream"``, two ``"version"``) is an error
too: which value counts would depend on the reader. Only the line's own members are
compared; a payload's are the registry's to judge when it decodes it.

A JSON payload is embedded verbatim so that payload bytes survive a round trip. Bytes
that cannot be embedded in one line as they are (not valid JSON, whitespace around the
value, a line break inside it) are written base64-encoded (``data_base64``, with
``datacontenttype`` kept); metadata likewise goes in the ``evmetadatabase64``
extension. A line that is neither form raises :class:`~evtools.errors.EnvelopeError`
naming the file and line.

Parquet
=======

Columns ``stream`` (string), ``version`` (int64), ``type`` (string), ``data`` (binary),
``metadata`` (binary), ``id`` (string), ``recorded_at`` (timestamp[us, UTC]),
``position`` (int64), ``content_type`` (string), ``schema_version`` (int64); one row per
event. Files other tools wrote may have other widths of integer, categorical strings,
payloads as strings (read as their UTF-8 bytes) and times in another zone (read as the
same instant in UTC); a column of another type (a time without a zone included) is a
:class:`~evtools.errors.StoreUnavailable` when the file is opened, and a row with a
null stream, version, type or data, or a value out of range, an
:class:`~evtools.errors.InputError` naming the row. Writing buffers ``row_group_size``
rows and writes them as one row group (pyarrow's ``ParquetWriter``, the ``parquet``
extra); a Parquet file becomes readable when it is closed, so an export store refuses
reads until then (reopen it with ``mode="r"``). Reading streams batches through
``polars.scan_parquet``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import os
import threading
from abc import abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

import msgspec

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

from .._json import JSON_WHITESPACE, too_deep
from ..errors import (
    Context,
    EnvelopeError,
    InputError,
    MissingDependency,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from ..events import (
    JSON_CONTENT_TYPE,
    RawEvent,
    embeddable,
    format_time,  # shared with the CloudEvents mapping so both write the same times
    from_cloudevent,
    parse_time,
    refuse_repeated_member,
    to_cloudevent,
)
from .base import (
    ANY,
    AppendEvent,
    EventStore,
    ExpectedVersion,
    check_expected,
    check_limit,
    check_start,
    prepare_events,
    validate_append,
)

__all__ = ["JsonlStore", "ParquetStore"]

log = logging.getLogger(__name__)

Mode = Literal["r", "w", "a"]


_BOM = b"\xef\xbb\xbf"


def _without_bom(line: bytes) -> bytes:
    """The first line of a file without a UTF-8 byte order mark (RFC 8259 lets a parser
    ignore one; some Windows tools write it)."""
    return line[3:] if line.startswith(_BOM) else line


@contextlib.contextmanager
def _locked(out: io.BufferedWriter, path: str, stream: str) -> Iterator[None]:
    """An exclusive advisory lock on the file of ``out`` (``flock``; where there is none,
    on Windows, only one process should append)."""
    if fcntl is None:
        yield
        return
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
    except OSError as e:
        raise StoreError(f"JSONL {path}: cannot lock the file for the append: {e}",
                         file=path, stream=stream) from e
    try:
        yield
    finally:
        fcntl.flock(out.fileno(), fcntl.LOCK_UN)


class _StreamInfo:
    """What the index knows about one stream: its last version and, in a JSONL file, its
    first and last record (indexes into the store's record arrays; -1 elsewhere)."""

    __slots__ = ("first", "last", "tail")

    def __init__(self, last: int, first: int = -1, tail: int = -1) -> None:
        self.last = last
        self.first = first
        self.tail = tail


class _FileStore(EventStore):
    """What both file stores share: modes, the per-stream index, append bookkeeping."""

    kind = "file"

    def __init__(self, path: str | os.PathLike[str], mode: Mode) -> None:
        if mode not in ("r", "w", "a"):
            raise UsageError(f"file store mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path = os.fspath(path)
        self.url = self.path
        self.mode = mode
        self.read_only = mode == "r"
        self._index: dict[str, _StreamInfo] | None = None
        self._records = 0  # records in the file
        self._last_position = 0  # the highest position in the file (appends go after it)
        self._closed = False
        self._lock = threading.RLock()  # appends and the index; reads open their own handle
        if mode == "r" and not Path(self.path).is_file():
            what = "a directory, not a file" if Path(self.path).is_dir() else "no such file"
            raise StoreUnavailable(f"{self.kind} {self.path}: {what}", file=self.path)
        if mode != "r" and not Path(self.path).parent.is_dir():
            raise StoreUnavailable(f"{self.kind} {self.path}: directory "
                                   f"{str(Path(self.path).parent)!r} does not exist",
                                   file=self.path)

    @abstractmethod
    def _build_index(self) -> dict[str, _StreamInfo]:
        """Read the whole file once; set ``_index``, ``_records`` and ``_last_position``."""

    def _ensure_open(self) -> None:
        if self._closed:
            raise UsageError(f"{self.kind} {self.path}: the store is closed", file=self.path)

    def _streams(self) -> dict[str, _StreamInfo]:
        self._ensure_open()
        with self._lock:
            return self._index if self._index is not None else self._build_index()

    def stream_version(self, stream: str) -> int | None:
        info = self._streams().get(stream)
        return None if info is None else info.last

    def list_streams(self) -> Iterator[str]:
        return iter(list(self._streams()))

    def _start_append(self, stream: str, events: Sequence[AppendEvent],
                      expected_version: ExpectedVersion) -> list[RawEvent]:
        expected = validate_append(self.url, stream, events, expected_version)
        self._refuse_write(stream)
        info = self._streams().get(stream)
        actual = None if info is None else info.last
        check_expected(self.url, stream, expected, actual)
        first = 0 if actual is None else actual + 1
        position = self._last_position + 1
        return [p.to_raw(stream, first + i, position + i)
                for i, p in enumerate(prepare_events(self.url, stream, events, first))]


# -- JSONL --------------------------------------------------------------------------------


class _Flat(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One flat record: read strictly (unknown keys are errors), written without defaults."""

    stream: str
    version: int
    type: str
    data: msgspec.Raw = msgspec.Raw(b"")
    data_base64: str | None = None
    metadata: msgspec.Raw = msgspec.Raw(b"")
    metadata_base64: str | None = None
    id: str = ""
    recorded_at: str | None = None
    position: int | None = None
    content_type: str = JSON_CONTENT_TYPE
    schema_version: int = 1


_flat_decoder = msgspec.json.Decoder(_Flat)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_members_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_CE_PREFIX = b'{"specversion"'
_META_B64 = "evmetadatabase64"
_OCTETS = "application/octet-stream"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def encode_flat_line(event: RawEvent) -> bytes:
    """One flat record (see the module docstring)."""
    out = _Flat(stream=event.stream, version=event.version, type=event.type, id=event.id,
                   recorded_at=(format_time(event.recorded_at)
                                if event.recorded_at is not None else None),
                   position=event.position, content_type=event.content_type,
                   schema_version=event.schema_version)
    if event.is_json and embeddable(event.data) and event.data:
        out.data = msgspec.Raw(event.data)
    elif event.data:
        out.data_base64 = _b64(event.data)
    if embeddable(event.metadata) and event.metadata:
        out.metadata = msgspec.Raw(event.metadata)
    elif event.metadata:
        out.metadata_base64 = _b64(event.metadata)
    return _encoder.encode(out)


def _unbase64(text: str, ctx: Callable[[], Context], path: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EnvelopeError(f"{path[1:]!r} is not valid base64", ctx(), path=path) from e


def _decode_flat(line: bytes, where: Context) -> RawEvent:
    try:
        rec = _flat_decoder.decode(line)
    except msgspec.ValidationError as e:
        raise EnvelopeError(f"neither a CloudEvents envelope nor a flat record: {e}",
                            where) from e
    refuse_repeated_member(line, "record", where)

    def ctx() -> Context:  # built on the error paths only
        return where.merge(Context(stream=rec.stream or None, event_type=rec.type or None,
                                   version=rec.version if rec.version >= 0 else None))

    if not rec.stream:
        raise EnvelopeError("'stream' is empty", ctx(), path="/stream")
    if rec.version < 0:
        raise EnvelopeError("'version' must be >= 0", ctx(), path="/version")
    if not rec.type:
        raise EnvelopeError("'type' is empty", ctx(), path="/type")
    if rec.schema_version < 1:
        raise EnvelopeError(f"'schema_version' must be >= 1, not {rec.schema_version}", ctx(),
                            path="/schema_version")
    if rec.position is not None and rec.position < 0:
        raise EnvelopeError(f"'position' must be >= 0, not {rec.position}", ctx(),
                            path="/position")
    if rec.data and rec.data_base64 is not None:
        raise EnvelopeError("record has both 'data' and 'data_base64'", ctx())
    if rec.metadata and rec.metadata_base64 is not None:
        raise EnvelopeError("record has both 'metadata' and 'metadata_base64'", ctx())
    data = (_unbase64(rec.data_base64, ctx, "/data_base64") if rec.data_base64 is not None
            else bytes(rec.data))
    metadata = (_unbase64(rec.metadata_base64, ctx, "/metadata_base64")
                if rec.metadata_base64 is not None else bytes(rec.metadata))
    recorded_at = None
    if rec.recorded_at is not None:
        try:
            recorded_at = parse_time(rec.recorded_at, where, "/recorded_at")
        except EnvelopeError as e:
            e.with_context(ctx())
            raise
    return RawEvent(
        stream=rec.stream, version=rec.version, type=rec.type, data=data, metadata=metadata,
        id=rec.id, recorded_at=recorded_at, position=rec.position,
        content_type=rec.content_type, schema_version=rec.schema_version)


def decode_line(line: bytes, where: Context) -> RawEvent:
    """One JSONL line (CloudEvents envelope or flat record) to a ``RawEvent``."""
    try:
        if line.startswith(_CE_PREFIX):
            event = from_cloudevent(line, where=where)
        else:
            try:
                return _decode_flat(line, where)
            except EnvelopeError:
                if b'"specversion"' not in line:
                    raise
            event = from_cloudevent(line, where=where)
    except msgspec.DecodeError as e:  # a flat line that is not JSON at all
        raise EnvelopeError(f"line is not valid JSON: {e}", where) from e
    except RecursionError as e:  # msgspec stops at Python's recursion limit, as json does
        raise EnvelopeError(too_deep("line"), where) from e
    if b'"' + _META_B64.encode() + b'"' in line:
        extra = _members_decoder.decode(line).get(_META_B64)
        if extra is not None:
            try:
                text = msgspec.json.decode(extra, type=str)
            except msgspec.ValidationError as e:
                raise EnvelopeError(f"{_META_B64!r} must be a string", where,
                                    path=f"/{_META_B64}") from e
            event = msgspec.structs.replace(
                event, metadata=_unbase64(text, lambda: where, f"/{_META_B64}"))
    return event


class JsonlStore(_FileStore):
    """Events in a JSON lines file (see the module docstring for both line forms).

    ``mode="r"`` reads an existing file; ``"w"`` creates or truncates it for export;
    ``"a"`` continues an existing export. ``format`` is the form ``append`` writes.

    The index (built by the first call that needs it, one pass that decodes every line)
    keeps, besides each stream's last version, where every record starts: two 8-byte
    integers per record (its byte offset, and the record that comes next in its stream),
    so ``read_stream`` seeks to that stream's lines and decodes only those. The file is
    indexed again when it has changed since (another size, modification time or inode);
    a line that is not what the index says when read (the file was rewritten while an
    iterator was open) is a :class:`~evtools.errors.StoreError`.
    """

    kind = "JSONL"

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "r", *,
                 format: Literal["cloudevents", "flat"] = "cloudevents") -> None:
        super().__init__(path, mode)
        if format not in ("cloudevents", "flat"):
            raise UsageError(f"JSONL format must be 'cloudevents' or 'flat', got {format!r}")
        self._encode = to_cloudevent if format == "cloudevents" else encode_flat_line
        self._offsets = array("q")  # record -> byte offset of its line
        self._next = array("q")  # record -> the next record of its stream, -1 at the end
        self._indexed: os.stat_result | None = None  # the file as it was indexed
        self._indexed_to = (0, 0)  # the byte and the line the index covers up to
        self._read_to = (0, 0)  # where the last pass over the lines ended
        self._out: io.BufferedWriter | None = None
        if mode == "r":
            return
        try:
            self._out = open(self.path, "wb" if mode == "w" else "ab")  # noqa: SIM115
            if mode == "w":
                self._index = {}
                self._indexed = os.fstat(self._out.fileno())
            elif self._out.tell() > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # an unfinished last line: end it first
                        self._out.write(b"\n")
        except OSError as e:
            raise StoreUnavailable(f"JSONL {self.path}: cannot open for writing: {e}",
                                   file=self.path) from e

    # -- reading the file ------------------------------------------------------------------

    def _open_for_reading(self) -> io.BufferedReader:
        self._ensure_open()
        if self._out is not None:
            self._out.flush()
        try:
            return open(self.path, "rb")
        except OSError as e:
            raise StoreUnavailable(f"JSONL {self.path}: cannot read: {e}",
                                   file=self.path) from e

    def _lines(self, start: int = 0, first_line: int = 1, stop: int | None = None
               ) -> Iterator[tuple[int, int, bytes]]:
        """(byte offset, line number, line) of every non-blank line of the file, from byte
        ``start`` (the start of line ``first_line``) on, up to the lines that start at byte
        ``stop`` or later. A UTF-8 byte order mark at the start of the file is not part of
        the first line (RFC 8259 lets a parser ignore it)."""
        f = self._open_for_reading()
        try:
            f.seek(start)
            pos = start
            lineno = first_line - 1
            for lineno, line in enumerate(f, first_line):
                offset = pos
                if stop is not None and offset >= stop:
                    return
                pos += len(line)
                stripped = (_without_bom(line) if offset == 0 else line).strip(JSON_WHITESPACE)
                if stripped:
                    yield offset, lineno, stripped
            self._read_to = (pos, lineno)  # where the pass ended, for an index to go on
        finally:
            f.close()

    def _events(self, start: int = 0, first_line: int = 1, first_record: int = 1,
                stop: int | None = None) -> Iterator[tuple[int, RawEvent]]:
        """(byte offset, event) of every record, in file order (from byte ``start``, which
        begins line ``first_line`` and record ``first_record``, to byte ``stop``)."""
        for record, (offset, lineno, line) in enumerate(self._lines(start, first_line, stop),
                                                        first_record):
            event = decode_line(line, Context(file=self.path, line=lineno))
            if event.position is None:
                event = msgspec.structs.replace(event, position=record)
            yield offset, event

    def _line_number(self, offset: int) -> int | None:
        """The 1-based number of the line at byte ``offset`` (error path: counts the line
        breaks before it)."""
        try:
            with open(self.path, "rb") as f:
                n = 1
                left = offset
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    n += chunk.count(b"\n")
                    left -= len(chunk)
                return n
        except OSError:
            return None

    # -- the index -------------------------------------------------------------------------

    def _stat(self) -> os.stat_result:
        try:
            return os.stat(self.path)
        except OSError as e:
            raise StoreUnavailable(f"JSONL {self.path}: cannot read: {e}",
                                   file=self.path) from e

    @staticmethod
    def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
        return (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
            (b.st_ino, b.st_dev, b.st_size, b.st_mtime_ns, b.st_ctime_ns)

    def _grown(self, now: os.stat_result) -> bool:
        """Whether the file is the one indexed with lines added after it (same inode,
        longer, and the part indexed ending a line)."""
        was = self._indexed
        end = self._indexed_to[0]
        if was is None or (now.st_ino, now.st_dev) != (was.st_ino, was.st_dev) \
                or now.st_size <= end:
            return False
        return end == 0 or self._ends_a_line(end)

    def _ends_a_line(self, end: int) -> bool:
        """Whether the byte before ``end`` is a line break (``False`` if unreadable)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(end - 1)
                return f.read(1) == b"\n"
        except OSError:
            return False

    def _streams(self) -> dict[str, _StreamInfo]:
        self._ensure_open()
        with self._lock:
            if self._out is not None:
                self._out.flush()
            if self._index is None or self._indexed is None:
                return self._build_index()
            now = self._stat()
            if self._same_file(now, self._indexed):
                return self._index
            if self._grown(now):  # appended to (another writer): index the new lines only
                log.debug("JSONL %s grew since it was indexed; indexing the new lines",
                          self.path)
                return self._build_index(extend=True)
            log.info("JSONL %s changed since it was indexed; indexing it again", self.path)
            return self._build_index()

    def _build_index(self, extend: bool = False) -> dict[str, _StreamInfo]:
        """Index the file, or (``extend``) the lines added since it was indexed."""
        indexed = self._stat()  # before reading: a change during the pass is seen next time
        if extend and self._index is not None:
            index, offsets, nexts = self._index, self._offsets, self._next
            start, lines = self._indexed_to
            first_line = lines + 1
            record, last_position = self._records, self._last_position
        else:
            index, offsets, nexts = {}, array("q"), array("q")
            start, first_line, record, last_position = 0, 1, 0, 0
            self._index = None  # until this pass is done
        self._read_to = (start, first_line - 1)
        try:
            # records are 0-based here; positions and messages count them from 1
            for offset, event in self._events(start, first_line, record + 1):
                position = event.position
                if position is not None and position > last_position:
                    last_position = position
                info = index.get(event.stream)
                if info is None:
                    index[event.stream] = _StreamInfo(event.version, record, record)
                else:
                    nexts[info.tail] = record
                    info.tail = record
                    if event.version > info.last:
                        info.last = event.version
                offsets.append(offset)
                nexts.append(-1)
                record += 1
        except BaseException:
            self._index = None  # not half an index (extended in place): index it all again
            raise
        self._index = index
        self._offsets = offsets
        self._next = nexts
        self._records = record
        self._last_position = last_position
        self._indexed_to = self._read_to  # (byte, line) the index covers up to
        self._indexed = indexed
        return index

    # -- the protocol ----------------------------------------------------------------------

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self.url, stream)
        limit = check_limit(limit, self.url)
        with self._lock:
            info = self._streams().get(stream)
            if info is None:
                raise StreamNotFound(f"JSONL {self.path}: stream {stream!r} does not exist",
                                     stream=stream, file=self.path)
            # the stream as it is now, up to its last record: events appended while the
            # iterator is open are not read (reading and appending to one stream ends); the
            # arrays only grow (a new index replaces them), so these records stay where
            # they are
            return self._read_stream(stream, from_version, limit, info.first, info.tail,
                                     self._offsets, self._next)

    def _read_stream(self, stream: str, from_version: int, limit: int | None, record: int,
                     last: int, offsets: array[int], nexts: array[int]
                     ) -> Iterator[RawEvent]:
        if limit == 0:
            return
        n = 0
        f = self._open_for_reading()
        try:
            while record >= 0:
                offset = offsets[record]
                if offset:  # a record starts a line: the byte before it ends the previous one
                    f.seek(offset - 1)
                    if f.read(1) != b"\n":
                        raise self._changed(stream, offset)
                    line = f.readline().strip(JSON_WHITESPACE)
                else:
                    f.seek(0)
                    line = _without_bom(f.readline()).strip(JSON_WHITESPACE)
                if not line:
                    raise self._changed(stream, offset)
                try:
                    event = decode_line(line, Context(file=self.path))
                except EnvelopeError as e:
                    e.with_context(line=self._line_number(offset))
                    raise
                if event.stream != stream:
                    raise self._changed(stream, offset)
                number = record + 1  # records count from 1
                record = -1 if record == last else nexts[record]
                if event.version < from_version:
                    continue
                if event.position is None:
                    event = msgspec.structs.replace(event, position=number)
                yield event
                n += 1
                if limit is not None and n >= limit:
                    return
        finally:
            f.close()

    def _changed(self, stream: str, offset: int) -> StoreError:
        self._index = None  # not the file it was: the next call indexes it again
        return StoreError(f"JSONL {self.path}: the file changed while stream {stream!r} was "
                          f"being read (line {self._line_number(offset)} is not the line it "
                          f"was); read it again", file=self.path, stream=stream)

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self.url)
        limit = check_limit(limit, self.url)
        self._ensure_open()
        with self._lock:
            if self._out is not None:
                self._out.flush()
            # up to the end of the file now: lines appended while the iterator is open are
            # not read (reading everything and appending to the file ends)
            stop = self._stat().st_size
        return self._read_all(from_position, limit, stop)

    def _read_all(self, from_position: int, limit: int | None,
                  stop: int) -> Iterator[RawEvent]:
        if limit == 0:
            return
        n = 0
        for _, event in self._events(stop=stop):
            if event.position is not None and event.position < from_position:
                continue
            yield event
            n += 1
            if limit is not None and n >= limit:
                return

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        with self._lock:
            return self._append(stream, events, expected_version)

    def _append(self, stream: str, events: Sequence[AppendEvent],
                expected_version: ExpectedVersion) -> int:
        out = self._out
        if out is None:
            self._refuse_write(stream)
        assert out is not None  # not read-only, so open for writing
        # evtools writers hold an exclusive lock on the file from the version check to the
        # end of the write, so of two appending at one expected version, one wins
        with _locked(out, self.path, stream):
            return self._append_locked(out, stream, events, expected_version)

    def _append_locked(self, out: io.BufferedWriter, stream: str,
                       events: Sequence[AppendEvent], expected_version: ExpectedVersion) -> int:
        new = self._start_append(stream, events, expected_version)  # the index is current
        try:
            lines = [self._encode(e) + b"\n" for e in new]
        except EnvelopeError as e:
            raise e.with_context(file=self.path, stream=stream) from None
        payload = b"".join(lines)
        try:
            end = offset = out.seek(0, os.SEEK_END)  # the end now, also after others' lines
            if end and not self._ends_a_line(end):
                # another writer left its last line unfinished (killed before its line
                # break): end it, or our first line would be glued onto it
                out.write(b"\n")
                offset += 1
            out.write(payload)
            out.flush()
            written = os.fstat(out.fileno())
        except OSError as e:
            raise StoreError(f"JSONL {self.path}: write failed: {e}", file=self.path,
                             stream=stream) from e
        index = self._index
        assert index is not None  # _start_append built it
        if end != self._indexed_to[0] or written.st_size != offset + len(payload):
            # a writer that does not lock wrote to the file too: where our lines went, or
            # what came before them, is not known; the next call indexes the file again
            self._index = None
            return new[-1].version
        record = self._records
        info = index.get(stream)
        if info is None:
            info = index[stream] = _StreamInfo(new[-1].version, record)
        else:
            info.last = new[-1].version
        for line in lines:
            if info.tail >= 0:
                self._next[info.tail] = record
            info.tail = record
            self._offsets.append(offset)
            self._next.append(-1)
            offset += len(line)
            record += 1
        self._records = record
        self._last_position = new[-1].position or self._last_position
        self._indexed = written
        self._indexed_to = (offset, self._indexed_to[1] + len(lines))
        return info.last

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                try:
                    self._out.close()
                finally:
                    self._out = None
            self._closed = True


# -- Parquet ------------------------------------------------------------------------------


def _polars() -> Any:
    try:
        import polars
    except ImportError as e:  # pragma: no cover - polars is a core dependency
        raise MissingDependency("polars", "parquet") from e
    return polars


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError as e:
        raise MissingDependency("pyarrow", "parquet") from e
    return pyarrow.parquet


PARQUET_COLUMNS = ("stream", "version", "type", "data", "metadata", "id", "recorded_at",
                   "position", "content_type", "schema_version")


# what each column may be, as files other tools write have it (checked when a file is opened
# for reading): strings (also categorical), integers of any width, bytes (or text, read as
# its UTF-8 bytes, as the SQLite store reads a payload stored as TEXT), a time with a zone
_PARQUET_WANTED = {"stream": "String", "type": "String", "id": "String",
                   "content_type": "String", "version": "an integer type (Int64)",
                   "position": "an integer type (Int64)",
                   "schema_version": "an integer type (Int64)", "data": "Binary (or String)",
                   "metadata": "Binary (or String)",
                   "recorded_at": "a Datetime with a time zone (Datetime('us', 'UTC'))"}


def _parquet_type_fits(pl: Any, column: str, dtype: Any) -> bool:
    if dtype == pl.Null:  # all null: the row check decides
        return True
    wanted = _PARQUET_WANTED[column]
    if wanted == "String":
        return bool(dtype in (pl.String, pl.Categorical, pl.Enum))
    if wanted.startswith("an integer"):
        return bool(dtype.is_integer())
    if wanted.startswith("Binary"):
        return bool(dtype in (pl.Binary, pl.String))
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None


def _parquet_schema(pl: Any) -> dict[str, Any]:
    return {"stream": pl.String, "version": pl.Int64, "type": pl.String,
            "data": pl.Binary, "metadata": pl.Binary, "id": pl.String,
            "recorded_at": pl.Datetime("us", "UTC"), "position": pl.Int64,
            "content_type": pl.String, "schema_version": pl.Int64}


class ParquetStore(_FileStore):
    """Events in a Parquet file (columns in the module docstring).

    ``mode="r"`` reads; ``"w"`` creates or truncates for export; ``"a"`` continues an
    existing file (its rows are copied into a new file first, since a Parquet file cannot
    grow in place). The file is complete, and readable, once the store is closed.
    """

    kind = "Parquet"

    def __init__(self, path: str | os.PathLike[str], mode: Mode = "r", *,
                 row_group_size: int = 65536, batch_size: int = 4096) -> None:
        super().__init__(path, mode)
        self._pl = _polars()
        self._schema = _parquet_schema(self._pl)
        self._row_group = row_group_size
        self._batch = batch_size
        self._writer: Any = None
        self._buffer: list[RawEvent] = []
        if mode == "r":
            self._check_columns()
        else:
            self._open_writer()

    def _check_columns(self) -> None:
        try:
            schema = self._pl.scan_parquet(self.path).collect_schema()
            names = schema.names()
        except Exception as e:  # polars raises many error types for a bad file
            raise StoreUnavailable(f"Parquet {self.path}: cannot read: {e}",
                                   file=self.path) from e
        missing = [c for c in ("stream", "version", "type", "data") if c not in names]
        if missing:
            raise StoreUnavailable(f"Parquet {self.path}: missing columns {missing}",
                                   file=self.path)
        for name, dtype in schema.items():
            if name in _PARQUET_WANTED and not _parquet_type_fits(self._pl, name, dtype):
                what = (f"{dtype} without a time zone (which instant it is is not known)"
                        if name == "recorded_at" and isinstance(dtype, self._pl.Datetime)
                        else str(dtype))
                raise StoreUnavailable(f"Parquet {self.path}: column {name} is {what}, not "
                                       f"{_PARQUET_WANTED[name]}", file=self.path)

    def _open_writer(self) -> None:
        pq = _pyarrow_parquet()
        previous: str | None = None
        if self.mode == "a" and Path(self.path).is_file():
            previous = self.path + ".evtools-old"
            if os.path.lexists(previous):  # the only copy, if an append was interrupted
                raise StoreUnavailable(
                    f"Parquet {self.path}: {previous} is there, the file as it was before an "
                    f"append that did not finish; keep the one of the two to go on with, "
                    f"remove the other, and open it again", file=self.path)
            os.replace(self.path, previous)
        arrow_schema = self._frame([]).to_arrow().schema
        try:
            self._writer = pq.ParquetWriter(self.path, arrow_schema)
        except OSError as e:
            raise StoreUnavailable(f"Parquet {self.path}: cannot open for writing: {e}",
                                   file=self.path) from e
        self._index = {}
        self._records = 0
        if previous is not None:
            try:
                old = ParquetStore(previous, "r", batch_size=self._batch)
                for event in old.read_all():
                    self._buffer.append(event)
                    self._note(event)
                    if len(self._buffer) >= self._row_group:
                        self._flush()
                old.close()
                self._flush()
            except BaseException:
                self._writer.close()
                os.replace(previous, self.path)
                raise
            os.unlink(previous)

    def _note(self, event: RawEvent) -> None:
        assert self._index is not None
        info = self._index.get(event.stream)
        if info is None:
            self._index[event.stream] = _StreamInfo(event.version)
        elif event.version > info.last:
            info.last = event.version
        self._records += 1
        if event.position is not None and event.position > self._last_position:
            self._last_position = event.position

    def _frame(self, events: Iterable[RawEvent]) -> Any:
        columns: dict[str, list[Any]] = {c: [] for c in PARQUET_COLUMNS}
        cols = [columns[c] for c in PARQUET_COLUMNS]
        for e in events:
            for col, value in zip(cols, (e.stream, e.version, e.type, e.data, e.metadata,
                                         e.id, e.recorded_at, e.position, e.content_type,
                                         e.schema_version), strict=True):
                col.append(value)
        return self._pl.DataFrame(columns, schema=self._schema)

    def _flush(self) -> None:
        if self._buffer:
            try:
                self._writer.write_table(self._frame(self._buffer).to_arrow())
            except OSError as e:
                raise StoreError(f"Parquet {self.path}: write failed: {e}",
                                 file=self.path) from e
            self._buffer.clear()

    def _refuse_read(self) -> None:
        self._ensure_open()
        if self._writer is not None:
            raise UsageError(f"Parquet {self.path} is open for export; close it and reopen "
                             f"it with mode='r' to read it", file=self.path)

    def _batches(self, lf: Any) -> Iterator[RawEvent]:
        """Rows of the lazy frame ``lf`` (of :meth:`_scan_frame`) as events, one polars
        batch at a time, each checked (:meth:`_check_batch`)."""
        pl = self._pl
        try:
            batches = lf.collect_batches(chunk_size=self._batch)
            for batch in batches:
                self._check_batch(batch)
                yield from self._rows(batch)
        except pl.exceptions.PolarsError as e:
            raise StoreError(f"Parquet {self.path}: read failed: {e}", file=self.path) from e

    def _check_batch(self, batch: Any) -> None:
        """An :class:`~evtools.errors.InputError` naming the first row of ``batch`` with a
        value no event has (a null where one is needed, a version below 0 ...)."""
        pl = self._pl
        tests = {"stream": pl.col("stream").is_null() | (pl.col("stream").cast(pl.String) == ""),
                 "version": pl.col("version").is_null() | (pl.col("version") < 0),
                 "type": pl.col("type").is_null() | (pl.col("type").cast(pl.String) == ""),
                 "data": pl.col("data").is_null(),
                 "position": pl.col("position") < 0,
                 "schema_version": pl.col("schema_version") < 1}
        present = {c: t for c, t in tests.items() if c in batch.columns}
        bad = batch.filter(pl.any_horizontal(*present.values()).fill_null(False)).head(1)
        if not bad.height:
            return
        row = bad.row(0, named=True)
        stream, version = row.get("stream"), row.get("version")
        for column, test in present.items():
            if bad.select(test.fill_null(False)).item():
                value = row[column]
                wanted = {"stream": "a non-empty String", "type": "a non-empty String",
                          "data": "the payload's bytes", "schema_version": "an integer >= 1"
                          }.get(column, "an integer >= 0")
                raise InputError(
                    f"Parquet {self.path}: row {row['_record']} is not a usable event: "
                    f"column {column} holds {'null' if value is None else repr(value)}, "
                    f"not {wanted}", file=self.path,
                    stream=stream if isinstance(stream, str) and stream else None,
                    version=version if isinstance(version, int) and version >= 0 else None)

    def _rows(self, batch: Any) -> Iterator[RawEvent]:
        n = batch.height
        cols = []
        for name in PARQUET_COLUMNS:
            if name in batch.columns:
                cols.append(batch.get_column(name).to_list())
            else:
                cols.append([None] * n)
        for s, v, t, d, m, i, r, p, c, sv in zip(*cols, strict=True):
            yield RawEvent(s, v, t, d, b"" if m is None else m, "" if i is None else i,
                           None if r is None else r.replace(tzinfo=UTC), p,
                           JSON_CONTENT_TYPE if c is None else c, 1 if sv is None else sv)

    def _scan_frame(self) -> Any:
        """The file as a lazy frame of the columns as events have them, with ``_record``,
        the 1-based row number."""
        pl = self._pl
        lf = pl.scan_parquet(self.path).with_row_index("_record", offset=1)
        schema = lf.collect_schema()
        pos = (pl.coalesce(pl.col("position").cast(pl.Int64), pl.col("_record").cast(pl.Int64))
               if "position" in schema else pl.col("_record").cast(pl.Int64))
        columns = [pos.alias("position")]
        for name in ("data", "metadata"):
            if schema.get(name) == pl.String:  # text: its UTF-8 bytes
                columns.append(pl.col(name).cast(pl.Binary))
        when = schema.get("recorded_at")
        if isinstance(when, pl.Datetime) and when.time_zone not in (None, "UTC"):
            # the same instant in UTC (the rows relabel the zone, they do not convert)
            columns.append(pl.col("recorded_at").dt.convert_time_zone("UTC"))
        return lf.with_columns(columns)

    def _build_index(self) -> dict[str, _StreamInfo]:
        self._refuse_read()
        index: dict[str, _StreamInfo] = {}
        self._index = index
        self._records = 0
        self._last_position = 0
        try:
            for event in self._batches(self._scan_frame().select("stream", "version",
                                                                 "position", "_record")):
                self._note(event)
        except BaseException:
            self._index = None  # not half an index
            raise
        return index

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self.url, stream)
        limit = check_limit(limit, self.url)
        self._refuse_read()
        if self.stream_version(stream) is None:
            raise StreamNotFound(f"Parquet {self.path}: stream {stream!r} does not exist",
                                 stream=stream, file=self.path)
        pl = self._pl
        lf = self._scan_frame().filter((pl.col("stream") == stream)
                                       & (pl.col("version") >= from_version))
        if limit is not None:
            lf = lf.head(limit)
        return self._batches(lf)

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self.url)
        limit = check_limit(limit, self.url)
        self._refuse_read()
        pl = self._pl
        lf = self._scan_frame()
        if from_position:
            lf = lf.filter(pl.col("position") >= from_position)
        if limit is not None:
            lf = lf.head(limit)
        return self._batches(lf)

    def stream_version(self, stream: str) -> int | None:
        if self._writer is None:
            self._refuse_read()
        return super().stream_version(stream)

    def list_streams(self) -> Iterator[str]:
        if self._writer is None:
            self._refuse_read()
        return super().list_streams()

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        with self._lock:
            new = self._start_append(stream, events, expected_version)
            self._buffer.extend(new)
            if len(self._buffer) >= self._row_group:
                self._flush()
            for event in new:
                self._note(event)
            return new[-1].version

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                try:
                    self._flush()
                finally:
                    self._writer.close()
                    self._writer = None
            self._closed = True


def file_store_for(path: str, mode: Mode = "r", **options: Any) -> EventStore:
    """``JsonlStore`` or ``ParquetStore`` by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JsonlStore(path, mode, **options)
    if suffix == ".parquet":
        return ParquetStore(path, mode, **options)
    raise UsageError(f"no file store for {path!r}: use a .jsonl or .parquet file")
