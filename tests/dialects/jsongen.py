"""Seeded random JSON documents for the differential tests (one document per line).

``documents(seed, count)`` returns ``count`` byte strings, none containing a ``\\n`` byte
(the consumers read one document per line). About three in four are valid JSON written
with the tricks real consumers treat differently; the rest are those documents broken
by one edit (truncated, a byte inserted, deleted or replaced), so that every rejection
path and its message gets exercised. ``deep_documents()`` gives nesting around the
limits. Everything is generated from ``random.Random(seed)``: the same seed gives the
same bytes on every machine. The hypothesis strategies at the end (``json_values``,
``json_documents``) serve the property tests.
"""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

from hypothesis import strategies as st

__all__ = [
    "byte_level_tricky",
    "deep_documents",
    "documents",
    "json_documents",
    "json_values",
    "long_numbers",
    "tricky_documents",
]

TRICKY = Path(__file__).parent / "corpus" / "tricky.jsonl"

_WHITESPACE = [b"", b"", b"", b"", b" ", b"\t", b"\r", b"  ", b" \r\t "]

_SPECIAL_NUMBERS = [
    b"0", b"-0", b"0.0", b"-0.0", b"0e0", b"-0e-0", b"0E+00", b"-0.000e5", b"1", b"-1",
    b"9007199254740991", b"9007199254740992", b"9007199254740993", b"-9007199254740993",
    b"18014398509481985", b"9223372036854775807", b"9223372036854775808",
    b"-9223372036854775808", b"-9223372036854775809", b"18446744073709551615",
    b"18446744073709551616", b"36893488147419103232", b"123456789012345678901234567890",
    b"1e21", b"1e20", b"999999999999999999999", b"999999999999999900000",
    b"100000000000000000000", b"1e-6", b"1e-7", b"0.000001", b"0.0000001", b"9.999999e-7",
    b"0.00001", b"0.0001", b"1.5e-5", b"2e-9", b"1e-9", b"1e-10", b"1e16", b"1e15",
    b"1e308", b"1.7976931348623157e308", b"1.7976931348623158e308",
    b"1.7976931348623159e308", b"-1.7976931348623159e308", b"1e309", b"1e400", b"-1e400",
    b"1E400", b"1e-400", b"-1e-400", b"5e-324", b"4.9e-324", b"2e-324", b"3e-324",
    b"2.4703282292062327e-324", b"2.4703282292062328e-324", b"2.2250738585072014e-308",
    b"2.2250738585072011e-308", b"1e-320", b"0.1", b"0.2", b"0.3", b"0.30000000000000004",
    b"1.0", b"1.5", b"100.0", b"1e2", b"1E2", b"1e+2", b"1e-2", b"1e02", b"1e007",
    b"123.456", b"-123.456e-7", b"3.141592653589793", b"2.718281828459045",
    b"0.1234567890123456789", b"12345678901234567890.123", b"1e99999", b"-1e99999",
    b"1e-99999", b"8.41e21", b"5e-7", b"1.2345678901234567e-7", b"4.35e-7",
    b"0." + b"0" * 330 + b"1", b"1" + b"0" * 308, b"1" + b"0" * 309,
    b"17976931348623157" + b"0" * 292, b"17976931348623159" + b"0" * 292, b"1" * 400,
]

_INDEX_KEYS = [
    "0", "1", "2", "10", "9", "42", "4294967294", "4294967295", "4294967296", "01", "00",
    "-1", "-0", "1.0", "1e3", " 1", "1 ", "+1", "0x1", "123456789012", "99", "3",
]

_ESCAPES = [
    b'\\"', b"\\\\", b"\\/", b"\\b", b"\\f", b"\\n", b"\\r", b"\\t", b"\\u0000", b"\\u0001",
    b"\\u001f", b"\\u001F", b"\\u0008", b"\\u000c", b"\\u000C", b"\\u007f", b"\\u0080",
    b"\\u00e9", b"\\u00E9", b"\\u2028", b"\\u2029", b"\\u003c", b"\\u003E", b"\\u0026",
    b"\\u0041", b"\\uffff", b"\\uFFFE", b"\\ufeff", b"\\u0031",
]

_SURROGATE_ESCAPES = [
    b"\\ud800", b"\\uDBFF", b"\\udc00", b"\\uDFFF", b"\\ud83d\\ude00", b"\\uD83D\\uDE00",
    b"\\ude00\\ud83d", b"\\ud83d\\ud83d\\ude00", b"\\ud83d\\u0041", b"\\udbff\\udfff",
    b"\\ud800\\udc00", b"\\ud83d", b"\\ude00",
]

