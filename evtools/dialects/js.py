"""The ``js`` dialect: Node's ``JSON.parse`` and ``JSON.stringify`` (Node 20, V8 11.3).

Modelled program (``tests/dialects/consumers/js_roundtrip.js`` is the real one the tests
compare with, byte for byte)::

    const text = buffer.toString('utf8');   // the consumer reads bytes
    const out = JSON.stringify(JSON.parse(text));
    // on error: e.message is the rejection reason

What the script holds after ``JSON.parse`` (``decode``), as Python values:

* the text is the bytes decoded the WHATWG way: each maximal invalid subpart of UTF-8
  becomes one U+FFFD (Python's ``errors="replace"`` does the same);
* every number is a Number (float64): a Python ``float``; ``-0`` is kept, a number beyond
  float64's range is ``inf`` (``1e400`` parses; it is written back as ``null``);
* objects are ``dict`` in V8's key order: array-index keys ("0" .. "4294967294", no
  leading zeros) first in ascending numeric order, then the other keys in insertion
  order; a repeated key keeps its first position and takes its last value;
* strings are JavaScript strings: a ``\\uHHHH`` escape of a lone surrogate stays a lone
  surrogate (Python ``str`` can hold one), an escaped pair is one code point;
* a rejected document carries V8's SyntaxError message as Node 20 prints it
  (``Unexpected token 'x', "x" is not valid JSON``, ``Unexpected end of JSON input``,
  ``Expected ',' or '}' after property value in JSON at position 7``...). Positions
  count UTF-16 code units. Where the message quotes a piece of the text that splits a
  surrogate pair, the half is written as U+FFFD, as Node's stdout does.

What ``JSON.stringify`` writes (``encode``): no whitespace, the key order above, numbers
by Number::toString (shortest digits, exponent form from 1e21 and below 1e-6, ``-0`` as
``0``, ``Infinity``/``NaN`` as ``null``), ``"``, ``\\``, ``\\b``, ``\\f``, ``\\n``,
``\\r``, ``\\t`` short, other control characters as ``\\u00XX``, lone surrogates as
``\\udHHH`` (well-formed JSON.stringify); ``<>&`` and U+2028/9 are left as they are.

JSON.parse in V8 has no nesting limit; JSON.stringify recurses and throws ``RangeError:
Maximum call stack size exceeded`` somewhere past about 4,100 levels with Node 20's
default stack on x86-64 (the exact depth varies from run to run and with the mix of
arrays and objects). ``JsDialect(max_depth=N)`` models that limit: encoding a value
nested deeper than ``N`` containers is rejected with that message. The default, ``None``,
models no limit.

Speed: documents without edge cases go through the C-accelerated stdlib scanner and
encoder; the exact hand-written scanner here runs only to word a rejection, or for
nesting deeper than Python's recursion limit allows the C scanner.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

from ..errors import UsageError
from ._base import Dialect
from ._jsontext import (
    Unusual,
    encode_iterative,
    format_float,
    make_c_encoder,
    make_fast_scanner,
    make_number_converter,
    prepare_for_c_encoder,
    scan_string,
    skip_digits,
    skip_whitespace,
)

__all__ = ["JsDialect"]

#: What Node 20 says when JSON.stringify runs out of stack.
STACK_OVERFLOW = "Maximum call stack size exceeded"

_MAX_INDEX = 4294967294  # 2**32 - 2, the largest array index


class _Rejected(Exception):
    """Internal: V8's message for a document, raised as ConsumerRejected by the dialect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constants(text: str) -> NoReturn:
    raise ValueError(f"{text} is not JSON")


def _null(f: float) -> None:
    return None  # JSON.stringify writes Infinity, -Infinity and NaN as null


# What JSON.stringify prints, as numbers the C encoder prints the same way.
_number = make_number_converter(_null, keep_negative_zero=False)


