"""The fidelity audit, the source reader and the state diff.

Expected counts on the real corpus files are computed here, independently, with a few
lines of stdlib code over ``json.loads``; never pasted from the tool's own output.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import math
import sys
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtools import fidelity, orders
from evtools._json import exact_decimal
from evtools.datagen import generate
from evtools.dialects import Dialect, get_dialect
from evtools.dialects.python import JsonNumber
from evtools.errors import (
    ConsumerRejected,
    Context,
    DecodeError,
    EnvelopeError,
    InputError,
    UsageError,
)
from evtools.events import RawEvent, to_cloudevent
from evtools.fidelity import (
    COLUMNS,
    AuditResult,
    audit,
    loss_by_magnitude,
    magnitude_values,
    read_source,
    state_diff,
)
from evtools.rehydration import naive_rehydrate, rehydrate

from .strategies import json_values

CORPUS = Path(__file__).parent / "data" / "corpus"
COUNTS = ("values", "at_risk", "value_changed", "text_changed", "type_changed", "dropped",
          "rejected")


def _row(result: AuditResult, path: str, dialect: str | None = None) -> dict[str, Any]:
    return next(r for r in result.rows
                if r["path"] == path and (dialect is None or r["dialect"] == dialect))


def _total(result: AuditResult, column: str, dialect: str | None = None) -> int:
    return sum(r[column] for r in result.rows if dialect is None or r["dialect"] == dialect)


# -- small dialects with known behaviour ------------------------------------------------------


class FloatsDialect(Dialect):
    """Every number a float, written with Python's repr: like a consumer without ints."""

    name: ClassVar[str] = "floats"

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data, parse_int=float)
        except ValueError as e:
            raise self.reject(str(e)) from e

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class ForgetfulDialect(Dialect):
    """Drops the key "secret" wherever it is, and rejects documents mentioning "poison"."""

    name: ClassVar[str] = "forgetful"

    def decode(self, data: bytes) -> Any:
        if b"poison" in data:
            raise self.reject("poisoned")
        return self._strip(json.loads(data))

    def _strip(self, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: self._strip(x) for k, x in v.items() if k != "secret"}
        if isinstance(v, list):
            return [self._strip(x) for x in v]
        return v

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


# -- the audit on small inputs ----------------------------------------------------------------


def test_the_exact_baseline_loses_nothing() -> None:
    docs = [b'{"id":9007199254740993,"p":12.30,"s":"a\\/b","n":null,"l":[1,-0,{"x":true}]}',
            b'{"id":1,"p":1e400}']
    result = audit(docs, ["python"])
    assert not result.has_loss
    assert result.documents == 2 and result.invalid == 0
    assert _row(result, "/id")["values"] == 2 and _row(result, "/l/*")["values"] == 3
    assert _row(result, "/l/*/x")["values"] == 1
    assert _row(result, "")["values"] == 2


def test_value_and_text_changes_are_counted_independently() -> None:
    big_even = 2**60  # a float64 holds it exactly, but repr writes 1.152921504606847e+18
    big_odd = 2**53 + 1  # rounds to 2**53 as a float64
    docs = [json.dumps({"n": n}).encode() for n in (1, big_even, big_odd)]
    result = audit(docs, [FloatsDialect()])
    n = _row(result, "/n")
    assert n["values"] == 3 and n["at_risk"] == 2
    assert n["value_changed"] == 1  # only 2**53 + 1 differs in memory
    assert n["text_changed"] == 3 and n["type_changed"] == 3  # 1 -> 1.0 and the others
    assert ("9007199254740993", "9007199254740992.0") in n["examples"]


def test_decimals_compare_exactly_with_binary_floats() -> None:
    result = audit([b'{"a":0.1,"b":0.5,"c":12.30,"d":1.0000000000000001}'], [FloatsDialect()])
    assert _row(result, "/a")["value_changed"] == 1  # 0.1 is not a binary fraction
    assert _row(result, "/a")["text_changed"] == 0
    assert _row(result, "/b")["value_changed"] == 0
    assert _row(result, "/c")["value_changed"] == 1 and _row(result, "/c")["text_changed"] == 1
    d = _row(result, "/d")
    assert (d["at_risk"], d["value_changed"], d["text_changed"]) == (1, 1, 1)
    assert _row(result, "/a")["examples"][0] == \
        ("0.1", "0.1000000000000000055511151231257827021181583404541015625")


@pytest.mark.parametrize("dialect", ["go", "js", "pandas", "python"])
def test_numbers_with_exponents_beyond_any_decimal_are_audited(dialect: str) -> None:
    """``1e-99999999999999999999`` is JSON (Go and JavaScript read 0); ``Decimal()`` refuses
    its exponent, and the audit had ended in an InvalidOperation traceback."""
    docs = [b'{"a":1e-99999999999999999999,"b":0e999999999999999999999,'
            b'"c":-1.5e-99999999999999999999999999999999999999999999999999999999999}']
    result = audit(docs, [get_dialect(dialect)])
    assert _row(result, "/a")["at_risk"] == 1 and _row(result, "/b")["at_risk"] == 0
    if dialect != "python":  # the exact reference keeps the text; the others read 0
        assert _row(result, "/a")["value_changed"] == 1
        assert _row(result, "/b")["value_changed"] == 0  # a zero mantissa: 0 it is
        assert _row(result, "/c")["value_changed"] == 1


