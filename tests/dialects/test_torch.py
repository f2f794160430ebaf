"""The ``torch`` dialect: numeric leaves through ``torch.tensor`` as a feature pipeline
builds them. Each expectation is checked against torch itself or computed exactly here."""

from __future__ import annotations

import json
import struct
from decimal import Decimal
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from evtools.dialects import get_dialect  # noqa: E402  # after the skip
from evtools.dialects.torch import TorchDialect  # noqa: E402
from evtools.errors import ConsumerRejected, UsageError  # noqa: E402
from evtools.fidelity import audit  # noqa: E402


def _docs(records: list[Any]) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def _row(result: Any, path: str) -> dict[str, Any]:
    return next(r for r in result.rows if r["path"] == path)


def _f32(x: float) -> float:
    """``x`` rounded to float32, by the struct module (IEEE round to nearest even)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def test_registered_under_its_name() -> None:
    d = get_dialect("torch", dtype="float64")
    assert isinstance(d, TorchDialect) and d.columnar and d.dtype == "float64"
    with pytest.raises(UsageError):
        TorchDialect(dtype="complex64")


def test_float32_features() -> None:
    held = TorchDialect().decode_batch(_docs([
        {"id": 2**24 + 1, "p": 0.1, "big": 1e39, "flag": True, "name": "x", "note": None,
         "mixed": [1, "a", 2.5], "obj": {"n": 3, "s": "z"}},
    ]))[0]
    assert held["id"] == 2.0**24  # 2**24 + 1 is not a float32
    assert held["p"] == _f32(0.1) != 0.1
    assert held["big"] == float("inf")
    assert held["flag"] == 1.0
    assert "name" not in held and "note" not in held  # not features
    assert held["mixed"] == [1.0, None, 2.5]  # positions kept
    assert held["obj"] == {"n": 3.0}


def test_written_back_with_json_dumps() -> None:
    out = TorchDialect().roundtrip_batch([b'{"a":1e39,"b":[1,2]}'])
    assert out == [b'{"a":Infinity,"b":[1.0,2.0]}']


def test_a_key_json_dumps_cannot_write_rejects_only_its_document() -> None:
    # the pipeline's own json.dumps(...).encode("utf-8") raises on it, as here
    with pytest.raises(UnicodeEncodeError) as direct:
        json.dumps({"\ud800": 1.0}, ensure_ascii=False).encode("utf-8")
    out = TorchDialect().decode_and_roundtrip_batch([b'{"\\ud800":1}', b'{"a":1}'])
    assert isinstance(out[0], ConsumerRejected) and str(direct.value) in out[0].reason
    assert out[1] == ({"a": 1.0}, b'{"a":1.0}')
    rows = audit([b'{"\\ud800":1}'], ["torch"]).rows
    assert [(r["path"], r["rejected"]) for r in rows if r["rejected"]] == [("", 1)]


def test_inferred_dtype_follows_torch() -> None:
    docs = _docs([{"i": 2**40, "b": True, "m": 1}, {"i": 3, "b": False, "m": 2.5}])
    held = TorchDialect(dtype=None).decode_batch(docs)
    assert [h["i"] for h in held] == torch.tensor([2**40, 3]).tolist()
    assert [h["b"] for h in held] == [True, False]
    assert [h["m"] for h in held] == torch.tensor([1, 2.5]).tolist()


def test_a_tensor_torch_cannot_build_rejects_the_batch() -> None:
    docs = [*_docs([{"i": 2**64}, {"i": 1}]), b"{bad"]
    with pytest.raises((OverflowError, RuntimeError, ValueError)) as direct:
        torch.tensor([2**64, 1])
    out = TorchDialect(dtype=None).decode_batch(docs)
    assert all(isinstance(o, ConsumerRejected) for o in out)
    assert str(direct.value) in out[0].reason and "batch of 2" in out[0].reason
    assert out[2].reason.startswith("json.loads")


def test_audit_counts_float32_losses_exactly() -> None:
    ids = [2**24 + 1, 2**24 + 2, 2**53 + 1, 2**60, 12345, 7]
    prices = [0.5, 0.1, 19.99, 1e-50, 3.25, 1e39]
    records = [{"id": i, "price": p, "label": "x"} for i, p in zip(ids, prices, strict=True)]
    result = audit(_docs(records), [TorchDialect()])
    ident = _row(result, "/id")
    assert ident["value_changed"] == sum(1 for i in ids if _f32(float(i)) != i)
    assert ident["type_changed"] == len(ids)  # every int is written as a float
    # the decimal text compared exactly with the float32 value torch holds; 1e39 is inf
    expected = sum(1 for p in prices if p > 3.4e38 or Decimal(repr(p)) != Decimal(_f32(p)))
    assert _row(result, "/price")["value_changed"] == expected
    assert _row(result, "/label")["dropped"] == len(records)


def test_a_document_deeper_than_the_feature_walk_has_room_for_is_refused_by_itself() -> None:
    """From Python 3.12 on json.loads takes documents deeper than Python's recursion limit
    (3.13: about 10,000 levels); the walk had ended the batch in a RecursionError. Here a
    depth json.loads still reads on every version, near the limit, stands for them."""
    import inspect
    import sys

    n = sys.getrecursionlimit() - len(inspect.stack(0)) - 50
    deep = b'{"a":' * n + b"1" + b"}" * n
    json.loads(deep)  # json.loads reads it here
    outcomes = TorchDialect().roundtrip_batch([b'{"x": 1}', deep])
    assert outcomes[0] == b'{"x":1.0}'
    assert isinstance(outcomes[1], ConsumerRejected)
    assert f"nested too deeply for the feature walk: {n} levels" in str(outcomes[1])
