"""The ``python`` dialect: the exact reference every other dialect is measured against."""

from __future__ import annotations

import contextlib
import inspect
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtools.dialects import get_dialect
from evtools.dialects.python import (
    JsonNumber,
    JsonString,
    PythonDialect,
    count_keys,
    count_keys_written,
    dumps,
    loads,
)
from evtools.errors import ConsumerRejected, DecodeError, UsageError

from ..strategies import json_values

DIALECT = PythonDialect()
TRICKY = Path(__file__).parent / "corpus" / "tricky.jsonl"


def test_registered_under_its_name() -> None:
    d = get_dialect("python")
    assert isinstance(d, PythonDialect) and d.name == "python" and not d.columnar


# -- exact values -----------------------------------------------------------------------------


def test_integers_are_exact_at_any_size() -> None:
    doc = b'[9007199254740993,18446744073709551621,-18446744073709551621,' + b"7" * 5000 + b"]"
    value = DIALECT.decode(doc)
    assert value[0] == 2**53 + 1 and type(value[0]) is int
    assert value[1] == 2**64 + 5 and value[2] == -(2**64 + 5)
    assert value[3] == int(Decimal("7" * 5000))
    assert DIALECT.encode(value) == doc


def test_non_integers_keep_their_text_and_compare_exactly() -> None:
    value = DIALECT.decode(b'[12.30,1E400,0.1,0.5,-0.0,1e-400]')
    assert [str(v) for v in value] == ["12.30", "1E400", "0.1", "0.5", "-0.0", "1e-400"]
    assert all(type(v) is JsonNumber for v in value)
    twelve, huge, tenth, half, _, tiny = value
    assert twelve == Decimal("12.3") and twelve.to_decimal() == Decimal("12.30")
    assert tenth != 0.1  # the float is 0.1000000000000000055...
    assert tenth == Decimal("0.1") and tenth == Fraction(1, 10)
    assert half == 0.5 and hash(half) == hash(0.5)
    assert huge > 10**399 and tiny > 0 and tiny < 1e-300
    assert twelve != "12.30"  # a number never equals a string
    assert "12.30" != twelve  # noqa: SIM300  # the reflected comparison, on purpose
    assert float(tenth) == 0.1
    assert not JsonNumber("0.0") and JsonNumber("0.01")


def test_negative_zero_integer_keeps_its_sign() -> None:
    for doc in (b"-0", b"[-0]", b'{"a":-0}', b"[1, -0 ]"):
        value = DIALECT.decode(doc)
        assert DIALECT.encode(value).replace(b" ", b"") == doc.replace(b" ", b"")
    assert DIALECT.decode(b"-0") == 0 and DIALECT.decode(b"-0").is_integer_token
    # "-0" inside a string is not a number
    assert DIALECT.decode(b'"c-0"') == "c-0"


def test_escaped_strings_and_keys_keep_their_text() -> None:
    doc = b'{"a\\/b":"x\\/y","\\u00e9":"\\u00e9<","plain":"p","arr":["\\n",1]}'
    value = DIALECT.decode(doc)
    assert value == {"a/b": "x/y", "é": "é<", "plain": "p", "arr": ["\n", 1]}
    assert type(value["a/b"]) is JsonString and value["a/b"].raw == '"x\\/y"'
    assert type(value["plain"]) is str
    assert DIALECT.encode(value) == doc
    assert type(PythonDialect(keep_text=False).decode(doc)["a/b"]) is str


def test_lone_surrogate_escapes_are_valid_json_and_kept() -> None:
    value = DIALECT.decode(b'["\\ud800","\\udc80x","\\ud83d\\ude00"]')
    assert value == ["\ud800", "\udc80x", "😀"]
    assert dumps(["\ud800"]) == b'["\\ud800"]'


