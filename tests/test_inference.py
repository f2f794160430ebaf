"""Behaviour of evtools.inference: pipelines, the model, the harness (no timing asserts)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import subprocess
import sys
import uuid
import weakref
from decimal import Decimal

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.errors import InputError, MissingDependency, UsageError
from evtools.events import RawEvent
from evtools.orders import (
    Address,
    Currency,
    ItemAdded,
    Money,
    OrderCreated,
    PaymentAuthorized,
)
from evtools.scalars import Timestamp, enc_hook

from .strategies import json_values

torch = pytest.importorskip("torch")

from evtools import inference as inf  # noqa: E402  # after the torch skip

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible to torch")

_ENCODER = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")


def order_events(n: int, *, seed: int = 1, id_base: int = 2**60, id_span: int = 2**20,
                 customers: int = 50) -> list[RawEvent]:
    """A small local workload: ``n`` orders (created, 1-3 items, paid), money as JSON
    numbers, IDs ``id_base + random(id_span)`` (dense: float32 makes them collide)."""
    rng = random.Random(seed)
    events: list[RawEvent] = []
    order_ids = rng.sample(range(id_base, id_base + id_span), n)
    for oid in order_ids:
        stream = f"order-{oid}"
        at = Timestamp("2024-05-01T12:00:00.123456789+02:00")
        evs: list[tuple[str, int, object]] = [("OrderCreated", 1, OrderCreated(
            order_id=oid, customer_id=id_base + rng.randrange(customers),
            request_id=uuid.UUID(int=rng.getrandbits(128)), currency=Currency.EUR,
            shipping_address=Address("1 rue A", "Paris", "75001", "FR"), occurred_at=at))]
        total = Decimal(0)
        for sku in rng.sample(range(2**54, 2**54 + 1000), rng.randint(1, 3)):
            price = Decimal(rng.randrange(1, 10**6)).scaleb(-2)
            qty = rng.randint(1, 4)
            total += price * qty
            evs.append(("ItemAdded", 2, ItemAdded(order_id=oid, sku=sku, quantity=qty,
                                                  unit_price=Money(price, Currency.EUR),
                                                  occurred_at=at)))
        evs.append(("PaymentAuthorized", 2, PaymentAuthorized(
            order_id=oid, payment_id=uuid.UUID(int=rng.getrandbits(128)),
            amount=Money(total, Currency.EUR), occurred_at=at)))
        for version, (name, schema, ev) in enumerate(evs):
            events.append(RawEvent(stream=stream, version=version, type=name,
                                   data=_ENCODER.encode(ev), schema_version=schema,
                                   id=str(uuid.UUID(int=rng.getrandbits(128)))))
    return events


@pytest.fixture(scope="module")
def orders() -> tuple[list, list]:
    return inf.rehydrate_orders(order_events(120))


@pytest.fixture(scope="module")
def small_ids() -> tuple[list, list]:
    # IDs below 2**24: float32 holds every one of them exactly
    return inf.rehydrate_orders(order_events(40, id_base=1000, id_span=10**6))


# -- import hygiene ------------------------------------------------------------------------

def test_importing_does_not_import_torch() -> None:
    code = ("import sys, evtools, evtools.inference, evtools.plots.inference; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(MissingDependency) as err:
        inf.select_device("cpu")
    assert err.value.module == "torch" and err.value.extra == "torch"


# -- pipelines -----------------------------------------------------------------------------

def test_typed_columns_are_exact_int64(orders: tuple[list, list]) -> None:
    typed, _ = orders
    cols = inf.TypedPipeline().columns(typed)
    assert cols.ids.dtype == np.int64 and cols.ids.shape == (len(typed), 2)
    assert cols.ids[:, 0].tolist() == [o.order_id for o in typed]
    assert cols.ids[:, 1].tolist() == [o.customer_id for o in typed]
    assert all(v > 2**53 for v in cols.ids[:, 0].tolist())
    assert cols.money.dtype == np.int64
    assert [Decimal(int(c)).scaleb(-2) for c in cols.money[:, 0]] == [o.total for o in typed]
    assert cols.numeric.dtype == np.float32 and cols.numeric.shape == (len(typed), 3)
    assert cols.counts[:, 0].tolist() == [len(o.lines) for o in typed]


def test_typed_tensors_share_memory_with_numpy(orders: tuple[list, list]) -> None:
    cols = inf.TypedPipeline().columns(orders[0][:16])
    batch = cols.to_tensors()
    assert batch.ids.dtype == torch.int64 and batch.numeric.dtype == torch.float32
    assert batch.ids.data_ptr() == cols.ids.ctypes.data  # torch.from_numpy: no copy
    assert batch.numeric.data_ptr() == cols.numeric.ctypes.data


def test_typed_columns_from_exact_state_dicts(orders: tuple[list, list]) -> None:
    typed, _ = orders
    from_aggregates = inf.TypedPipeline().columns(typed[:10])
    from_states = inf.TypedPipeline().columns([o.to_state() for o in typed[:10]])
    np.testing.assert_array_equal(from_aggregates.ids, from_states.ids)
    np.testing.assert_array_equal(from_aggregates.money, from_states.money)


def test_typed_polars_keeps_int64(orders: tuple[list, list]) -> None:
    import polars as pl

    frame = inf.TypedPipeline().columns(orders[0][:5]).to_polars()
    assert frame.schema["order_id"] == pl.Int64
    assert frame["order_id"].to_list() == [o.order_id for o in orders[0][:5]]
    assert frame.schema["total_minor_units"] == pl.Int64


def test_typed_pipeline_refuses_floats() -> None:
    pipeline = inf.TypedPipeline()
    state = {"order_id": 2.0**60, "customer_id": 1, "lines": {}}
    with pytest.raises(InputError, match="order_id"):
        pipeline.columns([state])
    spec = inf.FeatureSpec(features=(inf.Feature("order_id", "id"),
                                     inf.Feature("total", "money")))
    with pytest.raises(InputError, match="Decimal"):
        inf.TypedPipeline(spec).columns([{"order_id": 1, "total": 19.99}])
    with pytest.raises(InputError, match="finer"):
        inf.TypedPipeline(spec).columns([{"order_id": 1, "total": Decimal("0.001")}])
    with pytest.raises(InputError, match="int64"):
        inf.TypedPipeline(spec).columns([{"order_id": 2**63, "total": Decimal(1)}])


def test_naive_pipeline_gives_float32_rows(orders: tuple[list, list]) -> None:
    _, naive = orders
    pipeline = inf.NaivePipeline(batch_size=1)
    batches = list(pipeline.batches(naive[:5]))
    assert len(batches) == 5
    assert batches[0].ids.shape == (1, 2) and batches[0].ids.dtype == torch.int64
    assert batches[0].numeric.dtype == torch.float32
    exact = naive[0]["order_id"]
    assert isinstance(exact, int)  # json.loads keeps it; float32 does not
    assert int(batches[0].ids[0, 0]) != exact
    sliced = list(inf.NaivePipeline(batch_size=4).batches(naive[:10]))
    assert [len(b) for b in sliced] == [4, 4, 2]


def test_feature_spec_validates() -> None:
    with pytest.raises(UsageError):
        inf.FeatureSpec(features=(inf.Feature("total", "money"),))
    with pytest.raises(UsageError):
        inf.Feature("x", "colour")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        inf.TypedPipeline(batch_size=0)
    assert inf.ORDER_FEATURES.columns == ("order_id", "customer_id", "total", "lines",
                                          "quantity")


# -- correctness check ---------------------------------------------------------------------

def test_check_counts_corruption_on_big_ids(orders: tuple[list, list]) -> None:
    typed, naive = orders
    model = inf.risk_scorer(seed=3)
    c = inf.check_pipelines(model, typed, naive, device="cpu", batch_size=32)
    assert c.rows == len(typed)
    assert c.typed_corrupted == 0
    # the money the model receives is a binary float on both paths (the same one here): the
    # typed path is exact only up to that last step (its minor units)
    assert c.typed_money_inexact == c.naive_money_inexact
    assert c.naive_ids_corrupted["order_id"] == len(typed)  # every ID is above 2**24
    assert c.naive_colliding > 0  # dense IDs near 2**60 share float32 values
    # json.loads and the frame's int64 columns keep them, but the frame's to_numpy() is
    # float64 (money is float): IDs near 2**60 change there, before the float32 tensor
    assert c.naive_ids_corrupted_before_tensor["order_id"] > 0.9 * len(typed)
    assert c.naive_ids_corrupted_before_tensor["customer_id"] > 0.9 * len(typed)
    assert c.naive_money_inexact > 0  # binary floats are not the decimal amounts
    assert c.predictions_differ > 0
    assert len(c.trap) == len(typed)
    assert all(exact == o.order_id for (exact, _, _), o in zip(c.trap, typed, strict=True))


def test_correctness_frames(orders: tuple[list, list]) -> None:
    import polars as pl

    typed, naive = orders
    c = inf.check_pipelines(inf.risk_scorer(), typed[:20], naive[:20], device="cpu")
    frame = c.to_frame()
    assert frame["field"].to_list() == ["order_id", "customer_id"]
    assert frame["typed_corrupted"].to_list() == [0, 0]
    assert frame["naive_corrupted"].to_list() == [20, 20]
    trap = c.trap_frame(5)
    assert trap.height == 5 and trap.schema["exact_id"] == pl.Int64
    assert trap["exact_id"].to_list() == [o.order_id for o in typed[:5]]
    assert all(e != 0 for e in trap["float32_error"].to_list())


def test_check_finds_nothing_on_small_ids(small_ids: tuple[list, list]) -> None:
    typed, naive = small_ids
    c = inf.check_pipelines(inf.risk_scorer(seed=3), typed, naive, device="cpu")
    assert c.typed_corrupted == 0
    assert c.naive_corrupted == 0 and c.naive_colliding == 0
    assert c.predictions_differ == 0  # same features, same batching: same scores


def test_check_sees_ids_lost_by_the_decoder(orders: tuple[list, list]) -> None:
    typed, _ = orders
    events = order_events(120)
    # a decoder that reads every integer as float64, like Go's interface{} or JS
    _, naive = inf.rehydrate_orders(events, naive_dialect=lambda b: json.loads(
        b, parse_int=float))
    c = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu")
    assert c.naive_ids_corrupted_before_tensor["order_id"] > 0


def test_check_requires_aligned_states(orders: tuple[list, list]) -> None:
    typed, naive = orders
    with pytest.raises(UsageError, match="length"):
        inf.check_pipelines(inf.risk_scorer(), typed, naive[:-1], device="cpu")


def test_check_counts_rows_scored_nan_apart(orders: tuple[list, list],
                                            caplog: pytest.LogCaptureFixture) -> None:
    typed, naive = orders
    big = sum(1 for o in typed if o.authorized_amount.amount > 65504)
    assert big > 0  # order totals above float16's largest value: they overflow to inf
    with caplog.at_level(logging.WARNING, logger="evtools.inference"):
        c = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu",
                                dtype="float16")
    assert c.predictions_non_finite > 0
    assert math.isfinite(c.max_abs_prediction_diff)  # over the rows both scored
    assert c.predictions_differ <= c.rows - c.predictions_non_finite
    assert "65504" in caplog.text and "NaN or infinity" in caplog.text
    doc = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert doc["predictions_non_finite"] == c.predictions_non_finite


def test_correctness_to_dict_is_json_when_no_row_compares(orders: tuple[list, list]) -> None:
    typed, naive = orders
    c = inf.check_pipelines(inf.risk_scorer(), typed[:10], naive[:10], device="cpu")
    none_finite = dataclasses.replace(c, max_abs_prediction_diff=float("nan"),
                                      predictions_non_finite=10, predictions_differ=0)
    doc = json.loads(json.dumps(none_finite.to_dict(), allow_nan=False))
    assert doc["max_abs_prediction_diff"] is None
    back = inf.Correctness.from_dict(doc)
    assert math.isnan(back.max_abs_prediction_diff)
    assert back.predictions_non_finite == 10


# -- the model -----------------------------------------------------------------------------

def test_hash_matches_numpy_and_python_reference() -> None:
    model = inf.risk_scorer(seed=5, buckets=1000)
    ids = torch.tensor([[0, 1], [2**53 + 1, 2**53], [2**63 - 1, -(2**63)], [-5, 7]],
                       dtype=torch.int64)
    got = model.bucket(ids).numpy()
    params = model.hash_params.numpy()
    np.testing.assert_array_equal(got, inf.hash_ids(ids.numpy(), params, 1000))
    p = inf.HASH_PRIME
    for row in range(ids.shape[0]):
        for col in range(2):
            x = int(ids[row, col])
            for h in range(params.shape[1]):
                a, b, c = (int(v) for v in params[col, h])
                want = ((a * ((x >> 32) & 0xFFFFFFFF)) % p + (b * (x & 0xFFFFFFFF)) % p + c) \
                    % p % 1000
                assert got[row, col, h] == want
    assert got.min() >= 0 and got.max() < 1000
    # adjacent IDs above 2**53 land in different buckets (float64 would merge them)
    assert not np.array_equal(got[1, 0], got[1, 1])


def test_model_is_deterministic_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a, b, c = inf.risk_scorer(seed=11), inf.risk_scorer(seed=11), inf.risk_scorer(seed=12)
    assert torch.equal(before, torch.get_rng_state())
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(),
                                   strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["embedding.weight"],
                           c.state_dict()["embedding.weight"])
    assert isinstance(a, inf.OrderRiskScorer)


def test_model_output_shape_and_range(orders: tuple[list, list]) -> None:
    batch = inf.TypedPipeline().columns(orders[0][:17]).to_tensors()
    with torch.inference_mode():
        out = inf.risk_scorer()(batch.ids, batch.numeric)
    assert out.shape == (17,) and out.dtype == torch.float32
    assert bool(((out > 0) & (out < 1)).all())


def test_predictions_same_for_any_batch_size(orders: tuple[list, list]) -> None:
    model = inf.risk_scorer(seed=2)
    one = inf.TypedPipeline(batch_size=1).predict(model, orders[0][:20])
    many = inf.TypedPipeline(batch_size=8).predict(model, orders[0][:20])
    assert one.shape == (20,)
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)


# -- harness -------------------------------------------------------------------------------

def test_select_device() -> None:
    auto = inf.select_device("auto")
    assert auto.type == ("cuda" if CUDA else "mps" if inf._mps_available() else "cpu")
    assert inf.select_device("cpu").type == "cpu"
    with pytest.raises(UsageError):
        inf.select_device("tpu")
    if not CUDA:
        with pytest.raises(UsageError, match="CUDA"):
            inf.select_device("cuda")


def test_environment_records_machine_and_versions() -> None:
    env = inf.environment("cpu")
    for key in ("device", "device_name", "torch", "cuda", "cudnn", "torch_threads",
                "loadavg", "cpu_count", "python", "numpy"):
        assert key in env
    assert env["torch"] == torch.__version__
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["cpu_count"] >= 1
    json.dumps(env)


class _UserModel(torch.nn.Module):
    """Any user module: one float input, one output per row."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(1)


