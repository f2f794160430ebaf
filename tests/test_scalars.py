from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.scalars import (
    DECIMAL_NUMERAL,
    DecimalText,
    Int64,
    Timestamp,
    UInt64,
    dec_hook,
    enc_hook,
)

from .strategies import timestamps


def test_keeps_nanoseconds_offset_and_text() -> None:
    ts = Timestamp("2026-03-04T05:06:07.123456789+05:30")
    assert ts.nanosecond == 123_456_789
    assert ts.utcoffset == timedelta(hours=5, minutes=30)
    assert str(ts) == "2026-03-04T05:06:07.123456789+05:30"
    assert ts.epoch_ns == 1772580967123456789


def test_to_datetime_refuses_to_drop_nanoseconds_silently() -> None:
    ts = Timestamp("2026-03-04T05:06:07.123456789Z")
    with pytest.raises(ValueError, match="sub-microsecond"):
        ts.to_datetime()
    assert ts.to_datetime(truncate=True) == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert Timestamp("2026-03-04T05:06:07.5Z").to_datetime().microsecond == 500000


def test_same_instant_other_offset_is_not_equal_but_orders_equal() -> None:
    a = Timestamp("2026-01-01T02:00:00+02:00")
    b = Timestamp("2026-01-01T00:00:00Z")
    assert a != b and a.epoch_ns == b.epoch_ns
    assert not a < b and not b < a
    assert Timestamp("2026-01-01T00:00:00.000Z") == b  # same instant, same offset
    assert hash(Timestamp("2026-01-01T00:00:00.000Z")) == hash(b)


@pytest.mark.parametrize("text, message", [
    ("2026-01-01T00:00:00", "no UTC offset"),
    ("2026-01-01 00:00:00", "no UTC offset"),
    ("2026-02-30T00:00:00Z", "day is out of range"),
    ("2026-13-01T00:00:00Z", "not an RFC 3339"),
    ("2026-01-01T24:00:00Z", "not an RFC 3339"),
    ("2026-01-01T00:00:00.1234567891Z", "not an RFC 3339"),
    ("2026-01-01T00:00:00+24:00", "not an RFC 3339"),
    ("yesterday", "not an RFC 3339"),
])
def test_invalid_text_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Timestamp(text)


@given(timestamps())
def test_text_round_trip(ts: Timestamp) -> None:
    again = Timestamp(str(ts))
    assert again == ts and again.epoch_ns == ts.epoch_ns


@given(st.integers(min_value=-(2**60), max_value=2**60))
def test_epoch_ns_round_trip(ns: int) -> None:
    assert Timestamp.from_epoch_ns(ns).epoch_ns == ns


def test_msgspec_hooks() -> None:
    class E(msgspec.Struct):
        at: Timestamp
        n: Int64

    data = b'{"at":"2026-01-01T00:00:00.000000001-03:00","n":9223372036854775807}'
    ev = msgspec.json.decode(data, type=E, dec_hook=dec_hook)
    assert ev.at.nanosecond == 1 and ev.n == 2**63 - 1
    assert msgspec.json.encode(ev, enc_hook=enc_hook) == data
    with pytest.raises(msgspec.ValidationError, match=r"<= 9223372036854775807"):
        msgspec.json.decode(data.replace(b"807", b"808"), type=E, dec_hook=dec_hook)
    with pytest.raises(msgspec.ValidationError, match=r"Expected `str`"):
        msgspec.json.decode(b'{"at":1,"n":1}', type=E, dec_hook=dec_hook)


def test_uint64_range_is_checked_by_the_hook() -> None:

    class E(msgspec.Struct):
        n: UInt64

    top = msgspec.json.decode(b'{"n":18446744073709551615}', type=E, dec_hook=dec_hook)
    assert top.n == 2**64 - 1 and isinstance(top.n, UInt64)
    assert msgspec.json.encode(top, enc_hook=enc_hook) == b'{"n":18446744073709551615}'
    for bad, message in ((b"18446744073709551616", "uint64"), (b"-1", "uint64"),
                         (b"1.5", "Expected `int`"), (b'"1"', "Expected `int`")):
        with pytest.raises(msgspec.ValidationError, match=message):
            msgspec.json.decode(b'{"n":' + bad + b"}", type=E, dec_hook=dec_hook)