@pytest.mark.parametrize("doc, reason", [
    (b'{"a":1,"a":2}', "duplicate key 'a' in the object at /"),
    (b'{"x":[{"b":1,"b":2}]}', "duplicate key 'b' in the object at /x/0"),
    (b'{"a" : 1, "a" : 2}', "duplicate key 'a'"),
    (b'{"k\\/":1,"k/":2}', "duplicate key 'k/'"),
    (b'"\xff"', "invalid UTF-8: byte 0xff at offset 1"),
    (b"NaN", "malformed"),
    (b"[Infinity]", "malformed"),
    (b"[-Infinity, \"\\u00e9\"]", "Infinity is not a JSON number"),
    (b"[1,2", "truncated"),
    (b"", "truncated"),
    (b"\xef\xbb\xbf{}", "malformed"),
    (b"{} x", "trailing characters"),
    (b'"a\x01"', "malformed"),
])
def test_rejects_what_is_not_exact_json(doc: bytes, reason: str) -> None:
    with pytest.raises(ConsumerRejected) as info:
        DIALECT.decode(doc)
    assert info.value.dialect == "python"
    assert reason in info.value.reason


def test_lenient_reading_keeps_invalid_bytes_and_reports_shadowed_keys() -> None:
    shadowed: list[tuple[tuple[str | int, ...], object]] = []
    value = loads(b'{"a":{"b":1,"b":2},"c":[{"d":"\xff","d":"x"}]}', strict=False,
                  shadowed=shadowed)
    assert value == {"a": {"b": 2}, "c": [{"d": "x"}]}
    assert shadowed == [(("a", "b"), 1), (("c", 0, "d"), "\udcff")]
    assert loads(b'{"s":"\xff"}', strict=False) == {"s": "\udcff"}
    nonfinite = loads(b"[NaN,-Infinity]", allow_nonfinite=True)
    assert [type(v) for v in nonfinite] == [JsonNumber, JsonNumber]
    assert [str(v) for v in nonfinite] == ["NaN", "-Infinity"]
    with pytest.raises(DecodeError):
        loads(b"[NaN]")


@pytest.mark.parametrize("doc, repeats", [
    (b'{"a":1,"b":{"a":2}}', False),
    (b'{"a" :1,"a":2}', True),
    (b'{"a":1, "b" :2}', False),
    (b'[{"a":"\\":"},{"a":1,"a":2}]', True),
    (b'{"q\\"":{"\\"":1}}', False),
])
def test_key_counts_tell_duplicates(doc: bytes, repeats: bool) -> None:
    value = loads(doc, strict=False, check_duplicates=False)
    assert (count_keys(value) != count_keys_written(doc)) is repeats


# -- writing ----------------------------------------------------------------------------------


def test_dumps_writes_floats_decimals_and_tuples() -> None:
    assert dumps([1.5, 1e21, Decimal("1.50"), (1, "x"), None, True]) == \
        b'[1.5,1e+21,1.50,[1,"x"],null,true]'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN"), {1: 2}, {1, 2},
                                   object()])
def test_dumps_refuses_what_json_cannot_hold(value: object) -> None:
    with pytest.raises(UsageError):
        dumps(value)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_are_rejected(data: bytes) -> None:
    try:
        value = DIALECT.decode(data)
    except ConsumerRejected:
        return
    assert DIALECT.decode(DIALECT.encode(value)) == value


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=300)
@given(json_values)
def test_compact_documents_round_trip_byte_for_byte(value: object) -> None:
    doc = _compact(value)
    decoded = DIALECT.decode(doc)
    assert DIALECT.encode(decoded) == doc
    # and the values are exactly the stdlib's (floats compared as decimals)
    assert decoded == json.loads(doc, parse_float=Decimal)


number_texts = st.from_regex(r"\A-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z")
escaped_strings = st.text(max_size=8).map(
    lambda s: json.dumps(s, ensure_ascii=True).replace("/", "\\/"))


@settings(max_examples=300)
@given(st.lists(number_texts | escaped_strings, max_size=8))
def test_number_and_string_texts_survive(tokens: list[str]) -> None:
    doc = ("[" + ",".join(tokens) + "]").encode()
    assert DIALECT.encode(DIALECT.decode(doc)) == doc