def test_benchmark_model_accepts_any_module() -> None:
    inputs = (torch.randn(50, 4),)
    runs = inf.benchmark_model(_UserModel(), inputs, batch_sizes=(1, 16, 64), device="cpu",
                               warmup=1, latency_requests=5, min_seconds=0.0,
                               max_requests=3)
    assert [r.batch_size for r in runs] == [1, 16, 64]  # 64 > 50 rows: wraps around
    for r in runs:
        assert r.stage == "model" and len(r.latencies_ms) == 5
        assert r.requests >= 1 and r.samples == r.requests * r.batch_size
        assert r.throughput > 0 and r.p50_ms <= r.p99_ms
        assert r.peak_memory_bytes is None  # CPU: no device allocator to read


def test_benchmark_model_bfloat16_on_cpu(orders: tuple[list, list]) -> None:
    batch = inf.TypedPipeline().columns(orders[0][:32]).to_tensors()
    runs = inf.benchmark_model(inf.risk_scorer(), batch, batch_sizes=(8,), device="cpu",
                               dtype="bfloat16", warmup=1, latency_requests=2,
                               min_seconds=0.0, max_requests=2)
    assert runs[0].samples == runs[0].requests * 8 and runs[0].requests >= 1
    with pytest.raises(UsageError):
        inf.benchmark_model(inf.risk_scorer(), batch, device="cpu", dtype="int8")