def _roundtrip_int(text: str) -> Any:
    return int(text) if len(text) < 16 else _number(int(text))


def _roundtrip_float(text: str) -> Any:
    return _number(float(text))


_ValueErrors = (ValueError, StopIteration, RecursionError, Unusual)
_scan = make_fast_scanner(float, float, _no_constants)
# Round trips skip the Number model: numbers come out of the scanner ready to print.
_scan_roundtrip = make_fast_scanner(_roundtrip_int, _roundtrip_float, _no_constants)
_c_encode = make_c_encoder(sort_keys=False)

_INDEX_KEY_HINT = re.compile(r'"(?:[0-9]|\\u)[^"]*"[ \t\n\r]*:')
_SURROGATE = re.compile("[\ud800-\udfff]")


def _may_have_index_key(s: str) -> bool:
    """False when no key of ``s`` can be an array index (false positives are fine): an
    index key starts with a digit, or with an escape of one."""
    return _INDEX_KEY_HINT.search(s) is not None


# -- V8's key order --------------------------------------------------------------------


def _is_index(key: str) -> bool:
    return (
        len(key) <= 10
        and key.isdigit()
        and key.isascii()
        and (key[0] != "0" or key == "0")
        and int(key) <= _MAX_INDEX
    )


def _v8_order(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` (in insertion order) in the order V8 enumerates an object's keys."""
    if not d or min(d) >= ":":  # no key starts with a digit (':' follows '9')
        return d
    indices = [k for k in d if "0" <= k[:1] <= "9" and _is_index(k)]
    if not indices:
        return d
    if len(indices) > 1:
        indices.sort(key=int)
    out = {k: d[k] for k in indices}
    for k, v in d.items():
        if k not in out:
            out[k] = v
    return out


def _v8_items(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(_v8_order(d).items())


def _order_all(value: Any) -> Any:
    t = type(value)
    if t is dict:
        return {k: _order_all(v) for k, v in _v8_order(value).items()}
    if t is list:
        return [_order_all(v) for v in value]
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep in ``value`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is dict:
            children: Any = v.values()
        elif t is list or t is tuple:
            children = v
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list, tuple))
    return False


# -- V8's JSON.parse, exactly ------------------------------------------------------------

# JsonToken, as V8's one_char_json_tokens table gives it for a character.
_NUMBER, _STRING, _LBRACE, _RBRACE, _LBRACK, _RBRACK = range(6)
_TRUE, _FALSE, _NULL, _WHITESPACE, _COLON, _COMMA, _ILLEGAL, _EOS = range(6, 14)
_TOKENS = {c: _NUMBER for c in "-0123456789"} | {
    '"': _STRING,
    "{": _LBRACE,
    "}": _RBRACE,
    "[": _LBRACK,
    "]": _RBRACK,
    "t": _TRUE,
    "f": _FALSE,
    "n": _NULL,
    " ": _WHITESPACE,
    "\t": _WHITESPACE,
    "\r": _WHITESPACE,
    "\n": _WHITESPACE,
    ":": _COLON,
    ",": _COMMA,
}

# MessageTemplates (V8 11.3 src/common/message-template.h) that take a position.
_AT = " in JSON at position %d"
_EXPECTED_PROP_OR_RBRACE = "Expected property name or '}'" + _AT
_EXPECTED_DQ_PROP = "Expected double-quoted property name" + _AT
_EXPECTED_COLON = "Expected ':' after property name" + _AT
_EXPECTED_COMMA_OR_RBRACE = "Expected ',' or '}' after property value" + _AT
_EXPECTED_COMMA_OR_RBRACK = "Expected ',' or ']' after array element" + _AT
_NON_WHITESPACE_AFTER = "Unexpected non-whitespace character after JSON at position %d"
_UNTERMINATED_STRING = "Unterminated string" + _AT
_BAD_ESCAPE = "Bad escaped character" + _AT
_BAD_CONTROL = "Bad control character in string literal" + _AT
_BAD_UNICODE_ESCAPE = "Bad Unicode escape" + _AT
_NO_NUMBER_AFTER_MINUS = "No number after minus sign" + _AT
_EXPONENT_MISSING = "Exponent part is missing a number" + _AT
_UNTERMINATED_FRACTION = "Unterminated fractional number" + _AT
_UNEXPECTED_EOS = "Unexpected end of JSON input"

