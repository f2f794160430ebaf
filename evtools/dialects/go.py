"""The ``go`` dialect: Go's ``encoding/json`` reading an event into ``interface{}``.

Modelled program (Go 1.19 by default; ``tests/dialects/consumers/go_roundtrip`` is the
real one the tests compare with, byte for byte, built with the installed Go)::

    var v interface{}
    err := json.Unmarshal(data, &v)   // on error: err.Error() is the rejection reason
    out, _ := json.Marshal(v)

What Go holds after ``Unmarshal`` (``decode``), as Python values:

* objects are ``map[string]interface{}``: a ``dict``; a repeated key keeps its last value;
* every number is a ``float64``: a Python ``float``, ``-0`` kept, as
  ``strconv.ParseFloat`` reads it: correctly rounded up to 800 characters, and with
  Go's own errors past that (``"1" + "0" * 900 + "e-900"`` reads as ``1e-101``; see
  ``_goatof``); a number beyond float64's range rejects the whole document
  (``json: cannot unmarshal number 1e400 into Go value of type float64``);
* strings are Go strings, always valid UTF-8: each byte of invalid UTF-8 becomes its own
  U+FFFD, and so does each ``\\uHHHH`` surrogate escape that is not half of a valid pair;
* syntax errors are found first, over the whole document, with Go's scanner's text
  (``invalid character 'x' looking for beginning of value``, ``unexpected end of JSON
  input``, ``invalid character '[' exceeded max depth`` past 10000 levels).

What ``Marshal`` writes (``encode``): keys sorted by their UTF-8 bytes, no whitespace,
numbers as the floatEncoder writes them (shortest digits; exponent form below 1e-6 and
from 1e21, ``1e-7`` not ``1e-07``; ``-0``), ``<``, ``>``, ``&``, U+2028 and U+2029 escaped
as ``\\u003c``..., ``\\n``, ``\\r``, ``\\t`` short and other control characters as
``\\u00XX``. Go 1.22 also writes ``\\b`` and ``\\f`` short: ``GoDialect(version="1.22")``.
That is the only difference between the versions this module models (1.19 and later).

Speed: documents without edge cases go through the C-accelerated stdlib scanner and
encoder; the exact hand-written scanner here runs only for invalid UTF-8, surrogate
escapes, numbers beyond float64, syntax errors, and nesting deeper than Python's
recursion limit allows the C scanner. ``roundtrip`` skips the float64 model: the
scanner's number hooks hand the encoder numbers it already prints as Go does.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

from ..errors import UsageError
from ._base import Dialect
from ._goatof import SHORT, parse_float
from ._jsontext import (
    Unusual,
    encode_iterative,
    format_float,
    make_c_encoder,
    make_fast_scanner,
    make_number_converter,
    prepare_for_c_encoder,
    scan_string,
    skip_whitespace,
)

__all__ = ["GoDialect"]

#: encoding/json's scanner refuses nesting deeper than this (scanner.go maxNestingDepth).
MAX_DEPTH = 10000

_INF = float("inf")


class _Rejected(Exception):
    """Internal: Go's error text for a document, raised as ConsumerRejected by the dialect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unmarshal_number_error(text: str) -> str:
    # decode.go convertNumber: &UnmarshalTypeError{Value: "number " + s, Type: float64}
    return f"json: cannot unmarshal number {text} into Go value of type float64"


def _parse_float(text: str) -> float:
    f = float(text) if len(text) <= SHORT else parse_float(text)
    if f == _INF or f == -_INF:
        raise _Rejected(_unmarshal_number_error(text))
    return f


def _no_constants(text: str) -> NoReturn:
    raise ValueError(f"{text} is not JSON")


def _unsupported(f: float) -> NoReturn:
    # encode.go floatEncoder: &UnsupportedValueError{v, strconv.FormatFloat(f, 'g', -1, 64)}
    text = "NaN" if f != f else ("+Inf" if f > 0 else "-Inf")
    raise _Rejected(f"json: unsupported value: {text}")