def test_benchmarks_leave_the_callers_model_as_it_was(orders: tuple[list, list]) -> None:
    import torch

    model = inf.risk_scorer()
    batch = inf.TypedPipeline().columns(orders[0][:16]).to_tensors()
    inf.benchmark_model(model, batch, batch_sizes=(8,), device="cpu", dtype="bfloat16",
                        warmup=1, latency_requests=2, min_seconds=0.0, max_requests=2)
    assert next(model.parameters()).dtype == torch.float32  # not recast in place


def test_predict_takes_auto_and_a_missing_cuda_is_a_usage_error(
        orders: tuple[list, list]) -> None:
    import torch

    typed, naive = orders[0][:5], orders[1][:5]
    model = inf.risk_scorer()
    assert inf.TypedPipeline().predict(model, typed, device="auto").shape == (5,)
    assert inf.NaivePipeline().predict(model, naive, device="auto").shape == (5,)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="torch sees no CUDA GPU"):
            inf.TypedPipeline().predict(model, typed, device="cuda")


def test_a_torch_device_argument_is_written_as_text() -> None:
    import torch

    result = inf.run_inference_benchmark(torch.device("cpu"), (1, 8), n_orders=20, repeats=1,
                                         round_seconds=0.01, model_seconds=0.01,
                                         latency_requests=3)
    assert json.loads(result.to_json())["config"]["device"] == "cpu"


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
                                    Decimal("0.1000000000000000000000000000001")])
def test_money_that_is_not_a_whole_number_of_cents_is_an_input_error(amount: Decimal) -> None:
    spec = inf.FeatureSpec((inf.Feature("order_id", "id"), inf.Feature("m", "money")))
    with pytest.raises(InputError) as info:
        inf.TypedPipeline(spec).columns([{"order_id": 1, "m": amount}])
    assert info.value.context.path == "/m"


def test_benchmark_pipelines_runs_both(orders: tuple[list, list]) -> None:
    typed, naive = orders
    runs = inf.benchmark_pipelines(inf.risk_scorer(), typed[:40], naive[:40],
                                   batch_sizes=(1, 16), device="cpu", repeats=2,
                                   warmup_states=4, min_seconds=0.0)
    keys = [(r.pipeline, r.mode, r.batch_size) for r in runs]
    assert keys == [("naive", "per-row", 1), ("naive", "batched", 16),
                    ("typed", "per-row", 1), ("typed", "batched", 16)]
    naive_row = runs[0]
    assert naive_row.stage == "end-to-end" and naive_row.samples == 40  # one pass a round
    assert naive_row.repeats == 2 and naive_row.requests == 40
    assert len(naive_row.latencies_ms) == 80  # 40 requests x 2 repeats
    assert len(runs[3].latencies_ms) == 2 * 3  # ceil(40 / 16) requests x 2 repeats


def test_cold_start_records_each_step(orders: tuple[list, list]) -> None:
    example = inf.TypedPipeline().columns(orders[0][:1]).to_tensors().as_inputs()
    cold = inf.measure_cold_start(lambda: inf.risk_scorer(seed=1), example, device="cpu")
    assert cold.construct_s > 0 and cold.first_inference_s > 0
    assert cold.total_s == pytest.approx(cold.construct_s + cold.load_s + cold.to_device_s
                                         + cold.first_inference_s)
    assert cold.device_initialised


def _fake_benchmark(orders: tuple[list, list]) -> inf.InferenceBenchmark:
    typed, naive = orders
    model = inf.risk_scorer()
    runs = inf.benchmark_pipelines(model, typed[:30], naive[:30], batch_sizes=(1, 8),
                                   device="cpu", repeats=1, warmup_states=0, min_seconds=0.0)
    correctness = inf.check_pipelines(model, typed[:30], naive[:30], device="cpu")
    return inf.InferenceBenchmark(environment=inf.environment("cpu"),
                                  config={"dtype": "float32", "seed": 0}, runs=runs,
                                  correctness=correctness)


def test_results_to_frame_and_json(orders: tuple[list, list]) -> None:
    bench = _fake_benchmark(orders)
    frame = bench.to_frame()
    assert frame.height == len(bench.runs)
    for col in ("pipeline", "batch_size", "throughput", "p50_ms", "p90_ms", "p95_ms",
                "p99_ms", "device"):
        assert col in frame.columns
    assert list(bench.to_frame("pandas").columns) == frame.columns
    doc = json.loads(bench.to_json())
    assert doc["headlines"]["typed_corrupted_ids"] == 0
    assert doc["headlines"]["naive_corrupted_ids"] > 0
    assert doc["correctness"]["trap"][0][0] == str(orders[0][0].order_id)  # exact in JSON
    back = inf.InferenceBenchmark.from_dict(doc)
    assert back.correctness == bench.correctness
    assert [r.summary() for r in back.runs] == [r.summary() for r in bench.runs]
    assert bench.speedup == pytest.approx(bench.best_typed.throughput  # type: ignore[union-attr]
                                          / bench.naive_per_row.throughput)  # type: ignore[union-attr]
    assert "corrupted IDs" in bench.summary()


