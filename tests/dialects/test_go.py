"""The go dialect: what Go's encoding/json holds and writes (expected values from Go 1.19).

The differential tests compare with real Go; these state the behaviours one by one, so a
failure names the rule that broke, and fuzz the dialect's own invariants.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evtools.dialects import get_dialect
from evtools.dialects.go import GoDialect, _Rejected, _Scanner
from evtools.errors import ConsumerRejected, UsageError

from .jsongen import json_documents, json_values

go = GoDialect()


def reason(data: bytes, dialect: GoDialect = go) -> str:
    with pytest.raises(ConsumerRejected) as info:
        dialect.roundtrip(data)
    assert info.value.dialect == "go"
    return info.value.reason


def test_get_dialect_gives_go_1_19() -> None:
    dialect = get_dialect("go")
    assert isinstance(dialect, GoDialect)
    assert dialect.version == "1.19"


# -- what Go holds -------------------------------------------------------------------------


def test_every_number_is_a_float64() -> None:
    value = go.decode(b'{"id":9007199254740993,"n":1,"x":-0,"y":1e-400,"z":-1e-400}')
    assert value == {"id": 9007199254740992.0, "n": 1.0, "x": 0.0, "y": 0.0, "z": 0.0}
    assert all(type(v) is float for v in value.values())
    assert math.copysign(1, value["x"]) == -1 and math.copysign(1, value["z"]) == -1


def test_numbers_past_800_characters_are_read_as_go_misreads_them() -> None:
    # strconv's slow path keeps 800 digits and puts the point after them (Go 1.19-1.2x).
    long_one = b"1" + b"0" * 900 + b"e-900"
    assert go.decode(long_one) == 1e-101
    assert go.roundtrip(b"[" + long_one + b"]") == b"[1e-101]"
    assert go.decode(b"0." + b"0" * 100_000 + b"1e100001") == 0.0  # exponent stops at 10000
    assert go.decode(b"1" + b"0" * 700 + b"e-700") == 1.0  # shorter: correctly rounded


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(800, 3000))
def test_long_numbers_that_go_reads_exactly_read_as_float(x: float, pad: int) -> None:
    # zeros after the point never move it, in either of strconv's paths: the port of its
    # long-number reading must agree with float() on them, and short texts go to float()
    from evtools.dialects._goatof import parse_float

    text = repr(x)
    mantissa, _, exponent = text.partition("e")
    padded = (mantissa if "." in mantissa else mantissa + ".") + "0" * pad + (
        f"e{exponent}" if exponent else "")
    assert parse_float(padded) == x and math.copysign(1, parse_float(padded)) == \
        math.copysign(1, x)
    assert parse_float(text) == float(text)


def test_repeated_key_takes_the_last_value() -> None:
    assert go.decode(b'{"a":1,"b":2,"a":3}') == {"a": 3.0, "b": 2.0}


def test_invalid_utf8_becomes_one_replacement_per_byte() -> None:
    # Go replaces byte by byte; WHATWG (JS) would replace E2 82 once.
    assert go.decode(b'"\xe2\x82A\xff\xed\xa0\x80"') == "\ufffd\ufffdA\ufffd" + "\ufffd" * 3


def test_surrogate_escapes_that_are_not_a_pair_become_replacements() -> None:
    assert go.decode(b'"\\ud83d\\ude00|\\ud83d|\\ude00|\\ud83d\\u0041"') == (
        "😀|\ufffd|\ufffd|\ufffdA"
    )


def test_keys_equal_after_replacement_are_one_key_last_wins() -> None:
    assert go.decode(b'{"\\ud800":1,"\\udc00":2,"\\ud800":3}') == {"\ufffd": 3.0}
    assert go.decode(b'{"\xff":1,"\xfe":2}') == {"\ufffd": 2.0}


# -- what Marshal writes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "written"),
    [
        (b"9007199254740993", b"9007199254740992"),
        (b"12345678901234567890", b"12345678901234567000"),
        (b"1e20", b"100000000000000000000"),
        (b"1e21", b"1e+21"),
        (b"123456789012345678901234", b"1.2345678901234569e+23"),
        (b"0.000001", b"0.000001"),
        (b"1e-7", b"1e-7"),
        (b"1.5e-7", b"1.5e-7"),
        (b"2e-10", b"2e-10"),
        (b"0.00001", b"0.00001"),
        (b"-0", b"-0"),
        (b"-0.0e5", b"-0"),
        (b"100.0", b"100"),
        (b"0.1", b"0.1"),
        (b"5e-324", b"5e-324"),
        (b"1.7976931348623157e308", b"1.7976931348623157e+308"),
    ],
)
def test_numbers_are_written_as_the_float_encoder_does(text: bytes, written: bytes) -> None:
    assert go.roundtrip(text) == written
    assert go.encode(go.decode(text)) == written


def test_keys_are_sorted_by_utf8_bytes() -> None:
    doc = '{"b":1,"a":2,"é":3,"😀":4,"\uffff":5,"B":6,"":7,"10":8,"9":9}'.encode()
    written = '{"":7,"10":8,"9":9,"B":6,"a":2,"b":1,"é":3,"\uffff":5,"😀":4}'.encode()
    assert go.roundtrip(doc) == written


def test_html_characters_and_line_separators_are_escaped() -> None:
    assert go.roundtrip('{"<k>":"a&b\u2028\u2029"}'.encode()) == (
        b'{"\\u003ck\\u003e":"a\\u0026b\\u2028\\u2029"}'
    )


def test_control_characters_go_1_19_and_1_22() -> None:
    doc = b'"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f"'
    assert go.roundtrip(doc) == b'"\\u0008\\u000c\\n\\r\\t\\u0001\\u001f\x7f"'
    assert GoDialect(version="1.22").roundtrip(doc) == b'"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f"'
    # an escaped backslash followed by b is not a \b
    assert go.roundtrip(b'"\\\\b\\b"') == b'"\\\\b\\u0008"'


def test_encode_of_values_go_cannot_hold() -> None:
    with pytest.raises(ConsumerRejected, match=r"json: unsupported value: \+Inf"):
        go.encode([float("inf")])
    with pytest.raises(ConsumerRejected, match="json: unsupported value: NaN"):
        go.encode({"x": float("nan")})
    assert go.encode({"big": 2**64, "small": 3, "t": True, "n": None}) == (
        b'{"big":18446744073709552000,"n":null,"small":3,"t":true}'
    )
    # A lone surrogate is 3 bytes of invalid UTF-8 to Go.
    assert go.encode("a\ud800") == b'"a\\ufffd\\ufffd\\ufffd"'


# -- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"1e400", "json: cannot unmarshal number 1e400 into Go value of type float64"),
        (b"[1,-1E999,1e400]", "json: cannot unmarshal number -1E999 into Go value of type float64"),
        (b"[1e400,x]", "invalid character 'x' looking for beginning of value"),
        (b"", "unexpected end of JSON input"),
        (b"[1", "unexpected end of JSON input"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b"1.", "invalid character ' ' after decimal point in numeric literal"),
        (b"tru", "invalid character ' ' in literal true (expecting 'e')"),
        (b"nulx", "invalid character 'x' in literal null (expecting 'l')"),
        (b"01", "invalid character '1' after top-level value"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b'"\t"', "invalid character '\\t' in string literal"),
        (b'"\\x"', "invalid character 'x' in string escape code"),
        (b'"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape"),
        (b"\xff", "invalid character 'ÿ' looking for beginning of value"),
        (b"\xc3\xa9", "invalid character 'Ã' looking for beginning of value"),
        (b"\x80", "invalid character '\\u0080' looking for beginning of value"),
        (b"'", "invalid character '\\'' looking for beginning of value"),
        (b"[" * 10001 + b"]" * 10001, "invalid character '[' exceeded max depth"),
    ],
)
def test_rejections_carry_gos_error_text(data: bytes, text: str) -> None:
    assert reason(data) == text
    with pytest.raises(ConsumerRejected):
        go.decode(data)


def test_nesting_up_to_10000_is_accepted() -> None:
    deep = b"[" * 10000 + b"]" * 10000
    assert go.roundtrip(deep) == deep
    value = go.decode(b'{"a":' * 5000 + b"-0" + b"}" * 5000)
    assert go.encode(value) == b'{"a":' * 5000 + b"-0" + b"}" * 5000


def test_unsupported_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        GoDialect(version="1.18")
    with pytest.raises(UsageError):
        GoDialect(version="latest")


# -- properties ----------------------------------------------------------------------------


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_reject(data: bytes) -> None:
    try:
        go.decode(data)
    except ConsumerRejected as e:
        assert e.reason
    try:
        go.roundtrip(data)
    except ConsumerRejected as e:
        assert e.reason


@settings(deadline=None)
@given(json_documents())
def test_roundtrip_writes_json_that_roundtrips_to_itself(doc: bytes) -> None:
    try:
        out = go.roundtrip(doc)
    except ConsumerRejected as e:
        assert e.reason.startswith("json: cannot unmarshal number")  # only 10**400
        return
    json.loads(out)  # valid JSON, valid UTF-8
    assert go.roundtrip(out) == out
    assert go.encode(go.decode(doc)) == out


@settings(deadline=None)
@given(json_documents() | st.binary(max_size=40))
def test_fast_path_and_exact_scanner_agree(doc: bytes) -> None:
    exact: tuple[str, Any]
    try:
        exact = ("holds", _Scanner(doc.decode("utf-8", "surrogateescape")).parse())
    except _Rejected as e:
        exact = ("rejects", e.reason)
    try:
        fast: tuple[str, Any] = ("holds", go.decode(doc))
    except ConsumerRejected as e:
        fast = ("rejects", e.reason)
    assert repr(fast) == repr(exact)  # repr tells -0.0 from 0.0


@settings(deadline=None)
@given(json_values)
@example("\ud800")  # a lone surrogate: invalid UTF-8 to Go
def test_encode_writes_what_decoding_its_output_gives_back(value: Any) -> None:
    try:
        out = go.encode(value)
    except ConsumerRejected:
        return  # an int beyond float64: Go never holds one
    again = go.encode(go.decode(out))
    assert go.decode(again) == go.decode(out)
    if _valid_utf8(value):
        assert again == out
    else:  # Go writes each invalid byte as the escape \ufffd, a real U+FFFD as itself:
        assert go.encode(go.decode(again)) == again  # the same after one more round


def _valid_utf8(value: Any) -> bool:
    """Whether every string of ``value`` encodes to UTF-8 (no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
