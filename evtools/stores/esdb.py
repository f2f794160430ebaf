"""``EsdbStore``: EventStoreDB / KurrentDB through esdbclient (the ``esdb`` extra).

``kurrentdbclient`` is used instead where it is installed and the URL says
``kurrentdb://`` (or esdbclient is missing); both clients have the same shape.

Mapping between esdbclient's ``RecordedEvent`` / ``NewEvent`` and ``RawEvent``:

==================  ===================================================================
``RawEvent``        EventStoreDB
==================  ===================================================================
``stream``          ``stream_name``
``version``         ``stream_position``
``position``        ``commit_position``
``type``            ``type``, with ``@v<N>`` appended when ``schema_version`` is not 1
``schema_version``  the ``@v<N>`` suffix of ``type`` (1 without one; a suffix whose number
                    is not a schema version, below 1 or above 2**63-1 as in ``Foo@v0``,
                    is part of the type name)
``data``            ``data`` (bytes as they are)
``metadata``        ``metadata`` (bytes as they are; evtools adds nothing to them, but for
                    an event whose id is not a canonical UUID: see below)
``id``              ``id``: an id that is a canonical UUID (lower-case, hyphenated, as
                    ``str(uuid.UUID(...))`` writes it) is the event's id as it is; any
                    other id (upper-case, ``{...}``, ``urn:uuid:``, 32 hex digits, or not
                    a UUID) is written as ``uuid5(NAMESPACE_URL, "evtools:" + id)`` and
                    comes back as it was given (kept in the metadata)
``content_type``    ``application/json`` for JSON content types (``is_json``), otherwise
                    ``application/octet-stream``: the server keeps only that flag
``recorded_at``     the server's ``created`` time (a producer's time is not kept)
==================  ===================================================================

The schema version lives in the type name, not in the metadata, so that metadata bytes
round-trip exactly and other EventStoreDB clients see the version. A type that itself
ends in ``@v<digits>`` is written with an explicit ``@v1`` so it reads back unchanged.

An id that is not a canonical UUID has no place of its own in EventStoreDB, which keeps a
UUID: the event's metadata then holds it, as the JSON document
``{"$evtools":{"id":"<the id>","metadata":"<the metadata, base64>"}}`` (``metadata`` left
out when empty), and reading unwraps it, so both come back exactly; other EventStoreDB
clients see that document as the metadata. Metadata that itself starts like that
document is wrapped the same way, so that no metadata is mistaken for a wrapper. The
UUID the server keeps is still ``uuid5`` of the id, so a re-sent event is recognised. An
event without an id, as a copied ``RawEvent`` can be, is refused
(:class:`~evtools.errors.UsageError`): EventStoreDB needs one, and evtools does not invent
one for a stored event (a ``NewEvent`` without one gets a random UUID).

``read_all`` leaves out system streams (names starting with ``$``: projections, ``$$``
metadata, ``$ce-`` links...), filtered by stream name on the server, and system events
(types starting with ``$``: links, a tombstone's ``$streamDeleted``) in user streams;
user events of any other type are kept (esdbclient's default filter would also drop a
user type such as ``PersistentConfig1``); ``append`` refuses such names, which it could
write but no read would give back. Events of deleted streams stay in ``$all``
until the server scavenges them, so ``read_all`` can hand back events that
``read_stream`` no longer reads. ``list_streams`` walks ``read_all`` and yields each
stream at its first event (version 0): lazily, without remembering names; a stream
whose first events were deleted is not listed. ``read_all(from_position)`` passes the
position to the server, so it must be 0 or a position the server handed out (the
position of an event).

``read_stream`` reads up to the stream's head when it is called (it asks for the last
version first, which also tells a missing stream at once). Closing the store stops the
client's open reads, which would just end: a read that goes on after ``close`` raises
:class:`~evtools.errors.UsageError` instead of ending early.

Versions and positions are 64-bit signed on the server and the client's protobuf fields
refuse numbers above ``2**64 - 1`` with a ``ValueError``: an exact expected version from
``2**63 - 1`` on is a :class:`~evtools.errors.ConcurrencyError` (no stream is there), and
``read_all`` from a position above ``2**63 - 1`` reads nothing, without asking the server.
esdbclient takes the host from after the first ``@`` of the URI and does not decode
``%40``, so a user name or password holding an ``@`` is refused.

A deleted (not tombstoned) stream reads as missing, but appending to it continues its
numbering: the first new event gets the version after the deleted ones, and that is the
version ``append`` returns.

Client errors are translated at this boundary, the original kept as ``__cause__``:
``WrongCurrentVersion`` -> :class:`~evtools.errors.ConcurrencyError`; ``NotFound``,
``StreamIsDeleted`` -> :class:`~evtools.errors.StreamNotFound`; ``ServiceUnavailable``,
``DeadlineExceeded``, ``DiscoveryFailed``, ``NodeIsNotLeader`` ->
:class:`~evtools.errors.StoreUnavailable` (one line); anything else from the client ->
:class:`~evtools.errors.StoreError`. Where the client wraps a gRPC error, the message
gives its status and details (not the client's multi-line repr). Messages and ``url``
show the URI with its password replaced by ``***``.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, Literal

import msgspec

from ..errors import (
    ConcurrencyError,
    MissingDependency,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from ..events import JSON_CONTENT_TYPE, RawEvent
from .base import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendEvent,
    EventStore,
    ExpectedVersion,
    PreparedEvent,
    check_expected,
    check_limit,
    check_start,
    check_text,
    describe_version,
    first_version,
    prepare_events,
    redact_url,
    validate_append,
)

__all__ = [
    "EsdbStore",
    "from_recorded_event",
    "split_type",
    "to_esdb_event",
    "translate_error",
]

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
_VERSIONED = re.compile(r"(.*)@v([0-9]+)\Z", re.S)
_MAX_SCHEMA_VERSION = 2**63 - 1
_ID_NAMESPACE = uuid.NAMESPACE_URL
_UNAVAILABLE = ("ServiceUnavailable", "DeadlineExceeded", "DiscoveryFailed",
                "NodeIsNotLeader", "GrpcDeadlineExceeded", "SSLError")
_NOT_FOUND = ("NotFound", "StreamIsDeleted")
_DENIED = ("PERMISSION_DENIED", "UNAUTHENTICATED")
_ACTUAL = re.compile(r"last event is (\d+)")
_SYSTEM_STREAMS = (r"\$.*",)  # stream names read_all leaves out (the server filters)
# versions and positions are 64-bit signed on the server (a tombstone's marker is the
# largest); the client's protobuf fields are unsigned and refuse 2**64 with a ValueError
_MAX_VERSION = 2**63 - 1
_MAX_POSITION = 2**63 - 1


def client_module(url: str = "esdb://") -> ModuleType:
    """esdbclient, or kurrentdbclient for ``kurrentdb://`` URLs / when it is the only one."""
    prefer_kurrent = url.startswith("kurrentdb")
    names = (["kurrentdbclient", "esdbclient"] if prefer_kurrent
             else ["esdbclient", "kurrentdbclient"])
    for name in names:
        try:
            return __import__(name)
        except ImportError:
            continue
    raise MissingDependency("esdbclient", "esdb")


