"""``SqliteStore``: the embedded default store (stdlib ``sqlite3``, WAL).

One table; the schema is the contract with other tools reading the file::

    CREATE TABLE events (
        position       INTEGER PRIMARY KEY,   -- global position, 1, 2, ... (the rowid)
        stream         TEXT    NOT NULL,
        version        INTEGER NOT NULL,      -- 0-based position in the stream
        type           TEXT    NOT NULL,
        data           BLOB    NOT NULL,      -- payload bytes, never decoded
        metadata       BLOB    NOT NULL,
        id             TEXT    NOT NULL,
        recorded_at    TEXT,                  -- ISO 8601 with offset, UTC
        content_type   TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        UNIQUE (stream, version)              -- the index read_stream uses
    );                                        -- read_all walks the primary key

``PRAGMA user_version`` is 1 for this layout.

SQLite is typeless, so rows written by other tools are checked as they are read (a page at
a time, in C where evtools._speedups was built): a row whose columns do not hold what the
schema says (a version that is not an integer >= 0, a time that is not ISO 8601 text of a
date and time with a UTC offset or that has digits beyond the microsecond, which datetime
cannot keep, a payload that is a number ...) is an :class:`~evtools.errors.InputError`
naming the file, the row's position, stream and version, the column and what it holds. A
``data`` or ``metadata`` payload stored as TEXT (as tools that write JSON as a string do)
is read as the bytes SQLite keeps for it (UTF-8 in a database evtools creates; bytes that
are not UTF-8 are handed over as they are, for the registry to report).

An append is one ``BEGIN IMMEDIATE`` transaction: the expected-version check and the
``executemany`` insert happen under the database write lock, so of two processes
appending at the same expected version exactly one wins and the other gets
:class:`~evtools.errors.ConcurrencyError`; a process killed in the middle of an append
leaves nothing of its batch (SQLite rolls the unfinished transaction back). Reads page
with keyset queries (``position > ?`` / ``version >= ?`` with ``LIMIT``): memory stays
bounded, and no statement stays open while the caller holds the iterator. A read goes up
to the last row there when it was called (``read_stream``: the stream's; ``read_all``: the
store's), so reading and appending to the same store ends. A ``from_version`` or
``from_position`` beyond 2**63-1 (SQLite's largest INTEGER) is beyond every row: it reads
nothing.

An event is written as one row, which SQLite limits (``SQLITE_LIMIT_LENGTH``, a billion
bytes unless the build says otherwise): a larger one is a
:class:`~evtools.errors.UsageError` naming the stream and version before anything is
written. A copied event without a time (``recorded_at`` ``None``) is stored with a NULL
``recorded_at`` and one with an empty id with an empty ``id``: both read back as they were.

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
``sqlite:///:memory:``, with the options ``?mode=ro`` (or ``r``; ``a``, ``rw``) and
``?timeout=5`` (an unknown option is a :class:`~evtools.errors.UsageError`); a bare path
ending ``.db``, ``.sqlite`` or ``.sqlite3`` also opens this store (``evtools generate``
writes ``data/events.db``).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .._accel import speedups
from ..errors import (
    ConcurrencyError,
    InputError,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from ..events import JSON_CONTENT_TYPE, RawEvent
from .base import (
    ANY,
    INT64_MAX,
    AppendEvent,
    EventStore,
    ExpectedVersion,
    PreparedEvent,
    check_expected,
    check_limit,
    check_start,
    describe_version,
    prepare_events,
    validate_append,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    data           BLOB    NOT NULL,
    metadata       BLOB    NOT NULL,
    id             TEXT    NOT NULL,
    recorded_at    TEXT,
    content_type   TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    UNIQUE (stream, version)
)
"""
# the content type comes back NULL when it is the usual one: one str object fewer per row;
# a payload another tool stored as TEXT comes back as the bytes SQLite keeps for it (also
# when they are not UTF-8, which a str could not hold)
_AS_BYTES = "CASE typeof({0}) WHEN 'text' THEN CAST({0} AS BLOB) ELSE {0} END"
_COLUMNS = (f"stream, version, type, {_AS_BYTES.format('data')}, "
            f"{_AS_BYTES.format('metadata')}, id, recorded_at, position, "
            f"NULLIF(content_type, '{JSON_CONTENT_TYPE}'), schema_version")