_SPECIAL_SOURCES = frozenset({"[object Object]", "undefined", "Infinity", "NaN"})
_CONTEXT = 10  # kMaxContextCharacters
_NUMBER_PART = frozenset(".eE0123456789-+")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('"\\/bfnrt')


class _V8Parser:
    """A port of V8's JsonParser (src/json/json-parser.cc) for the error it reports.

    Works on the Python ``str`` (code points) and converts positions to UTF-16 code units
    only to word a message. Also builds the value, for documents nested deeper than the
    stdlib's C scanner can go.
    """

    _STRING = re.compile(r'[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"')

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)

    def token(self, i: int) -> int:
        return _EOS if i >= self.n else _TOKENS.get(self.s[i], _ILLEGAL)

    def report(self, i: int, token: int, template: str | None = None) -> NoReturn:
        """JsonParser::ReportUnexpectedToken with the cursor at ``i``."""
        if template is not None:
            raise _Rejected(template % self.utf16_position(i))
        if token == _EOS:
            raise _Rejected(_UNEXPECTED_EOS)
        if token == _NUMBER:
            raise _Rejected("Unexpected number" + _AT % self.utf16_position(i))
        if token == _STRING:
            raise _Rejected("Unexpected string" + _AT % self.utf16_position(i))
        if self.s in _SPECIAL_SOURCES:
            raise _Rejected(f'"{self.s}" is not valid JSON')
        raise _Rejected(self.unexpected_token(self.utf16_position(i)))

    def utf16_position(self, i: int) -> int:
        head = self.s[:i]
        return i if head.isascii() else len(head.encode("utf-16-le")) // 2

    def unexpected_token(self, pos: int) -> str:
        """GetErrorMessageWithEllipses: the token and up to 10 code units either side."""
        units = self.s.encode("utf-16-le")
        length = len(units) // 2

        def piece(start: int, end: int) -> str:
            # A split surrogate pair is written by Node as U+FFFD, one per half.
            return units[2 * start : 2 * end].decode("utf-16-le", "replace")

        token = piece(pos, pos + 1)
        if length < 2 * _CONTEXT + 1:
            return f"Unexpected token '{token}', \"{self.s}\" is not valid JSON"
        if pos < _CONTEXT:
            snippet = piece(0, pos + _CONTEXT)
            return f"Unexpected token '{token}', \"{snippet}\"... is not valid JSON"
        if pos < length - _CONTEXT:
            snippet = piece(pos - _CONTEXT, pos + _CONTEXT)
            return f"Unexpected token '{token}', ...\"{snippet}\"... is not valid JSON"
        snippet = piece(pos - _CONTEXT, length)
        return f"Unexpected token '{token}', ...\"{snippet}\" is not valid JSON"

    def string(self, i: int) -> tuple[str, int]:
        """ScanJsonString from ``i`` (just past the opening quote)."""
        s = self.s
        m = self._STRING.match(s, i)
        if m is None:
            self.string_error(i)
        end = m.end()
        if "\\" in s[i:end]:
            return scan_string(s, i)[0], end
        return s[i : end - 1], end

    def string_error(self, i: int) -> NoReturn:
        s, n = self.s, self.n
        j = i
        while j < n:
            c = s[j]
            if c == "\\":
                j += 1
                if j >= n:
                    self.report(j, _EOS)
                c = s[j]
                if ord(c) > 0xFF:
                    self.report(j, _ILLEGAL)
                if c == "u":
                    for _ in range(4):
                        j += 1
                        if j >= n or s[j] not in _HEX:
                            self.report(j, _ILLEGAL, _BAD_UNICODE_ESCAPE)
                elif c not in _ESCAPES:
                    self.report(j, _ILLEGAL, _BAD_ESCAPE)
            elif c < " ":
                self.report(j, _ILLEGAL, _BAD_CONTROL)
            j += 1
        self.report(n, _ILLEGAL, _UNTERMINATED_STRING)

    def number(self, i: int) -> tuple[float, int]:
        """ParseJsonNumber from ``i`` (a '-' or a digit)."""
        s, n = self.s, self.n
        start = i
        negative = s[i] == "-"
        if negative:
            i += 1
        if s[i : i + 1] == "0":
            i += 1
            c = s[i : i + 1]
            if c in _NUMBER_PART:
                if c in _DIGITS:
                    self.report(i, _NUMBER)
            elif not negative:
                return 0.0, i
        else:
            j = skip_digits(s, i)
            if j == i:
                self.report(i, _ILLEGAL, _NO_NUMBER_AFTER_MINUS)
            i = j
        if i < n and s[i] == ".":
            i += 1
            if s[i : i + 1] not in _DIGITS:
                self.report(i, _ILLEGAL, _UNTERMINATED_FRACTION)
            i = skip_digits(s, i)
        if i < n and (s[i] == "e" or s[i] == "E"):
            i += 1
            if i < n and (s[i] == "-" or s[i] == "+"):
                i += 1
            if s[i : i + 1] not in _DIGITS:
                self.report(i, _ILLEGAL, _EXPONENT_MISSING)
            i = skip_digits(s, i)
        return float(s[start:i]), i

    def literal(self, i: int, word: str) -> int:
        """ScanLiteral: ``word`` starts at ``i`` (its first character already matched)."""
        s = self.s
        if s.startswith(word, i):
            return i + len(word)
        j = i + 1
        for k in range(1, min(len(word), self.n - i)):
            if s[j] != word[k]:
                self.report(j, self.token(j))
            j += 1
        self.report(j, _EOS)

    def parse(self) -> Any:
        """ParseJsonValue followed by the check for trailing non-whitespace."""
        s, n = self.s, self.n
        token = self.token
        objects: list[bool] = []  # for each open container: is it an object?
        members: list[list[Any]] = []  # its elements, or its (key, value) pairs
        keys: list[str] = []  # its pending key (arrays: "")
        i = 0
        value: Any
        while True:
            # -- produce a value --
            i = skip_whitespace(s, i)
            t = token(i)
            if t == _STRING:
                value, i = self.string(i + 1)
            elif t == _NUMBER:
                value, i = self.number(i)
            elif t == _LBRACE:
                j = skip_whitespace(s, i + 1)
                t = token(j)
                if t == _RBRACE:
                    value, i = {}, j + 1
                else:
                    if t != _STRING:
                        self.report(j, t, _EXPECTED_PROP_OR_RBRACE)
                    key, i = self.string(j + 1)
                    j = skip_whitespace(s, i)
                    t = token(j)
                    if t != _COLON:
                        self.report(j, t, _EXPECTED_COLON)
                    objects.append(True)
                    members.append([])
                    keys.append(key)
                    i = j + 1
                    continue
            elif t == _LBRACK:
                j = skip_whitespace(s, i + 1)
                if token(j) == _RBRACK:
                    value, i = [], j + 1
                else:
                    objects.append(False)
                    members.append([])
                    keys.append("")
                    i += 1
                    continue
            elif t == _TRUE:
                i, value = self.literal(i, "true"), True
            elif t == _FALSE:
                i, value = self.literal(i, "false"), False
            elif t == _NULL:
                i, value = self.literal(i, "null"), None
            else:
                self.report(i, t)

            # -- consume it, closing containers that end here --
            while True:
                j = skip_whitespace(s, i)
                t = token(j)
                if not objects:
                    if j < n:
                        self.report(j, t, _NON_WHITESPACE_AFTER)
                    return value
                if objects[-1]:
                    members[-1].append((keys[-1], value))
                    if t == _COMMA:
                        j = skip_whitespace(s, j + 1)
                        t = token(j)
                        if t != _STRING:
                            self.report(j, t, _EXPECTED_DQ_PROP)
                        keys[-1], i = self.string(j + 1)
                        j = skip_whitespace(s, i)
                        t = token(j)
                        if t != _COLON:
                            self.report(j, t)
                        i = j + 1
                        break
                    if t != _RBRACE:
                        self.report(j, t, _EXPECTED_COMMA_OR_RBRACE)
                    obj: dict[str, Any] = {}
                    for k, v in members[-1]:
                        obj[k] = v
                    value = _v8_order(obj)
                else:
                    members[-1].append(value)
                    if t == _COMMA:
                        i = j + 1
                        break
                    if t != _RBRACK:
                        self.report(j, t, _EXPECTED_COMMA_OR_RBRACK)
                    value = members[-1]
                objects.pop()
                members.pop()
                keys.pop()
                i = j + 1