def test_json_numbers_beyond_any_decimal_compare_by_sign_and_zero() -> None:
    tiny, huge, zero = (JsonNumber(t) for t in ("1e-99999999999999999999",
                                                "-2E+99999999999999999999", "0.0e-9" + "9" * 30))
    assert tiny != 0 and tiny > 0 and tiny < 5e-324 and tiny != JsonNumber("1e-1000")
    assert huge < -1.7e308 and huge != float("-inf") and not huge > 0
    assert zero == 0 and zero == 0.0 and not zero
    assert exact_decimal("1e-5") == Decimal("0.00001")  # within range: Decimal itself
    with pytest.raises(ArithmeticError):
        exact_decimal("1e-9x")


def test_dropped_fields_and_rejected_documents() -> None:
    docs = [b'{"a":1,"secret":{"k":2}}', b'{"a":2,"poison":true}', b'[{"secret":3}]']
    result = audit(docs, [ForgetfulDialect()], examples=1)
    secret = _row(result, "/secret")
    assert secret["dropped"] == 1 and secret["values"] == 1
    assert secret["examples"] == (('{"k":2}', None),)
    assert _row(result, "/secret/k")["dropped"] == 0  # counted once, at the container
    assert _row(result, "/*/secret")["dropped"] == 1
    root = _row(result, "")
    assert root["rejected"] == 1 and root["values"] == 3
    assert root["examples"] == (('{"a":2,"poison":true}', "poisoned"),)
    # the rejected document's values still count as input
    assert _row(result, "/poison")["values"] == 1 and _row(result, "/poison")["dropped"] == 0


def test_at_risk_rules() -> None:
    doc = json.dumps({
        "ints": [2**53, 2**53 + 1, -(2**53) - 1],
        "decimals": ["x"],
        "ts": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00+00:00",
               "2024-01-01T00:00:00.123456Z", "2024-01-01T00:00:00.1234567Z"],
        "codes": ["007", "0", "70", "0x1"],
    }).replace('["x"]', "[0.1, 0.30000000000000004, 0.1000000000000000055511, 1e400, 1e-400]")
    result = audit([doc.encode(), b'["\\ud800", "\xff"]'], ["python"])
    assert _row(result, "/ints/*")["at_risk"] == 2
    assert _row(result, "/decimals/*")["at_risk"] == 3
    assert _row(result, "/ts/*")["at_risk"] == 2
    assert _row(result, "/codes/*")["at_risk"] == 1
    assert _row(result, "/*")["at_risk"] == 2  # invalid Unicode
    assert _row(result, "", "python")["rejected"] == 1  # the exact baseline refuses \xff


def test_repeated_keys_count_the_shadowed_occurrences() -> None:
    docs = [b'{"a":1,"a":2,"b":{"c":"x","c":"y"}}', b'{"a":"\\/","a":"z"}']
    result = audit(docs, [FloatsDialect(), "python"])
    a = _row(result, "/a", "floats")
    assert a["values"] == 4 and a["at_risk"] == 2 and a["dropped"] == 2
    assert _row(result, "/b/c", "floats")["dropped"] == 1
    assert _row(result, "", "python")["rejected"] == 2  # strict: duplicates are refused
    assert _row(result, "/a", "python")["dropped"] == 0


def test_repeated_keys_are_found_whatever_the_spacing() -> None:
    docs = [b'{"a" : 1, "a" : 2}', b'{\n  "a": 1,\n  "b": {"c": 1, "c"\t: 2}\n}',
            b'{"a" : 1, "b" : 2}']
    result = audit(docs, [FloatsDialect()])
    assert _row(result, "/a")["dropped"] == 1
    assert _row(result, "/b/c")["dropped"] == 1
    assert _total(result, "at_risk") == 2


def test_negative_zero_integer_text() -> None:
    class Ints(FloatsDialect):
        """json.loads keeps ints: -0 becomes 0."""
        name: ClassVar[str] = "ints"

        def decode(self, data: bytes) -> Any:
            return json.loads(data)

    result = audit([b'{"z":-0,"f":-0.0}'], [Ints(), "python"])
    z = _row(result, "/z", "ints")
    assert (z["value_changed"], z["text_changed"], z["type_changed"]) == (0, 1, 0)
    assert z["examples"] == (("-0", "0"),)
    assert _row(result, "/f", "ints")["text_changed"] == 0
    assert not any(r["text_changed"] for r in result.rows if r["dialect"] == "python")


def test_keys_with_invalid_unicode_get_paths_every_output_can_write() -> None:
    # a lone surrogate escape and an invalid UTF-8 byte, each in a key: Go replaces both
    # with U+FFFD, so the value under the original key is gone from what it writes
    doc = b'{"\\ud800":1,"ok":{"\xfe":2}}'
    assert get_dialect("go").roundtrip(doc) == \
        '{"ok":{"\ufffd":2},"\ufffd":1}'.encode()
    result = audit([doc], ["go"])
    assert _row(result, "/\\ud800")["dropped"] == 1
    assert _row(result, "/ok/\\udcfe")["dropped"] == 1
    for text in (result.to_json(), result.to_csv(), result.to_html()):
        text.encode("utf-8")  # a path holding a surrogate could not be written out
    assert all(r["path"].isascii() for r in result.rows)