_STREAM_COLUMNS = _COLUMNS.split(", ", 1)[1]  # read_stream knows the stream's name
_INSERT = ("INSERT INTO events (stream, version, type, data, metadata, id, recorded_at, "
           "content_type, schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_READ_ALL = (f"SELECT {_COLUMNS} FROM events WHERE position BETWEEN ? AND ? ORDER BY position "
             "LIMIT ?")
_HEAD = "SELECT max(position) FROM events"
_READ_STREAM = (f"SELECT {_STREAM_COLUMNS} FROM events WHERE stream = ? AND version >= ? "
                "ORDER BY version LIMIT ?")
_READ_STREAM_UP_TO = (f"SELECT {_STREAM_COLUMNS} FROM events WHERE stream = ? AND version "
                      "BETWEEN ? AND ? ORDER BY version LIMIT ?")
_LAST_VERSION = ("SELECT version, position FROM events WHERE stream = ? ORDER BY version DESC "
                 "LIMIT 1")
_LAST_EVENT = (f"SELECT {_STREAM_COLUMNS} FROM events WHERE stream = ? ORDER BY version DESC "
               "LIMIT 1")
_ROW = f"SELECT {_COLUMNS} FROM events WHERE position = ?"
_FIRST_ROW_OF = "SELECT position FROM events WHERE stream IS ? ORDER BY position LIMIT 1"
_STREAMS = "SELECT DISTINCT stream FROM events WHERE stream > ? ORDER BY stream LIMIT ?"
_FIRST_STREAMS = "SELECT DISTINCT stream FROM events ORDER BY stream LIMIT ?"

_fromiso = datetime.fromisoformat
_MIN_INTEGER = -(2**63)
# what a row takes beyond its payloads and names: the record header, three integers, the
# time (SQLite counts the whole record against SQLITE_LIMIT_LENGTH)
_ROW_ROOM = 160


def _texts_bound(stream: str, e: PreparedEvent) -> int:
    """At least the UTF-8 bytes of the row's names (4 a character at most)."""
    return 4 * (len(stream) + len(e.type) + len(e.id) + len(e.content_type))


def _short(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep]}..."

Row = tuple[str, int, str, bytes, bytes, str, "str | None", int, "str | None", int]
StreamRow = tuple[int, str, bytes, bytes, str, "str | None", int, "str | None", int]


def _to_events(rows: list[Row]) -> list[RawEvent]:
    return [RawEvent(s, v, t, d, m, i, _fromiso(r) if r is not None else None, p,
                     JSON_CONTENT_TYPE if c is None else c, sv)
            for s, v, t, d, m, i, r, p, c, sv in rows]


def _to_stream_events(stream: str, rows: list[StreamRow]) -> list[RawEvent]:
    return [RawEvent(stream, v, t, d, m, i, _fromiso(r) if r is not None else None, p,
                     JSON_CONTENT_TYPE if c is None else c, sv)
            for v, t, d, m, i, r, p, c, sv in rows]


# -- rows that do not hold what the schema says ------------------------------------------------
#
# SQLite is typeless: another tool can store 'abc' in version or a number in data, and the
# conversion above checks nothing (it is the hot path). A page of rows is looked at after
# it (_rows_look_right: in C, about 30 ns a row, where evtools._speedups was built; else
# column by column, set(map(type, column)) and min(), about 0.2 us a row and 4 us a page);
# a page that fails, or whose conversion raised, goes through _checked_event row by row,
# which names the row and column or, where the row is usable after all, builds its event.

_STR, _INT, _BYTES, _STR_OR_NONE = {str}, {int}, {bytes}, {str, type(None)}
# what the store writes, datetime.isoformat() of a time in UTC: a full date and time, no
# fraction or six digits of one, an offset ("...+00:00"). Other forms go the slow way: a
# date alone with an offset ("2024-01-01+00:00") converts to a naive midnight, nine digits
# of fraction to six, both refused there; "Z" and other offset forms are read there.
_store_time = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                         r"(?:\.[0-9]{6})?[+-][0-9]{2}:[0-9]{2}\Z").match
# a non-zero digit beyond the sixth of a fraction: what datetime (and fromisoformat, which
# drops it) cannot keep
_sub_microsecond = re.compile(r"[.,][0-9]{6}0*[1-9]").search


