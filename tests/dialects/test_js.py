"""The js dialect: what Node 20's JSON.parse holds and JSON.stringify writes.

The differential tests compare with real Node; these state the behaviours one by one, so
a failure names the rule that broke, and fuzz the dialect's own invariants.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtools.dialects import get_dialect
from evtools.dialects._jsontext import format_float
from evtools.dialects.js import STACK_OVERFLOW, JsDialect, _Rejected, _V8Parser
from evtools.errors import ConsumerRejected, UsageError

from .jsongen import json_documents, json_values

js = JsDialect()


def reason(data: bytes) -> str:
    with pytest.raises(ConsumerRejected) as info:
        js.roundtrip(data)
    assert info.value.dialect == "js"
    return info.value.reason


def test_get_dialect_gives_js() -> None:
    dialect = get_dialect("js", max_depth=10)
    assert isinstance(dialect, JsDialect)
    assert dialect.max_depth == 10


# -- what the script holds -------------------------------------------------------------------


def test_numbers_are_float64_with_minus_zero_and_infinity() -> None:
    value = js.decode(b"[9007199254740993,-0,1e400,-1e400,1e-400,7]")
    assert value == [9007199254740992.0, 0.0, math.inf, -math.inf, 0.0, 7.0]
    assert all(type(v) is float for v in value)
    assert math.copysign(1, value[1]) == -1


def test_array_index_keys_come_first_then_insertion_order() -> None:
    doc = b'{"b":1,"10":2,"a":3,"9":4,"01":5,"-1":6,"4294967294":7,"4294967295":8,"\\u0030":9}'
    assert list(js.decode(doc)) == [
        "0", "9", "10", "4294967294", "b", "a", "01", "-1", "4294967295"
    ]


def test_repeated_key_keeps_first_position_and_last_value() -> None:
    value = js.decode(b'{"a":1,"b":2,"a":3,"1":4,"1":5}')
    assert list(value.items()) == [("1", 5.0), ("a", 3.0), ("b", 2.0)]


def test_lone_surrogates_are_kept_pairs_are_joined() -> None:
    assert js.decode(b'"\\ud83d\\ude00|\\ud83d|\\ude00|\\ud83d\\u0041"') == (
        "😀|\ud83d|\ude00|\ud83dA"
    )


def test_invalid_utf8_becomes_one_replacement_per_maximal_subpart() -> None:
    # WHATWG: E2 82 is one truncated sequence (one U+FFFD); ED A0 80 is three bytes that
    # cannot start a sequence (a surrogate), so three.
    assert js.decode(b'"\xe2\x82A\xff\xed\xa0\x80\xf0\x9f\x98"') == (
        "\ufffdA\ufffd" + "\ufffd" * 3 + "\ufffd"
    )


# -- what JSON.stringify writes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "written"),
    [
        (b"9007199254740993", b"9007199254740992"),
        (b"12345678901234567890", b"12345678901234567000"),
        (b"1e20", b"100000000000000000000"),
        (b"1e21", b"1e+21"),
        (b"0.000001", b"0.000001"),
        (b"1e-7", b"1e-7"),
        (b"1.5e-7", b"1.5e-7"),
        (b"0.00001", b"0.00001"),
        (b"-0", b"0"),
        (b"1e400", b"null"),
        (b"-1e400", b"null"),
        (b"100.0", b"100"),
        (b"5e-324", b"5e-324"),
        (b"1.7976931348623157e308", b"1.7976931348623157e+308"),
    ],
)
def test_numbers_are_written_by_number_to_string(text: bytes, written: bytes) -> None:
    assert js.roundtrip(text) == written
    assert js.encode(js.decode(text)) == written


def test_strings_escape_only_what_json_stringify_escapes() -> None:
    doc = '"<a>&\u2028\u2029\\b\\f\\n\\r\\t\\u0001\\u007f\\udfff\\ud800\\ud83d\\ude00"'.encode()
    assert js.roundtrip(doc) == (
        '"<a>&\u2028\u2029\\b\\f\\n\\r\\t\\u0001\x7f\\udfff\\ud800😀"'.encode()
    )


def test_encode_orders_a_dicts_index_keys_as_v8_does() -> None:
    assert js.encode({"b": 1, "2": 2, "1": 3, "x": float("nan")}) == b'{"1":3,"2":2,"b":1,"x":null}'
    assert js.encode(["\ud83d\ude00", "\ud83d"]) == '["😀","\\ud83d"]'.encode()


def test_max_depth_models_the_stack_limit() -> None:
    limited = JsDialect(max_depth=3)
    assert limited.roundtrip(b"[[[1]]]") == b"[[[1]]]"
    with pytest.raises(ConsumerRejected, match=STACK_OVERFLOW):
        limited.roundtrip(b"[[[[1]]]]")
    with pytest.raises(ConsumerRejected, match=STACK_OVERFLOW):
        limited.encode({"a": {"b": {"c": {}}}})
    assert limited.decode(b"[[[[1]]]]") == [[[[1.0]]]]  # JSON.parse itself has no limit
    deep = b"[" * 20000 + b"]" * 20000
    assert js.roundtrip(deep) == deep


def test_bad_max_depth_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        JsDialect(max_depth=-1)


# -- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "Unexpected end of JSON input"),
        (b"x", "Unexpected token 'x', \"x\" is not valid JSON"),
        (b"[1,]", "Unexpected token ']', \"[1,]\" is not valid JSON"),
        (b"NaN", '"NaN" is not valid JSON'),
        (b"[1 2]", "Expected ',' or ']' after array element in JSON at position 3"),
        (b'{"a" 1}', "Expected ':' after property name in JSON at position 5"),
        (b'{"a":1,}', "Expected double-quoted property name in JSON at position 7"),
        (b"{1:2}", "Expected property name or '}' in JSON at position 1"),
        (b'{"a":1 x}', "Expected ',' or '}' after property value in JSON at position 7"),
        (b"01", "Unexpected number in JSON at position 1"),
        (b"-", "No number after minus sign in JSON at position 1"),
        (b"1.", "Unterminated fractional number in JSON at position 2"),
        (b"1e", "Exponent part is missing a number in JSON at position 2"),
        (b'"abc', "Unterminated string in JSON at position 4"),
        (b'"\\x"', "Bad escaped character in JSON at position 2"),
        (b'"\\u12g4"', "Bad Unicode escape in JSON at position 5"),
        (b'"a\x01"', "Bad control character in string literal in JSON at position 2"),
        (b"[1] x", "Unexpected non-whitespace character after JSON at position 4"),
        (b"a" * 30, "Unexpected token 'a', \"aaaaaaaaaa\"... is not valid JSON"),
        (
            b'{"aaaaaaaaaaaaaaaaaaaaaa":x}',
            "Unexpected token 'x', ...\"aaaaaaaa\":x}\" is not valid JSON",
        ),
        # positions count UTF-16 code units; a split pair prints as U+FFFD
        ('"😀\\x"'.encode(), "Bad escaped character in JSON at position 4"),
        (
            ("😀" * 12 + "x").encode(),
            "Unexpected token '\ufffd', \"😀😀😀😀😀\"... is not valid JSON",
        ),
    ],
)
def test_rejections_carry_v8s_message(data: bytes, text: str) -> None:
    assert reason(data) == text
    with pytest.raises(ConsumerRejected):
        js.decode(data)


# -- properties ----------------------------------------------------------------------------


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_reject(data: bytes) -> None:
    try:
        js.decode(data)
    except ConsumerRejected as e:
        assert e.reason
    try:
        js.roundtrip(data)
    except ConsumerRejected as e:
        assert e.reason


@settings(deadline=None)
@given(json_documents())
def test_roundtrip_writes_json_that_roundtrips_to_itself(doc: bytes) -> None:
    out = js.roundtrip(doc)
    json.loads(out)  # valid JSON, valid UTF-8
    assert js.roundtrip(out) == out
    assert js.encode(js.decode(doc)) == out


@settings(deadline=None)
@given(json_documents() | st.binary(max_size=40))
def test_fast_path_and_exact_parser_agree(doc: bytes) -> None:
    text = doc.decode("utf-8", "replace")
    exact: tuple[str, Any]
    try:
        exact = ("holds", _V8Parser(text).parse())
    except _Rejected as e:
        exact = ("rejects", e.reason)
    try:
        fast: tuple[str, Any] = ("holds", js.decode(doc))
    except ConsumerRejected as e:
        fast = ("rejects", e.reason)
    assert repr(fast) == repr(exact)  # repr tells -0.0 from 0.0 and shows key order


@settings(deadline=None)
@given(json_values)
def test_encode_writes_what_decoding_its_output_gives_back(value: Any) -> None:
    out = js.encode(value)
    assert js.encode(js.decode(out)) == out


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_to_string_reads_back_to_the_same_float(f: float) -> None:
    text = format_float(f)
    assert float(text) == f
    assert ("e" in text) == (f != 0 and not 1e-6 <= abs(f) < 1e21)
