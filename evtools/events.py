"""``RawEvent``: one stored event as a store hands it over, payload undecoded.

Stores never decode payloads (the ``json.RawMessage`` idea): ``data`` and ``metadata`` are
the bytes that were stored, so any store feeds any consumer or dialect unchanged.

CloudEvents 1.0 structured JSON is the interchange form. Stream position travels in
extension attributes (lower-case alphanumerics, as the spec requires):

=====================  ======================================================
``evstream``           the stream the event belongs to
``evversion``          0-based position of the event in its stream
``evschemaversion``    the payload's schema version (registry routing)
``evposition``         global position in the store, when it has one
``evmetadata``         the metadata bytes, as a JSON value (only when not empty)
``evmetadatabase64``   the metadata bytes, base64, when they cannot be embedded
=====================  ======================================================

A JSON payload is embedded verbatim (its bytes are copied, never re-encoded), so an
export/import round trip keeps payload bytes identical. Bytes that could not come back
identical from an embedded value (not JSON, empty, surrounded by whitespace, containing a
line break that would split a JSONL line) go into ``data_base64`` instead, with
``datacontenttype`` kept; metadata likewise into ``evmetadatabase64``.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from ._json import (
    escape_pointer_token,
    fast_duplicate_key,
    msgspec_path_to_pointer,
    py_has_duplicate_key,
    strip_msgspec_path,
    too_deep,
)
from .errors import Context, EnvelopeError, UsageError

__all__ = [
    "JSON_CONTENT_TYPE",
    "SNAPSHOT_PREFIX",
    "SNAPSHOT_TYPE",
    "RawEvent",
    "embeddable",
    "format_time",
    "from_cloudevent",
    "is_snapshot_stream",
    "parse_time",
    "refuse_repeated_member",
    "repeated_member",
    "to_cloudevent",
    "without_snapshots",
]

JSON_CONTENT_TYPE = "application/json"
_SPECVERSION = "1.0"
#: how evtools stores a snapshot: an event of this type in the stream named by the prefix
#: and the aggregate's stream (see :mod:`evtools.rehydration`)
SNAPSHOT_TYPE = "$snapshot"
SNAPSHOT_PREFIX = "snapshot-"


class RawEvent(msgspec.Struct, frozen=True, gc=False):
    """One stored event, payload undecoded.

    ``version`` is the 0-based position in ``stream``; ``position`` the global position
    in the store (``None`` where a store has none, e.g. a file).

    Build events with :meth:`new`, which checks every field. The plain constructor checks
    nothing: stores build events in bulk through it from values they have checked, and a
    check there would cost every event read. :meth:`check` checks an event built so.
    """

    stream: str
    version: int
    type: str
    data: bytes
    metadata: bytes = b""
    id: str = ""
    recorded_at: datetime | None = None
    position: int | None = None
    content_type: str = JSON_CONTENT_TYPE
    schema_version: int = 1

    @property
    def context(self) -> Context:
        """Where this event is, for error messages."""
        return Context(stream=self.stream, version=self.version, event_type=self.type,
                       schema_version=self.schema_version)

    @property
    def is_json(self) -> bool:
        return _is_json_type(self.content_type)

    @classmethod
    def new(cls, stream: str, version: int, type: str, data: bytes | str, *,
            metadata: bytes = b"", schema_version: int = 1,
            recorded_at: datetime | None = None, id: str | None = None,
            position: int | None = None, content_type: str = JSON_CONTENT_TYPE) -> RawEvent:
        """Build an event with a fresh random id (convenience for producers and tests).

        Every field is checked (see :meth:`check`): a value that cannot work is a
        :class:`~evtools.errors.UsageError` naming the field, the stream and the version.
        A store keeps a RawEvent's time as it is, none included (it copies stored events
        faithfully): pass ``recorded_at``, or append a
        :class:`~evtools.stores.base.NewEvent`, which the store stamps with the time of
        the append.
        """
        return cls(stream, version, type, _bytes(data, True), _bytes(metadata, False),
                   id or str(uuid.uuid4()), recorded_at, position, content_type,
                   schema_version).check()

    def check(self) -> RawEvent:
        """``self`` when every field holds a value that can work, else a
        :class:`~evtools.errors.UsageError` naming the field, the stream and the version.

        Refused: a stream or type that is not a non-empty ``str``; a version that is not an
        ``int >= 0``; data or metadata that are not ``bytes``; an id or content type that
        is not a ``str``; a ``recorded_at`` that is not a datetime with a UTC offset (a
        naive time cannot be compared with stored ones); a position that is not ``None``
        or an ``int >= 0``; a schema version that is not an ``int`` from 1 to 2**63-1.
        """
        problem = _problem(self)
        if problem is None:
            return self
        raise UsageError(f"RawEvent {problem}", Context(
            stream=self.stream if isinstance(self.stream, str) else None,
            version=self.version if _is_int(self.version) else None,
            event_type=self.type if isinstance(self.type, str) else None))


def _bytes(value: Any, text: bool) -> Any:
    """``value`` as bytes where it is bytes-like (or ``str``, with ``text``); anything else
    as it is, for :meth:`RawEvent.check` to refuse."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value.encode() if text and isinstance(value, str) else value


