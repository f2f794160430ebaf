"""JSON text helpers shared by the ``go`` and ``js`` dialects (private).

Both consumers hold every number as an IEEE-754 float64 and print it with the shortest
digits that read back to the same float64, in the form ECMAScript's Number::toString
fixes (Go's encoding/json copies that form on purpose, golang.org/issue/6384): plain
digits from 1e-6 up to 1e21, exponent form (``1e+21``, ``1.5e-7``) outside. Python's
``repr(float)`` gives the same shortest digits in another layout; this module turns one
into the other, and gives the dialects:

* ``make_fast_scanner``: the C-accelerated stdlib scanner (``json.scanner``) with the
  hooks a dialect needs, for the common case of a document without edge cases;
* ``make_number_converter`` / ``prepare_for_c_encoder``: numbers (and values) turned
  into ones the C-accelerated stdlib encoder writes exactly as the consumer does
  (integral floats become ``int`` with the consumer's digits), or :class:`Unusual` when
  only the hand-written path can; the converter also serves as the scanner's number
  hooks, so a round trip needs no extra pass over the value;
* ``encode_iterative``: the hand-written writer used for the rest (``-0`` in Go, floats
  below 1e-4, nesting deeper than Python's recursion limit).
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import json.scanner
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "WHITESPACE",
    "Unusual",
    "encode_iterative",
    "encode_string",
    "format_float",
    "make_c_encoder",
    "make_fast_scanner",
    "make_number_converter",
    "prepare_for_c_encoder",
    "scan_string",
    "skip_digits",
    "skip_whitespace",
]

#: JSON whitespace; Go, V8 and Python's scanner all accept exactly these four.
WHITESPACE = " \t\n\r"

# The stdlib's C accelerators (json.encoder / json.decoder pick them up the same way);
# typeshed does not declare these names.
_encode_basestring: Callable[[str], str] = json.encoder.encode_basestring
_c_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_make_scanner: Any = json.scanner.make_scanner

#: ``"`` + body, with JSON's escaping, for a Python ``str`` (no ASCII escaping; ``\b``,
#: ``\f``, ``\n``, ``\r``, ``\t`` short, other controls as lowercase ``\u00XX``). Both
#: consumers agree with it except where the dialects post-process.
encode_string: Callable[[str], str] = _encode_basestring

#: ``scan_string(s, i)``: the value of the JSON string whose body starts at ``s[i]`` (just
#: past the quote) and the index after its closing quote. A ``\uHHHH`` escape of a high
#: surrogate followed by one of a low surrogate makes one code point; any other
#: surrogate escape stays a lone surrogate.
scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

_INF = float("inf")


class Unusual(Exception):
    """A value the C-accelerated encoder cannot write the consumer's way."""


_WHITESPACE_RUN = re.compile(r"[ \t\n\r]*")
_DIGIT_RUN = re.compile(r"[0-9]*")


def skip_whitespace(s: str, i: int) -> int:
    """Index of the first non-whitespace character of ``s`` at or after ``i``."""
    m = _WHITESPACE_RUN.match(s, i)
    return m.end() if m is not None else i


def skip_digits(s: str, i: int) -> int:
    """Index of the first character of ``s`` at or after ``i`` that is not 0-9."""
    m = _DIGIT_RUN.match(s, i)
    return m.end() if m is not None else i


def make_fast_scanner(
    parse_int: Callable[[str], Any],
    parse_float: Callable[[str], Any],
    parse_constant: Callable[[str], Any],
) -> Callable[[str], Any]:
    """A function ``str -> value`` that parses one whole JSON text with the stdlib's C
    scanner, or raises (``ValueError``, ``StopIteration``, ``RecursionError`` or whatever
    a hook raises). Objects are plain dicts built pair by pair, so a repeated key keeps
    its first position and takes its last value."""
    decoder = json.JSONDecoder(
        parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
    )
    scan_once = _make_scanner(decoder)

    def scan(s: str) -> Any:
        i = 0
        if s and s[0] in WHITESPACE:
            i = skip_whitespace(s, 0)
        value, end = scan_once(s, i)
        if end != len(s) and s[end:].strip(WHITESPACE):
            raise ValueError("extra data")
        return value

    return scan


def make_c_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """The stdlib C encoder: compact separators, no ASCII escaping, no cycle check."""
    if _c_make_encoder is None:  # a Python without the _json accelerator
        return json.JSONEncoder(
            ensure_ascii=False, check_circular=False, sort_keys=sort_keys, separators=(",", ":")
        ).encode
    encoder = _c_make_encoder(
        None, None, _encode_basestring, None, ":", ",", sort_keys, False, True
    )

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


# -- numbers ---------------------------------------------------------------------------


def _digits_and_point(r: str) -> tuple[str, int]:
    """``repr`` of a positive finite float -> (significant digits, n) with the value
    equal to 0.DIGITS x 10**n (ECMAScript's k digits and n)."""
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    significant = digits.lstrip("0")
    n = len(whole) + int(exp or 0) - (len(digits) - len(significant))
    return significant.rstrip("0"), n