_RAW_TEXT = [
    "a", "b", "z", "A", "0", "7", " ", "<", ">", "&", "'", "é", "ß", "中", "文", "😀", "𝄞",
    "\u2028", "\u2029", "\x7f", "\u0080", "\u00a0", "\u00ad", "\ufeff", "\ufffd", "\uffff",
    "</script>", "&amp;", "order", "id", "price", "currency", "EUR",
]

_INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2", b"\xe2\x82", b"\xe2\x82\x41",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80",
    b"\xf5", b"\xff", b"\xfe", b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80", b"\xc3\x28",
    b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
]

_INSERTABLE = [
    b",", b":", b"{", b"}", b"[", b"]", b'"', b"\\", b" ", b"\t", b"\r", b"0", b"1", b"9",
    b"-", b"+", b".", b"e", b"E", b"x", b"t", b"n", b"f", b"u", b"a", b"'", b"/", b"\x00",
    b"\x01", b"\x1f", b"\x7f", b"\xff", b"\x80", b"\xc3\xa9", "😀".encode(), "\u2028".encode(),
    "\u00a0".encode(), "\ufeff".encode(), b"NaN", b"true", b"null", b"}}", b"]]",
]


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def ws(self) -> bytes:
        r = self.r.random()
        return b"" if r < 0.6 else _WHITESPACE[int((r - 0.6) * 2.5 * len(_WHITESPACE))]

    # -- numbers -------------------------------------------------------------------

    def number(self) -> bytes:
        r = self.r
        kind = r.randrange(10)
        if kind == 0:
            return r.choice(_SPECIAL_NUMBERS)
        if kind == 1:
            return str(r.randint(-1000, 1000)).encode()
        if kind == 2:  # near 2**53, 2**63, 2**64
            base = r.choice([2**53, 2**63, 2**64, 2**62, 10**17, 10**21, 2**70])
            return str(r.choice([1, -1]) * (base + r.randint(-20, 20))).encode()
        if kind == 3:  # random integers of any length
            digits = r.randint(1, r.choice([20, 20, 40, 330]))
            text = str(r.randrange(10 ** (digits - 1), 10**digits))
            return (r.choice(["", "-"]) + text).encode()
        if kind == 4:  # any float64 bit pattern, written shortest or with 17 digits
            f = struct.unpack("<d", r.getrandbits(64).to_bytes(8, "little"))[0]
            if f != f or f in (float("inf"), float("-inf")):
                f = 1.0
            return r.choice([repr(f), f"{f:.17g}", f"{f:.16e}", f"{f:.20e}"]).encode()
        if kind == 5:  # subnormals
            f = struct.unpack("<d", r.getrandbits(52).to_bytes(8, "little"))[0]
            return r.choice([repr(f), f"{f:.17g}", f"{f:.25e}"]).encode()
        if kind == 6:  # 15 to 20 significant digits with a small exponent
            digits = str(r.randrange(10**21))[-r.randint(15, 20) :].zfill(15)
            cut = r.randint(1, len(digits) - 1)
            text = digits[:cut].lstrip("0") or "0"
            text += "." + digits[cut:]
            if r.random() < 0.5:
                text += r.choice(["e", "E"]) + r.choice(["", "+", "-"]) + str(r.randint(0, 30))
            return (r.choice(["", "-"]) + text).encode()
        if kind == 7:  # big and small exponents
            mant = r.choice(["1", "9.99", "1.5", "2.2250738585072014", "4.9", "0.5", "123"])
            exp = r.choice([r.randint(-330, -300), r.randint(290, 312), r.randint(-30, 30),
                            r.randint(-9, -4), r.randint(15, 23), r.randint(-30, 30)])
            return (r.choice(["", "-"]) + mant + r.choice("eE") + str(exp)).encode()
        if kind == 8:  # numbers around the exponent-form boundaries
            f = r.choice([1e21, 1e-6, 1e-7, 1e16, 1e-4, 1e-5]) * r.choice(
                [1, 1 + 2**-52, 1 - 2**-53, 0.5, 2, 9.999, 1.0000001]
            )
            return (repr(f) if r.random() < 0.5 else f"{f:.17g}").encode()
        return repr(r.uniform(-1e6, 1e6)).encode()

    # -- strings -------------------------------------------------------------------

    def string_body(self, max_pieces: int = 6) -> bytes:
        r = self.r
        out = []
        for _ in range(r.randint(0, max_pieces)):
            kind = r.randrange(20)
            if kind < 9:
                out.append(r.choice(_RAW_TEXT).encode())
            elif kind < 13:
                out.append(r.choice(_ESCAPES))
            elif kind < 15:
                out.append(r.choice(_SURROGATE_ESCAPES))
            elif kind < 17:
                out.append(r.choice(_INVALID_UTF8))
            elif kind < 19:
                out.append(("\\u%04" + r.choice("xX")) .encode() % r.randrange(0x10000))
            else:
                out.append(chr(r.randrange(0x20, 0x2FFFF)).encode("utf-8", "surrogatepass")
                           if r.random() < 0.9 else b"\\u00" + r.choice([b"3c", b"3e", b"26"]))
        return b"".join(out)

    def string(self) -> bytes:
        return b'"' + self.string_body() + b'"'

    def key(self, previous: list[bytes]) -> bytes:
        r = self.r
        roll = r.random()
        if previous and roll < 0.12:
            return r.choice(previous)  # a duplicate key
        if roll < 0.35:
            k = r.choice(_INDEX_KEYS)
            if k == "1" and r.random() < 0.3:
                return b'"\\u0031"'
            return b'"' + k.encode() + b'"'
        if roll < 0.45:
            return b'"' + r.choice([b"a", b"b", b"A", b"_", b"<", b"&", b"\xc3\xa9", b"\\u00e9",
                                    b"\xff", b"\xfe", b"\\ud800", b"\\udc00", b"\xef\xbf\xbd",
                                    b"\xf0\x9f\x98\x80", b"\\u2028", b"\xe2\x80\xa8"]) + b'"'
        return b'"' + self.string_body(3) + b'"'

    # -- values --------------------------------------------------------------------

    def value(self, depth: int) -> bytes:
        r = self.r
        roll = r.random()
        if depth < 3 and roll < 0.25:
            return self.obj(depth + 1)
        if depth < 3 and roll < 0.4:
            return self.arr(depth + 1)
        roll = r.random()
        if roll < 0.45:
            return self.number()
        if roll < 0.85:
            return self.string()
        return r.choice([b"true", b"false", b"null"])

    def obj(self, depth: int) -> bytes:
        r = self.r
        if r.random() < 0.1:
            return b"{" + self.ws() + b"}"
        keys: list[bytes] = []
        parts = []
        for _ in range(r.randint(1, 5)):
            k = self.key(keys)
            keys.append(k)
            value = self.value(depth)
            parts.append(self.ws() + k + self.ws() + b":" + self.ws() + value + self.ws())
        return b"{" + b",".join(parts) + b"}"

    def arr(self, depth: int) -> bytes:
        r = self.r
        if r.random() < 0.1:
            return b"[" + self.ws() + b"]"
        items = [self.ws() + self.value(depth) + self.ws() for _ in range(r.randint(1, 5))]
        return b"[" + b",".join(items) + b"]"

    def document(self) -> bytes:
        r = self.r
        top = r.random()
        body = self.obj(0) if top < 0.7 else self.arr(0) if top < 0.85 else self.value(3)
        return self.ws() + body + self.ws()

    # -- broken documents ----------------------------------------------------------

    def broken(self, doc: bytes) -> bytes:
        r = self.r
        pos = r.randint(0, len(doc))
        kind = r.randrange(4)
        if kind == 0:
            return doc[:pos]
        if kind == 1:
            return doc[:pos] + r.choice(_INSERTABLE) + doc[pos:]
        if kind == 2:
            return doc[:pos] + doc[pos + 1 :]
        return doc[:pos] + r.choice(_INSERTABLE) + doc[pos + 1 :]