def _columns_look_right(streams: tuple[Any, ...] | None, versions: tuple[Any, ...],
                        types: tuple[Any, ...], data: tuple[Any, ...],
                        metadata: tuple[Any, ...], ids: tuple[Any, ...],
                        times: tuple[Any, ...], positions: tuple[Any, ...],
                        content_types: tuple[Any, ...],
                        schema_versions: tuple[Any, ...]) -> bool:
    """Whether the columns of a page (each a tuple) hold what the schema says, as far as a
    cheap look tells: ``False`` sends the page to the row-by-row check (which decides)."""
    return (set(map(type, versions)) == _INT and min(versions) >= 0
            and set(map(type, schema_versions)) == _INT and min(schema_versions) >= 1
            and set(map(type, positions)) == _INT and min(positions) >= 0
            and set(map(type, types)) == _STR and "" not in types
            and set(map(type, ids)) == _STR
            and set(map(type, data)) == _BYTES and set(map(type, metadata)) == _BYTES
            and set(map(type, content_types)) <= _STR_OR_NONE
            # the conversion refused every time that is not ISO text; this passes only the
            # form the store writes (any other goes the slow way, which decides)
            and set(map(type, times)) <= _STR_OR_NONE
            and all(map(_store_time, filter(None, times)))
            and (streams is None or (set(map(type, streams)) == _STR and "" not in streams)))


def _py_rows_look_right(rows: list[Any], with_stream: bool) -> bool:
    """Whether every row of a page (with the stream column first, or without it) holds
    what the schema says, as far as its types tell (the Python twin of the C look)."""
    if not rows:
        return True
    try:
        columns = zip(*rows, strict=True)
        return _columns_look_right(*columns) if with_stream \
            else _columns_look_right(None, *columns)
    except (TypeError, ValueError, IndexError):  # rows of other widths; a time too short
        return False


_rows_look_right: Callable[[list[Any], bool], bool] = (
    speedups.rows_look_right if speedups is not None else _py_rows_look_right)

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}


def _shown(value: object) -> str:
    """A stored value as a message shows it: its SQLite type, and the value, cut short."""
    if value is None:
        return "NULL"
    text = repr(value)
    if len(text) > 60:
        text = text[:50] + "..." + text[-7:]
    return f"{_SQL_TYPES.get(type(value), type(value).__name__)} {text}"


