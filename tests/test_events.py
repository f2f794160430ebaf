from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools import events
from evtools.errors import Context, EnvelopeError, UsageError
from evtools.events import (
    RawEvent,
    format_time,
    from_cloudevent,
    parse_time,
    repeated_member,
    to_cloudevent,
)

from .strategies import raw_events


def test_cloudevent_carries_required_and_extension_attributes() -> None:
    ev = RawEvent.new("order-1", 4, "OrderPlaced", b'{"a": 1.10}', schema_version=2,
                      recorded_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                      metadata=b'{"causation_id":"x"}', position=42)
    doc = json.loads(to_cloudevent(ev))
    assert doc["specversion"] == "1.0"
    assert doc["id"] == ev.id and doc["type"] == "OrderPlaced"
    assert doc["source"] == "/streams/order-1"
    assert doc["time"] == "2026-01-02T03:04:05.000006Z"
    assert doc["datacontenttype"] == "application/json"
    assert (doc["evstream"], doc["evversion"], doc["evschemaversion"], doc["evposition"]) == \
        ("order-1", 4, 2, 42)
    assert doc["evmetadata"] == {"causation_id": "x"}


def test_json_payload_bytes_survive_verbatim() -> None:
    data = b'{ "amount" : 12.30,\t"id": 9007199254740993 }'
    ev = RawEvent.new("s", 0, "T", data)
    assert data in to_cloudevent(ev)
    assert from_cloudevent(to_cloudevent(ev)).data == data


def test_binary_payload_uses_data_base64() -> None:
    ev = RawEvent.new("s", 0, "T", b"\x00\xff", content_type="application/octet-stream")
    doc = json.loads(to_cloudevent(ev))
    assert "data" not in doc and doc["data_base64"] == "AP8="
    assert from_cloudevent(to_cloudevent(ev)) == ev


@given(raw_events())
def test_round_trip_is_exact(ev: RawEvent) -> None:
    assert from_cloudevent(to_cloudevent(ev)) == ev


