"""The fidelity audit and the state diff: what each consumer loses, path by path.

:func:`audit` reads every document exactly (the ``python`` dialect's :func:`loads`, lenient
flavour: invalid UTF-8 bytes kept, duplicate keys counted) and runs it through each
dialect. For a dialect it takes the consumer's in-memory value (``decode``) and the bytes it
writes back (``encode`` of that value; columnar dialects write a whole batch), reads those
bytes exactly again, and compares the three trees in one walk per document and dialect.
Per dialect and JSON path (RFC 6901 pointer, array indices written ``*``) it counts:

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
    ``bool`` only equals a ``bool``; strings compare exactly).
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
``rejected``
    documents the consumer rejects, at path ``""``.

Fields a consumer adds (pandas and polars fill absent columns with nulls) are not counted.
A document that is not JSON at all cannot be compared: it is counted as rejected by the
baseline (a ``python`` row), and as rejected by each dialect that rejects it too.

:func:`read_source` is the only function here that touches files.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from ._json import escape_pointer_token
from .dialects import Dialect, get_dialect
from .dialects.python import (
    SLOW,
    JsonNumber,
    JsonString,
    _quick_loads,
    count_plain_keys,
    dumps,
    loads,
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

__all__ = ["COLUMNS", "AuditResult", "audit", "read_source", "state_diff"]

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
            node = self.kids[key] = _Node(f"{self.path}/{escape_pointer_token(key)}")
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
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(?::\d\d)?(?:\.(\d+))?([Zz]|([+-])(\d\d):?(\d\d))?\Z")
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
    return Decimal(repr(f)) != Decimal(text)


def _str_at_risk(s: str) -> bool:
    n = len(s)
    if 16 <= n <= 40 and s[4] == "-":
        m = _TIMESTAMP.match(s)
        if m:
            frac, _, sign, hh, mm = m.groups()
            if frac is not None and len(frac) > 6:
                return True
            if sign is not None and (hh != "00" or mm != "00"):
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


def _clip(s: str) -> str:
    if len(s) > _EXAMPLE_CHARS:
        s = s[:_EXAMPLE_CHARS - 1] + "…"
    if not s.isascii() and _SURROGATE.search(s):
        s = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    return s


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
    return Decimal(text) == f


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
            return bool(r == c) if tr is int else Decimal(r) == c
        if tc is JsonNumber:
            return Decimal(r) == Decimal(c)
        item = getattr(c, "item", None)  # numpy and torch scalars
        if item is not None and not isinstance(c, str | bytes | dict | list):
            try:
                return _same(r, item())
            except (TypeError, ValueError):
                return False
        return False
    if tr is str or tr is JsonString:
        return (tc is str or tc is JsonString) and str.__eq__(r, c)
    return False


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
        return any(row[k] for row in self.rows
                   for k in ("value_changed", "text_changed", "type_changed", "dropped",
                             "rejected"))

    def to_frame(self) -> pl.DataFrame:
        """The rows as a polars DataFrame with the columns in :data:`COLUMNS`."""
        import polars as pl

        schema: dict[str, Any] = {"dialect": pl.String, "path": pl.String}
        schema.update({k: pl.Int64 for k in _COUNTS})
        schema["examples"] = pl.List(pl.List(pl.String))
        return pl.DataFrame(list(self.rows), schema=schema, orient="row")

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
    from :func:`read_source`) through ``dialects`` (names or instances).

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
    roots = [_Node("") for _ in instances]
    baseline = _Node("")
    counts = [0, 0]  # documents, invalid

    batch: list[tuple[Context | None, bytes]] = []
    for doc in documents:
        item = _as_document(doc)
        if item is None:
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            _audit_batch(batch, instances, roots, baseline, examples, counts)
            batch = []
    if batch:
        _audit_batch(batch, instances, roots, baseline, examples, counts)

    rows: list[dict[str, Any]] = []
    for name, root in zip(names, roots, strict=True):
        rows.extend(_rows(name, root))
    if counts[1] and "python" not in names:
        rows.extend(_rows("python", baseline))
    return AuditResult(rows=tuple(rows), dialects=tuple(names), documents=counts[0],
                       invalid=counts[1], examples=examples)


def _rows(name: str, root: _Node) -> Iterator[dict[str, Any]]:
    for node in root.walk():
        if node.values or node.rejected:
            yield {"dialect": name, "path": node.path, "values": node.values,
                   "at_risk": node.at_risk, "value_changed": node.value_changed,
                   "text_changed": node.text_changed, "type_changed": node.type_changed,
                   "dropped": node.dropped, "rejected": node.rejected,
                   "examples": tuple(node.examples)}


def _audit_batch(batch: list[tuple[Context | None, bytes]], dialects: list[Dialect],
                 roots: list[_Node], baseline: _Node, limit: int, counts: list[int]) -> None:
    """Columnar dialects run on the whole batch first; then one document at a time: read
    it exactly, run the other dialects on it, walk once per dialect. Nothing decoded is
    kept across documents (holding a batch of trees costs more in GC than it saves)."""
    datas = [data for _, data in batch]
    columns = [_outcomes(d, datas) if d.columnar else None for d in dialects]
    shadowed: list[tuple[tuple[str | int, ...], Any]] = []
    work = list(zip(dialects, roots, columns, strict=True))
    for j, (ctx, data) in enumerate(batch):
        counts[0] += 1
        ref: Any = _quick_loads(data)
        escaped = False
        if ref is SLOW:
            escaped = b"\\" in data
            try:
                # Without escapes the duplicate-key check is cheaper after the first walk,
                # which counts the keys anyway.
                ref = loads(data, strict=False, check_duplicates=escaped, shadowed=shadowed)
            except DecodeError as e:
                counts[1] += 1
                _reject(baseline, limit, ctx, data, e.message)
                ref = _MISSING
        check_keys = ref is not _MISSING and not escaped
        for dialect, root, column in work:
            rejection: ConsumerRejected | None = None
            if column is None:
                try:
                    value = dialect.decode(data)
                    written = dialect.encode(value)
                except ConsumerRejected as e:
                    rejection = e
            else:
                outcome = column[j]
                if type(outcome) is tuple:
                    value, written = outcome
                else:
                    rejection = outcome
            if rejection is not None:
                _reject(root, limit, ctx, data, rejection.reason)
                if ref is _MISSING:
                    continue
                n_keys = _visit(ref, root, _GONE, _GONE, limit)
                accepted = False
            else:
                if ref is _MISSING:  # not JSON, yet this consumer took it: nothing to compare
                    continue
                if written == data:
                    w = ref
                else:
                    w = _quick_loads(written)
                    if w is SLOW:
                        try:
                            w = loads(written, strict=False, allow_nonfinite=True,
                                      check_duplicates=False)
                        except DecodeError as e:
                            w = _unreadable(dialect, root, ctx, data, written, e, limit)
                n_keys = _visit(ref, root, value, w, limit)
                accepted = True
            if check_keys:
                check_keys = False
                if n_keys != count_plain_keys(data):  # a key repeats: find the shadowed
                    loads(data, strict=False, shadowed=shadowed)
            if shadowed:
                _count_shadows(root, shadowed, limit, accepted)
        shadowed.clear()


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
            if not head.strip():
                rest = f.read()
                if not rest.strip():
                    raise DecodeError("the file is empty: no JSON document in it", file=name)
                head += rest
            first_line = head.split(b"\n", 1)[0]
            lines_mode = name.lower().endswith(_LINES_SUFFIXES) or (
                not name.lower().endswith(".json") and b"\n" in head.strip()
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
        if b"\\u" not in data:
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
        doc = line.strip()
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
        item = _unwrap(data.strip(), Context(file=name))
        if item is not None:
            yield item
        return
    raws = [bytes(e) for e in elements]
    if not raws or not all(r[:1] == b"{" for r in raws):  # not an array of events
        error = _json_error(data)
        if error is not None:
            raise DecodeError(f"the file is not a JSON document ({error})", file=name,
                              line=_line_of(data, error))
        yield Context(file=name), data.strip()
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


def _children(value: Any) -> Iterable[tuple[str, Any]] | None:
    """The fields of a container-like value, or None for a leaf."""
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


def state_diff(naive_state: Any, typed_state: Any) -> pl.DataFrame:
    """Every field whose final state differs between a naive rebuild and a typed one.

    Both sides may be nested mappings, lists, msgspec Structs or dataclasses; leaves are
    compared exactly (``Decimal("0.1") != 0.1``). Returns a polars DataFrame with columns
    ``path`` (JSON Pointer), ``naive``, ``typed`` (``repr`` of each value, null where the
    field is absent), ``naive_type``, ``typed_type`` and ``difference``: ``value`` (the
    values differ), ``type`` (equal values of different types, e.g. ``5`` and ``5.0``, or a
    ``str`` and a ``str`` enum), ``missing_in_naive`` or ``missing_in_typed``.
    """
    import polars as pl

    rows: list[tuple[str, str | None, str | None, str | None, str | None, str]] = []

    def leaf(path: str, a: Any, b: Any) -> None:
        if not _equal(a, b):
            rows.append((path, repr(a), repr(b), type(a).__name__, type(b).__name__, "value"))
        elif type(a) is not type(b):
            rows.append((path, repr(a), repr(b), type(a).__name__, type(b).__name__, "type"))

    def walk(path: str, a: Any, b: Any) -> None:
        ka, kb = _children(a), _children(b)
        if ka is None or kb is None:
            if (ka is None) != (kb is None):
                rows.append((path, repr(a), repr(b), type(a).__name__, type(b).__name__,
                             "value"))
            else:
                leaf(path, a, b)
            return
        da, db = dict(ka), dict(kb)
        for k, v in da.items():
            sub = f"{path}/{escape_pointer_token(k)}"
            if k in db:
                walk(sub, v, db[k])
            else:
                rows.append((sub, repr(v), None, type(v).__name__, None, "missing_in_typed"))
        for k, v in db.items():
            if k not in da:
                rows.append((f"{path}/{escape_pointer_token(k)}", None, repr(v), None,
                             type(v).__name__, "missing_in_naive"))

    walk("", naive_state, typed_state)
    return pl.DataFrame(rows, schema={"path": pl.String, "naive": pl.String,
                                      "typed": pl.String, "naive_type": pl.String,
                                      "typed_type": pl.String, "difference": pl.String},
                        orient="row")