def _is_busy(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    if not url.startswith("sqlite:///"):
        raise UsageError(f"not a SQLite URL (sqlite:///path.db): {url!r}")
    path = url[len("sqlite:///"):]
    path = path.split("?", 1)[0]
    if not path:
        raise UsageError(f"SQLite URL without a path: {url!r}")
    return path


class SqliteStore(EventStore):
    """A SQLite event database at ``path`` (``":memory:"`` for a private in-memory one).

    ``mode="a"`` (default) creates the file when missing and appends; ``mode="r"`` opens
    an existing file read-only. ``timeout`` is how long an append waits for another
    writer's lock before giving up with :class:`~evtools.errors.ConcurrencyError`.
    ``page_size`` is the number of rows a read fetches per query.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *,
                 mode: Literal["r", "a"] = "a", timeout: float = 10.0,
                 page_size: int = 2000) -> None:
        if mode not in ("r", "a"):
            raise UsageError(f"SQLite store mode must be 'r' or 'a', got {mode!r}")
        if page_size < 1:
            raise UsageError(f"page_size must be >= 1, got {page_size!r}")
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self.read_only = mode == "r"
        self._page_size = page_size
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = self._connect(timeout)

    # -- connection ------------------------------------------------------------------------

    def _connect(self, timeout: float) -> sqlite3.Connection:
        in_memory = self.path == ":memory:"
        if not in_memory:
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreUnavailable(f"{self.url}: directory {str(parent)!r} does not exist",
                                       file=self.path)
            if self.read_only and not Path(self.path).is_file():
                what = ("a directory, not a database file" if Path(self.path).is_dir()
                        else "no such database file")
                raise StoreUnavailable(f"{self.url}: {what}", file=self.path)
        target = self.path
        if self.read_only:
            # A read-only connection to a database in WAL mode leaves the -wal and -shm
            # files SQLite makes beside it. Where there is no -wal file yet (no writer has
            # it open, none crashed) and the file may be written, the database is opened
            # read-write but query_only: the last connection to close then removes them, and
            # with an empty WAL its closing checkpoint writes nothing. Where a -wal file is
            # there, read-only: a crashed writer's WAL stays for a writer to recover.
            where = Path(self.path).absolute()
            may_write = (os.access(where, os.W_OK) and os.access(where.parent, os.W_OK)
                         and not Path(f"{where}-wal").exists())
            target = f"file:{quote(where.as_posix())}?mode={'rw' if may_write else 'ro'}"
        try:
            conn = sqlite3.connect(target, timeout=timeout, isolation_level=None,
                                   check_same_thread=False, uri=self.read_only,
                                   cached_statements=64)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.url}: cannot open database: {e}",
                                   file=self.path) from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self.read_only:
                conn.execute("PRAGMA query_only = ON")
            else:
                if not in_memory:
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -32768")  # 32 MiB of page cache
            conn.execute("PRAGMA temp_store = MEMORY")
            self._check_schema(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreUnavailable(f"{self.url}: not a usable SQLite database: {e}",
                                   file=self.path) from e
        except StoreError:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone() is not None
        if has_table and version == SCHEMA_VERSION:
            return
        if has_table or version not in (0, SCHEMA_VERSION):
            raise StoreUnavailable(
                f"{self.url}: not an evtools event database (user_version {version}, "
                f"expected {SCHEMA_VERSION})", file=self.path)
        if self.read_only:
            raise StoreUnavailable(f"{self.url}: database has no events table",
                                   file=self.path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.debug("created event table in %s", self.url)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UsageError(f"{self.url}: the store is closed")
        return self._conn

    def _query(self, sql: str, params: tuple[Any, ...], what: str,
               stream: str | None = None) -> list[Any]:
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"{self.url}: {what} failed: {e}", file=self.path,
                                 stream=stream) from e

    # -- rows to events --------------------------------------------------------------------

    def _events(self, rows: list[Row]) -> list[RawEvent]:
        """``rows`` of ``_READ_ALL`` as events; a row that does not hold what the schema
        says is an :class:`~evtools.errors.InputError` naming it."""
        try:
            events = _to_events(rows)
            if _rows_look_right(rows, True):
                return events
        except (TypeError, ValueError, IndexError):
            pass
        return [self._checked_event(*row) for row in rows]

    def _stream_events(self, stream: str, rows: list[StreamRow]) -> list[RawEvent]:
        """``rows`` of ``_READ_STREAM`` as events, checked as :meth:`_events` does."""
        try:
            events = _to_stream_events(stream, rows)
            if _rows_look_right(rows, False):
                return events
        except (TypeError, ValueError, IndexError):
            pass
        return [self._checked_event(stream, *row) for row in rows]

    def _checked_event(self, stream: Any, version: Any, type_: Any, data: Any, metadata: Any,
                       id_: Any, recorded_at: Any, position: Any, content_type: Any,
                       schema_version: Any) -> RawEvent:
        """The event of one row, every column checked (the slow path): an
        :class:`~evtools.errors.InputError` naming the row, the column and what it holds
        when a column does not hold what the schema says.

        A payload stored as TEXT (SQLite is typeless, and tools that write JSON as a string
        do so) is taken as its UTF-8 bytes (in a UTF-8 database, the bytes SQLite keeps).
        """
        def bad(column: str, value: object, wanted: str) -> InputError:
            return InputError(
                f"{self.url}: the row at position {position} is not a usable event: "
                f"column {column} holds {_shown(value)}, not {wanted}",
                file=self.path,
                stream=stream if isinstance(stream, str) and stream else None,
                version=version if type(version) is int and version >= 0 else None)

        if type(stream) is not str or not stream:
            raise bad("stream", stream, "a non-empty TEXT")
        if type(version) is not int or version < 0:
            raise bad("version", version, "an INTEGER >= 0 (the 0-based version in the stream)")
        if type(type_) is not str or not type_:
            raise bad("type", type_, "a non-empty TEXT")
        payloads = []
        for column, value in (("data", data), ("metadata", metadata)):
            if type(value) is str:
                value = value.encode()
            elif type(value) is not bytes:
                raise bad(column, value, "a BLOB (or TEXT) of payload bytes")
            payloads.append(value)
        if type(id_) is not str:
            raise bad("id", id_, "a TEXT")
        when = None
        if recorded_at is not None:
            wanted = ("an ISO 8601 date and time with a UTC offset (e.g. "
                      "2024-05-01T12:00:00+00:00) or NULL")
            if type(recorded_at) is not str:
                raise bad("recorded_at", recorded_at, wanted)
            try:
                when = _fromiso(recorded_at)
            except ValueError:
                raise bad("recorded_at", recorded_at, wanted) from None
            if when.utcoffset() is None:  # also a date alone: "2024-01-01+00:00"
                raise bad("recorded_at", recorded_at, wanted)
            if _sub_microsecond(recorded_at):  # fromisoformat drops them
                raise bad("recorded_at", recorded_at, "a time of whole microseconds (its "
                          "digits beyond the sixth would be lost: datetime cannot keep them)")
        if type(position) is not int or position < 0:
            raise bad("position", position, "an INTEGER >= 0")
        if content_type is not None and type(content_type) is not str:
            raise bad("content_type", content_type, "a TEXT")
        if type(schema_version) is not int or schema_version < 1:
            raise bad("schema_version", schema_version, "an INTEGER >= 1")
        return RawEvent(stream, version, type_, payloads[0], payloads[1], id_, when, position,
                        JSON_CONTENT_TYPE if content_type is None else content_type,
                        schema_version)

    def _row_error(self, position: int, stream: str | None = None) -> InputError:
        """The error about the row at ``position``, which holds something it should not."""
        rows = self._query(_ROW, (position,), "reading a row", stream)
        try:
            if rows:
                self._checked_event(*rows[0])
        except InputError as e:
            return e
        return InputError(f"{self.url}: the row at position {position} changed while it was "
                          "being read", file=self.path, stream=stream)

    def _last_version(self, row: tuple[Any, Any] | None, stream: str) -> int | None:
        """The version of a ``_LAST_VERSION`` row (``None``: no row), checked."""
        if row is None:
            return None
        version, position = row
        if type(version) is not int or version < 0:
            raise self._row_error(position, stream)
        return version

    # -- the protocol ----------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        expected = validate_append(self.url, stream, events, expected_version)
        self._refuse_write(stream)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise self._write_failure(e, stream, expected) from e
            try:
                actual = self._last_version(conn.execute(_LAST_VERSION, (stream,)).fetchone(),
                                            stream)
                check_expected(self.url, stream, expected, actual)
                first = 0 if actual is None else actual + 1
                conn.executemany(_INSERT, self._rows(conn, stream, events, first))
                conn.execute("COMMIT")
            except (sqlite3.Error, OverflowError) as e:  # OverflowError: "BLOB longer than
                self._rollback(conn)  # INT_MAX bytes", should the size check miss one
                raise self._write_failure(e, stream, expected) from e
            except BaseException:
                self._rollback(conn)
                raise
            return first + len(events) - 1

    def _rows(self, conn: sqlite3.Connection, stream: str, events: Sequence[AppendEvent],
              first: int) -> Iterator[tuple[Any, ...]]:
        """Rows to insert, validated one by one as ``executemany`` pulls them."""
        last_time: datetime | None = None
        last_text: str | None = None
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        for i, e in enumerate(prepare_events(self.url, stream, events, first)):
            if e.recorded_at is not last_time:  # a batch often shares one time
                last_time = e.recorded_at
                last_text = None if last_time is None else last_time.isoformat()
            if len(e.data) + len(e.metadata) > limit - _ROW_ROOM - _texts_bound(stream, e):
                self._check_row_size(limit, stream, first + i, e)
            yield (stream, first + i, e.type, e.data, e.metadata, e.id, last_text,
                   e.content_type, e.schema_version)

    def _check_row_size(self, limit: int, stream: str, version: int | None,
                        e: PreparedEvent) -> None:
        """Refuse an event whose row SQLite would refuse ("string or blob too big")."""
        size = (len(e.data) + len(e.metadata) + _ROW_ROOM
                + sum(len(t.encode("utf-8")) for t in (stream, e.type, e.id, e.content_type)))
        if size > limit:
            raise UsageError(
                f"{self.url}: stream {_short(stream)!r}: an event of {size:,} bytes (data "
                f"{len(e.data):,}, metadata {len(e.metadata):,}, the rest names and "
                f"numbers) is larger than SQLite's limit for a row ({limit:,} bytes, "
                f"SQLITE_LIMIT_LENGTH)", file=self.path, stream=stream, version=version)

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        prepared = super().check_appendable(stream, event, version)
        with self._lock:
            limit = self._connection().getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        self._check_row_size(limit, stream, version, prepared)
        return prepared

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # the transaction may already be gone (e.g. disk I/O)
                log.warning("%s: rollback failed", self.url, exc_info=True)

    def _write_failure(self, e: sqlite3.Error | OverflowError, stream: str,
                       expected: ExpectedVersion) -> StoreError:
        if isinstance(e, sqlite3.IntegrityError):
            actual = self.stream_version(stream)
            return ConcurrencyError(
                f"{self.url}: stream {stream!r} expected {describe_version(expected)}, "
                f"actual {describe_version(actual)} (another writer appended first)",
                expected=expected, actual=actual, stream=stream, file=self.path)
        if isinstance(e, sqlite3.OperationalError) and _is_busy(e):
            return ConcurrencyError(
                f"{self.url}: stream {stream!r}: another writer held the database lock for "
                f"longer than the timeout; expected {describe_version(expected)}",
                expected=expected, actual=None, stream=stream, file=self.path)
        if isinstance(e, OverflowError) or (isinstance(e, sqlite3.DataError)
                                            and "too big" in str(e)):
            return StoreError(f"{self.url}: append to stream {_short(stream)!r} failed: an "
                              f"event of the batch is larger than SQLite takes in a row "
                              f"({e}); nothing was written", stream=stream, file=self.path)
        return StoreError(f"{self.url}: append to stream {stream!r} failed: {e}",
                          stream=stream, file=self.path)

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self.url, stream)
        limit = check_limit(limit, self.url)
        if from_version > INT64_MAX:  # beyond every version (SQLite cannot bind it)
            if self.stream_version(stream) is None:
                raise StreamNotFound(f"{self.url}: stream {stream!r} does not exist",
                                     stream=stream, file=self.path)
            return iter(())
        # the first page now: a short stream is read in one query, and a missing stream
        # (no rows, no version) is an error here rather than at the first next()
        n = self._page_size if limit is None else min(limit, self._page_size)
        # from version 0, from the lowest INTEGER: a row with a negative version (which no
        # store writes) is read, and refused, rather than silently left out
        lowest = from_version if from_version else _MIN_INTEGER
        rows = self._query(_READ_STREAM, (stream, lowest, n), "read_stream", stream) \
            if n else []
        if not rows and self.stream_version(stream) is None:
            raise StreamNotFound(f"{self.url}: stream {stream!r} does not exist",
                                 stream=stream, file=self.path)
        # a stream longer than a page is read up to its head now: events appended while
        # the iterator is open are not read (reading a stream and appending to it ends)
        head = self.stream_version(stream) if n and len(rows) == n else None
        return self._read_stream(stream, limit, n, rows, head)

    def _read_stream(self, stream: str, limit: int | None, n: int,
                     rows: list[StreamRow], head: int | None) -> Iterator[RawEvent]:
        left = limit
        while rows:
            yield from self._stream_events(stream, rows)
            if left is not None:
                left -= len(rows)
            if len(rows) < n or left == 0 or head is None:
                return
            n = self._page_size if left is None else min(left, self._page_size)
            version = rows[-1][0] + 1
            rows = self._query(_READ_STREAM_UP_TO, (stream, version, head, n), "read_stream",
                               stream)

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self.url)
        limit = check_limit(limit, self.url)
        if from_position > INT64_MAX:  # beyond every position (SQLite cannot bind it)
            self._connection()
            return iter(())
        # up to the last event there now: what is appended while the iterator is open is
        # not read (reading everything and appending to the store ends), as in read_stream
        head = self._query(_HEAD, (), "read_all")[0][0]
        return self._read_all(from_position, limit, head if head is not None else -1)

    def _read_all(self, position: int, limit: int | None, head: int) -> Iterator[RawEvent]:
        left = limit
        while left is None or left > 0:
            n = self._page_size if left is None else min(left, self._page_size)
            rows = self._query(_READ_ALL, (position, head, n), "read_all")
            if not rows:
                return
            yield from self._events(rows)
            position = rows[-1][7] + 1
            if left is not None:
                left -= len(rows)
            if len(rows) < n:
                return

    def list_streams(self) -> Iterator[str]:
        self._connection()
        return self._list_streams()

    def _list_streams(self) -> Iterator[str]:
        n = self._page_size
        rows = self._query(_FIRST_STREAMS, (n,), "list_streams")
        while rows:
            for (name,) in rows:
                if type(name) is not str or not name:
                    first = self._query(_FIRST_ROW_OF, (name,), "list_streams")
                    raise self._row_error(first[0][0])
                yield name
            if len(rows) < n:
                return
            rows = self._query(_STREAMS, (rows[-1][0], n), "list_streams")

    def stream_version(self, stream: str) -> int | None:
        rows = self._query(_LAST_VERSION, (stream,), "stream_version", stream)
        return self._last_version(rows[0] if rows else None, stream)

    def last_event(self, stream: str) -> RawEvent | None:
        rows = self._query(_LAST_EVENT, (stream,), "last_event", stream)
        return self._stream_events(stream, rows)[0] if rows else None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