@pytest.mark.parametrize("doc, message", [
    (b'{"id":"1","source":"s","type":"T","evstream":"a","evversion":0}', "specversion"),
    (b'{"specversion":"1.0","source":"s","type":"T","evstream":"a","evversion":0}', "`id`"),
    (b'{"specversion":"1.0","id":"1","type":"T","evstream":"a","evversion":0}', "`source`"),
    (b'{"specversion":"1.0","id":"1","source":"s","evstream":"a","evversion":0}', "`type`"),
    (b'{"specversion":"0.3","id":"1","source":"s","type":"T","evstream":"a","evversion":0}',
     "specversion"),
    (b'{"specversion":"1.0","id":"","source":"s","type":"T","evstream":"a","evversion":0}',
     "'id' is empty"),
    (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evversion":0}', "evstream"),
    (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"a"}', "evversion"),
    (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"a","evversion":0,'
     b'"time":"2026-01-01T00:00:00"}', "RFC 3339"),
    (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"a","evversion":0,'
     b'"data_base64":"!!"}', "base64"),
    (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"a","evversion":0,'
     b'"data":{},"data_base64":"AA=="}', "both"),
    (b'not json', "not valid JSON"),
    (b'[]', "not a CloudEvents"),
])
def test_invalid_envelopes_are_rejected(doc: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        from_cloudevent(doc)


def test_stream_and_version_can_come_from_the_caller() -> None:
    doc = b'{"specversion":"1.0","id":"1","source":"s","type":"T","data":{"x":1}}'
    ev = from_cloudevent(doc, stream="order-9", version=3)
    assert (ev.stream, ev.version, ev.data) == ("order-9", 3, b'{"x":1}')


def test_sub_microsecond_time_is_refused_not_truncated() -> None:
    doc = (b'{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"a",'
           b'"evversion":0,"time":"2026-01-01T00:00:00.123456789Z"}')
    with pytest.raises(EnvelopeError, match="sub-microsecond"):
        from_cloudevent(doc)
    ok = doc.replace(b"123456789", b"123456000")
    assert from_cloudevent(ok).recorded_at == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_envelope_error(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        from_cloudevent(data)


@pytest.mark.parametrize("data", [
    b"",                       # empty: '"data":,' would be invalid JSON
    b'  {"a": 1}\n',           # surrounding whitespace would be lost
    b'{"a":\n1}',              # a line break would split a JSONL line
    b'{"a": 1',                # labelled JSON, but not JSON
    b'{"a":1} {"b":2}',        # two values
])
def test_payloads_that_cannot_be_embedded_go_base64_and_come_back_identical(
        data: bytes) -> None:
    ev = RawEvent.new("s", 0, "T", data, metadata=data)
    line = to_cloudevent(ev)
    assert b"\n" not in line
    doc = json.loads(line)
    assert "data" not in doc and doc["datacontenttype"] == "application/json"
    assert ("evmetadata" not in doc) and (("evmetadatabase64" in doc) == bool(data))
    assert from_cloudevent(line) == ev


# -- RawEvent.new checks every field; the plain constructor (the stores' bulk path) does not --

@pytest.mark.parametrize("change, message", [
    ({"data": 5}, "data must be bytes, not int"),
    ({"data": None}, "data must be bytes, not None"),
    ({"metadata": "{}"}, "metadata must be bytes, not str"),
    ({"version": "0"}, r"version must be an int >= 0 \(the 0-based position in the stream\), "
                       r"not '0'"),
    ({"version": -1}, "version must be an int >= 0 .*not -1"),
    ({"version": True}, "version must be an int >= 0 .*not True"),
    ({"schema_version": "2"}, "schema_version must be an int >= 1, not '2'"),
    ({"schema_version": 0}, "schema_version must be an int >= 1, not 0"),
    ({"stream": None}, "stream must be a non-empty str, not None"),
    ({"stream": ""}, "stream must be a non-empty str, not ''"),
    ({"type": ""}, "type must be a non-empty str, not ''"),
    ({"id": 5}, "id must be a str, not int"),
    ({"position": -1}, "position must be None or an int >= 0, not -1"),
    ({"position": "1"}, "position must be None or an int >= 0, not '1'"),
    ({"content_type": None}, "content_type must be a str, not None"),
    ({"recorded_at": "2026-01-01T00:00:00Z"}, "recorded_at must be a datetime or None, not str"),
    ({"recorded_at": datetime(2026, 1, 1)}, r"recorded_at 2026-01-01T00:00:00 has no UTC offset: "
                                            r"a naive time cannot be compared"),
])
def test_new_refuses_fields_that_cannot_work(change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"stream": "order-1", "version": 4, "type": "T", "data": b"{}"}
    with pytest.raises(UsageError, match=message):
        RawEvent.new(**(args | change))


@pytest.mark.parametrize("schema_version", [2**63, 2**64, 10**30])
def test_a_schema_version_beyond_int64_is_refused(schema_version: int) -> None:
    """No store keeps it (each holds a 64-bit integer; the JSONL reader refuses it), and
    RawEvent.check had passed it."""
    with pytest.raises(UsageError, match=rf"schema_version {schema_version} is above "
                                         r"2\*\*63-1") as info:
        RawEvent.new("order-1", 4, "T", b"{}", schema_version=schema_version)
    assert (info.value.context.stream, info.value.context.version) == ("order-1", 4)
    assert RawEvent.new("order-1", 4, "T", b"{}", schema_version=2**63 - 1).check()


def test_a_naive_recorded_at_is_refused_naming_stream_and_version() -> None:
    with pytest.raises(UsageError, match="no UTC offset") as info:
        RawEvent.new("order-1", 4, "T", b"{}", recorded_at=datetime(2026, 1, 1, 12))
    assert (info.value.context.stream, info.value.context.version) == ("order-1", 4)
    assert "stream 'order-1', version 4" in str(info.value)


def test_new_accepts_what_can_work() -> None:
    plus2 = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    for data in ('{"a": "é"}', bytearray('{"a": "é"}'.encode()), memoryview(b'{"a": "\xc3\xa9"}')):
        ev = RawEvent.new("s", 0, "T", data, metadata=bytearray(b"{}"), recorded_at=plus2,
                          position=0, id="")
        assert ev.data == '{"a": "é"}'.encode() and type(ev.data) is bytes
        assert ev.metadata == b"{}" and type(ev.metadata) is bytes
        assert ev.recorded_at == plus2 and ev.id  # an empty id gets a random one
        assert ev.check() is ev


def test_check_refuses_what_the_plain_constructor_lets_through() -> None:
    unchecked = RawEvent("order-1", -1, "T", b"{}")  # stores build events so, in bulk
    with pytest.raises(UsageError, match=r"version must be an int >= 0 .*not -1"):
        unchecked.check()
    naive = RawEvent("order-1", 3, "T", b"{}", recorded_at=datetime(2026, 1, 1))
    with pytest.raises(UsageError, match=r"no UTC offset.*\(stream 'order-1', version 3"):
        naive.check()


# -- times: every refusal is an EnvelopeError naming where, never a bare ValueError ----------

_ENVELOPE = ('{"specversion":"1.0","id":"1","source":"s","type":"T","evstream":"order-1",'
             '"evversion":3,"time":%s}')


@pytest.mark.parametrize("text, message", [
    ("2024-13-45T99:00:00Z", r"not a valid date and time: .*month must be in 1\.\.12"),
    ("2024-02-30T00:00:00Z", "day is out of range for month"),
    ("2024-01-01T24:00:00Z", "hour must be in 0..23"),
    ("2024-01-01T23:59:60Z", "second must be in 0..59"),
    ("0000-01-01T00:00:00Z", "year 0 is out of range"),
    ("2024-01-01T00:00:00+24:00", r"UTC offset out of range \(-23:59 to \+23:59\)"),
    ("2024-01-01T00:00:00-00:60", "UTC offset out of range"),
    ("0001-01-01T00:00:00+01:00", "outside the years 1-9999 once in UTC"),
    ("9999-12-31T23:59:59-00:01", "outside the years 1-9999 once in UTC"),
    ("２０２４-01-01T00:00:00Z", "not an RFC 3339 timestamp"),  # fullwidth digits
])
def test_a_time_that_does_not_exist_names_the_envelope(text: str, message: str) -> None:
    doc = (_ENVELOPE % json.dumps(text)).encode()
    with pytest.raises(EnvelopeError, match=message) as info:
        from_cloudevent(doc, where=Context(file="export.jsonl", line=7))
    ctx = info.value.context
    assert (ctx.file, ctx.line, ctx.stream, ctx.version, ctx.path) == (
        "export.jsonl", 7, "order-1", 3, "/time")
    assert str(info.value).endswith(
        "(file export.jsonl:7, stream 'order-1', version 3, type T, at /time)")


def test_times_at_the_edges_are_kept() -> None:
    for text, want in [
        ("2024-01-01T00:00:00+23:59", datetime(2024, 1, 1, tzinfo=timezone(
            timedelta(hours=23, minutes=59)))),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999000z", datetime(9999, 12, 31, 23, 59, 59, 999999,
                                                    tzinfo=UTC)),
        ("2024-02-29t12:00:00.5-03:30", datetime(2024, 2, 29, 12, 0, 0, 500000,
                                                 tzinfo=timezone(-timedelta(hours=3.5)))),
    ]:
        got = parse_time(text, Context())
        assert got == want and got.utcoffset() == want.utcoffset()


_TIME_SHAPED = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z")


@given(st.one_of(st.text(), _TIME_SHAPED,
                 _TIME_SHAPED.map(lambda t: t.replace("0", "\u0660"))))  # Arabic-Indic zero
def test_parse_time_returns_an_aware_time_or_raises_envelope_error(text: str) -> None:
    try:
        value = parse_time(text, Context(line=1))
    except EnvelopeError as e:
        assert e.context.path == "/time" and e.context.line == 1
    else:
        assert isinstance(value, datetime) and value.utcoffset() is not None
        assert format_time(value)  # whatever is read can be written back


def test_recorded_at_outside_utc_years_is_an_envelope_error_when_written() -> None:
    ev = RawEvent.new("s", 0, "T", b"{}", recorded_at=datetime(
        1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    with pytest.raises(EnvelopeError, match="outside the years 1-9999"):
        to_cloudevent(ev)


# -- an envelope that repeats a member is refused; its payload is not its business ---------

_HEAD = b'{"specversion":"1.0","id":"1","source":"s","type":"T",'


@pytest.mark.parametrize("doc, member", [
    (_HEAD + b'"evstream":"order-1","evstream":"order-42","evversion":0}', "evstream"),
    (_HEAD + b'"evstream":"a","evversion":0,"evversion":1}', "evversion"),
    (_HEAD + b'"evstream":"a","evversion":0,"\\u0065vstream":"b"}', "evstream"),  # escaped
    (_HEAD + b'"evstream":"a","evversion":0,"type":"U"}', "type"),
    (_HEAD + b'"evstream":"a","evversion":0,"data":{},"data":{"x":1}}', "data"),
    (_HEAD + b'"evstream":"a","evversion":0,"x-ext":1, "x-ext" :2}', "x-ext"),
    (_HEAD + b'"evstream":"a","evversion":0,"a/b":1,"a/b":2}', "a/b"),
])
def test_a_repeated_envelope_member_is_refused(doc: bytes, member: str) -> None:
    with pytest.raises(EnvelopeError, match=f"envelope repeats the member '{member}'") as info:
        from_cloudevent(doc, where=Context(file="x.jsonl", line=4))
    ctx = info.value.context
    assert (ctx.file, ctx.line) == ("x.jsonl", 4)
    assert ctx.path == "/" + member.replace("/", "~1")
    assert ctx.stream is None  # which stream it is, is the question


@pytest.mark.parametrize("data", [
    b'{"x":1,"x":2}',
    b'{"a":{"evstream":1,"evstream":2}}',
    b'[{"k":1,"k":2},{"\\u006b":1,"k":2}]',
])
def test_a_payload_that_repeats_a_key_is_kept_as_it_is(data: bytes) -> None:
    doc = _HEAD + b'"evstream":"a","evversion":0,"data":' + data + b',"evmetadata":' + data + b"}"
    ev = from_cloudevent(doc)
    assert ev.data == data and ev.metadata == data


_KEYS = st.sampled_from(["a", "b", "evstream", "\\u0061", "\\\"", "é", "\\u00e9"])
_SCALARS = st.sampled_from(["1", "null", '"a"', '"\\"}"', "[]", "{}", "-0.5e3"])


@st.composite
def _objects(draw: st.DrawFn, depth: int = 0) -> tuple[str, list[str]]:
    """A JSON object as text, keys possibly repeated (raw key texts listed in order)."""
    keys = draw(st.lists(_KEYS, max_size=5))
    members = []
    for key in keys:
        value = (draw(_objects(depth + 1))[0] if depth < 2 and draw(st.booleans())
                 else draw(_SCALARS))
        space = draw(st.sampled_from(["", " ", "\n\t"]))
        members.append(f'{space}"{key}"{space}:{space}{value}')
    return "{" + ",".join(members) + "}", keys


@pytest.mark.parametrize("c_scan", [True, False], ids=["C scan", "without it"])
@given(doc=_objects())
def test_repeated_member_compares_the_top_level_names_exactly(
        c_scan: bool, doc: tuple[str, list[str]]) -> None:
    text, keys = doc
    seen: set[str] = set()
    want = None
    for key in keys:
        name = json.loads(f'"{key}"')
        if name in seen:
            want = name
            break
        seen.add(name)
    scan = events.fast_duplicate_key if c_scan else (lambda data: None)
    with mock.patch.object(events, "fast_duplicate_key", scan):
        assert repeated_member(text.encode()) == want


def test_repeated_member_of_what_is_not_an_object() -> None:
    assert repeated_member(b'[{"a":1,"a":2}]') is None
    assert repeated_member(b'"a"') is None
    assert repeated_member(b" {} ") is None


@pytest.mark.parametrize("extra, message, path", [
    (b'"evstream":"","evversion":0', "'evstream' is empty", "/evstream"),
    (b'"evstream":"a","evversion":0,"evschemaversion":0', "'evschemaversion' must be >= 1",
     "/evschemaversion"),
    (b'"evstream":"a","evversion":0,"evposition":-1', "'evposition' must be >= 0",
     "/evposition"),
])
def test_envelope_values_a_raw_event_cannot_hold(extra: bytes, message: str,
                                                 path: str) -> None:
    with pytest.raises(EnvelopeError, match=message) as info:
        from_cloudevent(_HEAD + extra + b"}")
    assert info.value.context.path == path


def test_a_caller_may_stand_in_an_empty_stream_for_a_missing_evstream() -> None:
    ev = from_cloudevent(_HEAD + b'"data":{}}', stream="", version=0)  # as the audit does
    assert (ev.stream, ev.version, ev.data) == ("", 0, b"{}")


# -- review: bytes that are not UTF-8, text that has no UTF-8 form --------------------------

@pytest.mark.parametrize("data", [b'"\xff"', b'{"a":"\xed\xa0\x80"}', b'["\xc3"]'])
def test_a_payload_that_is_not_utf8_goes_base64_so_the_line_stays_json(data: bytes) -> None:
    ev = RawEvent.new("s", 0, "T", data, metadata=data)
    line = to_cloudevent(ev)
    doc = json.loads(line)  # every reader can read the line (it was invalid UTF-8)
    assert "data" not in doc and "evmetadata" not in doc
    assert from_cloudevent(line) == ev


@pytest.mark.parametrize("member", [b'"data":"\xff"', b'"evmetadata":{"a":"\xc3"}',
                                    b'"x":"\xff"'])
def test_an_envelope_that_is_not_utf8_is_refused(member: bytes) -> None:
    doc = _HEAD + b'"evstream":"a","evversion":0,' + member + b"}"
    with pytest.raises(EnvelopeError, match="not valid JSON: invalid UTF-8 at byte") as info:
        from_cloudevent(doc, where=Context(file="x.jsonl", line=3))
    assert "file x.jsonl:3" in str(info.value)


def test_an_envelope_text_with_a_lone_surrogate_is_an_envelope_error() -> None:
    doc = (_HEAD + b'"evstream":"a","evversion":0,"data":"').decode() + "\ud800\"}"
    with pytest.raises(EnvelopeError, match="lone surrogate"):
        from_cloudevent(doc)


@pytest.mark.parametrize("field, member", [("stream", "/evstream"), ("type", "/type"),
                                           ("id", "/id"), ("content_type", "/datacontenttype")])
def test_writing_text_without_a_utf8_form_is_an_envelope_error(field: str, member: str) -> None:
    fields = {"stream": "order-1", "version": 2, "type": "T", "data": b"{}", "id": "e-1"}
    ev = RawEvent(**(fields | {field: "a\udc80"}))
    with pytest.raises(EnvelopeError, match=f"{field} 'a\\\\udc80' has no UTF-8 form") as info:
        to_cloudevent(ev)
    assert info.value.context.path == member and info.value.context.version == 2


# -- review: data under a content type that is not JSON -------------------------------------

def test_text_data_under_a_content_type_that_is_not_json_is_the_string_itself() -> None:
    doc = _HEAD + b'"evstream":"a","evversion":0,"datacontenttype":"text/plain",' \
                  b'"data":"caf\\u00e9 \\"x\\""}'
    ev = from_cloudevent(doc)
    assert (ev.data, ev.content_type) == ('café "x"'.encode(), "text/plain")
    assert from_cloudevent(to_cloudevent(ev)) == ev


@pytest.mark.parametrize("data", [b"{}", b"1", b"null", b"[\"a\"]"])
def test_data_that_is_not_a_string_under_a_content_type_that_is_not_json_is_refused(
        data: bytes) -> None:
    doc = _HEAD + b'"evstream":"a","evversion":0,"datacontenttype":"text/csv","data":' + \
        data + b"}"
    with pytest.raises(EnvelopeError, match="'data' must be a JSON string when "
                                            "'datacontenttype' is 'text/csv'") as info:
        from_cloudevent(doc)
    assert info.value.context.path == "/data"


def test_an_empty_content_type_comes_back_as_it_was() -> None:
    ev = RawEvent.new("s", 0, "T", b'{"a":1}', content_type="")
    assert from_cloudevent(to_cloudevent(ev)) == ev


# -- review: attribute names, sizes, and where an undecodable envelope belongs ----------------

@pytest.mark.parametrize("name", ["x-ext", "Evstream", "ev_stream", "é", "", "a b"])
def test_an_attribute_name_cloudevents_does_not_allow_is_refused(name: str) -> None:
    doc = _HEAD + b'"evstream":"a","evversion":4,' + json.dumps(name).encode() + b":1}"
    with pytest.raises(EnvelopeError, match="is not a CloudEvents name") as info:
        from_cloudevent(doc, where=Context(file="x.jsonl", line=2))
    ctx = info.value.context
    assert (ctx.file, ctx.line, ctx.stream, ctx.version) == ("x.jsonl", 2, "a", 4)
    assert ctx.path == "/" + name


def test_extension_attributes_with_valid_names_are_left_out() -> None:
    doc = _HEAD + b'"evstream":"a","evversion":0,"traceparent":"00-ab","comexample1":{"x":1},' \
                  b'"subject":"s1","data":{"k":2}}'
    ev = from_cloudevent(doc)
    assert (ev.stream, ev.data) == ("a", b'{"k":2}')


@pytest.mark.parametrize("member, path", [
    (b'"evversion":9223372036854775808', "/evversion"),
    (b'"evversion":18446744073709551616', "/evversion"),
    (b'"evversion":-1', "/evversion"),
    (b'"evversion":0,"evposition":9223372036854775808', "/evposition"),
    (b'"evversion":0,"evschemaversion":9223372036854775808', "/evschemaversion"),
])
def test_numbers_beyond_int64_are_refused(member: bytes, path: str) -> None:
    with pytest.raises(EnvelopeError, match=r"must be .*2\*\*63-1") as info:
        from_cloudevent(_HEAD + b'"evstream":"a",' + member + b"}")
    assert info.value.context.path == path and info.value.context.stream == "a"
    ok = _HEAD + b'"evstream":"a","evversion":9223372036854775807}'
    assert from_cloudevent(ok).version == 2**63 - 1


@pytest.mark.parametrize("doc, path", [
    (_HEAD.replace(b'"id":"1"', b'"id":1') + b'"evstream":"order-7","evversion":3}', "/id"),
    (_HEAD + b'"evstream":"order-7","evversion":3,"time":1}', "/time"),
    (_HEAD + b'"evstream":"order-7","evversion":3,"evposition":"9"}', "/evposition"),
])
def test_a_mistyped_attribute_names_the_stream_and_version_the_envelope_gives(
        doc: bytes, path: str) -> None:
    with pytest.raises(EnvelopeError, match=r"not a CloudEvents 1\.0 envelope") as info:
        from_cloudevent(doc, where=Context(file="x.jsonl", line=9))
    assert str(info.value).endswith(f"(file x.jsonl:9, stream 'order-7', version 3, type T, "
                                    f"at {path})")


@pytest.mark.parametrize("doc, path", [
    (_HEAD + b'"evversion":0}', "/evstream"),
    (_HEAD + b'"evstream":"a"}', "/evversion"),
    (_HEAD + b'"evstream":"a","evversion":0,"data":1,"data_base64":"AA=="}', "/data_base64"),
])
def test_a_missing_or_conflicting_member_is_pointed_at(doc: bytes, path: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        from_cloudevent(doc)
    assert info.value.context.path == path


# -- review: the round trip for any event, and any envelope decodes or is an EnvelopeError ----

_CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
    "application/cloudevents+json", "text/plain", "application/octet-stream", "",
    "application/x-protobuf"])
_TEXT = st.text(min_size=1, max_size=12)  # hypothesis' text has no lone surrogates


@st.composite
def _any_events(draw: st.DrawFn) -> RawEvent:
    payloads = st.one_of(st.binary(max_size=40),
                         st.sampled_from([b"", b"null", b'"\xff"', b' {"a": 1}', b"{}\n"]),
                         st.text(max_size=20).map(lambda t: json.dumps(t, ensure_ascii=False)
                                                  .encode()))
    when = draw(st.none() | st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
        timezones=st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
            lambda m: timezone(timedelta(minutes=m)))))
    return RawEvent(
        stream=draw(_TEXT), version=draw(st.integers(0, 2**63 - 1)), type=draw(_TEXT),
        data=draw(payloads), metadata=draw(payloads), id=draw(_TEXT), recorded_at=when,
        position=draw(st.none() | st.integers(0, 2**63 - 1)),
        content_type=draw(_CONTENT_TYPES), schema_version=draw(st.integers(1, 2**63 - 1)))