def format_float(f: float, negative_zero: str = "0") -> str:
    """ECMAScript Number::toString of a finite float64 (also Go's floatEncoder output).

    ``negative_zero`` is what ``-0.0`` prints as: ``"0"`` in JavaScript, ``"-0"`` in Go.
    """
    if f == 0:
        return negative_zero if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    digits, n = _digits_and_point(repr(abs(f)))
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exp = ("e+" if e >= 0 else "e-") + str(abs(e))
    if k == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp


def _integral_as_int(f: float) -> int:
    """An integral float with 1e16 <= |f| < 1e21 as the int whose decimal digits are what
    Number::toString prints (shortest digits padded with zeros, e.g. 2**60 prints
    1152921504606847000, not 1152921504606846976)."""
    mantissa, _, exp = repr(f).partition("e")
    whole, _, frac = mantissa.partition(".")
    return int(whole + frac) * 10 ** (int(exp or 0) - len(frac))


_TWO_53 = 2**53


def make_number_converter(
    non_finite: Callable[[float], Any], keep_negative_zero: bool
) -> Callable[[Any], Any]:
    """A function turning a number a float64 consumer holds (``float``, or ``int`` taken
    as ``float(i)``) into one the C encoder prints as the consumer does: ints within 2**53
    stay, integral floats below 1e21 become ints with the consumer's digits, floats
    whose ``repr`` already matches stay. It raises :class:`Unusual` for numbers only
    :func:`format_float` prints right (floats in [1e-9, 1e-4), and ``-0.0`` when
    ``keep_negative_zero``). ``non_finite(f)`` gives the replacement of an infinity or
    NaN (or raises)."""

    def number(x: Any) -> Any:
        if type(x) is int:
            if -_TWO_53 < x < _TWO_53:
                return x
            try:
                x = float(x)
            except OverflowError:
                x = _INF if x > 0 else -_INF
        if x.is_integer():
            if -1e16 < x < 1e16:
                if x == 0 and keep_negative_zero and math.copysign(1.0, x) < 0:
                    raise Unusual
                return int(x)
            if -1e21 < x < 1e21:
                return _integral_as_int(x)
            return x
        a = abs(x)
        if 1e-4 <= a < 1e16 or a < 1e-9:
            return x
        if a != a or a == _INF:
            return non_finite(x)
        raise Unusual

    return number


def prepare_for_c_encoder(
    value: Any,
    number: Callable[[Any], Any],
    order: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Any:
    """``value`` with every number passed through ``number`` (a converter from
    :func:`make_number_converter`) and, optionally, every dict rewritten by ``order``
    (the key order a consumer uses). Raises whatever ``number`` raises, and
    ``RecursionError`` for very deep values."""

    def walk(v: Any) -> Any:
        t = type(v)
        if t is dict:
            if order is not None:
                v = order(v)
            out = {}
            for k, x in v.items():
                tx = type(x)
                if tx is str or x is None or tx is bool:
                    out[k] = x
                elif tx is float and x and -1e16 < x < 1e16 and x.is_integer():
                    out[k] = int(x)  # the common case, inlined
                elif tx is float or tx is int:
                    out[k] = number(x)
                else:
                    out[k] = walk(x)
            return out
        if t is list or t is tuple:
            return [x if type(x) is str else walk(x) for x in v]
        if t is float or t is int:
            return number(v)
        if t is str or v is None or t is bool:
            return v
        raise TypeError(f"cannot encode {t.__name__} as JSON")

    return walk(value)


def encode_iterative(
    value: Any,
    number: Callable[[float], str],
    items: Callable[[dict[str, Any]], list[tuple[str, Any]]],
) -> str:
    """JSON text of ``value`` without recursion (any depth). ``number(f)`` writes a
    float (ints are converted to float first, as a float64 consumer holds them);
    ``items(d)`` gives a dict's pairs in the order the consumer writes them."""

    def scalar(v: Any) -> str:
        t = type(v)
        if t is str:
            return _encode_basestring(v)
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if t is float:
            return number(v)
        if t is int:
            try:
                return number(float(v))
            except OverflowError:
                return number(_INF if v > 0 else -_INF)
        raise TypeError(f"cannot encode {t.__name__} as JSON")

    def members(d: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        sep = ""
        for k, x in items(d):
            yield sep + _encode_basestring(k) + ":", x
            sep = ","

    def elements(a: list[Any]) -> Iterator[tuple[str, Any]]:
        sep = ""
        for x in a:
            yield sep, x
            sep = ","

    out: list[str] = []
    stack: list[Iterator[tuple[str, Any]]] = [iter([("", value)])]
    closers: list[str] = [""]
    while stack:
        for prefix, v in stack[-1]:
            out.append(prefix)
            t = type(v)
            if t is dict:
                if v:
                    out.append("{")
                    stack.append(members(v))
                    closers.append("}")
                    break
                out.append("{}")
            elif t is list or t is tuple:
                if v:
                    out.append("[")
                    stack.append(elements(v))
                    closers.append("]")
                    break
                out.append("[]")
            else:
                out.append(scalar(v))
        else:
            stack.pop()
            out.append(closers.pop())
    return "".join(out)