# What Marshal prints, as numbers the C encoder prints the same way.
_number = make_number_converter(_unsupported, keep_negative_zero=True)


def _roundtrip_int(text: str) -> Any:
    if len(text) < 16 and text != "-0":
        return int(text)
    if len(text) > SHORT:
        return _roundtrip_float(text)
    return _number(-0.0 if text == "-0" else int(text))


def _roundtrip_float(text: str) -> Any:
    return _number(_parse_float(text))


_ValueErrors = (ValueError, StopIteration, RecursionError, _Rejected, Unusual)
_scan = make_fast_scanner(float, _parse_float, _no_constants)
_DIGITS = b"0123456789"
_scan_long = make_fast_scanner(_parse_float, _parse_float, _no_constants)
# Round trips skip the float64 model: numbers come out of the scanner ready to print.
_scan_roundtrip = make_fast_scanner(_roundtrip_int, _roundtrip_float, _no_constants)
_c_encode = make_c_encoder(sort_keys=True)

# Cheap screens that send a document to the exact path (false positives only cost time).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\.")


# -- Go's error texts ------------------------------------------------------------------


def _quote_rune(b: int) -> str:
    """strconv.Quote(string(rune(b))) without its quotes, for b < 256."""
    if b == 0x5C:
        return "\\\\"
    if 0x20 <= b < 0x7F or (0xA1 <= b <= 0xFF and b != 0xAD):  # strconv.IsPrint
        return chr(b)
    short = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
    if b in short:
        return short[b]
    if b < 0x20 or b == 0x7F:
        return f"\\x{b:02x}"
    return f"\\u{b:04x}"


def _quote_char(b: int) -> str:
    """scanner.go quoteChar: how Go's syntax errors show the offending byte."""
    if b == 0x27:
        return "'\\''"
    if b == 0x22:
        return "'\"'"
    return "'" + _quote_rune(b) + "'"


_QUOTED = [_quote_char(b) for b in range(256)]
_EOF = "unexpected end of JSON input"


