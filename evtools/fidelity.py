"""The fidelity audit and the state diff: what each consumer loses, path by path.

:func:`audit` reads every document exactly (the ``python`` dialect's :func:`loads`, lenient
flavour: invalid UTF-8 bytes kept, duplicate keys counted) and runs it through each
dialect. For a dialect it takes the consumer's in-memory value (``decode``) and the bytes it
writes back (``encode`` of that value; columnar dialects write a whole batch), reads those
bytes exactly again, and compares the three trees in one walk per document and dialect.
Per dialect and JSON path (RFC 6901 pointer, array indices written ``*``, so that a key
written ``*`` shares its path with the elements of an array there) it counts:

``values``
    values at that path in the input (containers included), over every valid document.
``at_risk``
    values that are hard to carry: integers with ``|v| > 2**53``; numbers whose decimal value
    does not survive ``float`` (more significant digits than float64 keeps, overflow,
    underflow); strings that are RFC 3339 timestamps with a non-zero UTC offset or more than
    six fractional digits; strings holding invalid Unicode (lone surrogates, invalid UTF-8);
    digit strings with a leading zero (``"007"``); and every earlier occurrence of a
    duplicate key. A property of the input: the same in every dialect's rows.
``value_changed``
    the consumer's in-memory value is not exactly the input value (``int``, ``float`` and
    ``Decimal`` compare exactly, so a float64 ``0.1`` differs from the decimal ``0.1``; a
    ``bool`` only equals a ``bool``; strings compare exactly; a ``null`` held as the
    consumer's own missing value, NaN in a pandas float column, ``NA`` or ``NaT``, is
    unchanged).
``text_changed``
    the token the consumer writes back differs from the input token (``1.0`` -> ``1``,
    ``"a\\/b"`` -> ``"a/b"``), counted independently of ``value_changed``. Keys, key order
    and whitespace are not counted.
``type_changed``
    the JSON type of the written token differs (``int``, ``float``, ``string``, ``bool``,
    ``null``, ``object``, ``array``; ``int`` and ``float`` told apart by the token syntax).
``dropped``
    present in the input, absent from what the consumer writes back. A dropped or
    re-typed container is counted once, at its own path; what is under it is not compared.
    A document the consumer writes nothing for (pandas, for a batch without columns) is
    dropped at path ``""``.
``rejected``
    documents the consumer rejects, at path ``""``.

Fields a consumer adds (pandas and polars fill absent columns with nulls) are not counted.
Paths are RFC 6901 pointers, except that a key holding invalid Unicode (a lone surrogate
escape, or invalid UTF-8 bytes) shows each such code unit as the text ``\\uXXXX``, as the
examples do, so that every output format can be written as UTF-8.
A document that is not JSON at all cannot be compared path by path: it is counted as
rejected by the baseline (a ``python`` row, the strict reference), as rejected by each
dialect that rejects it too, and, for a dialect that takes it anyway (pandas and polars
read ``NaN``), as a value at ``""`` whose text changed when what it wrote back differs.

Speed: the audit reads each document once, exactly, and keeps nothing decoded beyond a
chunk of 256 documents. Per-document dialects run a chunk at a time, so the screens for
backslashes and ``-0`` run once over the chunk's joined text; shapes of document seen
often (the top-level keys of an event type) get a compiled walk (see "compiled plans"),
which counts exactly what the generic walk counts (a property test compares the two).
``benchmarks/bench_audit.py`` measures it against ``json.loads`` + ``json.dumps``.

:func:`loss_by_magnitude` runs the dialects on generated numbers of growing magnitude
(integers by bits, money amounts by significant digits): the data of the loss against
magnitude plot. :func:`read_source` is the only function here that touches files.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
import math
import operator
import os
import random
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import msgspec

from ._diff import ABSENT, is_array, leaf_pairs
from ._json import JSON_WHITESPACE, escape_pointer_token, exact_decimal, is_invalid_utf8
from .dialects import Dialect, get_dialect
from .dialects.python import (
    _DECODER as _EXACT,  # the exact reader's fast decoder (numbers kept as their text)
)
from .dialects.python import (
    _NEG_ZERO,
    SLOW,
    JsonNumber,
    JsonString,
    _has_negative_zero,
    count_plain_keys,
    dumps,
    loads,
    too_deep_to_walk,
)
from .errors import (
    ConsumerRejected,
    Context,
    DecodeError,
    EnvelopeError,
    EvtoolsError,
    InputError,
    UsageError,
)
from .events import RawEvent, from_cloudevent

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "COLUMNS",
    "MAGNITUDE_KINDS",
    "AuditResult",
    "audit",
    "loss_by_magnitude",
    "magnitude_values",
    "read_source",
    "state_diff",
]

log = logging.getLogger(__name__)

#: The columns of :meth:`AuditResult.to_frame`, and the keys of each JSON object.
COLUMNS: tuple[str, ...] = ("dialect", "path", "values", "at_risk", "value_changed",
                            "text_changed", "type_changed", "dropped", "rejected", "examples")
_COUNTS = COLUMNS[2:-1]

Document = bytes | bytearray | memoryview | str | RawEvent | tuple[Context, bytes]

# -- path statistics -------------------------------------------------------------------------


class _Node:
    """The counters of one (dialect, path); children by key, and one child for indices."""

    __slots__ = ("at_risk", "dropped", "examples", "kids", "path", "rejected", "star",
                 "text_changed", "type_changed", "value_changed", "values")

    def __init__(self, path: str) -> None:
        self.path = path
        self.kids: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.values = self.at_risk = self.value_changed = self.text_changed = 0
        self.type_changed = self.dropped = self.rejected = 0
        self.examples: list[tuple[str, str | None]] = []

    def kid(self, key: str) -> _Node:
        node = self.kids.get(key)
        if node is None:
            token = _printable(escape_pointer_token(key))
            node = self.kids[key] = _Node(f"{self.path}/{token}")
        return node

    def star_kid(self) -> _Node:
        if self.star is None:
            self.star = _Node(self.path + "/*")
        return self.star

    def walk(self) -> Iterator[_Node]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.star is not None:
                stack.append(node.star)
            stack.extend(reversed(node.kids.values()))


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_MISSING: Any = _Sentinel("<absent>")  # the consumer has nothing at this path
_GONE: Any = _Sentinel("<not compared>")  # count the input only (rejected, or under a loss)
_NO_DICT: dict[str, Any] = {}
_NO_LIST: tuple[Any, ...] = ()

_MAX_EXACT = 2**53
# An RFC 3339 timestamp at risk: more than six fractional digits, or a UTC offset other
# than +00:00 / -00:00 (``\d`` as in any str pattern: Unicode digits too). One match, no
# groups to inspect: the audit runs it on every timestamp it sees.
_RISKY_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(?::\d\d)?"
    r"(?:\.\d{7,}(?:[Zz]|[+-]\d\d:?\d\d)?|(?:\.\d+)?[+-](?!00:?00)\d\d:?\d\d)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXAMPLE_CHARS = 200


def _num_at_risk(text: str) -> bool:
    """Does float64 fail to carry this decimal (too many digits, overflow, underflow)?"""
    if len(text) <= 16 and "e" not in text and "E" not in text:
        return False  # at most 15 significant digits: always survives a float round trip
    try:
        f = float(text)
    except ValueError:
        return True
    if f - f != 0:  # inf or nan
        return True
    return Decimal(repr(f)) != exact_decimal(text)


def _str_at_risk(s: str) -> bool:
    n = len(s)
    if 16 <= n <= 40 and s[4] == "-" and _RISKY_TIMESTAMP.match(s) is not None:
        return True
    if not s.isascii():
        return _SURROGATE.search(s) is not None
    return n > 1 and s[0] == "0" and s.isdigit()


def _kind(v: Any) -> str:
    t = type(v)
    if t is str or t is JsonString:
        return "string"
    if t is int:
        return "int"
    if t is JsonNumber:
        return "int" if v.is_integer_token else "float"
    if t is bool:
        return "bool"
    if v is None:
        return "null"
    if t is dict:
        return "object"
    if t is list:
        return "array"
    if t is float:
        return "float"
    return t.__name__


def _printable(s: str) -> str:
    """``s`` with each surrogate (a lone ``\\ud800`` escape, or an invalid UTF-8 byte kept
    by ``surrogateescape``) written as the text ``\\uXXXX``: paths and examples must
    encode as UTF-8 in every output format."""
    if not s.isascii() and _SURROGATE.search(s):
        s = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    return s


def _clip(s: str) -> str:
    if len(s) > _EXAMPLE_CHARS:
        s = s[:_EXAMPLE_CHARS - 1] + "…"
    return _printable(s)


def _text(v: Any) -> str:
    """The JSON token of a value read by :func:`loads` (exact for strings it kept plain)."""
    t = type(v)
    if t is str:
        return '"' + v + '"'
    if t is JsonString:
        return v.raw
    if t is JsonNumber:
        return str.__str__(v)
    try:
        return dumps(v).decode("utf-8")
    except EvtoolsError:
        return repr(v)


def _show(v: Any) -> str:
    """An in-memory value, exactly: a float as its full decimal expansion."""
    if v is _MISSING:
        return "(absent)"
    t = type(v)
    if t is float:
        return str(Decimal(v)) if v - v == 0 else repr(v)
    if t in (str, JsonString, JsonNumber, int, bool, dict, list) or v is None:
        return _text(v)
    if isinstance(v, float):  # numpy.float64
        return _show(float(v))
    return repr(v)


def _decimal_equals_float(text: str, f: float) -> bool:
    """Is the decimal ``text`` exactly the float ``f``? A fraction whose last non-zero
    digit is not 5 has no finite binary expansion, so no float equals it: that settles most
    prices without building a Decimal."""
    if "e" not in text and "E" not in text:
        point = text.find(".")
        if point >= 0:
            frac = text[point + 1:].rstrip("0")
            if frac and frac[-1] != "5":
                return False
    return exact_decimal(text) == f


def _same(r: Any, c: Any) -> bool:
    """Exact equality of an input value and a consumer's in-memory value."""
    tr = type(r)
    tc = type(c)
    if tr is tc and tr is not JsonNumber:
        return bool(r == c)
    if tr is bool or tc is bool:
        return False
    if tr is int or tr is JsonNumber:
        if tc is float:
            return bool(r == c) if tr is int else _decimal_equals_float(r, c)
        if tc is int or tc is Decimal:
            return bool(r == c) if tr is int else exact_decimal(r) == c
        if tc is JsonNumber:
            return exact_decimal(r) == exact_decimal(c)
        item = getattr(c, "item", None)  # numpy and torch scalars
        if item is not None and not isinstance(c, str | bytes | dict | list):
            try:
                return _same(r, item())
            except (TypeError, ValueError):
                return False
        return False
    if tr is str or tr is JsonString:
        return (tc is str or tc is JsonString) and str.__eq__(r, c)
    if r is None:
        return _is_null_marker(c)
    return False