def _is_json_type(content_type: str) -> bool:
    """Whether a content type declares JSON (``application/json``, ``...+json``)."""
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == JSON_CONTENT_TYPE or ct.endswith("+json")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(event: RawEvent) -> str | None:
    """What makes ``event`` unusable, as the end of a sentence, or ``None``."""
    if not isinstance(event.stream, str) or not event.stream:
        return f"stream must be a non-empty str, not {event.stream!r}"
    if not _is_int(event.version) or event.version < 0:
        return (f"version must be an int >= 0 (the 0-based position in the stream), not "
                f"{event.version!r}")
    if not isinstance(event.type, str) or not event.type:
        return f"type must be a non-empty str, not {event.type!r}"
    for name in ("data", "metadata"):
        value = getattr(event, name)
        if not isinstance(value, bytes):
            return f"{name} must be bytes, not {_type_name(value)}"
    if not isinstance(event.id, str):
        return f"id must be a str, not {_type_name(event.id)}"
    when = event.recorded_at
    if when is not None:
        if not isinstance(when, datetime):
            return f"recorded_at must be a datetime or None, not {_type_name(when)}"
        if when.utcoffset() is None:
            return (f"recorded_at {when.isoformat()} has no UTC offset: a naive time cannot "
                    "be compared with stored ones (give it one, e.g. tzinfo=UTC)")
    if event.position is not None and (not _is_int(event.position) or event.position < 0):
        return f"position must be None or an int >= 0, not {event.position!r}"
    if not isinstance(event.content_type, str):
        return f"content_type must be a str, not {_type_name(event.content_type)}"
    if not _is_int(event.schema_version) or event.schema_version < 1:
        return f"schema_version must be an int >= 1, not {event.schema_version!r}"
    if event.schema_version > _INT64_MAX:
        return (f"schema_version {event.schema_version} is above 2**63-1, the largest a "
                "store keeps (a 64-bit integer)")
    return None


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


# -- CloudEvents 1.0 structured JSON ---------------------------------------------------------

_NO_RAW = msgspec.Raw(b"")