class _Scanner:
    """Go's checkValid + decode in one pass, over the document's text decoded with
    ``surrogateescape`` (so an invalid byte is still recoverable for error messages).

    Syntax errors are reported at the first offending byte, exactly as scanner.go's state
    machine does (at end of input it feeds one space, so ``1.`` reports ``' '``); a
    number too large for float64 is remembered and reported only if the whole document is
    otherwise valid, as Unmarshal does.
    """

    _STRING = re.compile(
        r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
    )
    _NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
    _HEX = frozenset("0123456789abcdefABCDEF")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)

    def fail(self, pos: int, context: str) -> NoReturn:
        if pos >= self.n:
            b = 0x20  # scanner.eof() steps a ' ' through the state machine
        else:
            ch = self.s[pos]
            o = ord(ch)
            if o < 0x80:
                b = o
            elif 0xDC80 <= o <= 0xDCFF:  # an invalid byte, kept by surrogateescape
                b = o - 0xDC00
            else:  # first byte of a valid multi-byte sequence
                b = ch.encode("utf-8")[0]
        raise _Rejected(f"invalid character {_QUOTED[b]} {context}")

    def string(self, i: int) -> tuple[str, int]:
        s = self.s
        m = self._STRING.match(s, i)
        if m is None:
            self.string_error(i)
        end = m.end()
        body = s[i + 1 : end - 1]
        if "\\" in body:
            body = scan_string(s, i + 1)[0]
        if _SURROGATE.search(body):
            body = _SURROGATE.sub("\ufffd", body)
        return body, end

    def string_error(self, i: int) -> NoReturn:
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\":
                j += 1
                if j >= n:
                    self.fail(j, "in string escape code")
                c = s[j]
                if c == "u":
                    for _ in range(4):
                        j += 1
                        if j >= n or s[j] not in self._HEX:
                            self.fail(j, "in \\u hexadecimal character escape")
                elif c not in '"\\/bfnrt':
                    self.fail(j, "in string escape code")
            elif c < " ":
                self.fail(j, "in string literal")
            j += 1
        raise _Rejected(_EOF)

    def literal(self, i: int, word: str) -> int:
        s, n = self.s, self.n
        if s.startswith(word, i):
            return i + len(word)
        for k in range(1, len(word)):
            if i + k >= n or s[i + k] != word[k]:
                self.fail(i + k, f"in literal {word} (expecting '{word[k]}')")
        raise AssertionError("unreachable")  # pragma: no cover

    def parse(self) -> Any:
        s, n = self.s, self.n
        overflow: str | None = None
        containers: list[Any] = []  # open dicts and lists, innermost last
        keys: list[str] = []  # the pending key of each open container (lists: "")
        i = 0
        value: Any
        while True:
            # -- a value starts at i (after whitespace) --
            i = skip_whitespace(s, i)
            if i >= n:
                raise _Rejected(_EOF)
            c = s[i]
            if c == '"':
                value, i = self.string(i)
            elif c == "{" or c == "[":
                if len(containers) >= MAX_DEPTH:
                    self.fail(i, "exceeded max depth")
                i = skip_whitespace(s, i + 1)
                if i >= n:
                    raise _Rejected(_EOF)
                if c == "[":
                    if s[i] == "]":
                        value = []
                        i += 1
                    else:
                        containers.append([])
                        keys.append("")
                        continue
                elif s[i] == "}":
                    value = {}
                    i += 1
                else:
                    if s[i] != '"':
                        self.fail(i, "looking for beginning of object key string")
                    key, i = self.string(i)
                    i = skip_whitespace(s, i)
                    if i >= n:
                        raise _Rejected(_EOF)
                    if s[i] != ":":
                        self.fail(i, "after object key")
                    containers.append({})
                    keys.append(key)
                    i += 1
                    continue
            elif c == "-" or "0" <= c <= "9":
                m = self._NUMBER.match(s, i)
                if m is None:  # a '-' without a digit
                    self.fail(i + 1, "in numeric literal")
                j = m.end()
                if j < n:
                    d = s[j]
                    if d == "." and m.group(1) is None and m.group(2) is None:
                        self.fail(j + 1, "after decimal point in numeric literal")
                    if (d == "e" or d == "E") and m.group(2) is None:
                        k = j + 1
                        if k < n and (s[k] == "+" or s[k] == "-"):
                            k += 1
                        self.fail(k, "in exponent of numeric literal")
                text = m.group()
                value = parse_float(text)
                if overflow is None and (value == _INF or value == -_INF):
                    overflow = text
                i = j
            elif c == "t":
                i = self.literal(i, "true")
                value = True
            elif c == "f":
                i = self.literal(i, "false")
                value = False
            elif c == "n":
                i = self.literal(i, "null")
                value = None
            else:
                self.fail(i, "looking for beginning of value")

            # -- a value ended at i: close containers as far as they end here --
            while True:
                i = skip_whitespace(s, i)
                if not containers:
                    if i < n:
                        self.fail(i, "after top-level value")
                    if overflow is not None:
                        raise _Rejected(_unmarshal_number_error(overflow))
                    return value
                if i >= n:
                    raise _Rejected(_EOF)
                c = s[i]
                top = containers[-1]
                if type(top) is list:
                    top.append(value)
                    if c == ",":
                        i += 1
                        break
                    if c != "]":
                        self.fail(i, "after array element")
                else:
                    top[keys[-1]] = value
                    if c == ",":
                        i = skip_whitespace(s, i + 1)
                        if i >= n:
                            raise _Rejected(_EOF)
                        if s[i] != '"':
                            self.fail(i, "looking for beginning of object key string")
                        keys[-1], i = self.string(i)
                        i = skip_whitespace(s, i)
                        if i >= n:
                            raise _Rejected(_EOF)
                        if s[i] != ":":
                            self.fail(i, "after object key")
                        i += 1
                        break
                    if c != "}":
                        self.fail(i, "after object key:value pair")
                value = containers.pop()
                keys.pop()
                i += 1