def _is_null_marker(c: Any) -> bool:
    """Is ``c`` how its consumer holds a JSON ``null``: NaN in a float column (pandas,
    numpy), pandas' ``NA`` or ``NaT``? The same missing value, not a changed one."""
    if isinstance(c, float):
        return c != c
    pandas = sys.modules.get("pandas")  # only a loaded pandas can have made its markers
    return pandas is not None and (c is pandas.NA or c is pandas.NaT)


def _example(node: _Node, before: str, after: str | None) -> None:
    pair = (_clip(before), None if after is None else _clip(after))
    if pair not in node.examples:
        node.examples.append(pair)


def _risky(v: Any, tv: type) -> bool:
    """Is this leaf at risk (see the module docstring)?"""
    if tv is int:
        return v > _MAX_EXACT or v < -_MAX_EXACT
    if tv is str or tv is JsonString:
        return (len(v) >= 16 or v[:1] == "0" or not v.isascii()) and _str_at_risk(v)
    if tv is JsonNumber:
        return _num_at_risk(v)
    return False


def _visit(r: Any, node: _Node, c: Any, w: Any, limit: int) -> int:
    """Count input value ``r`` at ``node`` against the consumer's in-memory value ``c`` and
    written value ``w`` (``_MISSING`` when absent, ``_GONE`` when not compared).

    Returns the number of object keys in ``r`` (the audit's duplicate-key check). This is
    the audit's hot loop: a leaf that did not change takes an inline fast path (strings,
    small ints, null and booleans; numbers whose text survived), everything else goes to
    ``_leaf``.
    """
    node.values += 1
    tr = type(r)
    if tr is dict:
        n = len(r)
        if w is not _GONE and type(w) is not dict:
            _lost(r, node, w, limit)
            w = _GONE
        if w is _GONE:
            return n + _count_only(r.items(), node, limit)
        kids = node.kids
        cd = c if type(c) is dict else _NO_DICT
        for k, v in r.items():
            try:  # subscripts are cheaper than .get(); a miss is the rare case
                kid = kids[k]
                wv = w[k]
                cv = cd[k]
            except KeyError:
                kid = kids.get(k) or node.kid(k)
                wv = w.get(k, _MISSING)
                cv = cd.get(k, _MISSING)
            tv = type(v)
            if tv is str:
                # only a leading "0", non-ASCII, or a long string with "-" at [4] (a date)
                # can be at risk
                if (v[:1] == "0" or not v.isascii() or (len(v) >= 16 and v[4:5] == "-")) \
                        and _str_at_risk(v):
                    kid.at_risk += 1
                if (wv is v or wv == v) and (cv is v or cv == v) and type(wv) is str \
                        and type(cv) is str:
                    kid.values += 1
                    continue
            elif tv is dict or tv is list:
                n += _visit(v, kid, cv, wv, limit)
                continue
            elif tv is int:
                if v > _MAX_EXACT or v < -_MAX_EXACT:
                    kid.at_risk += 1
                if type(wv) is int and (type(cv) is float or type(cv) is int):
                    # written as an integer, held as a number: the common cases, inline
                    kid.values += 1
                    if cv != v:
                        kid.value_changed += 1
                    if wv != v:
                        kid.text_changed += 1
                    if (cv != v or wv != v) and len(kid.examples) < limit:
                        _example(kid, _text(v), _text(wv) if wv != v else _show(cv))
                    continue
            elif tv is JsonNumber:
                if (len(v) > 16 or "e" in v or "E" in v) and _num_at_risk(v):
                    kid.at_risk += 1
                elif type(wv) is JsonNumber and type(cv) is float and str.__eq__(v, wv):
                    # the text survived; the in-memory float equals it only if it is exact
                    kid.values += 1
                    if not _decimal_equals_float(v, cv):
                        kid.value_changed += 1
                        if len(kid.examples) < limit:
                            _example(kid, str.__str__(v), _show(cv))
                    continue
            elif v is None or tv is bool:
                if wv is v and cv is v:
                    kid.values += 1
                    continue
            elif _risky(v, tv):  # a string written with escapes
                kid.at_risk += 1
            kid.values += 1
            _leaf(v, tv, kid, cv, wv, limit)
        return n
    if tr is list:
        if w is not _GONE and type(w) is not list:
            _lost(r, node, w, limit)
            w = _GONE
        star = node.star or node.star_kid()
        if w is _GONE:
            return _count_only(zip(_REPEAT, r, strict=False), star, limit)
        n = 0
        cl = c if type(c) is list else _NO_LIST
        nc = len(cl)
        nw = len(w)
        for i, v in enumerate(r):
            cv = cl[i] if i < nc else _MISSING
            wv = w[i] if i < nw else _MISSING
            tv = type(v)
            if tv is dict or tv is list:
                n += _visit(v, star, cv, wv, limit)
                continue
            star.values += 1
            if tv is str:
                if len(v) < 16 and v.isascii() and v[:1] != "0":
                    if (wv is v or wv == v) and (cv is v or cv == v) and type(wv) is str \
                            and type(cv) is str:
                        continue
                elif _str_at_risk(v):
                    star.at_risk += 1
            elif _risky(v, tv):
                star.at_risk += 1
            _leaf(v, tv, star, cv, wv, limit)
        return n
    # a leaf at the top of the document
    if _risky(r, tr):
        node.at_risk += 1
    if w is not _GONE:
        _leaf(r, tr, node, c, w, limit)
    return 0


