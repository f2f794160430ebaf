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
naming the file and line. Versions, positions and schema versions are int64 (at most
2**63-1) in both forms, as in every store.

Appends are atomic: all the events of one ``append`` or none, also when the write fails
midway (a full disk, a file size limit: the lines written are taken back before the
error is raised) or the writer is killed. For the killed writer, readers recognise an
append that did not finish:

* every line of an append of several events carries ``"evbatchrest": n`` (an extension
  attribute in a CloudEvents envelope, a key of the same name in a flat record), the
  number of lines of the same append that follow it (0 on its last line); the one line
  of an append of one event carries none, so a file without the attribute (of another
  tool, or of an older evtools) is read line by line as it always was. An append is
  there when its last line is: readers leave out the lines of one that did not finish,
  whether it ends the file or, a writer that does not lock having appended after it, lies
  inside it (that is logged). A reader hands out the events of an append once it has
  read its last line, holding its lines until then (up to 1 MiB of them; the rest of a
  bigger append is looked for ahead, its lines read twice, the second time without
  decoding them);
* the last line of the file without its line break that is not complete JSON is a line
  cut off in the middle; readers leave it out (a complete last line without a line break
  is read: other tools write files so);
* the next append (which holds the file's lock) first removes what an append that did
  not finish left at the end of the file. Opening a file does not write to it.

Appends are not synced to disk (no ``fsync``): a crash of the whole machine can lose
the last ones. An append goes to the file that the path names when the append runs, also
when another tool has replaced the file since the store opened it (a new file renamed
onto the path); its expected version is checked against that file.

Readers take no lock. A reader that has read part of a killed append's tail while the
next writer removes it and writes another append in its place sees that the bytes it
holds are no longer in the file, and raises a :class:`~evtools.errors.StoreError` saying
so (read again), rather than hand out lines of both.

Known limits: flat records that carry the mark are refused by evtools versions from
before it (their flat records allow no other key); CloudEvents readers ignore an
extension they do not know. A file cut inside an append (``head -n``) loses that append,
logged at INFO, and the next append removes its lines.

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
:class:`~evtools.errors.InputError` naming the row: versions and positions from 0, and
schema versions from 1, to 2**63-1; times from the years 1 to 9999 in whole
microseconds (a ``timestamp[ns]`` whose nanoseconds are not zeros is refused, as
datetime cannot keep them). Writing buffers ``row_group_size`` rows and writes them as
one row group (pyarrow's ``ParquetWriter``, the ``parquet`` extra) into a new file
beside the export (``<name>.<pid>.<random>.evtools-tmp``), which ``close()`` renames
onto the export's path: a Parquet file becomes readable when it is closed, so an export
store refuses reads until then (reopen it with ``mode="r"``), and an export is all or
nothing: until ``close()`` has returned the file at the path is the one that was there
before (none, or for ``mode="a"`` the one appended to). ``append`` refuses an event no
Parquet reader could read back (a schema version beyond int64, a time with nanoseconds);
a write that fails (at an append that fills a row group, or at ``close()``) is a
:class:`~evtools.errors.StoreError` naming the file, and the export is abandoned: the
new file is removed and the file at the path stays as it was. A process killed before
``close()`` leaves the ``.evtools-tmp`` file behind (remove it). Reading streams batches
through ``polars.scan_parquet``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import os
import re
import threading
import uuid
from abc import abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
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
    EvtoolsError,
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
    PreparedEvent,
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


_INT64_MAX = 2**63 - 1


@contextlib.contextmanager
def _locked(out: io.FileIO, path: str, stream: str) -> Iterator[None]:
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


def _write_all(out: io.FileIO, data: bytes) -> None:
    """Write all of ``data`` (an unbuffered write may write part of it)."""
    view = memoryview(data)
    while view:
        n = out.write(view)
        if not n:
            raise OSError(f"the write wrote nothing ({len(view)} bytes left)")
        view = view[n:]


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
    _needs_id = False  # whether an event id may not be empty (a CloudEvents envelope's)

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
        return self._writable(stream, [
            p.to_raw(stream, first + i, position + i)
            for i, p in enumerate(prepare_events(self.url, stream, events, first))])

    def _writable(self, stream: str, new: list[RawEvent]) -> list[RawEvent]:
        """``new`` as the file can hold it, else a :class:`UsageError` before anything is
        written: what the file's readers would refuse is not written (a number beyond
        int64, a time with nanoseconds, which a pandas ``Timestamp`` can have, an empty id
        where the form needs one: see :meth:`_fit`)."""
        last = new[-1]
        for what, value in (("version", last.version), ("position", last.position or 0)):
            if value > _INT64_MAX:
                raise UsageError(f"{self.url}: the append would take the {what}s of the "
                                 f"file beyond 2**63-1, the largest a file holds",
                                 stream=stream)
        for i, event in enumerate(new):
            fitted = self._fit(stream, event, event.version)
            if fitted is not event:
                new[i] = fitted
        return new

    def _fit(self, stream: str, event: RawEvent, version: int | None) -> RawEvent:
        """``event`` as the file holds it (a datetime subclass's time as a plain
        datetime), or the :class:`UsageError` for a value the file's readers refuse."""
        if event.schema_version > _INT64_MAX:
            raise UsageError(f"{self.url}: schema_version must be an int from 1 to "
                             f"2**63-1, not {event.schema_version}", stream=stream,
                             version=version)
        if not event.id and self._needs_id:
            raise UsageError(f"{self.url}: the event has an empty id, which a CloudEvents "
                             f"envelope cannot hold (its readers refuse it); give it one, "
                             f"or write format='flat', which keeps an empty id",
                             stream=stream, version=version)
        when = event.recorded_at
        if when is not None and type(when) is not datetime:  # a subclass: pandas.Timestamp
            return msgspec.structs.replace(
                event, recorded_at=self._plain_time(when, stream, version))
        return event

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        prepared = super().check_appendable(stream, event, version)
        self._fit(stream, prepared.to_raw(stream, version or 0, None), version)
        return prepared

    def _plain_time(self, when: datetime, stream: str, version: int | None) -> datetime:
        """A datetime subclass's value (a pandas ``Timestamp``) as a plain datetime in UTC;
        nanoseconds, which a datetime cannot keep and no reader of the file reads, are
        refused."""
        nanos = getattr(when, "nanosecond", 0)
        if nanos:
            raise UsageError(f"{self.url}: recorded_at {when.isoformat()} has sub-microsecond "
                             f"digits ({nanos} ns), which the file's readers refuse (a "
                             f"datetime keeps microseconds); round it first", stream=stream,
                             version=version)
        try:
            utc = when.astimezone(UTC)
        except (OverflowError, ValueError) as e:
            raise UsageError(f"{self.url}: recorded_at {when!r} is outside the years 1-9999 "
                             f"in UTC", stream=stream, version=version) from e
        return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                        utc.microsecond, tzinfo=UTC)


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
    # the batch mark (see "Appends" in the module docstring), read by split_mark; here so
    # that a record with the mark anywhere but at its end (another tool rewrote the line)
    # decodes
    evbatchrest: int | None = None


_flat_decoder = msgspec.json.Decoder(_Flat)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_members_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()


# -- batch marks: which lines of the file are whole appends --------------------------------

_MARK = "evbatchrest"
_HOLD = 1 << 20  # the bytes of an append's lines a reader holds until its last line
_MARK_KEY = b'"evbatchrest"'
_MARK_WRITTEN = b',"evbatchrest":'
# the mark as this module writes it, the last member of the line (whitespace allowed)
_MARK_TAIL = re.compile(rb',[ \t\r\n]*"evbatchrest"[ \t\r\n]*:[ \t\r\n]*(0|[1-9][0-9]{0,17})'
                        rb'[ \t\r\n]*\}\Z')


class _Mark(msgspec.Struct):
    evbatchrest: Any = None


_mark_decoder = msgspec.json.Decoder(_Mark)


def split_mark(line: bytes, file: str | None = None, lineno: int | None = None
               ) -> tuple[bytes, int | None]:
    """``line`` without its batch mark (``"evbatchrest": n``, the number of lines of the
    same append that follow it, on every line of an append of several events), and the
    mark (``None``: the line is an append of its own).

    The mark as :meth:`JsonlStore.append` writes it, the line's last member, is cut off,
    so that the line decodes as the envelope or record it was before it was marked; a mark
    elsewhere in the line (another tool rewrote it) is read from the line, which is left
    as it is. A mark that is not an int >= 0 is an
    :class:`~evtools.errors.EnvelopeError` naming ``file`` and ``lineno``."""
    first = line.find(_MARK_KEY)
    if first < 0:
        return line, None
    cut = first - 1
    if line[-1:] == b"}" and line.startswith(_MARK_WRITTEN, cut) \
            and line[cut - 1:cut] not in b"{ \t\r\n":  # as written: ',"evbatchrest":N}'
        digits = line[cut + len(_MARK_WRITTEN):-1]
        if digits.isdigit() and len(digits) < 19 and (digits[0] != 0x30 or len(digits) == 1):
            return line[:cut] + b"}", int(digits)
    m = _MARK_TAIL.search(line, max(0, len(line) - 256))
    if m is not None and first >= m.start() and _after_a_member(line, m.start()):
        # the tail holds the line's only mark
        return line[:m.start()] + b"}", int(m.group(1))
    return line, _mark_member(line, file, lineno)


def _after_a_member(line: bytes, end: int) -> bool:
    """Whether what comes before byte ``end`` (a ",") is a member, not the "{"."""
    end -= 1
    while end >= 0 and line[end] in b" \t\r\n":
        end -= 1
    return end >= 0 and line[end] != 0x7B


def _mark_of(line: bytes) -> int | None:
    """The batch mark of ``line`` as :func:`split_mark` reads it, without cutting it off;
    ``-1`` for one that is not an int >= 0."""
    first = line.find(_MARK_KEY)
    if first < 0:
        return None
    m = _MARK_TAIL.search(line, max(0, len(line) - 256))
    if m is not None and first >= m.start() and _after_a_member(line, m.start()):
        return int(m.group(1))
    try:
        return _mark_member(line, None, None)
    except EnvelopeError:
        return -1


def _mark_member(line: bytes, file: str | None, lineno: int | None) -> int | None:
    """The line's own ``evbatchrest`` member, wherever it is (not a payload's key)."""
    try:
        value = _mark_decoder.decode(line).evbatchrest
    except (msgspec.DecodeError, RecursionError):
        return None  # not a JSON object: decoding the line says what is wrong
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _INT64_MAX:
        raise EnvelopeError(f"{_MARK!r} must be an int >= 0 (the number of lines of the "
                            f"same append after this one), not {value!r}",
                            Context(file=file, line=lineno), path=f"/{_MARK}")
    return value


def _marked(lines: list[bytes]) -> tuple[bytes, list[int]]:
    """The lines of one append as written (each ended by a line break; of an append of
    several events, each marked with the number of lines after it), and their lengths."""
    n = len(lines)
    if n == 1:
        return lines[0] + b"\n", [len(lines[0]) + 1]
    parts: list[bytes | memoryview] = []
    lengths = []
    for i, line in enumerate(lines, 1):
        tail = b',"evbatchrest":%d}\n' % (n - i)
        parts += (memoryview(line)[:-1], tail)  # an envelope or record ends with its "}"
        lengths.append(len(line) - 1 + len(tail))
    return b"".join(parts), lengths


def _complete_json(line: bytes) -> bool:
    """Whether ``line`` is one whole JSON value (a line cut off is not)."""
    try:
        _raw_decoder.decode(line)
    except msgspec.DecodeError:
        return False
    except RecursionError:  # whole, only too deep: decoding it says so
        return True
    return True
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
        good = 0 <= rec.version <= _INT64_MAX
        return where.merge(Context(stream=rec.stream or None, event_type=rec.type or None,
                                   version=rec.version if good else None))

    # int64, as every store and the CloudEvents form (from_cloudevent) have them
    if not rec.stream:
        raise EnvelopeError("'stream' is empty", ctx(), path="/stream")
    if not 0 <= rec.version <= _INT64_MAX:
        raise EnvelopeError(f"'version' must be >= 0 and <= 2**63-1, not {rec.version}",
                            ctx(), path="/version")
    if not rec.type:
        raise EnvelopeError("'type' is empty", ctx(), path="/type")
    if not 1 <= rec.schema_version <= _INT64_MAX:
        raise EnvelopeError(f"'schema_version' must be >= 1 and <= 2**63-1, not "
                            f"{rec.schema_version}", ctx(), path="/schema_version")
    if rec.position is not None and not 0 <= rec.position <= _INT64_MAX:
        raise EnvelopeError(f"'position' must be >= 0 and <= 2**63-1, not {rec.position}",
                            ctx(), path="/position")
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
        self._needs_id = format == "cloudevents"
        self._offsets = array("q")  # record -> byte offset of its line
        self._next = array("q")  # record -> the next record of its stream, -1 at the end
        self._indexed: os.stat_result | None = None  # the file as it was indexed
        self._indexed_to = (0, 0)  # the byte and the line the index covers up to
        self._read_to = (0, 0)  # where the last pass over the lines ended
        # unbuffered, so that a write that fails leaves nothing in a buffer to be written
        # later (it is taken back: see _write), and appending (every write goes to the end
        # of the file, also after another writer's lines); "a" writes nothing at the open
        self._out: io.FileIO | None = None
        if mode == "r":
            return
        try:
            self._out = open(self.path, "ab", buffering=0)  # noqa: SIM115
            if mode == "w":
                os.ftruncate(self._out.fileno(), 0)
                self._index = {}
                self._indexed = os.fstat(self._out.fileno())
        except OSError as e:
            raise StoreUnavailable(f"JSONL {self.path}: cannot open for writing: {e}",
                                   file=self.path) from e

    # -- reading the file ------------------------------------------------------------------

    def _open_for_reading(self) -> io.BufferedReader:
        self._ensure_open()
        try:
            return open(self.path, "rb")
        except OSError as e:
            raise StoreUnavailable(f"JSONL {self.path}: cannot read: {e}",
                                   file=self.path) from e

    def _lines(self, start: int = 0, first_line: int = 1, stop: int | None = None
               ) -> Iterator[tuple[int, int, bytes]]:
        """(byte offset, line number, line without its batch mark) of every non-blank line
        of the file that a finished append wrote, from byte ``start`` (the start of line
        ``first_line``, where no append is half read) on, up to the lines that start at
        byte ``stop`` or later. A UTF-8 byte order mark at the start of the file is not
        part of the first line (RFC 8259 lets a parser ignore it).

        The lines of an append that did not finish are left out (see "Appends" in the
        module docstring): the lines of an append of several events are handed out once
        its last line is read, held until then up to ``_HOLD`` bytes; past that, the rest
        of the append is looked for ahead (a second handle reads its lines, not decoding
        them) and its lines are handed out as they are read. ``_read_to`` is set, when the
        pass is over, to where the lines of finished appends end: an append that did not
        finish at the end of the file (its writer killed, or still writing) is not part
        of what was read."""
        f = self._open_for_reading()
        ahead: io.BufferedReader | None = None
        try:
            f.seek(start)
            pos = start
            done = (start, first_line - 1)  # where the lines of finished appends end
            remaining = 0  # lines still to come of the append being read
            held: list[tuple[int, int, bytes]] = []  # its lines, until its last is read
            size = 0  # their bytes
            # the bytes of the file from its first line held on, as read: handed out only
            # if the file still holds them (a writer may have cut a killed append away and
            # written another in its place meanwhile: readers take no lock)
            span = bytearray()
            skip = 0  # lines still to leave out of an append that did not finish
            for lineno, raw in enumerate(f, first_line):
                offset = pos
                if stop is not None and offset >= stop:
                    return
                pos += len(raw)
                stripped = (_without_bom(raw) if offset == 0 else raw).strip(JSON_WHITESPACE)
                if held:
                    span += raw
                if not stripped or skip:
                    if stripped:
                        skip -= 1
                    if not remaining and not skip:
                        done = (pos, lineno)
                    continue
                if not raw.endswith(b"\n") and not _complete_json(stripped):
                    if remaining and not held:  # the look ahead found the append whole
                        raise self._changed_under_read(lineno)
                    log.warning("JSONL %s: line %d, the last, is cut off (a write that did "
                                "not finish); it is left out", self.path, lineno)
                    break
                line, mark = split_mark(stripped, self.path, lineno)
                if remaining:
                    if mark == remaining - 1:  # the append's next line
                        remaining -= 1
                        if not held:  # its lines were looked for ahead: hand them out
                            yield offset, lineno, line
                            if not remaining:
                                done = (pos, lineno)
                            continue
                        held.append((offset, lineno, line))
                        size += len(line)
                        if not remaining:  # its last line: the append is whole
                            self._check_held(f, held[0][0], span, lineno)
                            yield from held
                            held.clear()
                            done = (pos, lineno)
                        elif size > _HOLD:  # a big append: look for its last line ahead
                            if ahead is None:
                                ahead = self._open_for_reading()
                            found, whole = self._rest_of_append(ahead, pos, remaining, stop)
                            if whole:
                                self._check_held(f, held[0][0], span, lineno)
                                yield from held
                            elif found is None:  # up to the end: unfinished, or being written
                                break
                            else:
                                self._log_unfinished(held[0][1], found + len(held))
                                skip, remaining = found, 0
                                if not skip:
                                    done = (pos, lineno)
                            held.clear()
                        continue
                    if not held:  # the look ahead found them, and now they are not there
                        raise self._changed_under_read(lineno)
                    # the lines held are an append that did not finish (a writer that does
                    # not lock went on after it): left out; this line is read as any other
                    self._log_unfinished(held[0][1], len(held))
                    held.clear()
                    remaining = 0
                    done = (offset, lineno - 1)
                if mark:  # the first line of an append of mark + 1 lines
                    held.append((offset, lineno, line))
                    size = len(line)
                    span[:] = raw
                    remaining = mark
                    continue
                yield offset, lineno, line
                done = (pos, lineno)
            if remaining and not held:  # the look ahead found the append whole
                raise self._changed_under_read(None)
            if held:
                log.info("JSONL %s: the append from line %d on is not finished (or is being "
                         "written); it is left out", self.path, held[0][1])
            self._read_to = done  # where the pass ended, for an index to go on
        finally:
            f.close()
            if ahead is not None:
                ahead.close()

    def _check_held(self, f: io.BufferedReader, start: int, span: bytearray,
                    lineno: int) -> None:
        """The lines held from byte ``start`` on (``span``, as read) are still what the
        file holds there, or the :class:`StoreError` of a file changed under the read."""
        if os.pread(f.fileno(), len(span), start) != span:
            raise self._changed_under_read(lineno)

    def _changed_under_read(self, lineno: int | None) -> StoreError:
        where = "its end" if lineno is None else f"line {lineno}"
        return StoreError(f"JSONL {self.path}: the file changed while it was being read "
                          f"({where} is not what it was); read it again", file=self.path)

    def _log_unfinished(self, first: int, lines: int) -> None:
        log.warning("JSONL %s: the append from line %d on did not finish (%d of its lines "
                    "are there, and other lines after them); it is left out", self.path,
                    first, lines)

    def _rest_of_append(self, f: io.BufferedReader, start: int, rest: int,
                        stop: int | None) -> tuple[int | None, bool]:
        """Whether the ``rest`` lines of an append that follow its first line (which ends
        at byte ``start``) are all there: ``(rest, True)`` if so; ``(n, False)`` if only
        ``n`` are, and a line that is none of them follows (a writer that does not lock
        went on after an append that did not finish); ``(None, False)`` if the file (or
        what is read of it, up to ``stop``) ends first."""
        f.seek(start)
        pos = start
        found = 0
        for raw in f:
            if stop is not None and pos >= stop:
                break
            pos += len(raw)
            stripped = raw.strip(JSON_WHITESPACE)
            if not stripped:
                continue
            if not raw.endswith(b"\n") and not _complete_json(stripped):
                break  # cut off
            rest -= 1
            if _mark_of(stripped) != rest:  # not one of them (or a bad mark, said later)
                return found, False
            found += 1
            if not rest:
                return found, True
        return None, False

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
                    line, _ = split_mark(line, self.path)
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
        for _ in range(3):
            out = self._out
            if out is None:
                self._refuse_write(stream)
            assert out is not None  # not read-only, so open for writing
            # evtools writers hold an exclusive lock on the file from the version check to
            # the end of the write, so of two appending at one expected version, one wins
            with _locked(out, self.path, stream):
                if self._names(out, stream):
                    return self._append_locked(out, stream, events, expected_version)
            self._reopen(stream)  # the path names another file now: lock and check that
        raise StoreError(f"JSONL {self.path}: the file keeps being replaced while it is "
                         f"appended to; nothing was appended", file=self.path, stream=stream)

    def _names(self, out: io.FileIO, stream: str) -> bool:
        """Whether the path still names the file ``out`` writes to (another tool may have
        written a new file and renamed it onto the path since it was opened)."""
        try:
            now = os.stat(self.path)
            mine = os.fstat(out.fileno())
        except FileNotFoundError as e:
            raise StoreError(f"JSONL {self.path}: the file was removed while it was open for "
                             f"export; nothing was appended", file=self.path,
                             stream=stream) from e
        except OSError as e:
            raise StoreError(f"JSONL {self.path}: cannot read: {e}", file=self.path,
                             stream=stream) from e
        return (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev)

    def _reopen(self, stream: str) -> None:
        """Open the file the path names now for the appends (the index, of the file that
        was replaced, is built again)."""
        log.info("JSONL %s was replaced since it was opened; appending to the new file",
                 self.path)
        try:
            out = open(self.path, "ab", buffering=0)  # noqa: SIM115
        except OSError as e:
            raise StoreError(f"JSONL {self.path}: the file was replaced and the new one "
                             f"cannot be opened for writing: {e}; nothing was appended",
                             file=self.path, stream=stream) from e
        old, self._out = self._out, out
        self._index = None
        if old is not None:
            with contextlib.suppress(OSError):
                old.close()

    def _append_locked(self, out: io.FileIO, stream: str, events: Sequence[AppendEvent],
                       expected_version: ExpectedVersion) -> int:
        for _ in range(3):
            new = self._start_append(stream, events, expected_version)  # the index is current
            index = self._index
            assert index is not None  # _start_append built it
            end, lines = self._indexed_to  # where the lines of finished appends end
            try:
                size = os.fstat(out.fileno()).st_size
            except OSError as e:
                raise StoreError(f"JSONL {self.path}: cannot read: {e}", file=self.path,
                                 stream=stream) from e
            if size <= end or self._drop_unfinished(out, end, lines, size, stream):
                break
            self._index = None  # lines of a finished append there after all: index again
        else:
            raise StoreError(f"JSONL {self.path}: the file keeps changing under the lock (a "
                             f"writer that does not lock?); nothing was appended",
                             file=self.path, stream=stream)
        try:
            encoded = [self._encode(e) for e in new]
        except EnvelopeError as e:
            raise e.with_context(file=self.path, stream=stream) from None
        payload, lengths = _marked(encoded)
        del encoded
        # after a last line without its line break (a tool that writes none), a line break
        # first, or our first line would be glued onto it
        prefix = b"\n" if end and not self._ends_a_line(end) else b""
        self._write(out, prefix + payload if prefix else payload, min(size, end), stream)
        offset = end + len(prefix)
        try:
            written = os.fstat(out.fileno())
        except OSError:
            self._index = None
            return new[-1].version
        if written.st_size != offset + len(payload):
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
        for length in lengths:
            if info.tail >= 0:
                self._next[info.tail] = record
            info.tail = record
            self._offsets.append(offset)
            self._next.append(-1)
            offset += length
            record += 1
        self._records = record
        self._last_position = new[-1].position or self._last_position
        self._indexed = written
        self._indexed_to = (offset, lines + len(lengths))
        return info.last

    def _drop_unfinished(self, out: io.FileIO, end: int, lines: int, size: int,
                         stream: str) -> bool:
        """Cut the file back to byte ``end`` (line ``lines``), where the lines of finished
        appends end, taking away what an append that did not finish left after them (its
        writer killed, or failed without taking its lines back): no reader reads it, and
        our lines must not follow it. ``False``, and nothing cut, if a finished append is
        there after all (the file changed since it was indexed)."""
        if next(self._lines(end, lines + 1), None) is not None:
            return False
        log.warning("JSONL %s: removing the last %d bytes, what an append that did not "
                    "finish left (no reader reads them)", self.path, size - end)
        try:
            os.ftruncate(out.fileno(), end)
            self._indexed = os.fstat(out.fileno())  # the file as it was indexed
        except OSError as e:
            raise StoreError(f"JSONL {self.path}: cannot remove what an append that did not "
                             f"finish left at the end of the file: {e}; nothing was appended",
                             file=self.path, stream=stream) from e
        return True

    def _write(self, out: io.FileIO, payload: bytes, end: int, stream: str) -> None:
        """Write ``payload`` after byte ``end`` (the end of the file) or, if that fails
        midway, take back what was written (cut the file back to ``end``) and raise."""
        try:
            _write_all(out, payload)
        except BaseException as e:
            try:
                os.ftruncate(out.fileno(), end)
                self._indexed = os.fstat(out.fileno())  # as it was: no new index needed
            except OSError as undo:
                self._index = None
                raise StoreError(
                    f"JSONL {self.path}: write failed ({e}), and what was written could not "
                    f"be taken back ({undo}): readers leave it out (an append that did not "
                    f"finish) and the next append removes it", file=self.path,
                    stream=stream) from e
            if isinstance(e, OSError):
                raise StoreError(f"JSONL {self.path}: write failed: {e}; nothing of the "
                                 f"append was kept", file=self.path, stream=stream) from e
            raise

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


# the years 1 to 9999 (what a datetime holds) in milli- and microseconds since 1970
_TIME_RANGE_US = (-62135596800_000000, 253402300799_999999)
_TIME_RANGE_MS = (-62135596800_000, 253402300799_999)


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
        self._tmp: str | None = None  # the new file the export is written to
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
        """Start the export: a new file beside the path (renamed onto it by ``close``),
        holding first, for ``mode="a"``, the rows of the file there now."""
        pq = _pyarrow_parquet()
        previous: ParquetStore | None = None
        if self.mode == "a":
            left = self.path + ".evtools-old"  # what an older evtools left when killed
            if os.path.lexists(left):  # the only copy, if an append was interrupted
                raise StoreUnavailable(
                    f"Parquet {self.path}: {left} is there, the file as it was before an "
                    f"append that did not finish; keep the one of the two to go on with, "
                    f"remove the other, and open it again", file=self.path)
            if Path(self.path).is_file():
                previous = ParquetStore(self.path, "r", batch_size=self._batch)
        arrow_schema = self._frame([]).to_arrow().schema
        self._tmp = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.evtools-tmp"
        try:
            self._writer = pq.ParquetWriter(self._tmp, arrow_schema)
        except OSError as e:
            self._tmp = None
            if previous is not None:
                previous.close()
            raise StoreUnavailable(f"Parquet {self.path}: cannot open for writing: {e}",
                                   file=self.path) from e
        self._index = {}
        self._records = 0
        if previous is not None:
            try:
                for event in previous.read_all():
                    self._buffer.append(event)
                    self._note(event)
                    if len(self._buffer) >= self._row_group:
                        self._flush()
                self._flush()
            except BaseException:
                self._abandon()
                raise
            finally:
                previous.close()

    def _abandon(self) -> None:
        """Give the export up: close the writer and remove its new file (the file at the
        path stays as it was). The store is closed."""
        writer, self._writer = self._writer, None
        tmp, self._tmp = self._tmp, None
        self._buffer.clear()
        self._closed = True
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

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
        """Write the buffer as a row group; if that fails, the export is abandoned (see
        :meth:`_abandon`) and a :class:`StoreError` raised."""
        if self._buffer:
            try:
                self._writer.write_table(self._frame(self._buffer).to_arrow())
            except Exception as e:  # OSError, or pyarrow's or polars' errors
                self._abandon()
                raise StoreError(f"Parquet {self.path}: write failed: {e}; the export is "
                                 f"abandoned, the file left as it was before it was opened",
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
        value no event has (a null where one is needed, a version below 0 or beyond int64,
        a time outside the years 1-9999 or with nanoseconds ...)."""
        pl = self._pl
        checks = [
            ("stream", pl.col("stream").is_null() | (pl.col("stream").cast(pl.String) == ""),
             "a non-empty String"),
            ("version", pl.col("version").is_null() | (pl.col("version") < 0)
             | (pl.col("version") > _INT64_MAX), "an integer from 0 to 2**63-1"),
            ("type", pl.col("type").is_null() | (pl.col("type").cast(pl.String) == ""),
             "a non-empty String"),
            ("data", pl.col("data").is_null(), "the payload's bytes"),
            ("position", (pl.col("position") < 0) | (pl.col("position") > _INT64_MAX),
             "an integer from 0 to 2**63-1"),
            ("schema_version", (pl.col("schema_version") < 1)
             | (pl.col("schema_version") > _INT64_MAX), "an integer from 1 to 2**63-1")]
        when = batch.schema.get("recorded_at")
        if isinstance(when, pl.Datetime):
            unit = when.time_unit or "us"
            low, high = {"ms": _TIME_RANGE_MS, "us": _TIME_RANGE_US}.get(unit, (None, None))
            epoch = pl.col("recorded_at").dt.epoch(unit)
            if low is not None:
                checks.append(("recorded_at", (epoch < low) | (epoch > high),
                               "a time from the years 1 to 9999"))
            if unit == "ns":  # datetime keeps microseconds: the digits after are not dropped
                checks.append(("recorded_at", epoch % 1000 != 0,
                               "a time in whole microseconds (datetime cannot keep the "
                               "digits after)"))
        present = [(c, t, w) for c, t, w in checks if c in batch.columns]
        bad = batch.filter(pl.any_horizontal(*(t for _, t, _ in present)).fill_null(False)
                           ).head(1)
        if not bad.height:
            return
        # the row without its time, which may not be a datetime (year 10000)
        row = bad.select(pl.exclude("recorded_at")).row(0, named=True)
        stream, version = row.get("stream"), row.get("version")
        for column, test, wanted in present:
            if bad.select(test.fill_null(False)).item():
                value = (bad.select(pl.col(column).cast(pl.String)).item()
                         if column == "recorded_at" else row[column])
                raise InputError(
                    f"Parquet {self.path}: row {row['_record']} is not a usable event: "
                    f"column {column} holds {'null' if value is None else repr(value)}, "
                    f"not {wanted}", file=self.path,
                    stream=stream if isinstance(stream, str) and stream else None,
                    version=version if isinstance(version, int)
                    and 0 <= version <= _INT64_MAX else None)

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
        # int64, but for a UInt64 column, whose values beyond int64 the rows check names
        # (a cast would fail, or make them nulls and so record numbers)
        wide = pl.UInt64 if schema.get("position") == pl.UInt64 else pl.Int64
        pos = (pl.coalesce(pl.col("position").cast(wide), pl.col("_record").cast(wide))
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
            self._ensure_open()
            new = self._start_append(stream, events, expected_version)  # checked to fit
            self._buffer.extend(new)
            if len(self._buffer) >= self._row_group:
                self._flush()
            for event in new:
                self._note(event)
            return new[-1].version

    def close(self) -> None:
        """Write what is buffered and put the new file in place of the path's; if that
        fails, a :class:`StoreError` naming the file, which stays as it was."""
        with self._lock:
            if self._writer is not None:
                tmp = self._tmp
                try:
                    self._flush()
                    self._writer.close()
                    self._writer = None
                    assert tmp is not None
                    os.replace(tmp, self.path)
                    self._tmp = None
                except EvtoolsError:
                    self._abandon()
                    raise
                except Exception as e:
                    self._abandon()
                    raise StoreError(f"Parquet {self.path}: the export could not be "
                                     f"written: {e}; the file is as it was before it was "
                                     f"opened", file=self.path) from e
                except BaseException:
                    self._abandon()
                    raise
            self._closed = True


def file_store_for(path: str, mode: Mode = "r", **options: Any) -> EventStore:
    """``JsonlStore`` or ``ParquetStore`` by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JsonlStore(path, mode, **options)
    if suffix == ".parquet":
        return ParquetStore(path, mode, **options)
    raise UsageError(f"no file store for {path!r}: use a .jsonl or .parquet file")
