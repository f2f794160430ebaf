"""The ``pandas`` dialect runs the installed pandas: these tests compare it with pandas
called directly, and check the losses the audit reports from it."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
import pytest

from evtools.dialects import get_dialect
from evtools.dialects.pandas import SEP, PandasDialect, _is_missing_cell, _unflatten
from evtools.errors import ConsumerRejected, UsageError
from evtools.fidelity import audit


def _docs(records: list[Any]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def _row(result: Any, path: str) -> dict[str, Any]:
    return next(r for r in result.rows if r["path"] == path)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (pandas' missing value)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


RECORDS = [
    {"id": 1, "user": {"id": 7, "name": "ann"}, "price": 12.34, "code": "007",
     "tags": ["a", "b"], "meta": {}},
    {"id": 2**60 + 1, "user": {"id": None}, "price": 0.1, "code": "008", "big": 2**64 + 5},
    {"id": 3, "price": 1.5, "user": None},
]


def test_registered_under_its_name() -> None:
    d = get_dialect("pandas", mode="read_json")
    assert isinstance(d, PandasDialect) and d.columnar and d.mode == "read_json"
    with pytest.raises(UsageError):
        PandasDialect(mode="csv")  # type: ignore[arg-type]


def test_records_mode_holds_what_json_normalize_holds() -> None:
    held = PandasDialect().decode_batch(_docs(RECORDS))
    direct = pd.json_normalize(RECORDS, sep=SEP).to_dict("records")
    assert len(held) == 3
    for mine, theirs in zip(held, direct, strict=True):
        assert _same(mine, _unflatten(theirs, _is_missing_cell))
    # an int column with a missing value became float64, as pandas makes it
    assert held[0]["user"]["id"] == 7.0 and type(held[0]["user"]["id"]) is float


@pytest.mark.parametrize("mode", ["records", "dataframe", "read_json"])
def test_documents_without_columns_vanish_as_pandas_writes_them(mode: str) -> None:
    """A frame of {} (or only empty objects) has no columns: to_json writes one empty line
    for all its rows. The events are gone; pandas refused nothing."""
    empty = [b"{}", b'{"e": {}}']
    assert pd.json_normalize([{}, {"e": {}}]).to_json(orient="records", lines=True) == "\n"
    dialect = PandasDialect(mode=mode)  # type: ignore[arg-type]
    if mode == "records":
        assert dialect.roundtrip_batch(empty) == [b"", b""]
        assert dialect.roundtrip(b"{}") == b""
    assert dialect.roundtrip_batch([*empty, b'{"a": 1}'])[2] != b""  # a column: written


def test_dataframe_mode_holds_what_the_constructor_holds() -> None:
    held = PandasDialect("dataframe").decode_batch(_docs(RECORDS))
    direct = pd.DataFrame(RECORDS).to_dict("records")
    for mine, theirs in zip(held, direct, strict=True):
        assert _same(mine, theirs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pandas' notice of a future default
def test_read_json_mode_writes_what_to_json_writes() -> None:
    records = [{"code": "007", "created_at": "2024-01-01T00:00:00+01:00", "n": 1},
               {"code": "008", "created_at": "2024-01-02T00:00:00+01:00", "n": None}]
    lines = "\n".join(json.dumps(r) for r in records)
    direct = pd.read_json(io.StringIO(lines), lines=True).to_json(orient="records",
                                                                   lines=True)
    written = PandasDialect("read_json").roundtrip_batch(_docs(records))
    assert b"\n".join(w for w in written if isinstance(w, bytes)).decode() == direct.strip()


def test_audit_reports_what_read_json_changes() -> None:
    records = [{"code": "007", "created_at": "2024-01-01T00:00:00+01:00", "n": 1, "x": 0.5},
               {"code": "008", "created_at": "2024-01-02T00:00:00+01:00", "n": None,
                "x": 1.2345678901234}]
    frame = pd.read_json(io.StringIO("\n".join(json.dumps(r) for r in records)), lines=True)
    result = audit(_docs(records), [PandasDialect("read_json")])
    # every observation below is checked against what pandas itself holds
    code = _row(result, "/code")
    assert (code["type_changed"] == 2) is (frame["code"].dtype.kind in "iuf")
    created = _row(result, "/created_at")
    assert (created["type_changed"] == 2) is (frame["created_at"].dtype.kind == "M")
    n = _row(result, "/n")
    assert (n["text_changed"] == 1) is (frame["n"].dtype.kind == "f")  # 1 -> 1.0
    x = _row(result, "/x")
    assert x["text_changed"] == 1  # to_json's default double_precision=10 rounds 1.2345678901234
    assert x["examples"][0][1] == frame[["x"]].to_json(orient="records", lines=True)\
        .splitlines()[1].split(":")[1].rstrip("}")


def test_records_mode_losses_in_the_audit() -> None:
    result = audit(_docs(RECORDS), [PandasDialect()])
    assert _row(result, "/meta")["dropped"] == 1  # json_normalize drops an empty object
    assert _row(result, "/user/id")["type_changed"] == 1  # 7 -> 7.0 (column has a null)
    # binary floats, compared exactly: 12.34 and 0.1 are not binary fractions, 1.5 is
    assert _row(result, "/price")["value_changed"] == 2
    assert _row(result, "/price")["text_changed"] == 0
    assert _row(result, "/id")["value_changed"] == 0  # int64 holds 2**60 + 1
    assert _row(result, "")["rejected"] == 0


def test_a_document_pandas_cannot_take_is_rejected_alone() -> None:
    docs = [b'{"a":1}', b"[1,2]", b"{bad", b'{"a":2}']
    out = PandasDialect().decode_batch(docs)
    assert out[0] == {"a": 1} and out[3] == {"a": 2}
    assert isinstance(out[1], ConsumerRejected) and "not a record" in out[1].reason
    assert isinstance(out[2], ConsumerRejected) and out[2].reason.startswith("json.loads")
    with pytest.raises(ConsumerRejected):
        PandasDialect().decode(b"[1,2]")


def test_a_batch_pandas_refuses_rejects_every_document() -> None:
    docs = _docs([{"a": 1}, {"a": 2**64 + 5}])
    with pytest.raises(ValueError) as direct:
        pd.read_json(io.BytesIO(b"\n".join(docs)), lines=True)
    out = PandasDialect("read_json").decode_batch(docs)
    assert all(isinstance(o, ConsumerRejected) for o in out)
    assert all(str(direct.value) in o.reason and "batch of 2" in o.reason for o in out)
    assert isinstance(PandasDialect("read_json").decode_batch([b" "])[0], ConsumerRejected)


def test_single_document_verbs_are_a_batch_of_one() -> None:
    d = PandasDialect()
    doc = b'{"a":{"b":1},"s":"x/y"}'
    assert d.decode(doc) == {"a": {"b": 1}, "s": "x/y"}
    # nested columns come after the others, as json_normalize orders them; "/" escaped
    assert d.roundtrip(doc) == d.roundtrip_batch([doc])[0] == b'{"s":"x\\/y","a":{"b":1}}'
    assert d.encode({"a": {"b": 1}}) == b'{"a":{"b":1}}'


def test_unflatten_lets_the_missing_cell_give_way() -> None:
    nan = float("nan")
    row = {f"e{SEP}1{SEP}d": None, f"e{SEP}1{SEP}i": 5, "a": nan, f"a{SEP}b": 1,
           "c": 2, f"c{SEP}x": nan}
    assert _same(_unflatten(row, _is_missing_cell),
                 {"e": {"1": {"d": None, "i": 5}}, "a": {"b": 1}, "c": 2})