def _item(v: Any, kid: _Node, cv: Any, wv: Any, limit: int) -> int:
    """One object member for a compiled plan whose leaf has an unexpected type: exactly
    what the loop of :func:`_visit` does for one ``(key, value)`` (kept in step with it;
    ``tests/test_fidelity.py`` compares the two walks on random documents)."""
    tv = type(v)
    if tv is dict or tv is list:
        return _visit(v, kid, cv, wv, limit)
    if tv is str:
        if (v[:1] == "0" or not v.isascii() or (len(v) >= 16 and v[4:5] == "-")) \
                and _str_at_risk(v):
            kid.at_risk += 1
        if (wv is v or wv == v) and (cv is v or cv == v) and type(wv) is str \
                and type(cv) is str:
            kid.values += 1
            return 0
    elif tv is int:
        if v > _MAX_EXACT or v < -_MAX_EXACT:
            kid.at_risk += 1
        if type(wv) is int and (type(cv) is float or type(cv) is int):
            kid.values += 1
            if cv != v:
                kid.value_changed += 1
            if wv != v:
                kid.text_changed += 1
            if (cv != v or wv != v) and len(kid.examples) < limit:
                _example(kid, _text(v), _text(wv) if wv != v else _show(cv))
            return 0
    elif tv is JsonNumber:
        if (len(v) > 16 or "e" in v or "E" in v) and _num_at_risk(v):
            kid.at_risk += 1
        elif type(wv) is JsonNumber and type(cv) is float and str.__eq__(v, wv):
            kid.values += 1
            if not _decimal_equals_float(v, cv):
                kid.value_changed += 1
                if len(kid.examples) < limit:
                    _example(kid, str.__str__(v), _show(cv))
            return 0
    elif v is None or tv is bool:
        if wv is v and cv is v:
            kid.values += 1
            return 0
    elif _risky(v, tv):
        kid.at_risk += 1
    kid.values += 1
    _leaf(v, tv, kid, cv, wv, limit)
    return 0


_REPEAT = itertools.repeat(None)


def _count_only(items: Any, node: _Node, limit: int) -> int:
    """Count the input only (``values``, ``at_risk``): nothing to compare it with.
    ``items`` are (key, value) pairs; a key of None means an array element."""
    n = 0
    for k, v in items:
        kid = node if k is None else node.kids.get(k) or node.kid(k)
        tv = type(v)
        if tv is dict:
            kid.values += 1
            n += len(v) + _count_only(v.items(), kid, limit)
        elif tv is list:
            kid.values += 1
            n += _count_only(zip(_REPEAT, v, strict=False), kid.star or kid.star_kid(), limit)
        else:
            kid.values += 1
            if tv is not bool and v is not None and _risky(v, tv):
                kid.at_risk += 1
    return n


def _leaf(r: Any, tr: type, node: _Node, c: Any, w: Any, limit: int) -> None:
    """Compare one leaf (already counted in ``values`` and ``at_risk``)."""
    if w is _MISSING:
        node.dropped += 1
        if len(node.examples) < limit:
            _example(node, _text(r), None)
        return
    changed = text_changed = False
    if c is not r and not _same(r, c):
        node.value_changed += 1
        changed = True
    if w is not r:
        tw = type(w)
        if tw is tr and (tr is str or tr is int):
            same_text = r == w
        elif tr is JsonNumber and tw is JsonNumber:
            same_text = str.__eq__(r, w)
        elif r is None or tr is bool:
            same_text = w is r
        else:
            same_text = _text(r) == _text(w)
        if not same_text:
            node.text_changed += 1
            text_changed = True
            if _kind(r) != _kind(w):
                node.type_changed += 1
    if (changed or text_changed) and len(node.examples) < limit:
        _example(node, _text(r), _text(w) if text_changed else _show(c))


def _lost(r: Any, node: _Node, w: Any, limit: int) -> None:
    """A container the consumer dropped or wrote as something else."""
    if w is _MISSING:
        node.dropped += 1
        after = None
    else:
        node.value_changed += 1
        node.text_changed += 1
        node.type_changed += 1
        after = _text(w)
    if len(node.examples) < limit:
        _example(node, _text(r), after)


def _locate(root: _Node, where: tuple[str | int, ...]) -> _Node:
    node = root
    for part in where:
        node = node.star_kid() if isinstance(part, int) else node.kid(part)
    return node


# -- compiled plans --------------------------------------------------------------------------
#
# Event streams repeat a few document shapes millions of times. For a shape (the top-level
# keys, in order) seen often enough, the walk of :func:`_visit` is compiled into one
# straight-line function, as attrs compiles ``__init__``: each path's node bound once,
# each member fetched by a constant key, each leaf's comparison specialised for the type
# it had in the document the plan was made from. It counts what :func:`_visit` counts:
#
# * first it fetches every member of the input, of the in-memory value and of the written
#   value, and checks that nested objects are objects of the planned size; anything else
#   (a member missing on either side, a consumer that made a nested object something
#   else) returns -1 before any counter moved, and the document takes :func:`_visit`;
# * then it counts. ``values`` of the plan's nodes are deferred (one count per document,
#   added by :meth:`_Plan.flush`); a leaf whose type is not the planned one goes through
#   :func:`_item`, which counts it as the loop of :func:`_visit` would;
# * a document wholly on the plan (no leaf off it) has a known number of string tokens,
#   so its duplicate-key check is one count of '"' in its text.

#: a shape seen this many times gets a plan
_PLAN_AFTER = 4
#: per dialect: shapes counted at most, plans at most; leaves per plan at most
_MAX_SHAPES = 4096
_MAX_PLANS = 256
_MAX_PLAN_LEAVES = 200
#: a plan that sends more than half of its documents back to _visit, once it has sent
#: this many, is dropped (its shape's nested objects vary too much to plan)
_PLAN_TRIAL = 64
#: added to a plan's result when a leaf was off the plan
_OFF_PLAN = 1 << 40

# _str_at_risk for an ASCII string, in one match: a risky timestamp of 16 to 40
# characters, or digits with a leading zero (str.isdigit on ASCII is [0-9]).
_RISKY_ASCII = re.compile(r"(?=[\x00-\x7f]{16,40}\Z)" + _RISKY_TIMESTAMP.pattern
                          + r"|0[0-9]+\Z")

_TEMPLATES: dict[str, str] = {
    "int": """\
if type({v}) is int:
    if {v} > {m} or {v} < -{m}:
        {n}.at_risk += 1
    if type({w}) is int and (type({c}) is float or type({c}) is int):
        d = {c} != {v}
        x = {w} != {v}
        if d or x:
            if d:
                {n}.value_changed += 1
            if x:
                {n}.text_changed += 1
            if len({e}) < limit:
                _example({n}, _text({v}), _text({w}) if x else _show({c}))
    else:
        _leaf({v}, int, {n}, {c}, {w}, limit)
""",
    "str": """\
if type({v}) is str:
    if {v}.isascii():
        if _risky_ascii({v}) is not None:
            {n}.at_risk += 1
    elif _str_at_risk({v}):
        {n}.at_risk += 1
    if not ({w} == {v} and {c} == {v} and type({w}) is str and type({c}) is str):
        _leaf({v}, str, {n}, {c}, {w}, limit)
""",
    "number": """\
if type({v}) is JsonNumber:
    if (len({v}) > 16 or "e" in {v} or "E" in {v}) and _num_at_risk({v}):
        {n}.at_risk += 1
        _leaf({v}, JsonNumber, {n}, {c}, {w}, limit)
    elif type({w}) is JsonNumber and type({c}) is float and str.__eq__({v}, {w}):
        if not _decimal_equals_float({v}, {c}):
            {n}.value_changed += 1
            if len({n}.examples) < limit:
                _example({n}, str.__str__({v}), _show({c}))
    else:
        _leaf({v}, JsonNumber, {n}, {c}, {w}, limit)
""",
    "literal": """\
if {v} is None or type({v}) is bool:
    if not ({w} is {v} and {c} is {v}):
        _leaf({v}, type({v}), {n}, {c}, {w}, limit)
""",
}
# a leaf off the plan: _item counts its value itself
_OFF = """\
else:
    {n}.values -= 1
    k += OFF + _item({v}, {n}, {c}, {w}, limit)
"""
_ANY = """\
{n}.values -= 1
k += OFF + _item({v}, {n}, {c}, {w}, limit)
"""