class SilentDialect(FloatsDialect):
    """Writes nothing at all for a document with the key "mute", as pandas does for a
    batch whose frame has no columns."""

    name: ClassVar[str] = "silent"

    def encode(self, value: Any) -> bytes:
        return b"" if isinstance(value, dict) and "mute" in value else super().encode(value)


def test_a_document_written_as_nothing_is_dropped() -> None:
    result = audit([b'{"mute":1,"x":[2]}', b'{"x":[3]}'], [SilentDialect()])
    root = _row(result, "")
    assert (root["values"], root["dropped"], root["text_changed"]) == (2, 1, 0)
    assert root["examples"] == (('{"mute":1,"x":[2]}', None),)
    assert _row(result, "/x")["values"] == 2 and _row(result, "/x")["dropped"] == 0
    # pandas writes one empty line for a frame without columns: those events vanish
    docs = [b"{}", b'{"o":{}}']
    assert get_dialect("pandas").roundtrip_batch(docs) == [b"", b""]
    pandas = _row(audit(docs, ["pandas"]), "")
    assert (pandas["dropped"], pandas["text_changed"]) == (2, 0)
    assert pandas["examples"] == (("{}", None), ('{"o":{}}', None))


def test_a_null_held_as_the_consumers_missing_value_is_unchanged() -> None:
    import pandas as pd

    # in one batch with numbers and strings, pandas holds the nulls as NaN and writes null
    docs = [b'{"n":null,"s":null}', b'{"n":5,"s":"x"}']
    held = get_dialect("pandas").decode_and_roundtrip_batch(docs)[0]
    assert isinstance(held, tuple) and held[0]["n"] != held[0]["n"]  # NaN
    result = audit(docs, ["pandas"])
    n, s = _row(result, "/n"), _row(result, "/s")
    assert (n["value_changed"], n["text_changed"], n["examples"]) == (0, 1, (("5", "5.0"),))
    assert (s["value_changed"], s["text_changed"]) == (0, 0)

    class Markers(FloatsDialect):
        """Holds pandas' markers for nulls, and NaN for the number 7."""
        name: ClassVar[str] = "markers"

        def decode(self, data: bytes) -> Any:
            value = super().decode(data)
            marks = {"na": pd.NA, "nat": pd.NaT}
            return {k: marks.get(k, v) if v is None else (math.nan if v == 7 else v)
                    for k, v in value.items()}

        def encode(self, value: Any) -> bytes:
            return super().encode({k: None if k in ("na", "nat") else v
                                   for k, v in value.items()})

    result = audit([b'{"na":null,"nat":null,"seven":7}'], [Markers()])
    assert _row(result, "/na")["value_changed"] == _row(result, "/nat")["value_changed"] == 0
    assert _row(result, "/seven")["value_changed"] == 1  # a number held as NaN is lost


@settings(max_examples=60, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_the_baseline_never_loses_anything(values: list[Any]) -> None:
    docs = [json.dumps(v, ensure_ascii=bool(i % 2)).encode() for i, v in enumerate(values)]
    result = audit(docs, ["python"])
    assert not result.has_loss
    assert _total(result, "values") == sum(sum(1 for _ in _leaves(v)) for v in values)


def test_documents_that_are_not_json_are_rejected_by_the_baseline() -> None:
    docs = [b'{"a":1}', b"{nope", b"[NaN]", b""]
    result = audit(docs, [FloatsDialect()])
    baseline = _row(result, "", "python")
    assert baseline["rejected"] == 3 and result.invalid == 3 and result.documents == 4
    floats = _row(result, "", "floats")
    assert floats["rejected"] == 2  # json.loads takes NaN: only the text is compared
    assert floats["values"] == 2 and floats["text_changed"] == 0  # writes [NaN] back


def test_a_consumer_that_takes_a_document_that_is_not_json_is_compared_by_its_text(
        ) -> None:
    result = audit([b'{"a":NaN}', b'{"b":1}'], ["pandas", "torch"])
    pandas, torch = _row(result, "", "pandas"), _row(result, "", "torch")
    assert (pandas["values"], pandas["text_changed"], pandas["rejected"]) == (2, 1, 0)
    assert tuple(pandas["examples"][0]) == ('{"a":NaN}', '{"a":null,"b":null}')  # NaN: null
    assert (torch["values"], torch["text_changed"]) == (2, 0)  # wrote NaN back as it was
    assert _row(result, "", "python")["rejected"] == 1


def test_inputs_of_every_kind() -> None:
    ev = RawEvent.new("s", 0, "T", b'{"a":1}')
    binary = RawEvent.new("s", 1, "T", b"\x00", content_type="application/octet-stream")
    ctx = Context(file="x.jsonl", line=3)
    result = audit([b'{"a":1}', '{"a":2}', bytearray(b'{"a":3}'), ev, binary,
                    (ctx, b'{"a":4,"poison":1}')], [ForgetfulDialect()])
    assert _row(result, "/a")["values"] == 5
    assert _row(result, "")["examples"][0][0].startswith("file x.jsonl:3: ")
    with pytest.raises(UsageError):
        audit([42], ["python"])  # type: ignore[list-item]


def test_bad_arguments_are_usage_errors() -> None:
    for kwargs in ({"batch_size": 0}, {"examples": -1}, {"dialects": ()},
                   {"dialects": ("python", "python")}, {"dialects": ("cobol",)}):
        with pytest.raises(UsageError):
            audit([b"{}"], **kwargs)


def test_examples_are_capped_and_distinct() -> None:
    docs = [json.dumps({"n": 2**53 + k}).encode() for k in range(1, 40)] * 2
    result = audit(docs, [FloatsDialect()], examples=3)
    ex = _row(result, "/n")["examples"]
    assert len(ex) == 3 and len(set(ex)) == 3
    assert not _row(audit(docs, [FloatsDialect()], examples=0), "/n")["examples"]


def test_columnar_batches_see_batch_size_documents() -> None:
    seen: list[int] = []

    class Counting(FloatsDialect):
        name: ClassVar[str] = "counting"
        columnar: ClassVar[bool] = True

        def decode_batch(self, docs: Any) -> list[Any]:
            seen.append(len(docs))
            return super().decode_batch(docs)

    audit([b"1"] * 25, [Counting()], batch_size=10)
    assert seen == [10, 10, 5]


# -- compiled plans: the same counts as the generic walk ----------------------------------------

_PLAN_LEAVES = st.one_of(
    st.integers(-(2**65), 2**65),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["2024-01-02T03:04:05.123456789+02:00", "2024-01-02T03:04:05Z", "007",
                     "a<b&c", "Zürich", "\u2028", "line\nbreak", "", "x"]),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-3, 2**60), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(-3, 3), max_size=2),
)


