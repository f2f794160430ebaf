"""The store protocol: the same verbs for every store.

Every store (memory, SQLite, files, NATS JetStream, EventStoreDB) is an
:class:`EventStore` with these methods and promises (``tests/stores/contract.py`` states
them as tests that every store's test module subclasses):

``append(stream, events, expected_version=ANY) -> int``
    Append a non-empty batch to one stream and return the new last version. The batch is
    atomic (all or nothing) where the store can do it (memory, SQLite; NATS up to 1000
    events, see :mod:`evtools.stores.nats`). ``expected_version`` is the optimistic
    concurrency check: :data:`NO_STREAM` (the stream must not exist), :data:`ANY` (no
    check), :data:`STREAM_EXISTS` (it must exist) or an ``int``, the stream's current last
    version. A mismatch raises :class:`~evtools.errors.ConcurrencyError` naming the stream
    and the expected and actual versions. Events are :class:`NewEvent` or
    :class:`~evtools.events.RawEvent`; of a ``RawEvent`` the store ignores ``stream``,
    ``version`` and ``position`` and assigns its own. A ``NewEvent`` is a producer's: an
    empty ``id`` gets a random UUID, a missing ``recorded_at`` the time of the append. A
    ``RawEvent`` is a stored event (what ``copy`` hands over): its ``id`` and
    ``recorded_at`` are kept as they are, an empty id and a missing time included (SQLite,
    memory and Parquet keep both, JSONL and NATS a missing time; a store that cannot hold
    one refuses the event with a :class:`~evtools.errors.UsageError` rather than invent a
    value: NATS and EventStoreDB need an id). Refused before
    anything is written: text with no UTF-8 form (a lone surrogate), a ``schema_version``
    outside 1 to 2**63-1 (what every store keeps: a 64-bit integer), a ``recorded_at`` that
    is not an aware datetime, holds nanoseconds (``pandas.Timestamp``: no store keeps
    them, each would drop or refuse them) or is outside the years 1-9999 once in UTC, and
    what breaks a limit of the store (a size, a name's length): see
    :meth:`EventStore.check_appendable`.
``read_stream(stream, from_version=0, *, limit=None) -> Iterator[RawEvent]``
    The stream's events with ``version >= from_version`` in version order. A stream that
    does not exist raises :class:`~evtools.errors.StreamNotFound` when ``read_stream`` is
    called (not on the first ``next``). Events appended to the stream while the iterator
    is open need not be read: the memory, SQLite and JSONL stores read the stream up to
    its head when ``read_stream`` was called, so reading a stream and appending to it
    ends.
``read_all(from_position=0, *, limit=None) -> Iterator[RawEvent]``
    Every event of every stream in global order: ``position`` strictly increases, and
    ``from_position`` is inclusive (resume with ``last.position + 1``). The memory, SQLite
    and JSONL stores read up to the last event there when ``read_all`` was called, so
    reading everything and appending to the same store ends.
``list_streams() -> Iterator[str]``
    Each stream name once, in a store-specific order.
``stream_version(stream) -> int | None``
    The last version, ``None`` when the stream does not exist.
``last_event(stream) -> RawEvent | None``
    The event at the last version, ``None`` when the stream does not exist (how a
    snapshot is looked up). One request in every store; the default, for other stores,
    asks for the version and then reads it.
``close()``
    Release connections and files; stores are context managers.
``check_appendable(stream, event, version=None)``
    Raise the :class:`~evtools.errors.UsageError` that ``append`` would raise for this
    event in this stream, without writing anything (``copy`` checks every event so before
    it writes one). ``unique_ids`` says why a store keeps one event per id (``""`` where it
    keeps any).

Reads are lazy iterators with bounded memory (pages, batches, cursors), never a whole
stream or store at once, and stores never decode payloads: ``data`` and ``metadata`` are
handed back byte for byte.
"""

from __future__ import annotations

import enum
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import ClassVar, Final, Self, TypeAlias

import msgspec

from ..errors import ConcurrencyError, StreamNotFound, UsageError
from ..events import JSON_CONTENT_TYPE, RawEvent

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendEvent",
    "EventStore",
    "Expected",
    "ExpectedVersion",
    "NewEvent",
    "PreparedEvent",
    "check_expected",
    "check_stream_name",
    "check_text",
    "first_version",
    "prepare_events",
    "redact_url",
    "validate_expected",
]


class Expected(enum.Enum):
    """The symbolic expected versions (an ``int`` is the exact one)."""

    NO_STREAM = "no stream"
    ANY = "any"
    STREAM_EXISTS = "stream exists"

    def __repr__(self) -> str:
        return self.name