def test_tricky_corpus_lines_decode_or_are_rejected() -> None:
    for line in TRICKY.read_bytes().splitlines():
        try:
            value = DIALECT.decode(line)
        except ConsumerRejected:
            continue
        assert DIALECT.decode(DIALECT.encode(value)) == value


def test_importing_the_dialects_imports_no_heavy_library() -> None:
    code = ("import sys, evtools, evtools.dialects, evtools.fidelity, evtools.dialects.python, "
            "evtools.dialects.pandas, evtools.dialects.polars, evtools.dialects.torch; "
            "print([m for m in ('torch', 'pandas', 'polars') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- nesting: as deep as the running interpreter's json.loads, and every walker iterative --


def _json_loads_limit(make: Callable[[int], bytes]) -> int:
    """The deepest ``make(n)`` that json.loads accepts here (3.11: about 1000 levels; 3.12:
    1500; 3.13: 10000)."""
    lo, hi = 1, 30_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            json.loads(make(mid))
        except RecursionError:
            hi = mid - 1
        else:
            lo = mid
    return lo


def _array(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _object(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


@pytest.mark.parametrize("make", [_array, _object], ids=["array", "object"])
def test_nesting_follows_json_loads_of_the_running_python(make: Callable[[int], bytes]) -> None:
    limit = _json_loads_limit(make)
    deep = make(limit - 20)
    assert DIALECT.roundtrip(deep) == deep
    assert loads(deep, strict=False) == json.loads(deep)
    for n in (limit + 20, 3000, 20_000):
        if n <= limit:
            assert DIALECT.roundtrip(make(n)) == make(n)
            continue
        with pytest.raises(ConsumerRejected) as info:
            DIALECT.decode(make(n))
        assert "nested too deeply" in info.value.reason


def test_deep_documents_on_the_slow_paths() -> None:
    limit = _json_loads_limit(_array)
    n = min(limit - 20, 900)
    for doc in (b"[" * n + b'-0,"\\u00e9",123456789012345678901234567890' + b"]" * n,
                b'{"k":' + b'{"a":1,"a":2,"b":' * n + b"0" + b"}" * n + b"}"):
        value = loads(doc, strict=False)
        assert isinstance(value, (list, dict))
    assert DIALECT.roundtrip(b"[" * n + b'"\\/"' + b"]" * n) == b"[" * n + b'"\\/"' + b"]" * n


@contextlib.contextmanager
def _recursion_room(frames: int) -> Iterator[None]:
    """Python's recursion limit lowered to ``frames`` more than this call's depth."""
    depth = len(inspect.stack(0))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_walkers_do_not_recurse() -> None:
    """A document as deep as Python 3.13's json.loads reads (thousands of levels) meets
    every walker: none may need a frame per level."""
    from evtools.dialects.python import (
        _attach_texts,
        _count_strings,
        _Pairs,
        _resolve_pairs,
        nesting_depth,
    )

    n = 2000
    value: Any = "x"
    for _ in range(n):
        value = {"k\u00e9": [value]}
    tokens = [('"k\\u00e9"', ":"), ('"x"', "")]
    pairs: Any = 1
    for _ in range(n):
        pairs = _Pairs([("a", 0), ("a", [pairs])])
    with _recursion_room(60):
        assert count_keys(value) == n
        assert _count_strings(value) == n + 1
        assert nesting_depth(value) == 2 * n
        text = dumps(value)
        assert text == b'{"k\xc3\xa9":[' * n + b'"x"' + b"]}" * n
        attached = _attach_texts(value, iter(tokens[:1] * n + tokens[1:]))
        assert type(next(iter(attached))) is JsonString
        shadowed: list[Any] = []
        resolved = _resolve_pairs(pairs, (), False, shadowed)
        assert len(shadowed) == n and shadowed[-1] == (("a",), 0)
        assert shadowed[0] == ((*("a", 0) * (n - 1), "a"), 0)
        assert nesting_depth(resolved) == 2 * n
        with pytest.raises(DecodeError, match="duplicate key 'a' in the object at /a/0/a/0"):
            _resolve_pairs(pairs, (), True, None)