def _client_uri(module: ModuleType, url: str) -> str:
    """Rewrite the scheme for the client in use (esdb:// <-> kurrentdb://)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()  # as open_store routes it; the clients compare it as given
    if module.__name__ == "esdbclient":
        scheme = scheme.replace("kurrentdb", "esdb")
    else:
        scheme = scheme.replace("esdb", "kurrentdb")
    return f"{scheme}{sep}{rest}"


# -- mapping ------------------------------------------------------------------------------


def esdb_type(event_type: str, schema_version: int) -> str:
    """The EventStoreDB type name carrying ``schema_version`` (see the module docstring)."""
    if schema_version != 1 or _VERSIONED.match(event_type):
        return f"{event_type}@v{schema_version}"
    return event_type


def split_type(stored: str) -> tuple[str, int]:
    """``"OrderPlaced@v2"`` -> ``("OrderPlaced", 2)``; no suffix -> version 1. A suffix
    whose number is no schema version (below 1, above 2**63-1: ``"Foo@v0"``) is part of
    the name: ``("Foo@v0", 1)``."""
    m = _VERSIONED.match(stored)
    if m is None:
        return stored, 1
    digits = m.group(2).lstrip("0")
    # (a string of more than 19 digits is above 2**63-1; int() would also refuse one of
    # thousands of digits)
    if not digits or len(digits) > 19 or int(digits) > _MAX_SCHEMA_VERSION:
        return stored, 1
    return m.group(1), int(digits)


def _canonical_uuid(event_id: str) -> uuid.UUID | None:
    """The UUID ``event_id`` is written as, where it is one as ``str(UUID)`` writes it:
    lower-case, hyphenated (``uuid.UUID`` also takes upper case, braces, ``urn:uuid:``
    and bare hex digits, which would not read back as they were)."""
    if len(event_id) != 36:
        return None
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        return None
    return parsed if str(parsed) == event_id else None


def esdb_id(event_id: str) -> uuid.UUID:
    """The event id as a UUID: a canonical UUID string as it is, any other id ``uuid5``
    of it (deterministic, so that a retry is recognised)."""
    parsed = _canonical_uuid(event_id)
    if parsed is not None:
        return parsed
    return uuid.uuid5(_ID_NAMESPACE, "evtools:" + event_id)


class _Kept(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What the metadata carries for an event whose id EventStoreDB cannot keep."""

    id: str
    metadata: str = ""  # base64