@st.composite
def _documents_of_few_shapes(draw: st.DrawFn) -> list[bytes]:
    """Documents sharing a few shapes (so plans are made and used), with leaves of every
    kind, sometimes of another type than the shape had, plus raw-text tricks: ``-0``,
    repeated keys, escapes, whitespace."""
    shapes = draw(st.lists(st.lists(st.sampled_from(["id", "price", "at", "note", "ok",
                                                     "addr", "tags", "secret"]),
                                    unique=True, max_size=5), min_size=1, max_size=3))
    docs = []
    for _ in range(draw(st.integers(1, 14))):
        keys = draw(st.sampled_from(shapes))
        obj: dict[str, Any] = {k: draw(_PLAN_LEAVES) for k in keys}
        if "addr" in obj and draw(st.booleans()):
            obj["addr"] = {k: draw(_PLAN_LEAVES) for k in ("city", "zip")}
        text = json.dumps(obj, ensure_ascii=draw(st.booleans()),
                          separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
        trick = draw(st.sampled_from(["", "", "", "-0", "repeat", "poison"]))
        if trick == "-0" and obj:
            text = '{"z":-0,' + text[1:] if text != "{}" else '{"z":-0}'
        elif trick == "repeat" and obj:
            text = text[:-1] + f',"{keys[0]}":1}}'
        elif trick == "poison":
            text = text.replace('"note"', '"poison"')
        docs.append(text.encode())
    return docs


def _with_and_without_plans(monkeypatch: pytest.MonkeyPatch, docs: list[bytes],
                         dialects: list[Any], **kwargs: Any) -> tuple[AuditResult, AuditResult]:
    with monkeypatch.context() as m:
        m.setattr(fidelity, "_PLAN_AFTER", 10**9)
        generic = audit(docs, dialects, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(fidelity, "_PLAN_AFTER", 1)
        m.setattr(fidelity, "_CHUNK", 4)  # several chunks, each screened on its own
        planned = audit(docs, dialects, **kwargs)
    return generic, planned


@settings(max_examples=80, deadline=None)
@given(_documents_of_few_shapes())
def test_compiled_plans_count_what_the_walk_counts(docs: list[bytes]) -> None:
    monkeypatch = pytest.MonkeyPatch()
    try:
        generic, planned = _with_and_without_plans(
            monkeypatch, docs, ["python", "go", "js", FloatsDialect(), ForgetfulDialect()],
            examples=3)
    finally:
        monkeypatch.undo()
    assert planned.rows == generic.rows  # every count and every example, in order
    assert (planned.documents, planned.invalid) == (generic.documents, generic.invalid)


def test_plans_are_made_for_repeated_shapes_and_change_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []

    class CountingPlan(fidelity._Plan):
        __slots__ = ()

        def __init__(self, sample: dict[str, Any], root: Any) -> None:
            super().__init__(sample, root)
            made.append(1)

    monkeypatch.setattr(fidelity, "_Plan", CountingPlan)
    events = list(generate(3000, seed=11, faults="duplicate=0.01,corrupt=0.01"))
    docs = [e.data for e in events]
    generic, planned = _with_and_without_plans(monkeypatch, docs, ["go", "js", "pandas"])
    assert len(made) >= 8  # one per event shape and dialect, at least
    assert planned.rows == generic.rows
    assert planned.has_loss


# -- loss against magnitude ----------------------------------------------------------------------


def test_magnitude_values_are_seeded_per_step() -> None:
    ints = magnitude_values("integer", 54, 50, seed=3)
    assert ints == magnitude_values("integer", 54, 50, seed=3)
    assert ints != magnitude_values("integer", 54, 50, seed=4)
    assert all(2**53 <= int(t) < 2**54 for t in ints)
    amounts = magnitude_values("decimal", 5, 50)
    assert all(len(t.replace(".", "").lstrip("0")) == 5 and len(t.split(".")[1]) == 2
               for t in amounts)
    with pytest.raises(UsageError):
        magnitude_values("complex", 3, 1)


def test_loss_by_magnitude_measures_the_real_dialects() -> None:
    frame = loss_by_magnitude(["python", "go", "js"], per_step=200, int_bits=[53, 54, 64],
                              decimal_digits=[2, 18])
    assert frame.columns[:3] == ["dialect", "kind", "magnitude"]
    assert frame.height == 3 * (3 + 2)
    rows = {(r["dialect"], r["kind"], r["magnitude"]): r for r in frame.iter_rows(named=True)}
    for key, row in rows.items():
        assert row["values"] == 200 and row["rejected"] == 0
        if key[0] == "python":  # the exact baseline holds every value
            assert row["value_changed"] == row["text_changed"] == 0
            assert row["max_abs_error"] == 0
    # expected counts computed here, independently: a float64 holds the value or not
    for kind, m in [("integer", 53), ("integer", 54), ("integer", 64), ("decimal", 2),
                    ("decimal", 18)]:
        tokens = magnitude_values(kind, m, 200)
        exact = [Fraction(t) for t in tokens]
        changed = sum(Fraction(float(x)) != x for x in exact)
        worst = max(abs(Fraction(float(x)) - x) for x in exact)
        for dialect in ("go", "js"):
            row = rows[(dialect, kind, m)]
            assert row["value_changed"] == changed, (dialect, kind, m)
            assert row["changed_fraction"] == changed / 200
            assert row["max_abs_error"] == float(worst)
    assert rows[("go", "integer", 53)]["value_changed"] == 0
    assert 0 < rows[("go", "integer", 54)]["value_changed"] < 200
    assert rows[("go", "integer", 54)]["at_risk"] == 200  # every one above 2**53
    assert rows[("go", "decimal", 18)]["text_changed"] > 150  # 17 digits at most survive


def test_loss_by_magnitude_checks_its_arguments() -> None:
    for kwargs in ({"per_step": 0}, {"kinds": ("complex",)}, {"int_bits": [65]},
                   {"decimal_digits": [0]}, {"dialects": ()}):
        with pytest.raises(UsageError):
            loss_by_magnitude(**kwargs)


# -- output ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lossy() -> AuditResult:
    return audit([b'{"n":9007199254740993,"s":"\\u00e9","secret":1}', b'{"poison":1}'],
                 [FloatsDialect(), ForgetfulDialect()])


def test_frame_has_the_contract_columns(lossy: AuditResult) -> None:
    frame = lossy.to_frame()
    assert tuple(frame.columns) == COLUMNS
    assert frame.schema["values"] == pl.Int64 and frame.schema["path"] == pl.String
    assert frame.height == len(lossy.rows)
    assert set(frame["dialect"]) == {"floats", "forgetful"}
    assert lossy.has_loss
    assert not audit([b"{}"], ["python"]).has_loss


def test_json_csv_and_html(lossy: AuditResult) -> None:
    records = json.loads(lossy.to_json())
    assert all(tuple(r) == COLUMNS for r in records)
    n = next(r for r in records if r["dialect"] == "floats" and r["path"] == "/n")
    assert n["examples"] == [["9007199254740993", "9007199254740992.0"]]
    rows = list(csv.DictReader(io.StringIO(lossy.to_csv())))
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(records)
    assert json.loads(rows[0]["examples"]) == records[0]["examples"]
    page = lossy.to_html()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "</html>" in page
    assert "9007199254740993" in page and 'class="loss"' in page
    assert "<script" not in page and "http" not in page  # self-contained


def test_rows_totals_and_losses(lossy: AuditResult) -> None:
    n = lossy.row("floats", "/n")
    assert (n["values"], n["value_changed"], n["text_changed"]) == (1, 1, 1)
    never = lossy.row("floats", "/nowhere")
    assert never["values"] == 0 and never["examples"] == ()
    with pytest.raises(UsageError, match="was not audited"):
        lossy.row("go", "/n")
    totals = lossy.totals()
    assert set(totals) == {"floats", "forgetful"}
    assert totals["forgetful"]["dropped"] == 1 and totals["forgetful"]["rejected"] == 1
    assert totals["floats"]["value_changed"] == sum(
        r["value_changed"] for r in lossy.rows if r["dialect"] == "floats")
    losses = lossy.to_frame(losses_only=True)
    assert 0 < losses.height < len(lossy.rows)
    assert all(any(r[k] for k in COLUMNS[4:9]) for r in losses.iter_rows(named=True))


def test_examples_frame_is_a_before_after_table(lossy: AuditResult) -> None:
    frame = lossy.examples_frame()
    assert frame.columns == ["dialect", "path", "before", "after"]
    assert frame.height == sum(len(r["examples"]) for r in lossy.rows)
    picked = lossy.examples_frame(["/secret", "/n"], dialects=["forgetful", "floats"])
    assert picked.rows() == [("forgetful", "/secret", "1", None),  # dropped
                             ("floats", "/secret", "1", "1.0"),
                             ("floats", "/n", "9007199254740993", "9007199254740992.0")]
    assert lossy.examples_frame(["/absent"]).height == 0


# -- read_source ------------------------------------------------------------------------------


def test_reads_a_json_array_of_events(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(b'[\n  {"a": 1},\n  {"a": [2, 3]},\n  {"b": "x"}\n]\n')
    items = list(read_source(path))
    assert [d for _, d in items] == [b'{"a": 1}', b'{"a": [2, 3]}', b'{"b": "x"}']
    assert [(c.file, c.line, c.path) for c, _ in items] == \
        [(str(path), 2, "/0"), (str(path), 3, "/1"), (str(path), 4, "/2")]


def test_reads_a_single_document(tmp_path: Path) -> None:
    for text in (b'{"statuses": [{"a": 1}]}', b"[1, 2]", b"[]", b"  7  "):
        path = tmp_path / "doc.json"
        path.write_bytes(text)
        assert [d for _, d in read_source(path)] == [text.strip()]


def test_reads_json_lines_and_unwraps_envelopes(tmp_path: Path) -> None:
    ev = RawEvent.new("order-1", 4, "Placed", b'{"id": 9007199254740993}')
    path = tmp_path / "export.jsonl"
    path.write_bytes(b'{"a":1}\n\n' + to_cloudevent(ev) + b'\n  {"b":2}  \r\n')
    items = list(read_source(path))
    assert [d for _, d in items] == [b'{"a":1}', b'{"id": 9007199254740993}', b'{"b":2}']
    ctx = items[1][0]
    assert (ctx.line, ctx.stream, ctx.version, ctx.event_type) == (3, "order-1", 4, "Placed")
    assert items[2][0].line == 4


def test_guesses_json_lines_without_a_known_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes(b'{"a":1}\n{"a":2}\n')
    assert len(list(read_source(path))) == 2
    path.write_bytes(b'{\n"a": 1\n}\n')
    assert [d for _, d in read_source(path)] == [b'{\n"a": 1\n}']


@pytest.mark.parametrize("name, content, message, line", [
    ("empty.json", b"", "the file is empty", None),
    ("blank.jsonl", b" \n\n", "the file is empty", None),
    ("hello.json", b"hello", "not a JSON document", 1),
    ("trunc.json", b'{"a": [1,\n 2', "truncated", 2),
    ("trunc.jsonl", b'{"a":1}\n{"a":', "truncated", 2),
    ("bad.jsonl", b'{"a":1}\nnot json\n{"a":3}\n', "line is not a JSON document", 2),
    ("nan.jsonl", b'{"a":NaN}\n', "line is not a JSON document", 1),
    ("bad-element.json", b'[{"a":1},\n{"a":NaN}]', "not a JSON document", None),
    # form feed and vertical tab are not JSON whitespace: every consumer refuses them
    ("ff.jsonl", b'{"a":1}\n\x0c{"a":1}\x0b\n', "line is not a JSON document", 2),
    ("vt.json", b'\x0b{"a":1}', "not a JSON document", 1),
])
def test_bad_files_name_file_and_line(tmp_path: Path, name: str, content: bytes, message: str,
                                      line: int | None) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DecodeError) as info:
        list(read_source(path))
    assert message in str(info.value) and str(path) in str(info.value)
    assert info.value.context.file == str(path)
    if line is not None:
        assert info.value.context.line == line


def test_unreadable_files_and_bad_envelopes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(read_source(tmp_path / "missing.json"))
    path = tmp_path / "env.jsonl"
    path.write_bytes(b'{"specversion":"0.3","id":"1","source":"/s","type":"T"}\n')
    with pytest.raises(EnvelopeError) as info:
        list(read_source(path))
    assert info.value.context.line == 1 and info.value.context.stream is None


def test_documents_with_invalid_bytes_are_the_audits_business(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"s":"\xff"}\n{"a":1,"a":2}\n')
    assert len(list(read_source(path))) == 2


@settings(max_examples=50, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_read_source_yields_every_document_in_order(tmp_path_factory: Any,
                                                    values: list[Any]) -> None:
    folder = tmp_path_factory.mktemp("src")
    lines = [json.dumps(v, ensure_ascii=False).encode() for v in values]
    jsonl = folder / "x.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    assert [d for _, d in read_source(jsonl)] == lines
    assert [c.line for c, _ in read_source(jsonl)] == list(range(1, len(lines) + 1))
    objects = [json.dumps({"v": v}).encode() for v in values]
    array = folder / "x.json"
    array.write_bytes(b"[" + b",\n".join(objects) + b"]")
    assert [d for _, d in read_source(array)] == objects


# -- real data: expected counts computed here with the stdlib ---------------------------------


def _leaves(value: Any, parent: str | None = None) -> Iterator[tuple[Any, str | None]]:
    """Every value of a document (containers included) and the kind of its parent."""
    yield value, parent
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v, "object")
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, "array")


def _expected(name: str) -> dict[str, int]:
    doc = json.loads((CORPUS / name).read_bytes(), parse_float=Decimal)
    nodes = list(_leaves(doc))
    ints = [v for v, _ in nodes if type(v) is int]
    decimals = [v for v, _ in nodes if type(v) is Decimal]
    strings = [v for v, _ in nodes if type(v) is str]
    return {
        "values": len(nodes),
        "at_risk": sum(abs(i) > 2**53 for i in ints)
        + sum(Decimal(repr(float(d))) != d for d in decimals)
        + sum(s.isascii() and s.isdigit() and len(s) > 1 and s[0] == "0" for s in strings),
        "inexact": sum(Decimal(float(d)) != d for d in decimals),
        "int_as_float": sum(float(i) != i for i in ints),
        "escaped_by_pandas": sum(not s.isascii() or "/" in s for s in strings),
        "not_features": sum(1 for v, p in nodes if p == "object" and (type(v) is str
                                                                       or v is None)),
    }


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[tuple[Context, bytes]]]:
    return {name: list(read_source(CORPUS / name))
            for name in ("twitter.json", "citm_catalog.json", "canada.json")}