class _Envelope(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    specversion: str
    id: str
    source: str
    type: str
    time: str | None = None
    datacontenttype: str | None = None
    data: msgspec.Raw = _NO_RAW
    data_base64: str | None = None
    evstream: str | None = None
    evversion: int | None = None
    evschemaversion: int | None = None
    evposition: int | None = None
    evmetadata: msgspec.Raw = _NO_RAW
    evmetadatabase64: str | None = None
    subject: str | None = None
    dataschema: str | None = None


class _AnyEnvelope(_Envelope, forbid_unknown_fields=False):
    """An envelope with extension attributes evtools does not know (their names checked
    apart, then left out: a ``RawEvent`` has no place for them)."""


class _Where(msgspec.Struct):
    """What an envelope that does not decode says about where it belongs (error path)."""

    evstream: Any = None
    evversion: Any = None
    type: Any = None


# a decode that knows every member is the usual case, and the fast one
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_any_envelope_decoder = msgspec.json.Decoder(_AnyEnvelope)
_where_decoder = msgspec.json.Decoder(_Where)
_members_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
#: the members the JSON format defines: the context attributes, ``data``, ``data_base64``
_KNOWN_MEMBERS = frozenset(_Envelope.__struct_fields__)
#: CloudEvents 1.0: "lower-case letters ('a' to 'z') or digits ('0' to '9') from the ASCII
#: character set"
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+\Z")
_INT64_MAX = 2**63 - 1
_envelope_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


def embeddable(value: bytes) -> bool:
    """Whether ``value`` can go into a JSON line verbatim and come back byte for byte:
    one JSON value in valid UTF-8 (JSON text is UTF-8: other bytes would make the whole line
    unreadable), nothing around it, no line break (which would split a JSONL line)."""
    if not value or b"\n" in value or b"\r" in value:
        return False
    try:
        raw = _raw_decoder.decode(value)
        if not value.isascii():  # msgspec.Raw does not check the UTF-8 inside strings
            value.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return len(raw) == len(value)
# ASCII digits only: ``\d`` would also take other scripts' digits, which no RFC 3339 reader
# accepts
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def format_time(value: datetime) -> str:
    """RFC 3339 text of an aware datetime, in UTC (``...Z``)."""
    if value.tzinfo is None:
        raise EnvelopeError("recorded_at must carry a UTC offset")
    try:
        utc = value.astimezone(UTC)
    except OverflowError as e:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise EnvelopeError(f"recorded_at {value.isoformat()} is outside the years 1-9999 "
                            "in UTC") from e
    return utc.isoformat().replace("+00:00", "Z")


def parse_time(text: str, where: Context, path: str = "/time") -> datetime:
    """An aware datetime from RFC 3339 text, else :class:`~evtools.errors.EnvelopeError`
    naming ``where`` and the member at ``path`` (``"/time"``, ``"/recorded_at"``).

    Refused: text that is not shaped like ``2024-05-01T12:00:00.123Z`` (an offset is
    required), a date or time that does not exist (month 13, hour 24, second 60, offset
    24:00 or more), a time outside the years 1-9999 once in UTC, and digits beyond the
    microsecond that are not zeros (datetime cannot keep them; they are not dropped
    silently).
    """
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if m is None:
        raise EnvelopeError(f"{_member(path)} is not an RFC 3339 timestamp with offset: "
                            f"{text!r}", where, path=path)
    offset = m.group(2)
    if len(offset) > 1 and (int(offset[1:3]) > 23 or int(offset[4:]) > 59):
        raise EnvelopeError(f"{_member(path)} has a UTC offset out of range (-23:59 to "
                            f"+23:59): {text!r}", where, path=path)
    digits = m.group(1)
    iso = text
    if digits is not None and len(digits) > 6:  # datetime keeps microseconds
        if digits[6:].strip("0"):
            raise EnvelopeError(f"{_member(path)} has sub-microsecond digits that datetime "
                                f"cannot keep: {text!r}", where, path=path)
        iso = text[:m.start(1) + 6] + text[m.end(1):]
    try:
        value = datetime.fromisoformat(iso.upper())
    except ValueError as e:  # a month 13, an hour 24, a second 60 ...
        raise EnvelopeError(f"{_member(path)} is not a valid date and time: {text!r} ({e})",
                            where, path=path) from e
    if value.year in (1, 9999):  # the only years where UTC can fall outside 1-9999
        try:
            value.astimezone(UTC)
        except OverflowError as e:
            raise EnvelopeError(f"{_member(path)} is outside the years 1-9999 once in UTC: "
                                f"{text!r}", where, path=path) from e
    return value


def _member(path: str) -> str:
    return repr(path.rsplit("/", 1)[-1])


# a JSON string, or one of the structural characters that open, close or separate members
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]', re.DOTALL)
_msgspec_str = msgspec.json.Decoder(str)