def _leaf_kind(v: Any) -> str | None:
    t = type(v)
    if t is int:
        return "int"
    if t is str:
        return "str"
    if t is JsonNumber:
        return "number"
    if v is None or t is bool:
        return "literal"
    return None  # arrays, and leaves without a fast path: always through _item


class _Plan:
    """One compiled shape. ``run(r, c, w, limit)`` returns -1 when the document does not
    fit the plan (nothing counted), else the number of object keys in ``r``, plus
    :data:`_OFF_PLAN` when a leaf was off the plan."""

    __slots__ = ("docs", "getters", "keys", "misses", "nodes", "quotes", "run", "shape")

    def __init__(self, sample: dict[str, Any], root: _Node) -> None:
        self.shape = tuple(sample)
        self.getters: dict[str, Any] = {}  # name in the code -> operator.itemgetter
        self.docs = self.misses = 0
        self.nodes: list[_Node] = [root]  # the nodes whose values wait for flush()
        self.run: Any = None
        self.keys = 0  # object keys of a document on the plan
        self.quotes = 0  # '"' in the text of a document on the plan (no backslash)
        fetch: list[str] = []
        count: list[str] = []
        if self._plan(sample, root, "r", "c", "w", fetch, count):
            self._compile(fetch, count)

    def _plan(self, obj: dict[str, Any], node: _Node, r: str, c: str, w: str,
              fetch: list[str], count: list[str]) -> bool:
        """Plan the members of ``obj`` (at ``node``), held in the variables named ``r``,
        ``c`` and ``w`` of the generated code. False when the shape is too big."""
        self.keys += len(obj)
        self.quotes += 2 * len(obj)
        members: list[tuple[int, Any, _Node]] = []
        for key, value in obj.items():
            members.append((len(self.nodes), value, node.kid(key)))
            self.nodes.append(members[-1][2])
        if len(self.nodes) > _MAX_PLAN_LEAVES:
            return False
        if len(members) == 1:
            i = members[0][0]
            literal = repr(str(next(iter(obj))))
            fetch.append(f"v{i} = {r}[{literal}]; c{i} = {c}[{literal}]; w{i} = {w}[{literal}]")
        elif members:  # one C call per side: itemgetter returns them all, or KeyError
            getter = f"G{len(self.getters)}"
            self.getters[getter] = operator.itemgetter(*map(str, obj))
            for side, holder in (("v", r), ("c", c), ("w", w)):
                fetch.append(", ".join(f"{side}{i}" for i, _, _ in members)
                             + f" = {getter}({holder})")
        for i, value, kid in members:
            v, cv, wv = f"v{i}", f"c{i}", f"w{i}"
            if type(value) is dict:
                fetch.append(f"if type({v}) is not dict or len({v}) != {len(value)} or "
                             f"type({cv}) is not dict or type({wv}) is not dict: return -1")
                if not self._plan(value, kid, v, cv, wv, fetch, count):
                    return False
                continue
            kind = _leaf_kind(value)
            names = {"v": v, "c": cv, "w": wv, "n": f"N{i}", "e": f"E{i}",
                     "m": str(_MAX_EXACT)}
            if kind is None:
                count.append(_ANY.format(**names))
            else:
                count.append(_TEMPLATES[kind].format(**names) + _OFF.format(**names))
                if kind == "str":
                    self.quotes += 2
        return True

    def _compile(self, fetch: list[str], count: list[str]) -> None:
        body = [
            "def run(r, c, w, limit):",
            "    if type(c) is not dict or type(w) is not dict:",
            "        return -1",
            "    try:",
            *(f"        {line}" for line in fetch or ["pass"]),
            "    except KeyError:",
            "        return -1",
            "    PLAN.docs += 1",
            f"    k = {self.keys}",
            *(f"    {line}" for block in count for line in block.splitlines()),
            "    return k",
        ]
        namespace: dict[str, Any] = {
            "PLAN": self, "OFF": _OFF_PLAN, "JsonNumber": JsonNumber,
            "_leaf": _leaf, "_item": _item, "_example": _example, "_text": _text,
            "_show": _show, "_str_at_risk": _str_at_risk, "_num_at_risk": _num_at_risk,
            "_risky_ascii": _RISKY_ASCII.match, "_decimal_equals_float": _decimal_equals_float,
            **{f"N{i}": node for i, node in enumerate(self.nodes)},
            **{f"E{i}": node.examples for i, node in enumerate(self.nodes)},
            **self.getters,
        }
        # Built from fixed templates and repr() of the keys only: no input reaches the code.
        exec(compile("\n".join(body), "<evtools.fidelity plan>", "exec"), namespace)
        self.run = namespace["run"]

    def flush(self) -> None:
        """Add the deferred ``values`` counts to the nodes."""
        for node in self.nodes:
            node.values += self.docs
        self.docs = 0


class _Shapes:
    """One dialect's tree of counters and the plans of the shapes it has seen."""

    __slots__ = ("plans", "root", "seen")

    def __init__(self) -> None:
        self.root = _Node("")
        self.plans: dict[tuple[str, ...], _Plan | None] = {}  # None: not plannable
        self.seen: dict[tuple[str, ...], int] = {}

    def consider(self, keys: tuple[str, ...], r: dict[str, Any]) -> None:
        """``r`` (of the shape ``keys``, which has no plan) was walked: plan the shape
        once it is common."""
        if keys in self.plans:
            return
        seen = self.seen.get(keys, 0) + 1
        if seen < _PLAN_AFTER:
            if seen > 1 or len(self.seen) < _MAX_SHAPES:
                self.seen[keys] = seen
            return
        self.seen.pop(keys, None)
        if len(self.plans) < _MAX_PLANS:
            plan = _Plan(r, self.root)
            self.plans[keys] = plan if plan.run is not None else None

    def missed(self, plan: _Plan) -> None:
        """``plan`` did not fit a document (which then took :func:`_visit`)."""
        plan.misses += 1
        if plan.misses >= _PLAN_TRIAL and plan.misses > plan.docs:
            plan.flush()
            self.plans[plan.shape] = None

    def flush(self) -> None:
        for plan in self.plans.values():
            if plan is not None:
                plan.flush()


