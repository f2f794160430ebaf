from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.errors import EnvelopeError, UsageError
from evtools.events import RawEvent, from_cloudevent, to_cloudevent

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