def repeated_member(document: bytes) -> str | None:
    """The first member name that the top-level object of ``document`` repeats, or
    ``None`` (also when the document is not an object). ``document`` must be valid JSON.

    Only the top-level object's own members are compared, not those of the objects inside
    it (a payload is not the envelope's business: the registry checks it when it decodes
    it). The C scan of :mod:`evtools._json` answers first, without allocating, for the
    usual document in which no object at all repeats a key; the members are compared one
    by one only when it finds a repeat somewhere (or cannot tell).
    """
    found = fast_duplicate_key(document)
    if found is None:
        try:
            found = py_has_duplicate_key(document)
        except (msgspec.DecodeError, RecursionError, ValueError):
            found = True  # let the exact walk below decide
    if not found:
        return None
    seen: set[str] = set()
    depth = 0
    at_key = top_is_object = False
    for m in _JSON_TOKEN.finditer(document):
        token = m.group()
        first = token[0]
        if first == 0x22:  # a string: a member name where one is due
            if at_key:
                name = (_msgspec_str.decode(token) if b"\\" in token
                        else token[1:-1].decode("utf-8"))
                if name in seen:
                    return name
                seen.add(name)
                at_key = False
        elif first == 0x2C:  # ",": the next member of the top-level object
            at_key = depth == 1 and top_is_object
        elif first == 0x7B or first == 0x5B:  # "{" or "["
            if depth == 0:
                top_is_object = first == 0x7B
                at_key = top_is_object
            depth += 1
        else:  # "}" or "]"
            depth -= 1
    return None


def refuse_repeated_member(document: bytes | str, what: str, where: Context) -> None:
    """Raise :class:`~evtools.errors.EnvelopeError` when the top-level object of the valid
    JSON ``document`` (``what``: "envelope", "record") repeats a member. JSON leaves it to
    each reader which of the values counts, so such a record means different things to
    different readers; decoding would silently keep the last one."""
    data = document.encode() if isinstance(document, str) else bytes(document)
    name = repeated_member(data)
    if name is not None:
        raise EnvelopeError(f"{what} repeats the member {name!r} (which of its values "
                            "counts would depend on the reader)", where,
                            path="/" + escape_pointer_token(name))


def to_cloudevent(event: RawEvent, *, source: str | None = None) -> bytes:
    """Encode ``event`` as one CloudEvents 1.0 structured-mode JSON document.

    Text that has no UTF-8 form (a lone surrogate in the stream, type, id or content type)
    cannot be written as JSON: an :class:`~evtools.errors.EnvelopeError` names the field.
    """
    env = _Envelope(
        specversion=_SPECVERSION,
        id=event.id or str(uuid.uuid4()),
        source=source or f"/streams/{event.stream}",
        type=event.type,
        time=format_time(event.recorded_at) if event.recorded_at is not None else None,
        datacontenttype=event.content_type,
        evstream=event.stream,
        evversion=event.version,
        evschemaversion=event.schema_version,
        evposition=event.position,
    )
    if event.metadata:
        if embeddable(event.metadata):
            env.evmetadata = msgspec.Raw(event.metadata)
        else:
            env.evmetadatabase64 = base64.b64encode(event.metadata).decode("ascii")
    if event.is_json and embeddable(event.data):
        env.data = msgspec.Raw(event.data)
    elif event.data or not event.is_json:
        env.data_base64 = base64.b64encode(event.data).decode("ascii")
    try:
        return _envelope_encoder.encode(env)
    except UnicodeEncodeError as e:
        raise _unwritable(event, env) from e


def _unwritable(event: RawEvent, env: _Envelope) -> EnvelopeError:
    """The error for an event with text that has no UTF-8 form."""
    for name, member in (("stream", "evstream"), ("type", "type"), ("id", "id"),
                         ("content_type", "datacontenttype"), ("source", "source")):
        value = getattr(env, member)
        if isinstance(value, str) and not _has_utf8_form(value):
            return EnvelopeError(f"{name} {value!r} has no UTF-8 form (a lone surrogate), so "
                                 "it cannot be written as JSON",
                                 Context(stream=event.stream if name != "stream" else None,
                                         version=event.version, path=f"/{member}"))
    return EnvelopeError("event has text with no UTF-8 form (a lone surrogate)",
                         event.context)