# -- the audit -------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AuditResult:
    """What :func:`audit` found: one row per (dialect, path), see the module docstring."""

    rows: tuple[dict[str, Any], ...]
    dialects: tuple[str, ...]
    documents: int
    invalid: int = 0
    examples: int = 5

    def __repr__(self) -> str:
        return (f"<AuditResult {self.documents} documents ({self.invalid} not JSON), "
                f"dialects {', '.join(self.dialects)}, {len(self.rows)} rows, "
                f"has_loss={self.has_loss}>")

    @property
    def has_loss(self) -> bool:
        """Did any consumer change, drop or reject anything?"""
        return any(_lossy(row) for row in self.rows)

    def row(self, dialect: str, path: str) -> dict[str, Any]:
        """The counts of one (dialect, path); a path the dialect never saw counts zeros.
        Raises :class:`~evtools.errors.UsageError` for a dialect not in the audit."""
        if dialect not in self.dialects and not (dialect == "python" and self.invalid):
            raise UsageError(f"dialect {dialect!r} was not audited; the audit has "
                             f"{', '.join(self.dialects)}")
        for row in self.rows:
            if row["dialect"] == dialect and row["path"] == path:
                return row
        return {"dialect": dialect, "path": path, **dict.fromkeys(_COUNTS, 0),
                "examples": ()}

    def totals(self) -> dict[str, dict[str, int]]:
        """Per dialect, each count summed over every path."""
        out: dict[str, dict[str, int]] = {}
        for row in self.rows:
            sums = out.setdefault(row["dialect"], dict.fromkeys(_COUNTS, 0))
            for k in _COUNTS:
                sums[k] += row[k]
        return out

    def to_frame(self, *, losses_only: bool = False) -> pl.DataFrame:
        """The rows as a polars DataFrame with the columns in :data:`COLUMNS`;
        ``losses_only`` keeps the rows where something changed, was dropped or rejected."""
        import polars as pl

        schema: dict[str, Any] = {"dialect": pl.String, "path": pl.String}
        schema.update({k: pl.Int64 for k in _COUNTS})
        schema["examples"] = pl.List(pl.List(pl.String))
        rows = [r for r in self.rows if _lossy(r)] if losses_only else list(self.rows)
        return pl.DataFrame(rows, schema=schema, orient="row")

    def examples_frame(self, paths: Sequence[str] | None = None,
                       dialects: Sequence[str] | None = None) -> pl.DataFrame:
        """The examples as a before -> after table: ``dialect``, ``path``, ``before`` (the
        input token) and ``after`` (the token the consumer wrote back when the text
        changed, else the value it held, written out exactly; null when it dropped the
        value). ``paths`` and ``dialects`` select, in the order given."""
        import polars as pl

        records = [{"dialect": row["dialect"], "path": row["path"], "before": before,
                    "after": after}
                   for row in self.rows
                   if (paths is None or row["path"] in paths)
                   and (dialects is None or row["dialect"] in dialects)
                   for before, after in row["examples"]]
        if paths is not None or dialects is not None:
            path_order = {p: i for i, p in enumerate(paths or ())}
            dialect_order = {d: i for i, d in enumerate(dialects or ())}
            records.sort(key=lambda r: (dialect_order.get(r["dialect"], 0),
                                        path_order.get(r["path"], 0)))
        return pl.DataFrame(records, schema={"dialect": pl.String, "path": pl.String,
                                             "before": pl.String, "after": pl.String},
                            orient="row")

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as plain dictionaries, examples as ``[before, after]`` lists."""
        return [{**row, "examples": [list(e) for e in row["examples"]]} for row in self.rows]

    def to_json(self, *, indent: int | None = None) -> str:
        """A JSON array with one object per (dialect, path), keys as in :data:`COLUMNS`."""
        return json.dumps(self.to_records(), ensure_ascii=False, indent=indent)

    def to_csv(self) -> str:
        """CSV with a header; ``examples`` is a JSON array in its cell."""
        import polars as pl

        cells = [json.dumps([list(e) for e in row["examples"]], ensure_ascii=False)
                 for row in self.rows]
        frame = self.to_frame().with_columns(pl.Series("examples", cells, dtype=pl.String))
        buf = io.StringIO()
        frame.write_csv(buf)
        return buf.getvalue()

    def to_html(self, *, title: str = "evtools fidelity audit") -> str:
        """A self-contained HTML page with the table (non-zero losses highlighted)."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        body = []
        for row in self.rows:
            cells = [f"<td>{html.escape(row['dialect'])}</td>",
                     f"<td><code>{html.escape(row['path'] or '(document)')}</code></td>"]
            for k in _COUNTS:
                loss = k not in ("values", "at_risk") and row[k]
                cls = ' class="loss"' if loss else (' class="risk"' if k == "at_risk" and row[k]
                                                    else "")
                cells.append(f'<td{cls}>{row[k]}</td>')
            ex = "<br>".join(
                f"<code>{html.escape(b)}</code> &rarr; "
                + ("<em>absent</em>" if a is None else f"<code>{html.escape(a)}</code>")
                for b, a in row["examples"])
            cells.append(f"<td>{ex}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        summary = (f"{self.documents} documents, {self.invalid} not valid JSON; dialects: "
                   f"{', '.join(self.dialects)}")
        return (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.5em}"
            "table{border-collapse:collapse;font-size:13px}"
            "th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:right}"
            "td:nth-child(1),td:nth-child(2),td:last-child{text-align:left}"
            "th{background:#f0f0f0;position:sticky;top:0}"
            ".loss{background:#f8d0d0;font-weight:bold}.risk{background:#fff0c0}"
            "code{word-break:break-all}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "</body></html>\n"
        )


def _as_document(doc: Any) -> tuple[Context | None, bytes] | None:
    if isinstance(doc, bytes):
        return None, doc
    if isinstance(doc, RawEvent):
        if not doc.is_json:
            log.debug("skipping %s event %s: content type %s", doc.type, doc.id,
                      doc.content_type)
            return None
        return doc.context, doc.data
    if isinstance(doc, bytearray | memoryview):
        return None, bytes(doc)
    if isinstance(doc, str):
        return None, doc.encode("utf-8", "surrogateescape")
    if isinstance(doc, tuple) and len(doc) == 2 and isinstance(doc[1], bytes | bytearray):
        return doc[0], bytes(doc[1])
    raise UsageError(f"audit takes JSON documents as bytes, str or RawEvent, not "
                     f"{type(doc).__name__}")


def _where(ctx: Context | None, data: bytes) -> str:
    snippet = data[:_EXAMPLE_CHARS].decode("utf-8", "replace")
    described = ctx.describe() if ctx is not None else ""
    return f"{described}: {snippet}" if described else snippet


def _reject(root: _Node, limit: int, ctx: Context | None, data: bytes, reason: str) -> None:
    root.rejected += 1
    if len(root.examples) < limit:
        _example(root, _where(ctx, data), reason)


def _outcomes(dialect: Dialect, datas: list[bytes]) -> list[Any]:
    """(in-memory value, written bytes) or ConsumerRejected, per document."""
    both = getattr(dialect, "decode_and_roundtrip_batch", None)
    if both is not None:
        return list(both(datas))
    out: list[Any] = []
    for value in dialect.decode_batch(datas):
        if isinstance(value, ConsumerRejected):
            out.append(value)
            continue
        try:
            out.append((value, dialect.encode(value)))
        except ConsumerRejected as e:
            out.append(e)
    return out


def audit(documents: Iterable[Document], dialects: Sequence[str | Dialect] = ("go", "js"), *,
          examples: int = 5, batch_size: int = 10_000) -> AuditResult:
    """Audit ``documents`` (JSON bytes or str, ``RawEvent``, or ``(Context, bytes)`` pairs
    from :func:`read_source`; or a store, whose events are read with ``read_all()``, its
    snapshots left out) through ``dialects`` (names or instances).

    Columnar dialects (pandas, polars, torch) see ``batch_size`` documents at a time, as a
    user loading that many events would; the others one document at a time.
    """
    if batch_size < 1:
        raise UsageError("batch_size must be at least 1")
    if examples < 0:
        raise UsageError("examples must not be negative")
    instances = [get_dialect(d) if isinstance(d, str) else d for d in dialects]
    if not instances:
        raise UsageError("audit needs at least one dialect")
    names = [d.name for d in instances]
    if len(set(names)) != len(names):
        raise UsageError(f"dialects named twice: {', '.join(names)}")
    shapes = [_Shapes() for _ in instances]
    baseline = _Node("")
    counts = [0, 0]  # documents, invalid

    if callable(getattr(documents, "read_all", None)):  # a store
        from .events import without_snapshots

        documents = without_snapshots(documents.read_all())  # type: ignore[attr-defined]
    try:
        it = iter(documents)
    except TypeError:
        raise UsageError(f"audit takes documents (JSON bytes or str, RawEvents, "
                         f"read_source() pairs) or a store, not "
                         f"{type(documents).__name__}") from None
    ctxs: list[Context | None] = []
    datas: list[bytes] = []
    while True:
        more: list[Any] = list(itertools.islice(it, batch_size - len(datas)))
        if not more:
            break
        kinds = set(map(type, more))
        if len(kinds) == 1 and bytes in kinds:  # the common case, without a call per item
            datas += more
            ctxs += [None] * len(more)
        else:
            for doc in more:
                item = _as_document(doc)
                if item is not None:
                    ctxs.append(item[0])
                    datas.append(item[1])
        if len(datas) >= batch_size:
            _audit_batch(ctxs, datas, instances, shapes, baseline, examples, counts)
            ctxs, datas = [], []
    if datas:
        _audit_batch(ctxs, datas, instances, shapes, baseline, examples, counts)

    rows: list[dict[str, Any]] = []
    for name, shape in zip(names, shapes, strict=True):
        shape.flush()
        rows.extend(_rows(name, shape.root))
    if counts[1] and "python" not in names:
        rows.extend(_rows("python", baseline))
    return AuditResult(rows=tuple(rows), dialects=tuple(names), documents=counts[0],
                       invalid=counts[1], examples=examples)