def test_results_read_back_without_latencies_and_name_what_is_wrong(
        orders: tuple[list, list]) -> None:
    doc = _fake_benchmark(orders).to_dict(latencies=False)
    back = inf.InferenceBenchmark.from_dict(doc)
    assert all(not r.latencies_ms and r.stats for r in back.runs)
    assert [r.p99_ms for r in back.runs] == [r["p99_ms"] for r in doc["runs"]]
    broken = {**doc, "runs": [*doc["runs"][:1], {**doc["runs"][1], "batch_size": "eight"}]}
    with pytest.raises(InputError, match="not a benchmark run: Expected `int`, got `str`") \
            as info:
        inf.InferenceBenchmark.from_dict(broken)
    assert info.value.context.path == "/runs/1/batch_size"
    with pytest.raises(InputError, match="missing required field `environment`"):
        inf.InferenceBenchmark.from_dict({"runs": []})
    with pytest.raises(InputError) as info:
        inf.InferenceBenchmark.from_dict({**doc, "correctness": {**doc["correctness"],
                                                                 "trap": [["1", "1.5e3", "2"]]}})
    assert info.value.context.path == "/correctness/trap/0"
    with pytest.raises(InputError) as info:  # a map's values are pointed at as *
        inf.InferenceBenchmark.from_dict({**doc, "correctness": {**doc["correctness"],
                                                                 "ids_distinct": {"a": "3"}}})
    assert info.value.context.path == "/correctness/ids_distinct/*"
    for field, value in (("batch_size", "64"), ("samples", 12.5), ("repeats", True)):
        with pytest.raises(InputError, match="Expected `int`"):  # no silent coercion
            inf.Run.from_dict({**doc["runs"][0], field: value})


def test_figures_written_as_null_read_back_as_nan(orders: tuple[list, list]) -> None:
    bench = _fake_benchmark(orders)
    bench.runs[0] = dataclasses.replace(bench.runs[0], throughput=math.inf, seconds=0.0,
                                        latencies_ms=[1.0, math.nan])
    doc = json.loads(bench.to_json())
    assert doc["runs"][0]["throughput"] is None
    back = inf.InferenceBenchmark.from_dict(doc)
    assert math.isnan(back.runs[0].throughput)
    assert back.runs[0].latencies_ms[0] == 1.0 and math.isnan(back.runs[0].latencies_ms[1])


_MEMBERS = ["environment", "config", "runs", "correctness", "cold_start"]


@given(st.dictionaries(st.sampled_from(_MEMBERS), json_values, max_size=5)
       | json_values)
def test_property_results_from_any_json_read_or_raise_an_input_error(doc: object) -> None:
    try:
        bench = inf.InferenceBenchmark.from_dict(doc)  # type: ignore[arg-type]
    except InputError as e:
        assert e.context.path is not None
    else:
        assert isinstance(bench.runs, list) and isinstance(bench.environment, dict)