# -- the dialect -----------------------------------------------------------------------


def _stringify_number(f: float) -> str:
    return format_float(f) if math.isfinite(f) else "null"


def _well_formed(text: str) -> str:
    """Lone surrogates as ``\\udHHH`` escapes (pairs first joined into one code point)."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")  # U+FFFD per maximal subpart, as WHATWG


class JsDialect(Dialect):
    """Node 20's ``JSON.parse`` of the UTF-8 text and ``JSON.stringify`` back.

    ``max_depth``: the deepest nesting JSON.stringify writes before it runs out of stack
    (``None``: no limit). Node 20 on x86-64 with its default stack fails from about 4,100.
    """

    name = "js"

    def __init__(self, max_depth: int | None = None) -> None:
        if max_depth is not None and (type(max_depth) is not int or max_depth < 0):
            raise UsageError(f"js dialect: max_depth must be a whole number, not {max_depth!r}")
        self.max_depth = max_depth

    def __repr__(self) -> str:
        return f"<JsDialect {self.name!r} max_depth={self.max_depth!r}>"

    # -- decode ------------------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """What ``JSON.parse(buffer.toString('utf8'))`` returns; rejections carry the
        SyntaxError's message."""
        s = _text(data)
        try:
            value = _scan(s)
            if _may_have_index_key(s):
                value = _order_all(value)
        except _ValueErrors:
            return self._exact(s)
        return value

    def _exact(self, s: str) -> Any:
        try:
            return _V8Parser(s).parse()
        except _Rejected as e:
            raise self.reject(e.reason) from None

    # -- encode ------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """What ``JSON.stringify`` writes for a value the script holds (a ``dict`` is an
        object built in its insertion order, so array-index keys move first)."""
        self._check_depth(value)
        try:
            text = _c_encode(prepare_for_c_encoder(value, _number, _v8_order))
        except (Unusual, RecursionError):
            text = encode_iterative(value, _stringify_number, _v8_items)
        return self._finish(text)

    def roundtrip(self, data: bytes) -> bytes:
        """``data`` through JSON.parse and JSON.stringify, as the real script writes it."""
        s = _text(data)
        try:
            value = _scan_roundtrip(s)
            if _may_have_index_key(s):
                value = _order_all(value)
            if self.max_depth is not None:
                self._check_depth(value)
            text = _c_encode(value)
        except _ValueErrors:
            return self.encode(self.decode(data))
        return self._finish(text)

    def _check_depth(self, value: Any) -> None:
        if self.max_depth is not None and _deeper_than(value, self.max_depth):
            raise self.reject(STACK_OVERFLOW)

    @staticmethod
    def _finish(text: str) -> bytes:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return _well_formed(text).encode("utf-8")