@pytest.mark.parametrize("name", ["twitter.json", "citm_catalog.json", "canada.json"])
def test_exact_baseline_on_real_files(corpus: dict[str, Any], name: str) -> None:
    expected = _expected(name)
    result = audit(corpus[name], ["python"])
    assert len(corpus[name]) == 1  # each file is one document
    assert _total(result, "values") == expected["values"]
    assert _total(result, "at_risk") == expected["at_risk"]
    assert not result.has_loss


def test_twitter_ids_are_at_risk(corpus: dict[str, Any]) -> None:
    statuses = json.loads((CORPUS / "twitter.json").read_bytes())["statuses"]
    result = audit(corpus["twitter.json"], ["python"])
    ids = _row(result, "/statuses/*/id")
    assert ids["values"] == len(statuses)
    assert ids["at_risk"] == sum(s["id"] > 2**53 for s in statuses)


@pytest.mark.parametrize("name", ["twitter.json", "citm_catalog.json", "canada.json"])
def test_pandas_on_real_files(corpus: dict[str, Any], name: str) -> None:
    expected = _expected(name)
    result = audit(corpus[name], ["pandas"])
    # one document, one row: values pass through untouched Python objects, except that
    # json.loads made binary floats, and to_json escapes "/" and non-ASCII characters
    assert _total(result, "value_changed") == expected["inexact"]
    if name != "canada.json":  # canada's floats are also re-printed with 10 digits
        assert _total(result, "text_changed") == expected["escaped_by_pandas"]
    assert _total(result, "rejected") == 0


