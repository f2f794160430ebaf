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
from datetime import UTC, datetime

import msgspec

from ._json import msgspec_path_to_pointer, strip_msgspec_path
from .errors import Context, EnvelopeError

__all__ = [
    "JSON_CONTENT_TYPE",
    "RawEvent",
    "embeddable",
    "format_time",
    "from_cloudevent",
    "parse_time",
    "to_cloudevent",
]

JSON_CONTENT_TYPE = "application/json"
_SPECVERSION = "1.0"


class RawEvent(msgspec.Struct, frozen=True, gc=False):
    """One stored event, payload undecoded.

    ``version`` is the 0-based position in ``stream``; ``position`` the global position
    in the store (``None`` where a store has none, e.g. a file).
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
        ct = self.content_type.split(";", 1)[0].strip().lower()
        return ct == JSON_CONTENT_TYPE or ct.endswith("+json")

    @classmethod
    def new(cls, stream: str, version: int, type: str, data: bytes | str, *,
            metadata: bytes = b"", schema_version: int = 1,
            recorded_at: datetime | None = None, id: str | None = None,
            position: int | None = None, content_type: str = JSON_CONTENT_TYPE) -> RawEvent:
        """Build an event with a fresh random id (convenience for producers and tests)."""
        return cls(stream=stream, version=version, type=type,
                   data=data.encode() if isinstance(data, str) else data,
                   metadata=metadata, id=id or str(uuid.uuid4()), recorded_at=recorded_at,
                   position=position, content_type=content_type,
                   schema_version=schema_version)


# -- CloudEvents 1.0 structured JSON ---------------------------------------------------------

_NO_RAW = msgspec.Raw(b"")


class _Envelope(msgspec.Struct, omit_defaults=True):
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


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_envelope_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


def embeddable(value: bytes) -> bool:
    """Whether ``value`` can go into a JSON line verbatim and come back byte for byte:
    one JSON value, nothing around it, no line break (which would split a JSONL line)."""
    if not value or b"\n" in value or b"\r" in value:
        return False
    try:
        raw = _raw_decoder.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return len(raw) == len(value)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def format_time(value: datetime) -> str:
    """RFC 3339 text of an aware datetime, in UTC (``...Z``)."""
    if value.tzinfo is None:
        raise EnvelopeError("recorded_at must carry a UTC offset")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str, where: Context) -> datetime:
    """An aware datetime from RFC 3339 text; refuses digits datetime cannot keep."""
    if not _RFC3339.match(text):
        raise EnvelopeError(f"'time' is not an RFC 3339 timestamp with offset: {text!r}",
                            where.merge(Context(path="/time")))
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # datetime keeps microseconds: keep the rest honest
        digits = frac.group(1)
        if digits[6:].strip("0"):
            raise EnvelopeError(f"'time' has sub-microsecond digits that datetime cannot keep: "
                                f"{text!r}", where.merge(Context(path="/time")))
        text = text.replace(digits, digits[:6], 1)
    return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))


def to_cloudevent(event: RawEvent, *, source: str | None = None) -> bytes:
    """Encode ``event`` as one CloudEvents 1.0 structured-mode JSON document."""
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
    return _envelope_encoder.encode(env)


def from_cloudevent(document: bytes | str, *, stream: str | None = None,
                    version: int | None = None, where: Context | None = None) -> RawEvent:
    """Decode one CloudEvents 1.0 structured-mode JSON document into a ``RawEvent``.

    ``stream`` and ``version`` fill in when the envelope lacks the ``evstream`` /
    ``evversion`` extensions; without either source of truth the envelope is rejected.
    """
    ctx = where or Context()
    try:
        env = _envelope_decoder.decode(document)
    except msgspec.ValidationError as e:
        raise EnvelopeError(f"not a CloudEvents 1.0 envelope: {strip_msgspec_path(str(e))}",
                            ctx.merge(Context(path=msgspec_path_to_pointer(str(e))))) from e
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise EnvelopeError(f"envelope is not valid JSON: {e}", ctx) from e
    ctx = ctx.merge(Context(stream=env.evstream or stream, event_type=env.type))
    if env.specversion != _SPECVERSION:
        raise EnvelopeError(f"unsupported CloudEvents specversion {env.specversion!r}", ctx,
                            path="/specversion")
    for name in ("id", "source", "type"):
        if not getattr(env, name):
            raise EnvelopeError(f"required attribute {name!r} is empty", ctx, path=f"/{name}")
    the_stream = env.evstream if env.evstream is not None else stream
    the_version = env.evversion if env.evversion is not None else version
    if the_stream is None:
        raise EnvelopeError("envelope has no 'evstream' extension and no stream was given", ctx)
    if the_version is None or the_version < 0:
        raise EnvelopeError("envelope has no valid 'evversion' extension and no version was "
                            "given", ctx)
    if env.data and env.data_base64 is not None:
        raise EnvelopeError("envelope has both 'data' and 'data_base64'", ctx)
    if env.data_base64 is not None:
        try:
            data = base64.b64decode(env.data_base64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EnvelopeError("'data_base64' is not valid base64", ctx,
                                path="/data_base64") from e
    elif env.data:
        data = bytes(env.data)
    else:
        data = b""
    if env.evmetadata and env.evmetadatabase64 is not None:
        raise EnvelopeError("envelope has both 'evmetadata' and 'evmetadatabase64'", ctx)
    if env.evmetadatabase64 is not None:
        try:
            metadata = base64.b64decode(env.evmetadatabase64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EnvelopeError("'evmetadatabase64' is not valid base64", ctx,
                                path="/evmetadatabase64") from e
    else:
        metadata = bytes(env.evmetadata)
    return RawEvent(
        stream=the_stream,
        version=the_version,
        type=env.type,
        data=data,
        metadata=metadata,
        id=env.id,
        recorded_at=parse_time(env.time, ctx) if env.time is not None else None,
        position=env.evposition,
        content_type=env.datacontenttype or JSON_CONTENT_TYPE,
        schema_version=env.evschemaversion if env.evschemaversion is not None else 1,
    )