def _lossy(row: Mapping[str, Any]) -> bool:
    return bool(row["value_changed"] or row["text_changed"] or row["type_changed"]
                or row["dropped"] or row["rejected"])


def _rows(name: str, root: _Node) -> Iterator[dict[str, Any]]:
    for node in root.walk():
        if node.values or node.rejected:
            yield {"dialect": name, "path": node.path, "values": node.values,
                   "at_risk": node.at_risk, "value_changed": node.value_changed,
                   "text_changed": node.text_changed, "type_changed": node.type_changed,
                   "dropped": node.dropped, "rejected": node.rejected,
                   "examples": tuple(node.examples)}


#: documents run through the per-document dialects together, and screened for backslashes
#: and ``-0`` in one pass over their joined text
_CHUNK = 256


def _audit_batch(ctxs: list[Context | None], datas: list[bytes], dialects: list[Dialect],
                 shapes: list[_Shapes], baseline: _Node, limit: int,
                 counts: list[int]) -> None:
    """Columnar dialects run on the whole batch first, the others a chunk at a time; then
    one document at a time: read it exactly, walk it once per dialect. Nothing decoded is
    kept beyond a chunk (holding a batch of trees costs more in GC than it saves)."""
    columns = [_outcomes(d, datas) if d.columnar else None for d in dialects]
    counts[0] += len(datas)
    for start in range(0, len(datas), _CHUNK):
        _audit_chunk(ctxs, datas, start, min(start + _CHUNK, len(datas)), dialects,
                     columns, shapes, baseline, limit, counts)


def _one_by_one(dialect: Dialect, datas: list[bytes]) -> list[Any]:
    """:func:`_outcomes` of a per-document dialect."""
    decode, encode = dialect.decode, dialect.encode
    out: list[Any] = []
    for data in datas:
        try:
            value = decode(data)
            out.append((value, encode(value)))
        except ConsumerRejected as e:
            out.append(e)
    return out


def _plain(texts: list[bytes]) -> bool:
    """True when none of ``texts`` has a backslash or an integer token ``-0``, so that
    msgspec reads each exactly (see :func:`~evtools.dialects.python._quick_loads`).
    One pass over the joined texts: a document boundary can only raise a false alarm."""
    joined = b"\n".join(texts)
    return joined.find(b"\\") < 0 and _NEG_ZERO.search(joined) is None


def _audit_chunk(ctxs: list[Context | None], datas: list[bytes], start: int, end: int,
                 dialects: list[Dialect], columns: list[list[Any] | None],
                 shapes: list[_Shapes], baseline: _Node, limit: int,
                 counts: list[int]) -> None:
    """Documents ``start:end`` of the batch. The exact reading is
    :func:`~evtools.dialects.python._quick_loads` inlined, its screens done per chunk
    (:func:`_plain`), with ``loads`` for the rest; a document whose top-level keys have a
    plan is walked by it (see "compiled plans" above)."""
    part = datas[start:end]
    work = []
    for d, s, column in zip(dialects, shapes, columns, strict=True):
        outcomes = column[start:end] if column is not None else _one_by_one(d, part)
        written_plain = _plain([o[1] for o in outcomes if type(o) is tuple])
        work.append((d, s, s.root, s.plans, outcomes, written_plain))
    shadowed: list[tuple[tuple[str | int, ...], Any]] = []
    read = _EXACT.decode
    neg_zero = _NEG_ZERO.search  # the regex of _has_negative_zero, without the call
    data_plain = _plain(part)
    for j in range(end - start):
        data = part[j]
        ref: Any = SLOW
        if data_plain:
            escaped = False
            try:
                ref = read(data)
            except (msgspec.MsgspecError, ValueError, RecursionError):
                ref = SLOW
        else:
            escaped = data.find(b"\\") >= 0  # (find is faster than `in` for one byte)
            if not escaped:
                try:
                    ref = read(data)
                except (msgspec.MsgspecError, ValueError, RecursionError):
                    ref = SLOW
                else:
                    if neg_zero(data) is not None and _has_negative_zero(data):
                        ref = SLOW
        if ref is SLOW:
            try:
                # Without escapes the duplicate-key check is cheaper after the first walk,
                # which counts the keys anyway.
                ref = loads(data, strict=False, check_duplicates=escaped, shadowed=shadowed)
            except DecodeError as e:
                counts[1] += 1
                _reject(baseline, limit, ctxs[start + j], data, e.message)
                ref = _MISSING
        if ref is not _MISSING:
            too_deep = too_deep_to_walk(data, ref, "the audit")
            if too_deep:
                counts[1] += 1
                _reject(baseline, limit, ctxs[start + j], data, too_deep)
                ref = _MISSING
        check_keys = ref is not _MISSING and not escaped
        keys = tuple(ref) if type(ref) is dict else None
        for dialect, shape, root, plans, outcomes, written_plain in work:
            quotes = -1  # set when the document was wholly on a plan
            outcome = outcomes[j]
            if type(outcome) is not tuple:
                _reject(root, limit, ctxs[start + j], data, outcome.reason)
                if ref is _MISSING:
                    continue
                n_keys = _visit(ref, root, _GONE, _GONE, limit)
                accepted = False
            else:
                value, written = outcome
                if ref is _MISSING:  # not JSON, yet this consumer took it: only the text
                    _lenient(root, limit, ctxs[start + j], data, written)
                    continue
                if written == data:
                    w = ref
                elif not written.strip(JSON_WHITESPACE):
                    # wrote nothing for it (pandas, for a frame without columns): the
                    # document is dropped, not rewritten as something that is not JSON
                    w = _MISSING
                else:
                    w = SLOW
                    if written_plain:
                        try:
                            w = read(written)
                        except (msgspec.MsgspecError, ValueError, RecursionError):
                            w = SLOW
                    elif written.find(b"\\") < 0:
                        try:
                            w = read(written)
                        except (msgspec.MsgspecError, ValueError, RecursionError):
                            w = SLOW
                        else:
                            if neg_zero(written) is not None \
                                    and _has_negative_zero(written):
                                w = SLOW
                    if w is SLOW:
                        try:
                            w = loads(written, strict=False, allow_nonfinite=True,
                                      check_duplicates=False)
                        except DecodeError as e:
                            w = _unreadable(dialect, root, ctxs[start + j], data, written, e,
                                            limit)
                plan = plans.get(keys) if keys is not None and w is not _MISSING else None
                if plan is None:
                    n_keys = _visit(ref, root, value, w, limit)
                    if keys is not None:
                        shape.consider(keys, ref)
                else:
                    n_keys = plan.run(ref, value, w, limit)
                    if n_keys == plan.keys:
                        quotes = plan.quotes
                    elif n_keys >= 0:
                        n_keys %= _OFF_PLAN
                    else:
                        shape.missed(plan)
                        n_keys = _visit(ref, root, value, w, limit)
                accepted = True
            if check_keys:
                check_keys = False
                # a key repeats: find the shadowed occurrences
                if (data.count(b'"') != quotes if quotes >= 0
                        else n_keys != count_plain_keys(data)):
                    loads(data, strict=False, shadowed=shadowed)
            if shadowed:
                _count_shadows(root, shadowed, limit, accepted)
        shadowed.clear()


def _lenient(root: _Node, limit: int, ctx: Context | None, data: bytes,
             written: bytes) -> None:
    """A consumer took a document that is not JSON (``NaN``, a trailing comma...): what it
    wrote back is compared as text, at the document's root."""
    root.values += 1
    if written != data:
        root.text_changed += 1
        if len(root.examples) < limit:
            _example(root, _where(ctx, data), written[:_EXAMPLE_CHARS].decode("utf-8",
                                                                              "replace"))


