"""The ``python`` dialect: the exact, lossless baseline every other dialect is measured by.

What it models: a reader that keeps every JSON value exactly as written.

* Integers are Python ``int`` at any size (``2**64 + 5`` stays exact; beyond Python's
  4300-digit ``int(str)`` limit too).
* Every other number is a :class:`JsonNumber`: a ``str`` subclass holding the token text
  (``"12.30"``, ``"1E400"``) that compares *exactly* with ``int``, ``float`` and
  ``Decimal`` (``JsonNumber("0.1") != 0.1`` because the float is not exactly 0.1). The
  integer token ``-0`` is a ``JsonNumber`` too, since ``int`` has no negative zero.
* Strings are ``str``. With ``keep_text`` (the default) a string or key written with
  escapes (``"a\\/b"``, ``"\\u00e9"``) is a :class:`JsonString`, a ``str`` that also
  remembers its token text, so that :func:`dumps` writes it back byte for byte.

Strict, because it is the reference: invalid UTF-8, ``NaN``/``Infinity`` tokens, duplicate
keys and any syntax error are rejected (``ConsumerRejected``). Lone surrogate escapes
(``"\\ud800"``) are valid JSON grammar and are kept. Nesting is accepted exactly as deep as
the running interpreter's ``json.loads`` accepts it (a limit of the interpreter: about 1000
levels on Python 3.11, 1500 on 3.12, 10000 on 3.13); deeper is rejected ("nested too
deeply"). Every walk over a decoded value uses an explicit stack, so any depth the parsers
accept is handled and written back.

``loads(..., strict=False)`` is the lenient reading the fidelity audit uses as its
reference: invalid UTF-8 bytes survive as lone surrogates (``surrogateescape``) and a
duplicate key keeps its last value, while the earlier occurrences are reported to the
caller, so that the audit can count them instead of rejecting the document.

``encode(decode(doc)) == doc`` for every compact document (no whitespace between tokens)
that this dialect accepts.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import msgspec

from .._json import escape_pointer_token, exact_decimal, is_invalid_utf8
from ..errors import DecodeError, UsageError
from ._base import Dialect

__all__ = [
    "JsonNumber",
    "JsonString",
    "PythonDialect",
    "count_keys",
    "count_keys_written",
    "count_plain_keys",
    "dumps",
    "loads",
]


class JsonNumber(str):
    """A JSON number kept as its own token text, compared exactly as a number.

    ``JsonNumber("12.30") == Decimal("12.3")`` and ``JsonNumber("0.5") == 0.5`` are true;
    ``JsonNumber("0.1") == 0.1`` is false (the float is 0.1000000000000000055...).
    ``str(n)`` is the original text; ``float(n)`` and :meth:`to_decimal` convert. A
    ``JsonNumber`` never equals a plain string.
    """

    __slots__ = ()

    def to_decimal(self) -> Decimal:
        """The exact value."""
        return exact_decimal(self)

    @property
    def is_integer_token(self) -> bool:
        """True when the token has no fraction and no exponent (only ``-0`` in practice)."""
        return not ("." in self or "e" in self or "E" in self)

    def __float__(self) -> float:
        return float(str(self))

    def __bool__(self) -> bool:
        return exact_decimal(self) != 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonNumber):
            return exact_decimal(self) == exact_decimal(other)
        if isinstance(other, str):
            return False
        if isinstance(other, int | float | Decimal | Fraction):
            return exact_decimal(self) == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(exact_decimal(self))

    def _cmp(self, other: object) -> Decimal | int | float | Fraction | None:
        if isinstance(other, JsonNumber):
            return exact_decimal(other)
        if isinstance(other, int | float | Decimal | Fraction):
            return other
        return None

    def __lt__(self, other: object) -> bool:
        o = self._cmp(other)
        return NotImplemented if o is None else exact_decimal(self) < o

    def __le__(self, other: object) -> bool:
        o = self._cmp(other)
        return NotImplemented if o is None else exact_decimal(self) <= o

    def __gt__(self, other: object) -> bool:
        o = self._cmp(other)
        return NotImplemented if o is None else exact_decimal(self) > o

    def __ge__(self, other: object) -> bool:
        o = self._cmp(other)
        return NotImplemented if o is None else exact_decimal(self) >= o

    def __repr__(self) -> str:
        return f"JsonNumber({str(self)!r})"


class JsonString(str):
    """A string that was written with escapes; ``raw`` is its token text, quotes included.

    It is an ordinary ``str`` for every purpose (equality, hashing, dictionary keys);
    only :func:`dumps` looks at ``raw``.
    """

    raw: str

    def __new__(cls, value: str, raw: str) -> JsonString:
        self = super().__new__(cls, value)
        self.raw = raw
        return self

    def __repr__(self) -> str:
        return f"JsonString({str(self)!r}, raw={self.raw!r})"


# -- reading ---------------------------------------------------------------------------------

_DECODER = msgspec.json.Decoder(float_hook=JsonNumber)
# An integer token "-0", whose sign int() loses: "-0" before a value end, after a value
# separator (checked in _has_negative_zero). Inside a string it is only a false alarm (the
# slow path then gives the same result).
_NEG_ZERO = re.compile(rb"-0(?=[,\]} \t\r\n]|\Z)")
_BEFORE_VALUE = frozenset(b":,[ \t\r\n")
# Every string token in document order, and whether a colon follows it (then it is a key).
# findall stays aligned on valid JSON: outside strings no '"' occurs, and a match always
# consumes a whole string token.
_STRING_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")([ \t\r\n]*:)?', re.S)
_KEY_END = re.compile(rb'"[ \t\r\n]*:')  # a key's end, in a document without backslashes
_WS_AFTER_QUOTE = re.compile(rb'"[ \t\r\n]')
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a JSON number")


def _parse_int(text: str) -> int | JsonNumber:
    if text == "-0":
        return JsonNumber(text)
    try:
        return int(text)
    except ValueError:  # more digits than int(str) allows: Decimal converts without limit
        return int(Decimal(text))


class _Pairs:
    """An object as its key/value pairs in order, duplicates included (slow path only)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def loads(data: bytes | str, *, strict: bool = True, keep_text: bool = True,
          allow_nonfinite: bool = False, check_duplicates: bool = True,
          shadowed: list[tuple[tuple[str | int, ...], Any]] | None = None) -> Any:
    """Decode one JSON document exactly (see the module docstring).

    ``strict=False`` keeps invalid UTF-8 bytes as lone surrogates and lets a duplicate key
    keep its last value; each earlier occurrence is appended to ``shadowed`` (when given) as
    ``(location, value)``, the location a tuple of keys and array indices.
    ``allow_nonfinite`` reads ``NaN``/``Infinity``/``-Infinity`` as :class:`JsonNumber`
    (for reading what a consumer wrote). ``check_duplicates=False`` skips the duplicate
    check (for trusted machine output: last value wins).

    Raises :class:`~evtools.errors.DecodeError` for anything that is not acceptable JSON.
    """
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DecodeError(f"text is not valid Unicode: {e.reason}") from e
    value: Any = None
    use_stdlib = False
    try:
        value = _DECODER.decode(data)
    except msgspec.ValidationError:  # an integer beyond 64 bits' reach in msgspec
        use_stdlib = True
    except msgspec.DecodeError as e:
        # msgspec refuses lone surrogate escapes, which are valid JSON grammar; the stdlib
        # parser, which accepts them, gives the verdict whenever \u escapes are present.
        if is_invalid_utf8(e):  # msgspec >= 0.23 says so with a DecodeError
            if strict:
                _text_of(data, strict)  # raises with the offending byte and its offset
            use_stdlib = True
        elif b"\\u" in data or allow_nonfinite:
            use_stdlib = True
        else:
            raise DecodeError(str(e)) from e
    except UnicodeDecodeError:
        if strict:
            _text_of(data, strict)  # raises with the offending byte and its offset
        use_stdlib = True
    except RecursionError:  # json.loads, whose depth limit is the model's, gives the verdict
        use_stdlib = True
    except ValueError:  # an integer with more digits than int(str) accepts
        use_stdlib = True
    if not use_stdlib:
        if _has_negative_zero(data):
            use_stdlib = True
        elif len(data) >= 2 * _SHALLOW and _too_deep_for_json(data, value):
            raise _nested_too_deeply()

    text: str | None = None
    if use_stdlib:
        text = _text_of(data, strict)
        value = _stdlib_loads(text, allow_nonfinite, None)

    has_escapes = b"\\" in data
    if not check_duplicates:
        if keep_text and has_escapes:
            text = text if text is not None else _text_of(data, strict)
            found = _STRING_TOKEN.findall(text)
            if len(found) == _count_strings(value):
                value = _attach_texts(value, iter(found))
        return value

    n_keys = count_keys(value)
    tokens: list[tuple[str, str]] | None = None
    if has_escapes:
        text = text if text is not None else _text_of(data, strict)
        tokens = _STRING_TOKEN.findall(text)
        n_key_tokens = sum(1 for _, colon in tokens if colon)
    else:
        n_key_tokens = count_plain_keys(data)
    if n_key_tokens != n_keys:
        text = text if text is not None else _text_of(data, strict)
        return _loads_with_duplicates(text, strict=strict, keep_text=keep_text,
                                      allow_nonfinite=allow_nonfinite, tokens=tokens,
                                      shadowed=shadowed)
    if keep_text and tokens is not None:
        value = _attach_texts(value, iter(tokens))
    return value