def _has_utf8_form(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def from_cloudevent(document: bytes | str, *, stream: str | None = None,
                    version: int | None = None, where: Context | None = None) -> RawEvent:
    """Decode one CloudEvents 1.0 structured-mode JSON document into a ``RawEvent``.

    ``stream`` and ``version`` fill in when the envelope lacks the ``evstream`` /
    ``evversion`` extensions; without either source of truth the envelope is rejected.
    An envelope that repeats a member (two ``evstream``, say) is rejected too: which of
    the values counts would depend on the reader. So is one that is not UTF-8, one with
    an attribute name CloudEvents does not allow (only lower-case ASCII letters and
    digits; extension attributes with valid names are accepted and left out), and
    versions, positions and schema versions beyond int64. ``data`` is the payload as JSON
    when ``datacontenttype`` is absent or JSON; for any other content type it must be a
    JSON string, and the payload is that string's UTF-8 bytes (binary goes in
    ``data_base64``). Every refusal is an :class:`~evtools.errors.EnvelopeError` naming
    ``where`` (file, line), the stream, version and type where the envelope says them,
    and the member at fault.
    """
    base = where or Context()
    if isinstance(document, str):
        try:
            document = document.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EnvelopeError("envelope is not valid JSON: its text has a lone surrogate "
                                f"(no UTF-8 form) at character {e.start}", base) from e
    elif not isinstance(document, bytes):
        document = bytes(document)
    if not document.isascii():
        try:
            document.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EnvelopeError(f"envelope is not valid JSON: invalid UTF-8 at byte {e.start}",
                                base) from e
    extensions = False
    try:
        try:
            env = _envelope_decoder.decode(document)
        except msgspec.ValidationError as e:
            if not str(e).startswith("Object contains unknown field"):
                raise
            env = _any_envelope_decoder.decode(document)
            extensions = True
    except msgspec.ValidationError as e:
        raise EnvelopeError(f"not a CloudEvents 1.0 envelope: {strip_msgspec_path(str(e))}",
                            base.merge(_where_in(document)).merge(
                                Context(path=msgspec_path_to_pointer(str(e))))) from e
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise EnvelopeError(f"envelope is not valid JSON: {e}", base) from e
    except RecursionError as e:
        raise EnvelopeError(too_deep("envelope"), base) from e
    refuse_repeated_member(document, "envelope", base)
    the_stream = env.evstream if env.evstream is not None else stream
    the_version = env.evversion if env.evversion is not None else version

    def ctx() -> Context:  # built on the error paths only
        good = the_version is not None and 0 <= the_version <= _INT64_MAX
        return base.merge(Context(stream=the_stream or None, event_type=env.type or None,
                                  version=the_version if good else None))

    if extensions:
        for name in _members_decoder.decode(document):
            if name not in _KNOWN_MEMBERS and not _ATTRIBUTE_NAME.match(name):
                raise EnvelopeError(f"attribute name {name!r} is not a CloudEvents name "
                                    "(lower-case ASCII letters and digits only)", ctx(),
                                    path="/" + escape_pointer_token(name))
    if env.specversion != _SPECVERSION:
        raise EnvelopeError(f"unsupported CloudEvents specversion {env.specversion!r}", ctx(),
                            path="/specversion")
    for name in ("id", "source", "type"):
        if not getattr(env, name):
            raise EnvelopeError(f"required attribute {name!r} is empty", ctx(),
                                path=f"/{name}")
    if the_stream is None:
        raise EnvelopeError("envelope has no 'evstream' extension and no stream was given",
                            ctx(), path="/evstream")
    if env.evstream == "":  # (a caller's stream="" is the caller's business)
        raise EnvelopeError("'evstream' is empty", ctx(), path="/evstream")
    if env.evversion is not None and not 0 <= env.evversion <= _INT64_MAX:
        raise EnvelopeError(f"'evversion' must be an int from 0 to 2**63-1, not "
                            f"{env.evversion}", ctx(), path="/evversion")
    if the_version is None or the_version < 0:
        raise EnvelopeError("envelope has no valid 'evversion' extension and no version was "
                            "given", ctx(), path="/evversion")
    if env.evschemaversion is not None and not 1 <= env.evschemaversion <= _INT64_MAX:
        raise EnvelopeError(f"'evschemaversion' must be >= 1 and <= 2**63-1, not "
                            f"{env.evschemaversion}", ctx(), path="/evschemaversion")
    if env.evposition is not None and not 0 <= env.evposition <= _INT64_MAX:
        raise EnvelopeError(f"'evposition' must be >= 0 and <= 2**63-1, not {env.evposition}",
                            ctx(), path="/evposition")
    content_type = (env.datacontenttype if env.datacontenttype is not None
                    else JSON_CONTENT_TYPE)
    if env.data and env.data_base64 is not None:
        raise EnvelopeError("envelope has both 'data' and 'data_base64'", ctx(),
                            path="/data_base64")
    if env.data_base64 is not None:
        try:
            data = base64.b64decode(env.data_base64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EnvelopeError("'data_base64' is not valid base64", ctx(),
                                path="/data_base64") from e
    elif env.data:
        data = bytes(env.data) if _is_json_type(content_type) else _text_data(
            env.data, content_type, ctx)
    else:
        data = b""
    if env.evmetadata and env.evmetadatabase64 is not None:
        raise EnvelopeError("envelope has both 'evmetadata' and 'evmetadatabase64'", ctx(),
                            path="/evmetadatabase64")
    if env.evmetadatabase64 is not None:
        try:
            metadata = base64.b64decode(env.evmetadatabase64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EnvelopeError("'evmetadatabase64' is not valid base64", ctx(),
                                path="/evmetadatabase64") from e
    else:
        metadata = bytes(env.evmetadata)
    recorded_at = None
    if env.time is not None:
        try:
            recorded_at = parse_time(env.time, base)
        except EnvelopeError as e:
            e.with_context(ctx())
            raise
    return RawEvent(
        stream=the_stream,
        version=the_version,
        type=env.type,
        data=data,
        metadata=metadata,
        id=env.id,
        recorded_at=recorded_at,
        position=env.evposition,
        content_type=content_type,
        schema_version=env.evschemaversion if env.evschemaversion is not None else 1,
    )


def _text_data(raw: msgspec.Raw, content_type: str, ctx: Callable[[], Context]) -> bytes:
    """The payload of a ``data`` member under a content type that is not JSON: CloudEvents
    writes such data as a JSON string, whose text is the payload."""
    try:
        return _msgspec_str.decode(raw).encode("utf-8")
    except (msgspec.DecodeError, UnicodeEncodeError) as e:
        raise EnvelopeError(f"'data' must be a JSON string when 'datacontenttype' is "
                            f"{content_type!r} (not JSON); binary data goes in 'data_base64'",
                            ctx(), path="/data") from e


def _where_in(document: bytes) -> Context:
    """The stream, version and type an envelope that does not decode names, as far as
    they can be told (error path)."""
    try:
        said = _where_decoder.decode(document)
    except (msgspec.DecodeError, RecursionError):
        return Context()
    version = said.evversion
    return Context(
        stream=said.evstream if isinstance(said.evstream, str) and said.evstream else None,
        version=version if _is_int(version) and 0 <= version <= _INT64_MAX else None,
        event_type=said.type if isinstance(said.type, str) and said.type else None)


def is_snapshot_stream(stream: str) -> bool:
    """Whether ``stream`` holds evtools' snapshots of another stream."""
    return stream.startswith(SNAPSHOT_PREFIX)


def without_snapshots(events: Iterable[RawEvent]) -> Iterator[RawEvent]:
    """``events`` less evtools' own snapshots (``$snapshot`` events of snapshot streams,
    as ``rehydrate --snapshot-every`` writes them): they hold aggregate states, not domain
    events, so schema inference, drift checks and audits of a store leave them out."""
    return (e for e in events
            if not (e.type == SNAPSHOT_TYPE and is_snapshot_stream(e.stream)))