def test_pandas_drops_empty_objects_of_citm(corpus: dict[str, Any]) -> None:
    doc = json.loads((CORPUS / "citm_catalog.json").read_bytes())
    empty = [k for k, v in doc.items() if v == {}]
    result = audit(corpus["citm_catalog.json"], ["pandas"])
    assert _total(result, "dropped") == len(empty)
    assert all(_row(result, f"/{k}")["dropped"] == 1 for k in empty)


def test_polars_on_twitter(corpus: dict[str, Any]) -> None:
    expected = _expected("twitter.json")
    result = audit(corpus["twitter.json"], ["polars"])
    assert _total(result, "value_changed") == expected["inexact"]
    assert _row(result, "/statuses/*/id")["value_changed"] == 0  # Int64 holds them
    assert _total(result, "rejected") == 0


def test_torch_on_twitter(corpus: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    expected = _expected("twitter.json")
    statuses = json.loads((CORPUS / "twitter.json").read_bytes())["statuses"]
    result = audit(corpus["twitter.json"], ["torch"])
    assert _total(result, "dropped") == expected["not_features"]

    def float32_exact(i: int) -> bool:  # 24 significant bits
        shift = max(0, i.bit_length() - 24)
        return i & ((1 << shift) - 1) == 0
    ids = _row(result, "/statuses/*/id")
    assert ids["value_changed"] == sum(not float32_exact(s["id"]) for s in statuses)
    assert ids["type_changed"] == len(statuses)


# -- go and js, once their dialects exist ------------------------------------------------------


def _dialect_or_skip(name: str) -> str:
    try:
        __import__(f"evtools.dialects.{name}")
    except ImportError:
        pytest.skip(f"{name} dialect not available yet")
    return name


def _shortest(f: float) -> str:
    """How Go and JavaScript print a float64 below 1e21: shortest digits, no exponent."""
    return format(Decimal(repr(f)).normalize(), "f")


@pytest.mark.parametrize("name", ["go", "js"])
def test_float64_consumers_on_twitter(corpus: dict[str, Any], name: str) -> None:
    dialect = _dialect_or_skip(name)
    doc = json.loads((CORPUS / "twitter.json").read_bytes())
    nodes = [v for v, _ in _leaves(doc)]
    ints = [v for v in nodes if type(v) is int]
    strings = [v for v in nodes if type(v) is str]
    result = audit(corpus["twitter.json"], [dialect])
    assert _total(result, "value_changed") == \
        sum(float(i) != i for i in ints) + _expected("twitter.json")["inexact"]
    numbers_rewritten = sum(_shortest(float(i)) != str(i) for i in ints)
    html_escaped = sum(any(c in s for c in "<>&\u2028\u2029") for s in strings)
    assert _total(result, "text_changed") == numbers_rewritten + (
        html_escaped if name == "go" else 0)
    assert _total(result, "rejected") == _total(result, "dropped") == 0
    statuses = doc["statuses"]
    ids = _row(result, "/statuses/*/id")
    assert ids["value_changed"] == sum(float(s["id"]) != s["id"] for s in statuses)
    assert ids["text_changed"] == sum(_shortest(float(s["id"])) != str(s["id"])
                                      for s in statuses)


@pytest.mark.parametrize("name", ["go", "js"])
def test_float64_consumers_on_canada(corpus: dict[str, Any], name: str) -> None:
    dialect = _dialect_or_skip(name)
    expected = _expected("canada.json")
    tokens = [v for v, _ in _leaves(json.loads((CORPUS / "canada.json").read_bytes(),
                                                parse_float=str)) if type(v) is str]
    floats = [t for t in tokens if any(c in t for c in ".eE") and t[:1] in "-0123456789"]
    result = audit(corpus["canada.json"], [dialect])
    assert _total(result, "value_changed") == expected["inexact"]
    assert _total(result, "text_changed") == sum(_shortest(float(t)) != t for t in floats)


# -- state diff --------------------------------------------------------------------------------


class Line(msgspec.Struct):
    sku: int
    price: Decimal


@dataclasses.dataclass
class Order:
    id: int
    total: Decimal
    lines: list[Line]
    status: str = "PLACED"
    note: str | None = None


def test_state_diff_lists_every_differing_field() -> None:
    typed = Order(id=2**53 + 1, total=Decimal("12.30"), lines=[Line(1, Decimal("0.1"))])
    naive = {"id": float(2**53 + 1), "total": 12.3, "lines": [{"sku": 1, "price": 0.1}],
             "status": "PLACED", "extra": True}
    frame = state_diff(naive, typed)
    assert tuple(frame.columns) == ("path", "naive", "typed", "naive_type", "typed_type",
                                    "difference")
    rows = {r["path"]: r for r in frame.iter_rows(named=True)}
    assert rows["/id"]["difference"] == "value"
    assert rows["/id"]["typed"] == repr(2**53 + 1)
    assert rows["/total"]["difference"] == "value"  # 12.3 the float is not 12.30
    assert rows["/lines/0/price"]["difference"] == "value"
    assert "/lines/0/sku" not in rows and "/status" not in rows
    assert rows["/extra"]["difference"] == "missing_in_typed"
    assert rows["/note"]["difference"] == "missing_in_naive"


def test_state_diff_reports_equal_values_of_another_type() -> None:
    frame = state_diff({"a": 5, "b": {"c": float("nan")}}, {"a": 5.0, "b": {"c": float("nan")}})
    assert frame.to_dicts() == [{"path": "/a", "naive": "5", "typed": "5.0",
                                 "naive_type": "int", "typed_type": "float",
                                 "difference": "type"}]
    assert state_diff({"x": [1, 2]}, {"x": [1, 2]}).height == 0


def test_state_diff_tells_an_array_from_an_object() -> None:
    # no leaf differs under either, yet an empty list is not an empty mapping, nor is a
    # list a mapping keyed by its indices
    frame = state_diff({"tags": {}, "lines": {"0": {"sku": 1}}, "same": [1, 2]},
                       {"tags": [], "lines": [{"sku": 1}], "same": (1, 2)})
    rows = {r["path"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"/tags", "/lines"}
    assert (rows["/tags"]["naive_type"], rows["/tags"]["typed_type"],
            rows["/tags"]["difference"]) == ("dict", "list", "value")
    assert rows["/lines"]["difference"] == "value"
    typed = Order(id=1, total=Decimal("1"), lines=[])
    assert state_diff({"id": 1, "total": Decimal("1"), "lines": {}, "status": "PLACED",
                       "note": None}, typed)["path"].to_list() == ["/lines"]


def test_state_diff_of_an_aggregate_by_state_or_by_what_it_holds() -> None:
    events = [e for e in generate(400, seed=3) if e.stream.startswith("order-")]
    stream = next(e.stream for e in events if e.type == "PaymentAuthorized")
    one = [e for e in events if e.stream == stream]
    typed = rehydrate(one, orders.order_registry(), orders.Order).aggregate
    naive = naive_rehydrate(one, dialect="python").state
    by_state = state_diff(naive, typed)  # to_state(): enums and timestamps as text
    assert by_state.filter(pl.col("difference") != "type").is_empty()
    assert "/currency" not in set(by_state["path"])
    held = state_diff(naive, typed, held=True)
    currency = held.filter(pl.col("path") == "/currency").to_dicts()[0]
    assert (currency["naive_type"], currency["typed_type"], currency["difference"]) == (
        "str", "Currency", "type")
    assert held.filter(pl.col("path") == "/created_at")["typed_type"].to_list() == ["Timestamp"]


def test_rejections_keep_the_consumers_reason() -> None:
    with pytest.raises(ConsumerRejected) as info:
        ForgetfulDialect().decode(b'{"poison":1}')
    assert info.value.reason == "poisoned"


def test_audit_takes_a_store_and_leaves_its_snapshots_out() -> None:
    from evtools.datagen import write_workload
    from evtools.orders import Order, order_registry
    from evtools.rehydration import rehydrate_store
    from evtools.stores import MemoryStore

    store = MemoryStore()
    write_workload(store, 200, seed=3)
    rehydrate_store(store, order_registry(), Order, snapshot_every=2)
    assert any(e.type == "$snapshot" for e in store.read_all())
    result = fidelity.audit(store, ["go"])
    paths = result.to_frame()["path"].to_list()
    assert "/order_id" in paths and not [p for p in paths if p.startswith("/state")]
    with pytest.raises(UsageError, match=r"audit takes documents .* or a store, not int"):
        fidelity.audit(42, ["go"])  # type: ignore[arg-type]


def test_a_document_deeper_than_the_walk_can_go_is_refused_not_a_traceback() -> None:
    """Python 3.12+ decoders read documents nested deeper than Python's recursion limit;
    the audit names such a document instead of failing with a RecursionError."""
    n = sys.getrecursionlimit() - len(inspect.stack(0)) - 50  # what msgspec reads here
    deep = b'{"a":' * n + b"1" + b"}" * n
    result = fidelity.audit([b'{"ok":1}', deep], ["go", "js"])
    assert result.invalid == 1
    text = result.to_json()
    assert "nested too deeply for the audit" in text
    assert '"/ok"' in text