class _Wrapper(msgspec.Struct, forbid_unknown_fields=True):
    kept: _Kept = msgspec.field(name="$evtools")


_WRAPPED = b'{"$evtools":'
_wrapper_decoder = msgspec.json.Decoder(_Wrapper)


def esdb_metadata(event_id: str, metadata: bytes) -> bytes:
    """The metadata written for an event: ``metadata`` as it is, or, for an id that is not
    a canonical UUID (and for metadata that starts like the wrapper), the wrapper holding
    the id and the metadata (see the module docstring)."""
    if _canonical_uuid(event_id) is not None and not metadata.startswith(_WRAPPED):
        return metadata
    kept = _Kept(event_id, base64.b64encode(metadata).decode("ascii"))
    return msgspec.json.encode(_Wrapper(kept))


def unwrap_metadata(stored: bytes, stored_id: str) -> tuple[str, bytes]:
    """The id and the metadata of an event as it was appended, from what the server
    keeps (its metadata, and its id as text)."""
    if not stored.startswith(_WRAPPED):
        return stored_id, stored
    try:
        kept = _wrapper_decoder.decode(stored).kept
        metadata = base64.b64decode(kept.metadata, validate=True)
    except (msgspec.DecodeError, binascii.Error, ValueError):
        return stored_id, stored  # another client's metadata that looks like it
    return kept.id, metadata