def test_run_inference_benchmark_small() -> None:
    pytest.importorskip("evtools.datagen")
    bench = inf.run_inference_benchmark("cpu", (1, 16), n_orders=60, seed=3, repeats=1,
                                        round_seconds=0.0, model_seconds=0.0,
                                        latency_requests=3)
    assert bench.config["seed"] == 3 and bench.config["rows"] == 60
    assert bench.correctness is not None
    assert bench.correctness.typed_corrupted == 0
    assert bench.correctness.naive_corrupted > 0
    assert bench.cold_start is not None
    assert {r.stage for r in bench.runs} == {"end-to-end", "model"}
    for key in ("torch", "torch_threads", "loadavg", "cpu_count", "device_name"):
        assert key in bench.environment
    json.loads(bench.to_json())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_threads": -2}, "num_threads"),
    ({"num_threads": 1.5}, "num_threads"),
    ({"batch_sizes": (0, 8)}, "batch sizes"),
    ({"batch_sizes": ("x",)}, "batch sizes"),
    ({"batch_sizes": ()}, "batch sizes"),
    ({"n_orders": 0}, "n_orders"),
    ({"repeats": 0}, "repeats"),
    ({"latency_requests": 0}, "latency_requests"),
    ({"warmup_states": -1}, "warmup_states"),
    ({"round_seconds": -1.0}, "seconds"),
    # out of the C and 64-bit ranges torch takes: had ended in OverflowError / ValueError
    ({"batch_sizes": (99999999999999999999,)}, r"batch size 99999999999999999999 is more "
                                               r"than n_orders \(10\)"),
    ({"batch_sizes": (1, 2_000_000_000)}, "more than n_orders"),  # had been killed (memory)
    ({"batch_sizes": (True, 8)}, "batch sizes"),
    ({"num_threads": 99999999999999999999}, "num_threads"),
    ({"num_threads": 10**6}, "num_threads"),
    ({"seed": 99999999999999999999999}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": 7.5}, "seed"),
    ({"n_orders": 10.5}, "n_orders"),
    ({"n_orders": True}, "n_orders"),
    ({"repeats": 2.5}, "repeats"),
    ({"latency_requests": True}, "latency_requests"),
    ({"round_seconds": math.nan}, "round_seconds"),  # had never ended (elapsed >= nan)
    ({"model_seconds": math.inf}, "model_seconds"),
])
def test_run_inference_benchmark_rejects_bad_arguments_before_running(
        kwargs: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("the benchmark started with a bad argument")

    monkeypatch.setattr(inf, "order_workload", no_work)
    threads = torch.get_num_threads()
    args: dict[str, object] = {"device": "cpu", "batch_sizes": (1,), "n_orders": 10}
    with pytest.raises(UsageError, match=message):
        inf.run_inference_benchmark(**{**args, **kwargs})  # type: ignore[arg-type]
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch-sizes", "99999999999999999999", "more than n_orders"),
    ("--batch-sizes", "2000000000", "more than n_orders"),
    ("--threads", "99999999999999999999", "num_threads"),
    ("--seed", "99999999999999999999999", "seed"),
])
def test_cli_bench_inference_refuses_out_of_range_numbers_with_exit_2(
        option: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("the benchmark started with a bad argument")

    monkeypatch.setattr(inf, "order_workload", no_work)
    argv = ["bench", "inference", "--device", "cpu", "--n-orders", "10",
            "--batch-sizes", "1,8", option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_bench_inference_default_batch_sizes_are_those_up_to_the_orders(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--n-orders 10` with the default sizes (1,8,64,512) had been refused for 64 and 512:
    the defaults are the ones that fit; sizes asked for are taken (or refused) as given."""
    from evtools.cli import main

    bench = inf.run_inference_benchmark("cpu", n_orders=10, repeats=1, round_seconds=0.01,
                                        model_seconds=0.01, latency_requests=5,
                                        warmup_states=2)
    assert bench.config["batch_sizes"] == [1, 8]
    seen: list[object] = []

    def record(**kw: object) -> None:
        seen.append(kw["batch_sizes"])
        raise UsageError("stop here")

    monkeypatch.setattr(inf, "run_inference_benchmark", record)
    assert main(["bench", "inference", "--device", "cpu", "--n-orders", "10"]) == 2
    assert main(["bench", "inference", "--device", "cpu", "--n-orders", "10",
                 "--batch-sizes", "4,64"]) == 2
    assert seen == [None, [4, 64]]  # the defaults are settled there; sizes asked for pass


def test_a_seed_is_what_torch_and_the_workload_take() -> None:
    # torch reads -1 as 2**64 - 1 (the same weights: a silent alias) and refuses 2**64
    same = inf.risk_scorer(seed=2**64 - 1)
    assert same.seed == 2**64 - 1
    for seed in (-1, 2**64, 99999999999999999999999, True, 1.0):
        with pytest.raises(UsageError, match="seed"):
            inf.risk_scorer(seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"buckets": 0}, "buckets"),
    ({"buckets": 2**31}, "buckets"),
    ({"dim": 0}, "dim"),
    ({"n_hashes": -1}, "n_hashes"),
    ({"hidden": (64, 0)}, "hidden"),  # had been a ZeroDivisionError
])
def test_risk_scorer_refuses_sizes_out_of_range(kwargs: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(UsageError, match=message):
        inf.risk_scorer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8", None])
def test_pipelines_refuse_a_batch_size_that_is_not_a_count(batch_size: object) -> None:
    for pipeline in (inf.TypedPipeline, inf.NaivePipeline):
        with pytest.raises(UsageError, match="batch_size"):
            pipeline(batch_size=batch_size)  # type: ignore[arg-type]


def test_a_batch_size_above_the_states_is_one_request_of_all_of_them(
        orders: tuple[list, list]) -> None:
    typed, naive = orders[0][:5], orders[1][:5]
    model = inf.risk_scorer()
    for pipeline, states in ((inf.TypedPipeline(batch_size=10**20), typed),
                             (inf.NaivePipeline(batch_size=np.int64(2**40)), naive)):
        assert type(pipeline.batch_size) is int
        latencies: list[float] = []
        out = pipeline.predict(model, states, device="cpu", latencies=latencies)
        assert out.shape == (5,) and len(latencies) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_sizes": (99999999999999999999,)}, "memory"),  # had been an OverflowError
    ({"batch_sizes": (2**50,)}, "memory"),
    ({"batch_sizes": (2.0,)}, "batch size"),
    ({"max_requests": 0}, "max_requests"),  # had been a RuntimeError (cat of no outputs)
    ({"latency_requests": 0}, "latency_requests"),
    ({"warmup": -1}, "warmup"),
    ({"min_seconds": math.nan}, "min_seconds"),
])
def test_benchmark_model_refuses_bad_arguments(kwargs: dict[str, object],
                                               message: str) -> None:
    args: dict[str, object] = {"batch_sizes": (1,), "device": "cpu", "warmup": 0,
                               "latency_requests": 1, "min_seconds": 0.0, "max_requests": 1}
    with pytest.raises(UsageError, match=message):
        inf.benchmark_model(_UserModel(), (torch.randn(4, 4),),
                            **{**args, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_seconds": math.nan}, "min_seconds"),  # had never ended (elapsed >= nan)
    ({"min_seconds": -1.0}, "min_seconds"),
    ({"repeats": 0}, "repeats"),
    ({"warmup_states": -1}, "warmup_states"),
    ({"batch_sizes": (1, 2.5)}, "batch size"),
    ({"naive_batch_sizes": (0,)}, "naive batch size"),
])
def test_benchmark_pipelines_refuses_bad_arguments(orders: tuple[list, list],
                                                   kwargs: dict[str, object],
                                                   message: str) -> None:
    typed, naive = orders[0][:4], orders[1][:4]
    with pytest.raises(UsageError, match=message):
        inf.benchmark_pipelines(inf.risk_scorer(), typed, naive, device="cpu",
                                **{"batch_sizes": (1,), "repeats": 1, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"trap_samples": -1}, "trap_samples"),  # had silently dropped the last row
    ({"atol": math.nan}, "atol"),  # had counted every prediction as agreeing
    ({"atol": -1.0}, "atol"),
    ({"batch_size": 0}, "batch_size"),
])
def test_check_pipelines_refuses_bad_arguments(orders: tuple[list, list],
                                               kwargs: dict[str, object],
                                               message: str) -> None:
    with pytest.raises(UsageError, match=message):
        inf.check_pipelines(inf.risk_scorer(), orders[0][:4], orders[1][:4], device="cpu",
                            **kwargs)  # type: ignore[arg-type]


def test_order_workload_refuses_a_count_that_is_not_one() -> None:
    for n in (0, True, 2.5):
        with pytest.raises(UsageError, match="n_orders"):
            inf.order_workload(n)  # type: ignore[arg-type]


def test_half_types_on_cpu_warn_and_give_valid_json(
        caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("evtools.datagen")
    with caplog.at_level(logging.WARNING, logger="evtools.inference"):
        bench = inf.run_inference_benchmark("cpu", (1, 8), n_orders=50, seed=7,
                                            dtype="float16", repeats=1, round_seconds=0.0,
                                            model_seconds=0.0, latency_requests=2)
    assert "float16 on the CPU" in caplog.text and "meant for CUDA" in caplog.text
    assert bench.correctness is not None
    assert bench.correctness.predictions_non_finite > 0  # money above 65504 overflows
    doc = json.loads(json.dumps(bench.to_dict(), allow_nan=False))  # no NaN: valid JSON
    assert doc["config"]["dtype"] == "float16"
    assert doc["headlines"]["predictions_non_finite"] > 0
    assert "NaN or infinity" in bench.summary()


def test_order_workload_is_deterministic() -> None:
    pytest.importorskip("evtools.datagen")
    a_typed, a_naive = inf.order_workload(20, seed=5)
    b_typed, b_naive = inf.order_workload(20, seed=5)
    assert [o.state_bytes() for o in a_typed] == [o.state_bytes() for o in b_typed]
    assert a_naive == b_naive
    assert len(a_typed) == len(a_naive) == 20



# -- device placement, staging and warm-up (the device-generic code, run on the CPU) -------

class _NumericOnly(torch.nn.Module):
    """A user model that, unlike the risk scorer, does not cast its inputs itself."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return self.linear(numeric).squeeze(1)


def test_predict_runs_the_model_on_the_device_in_the_dtype(orders: tuple[list, list]) -> None:
    # predict had moved only the inputs: a CPU model with device="cuda" (or "auto" on a GPU
    # machine) mixed CUDA inputs with CPU weights, and dtype="bfloat16" ran float32 weights
    typed, naive = orders[0][:20], orders[1][:20]
    model = inf.risk_scorer(seed=6)
    half = inf.risk_scorer(seed=6).to(torch.bfloat16)
    for pipeline, states in ((inf.TypedPipeline(batch_size=8), typed),
                             (inf.NaivePipeline(batch_size=8), naive)):
        got = pipeline.predict(model, states, dtype="bfloat16")
        want = pipeline.predict(half, states, dtype="bfloat16")
        assert torch.equal(got, want)
        assert next(model.parameters()).dtype == torch.float32  # the caller's, as it was
        user = _NumericOnly()
        assert pipeline.predict(user, states, dtype="bfloat16").shape == (20,)
        assert user.linear.weight.dtype == torch.float32


def test_on_device_reads_cuda_without_index_as_the_current_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # select_device gives torch.device("cuda"); parameters report cuda:0, and the two compare
    # unequal: the model was deep-copied on every call, even when it already was there
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert torch.device("cuda") != torch.device("cuda:0")
    assert inf._on_device(torch.device("cuda:0"), torch.device("cuda"))
    assert not inf._on_device(torch.device("cuda:1"), torch.device("cuda"))
    assert not inf._on_device(torch.device("cpu"), torch.device("cuda"))
    assert inf._on_device(torch.device("mps:0"), torch.device("mps"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert inf._on_device(torch.device("cuda:1"), torch.device("cuda"))
    model = inf.risk_scorer()
    assert inf._own_copy(model, torch.device("cpu"), torch.float32) is model
    assert inf._own_copy(model, torch.device("cpu"), torch.bfloat16) is not model


class _RowRecorder(torch.nn.Module):
    """Records the rows (their values are their index) and the storage of each request."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[int]] = []
        self.storages: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x[:, 0].long().tolist())
        self.storages.add(x.untyped_storage().data_ptr())
        return x.sum(1)


def test_every_model_request_is_a_slice_of_one_prepared_buffer() -> None:
    # a request wrapping past the last row had gathered (and on CUDA pinned) a fresh copy
    # inside the timed loops, so about b/N of the requests did more work (the tail
    # latencies), and on MPS a non_blocking copy could read that temporary after its release
    n = 10
    model = _RowRecorder()
    inf.benchmark_model(model, (torch.arange(n, dtype=torch.float32).unsqueeze(1),),
                        batch_sizes=(4, 16), device="cpu", warmup=0, latency_requests=4,
                        min_seconds=0.0, max_requests=1)
    want = [[(i * b + r) % n for r in range(b)] for b in (4, 16) for i in [0, 1, 2, 3, 0]]
    assert model.rows == want
    assert len(model.storages) == 1


def test_cold_start_leaves_the_safety_copy_out_of_to_device(
        orders: tuple[list, list], monkeypatch: pytest.MonkeyPatch) -> None:
    # moving a CPU model to CUDA (or to a half type) deep-copied it inside to_device_s;
    # a fake clock that jumps 1000 s during the copy shows where the copy is counted
    clock = [0.0]

    def tick() -> float:
        clock[0] += 0.001
        return clock[0]

    real_deepcopy = inf.copy.deepcopy

    def slow_deepcopy(obj: object, *args: object) -> object:
        clock[0] += 1000.0
        return real_deepcopy(obj, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(inf.time, "perf_counter", tick)
    monkeypatch.setattr(inf.copy, "deepcopy", slow_deepcopy)
    built: list[torch.nn.Module] = []

    def factory() -> torch.nn.Module:
        built.append(inf.risk_scorer(seed=1))
        return built[-1]

    example = inf.TypedPipeline().columns(orders[0][:1]).to_tensors().as_inputs()
    cold = inf.measure_cold_start(factory, example, device="cpu", dtype="bfloat16")
    assert cold.to_device_s < 1000.0 and cold.total_s < 1000.0
    assert next(built[0].parameters()).dtype == torch.float32  # copied, not cast under it


def test_warm_up_covers_every_request_shape_that_is_timed(orders: tuple[list, list],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # 40 states in requests of 16: the timed passes end with a request of 8 rows, a shape
    # the warm-up (two full requests) never ran: on CUDA its kernels loaded while timed
    typed, naive = orders[0][:40], orders[1][:40]
    timed = [False]
    seen: dict[bool, set[int]] = {False: set(), True: set()}

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inf.risk_scorer()

        def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
            seen[timed[0]].add(int(ids.shape[0]))
            out: torch.Tensor = self.inner(ids, numeric)
            return out

    real_round = inf._e2e_round

    def round_(*args: object, **kwargs: object) -> None:
        timed[0] = True
        real_round(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inf, "_e2e_round", round_)
    inf.benchmark_pipelines(Recorder(), typed, naive, batch_sizes=(1, 16), device="cpu",
                            repeats=1, warmup_states=4, min_seconds=0.0)
    assert seen[True] == {1, 16, 8}
    assert seen[True] <= seen[False]


def test_check_counts_typed_money_that_the_dtype_rounds(orders: tuple[list, list],
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    # the typed path's IDs and cents are exact, but money reaches the model as float in the
    # model's dtype: in bfloat16 most amounts lose their cents, which nothing had said
    typed, naive = orders
    assert all(o.total < 2**17 for o in typed)  # float32 keeps every cent below 2**17
    exact = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu")
    assert exact.typed_money_cents_lost == 0
    with caplog.at_level(logging.WARNING, logger="evtools.inference"):
        half = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu",
                                   dtype="bfloat16")
    assert half.typed_money_cents_lost > 0
    # an amount off by a cent is inexact too; the IDs stay exact
    assert half.typed_corrupted == 0 and half.typed_money_inexact >= half.typed_money_cents_lost
    assert "without their cents" in caplog.text and "bfloat16" in caplog.text
    doc = json.loads(json.dumps(half.to_dict(), allow_nan=False))
    assert inf.Correctness.from_dict(doc).typed_money_cents_lost == half.typed_money_cents_lost


def test_environment_resolves_the_device_and_refuses_a_missing_cuda() -> None:
    auto = inf.environment("auto")
    assert auto["device"] == str(inf.select_device("auto"))
    if not CUDA:
        with pytest.raises(UsageError, match="CUDA"):
            inf.environment("cuda")  # had been an AssertionError from torch.cuda


# -- what the checks count, and what they are given ---------------------------------------

def _money_seen(values: list[float], exact: list[Decimal]) -> tuple[int, int]:
    """(amounts not exactly their decimal, amounts not rounding to their cent) of ``values``,
    the money as the model receives it, against the exact amounts."""
    import decimal

    inexact = lost = 0
    with decimal.localcontext(prec=200):
        for value, amount in zip(values, exact, strict=True):
            if not math.isfinite(value):
                inexact, lost = inexact + 1, lost + 1
                continue
            inexact += Decimal(value) != amount
            lost += round(Decimal(value).scaleb(2)) != amount.scaleb(2)
    return inexact, lost


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_money_counts_measure_both_paths_on_what_the_model_receives(
        orders: tuple[list, list], dtype: str) -> None:
    # typed_money_inexact had been counted on the exact int64 cents (always 0), naive_money_*
    # on a float32 tensor whatever the model's dtype, typed_money_cents_lost in the model's
    # dtype: with the same money reaching the model on both paths, float32 had reported the
    # naive path alone inexact and float16 the typed path alone losing cents
    typed, naive = orders
    fdtype = getattr(torch, dtype)
    n = len(typed)
    typed_money = next(inf.TypedPipeline(batch_size=n).batches(typed)).numeric[:, 0]
    naive_money = next(inf.NaivePipeline(batch_size=n).batches(naive)).numeric[:, 0]
    assert torch.equal(typed_money.to(fdtype), naive_money.to(fdtype))  # same on both paths
    inexact, lost = _money_seen(typed_money.to(fdtype).double().tolist(),
                                [o.total for o in typed])
    c = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu", dtype=dtype)
    assert c.typed_money_inexact == c.naive_money_inexact == inexact > 0
    assert c.typed_money_cents_lost == c.naive_money_cents_lost == lost
    assert (lost == 0) if dtype == "float32" else (lost > 0)


def test_ids_before_the_tensor_are_those_pandas_hands_to_torch(
        orders: tuple[list, list]) -> None:
    # the count had read the frame's exact int64 column (0), but the pipeline hands torch
    # `df.to_numpy()`, float64 rows when the frame mixes int64 IDs and float money
    typed, naive = orders
    rows = inf.NaivePipeline(batch_size=512).frame(naive).to_numpy()
    assert rows.dtype == np.float64
    c = inf.check_pipelines(inf.risk_scorer(), typed, naive, device="cpu")
    for j, field in enumerate(("order_id", "customer_id")):
        want = sum(int(v) != getattr(o, field)
                   for v, o in zip(rows[:, j].tolist(), typed, strict=True))
        assert c.naive_ids_corrupted_before_tensor[field] == want > 0
    assert all(frame == exact for exact, frame, _ in c.trap)  # the column itself is exact
    # a frame of int64 columns only is handed over as int64: nothing changes before torch
    ids_only = inf.FeatureSpec((inf.Feature("order_id", "id"),
                                inf.Feature("customer_id", "id")))
    assert inf.NaivePipeline(ids_only).frame(naive).to_numpy().dtype == np.int64
    c = inf.check_pipelines(inf.risk_scorer(ids_only), typed, naive, spec=ids_only,
                            device="cpu")
    assert c.naive_ids_corrupted_before_tensor == {"order_id": 0, "customer_id": 0}
    assert c.naive_ids_corrupted["order_id"] == len(typed)  # float32 changes them


@pytest.mark.filterwarnings("ignore:.*infer_string")
@pytest.mark.parametrize("infer_string", [True, False])  # text as pandas 3 / pandas 2 holds it
def test_naive_pipeline_parses_numbers_held_as_text(infer_string: bool) -> None:
    # pandas 3 holds text as a str dtype, not object: pd.to_numeric never ran and
    # torch.tensor got an object array (TypeError); pandas 2 did that for IDs beyond int64
    import pandas as pd

    with pd.option_context("future.infer_string", infer_string):
        text = [{"order_id": "9007199254740993", "customer_id": 1, "lines": {}}]
        frame = inf.NaivePipeline().frame(text)
        assert frame["order_id"].dtype == np.int64
        assert frame["order_id"].tolist() == [2**53 + 1]  # parsed exactly...
        for b in (1, 4):
            batch = next(inf.NaivePipeline(batch_size=b).batches(text))
            assert batch.ids.tolist() == [[2**53, 1]]  # ...then float32 rounds it: modelled
        bad: list[object] = ["abc", 2**70, str(2**70), -(2**64), {"a": 1}, True]
        for value in bad:
            with pytest.raises(InputError, match="order_id") as info:
                list(inf.NaivePipeline().batches([{"order_id": value, "customer_id": 1,
                                                   "lines": {}}]))
            assert info.value.context.path == "/order_id"
            assert "\n" not in str(info.value)


class _ModeRecorder(torch.nn.Module):
    """The risk scorer, recording the training mode of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = inf.risk_scorer()
        self.modes: list[bool] = []

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        out: torch.Tensor = self.inner(ids, numeric)
        return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # used as is; copied (a cast)
def test_the_callers_model_keeps_its_training_mode(orders: tuple[list, list], dtype: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a model used as is (on the CPU in float32: no copy) had been left in eval mode
    typed, naive = orders[0][:8], orders[1][:8]
    real_deepcopy = inf.copy.deepcopy
    copied: list[object] = []

    def deepcopy(obj: object, *args: object) -> object:
        if isinstance(obj, torch.nn.Module):  # `copy` is the module others use too
            copied.append(obj)
        return real_deepcopy(obj, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(inf.copy, "deepcopy", deepcopy)
    example = inf.TypedPipeline().columns(typed[:1]).to_tensors()
    model = _ModeRecorder().train()
    model.inner.mlp.eval()  # modes mixed on purpose: each one is restored
    calls = [
        lambda: inf.TypedPipeline(batch_size=4).predict(model, typed, device="cpu",
                                                        dtype=dtype),
        lambda: inf.NaivePipeline(batch_size=4).predict(model, naive, device="cpu",
                                                        dtype=dtype),
        lambda: inf.check_pipelines(model, typed, naive, device="cpu", dtype=dtype),
        lambda: inf.benchmark_model(model, example, batch_sizes=(1,), device="cpu",
                                    dtype=dtype, warmup=1, latency_requests=1,
                                    min_seconds=0.0, max_requests=1),
        lambda: inf.benchmark_pipelines(model, typed, naive, batch_sizes=(4,), device="cpu",
                                        dtype=dtype, repeats=1, warmup_states=0,
                                        min_seconds=0.0),
        lambda: inf.measure_cold_start(lambda: model, example.as_inputs(), device="cpu",
                                       dtype=dtype),
    ]
    for call in calls:
        call()
        assert model.training and model.inner.training and model.inner.embedding.training
        assert not model.inner.mlp.training and not model.inner.mlp[0].training
    if dtype == "float32":
        assert not copied  # no copy of a model that is already right
        assert model.modes and not any(model.modes)  # it ran, in eval mode
    else:
        assert copied and not model.modes  # a copy ran
    assert next(model.parameters()).dtype == torch.float32


def test_a_huge_decimal_amount_is_refused_from_its_exponent() -> None:
    # `int()` of 1E+1000000 had built a million-digit integer (about 37 s) before the range
    # check refused it, and scaling 1E+999999999999999999 had raised decimal.Overflow: the
    # exponent alone refuses them now, before any arithmetic (no timing asserted here)
    spec = inf.FeatureSpec((inf.Feature("order_id", "id"), inf.Feature("total", "money")))
    pipeline = inf.TypedPipeline(spec)
    for amount in ("1E+999999999999999999", "-1E+999999999999999999", "1E+1000000",
                   "1E+17", "92233720368547758.08"):
        with pytest.raises(InputError, match="beyond int64 minor units") as info:
            pipeline.columns([{"order_id": 1, "total": Decimal(amount)}])
        assert info.value.context.path == "/total"
    fits = ["0E+1000000", "-0E+1000000", "92233720368547758.07", "-92233720368547758.08",
            "1E-5000", "0.10"]
    with pytest.raises(InputError, match="finer"):  # tiny, not zero: finer than a cent
        pipeline.columns([{"order_id": 1, "total": Decimal("1E-5000")}])
    got = pipeline.columns([{"order_id": 1, "total": Decimal(a)} for a in fits
                            if a != "1E-5000"]).money[:, 0].tolist()
    assert got == [0, 0, 2**63 - 1, -(2**63), 10]


def _order_state(orders: tuple[list, list]) -> dict[str, object]:
    state: dict[str, object] = orders[0][0].to_state()
    return state


@pytest.mark.parametrize(("call", "error", "message"), [
    # each had been a traceback (TypeError, AttributeError, IndexError) or, for a
    # money_scale of 2.5, accepted and then a TypeError
    (lambda o: inf.TypedPipeline().columns([_order_state(o), o[0][1]]), UsageError,
     "state dicts and aggregates"),
    (lambda o: inf.TypedPipeline().columns([o[0][1], _order_state(o)]), UsageError,
     "state dicts and aggregates"),
    (lambda o: inf.FeatureSpec((inf.Feature("order_id", "id"),),
                               money_scale="2"), UsageError, "money_scale"),  # type: ignore[arg-type]
    (lambda o: inf.FeatureSpec((inf.Feature("order_id", "id"),),
                               money_scale=2.5), UsageError, "money_scale"),  # type: ignore[arg-type]
    (lambda o: inf.FeatureSpec((inf.Feature("order_id", "id"),),
                               money_scale=True), UsageError, "money_scale"),
    (lambda o: inf.FeatureSpec((inf.Feature("order_id", "id"), "total")),  # type: ignore[arg-type]
     UsageError, "Feature"),
    (lambda o: inf.risk_scorer(hidden=64), UsageError, "hidden"),  # type: ignore[arg-type]
    (lambda o: inf.risk_scorer(hidden="64"), UsageError, "hidden"),
    (lambda o: inf.benchmark_model(inf.risk_scorer(), (torch.zeros(4, 2).long().numpy(),
                                                       torch.zeros(4, 3).numpy())),
     UsageError, "torch.Tensor"),
    (lambda o: inf.benchmark_model(inf.risk_scorer(), (torch.zeros(4, 2).long(),
                                                       torch.zeros(4, 3)), batch_sizes=8),  # type: ignore[arg-type]
     UsageError, "batch_sizes"),
    (lambda o: inf.benchmark_model(_UserModel(), [torch.tensor(1.0)]), UsageError,
     "dimension"),
    (lambda o: inf.benchmark_model(_UserModel(), torch.zeros(4, 4)), UsageError,
     "tuple"),
    (lambda o: inf.benchmark_model(lambda a, b: a.sum(1).float(),  # type: ignore[arg-type]
                                   (torch.zeros(4, 2).long(), torch.zeros(4, 3))),
     UsageError, "nn.Module"),
    (lambda o: inf.measure_cold_start(lambda: 5, (torch.zeros(1, 2).long(),  # type: ignore[arg-type, return-value]
                                                  torch.zeros(1, 3)), device="cpu"),
     UsageError, "nn.Module"),
    (lambda o: inf.measure_cold_start(inf.risk_scorer, (), device="cpu"), UsageError,
     "input"),
    (lambda o: inf.run_inference_benchmark("cpu", (1,), n_orders=3, repeats=1,
                                           round_seconds=0.0, model_seconds=0.0,
                                           latency_requests=1,
                                           model_factory=lambda: 5),  # type: ignore[arg-type, return-value]
     UsageError, "nn.Module"),
    (lambda o: inf.run_inference_benchmark("cpu", (1,), n_orders=3,
                                           model_factory=5),  # type: ignore[arg-type]
     UsageError, "model_factory"),
    (lambda o: inf.NaivePipeline().frame(["x"]), UsageError, "dict"),  # type: ignore[list-item]
    (lambda o: list(inf.NaivePipeline().batches([{"order_id": 1}, 5])), UsageError,  # type: ignore[list-item]
     "row 1"),
])
def test_usage_mistakes_are_one_line_errors(orders: tuple[list, list], call: object,
                                            error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        call(orders)  # type: ignore[operator]
    assert "\n" not in str(info.value)


class _OutputCounter(torch.nn.Module):
    """Records how many of its earlier outputs are still alive at each request."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.alive: list[object] = []
        self.most_alive = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.alive = [r for r in self.alive if r() is not None]  # type: ignore[operator]
        self.most_alive = max(self.most_alive, len(self.alive))
        out: torch.Tensor = self.linear(x).squeeze(1)
        self.alive.append(weakref.ref(out))
        return out


def test_the_offline_phase_keeps_no_results_on_the_device() -> None:
    # every output had been kept on the device (64 at a time, then concatenated) until the
    # end, so on CUDA the peak memory grew with min_seconds x throughput
    model = _OutputCounter()
    runs = inf.benchmark_model(model, (torch.randn(50, 4),), batch_sizes=(8,), device="cpu",
                               warmup=1, latency_requests=2, min_seconds=60.0,
                               max_requests=300)
    assert runs[0].requests == 300
    assert model.most_alive <= 1  # at most the previous request's output


# -- CUDA ----------------------------------------------------------------------------------

@needs_cuda
def test_cuda_pipelines_match_cpu(orders: tuple[list, list]) -> None:
    typed, naive = orders
    model = inf.risk_scorer(seed=4)
    cpu = inf.check_pipelines(model, typed, naive, device="cpu")
    gpu = inf.check_pipelines(inf.risk_scorer(seed=4), typed, naive, device="cuda")
    assert gpu.typed_corrupted == 0 and gpu.naive_corrupted == cpu.naive_corrupted
    on_cpu = inf.TypedPipeline(batch_size=32).predict(inf.risk_scorer(seed=4), typed)
    on_gpu = inf.TypedPipeline(batch_size=32).predict(
        inf.risk_scorer(seed=4).to("cuda"), typed, device="cuda")
    assert on_gpu.device.type == "cpu"
    torch.testing.assert_close(on_cpu, on_gpu, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_cuda_harness_records_memory_and_half_types(orders: tuple[list, list]) -> None:
    batch = inf.TypedPipeline().columns(orders[0]).to_tensors()
    for dtype in ("float16", "bfloat16"):
        runs = inf.benchmark_model(inf.risk_scorer(), batch, batch_sizes=(1, 64),
                                   device="cuda", dtype=dtype, warmup=2,
                                   latency_requests=5, min_seconds=0.0, max_requests=5)
        assert all(r.peak_memory_bytes and r.peak_memory_bytes > 0 for r in runs)
    env = inf.environment("cuda")
    assert env["cuda"] is not None and env["device_type"] == "cuda"


@needs_cuda
def test_cuda_predict_takes_a_cpu_model_and_auto(orders: tuple[list, list]) -> None:
    typed, naive = orders[0][:40], orders[1][:40]
    model = inf.risk_scorer(seed=4)
    on_cpu = inf.TypedPipeline(batch_size=16).predict(model, typed, device="cpu")
    for device in ("cuda", "auto", "cuda:0"):
        got = inf.TypedPipeline(batch_size=16).predict(model, typed, device=device)
        torch.testing.assert_close(on_cpu, got, rtol=1e-4, atol=1e-5)
        assert inf.NaivePipeline().predict(model, naive, device=device).shape == (40,)
    assert next(model.parameters()).device.type == "cpu"  # the caller's, as it was
    on_gpu = model.to("cuda")
    assert inf._prepare_model(on_gpu, inf.select_device("cuda"), torch.float32) is on_gpu


@needs_cuda
def test_cuda_model_requests_see_the_right_rows_through_pinned_copies() -> None:
    # non_blocking copies from pinned slices, wrapping around the rows: the same rows
    # reach the model as on the CPU (a buffer reused before its copy ran would differ)
    recorded: dict[str, list[list[int]]] = {}
    for device in ("cpu", "cuda"):
        model = _RowRecorder()
        inf.benchmark_model(model, (torch.arange(10, dtype=torch.float32).unsqueeze(1),),
                            batch_sizes=(4, 16), device=device, warmup=1,
                            latency_requests=4, min_seconds=0.0, max_requests=3)
        recorded[device] = model.rows
    assert recorded["cuda"] == recorded["cpu"]
    assert [(4 + r) % 10 for r in range(4)] in recorded["cuda"]


@needs_cuda
def test_cuda_cold_start_and_environment() -> None:
    example = (torch.tensor([[2**60 + 1, 2**60 + 2]]), torch.tensor([[1.5, 2.0, 3.0]]))
    cold = inf.measure_cold_start(inf.risk_scorer, example, device="cuda")
    assert cold.to_device_s > 0 and cold.first_inference_s > 0
    env = inf.environment("cuda")
    assert env["device_name"] == torch.cuda.get_device_name(torch.cuda.current_device())
    assert env["gpu_memory_bytes"] > 0


@needs_cuda
def test_cuda_peak_memory_does_not_grow_with_the_offline_phase(
        orders: tuple[list, list]) -> None:
    # every offline output had stayed on the device until the end: 10,000 requests of 512
    # rows held 20 MB more than 2 requests did
    batch = inf.TypedPipeline().columns(orders[0]).to_tensors()
    model = inf.risk_scorer().to("cuda")
    peaks = []
    for max_requests in (2, 10_000):
        runs = inf.benchmark_model(model, batch, batch_sizes=(512,), device="cuda",
                                   warmup=2, latency_requests=2, min_seconds=60.0,
                                   max_requests=max_requests)
        assert runs[0].requests == max_requests
        peaks.append(runs[0].peak_memory_bytes)
    assert peaks[0] is not None and peaks[1] is not None
    assert peaks[1] <= peaks[0] + 2**20, peaks