#: the end of an iterator (``next(it, _END)``); no JSON value is this object
_END: Any = object()

#: what :func:`_quick_loads` returns when a document needs :func:`loads` itself
SLOW = object()


def _quick_loads(data: bytes) -> Any:
    """``loads(data, strict=False, check_duplicates=False)`` for the common document (no
    backslash, no ``-0``, nothing msgspec refuses), or :data:`SLOW`. The audit's hot path:
    no keyword handling, no text work."""
    if b"\\" in data:
        return SLOW
    try:
        value = _DECODER.decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return SLOW
    if _has_negative_zero(data) or (len(data) >= 2 * _SHALLOW
                                    and _too_deep_for_json(data, value)):
        return SLOW
    return value


def _has_negative_zero(data: bytes) -> bool:
    m = _NEG_ZERO.search(data)
    while m is not None:
        start = m.start()
        if start == 0 or data[start - 1] in _BEFORE_VALUE:
            return True
        m = _NEG_ZERO.search(data, m.end())
    return False


def _text_of(data: bytes, strict: bool) -> str:
    try:
        return data.decode("utf-8", "strict" if strict else "surrogateescape")
    except UnicodeDecodeError as e:
        raise DecodeError(f"invalid UTF-8: byte {data[e.start]:#04x} at offset {e.start} "
                          f"({e.reason})") from e


