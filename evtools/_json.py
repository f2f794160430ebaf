"""Strict JSON checks shared by the registry and the readers (private).

msgspec is fast and exact but lenient in three ways we are not: a duplicate key silently
takes the last value, very deep nesting surfaces as a bare ``RecursionError``, and invalid
UTF-8 as ``UnicodeDecodeError`` (msgspec < 0.23) or a ``DecodeError`` that says so
(:func:`is_invalid_utf8` tells either). These helpers close those gaps and turn msgspec's error
paths (``$.items[0].price``) into JSON Pointers (``/items/0/price``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ._accel import speedups

__all__ = [
    "JSON_WHITESPACE",
    "DuplicateKey",
    "compact",
    "compact_key_tokens",
    "count_keys",
    "escape_pointer_token",
    "exact_decimal",
    "fast_duplicate_key",
    "find_duplicate_key",
    "has_duplicate_key",
    "is_invalid_utf8",
    "msgspec_path_to_pointer",
    "py_has_duplicate_key",
    "strip_msgspec_path",
    "too_deep",
    "unescape_pointer_token",
]

_untyped_encoder = msgspec.json.Encoder()

#: The bytes JSON counts as whitespace (``bytes.strip()`` also takes \x0b and \x0c, which
#: every JSON parser refuses).
JSON_WHITESPACE = b" \t\r\n"

def too_deep(what: str) -> str:
    """The message for a document msgspec stopped reading with a RecursionError."""
    return (f"{what} is nested too deeply to read (more levels than Python's recursion "
            f"limit, {sys.getrecursionlimit()})")


#: Beyond this exponent a number is clamped by :func:`exact_decimal` (``Decimal`` refuses
#: exponents beyond about 10**18).
FAR_EXPONENT = 10**15
_EXPONENT_FORM = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)[eE]([+-]?)([0-9]+)")


def exact_decimal(text: str) -> Decimal:
    """The value of the JSON number ``text``, exactly, as a ``Decimal``.

    An exponent beyond ±:data:`FAR_EXPONENT` (``1e-99999999999999999999``, valid JSON that
    Go and JavaScript read as 0, and ``Decimal()`` refuses) is clamped there: the value
    keeps its sign and its side of every number a float, an int or a store can hold, so it
    equals none of them but 0 (a zero mantissa) and compares with them as it should.
    """
    try:
        return Decimal(text)
    except InvalidOperation:
        m = _EXPONENT_FORM.fullmatch(text)
        if m is None:
            raise
        mantissa, sign, digits = m.groups()
        far = len(digits) > 16 or int(digits) > FAR_EXPONENT
        exponent = FAR_EXPONENT if far else int(digits)
        return Decimal(f"{mantissa}e{'-' if sign == '-' else ''}{exponent}")


#: Untyped decoding that refuses no valid JSON: non-integer numbers become Decimal (a
#: float would fail on 1e400, which a typed Decimal field accepts).
lossless = msgspec.json.Decoder(float_hook=exact_decimal)


def _cannot_tell(data: bytes) -> bool | None:
    return None


#: ``fast_duplicate_key(data)``: True or False when a cheap scan is certain whether some
#: object of the JSON document ``data`` repeats a key, None when it cannot tell (then
#: :func:`has_duplicate_key` decides). The C scan of ``evtools._speedups`` where it was
#: built; without it, always None.
fast_duplicate_key: Callable[[bytes], bool | None] = (
    _cannot_tell if speedups is None else speedups.duplicate_key)


def is_invalid_utf8(e: BaseException) -> bool:
    """Whether msgspec refused a document for invalid UTF-8: a ``UnicodeDecodeError`` before
    msgspec 0.23, a ``msgspec.DecodeError`` saying so since."""
    return isinstance(e, UnicodeDecodeError) or (
        isinstance(e, msgspec.DecodeError) and str(e).startswith("Invalid UTF-8"))


class DuplicateKey(Exception):
    def __init__(self, pointer: str, key: str) -> None:
        super().__init__(key)
        self.pointer = pointer
        self.key = key


def escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def unescape_pointer_token(token: str) -> str:
    """The key an RFC 6901 pointer token names (the inverse of :func:`escape_pointer_token`)."""
    return token.replace("~1", "/").replace("~0", "~")


def has_duplicate_key(data: bytes, decoded: Any = None) -> bool:
    """Whether ``data`` (valid JSON) repeats a key in some object. Exact: the C scan
    (:data:`fast_duplicate_key`) where it can tell, else :func:`py_has_duplicate_key`.
    ``decoded`` may pass ``lossless.decode(data)`` when the caller already has it."""
    found = fast_duplicate_key(data)
    if found is not None:
        return found
    return py_has_duplicate_key(data, decoded)


def py_has_duplicate_key(data: bytes, decoded: Any = None) -> bool:
    """:func:`has_duplicate_key` without the C scan (msgspec and bytes methods do the
    work).

    First, cheapest: when :func:`compact_key_tokens` counts as many keys written as the
    decoded value holds, none repeats. Otherwise: outside strings a colon only separates a
    key from its value, and msgspec's compact encoding writes every colon of the decoded
    value literally. Decoding keeps the last of repeated keys, dropping the others with
    their values, so unless the document spells a colon as ``\\u003a`` (then we take the
    slow exact path), the colon count of the input equals that of the re-encoded value
    exactly when no key was dropped.
    """
    value = lossless.decode(data) if decoded is None else decoded
    written = compact_key_tokens(data)
    if written is not None and written == count_keys(value):
        return False  # as many keys written as decoded (the common case, cheaper still)
    if b"\\u003a" in data or b"\\u003A" in data:  # a colon spelt as an escape
        return find_duplicate_key(data) is not None
    return data.count(b":") != _untyped_encoder.encode(value).count(b":")


_WHITESPACE = b" \t\r\n"  # all that JSON allows between tokens


def compact(data: bytes) -> bytes | None:
    """``data`` without whitespace, or ``None`` when it has a backslash (escapes could hide
    quotes and keys). See :func:`compact_key_tokens` for what it is for."""
    if data.find(92) >= 0:
        return None
    return data.translate(None, _WHITESPACE)


def compact_key_tokens(data: bytes) -> int | None:
    """A fast upper bound on how many keys valid JSON ``data`` writes, or ``None``.

    Without a backslash every quote delimits a string. With whitespace deleted, a key's
    closing quote is followed directly by its colon, so each key written gives one
    ``":``; a string that begins with (whitespace and) a colon gives one more. The count
    is therefore never below the number of keys written, duplicates included, and equals
    it in practice. ``None`` when the payload has a backslash (the caller takes the
    exact, slower path).
    """
    written = compact(data)
    return None if written is None else written.count(b'":')


def count_keys(value: Any) -> int:
    """How many keys a decoded JSON value holds, at every depth."""
    if type(value) is dict:
        n = len(value)
        for v in value.values():
            if type(v) is dict or type(v) is list:
                n += count_keys(v)
        return n
    if type(value) is list:
        return sum(count_keys(v) for v in value if type(v) is dict or type(v) is list)
    return 0


def find_duplicate_key(data: bytes) -> tuple[str, str] | None:
    """``(pointer of the object, key)`` of the first repeated key, or ``None`` (slow)."""
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if not found:
            seen: set[str] = set()
            for k, _ in pairs:
                if k in seen:
                    found.append(k)
                    break
                seen.add(k)
        return dict(pairs)

    json.loads(data, object_pairs_hook=hook)
    if not found:
        return None
    return _locate_duplicate(data, found[0])


def _locate_duplicate(data: bytes, key: str) -> tuple[str, str]:
    """Find the JSON Pointer of the first object that repeats ``key`` (slow, error path)."""
    doc = json.loads(data, object_pairs_hook=lambda pairs: _Pairs(pairs))

    def walk(node: Any, pointer: str) -> str | None:
        if isinstance(node, _Pairs):
            names = [k for k, _ in node.pairs]
            if names.count(key) > 1:
                return pointer
            for k, v in node.pairs:
                hit = walk(v, f"{pointer}/{escape_pointer_token(k)}")
                if hit is not None:
                    return hit
        elif isinstance(node, list):
            for i, v in enumerate(node):
                hit = walk(v, f"{pointer}/{i}")
                if hit is not None:
                    return hit
        return None

    return (walk(doc, "") or ""), key


class _Pairs:
    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


# where msgspec places an error: `` - at `$.items[0]` ``, or `` - at `key` in `$.items` ``
# for a map key (pointed at the map)
_MSGSPEC_PATH = re.compile(r" - at (?:`key` in )?`(\$[^`]*)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
# an unknown field, or a missing one: the error is about that member
_NAMED_FIELD = re.compile(r"Object (?:contains unknown|missing required) field `([^`]*)`")


def msgspec_path_to_pointer(message: str) -> str:
    """Turn the ``$.items[0].price`` suffix of a msgspec error into ``/items/0/price``.

    Errors about the top-level object itself have no suffix and map to ``""``, the
    pointer of the whole document. Map keys (``[...]``) become ``*``. An unknown field is
    pointed at itself (``/items/0/discount``), as the registry's own unknown-field check
    and its ``keep`` policy point at it, and so is a missing field (``/occurred_at``), as
    the drift check names it.
    """
    m = _MSGSPEC_PATH.search(message)
    pointer = "" if not m else "".join(
        "/" + (escape_pointer_token(key) if key else ("*" if index == "..." else index))
        for key, index in _PATH_PART.findall(m.group(1)[1:]))
    named = _NAMED_FIELD.match(message)
    if named:
        pointer += "/" + escape_pointer_token(named.group(1))
    return pointer


def strip_msgspec_path(message: str) -> str:
    """A msgspec error without its location; one about a map key says so."""
    m = _MSGSPEC_PATH.search(message)
    if m is None:
        return message
    return ("map key: " if "`key` in" in m.group() else "") + message[:m.start()]