def documents(seed: int, count: int) -> list[bytes]:
    """``count`` documents (bytes without ``\\n``), valid and broken, from ``seed``."""
    gen = _Gen(random.Random(seed))
    out = []
    for _ in range(count):
        doc = gen.document()
        if gen.r.random() < 0.25:
            doc = gen.broken(doc)
        out.append(doc.replace(b"\n", b" "))
    return out


def deep_documents(depths: list[int]) -> list[bytes]:
    """Nesting of arrays, objects and both, ``depth`` levels each, valid and broken."""
    out = []
    for d in depths:
        out.append(b"[" * d + b"]" * d)
        out.append(b'{"a":' * (d - 1) + b"{}" + b"}" * (d - 1))
        out.append(b'[{"k":' * (d // 2) + b"-0" + b"}]" * (d // 2))
        out.append(b"[" * d + b"1e400" + b"]" * d)
        out.append(b"[" * d + b"]" * (d - 1))  # one bracket short
        out.append(b"[" * d + b"x" + b"]" * d)
    return out


def long_numbers(seed: int, count: int) -> list[bytes]:
    """``count`` number texts of 800 to 12,000 characters, from ``seed``: float64 values
    and the exact midpoints between neighbours, written with hundreds of digits before
    or after the point (padding zeros, a final 1 past the 800th digit, 9s just below),
    and a few with exponents of 100000 or more that long digit runs bring back in range.
    Go's ParseFloat stops being correctly rounded past 800 digits; V8 does not."""
    r = random.Random(seed)
    out = []
    for _ in range(count):
        bits = r.getrandbits(r.choice([52, 63, 63]))
        f = abs(struct.unpack("<d", bits.to_bytes(8, "little"))[0])
        if f != f or f == float("inf"):
            f = 1.0
        if r.random() < 0.5 and f < 1.7e308:  # the midpoint to the next float64 up
            m, e = f.as_integer_ratio()
            m2, e2 = (f + math.ulp(f)).as_integer_ratio()
            num, den = m * e2 + m2 * e, 2 * e * e2
        else:
            num, den = f.as_integer_ratio()
        # num / den = digits * 10**exp exactly (den is a power of two)
        exp = -(den.bit_length() - 1)
        digits = str(num * 5 ** -exp) if exp < 0 else str(num)
        tail = r.choice(["", "0" * r.randint(1, 900), "0" * r.randint(0, 900) + "1"])
        if r.random() < 0.2 and digits != "0":
            digits, tail = str(int(digits) - 1), "9" * r.randint(1, 900)
        digits = (digits + tail).lstrip("0") or "0"
        exp -= len(tail)
        point = r.choice([1, len(digits), r.randint(1, len(digits)), -r.randint(0, 900)])
        if point <= 0:
            mantissa = "0." + "0" * -point + digits
        elif point >= len(digits):
            mantissa = digits
        else:
            mantissa = digits[:point] + "." + digits[point:]
        exp += len(digits) - point  # the same value with the point moved
        text = mantissa + "e" + str(exp) if exp else mantissa
        if len(text) < 800:
            text = "0." + "0" * 800 + text.replace(".", "").replace("e", "1e", 1)
        out.append((r.choice(["", "-"]) + text).encode())
    for pad in (100_000, 100_001):  # the exponent stops counting at 10000 (Go)
        out.append(b"0." + b"0" * pad + b"1e" + str(pad + 1).encode())
    return out


def tricky_documents() -> list[bytes]:
    """The hand-written corpus ``corpus/tricky.jsonl``: one document per line (split on
    ``\\n`` only, so a ``\\r`` or tab stays in its document)."""
    lines = TRICKY.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def byte_level_tricky() -> list[bytes]:
    """Single bytes in every position a scanner distinguishes (all 255 non-newline bytes
    alone, inside a string, after a backslash, where a value or key is expected)."""
    out = []
    for b in range(256):
        if b == 0x0A:
            continue
        c = bytes([b])
        out += [c, b'"' + c + b'"', b'"\\' + c + b'"', b"[1," + c + b"]", b"{" + c + b"}",
                b'{"a"' + c + b"1}", b'{"a":1' + c + b"}", b"1" + c, b"-" + c, b"1." + c,
                b"1e" + c, b"t" + c, b'"\\u12' + c + b'"', b"[" + c]
    return out


# -- hypothesis strategies -----------------------------------------------------------------

_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 0.0, 1e21, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308, 2.0**53 + 2, 1e16]
)
_ints = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(
    [2**53 + 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**21, 10**400]
)
_texts = st.text(
    st.characters(codec=None, exclude_categories=())  # any code point, lone surrogates too
    | st.sampled_from(["<", ">", "&", "\u2028", "\u2029", "\b", "\f", "\x00", "\x7f", "😀"]),
    max_size=8,
)
_keys = _texts | st.sampled_from(["0", "1", "10", "01", "4294967294", "4294967295", "-1"])

#: JSON values as Python holds them (dicts, lists, str, int, float, bool, None).
json_values = st.recursive(
    st.none() | st.booleans() | _ints | _floats | _texts,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_keys, children, max_size=4),
    max_leaves=16,
)


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    """A valid JSON text of a drawn value, written with or without ASCII escapes (raw
    lone surrogates then become invalid UTF-8 bytes, as a careless producer writes)."""
    value = draw(json_values)
    ascii_only = draw(st.booleans())
    text = json.dumps(value, ensure_ascii=ascii_only, separators=draw(_separators))
    return text.encode("utf-8", "surrogatepass")


_separators = st.sampled_from([(",", ":"), (", ", ": "), (",\t", " :\r")])