@given(_any_events())
def test_property_any_event_round_trips_through_a_line_any_reader_can_read(
        ev: RawEvent) -> None:
    line = to_cloudevent(ev)
    assert b"\n" not in line and isinstance(json.loads(line), dict)  # strict UTF-8 JSON
    back = from_cloudevent(line)
    assert back == ev  # recorded_at: the same instant, written (and read back) in UTC
    if ev.recorded_at is not None:
        assert back.recorded_at is not None and back.recorded_at.utcoffset() == timedelta(0)
    assert to_cloudevent(back) == line


_MEMBER_NAMES = st.sampled_from([
    "specversion", "id", "source", "type", "time", "datacontenttype", "data", "data_base64",
    "evstream", "evversion", "evschemaversion", "evposition", "evmetadata",
    "evmetadatabase64", "subject", "traceparent", "Ev", "x-y", ""])
_MEMBER_VALUES = st.one_of(
    st.sampled_from(["1.0", "a", "", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+02:00",
                     "AA==", "text/plain", "application/json", 0, 1, -1, 2**63, 1.5, True,
                     None, [], {}, {"a": [1]}]),
    st.text(max_size=5), st.integers())
_BASE_ENVELOPE = {"specversion": "1.0", "id": "1", "source": "s", "type": "T",
                  "evstream": "a", "evversion": 0}


@given(st.dictionaries(_MEMBER_NAMES, _MEMBER_VALUES, max_size=6), st.booleans())
def test_property_a_hostile_envelope_decodes_or_is_one_line_envelope_error(
        members: dict[str, Any], as_text: bool) -> None:
    doc = json.dumps(_BASE_ENVELOPE | members, ensure_ascii=False)
    try:
        ev = from_cloudevent(doc if as_text else doc.encode(),
                             where=Context(file="h.jsonl", line=5))
    except EnvelopeError as e:
        assert "\n" not in str(e) and "file h.jsonl:5" in str(e)
    else:
        assert ev.check() is ev
        assert from_cloudevent(to_cloudevent(ev)) == ev


@given(st.text(st.characters(exclude_categories=()), max_size=60)  # lone surrogates too
       | st.tuples(st.text(max_size=20), st.characters(min_codepoint=0xD800,
                                                       max_codepoint=0xDFFF)).map("".join))
def test_property_any_text_decodes_or_is_an_envelope_error(text: str) -> None:
    with contextlib.suppress(EnvelopeError):
        from_cloudevent(text)
    with contextlib.suppress(EnvelopeError):
        from_cloudevent((_HEAD.decode() + '"evstream":"a","evversion":0,"data":"') + text)