def _stdlib_loads(text: str, allow_nonfinite: bool,
                  pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None) -> Any:
    try:
        return json.loads(text, parse_float=JsonNumber, parse_int=_parse_int,
                          parse_constant=JsonNumber if allow_nonfinite else _reject_constant,
                          object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as e:
        raise DecodeError(str(e)) from e
    except _NonFinite as e:
        raise DecodeError(str(e)) from e
    except RecursionError as e:
        try:
            json.loads(text)
        except RecursionError:
            raise _nested_too_deeply() from e
        except json.JSONDecodeError as plain:
            raise DecodeError(str(plain)) from e
        except ValueError:  # an integer beyond int(str)'s digit limit: depth is the issue
            pass
        # json.loads accepts this depth, but the hooks this reading needs (exact numbers,
        # repeated keys) are calls that count against the same limit: a document within a
        # few levels of the limit that also needs this slow path (a lone surrogate escape,
        # "-0", an integer beyond 64 bits, a repeated key) cannot be read exactly.
        raise DecodeError("nested too deeply for an exact reading: json.loads accepts this "
                          "depth, but only a few levels more than the exact reader reaches"
                          ) from e


def count_keys_written(data: bytes) -> int:
    """How many object keys ``data`` (a valid JSON document) writes, repeats included.

    Compared with :func:`count_keys` of its decoded value, this tells whether a key
    repeats anywhere in the document."""
    if b"\\" in data:
        text = data.decode("utf-8", "surrogateescape")
        return sum(1 for _, colon in _STRING_TOKEN.findall(text) if colon)
    return count_plain_keys(data)


def count_plain_keys(data: bytes) -> int:
    """:func:`count_keys_written` for a document without backslashes: there every '"'
    delimits a string, so a '"' followed by a colon ends a key. (The plain count would miss
    '"key" :'; the regex does not.)"""
    if _WS_AFTER_QUOTE.search(data) is None:
        return data.count(b'":')
    return len(_KEY_END.findall(data))


def count_keys(value: Any) -> int:
    """How many object keys a decoded value holds, nested objects included."""
    # An explicit stack, not recursion, here and in every walker below: a document the
    # decoders accept may nest deeper than Python's recursion limit (Python 3.12 and later
    # parse far deeper than 1000 levels).
    t = type(value)
    if t is dict:
        n = len(value)
        value = value.values()
    elif t is list:
        n = 0
    else:
        return 0
    stack = None
    for v in value:
        tv = type(v)
        if tv is dict or tv is list:
            if stack is None:
                stack = [v]
            else:
                stack.append(v)
    if stack is None:
        return n
    pop = stack.pop
    push = stack.append
    while stack:
        v = pop()
        if type(v) is dict:
            n += len(v)
            v = v.values()
        for c in v:
            tc = type(c)
            if tc is dict or tc is list:
                push(c)
    return n


def _count_strings(value: Any) -> int:
    """Keys plus string values: the number of string tokens the document must have."""
    n = 0
    stack = [value]
    pop = stack.pop
    push = stack.append
    while stack:
        v = pop()
        t = type(v)
        if t is dict:
            n += len(v)
            v = v.values()
        elif t is not list:
            if t is str:
                n += 1
            continue
        for c in v:
            tc = type(c)
            if tc is dict or tc is list:
                push(c)
            elif tc is str:
                n += 1
    return n


def nesting_depth(value: Any) -> int:
    """How deeply a decoded value nests: 0 for a scalar, 1 for ``[]``, 2 for ``[[]]``."""
    deepest = 0
    stack = [(value, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        v, level = pop()
        t = type(v)
        if t is dict:
            v = v.values()
        elif t is not list:
            continue
        if level > deepest:
            deepest = level
        for c in v:
            tc = type(c)
            if tc is dict or tc is list:
                push((c, level + 1))
    return deepest


def may_nest(data: bytes, levels: int) -> bool:
    """Whether ``data`` has brackets enough to nest ``levels`` deep (two C counts): a
    document that has not is never walked to find out how deep it is."""
    return len(data) >= 2 * levels and data.count(b"[") + data.count(b"{") >= levels


#: Frames kept free for what a walker calls (and its callers) beyond one per level.
_FRAME_MARGIN = 100


def too_deep_to_walk(data: bytes, value: Any, walker: str) -> str:
    """Why ``walker`` (a recursive walk, one frame per level) cannot walk ``value`` (the
    decoded ``data``), or ``""``. Since Python 3.12 the decoders accept documents nested
    deeper than Python's recursion limit (``json.loads`` of 3.13 takes about 10000
    levels): such a document is refused, with a reason, rather than failing its whole
    batch with a RecursionError."""
    if not may_nest(data, _SHALLOW):
        return ""
    depth = nesting_depth(value)
    if depth < _SHALLOW:
        return ""
    frames = 0
    frame: Any = sys._getframe()
    while frame is not None:
        frames += 1
        frame = frame.f_back
    room = sys.getrecursionlimit() - frames - _FRAME_MARGIN
    if depth <= room:
        return ""
    return (f"nested too deeply for {walker}: {depth} levels, and its walk has room for "
            f"{max(room, 0)} (Python's recursion limit)")


#: Nesting below this many levels is never a question: every decoder used here (and
#: ``json.loads``, on every supported Python) accepts it in any ordinary call context.
_SHALLOW = 256


def _too_deep_for_json(data: bytes, value: Any) -> bool:
    """True when ``json.loads`` of the running Python refuses ``data`` (already decoded
    to ``value`` by msgspec) for its nesting. msgspec and ``json`` count nesting against
    the same interpreter limit but not identically (msgspec reaches a few levels
    further), so near the limit ``json.loads`` itself gives the verdict; below
    :data:`_SHALLOW` brackets nothing is checked (two byte counts)."""
    if not may_nest(data, _SHALLOW) or nesting_depth(value) < _SHALLOW:
        return False
    try:
        json.loads(data)
    except RecursionError:
        return True
    except ValueError:  # pragma: no cover - msgspec accepted it; not a question of depth
        return False
    return False


def _nested_too_deeply() -> DecodeError:
    version = ".".join(map(str, sys.version_info[:2]))
    return DecodeError(f"nested too deeply: json.loads on Python {version} refuses this depth "
                       "(RecursionError)")


def _members(node: Any) -> Any:
    t = type(node)
    if t is dict:
        return enumerate(node.items())
    if t is list:
        return enumerate(node)
    return enumerate(node.pairs)  # _Pairs


def _attach_texts(value: Any, tokens: Any) -> Any:
    """Replace strings and keys written with escapes by JsonStrings, walking in document
    order alongside the document's string tokens. Returns the (possibly new) value:
    containers are changed in place, so only a top-level string is ever replaced."""
    t = type(value)
    if t is str:
        raw = next(tokens)[0]
        return JsonString(value, raw) if "\\" in raw else value
    if t is not dict and t is not list and t is not _Pairs:
        return value
    # frames: [container, its enumerated members, rebuilt items (a dict with an escaped
    # key is rebuilt once its members are done)]
    stack: list[list[Any]] = [[value, _members(value), None]]
    while stack:
        frame = stack[-1]
        node = frame[0]
        step = next(frame[1], None)
        if step is None:
            stack.pop()
            rebuilt = frame[2]
            if rebuilt is not None:
                node.clear()
                node.update(rebuilt)
            continue
        i, member = step
        tn = type(node)
        k: Any = None
        if tn is list:
            v = member
        else:
            k, v = member
            raw = next(tokens)[0]
            if "\\" in raw:
                if tn is dict and frame[2] is None:
                    frame[2] = list(node.items())[:i]
                k = JsonString(k, raw)
        new = v
        tv = type(v)
        if tv is str:
            raw = next(tokens)[0]
            if "\\" in raw:
                new = JsonString(v, raw)
        elif tv is dict or tv is list or tv is _Pairs:
            stack.append([v, _members(v), None])  # done before the next member
        if tn is list:
            if new is not v:
                node[i] = new
        elif tn is dict:
            if frame[2] is not None:
                frame[2].append((k, new))
            elif new is not v:
                node[k] = new
        else:
            node.pairs[i] = (k, new)
    return value


def _loads_with_duplicates(text: str, *, strict: bool, keep_text: bool, allow_nonfinite: bool,
                           tokens: list[tuple[str, str]] | None,
                           shadowed: list[tuple[tuple[str | int, ...], Any]] | None) -> Any:
    """The slow path for a document that repeats a key somewhere."""
    tree = _stdlib_loads(text, allow_nonfinite, _Pairs)
    if keep_text and "\\" in text:
        tree = _attach_texts(tree, iter(tokens or _STRING_TOKEN.findall(text)))
    return _resolve_pairs(tree, (), strict, shadowed)


def _resolve_pairs(node: Any, where: tuple[str | int, ...], strict: bool,
                   shadowed: list[tuple[tuple[str | int, ...], Any]] | None) -> Any:
    """``node`` with every :class:`_Pairs` turned into a dict (the first position, the last
    value of a repeated key); ``where`` is the location of ``node``."""
    tn = type(node)
    if tn is not list and tn is not _Pairs:
        return node
    # frames: [container, its members, what it becomes, the key or index being resolved]
    stack: list[list[Any]] = [
        [node, enumerate(node) if tn is list else iter(node.pairs),
         [] if tn is list else {}, None]]
    while True:
        frame = stack[-1]
        member = next(frame[1], _END)
        if member is _END:
            stack.pop()
            done = frame[2]
            if not stack:
                return done
            frame = stack[-1]
            k, v = frame[3], done
        else:
            k, v = member
            tv = type(v)
            if tv is list or tv is _Pairs:
                frame[3] = k
                stack.append([v, enumerate(v) if tv is list else iter(v.pairs),
                              [] if tv is list else {}, None])
                continue
        out = frame[2]
        if type(out) is list:
            out.append(v)
            continue
        if k in out:
            here = (*where, *(f[3] for f in stack[:-1]))
            if strict:
                pointer = "".join("/" + escape_pointer_token(str(p)) for p in here)
                raise DecodeError(f"duplicate key {str(k)!r} in the object at {pointer or '/'}",
                                  path=pointer)
            if shadowed is not None:
                shadowed.append(((*here, k), out[k]))
        out[k] = v  # like dict(pairs): the first position, the last value


# -- writing ---------------------------------------------------------------------------------

_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def dumps(value: Any) -> bytes:
    """Write ``value`` as compact JSON, numbers and escaped strings with their own text.

    Accepts what :func:`loads` returns plus ``float`` (``repr``, finite only), ``Decimal``
    and tuples. Lone surrogates in strings are written as ``\\uHHHH`` escapes.
    Raises :class:`~evtools.errors.UsageError` for values JSON cannot hold.
    """
    parts: list[str] = []
    _write(value, parts.append)
    out = "".join(parts)
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out).encode("utf-8")


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # beyond int(str)'s digit limit; Decimal has none
        return str(Decimal(value))


def _write(value: Any, out: Callable[[str], Any]) -> None:
    # An explicit stack of open containers, not recursion: any depth can be written.
    t = type(value)
    if t is dict:
        out("{")
        members: Any = iter(value.items())
        close, keyed = "}", True
    elif t is list or t is tuple:
        out("[")
        members = iter(value)
        close, keyed = "]", False
    else:
        out(_scalar_text(value, t))
        return
    stack: list[tuple[Any, str, bool]] = []  # the open containers around this one
    first = True
    while True:
        for member in members:
            if first:
                first = False
            else:
                out(",")
            if keyed:
                k, v = member
                if type(k) is str:
                    out(_encode_str(k))
                    out(":")
                else:
                    out(_key_text(k))
            else:
                v = member
            tv = type(v)
            if tv is str:
                out(_encode_str(v))
            elif tv is dict:
                stack.append((members, close, keyed))
                out("{")
                members, close, keyed, first = iter(v.items()), "}", True, True
                break
            elif tv is list or tv is tuple:
                stack.append((members, close, keyed))
                out("[")
                members, close, keyed, first = iter(v), "]", False, True
                break
            else:
                out(_scalar_text(v, tv))
        else:  # this container is done: back to the one around it
            out(close)
            if not stack:
                return
            members, close, keyed = stack.pop()
            first = False


def _key_text(k: Any) -> str:
    """A key as written, with its colon."""
    if type(k) is JsonString:
        return k.raw + ":"
    if isinstance(k, str):
        return _encode_str(k) + ":"
    raise UsageError(f"JSON object keys must be strings, not {type(k).__name__}")


def _scalar_text(value: Any, t: type) -> str:
    if t is str:
        return _encode_str(value)
    if t is JsonNumber:
        return str.__str__(value)
    if t is JsonString:
        return value.raw
    if t is int:
        return _int_text(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{value!r} cannot be written as JSON")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UsageError(f"{value!r} cannot be written as JSON")
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(int(value))
    if isinstance(value, str):
        return _encode_str(str(value))
    raise UsageError(f"a {type(value).__name__} cannot be written as JSON")


# -- shared by the columnar dialects, which read records as a Python program does ------------


def load_record(doc: bytes, library: str) -> dict[str, Any]:
    """A document as a Python program's ``json.loads(doc)`` gives it (floats binary,
    ``NaN`` accepted, the last of a repeated key), checked to be one object (one row).

    Raises :class:`~evtools.errors.DecodeError` with the reason ``library`` rejects it.
    """
    try:
        record = json.loads(doc)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise DecodeError(f"json.loads: {e}") from e
    if not isinstance(record, dict):
        raise DecodeError(f"a JSON {type(record).__name__} is not a record: {library} takes "
                          "one object per row")
    return record


def as_json_line(doc: bytes) -> bytes:
    """``doc`` as one line of JSON lines. Newlines are only whitespace in valid JSON, so
    they become spaces; raises DecodeError for a blank document (its line would vanish)
    or one whose newlines are not whitespace."""
    if not doc.strip():
        raise DecodeError("empty document")
    if b"\n" in doc or b"\r" in doc:
        try:
            json.loads(doc)
        except (ValueError, RecursionError) as e:
            raise DecodeError(f"not one JSON document: {e}") from e
        doc = doc.replace(b"\r", b" ").replace(b"\n", b" ")
    return doc


def batch_error(error: Exception, size: int) -> str:
    """The rejection reason for every document of a batch a library refused."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"the batch of {size} was refused: {type(error).__name__}: {first}"


# -- the dialect -----------------------------------------------------------------------------


class PythonDialect(Dialect):
    """The exact reference reader and writer (see the module docstring)."""

    name: ClassVar[str] = "python"

    def __init__(self, *, keep_text: bool = True) -> None:
        self.keep_text = keep_text

    def decode(self, data: bytes) -> Any:
        try:
            return loads(data, strict=True, keep_text=self.keep_text)
        except DecodeError as e:
            raise self.reject(e.message).with_context(e.context) from e

    def encode(self, value: Any) -> bytes:
        return dumps(value)