NO_STREAM: Final = Expected.NO_STREAM
"""The stream must not exist yet."""
ANY: Final = Expected.ANY
"""No check."""
STREAM_EXISTS: Final = Expected.STREAM_EXISTS
"""The stream must exist (any version)."""

ExpectedVersion: TypeAlias = int | Expected

#: the largest version, position and schema version a store keeps (64-bit signed: SQLite's
#: INTEGER, Parquet's int64, JetStream's and EventStoreDB's numbers)
INT64_MAX: Final = 2**63 - 1


class NewEvent(msgspec.Struct, frozen=True, gc=False):
    """An event to append: what a producer decides; the store assigns the rest.

    ``id`` may be left empty (the store assigns a random UUID) and ``recorded_at`` may be
    ``None`` (the store records the time of the append); ``recorded_at``, when given, must
    be timezone-aware. (A :class:`~evtools.events.RawEvent` appended as it is keeps an
    empty id and a missing time: see :mod:`evtools.stores.base`.)
    """

    type: str
    data: bytes
    metadata: bytes = b""
    id: str = ""
    content_type: str = JSON_CONTENT_TYPE
    schema_version: int = 1
    recorded_at: datetime | None = None

    @classmethod
    def from_raw(cls, event: RawEvent) -> NewEvent:
        """The appendable part of a stored event, as a new event: an empty id and a
        missing time are filled in when it is appended (append the ``RawEvent`` itself to
        keep them absent, as ``copy`` does)."""
        return cls(type=event.type, data=event.data, metadata=event.metadata, id=event.id,
                   content_type=event.content_type, schema_version=event.schema_version,
                   recorded_at=event.recorded_at)


AppendEvent: TypeAlias = NewEvent | RawEvent