@given(timestamps(), st.integers(0, 9))
def test_fast_parse_agrees_with_the_exact_one(ts: Timestamp, digits: int) -> None:
    """Texts spelt with ``T`` parse through datetime.fromisoformat; ``t`` takes the regex
    path. Both give the same instant, offset and nanoseconds, for every fraction width."""
    text = str(ts)
    frac = f"{ts.nanosecond:09d}"[:digits]
    head, offset = text[:19], text[-1] if text.endswith("Z") else text[-6:]
    text = head + ("." + frac if digits else "") + offset
    fast, exact = Timestamp(text), Timestamp(text[:10] + "t" + text[11:])
    assert (fast.epoch_ns, fast.utcoffset, fast.nanosecond) == \
        (exact.epoch_ns, exact.utcoffset, exact.nanosecond)
    assert fast == exact and fast.nanosecond == int((frac or "0").ljust(9, "0"))


@pytest.mark.parametrize("text", ["２０２４-01-01T00:00:00Z", "2024-01-0١T00:00:00Z",
                                  "0000-01-01T00:00:00Z"])
def test_only_ascii_digits_and_years_a_datetime_holds(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        Timestamp(text)
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        dec_hook(Timestamp, text)


@given(st.integers(-86_399, 86_399).filter(lambda s: s % 60 != 0))
def test_an_offset_rfc_3339_cannot_write_is_refused_not_rounded(seconds: int) -> None:
    """A datetime at +00:00:30 had become the text +00:00: another instant."""
    when = datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=seconds)))
    with pytest.raises(ValueError, match="not a whole number of minutes"):
        Timestamp.from_datetime(when)
    with pytest.raises(ValueError, match="not a whole number of minutes"):
        Timestamp.from_epoch_ns(1, timedelta(seconds=seconds))


@given(st.integers(-1439, 1439), st.integers(-(2**60), 2**60))
def test_whole_minute_offsets_keep_the_instant(minutes: int, epoch_ns: int) -> None:
    ts = Timestamp.from_epoch_ns(epoch_ns, timedelta(minutes=minutes))
    assert ts.epoch_ns == epoch_ns and ts.utcoffset == timedelta(minutes=minutes)


class _Paid(msgspec.Struct):
    amount: DecimalText


@given(st.from_regex(DECIMAL_NUMERAL, fullmatch=True))
def test_decimal_text_is_written_back_digit_for_digit(text: str) -> None:
    data = msgspec.json.encode({"amount": text})
    paid = msgspec.json.decode(data, type=_Paid, dec_hook=dec_hook)
    assert paid.amount == Decimal(text) and isinstance(paid.amount, DecimalText)
    assert msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number").encode(
        paid) == data  # a string again, "0.0000001" not "1E-7", "5.10" not "5.1"


@pytest.mark.parametrize("payload", [b'{"amount":5.10}', b'{"amount":"1e3"}',
                                     b'{"amount":"NaN"}', b'{"amount":" 5"}',
                                     b'{"amount":"1_000"}', b'{"amount":"05"}',
                                     b'{"amount":"+5"}', b'{"amount":".5"}'])
def test_decimal_text_takes_only_a_decimal_numeral_string(payload: bytes) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.amount`"):
        msgspec.json.decode(payload, type=_Paid, dec_hook=dec_hook)


def test_decimal_text_is_a_finite_decimal() -> None:
    assert DecimalText("5.10") + 1 == Decimal("6.10")
    assert repr(DecimalText("0.0000001")) == "DecimalText('0.0000001')"
    with pytest.raises(ValueError, match="finite"):
        DecimalText("NaN")