def _is_json(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == JSON_CONTENT_TYPE or ct.endswith("+json")


def to_esdb_event(event: PreparedEvent | RawEvent, module: ModuleType | None = None) -> Any:
    """An esdbclient ``NewEvent`` for ``event``."""
    mod = module or client_module()
    event_id = event.id or str(uuid.uuid4())
    return mod.NewEvent(
        type=esdb_type(event.type, event.schema_version),
        data=event.data,
        metadata=esdb_metadata(event_id, event.metadata),
        content_type=JSON_CONTENT_TYPE if _is_json(event.content_type) else OCTET_STREAM,
        id=esdb_id(event_id),
    )


def from_recorded_event(recorded: Any) -> RawEvent:
    """A ``RawEvent`` for an esdbclient ``RecordedEvent``."""
    event_type, schema_version = split_type(recorded.type)
    event_id, metadata = unwrap_metadata(bytes(recorded.metadata), str(recorded.id))
    return RawEvent(
        stream=recorded.stream_name,
        version=recorded.stream_position,
        type=event_type,
        data=bytes(recorded.data),
        metadata=metadata,
        id=event_id,
        recorded_at=recorded.recorded_at,
        position=recorded.commit_position,
        content_type=recorded.content_type or OCTET_STREAM,
        schema_version=schema_version,
    )


def to_stream_state(expected: ExpectedVersion, module: ModuleType | None = None) -> Any:
    """The client's ``current_version`` argument for an expected version."""
    mod = module or client_module()
    if expected is NO_STREAM:
        return mod.StreamState.NO_STREAM
    if expected is ANY:
        return mod.StreamState.ANY
    if expected is STREAM_EXISTS:
        return mod.StreamState.EXISTS
    return expected


def _names(e: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(e).__mro__}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _grpc_status(e: BaseException) -> tuple[str, str] | None:
    """(status name, details) of the gRPC error the client wrapped in ``e``, if any: its
    ``str`` is a multi-line repr whose first line says nothing."""
    rpc = e.args[0] if e.args else None
    code, details = getattr(rpc, "code", None), getattr(rpc, "details", None)
    if not callable(code) or not callable(details):
        return None
    try:
        status, text = code(), details()
    except Exception:  # not a finished gRPC call after all: use its text
        return None
    return str(getattr(status, "name", status)), " ".join(str(text or "").split())


def _detail(e: BaseException) -> str:
    """``e`` in one line: its class and the gRPC status and details where it has them."""
    status = _grpc_status(e)
    if status is None:
        return f"{type(e).__name__}: {_first_line(e)}"
    name, text = status
    return f"{type(e).__name__}: {name}: {text}" if text else f"{type(e).__name__}: {name}"


def translate_error(e: BaseException, store: str, what: str, *, stream: str | None = None,
                    expected: ExpectedVersion | None = None) -> StoreError:
    """The evtools error for an esdbclient / kurrentdbclient exception (see docstring)."""
    names = _names(e)
    where = f" stream {stream!r}" if stream is not None else ""
    status = _grpc_status(e)
    if "WrongCurrentVersion" in names:
        m = _ACTUAL.search(str(e))
        actual = int(m.group(1)) if m else None
        return ConcurrencyError(
            f"{store}:{where} expected {describe_version(expected)}, actual "
            f"{describe_version(actual)}", expected=expected, actual=actual, stream=stream)
    if names & set(_NOT_FOUND):
        state = "was deleted" if "StreamIsDeleted" in names else "does not exist"
        return StreamNotFound(f"{store}:{where or ' stream'} {state}", stream=stream)
    if "DeadlineExceeded" in names:
        return StoreUnavailable(f"{store}: {what}: server unavailable: no answer in time "
                                f"({_detail(e)})", stream=stream)
    if "SSLError" in names:
        return StoreUnavailable(f"{store}: {what}: server unavailable: TLS failed ("
                                f"{_detail(e)}); a server without TLS needs ?tls=false",
                                stream=stream)
    if names & set(_UNAVAILABLE):
        return StoreUnavailable(f"{store}: {what}: server unavailable ({_detail(e)})",
                                stream=stream)
    if "AccessDeniedError" in names or (status is not None and status[0] in _DENIED):
        return StoreError(f"{store}: {what}: access denied"
                          + (f" ({status[0]}: {status[1]})" if status else ""), stream=stream)
    return StoreError(f"{store}: {what} failed: {_detail(e)}", stream=stream)


# -- the store ----------------------------------------------------------------------------


class EsdbStore(EventStore):
    """EventStoreDB / KurrentDB at ``uri`` (``esdb://host:2113?tls=false``,
    ``esdb+discover://...``, ``kurrentdb://...``). ``timeout`` is the deadline in seconds
    of each append and version lookup (the client tries a failed one once more); reads
    stream without one, so that a long read is not cut off. Further keyword arguments go
    to the client (e.g. ``root_certificates``).
    """

    unique_ids = ("EventStoreDB recognises an event by its id and does not write an id "
                  "it holds again")

    def __init__(self, uri: str, *, mode: Literal["r", "a"] = "a", timeout: float = 10.0,
                 **client_options: Any) -> None:
        if mode not in ("r", "a"):
            raise UsageError(f"EventStoreDB store mode must be 'r' or 'a', got {mode!r}")
        self._mod = client_module(uri)
        self.url = redact_url(uri)
        self.read_only = mode == "r"
        self._timeout = timeout
        self._client: Any = None
        client_class = (getattr(self._mod, "EventStoreDBClient", None)
                        or self._mod.KurrentDBClient)
        client_uri = _client_uri(self._mod, uri)
        netloc = re.split(r"[/?#]", uri.partition("://")[2], maxsplit=1)[0]
        if netloc.count("@") > 1:  # the client would connect to the rest of the password
            raise UsageError(f"{self.url}: the user name or password holds an '@', which "
                             f"esdbclient cannot take (it reads the host from after the "
                             f"first '@', and does not decode %40)")
        try:  # before the client is made: a half-made one complains when collected
            inspect.signature(client_class).bind(client_uri, **client_options)
        except TypeError as e:  # an option the client does not take
            raise UsageError(f"{self.url}: {e}") from e
        try:
            self._client = client_class(client_uri, **client_options)
        except ValueError as e:  # its messages quote the URI: show it without the password
            text = _first_line(e).replace(client_uri, redact_url(client_uri))
            raise UsageError(f"{self.url}: invalid EventStoreDB URI: {text}") from e
        except OSError as e:  # a certificate or key file the URI names
            raise UsageError(f"{self.url}: {e}") from e
        except Exception as e:
            raise self._error(e, "connect") from e

    def _open(self) -> Any:
        """The client; :class:`UsageError` once the store is closed."""
        client = self._client
        if client is None:
            raise UsageError(f"{self.url}: the store is closed")
        return client

    def _error(self, e: BaseException, what: str, stream: str | None = None,
               expected: ExpectedVersion | None = None) -> StoreError:
        return translate_error(e, self.url, what, stream=stream, expected=expected)

    def _is_client_error(self, e: BaseException) -> bool:
        return bool(_names(e) & {"EventStoreDBClientException", "KurrentDBClientException",
                                 "GrpcError"})

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        expected = validate_append(self.url, stream, events, expected_version)
        self._refuse_write(stream)
        self._check_stream(stream)
        first = first_version(expected)
        prepared = list(prepare_events(self.url, stream, events, first))
        for i, p in enumerate(prepared):
            self._check_event(stream, f"event {i} of the batch", p,
                              None if first is None else first + i)
        new = [to_esdb_event(p, self._mod) for p in prepared]
        client = self._open()
        if isinstance(expected, int) and expected >= _MAX_VERSION:
            # no stream gets there, and the client cannot send a version above 2**64 - 1
            check_expected(self.url, stream, expected, self.stream_version(stream))
        try:
            position = client.append_to_stream(
                stream, current_version=to_stream_state(expected, self._mod), events=new,
                timeout=self._timeout)
        except Exception as e:
            if not self._is_client_error(e):
                raise
            if "WrongCurrentVersion" in _names(e) and expected is not None:
                actual = self.stream_version(stream)
                check_expected(self.url, stream, expected, actual)  # raises with the facts
            raise self._error(e, "append", stream, expected) from e
        log.debug("%s: appended %d events to %r at commit position %s", self.url, len(new),
                  stream, position)
        if isinstance(expected, int):
            return expected + len(new)
        # NO_STREAM too: a deleted stream reads as missing but continues its numbering
        return self._version_of(stream, new[-1].id)

    def _check_stream(self, stream: str) -> None:
        if stream.startswith("$"):
            raise UsageError(f"{self.url}: stream {stream!r}: names starting with '$' are "
                             f"EventStoreDB's system streams, which read_all, list_streams "
                             f"and copy leave out", stream=stream)

    def _check_event(self, stream: str, which: str, event: PreparedEvent,
                     version: int | None) -> None:
        if event.type.startswith("$"):
            raise UsageError(f"{self.url}: {which}: type {event.type!r}: "
                             f"types starting with '$' are EventStoreDB's system events, "
                             f"which read_all leaves out", stream=stream, version=version)
        if not event.id:
            raise UsageError(f"{self.url}: {which}: the event has an empty id; EventStoreDB "
                             f"needs one, and evtools does not invent one for a stored event "
                             f"being copied", stream=stream, version=version)

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        prepared = super().check_appendable(stream, event, version)
        self._check_stream(stream)
        self._check_event(stream, "event" if version is None else f"version {version}",
                          prepared, version)
        return prepared

    def _version_of(self, stream: str, event_id: uuid.UUID) -> int:
        """The version of the event ``event_id`` near the end of ``stream``."""
        try:
            with self._open().read_stream(stream, backwards=True, limit=10_000,
                                          timeout=self._timeout) as response:
                for recorded in response:
                    if recorded.id == event_id:
                        return int(recorded.stream_position)
        except Exception as e:
            if not self._is_client_error(e):
                raise
            raise self._error(e, "append", stream) from e
        raise StoreError(f"{self.url}: stream {stream!r}: the appended event {event_id} is "
                         f"not among the last 10,000 events", stream=stream)

    def stream_version(self, stream: str) -> int | None:
        check_text(stream, "stream name", self.url, stream)
        client = self._open()
        def current() -> Any:
            try:
                return client.get_current_version(stream, timeout=self._timeout)
            except IndexError:  # it reads the last event, and indexes what came back
                raise StoreError(
                    f"{self.url}: stream {stream!r} exists but holds no event left to read "
                    f"(all expired or truncated: $maxAge, $maxCount or $tb), so its version "
                    f"cannot be read", stream=stream) from None

        version = self._unless_missing(current, "stream_version", stream)
        return version if isinstance(version, int) else None

    def last_event(self, stream: str) -> RawEvent | None:
        check_text(stream, "stream name", self.url, stream)
        client = self._open()

        def last() -> RawEvent | None:
            with client.read_stream(stream, backwards=True, limit=1,
                                    timeout=self._timeout) as response:
                for recorded in response:
                    return from_recorded_event(recorded)
            return None

        found: RawEvent | None = self._unless_missing(last, "last_event", stream)
        return found

    def _unless_missing(self, call: Callable[[], Any], what: str, stream: str) -> Any:
        """``call()``, or ``None`` where the client says the stream does not exist."""
        try:
            return call()
        except Exception as e:
            if not self._is_client_error(e):
                raise
            if _names(e) & set(_NOT_FOUND):
                return None
            raise self._error(e, what, stream) from e

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self.url, stream)
        limit = check_limit(limit, self.url)
        last = self.stream_version(stream)
        if last is None:
            raise StreamNotFound(f"{self.url}: stream {stream!r} does not exist",
                                 stream=stream)
        # up to the head it has now: the server pages through the stream as it grows, so
        # a reader that appends to the stream it reads would never get to the end
        count = max(0, last - from_version + 1)
        if limit is not None:
            count = min(count, limit)
        client = self._open()
        return self._iterate(
            lambda: client.read_stream(stream, stream_position=from_version, limit=count,
                                       timeout=None),
            "read_stream", stream, count)

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self.url)
        limit = check_limit(limit, self.url)
        client = self._open()
        if from_position > _MAX_POSITION:  # past every position (see _MAX_POSITION)
            return iter(())
        # the read ends at the head as it is now, read here (a projection appending what
        # it reads to this store would never end)
        try:  # 0 where no user stream has an event
            head = client.get_commit_position(filter_exclude=_SYSTEM_STREAMS,
                                              filter_by_stream_name=True,
                                              timeout=self._timeout)
        except Exception as e:
            if not self._is_client_error(e):
                raise
            raise self._error(e, "read_all", None) from e
        if head < from_position or limit == 0:
            return iter(())
        # the server leaves out system streams; the limit is counted here, after the
        # system events of user streams are left out too
        return self._iterate(
            lambda: client.read_all(commit_position=from_position or None,
                                    filter_exclude=_SYSTEM_STREAMS,
                                    filter_by_stream_name=True, timeout=None),
            "read_all", None, limit, from_position, user_events_only=True, up_to=head)

    def _iterate(self, start: Any, what: str, stream: str | None, limit: int | None,
                 from_position: int = 0, user_events_only: bool = False,
                 up_to: int = sys.maxsize) -> Iterator[RawEvent]:
        if limit == 0:
            return
        left = sys.maxsize if limit is None else limit
        try:
            response = start()
            with response:
                for recorded in response:
                    if user_events_only and recorded.type.startswith("$"):
                        continue
                    event = from_recorded_event(recorded)
                    if event.position is not None and event.position < from_position:
                        continue
                    if event.position is not None and event.position > up_to:
                        return  # appended after the call
                    yield event
                    left -= 1
                    if not left:
                        return
            if self._client is None:  # closing stops the client's reads, which just end
                raise UsageError(f"{self.url}: the store was closed during {what}",
                                 stream=stream)
        except Exception as e:
            if not self._is_client_error(e):
                raise
            raise self._error(e, what, stream) from e

    def list_streams(self) -> Iterator[str]:
        for event in self.read_all():
            if event.version == 0:
                yield event.stream

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing: nothing useful to do with it
                log.debug("%s: close failed", self.url, exc_info=True)
            self._client = None