def _unreadable(dialect: Dialect, root: _Node, ctx: Context | None, data: bytes,
                written: bytes, error: DecodeError, limit: int) -> Any:
    """The consumer wrote something that is not JSON: one text change for the document."""
    log.warning("%s wrote something that is not JSON (%s): %r", dialect.name, error.message,
                written[:80])
    root.text_changed += 1
    if len(root.examples) < limit:
        _example(root, _where(ctx, data), repr(written))
    return _GONE


def _count_shadows(root: _Node, shadow: list[tuple[tuple[str | int, ...], Any]], limit: int,
                   accepted: bool) -> None:
    """Earlier occurrences of a repeated key: every modelled consumer keeps the last."""
    for where, value in shadow:
        node = _locate(root, where)
        node.values += 1
        node.at_risk += 1
        if accepted:
            node.dropped += 1
            if len(node.examples) < limit:
                _example(node, _text(value), None)


# -- loss against magnitude ----------------------------------------------------------------

#: the number kinds :func:`loss_by_magnitude` generates
MAGNITUDE_KINDS: tuple[str, ...] = ("integer", "decimal")


def magnitude_values(kind: str, magnitude: int, n: int, *, seed: int = 0) -> list[str]:
    """The ``n`` JSON number tokens :func:`loss_by_magnitude` audits for one step: random
    (seeded per step, so each step is the same whatever else is asked for) integers in
    ``[2**(magnitude-1), 2**magnitude)``, or amounts with cents and ``magnitude``
    significant digits (``0.07``, ``1.23``, ..., ``1234567.89``)."""
    if kind not in MAGNITUDE_KINDS:
        raise UsageError(f"unknown magnitude kind {kind!r}; choose from "
                         f"{', '.join(MAGNITUDE_KINDS)}")
    rng = random.Random(f"{seed}:{kind}:{magnitude}")
    if kind == "integer":
        low = 1 << (magnitude - 1)
        return [str(low + rng.randrange(low)) for _ in range(n)]
    low = 10 ** (magnitude - 1)
    out = []
    for _ in range(n):
        units = low + rng.randrange(9 * low)
        out.append(f"{units // 100}.{units % 100:02d}")
    return out


def _held_error(held: Any, exact: Fraction) -> float | None:
    """|held - exact| as a float; None when ``held`` is not a number."""
    if isinstance(held, bool):
        return None
    if type(held) is JsonNumber:  # the exact baseline keeps a number's text
        held = held.to_decimal()
    if not isinstance(held, int | float | Decimal | Fraction):
        item = getattr(held, "item", None)  # numpy and torch scalars
        if item is None:
            return None
        held = item()
        if isinstance(held, bool) or not isinstance(held, int | float):
            return None
    try:
        return float(abs(Fraction(held) - exact))
    except (OverflowError, ValueError):  # an infinity or NaN
        return math.inf