# -- the dialect -----------------------------------------------------------------------


def _parse_version(version: str) -> int:
    m = re.fullmatch(r"1\.(\d+)(?:\.\d+)?", version)
    if m is None or int(m.group(1)) < 19:
        raise UsageError(f"go dialect: unsupported Go version {version!r}; use 1.19 or later")
    return int(m.group(1))


def _sorted_items(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(d.items(), key=lambda kv: kv[0])


class GoDialect(Dialect):
    """Go's ``json.Unmarshal`` into ``interface{}`` and ``json.Marshal`` back.

    ``version`` is the Go release modelled ("1.19" by default; from "1.22" ``\\b`` and
    ``\\f`` are written short instead of as ``\\u0008`` / ``\\u000c``).
    """

    name = "go"

    def __init__(self, version: str = "1.19") -> None:
        self.version = version
        self._short_bf = _parse_version(version) >= 22

    def __repr__(self) -> str:
        return f"<GoDialect {self.name!r} version={self.version!r}>"

    # -- decode ------------------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """What ``json.Unmarshal(data, &v)`` leaves in ``v``; rejections carry
        ``err.Error()``."""
        try:
            s = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._exact(data.decode("utf-8", "surrogateescape"))
        if "\\u" in s and _SURROGATE_ESCAPE.search(s):
            return self._exact(s)
        # An integer of 309 digits or more may overflow; parse_int=float would make it inf
        # silently, so such documents take the scanner with a checking hook.
        scan = _scan_long if len(data) - len(data.translate(None, _DIGITS)) >= 309 else _scan
        try:
            return scan(s)
        except _ValueErrors:
            return self._exact(s)

    def _exact(self, s: str) -> Any:
        try:
            return _Scanner(s).parse()
        except _Rejected as e:
            raise self.reject(e.reason) from None

    # -- encode ------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """What ``json.Marshal`` writes for a value Go holds (numbers are float64; a
        string with surrogate code points is taken as their UTF-8 bytes, each of them
        invalid to Go). An infinity or NaN is refused as Marshal refuses it."""
        try:
            try:
                text = _c_encode(prepare_for_c_encoder(value, _number))
            except (Unusual, RecursionError):
                text = encode_iterative(value, _marshal_float, _sorted_items)
        except _Rejected as e:
            raise self.reject(e.reason) from None
        return self._finish(text)

    def roundtrip(self, data: bytes) -> bytes:
        """``data`` through Unmarshal and Marshal, as the real program writes it."""
        try:
            s = data.decode("utf-8")
        except UnicodeDecodeError:
            return self.encode(self.decode(data))
        if "\\u" in s and _SURROGATE_ESCAPE.search(s):
            return self.encode(self.decode(data))
        try:
            text = _c_encode(_scan_roundtrip(s))
        except _ValueErrors:
            return self.encode(self.decode(data))
        return self._finish(text)

    def _finish(self, text: str) -> bytes:
        """Python's JSON text -> Go's: HTML-safe and U+2028/9 escapes, \\b and \\f."""
        if "<" in text:
            text = text.replace("<", "\\u003c")
        if ">" in text:
            text = text.replace(">", "\\u003e")
        if "&" in text:
            text = text.replace("&", "\\u0026")
        if "\u2028" in text:
            text = text.replace("\u2028", "\\u2028")
        if "\u2029" in text:
            text = text.replace("\u2029", "\\u2029")
        if not self._short_bf and ("\\b" in text or "\\f" in text):
            text = _ESCAPE.sub(_long_bf, text)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # Each surrogate is 3 bytes of invalid UTF-8 to Go: 3 x \ufffd.
            return _SURROGATE.sub("\\\\ufffd" * 3, text).encode("utf-8")


def _marshal_float(f: float) -> str:
    if math.isfinite(f):
        return format_float(f, negative_zero="-0")
    _unsupported(f)


def _long_bf(m: re.Match[str]) -> str:
    e = m.group()
    return "\\u0008" if e == "\\b" else "\\u000c" if e == "\\f" else e

