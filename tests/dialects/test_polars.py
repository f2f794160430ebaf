"""The ``polars`` dialect runs the installed polars: these tests compare it with polars
called directly, and check that the audit reports what polars did to late rows."""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
import pytest

from evtools.dialects import get_dialect
from evtools.dialects.polars import PolarsDialect
from evtools.errors import ConsumerRejected, UsageError
from evtools.fidelity import audit


def _docs(records: list[Any]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def _row(result: Any, path: str) -> dict[str, Any]:
    return next(r for r in result.rows if r["path"] == path)


def _direct(records: list[Any]) -> list[dict[str, Any]] | Exception:
    """What polars itself does with these records: its rows, or the error it raises."""
    try:
        return pl.from_dicts(records).to_dicts()
    except Exception as e:  # whatever polars raises is the observation
        return e


def test_registered_under_its_name() -> None:
    d = get_dialect("polars", mode="read_ndjson")
    assert isinstance(d, PolarsDialect) and d.columnar and d.mode == "read_ndjson"
    with pytest.raises(UsageError):
        PolarsDialect(mode="read_csv")  # type: ignore[arg-type]


@pytest.mark.parametrize("late", [1.5, "x", 2**64 + 5, True, None, {"b": 1}])
def test_a_late_value_is_handled_as_polars_handles_it(late: Any) -> None:
    records = [{"a": 1}] * 100 + [{"a": late}]
    direct = _direct(records)
    out = PolarsDialect().decode_batch(_docs(records))
    if isinstance(direct, Exception):
        assert all(isinstance(o, ConsumerRejected) for o in out)
        assert all(str(direct).splitlines()[0] in o.reason for o in out)
        result = audit(_docs(records), [PolarsDialect()])
        assert _row(result, "")["rejected"] == 101
    else:
        assert out == direct
        result = audit(_docs(records), [PolarsDialect()])
        changed = direct[100]["a"] != late or type(direct[100]["a"]) is not type(late)
        assert (_row(result, "/a")["value_changed"] == 1) is changed


def test_a_key_first_seen_after_the_inferred_rows_is_what_polars_makes_of_it() -> None:
    """polars 2.1 drops such a key silently; 2.2 refuses the whole batch ("extra key in
    dict 100"): the dialect does what the installed polars does."""
    records = [{"a": 1}] * 100 + [{"a": 1, "late": 2}]
    direct = _direct(records)
    if isinstance(direct, Exception):  # the batch is lost, every document with polars' text
        outcomes = PolarsDialect().decode_batch(_docs(records))
        assert all(isinstance(o, ConsumerRejected) and str(direct) in str(o)
                   for o in outcomes)
        assert audit(_docs(records), [PolarsDialect()]).totals()["polars"]["rejected"] == 101
    else:
        result = audit(_docs(records), [PolarsDialect()])
        assert (_row(result, "/late")["dropped"] == 1) is ("late" not in direct[100])
    # inference over every row sees it
    for length in (None, 200):
        full = audit(_docs(records), [PolarsDialect(infer_schema_length=length)])
        assert _row(full, "/late")["dropped"] == 0


def test_read_ndjson_mode_matches_read_ndjson() -> None:
    records = [{"a": 1, "b": {"c": 0.1}}, {"a": 2**64 + 5, "b": {"c": 2}}]
    docs = _docs(records)
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(docs)))
    out = PolarsDialect("read_ndjson").decode_and_roundtrip_batch(docs)
    assert [o[0] for o in out if isinstance(o, tuple)] == frame.to_dicts()
    assert [o[1] for o in out if isinstance(o, tuple)] == \
        [line.encode() for line in frame.write_ndjson().splitlines()]


def test_a_document_polars_cannot_take_is_rejected_alone() -> None:
    out = PolarsDialect().decode_batch([b'{"a":1}', b"5", b"{bad", b""])
    assert out[0] == {"a": 1}
    assert all(isinstance(o, ConsumerRejected) for o in out[1:])
    ndjson = PolarsDialect("read_ndjson").decode_batch([b'{"a":1}', b"  ", b'{"a":\n2}'])
    assert ndjson[0] == {"a": 1} and ndjson[2] == {"a": 2}
    assert isinstance(ndjson[1], ConsumerRejected)


def test_single_document_verbs_are_a_batch_of_one() -> None:
    d = PolarsDialect()
    assert d.decode(b'{"a":{"b":0.5}}') == {"a": {"b": 0.5}}
    assert d.roundtrip(b'{"a":[1,2]}') == b'{"a":[1,2]}'
    assert d.encode({"x": 1.0}) == b'{"x":1.0}'
    with pytest.raises(ConsumerRejected):
        d.decode(b"[1]")


def test_big_integers_keep_their_value_where_polars_keeps_them() -> None:
    records = [{"id": 2**63 + 1}, {"id": 5}]
    direct = _direct(records)
    result = audit(_docs(records), [PolarsDialect()])
    if isinstance(direct, Exception):
        assert _row(result, "")["rejected"] == 2
    else:
        exact = direct[0]["id"] == 2**63 + 1
        assert (_row(result, "/id")["value_changed"] == 0) is exact


@pytest.mark.parametrize("mode", ["from_dicts", "read_ndjson"])
def test_a_document_nested_deeper_than_polars_can_hold_is_refused_by_itself(mode: str) -> None:
    """polars' memory grows with the cube of the nesting (7 GB at 800 levels): such a
    document is refused before polars sees it, and the rest of the batch loads."""
    dialect = PolarsDialect(mode)  # type: ignore[arg-type]
    limit = PolarsDialect.max_depth
    assert limit is not None

    def nested(levels: int) -> bytes:  # an object holding `levels` levels in all
        return b'{"a":' * levels + b"1" + b"}" * levels

    ok, deep, far = nested(limit), nested(limit + 1), nested(5000)
    assert dialect.decode(ok) is not None and dialect.roundtrip(ok) == ok
    outcomes = dialect.roundtrip_batch([b'{"x": 1}', deep, far, b'{"x": 2}'])
    assert outcomes[0] == b'{"x":1}' and outcomes[3] == b'{"x":2}'
    assert isinstance(outcomes[1], ConsumerRejected)
    assert f"nested {limit + 1} levels" in str(outcomes[1])
    assert f"deeper than {limit} levels" in str(outcomes[1])
    assert isinstance(outcomes[2], ConsumerRejected)
    # 5,000 levels: json.loads (from_dicts' first step) may refuse it first, on its own
    assert "deeper than" in str(outcomes[2]) or "recursion" in str(outcomes[2])
    with pytest.raises(ConsumerRejected, match=f"nested {limit + 1} levels"):
        dialect.encode(json.loads(deep))
    # brackets inside strings are not nesting
    text = b'{"a": "' + b"[" * 1000 + b'"}'
    assert dialect.roundtrip(text) == b'{"a":"' + b"[" * 1000 + b'"}'