def loss_by_magnitude(dialects: Sequence[str | Dialect] = ("go", "js", "torch"), *,
                      kinds: Sequence[str] = MAGNITUDE_KINDS, per_step: int = 1000,
                      seed: int = 0, int_bits: Iterable[int] = range(48, 65),
                      decimal_digits: Iterable[int] = range(1, 21)) -> pl.DataFrame:
    """What each consumer does to numbers as they grow, measured by running the dialects.

    For each magnitude step it generates ``per_step`` random numbers
    (:func:`magnitude_values`):

    ``integer``
        for each ``b`` in ``int_bits`` (1 to 64), integers in ``[2**(b-1), 2**b)``;
    ``decimal``
        for each ``k`` in ``decimal_digits`` (1 to 40), money amounts with cents and ``k``
        significant digits (``0.07``, ``1.23``, ..., ``1234567.89``);

    writes each as the document ``{"v": <number>}`` and audits the step through every
    dialect (a columnar dialect sees one step as one batch), then decodes it once more
    to measure how far the value the consumer holds is from the exact one.

    Returns a polars DataFrame, one row per (dialect, kind, magnitude): the audit counts
    of ``/v`` (``values``, ``at_risk``, ``value_changed``, ``text_changed``,
    ``rejected``), the same as fractions of ``values`` (``changed_fraction``,
    ``text_changed_fraction``, ``rejected_fraction``), and ``median_abs_error``,
    ``max_abs_error``, ``max_rel_error``: exact ``|held - input|`` over the values the
    consumer accepted (null when it accepted none).
    """
    import polars as pl

    if per_step < 1:
        raise UsageError("per_step must be at least 1")
    unknown = [k for k in kinds if k not in MAGNITUDE_KINDS]
    if unknown or not kinds:
        raise UsageError(f"unknown magnitude kind {unknown[0] if unknown else ''!r}; "
                         f"choose from {', '.join(MAGNITUDE_KINDS)}")
    steps = {"integer": list(int_bits), "decimal": list(decimal_digits)}
    bounds = {"integer": (1, 64), "decimal": (1, 40)}
    for kind in kinds:
        lo, hi = bounds[kind]
        bad = [m for m in steps[kind] if not lo <= m <= hi]
        if bad or not steps[kind]:
            raise UsageError(f"{kind} magnitudes must be {lo} to {hi}, got "
                             f"{bad[0] if bad else 'none'}")
    instances = [get_dialect(d) if isinstance(d, str) else d for d in dialects]
    if not instances:
        raise UsageError("loss_by_magnitude needs at least one dialect")
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        for magnitude in steps[kind]:
            tokens = magnitude_values(kind, magnitude, per_step, seed=seed)
            docs = [f'{{"v":{t}}}'.encode() for t in tokens]
            result = audit(docs, instances, examples=0, batch_size=len(docs))
            exact = [Fraction(t) for t in tokens]
            for dialect in instances:
                counts = {r["path"]: r for r in result.rows if r["dialect"] == dialect.name}
                v = counts.get("/v", {})
                rejected = counts.get("", {}).get("rejected", 0)
                errors = []
                for held, want in zip(dialect.decode_batch(docs), exact, strict=True):
                    if isinstance(held, dict):
                        error = _held_error(held.get("v"), want)
                        if error is not None:
                            errors.append((error, error / float(want)))
                values = v.get("values", 0)
                abs_errors = sorted(e for e, _ in errors)
                rows.append({
                    "dialect": dialect.name, "kind": kind, "magnitude": magnitude,
                    "values": values, "at_risk": v.get("at_risk", 0),
                    "value_changed": v.get("value_changed", 0),
                    "text_changed": v.get("text_changed", 0), "rejected": rejected,
                    "changed_fraction": v.get("value_changed", 0) / values if values else None,
                    "text_changed_fraction": (v.get("text_changed", 0) / values
                                              if values else None),
                    "rejected_fraction": rejected / len(docs),
                    "median_abs_error": (abs_errors[len(abs_errors) // 2]
                                         if abs_errors else None),
                    "max_abs_error": abs_errors[-1] if abs_errors else None,
                    "max_rel_error": max(r for _, r in errors) if errors else None,
                })
    schema: dict[str, Any] = {"dialect": pl.String, "kind": pl.String, "magnitude": pl.Int64}
    schema.update({k: pl.Int64 for k in ("values", "at_risk", "value_changed",
                                         "text_changed", "rejected")})
    schema.update({k: pl.Float64 for k in ("changed_fraction", "text_changed_fraction",
                                           "rejected_fraction", "median_abs_error",
                                           "max_abs_error", "max_rel_error")})
    return pl.DataFrame(rows, schema=schema, orient="row")


# -- reading sources -------------------------------------------------------------------------

_LINES_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")


def read_source(path: str | os.PathLike[str]) -> Iterator[tuple[Context, bytes]]:
    """The JSON documents of a file, each with where it came from.

    * ``.json``: one document; when its top level is an array of objects, each element is
      a document. A CloudEvents envelope (an object with ``specversion``) contributes its
      ``data``.
    * ``.jsonl`` / ``.ndjson``: one document per line (blank lines skipped), envelopes
      unwrapped the same way.
    * any other name: JSON lines when the first line is a whole document and more lines
      follow, else one JSON document.

    Raises :class:`~evtools.errors.DecodeError` (an ``InputError``) naming the file and line
    for an empty file, text that is not JSON, or a truncated file, and
    :class:`~evtools.errors.InputError` when the file cannot be read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            head = f.read(1 << 16)
            if not head.strip(JSON_WHITESPACE):
                rest = f.read()
                if not rest.strip(JSON_WHITESPACE):
                    raise DecodeError("the file is empty: no JSON document in it", file=name)
                head += rest
            first_line = head.split(b"\n", 1)[0]
            lines_mode = name.lower().endswith(_LINES_SUFFIXES) or (
                not name.lower().endswith(".json") and b"\n" in head.strip(JSON_WHITESPACE)
                and _valid_json(first_line))
            f.seek(0)
            if lines_mode:
                yield from _read_lines(f, name)
            else:
                yield from _read_document(f.read(), name)
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}", file=name) from e


def _valid_json(data: bytes) -> bool:
    return _json_error(data) is None


def _json_error(data: bytes) -> str | None:
    """Why ``data`` is not one JSON document, or ``None``. Invalid UTF-8 inside strings,
    duplicate keys and deep nesting are the audit's business, not the reader's."""
    try:
        msgspec.json.decode(data)
        return None
    except msgspec.ValidationError:
        return None
    except UnicodeDecodeError:
        try:
            loads(data, strict=False, keep_text=False, check_duplicates=False)
            return None
        except DecodeError as e:
            return e.message
    except RecursionError:
        return None
    except msgspec.DecodeError as e:
        if b"\\u" not in data and not is_invalid_utf8(e):
            return str(e)
        try:
            loads(data, strict=False, keep_text=False, check_duplicates=False)
            return None
        except DecodeError as e2:
            return e2.message


def _line_of(data: bytes, message: str) -> int | None:
    m = _BYTE_OFFSET.search(message)
    return data.count(b"\n", 0, int(m.group(1))) + 1 if m else None


def _unwrap(doc: bytes, ctx: Context) -> tuple[Context, bytes] | None:
    """The payload of a CloudEvents envelope, or the document itself."""
    if b'"specversion"' not in doc:
        return ctx, doc
    try:
        probe = msgspec.json.decode(doc)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return ctx, doc
    if not isinstance(probe, dict) or "specversion" not in probe:
        return ctx, doc
    try:
        # the reader needs no stream; "" only stands in for a missing evstream extension
        event = from_cloudevent(doc, stream="", version=0, where=ctx)
    except EnvelopeError as e:
        if e.context.stream == "":
            e.context = replace(e.context, stream=None)
        raise
    if not event.is_json or not event.data:
        log.debug("%s: envelope without JSON data, skipped", ctx.describe())
        return None
    where = ctx.merge(Context(stream=event.stream or None,
                              version=event.version if event.stream else None,
                              event_type=event.type))
    return where, event.data


def _read_lines(f: io.BufferedReader, name: str) -> Iterator[tuple[Context, bytes]]:
    count = 0
    for number, line in enumerate(f, 1):
        doc = line.strip(JSON_WHITESPACE)
        if not doc:
            continue
        error = _json_error(doc)
        if error is not None:
            truncated = not line.endswith(b"\n")  # only the last line can lack one
            what = "the file is truncated: the last line is not a whole JSON document" \
                if truncated else "line is not a JSON document"
            raise DecodeError(f"{what} ({error})", file=name, line=number)
        item = _unwrap(doc, Context(file=name, line=number))
        if item is not None:
            count += 1
            yield item
    if not count:
        log.info("%s: no JSON documents", name)


def _read_document(data: bytes, name: str) -> Iterator[tuple[Context, bytes]]:
    try:
        elements = msgspec.json.decode(data, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        elements = None  # valid JSON, but not an array
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        elements = None
    if elements is None:
        error = _json_error(data)
        if error is not None:
            if "truncated" in error:
                raise DecodeError(f"the file is truncated ({error})", file=name,
                                  line=data.rstrip().count(b"\n") + 1)
            raise DecodeError(f"the file is not a JSON document ({error})", file=name,
                              line=_line_of(data, error))
        item = _unwrap(data.strip(JSON_WHITESPACE), Context(file=name))
        if item is not None:
            yield item
        return
    raws = [bytes(e) for e in elements]
    if not raws or not all(r[:1] == b"{" for r in raws):  # not an array of events
        error = _json_error(data)
        if error is not None:
            raise DecodeError(f"the file is not a JSON document ({error})", file=name,
                              line=_line_of(data, error))
        yield Context(file=name), data.strip(JSON_WHITESPACE)
        return
    offset = 0
    line = 1
    for i, raw in enumerate(raws):
        found = data.find(raw, offset)
        if found >= 0:
            line += data.count(b"\n", offset, found)
            offset = found
        error = _json_error(raw)
        if error is not None:
            raise DecodeError(f"array element is not a JSON document ({error})", file=name,
                              line=line, path=f"/{i}")
        item = _unwrap(raw, Context(file=name, line=line, path=f"/{i}"))
        if item is not None:
            yield item


# -- the state diff --------------------------------------------------------------------------


def _children(value: Any, held: bool = False) -> Iterable[tuple[str, Any]] | None:
    """The fields of a container-like value, or None for a leaf. An aggregate gives its
    ``to_state()``, or with ``held`` the values its state fields hold."""
    state_fields = getattr(value, "state_fields", None)
    if held and callable(state_fields) and not isinstance(value, type):
        return ((f, getattr(value, f)) for f in state_fields())
    to_state = getattr(value, "to_state", None)
    if callable(to_state) and not isinstance(value, type):  # an Aggregate: its state
        value = to_state()
    if isinstance(value, Mapping):
        return ((str(k), v) for k, v in value.items())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return ((str(i), v) for i, v in enumerate(value))
    if isinstance(value, msgspec.Struct):
        return ((f, getattr(value, f)) for f in value.__struct_fields__)
    if is_dataclass(value) and not isinstance(value, type):
        return ((f.name, getattr(value, f.name)) for f in fields(value))
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN on both sides is the same state
    try:
        return bool(a == b)
    except Exception:  # comparing foreign objects must not crash the diff
        return False


def state_diff(naive_state: Any, typed_state: Any, *, held: bool = False) -> pl.DataFrame:
    """Every field whose final state differs between a naive rebuild and a typed one.

    Both sides may be nested mappings, lists, msgspec Structs, dataclasses or aggregates;
    leaves are compared exactly (``Decimal("0.1") != 0.1``). An aggregate is compared by
    its ``to_state()`` (plain values: enums and timestamps as their text), or with
    ``held=True`` by the values it holds (enums, ``Decimal``, ``Timestamp``, ``UUID``,
    value objects), which shows what a naive consumer holds as plain strings instead.

    Returns a polars DataFrame with columns ``path`` (JSON Pointer), ``naive``, ``typed``
    (``repr`` of each value, null where the field is absent), ``naive_type``,
    ``typed_type`` and ``difference``: ``value`` (the values differ), ``type`` (equal
    values of different types, e.g. ``5`` and ``5.0``, or a ``str`` and a ``str`` enum),
    ``missing_in_naive`` or ``missing_in_typed``.
    """
    import polars as pl

    rows: list[tuple[str, str | None, str | None, str | None, str | None, str]] = []

    def children(value: Any) -> Iterable[tuple[str, Any]] | None:
        return _children(value, held)

    for path, a, b in leaf_pairs(naive_state, typed_state, children):
        if b is ABSENT:
            rows.append((path, repr(a), None, type(a).__name__, None, "missing_in_typed"))
        elif a is ABSENT:
            rows.append((path, None, repr(b), None, type(b).__name__, "missing_in_naive"))
        elif (children(a) is None) != (children(b) is None) \
                or is_array(a) != is_array(b) or not _equal(a, b):
            rows.append((path, repr(a), repr(b), type(a).__name__, type(b).__name__, "value"))
        elif type(a) is not type(b):
            rows.append((path, repr(a), repr(b), type(a).__name__, type(b).__name__, "type"))
    return pl.DataFrame(rows, schema={"path": pl.String, "naive": pl.String,
                                      "typed": pl.String, "naive_type": pl.String,
                                      "typed_type": pl.String, "difference": pl.String},
                        orient="row")