class PreparedEvent(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A validated event ready to be written: ``data`` is bytes, ``recorded_at`` a
    ``datetime`` in UTC; the id and time of a new event filled in (a copied ``RawEvent``
    keeps an empty id and a missing time)."""

    type: str
    data: bytes
    metadata: bytes
    id: str
    content_type: str
    schema_version: int
    recorded_at: datetime | None

    def to_raw(self, stream: str, version: int, position: int | None) -> RawEvent:
        return RawEvent(stream, version, self.type, self.data, self.metadata, self.id,
                        self.recorded_at, position, self.content_type, self.schema_version)


def _as_bytes(value: object, what: str, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise UsageError(f"{where}: {what} must be bytes, not {type(value).__name__}")


def _aware_utc(value: object, where: str) -> datetime:
    """``value`` as a plain ``datetime`` in UTC, the same instant; else the UsageError."""
    if not isinstance(value, datetime):
        raise UsageError(f"{where}: recorded_at must be a datetime or None, not "
                         f"{type(value).__name__}")
    nanosecond = getattr(value, "nanosecond", 0)  # pandas.Timestamp holds nanoseconds
    if nanosecond:
        raise UsageError(f"{where}: recorded_at {value} has sub-microsecond digits "
                         f"({nanosecond} ns), which no store keeps (datetime, SQLite's and "
                         f"JSON's text and Parquet's column hold microseconds): round it to "
                         f"microseconds first")
    offset = value.utcoffset()
    if offset is None:
        raise UsageError(f"{where}: recorded_at must be timezone-aware, got {value!r}")
    try:
        utc = value.astimezone(UTC) if offset or value.tzinfo is not UTC else value
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise UsageError(f"{where}: recorded_at {value.isoformat()} is outside the years "
                         f"1-9999 once in UTC, where stores keep it") from None
    if type(utc) is not datetime:  # a subclass (pandas.Timestamp): a plain datetime
        utc = datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                       utc.microsecond, tzinfo=UTC)
    return utc


def prepare_one(event: AppendEvent, now: datetime, where: str | Callable[[], str]
                ) -> PreparedEvent:
    """Validate one event and fill in the id and time of a new one.

    A :class:`NewEvent` with an empty id gets a random UUID and one without a time ``now``;
    a :class:`~evtools.events.RawEvent` (a stored event, copied) keeps both as they are.
    ``where`` (text, or a function making it: only called on error) prefixes messages.
    """
    cls = type(event)
    if cls is NewEvent:
        stored = False
    elif cls is RawEvent:
        stored = True
    elif isinstance(event, NewEvent | RawEvent):
        stored = isinstance(event, RawEvent)
    else:
        raise UsageError(f"{_where(where)}: expected a NewEvent or RawEvent, "
                         f"not {type(event).__name__}")
    event_type = event.type
    if type(event_type) is not str or not event_type:
        raise UsageError(f"{_where(where)}: event type must be a non-empty string")
    if not event_type.isascii():
        check_text(event_type, "event type", where)
    recorded_at = event.recorded_at
    if recorded_at is None:
        if not stored:
            recorded_at = now
    elif type(recorded_at) is not datetime or recorded_at.tzinfo is not UTC:
        recorded_at = _aware_utc(recorded_at, _where(where))
    schema_version = event.schema_version
    if type(schema_version) is not int or schema_version < 1:
        raise UsageError(f"{_where(where)}: schema_version must be an int >= 1, not "
                         f"{schema_version!r}")
    if schema_version > INT64_MAX:
        raise UsageError(f"{_where(where)}: schema_version {schema_version} is above "
                         f"2**63-1, the largest a store keeps (a 64-bit integer)")
    data, metadata = event.data, event.metadata
    if type(data) is not bytes:
        data = _as_bytes(data, "data", _where(where))
    if type(metadata) is not bytes:
        metadata = _as_bytes(metadata, "metadata", _where(where))
    event_id, content_type = event.id, event.content_type
    if not (type(event_id) is str and event_id.isascii()) and (event_id or stored):
        check_text(event_id, "event id", where)
    if content_type and not (type(content_type) is str and content_type.isascii()):
        check_text(content_type, "content type", where)
    return PreparedEvent(event_type, data, metadata,
                         event_id if stored else (event_id or str(uuid.uuid4())),
                         content_type or JSON_CONTENT_TYPE, schema_version, recorded_at)


def check_text(value: object, what: str, where: str | Callable[[], str],
               stream: str | None = None) -> None:
    """Refuse what is not a string, and text that has no UTF-8 form (a lone surrogate, as
    ``surrogateescape`` or a bad ``\\ud800`` escape leaves): no store can write it, and
    SQLite, files and the servers' clients would fail half way with a
    ``UnicodeEncodeError``."""
    if type(value) is not str:
        raise UsageError(f"{_where(where)}: {what} must be a string, not "
                         f"{type(value).__name__}", stream=stream if type(stream) is str else None)
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        shown = value if len(value) <= 60 else f"{value[:60]}..."
        raise UsageError(f"{_where(where)}: {what} {shown!r} is not valid Unicode (a lone "
                         f"surrogate at index {e.start})", stream=stream) from None


# up to the last "@" before the path, as urllib (and so nats-py) splits a URL: a password
# may itself hold an "@"
_USER_INFO = re.compile(r"(?<=://)([^/?#]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password (or token) of its user info replaced by ``***``, for
    messages, logs and a store's ``url``."""
    def hide(m: re.Match[str]) -> str:
        user, sep, _ = m.group(1).partition(":")
        return f"{user}:***@" if sep else "***@"

    return _USER_INFO.sub(hide, url, count=1)


def _where(where: str | Callable[[], str]) -> str:
    return where if isinstance(where, str) else where()


def prepare_events(store: str, stream: str, events: Sequence[AppendEvent],
                   first_version: int | None = 0) -> Iterator[PreparedEvent]:
    """Validate ``events`` lazily (a generator, so big batches stream into the driver).

    Raises :class:`UsageError` naming the store, the stream and the version the bad event
    would have had (``first_version=None``, for a store that learns the versions only as
    it appends: its place in the batch).
    """
    now = datetime.now(UTC)
    for i, event in enumerate(events):
        try:
            # the prefix is built only for a message; the context names stream and version
            prepared = prepare_one(event, now, store if first_version is not None else
                                   lambda i=i: f"{store}: event {i} of the batch")  # type: ignore[misc]
        except UsageError as e:
            raise e.with_context(stream=stream, version=None if first_version is None
                                 else first_version + i) from None
        yield prepared


def first_version(expected: ExpectedVersion) -> int | None:
    """The version the first appended event gets, where ``expected`` says it (an exact
    version, or no stream), for messages about a batch; ``None`` otherwise."""
    if expected is NO_STREAM:
        return 0
    return expected + 1 if isinstance(expected, int) else None


def validate_append(store: str, stream: str, events: Sequence[AppendEvent],
                    expected_version: ExpectedVersion) -> ExpectedVersion:
    """Check the arguments every ``append`` takes; returns the expected version."""
    check_stream_name(store, stream)
    if isinstance(events, NewEvent | RawEvent) or not isinstance(events, Sequence):
        raise UsageError(f"{store}: append takes a sequence of events (a list), "
                         f"got {type(events).__name__}", stream=stream)
    if not events:
        raise UsageError(f"{store}: append needs at least one event", stream=stream)
    return validate_expected(expected_version, store, stream)


def check_stream_name(store: str, stream: object) -> None:
    """Refuse a stream name that is not a non-empty string with a UTF-8 form."""
    if not isinstance(stream, str) or not stream:
        raise UsageError(f"{store}: stream name must be a non-empty string, got {stream!r}")
    check_text(stream, "stream name", store, stream)


def validate_expected(expected: object, store: str = "store",
                      stream: str | None = None) -> ExpectedVersion:
    """Return ``expected`` if it is a valid expected version, else raise UsageError."""
    if isinstance(expected, Expected):
        return expected
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise UsageError(f"{store}: expected_version must be NO_STREAM, ANY, STREAM_EXISTS or "
                     f"a version >= 0, got {expected!r}", stream=stream)


def describe_version(version: ExpectedVersion | None) -> str:
    if version is None:
        return "no stream"
    if isinstance(version, Expected):
        return version.value
    return f"version {version}"


def check_expected(store: str, stream: str, expected: ExpectedVersion,
                   actual: int | None) -> None:
    """Raise :class:`ConcurrencyError` unless ``actual`` (``None``: no stream) fits."""
    if expected is ANY:
        return
    if expected is NO_STREAM:
        ok = actual is None
    elif expected is STREAM_EXISTS:
        ok = actual is not None
    else:
        ok = actual == expected
    if not ok:
        raise ConcurrencyError(
            f"{store}: stream {stream!r} expected {describe_version(expected)}, "
            f"actual {describe_version(actual)}",
            expected=expected, actual=actual, stream=stream)


def check_limit(limit: int | None, store: str) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError(f"{store}: limit must be None or an int >= 0, got {limit!r}")
    return limit


def check_start(value: int, what: str, store: str, stream: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{store}: {what} must be an int >= 0, got {value!r}", stream=stream)
    return value


class EventStore(ABC):
    """What every store does; see the module docstring for the promises.

    ``url`` names the store in messages (``sqlite:///data/events.db``); ``read_only``
    stores raise :class:`~evtools.errors.UsageError` on ``append``.
    """

    url: str = ""
    read_only: bool = False
    #: why the store keeps one event per id, where it does (JetStream de-duplicates
    #: messages by id); ``""`` where it keeps any number of events with one id. ``copy``
    #: refuses, before it writes anything, a source that holds an id twice (a duplicate
    #: delivery) for such a destination: the second would be dropped or refused.
    unique_ids: ClassVar[str] = ""

    @abstractmethod
    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        """Append ``events`` to ``stream`` atomically; return the new last version."""

    @abstractmethod
    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        """The events of ``stream`` from ``from_version`` on, lazily, in version order."""

    @abstractmethod
    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        """Every event with ``position >= from_position``, lazily, in global order, up to
        the last event stored when it is called (what is appended while it reads is left
        for the next read, so that a projection appending what it reads ends)."""

    @abstractmethod
    def list_streams(self) -> Iterator[str]:
        """Every stream name, once each."""

    @abstractmethod
    def stream_version(self, stream: str) -> int | None:
        """The stream's last version, or ``None`` if it does not exist."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources; safe to call twice."""

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        """The event as ``append(stream, [event])`` would write it, or the
        :class:`~evtools.errors.UsageError` that ``append`` would raise for it, without
        writing anything nor asking about the stream's state: its stream name, its fields
        (see :func:`prepare_one`) and the store's own limits (sizes, name lengths, ids it
        cannot hold). ``version`` is the version it would get, for the message. ``copy``
        checks every event of the source so before it writes one. Stores with limits of
        their own extend it."""
        where = self.url or type(self).__name__
        check_stream_name(where, stream)
        try:
            return prepare_one(event, datetime.now(UTC), where)
        except UsageError as e:
            raise e.with_context(stream=stream, version=version) from None

    def last_event(self, stream: str) -> RawEvent | None:
        """The stream's event at its last version, or ``None`` if it does not exist (what
        a snapshot lookup reads: stores that can do it in one request do)."""
        head = self.stream_version(stream)
        if head is None:
            return None
        try:
            return next(self.read_stream(stream, head, limit=1), None)
        except StreamNotFound:  # deleted since
            return None

    def _refuse_write(self, stream: str) -> None:
        if self.read_only:
            raise UsageError(f"{self.url or type(self).__name__} is open read-only; "
                             f"open it with mode='a' to append", stream=stream)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
