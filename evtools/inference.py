"""Torch inference on rehydrated state: feature pipelines, a risk model, a benchmark harness.

Two pipelines turn rebuilt order aggregates into the inputs of the same model, a pair of
tensors ``(ids, numeric)``: ``ids`` int64 ``[B, k]`` (order, customer... IDs), ``numeric``
float ``[B, m]`` (money in currency units, counts)::

    naive   dicts (the untyped rebuild) -> pandas DataFrame -> .to_numpy() (float64 rows
            once a column is float) -> torch.tensor(row, float32) -> ids = x[:, :k].long()
                                              IDs above 2**53 are rounded by pandas, above
                                              2**24 by float32, distinct IDs collide, money
                                              is binary; one row at a time
    typed   typed aggregates -> numpy int64 columns + exact cents (int64)
            -> torch.from_numpy (no copy)     IDs exact, batched, pinned + non_blocking on CUDA

:func:`check_pipelines` runs both over the same orders and counts what the naive path
corrupts: IDs whose value differs from the exact one, distinct IDs that collide, money
that no longer holds its cents, and predictions that differ from the typed path's.

The model (:func:`risk_scorer`, class ``OrderRiskScorer``) hashes each exact int64 ID into
an ``nn.Embedding`` with a universal hash that never overflows int64 (so CPU, CUDA and MPS
agree bit for bit), concatenates the numeric features and scores with an MLP and a
sigmoid. Its weights come from a seed, not from torch's global generator. The harness
accepts any ``torch.nn.Module``: :func:`benchmark_model` feeds it any tuple of batch-first
tensors.

The harness works like Triton's perf_analyzer and MLPerf LoadGen: device chosen
automatically (CUDA, then MPS, then CPU) or forced; warm-up requests; everything under
``torch.inference_mode``; per batch size a *single-stream* phase (one request at a time,
each timed, giving latency p50/p90/p95/p99) and an *offline* phase (requests back to back,
giving samples/s); cold start (construction, weight load, move to device, first
inference). On CUDA the clock is read only after ``torch.cuda.synchronize``, inputs go
through pinned host buffers with ``non_blocking`` copies, ``dtype`` may be ``float16`` or
``bfloat16``, and the peak of ``torch.cuda.max_memory_allocated`` is recorded per run.
Every result carries its environment: device name, torch / CUDA / cuDNN versions, thread
count, load average and CPU count.

:func:`run_inference_benchmark` does all of it on a generated workload and returns an
:class:`InferenceBenchmark` (``.to_frame()``, ``.to_dict()``, ``.to_json()``,
``.speedup``). torch is imported only when a function here needs it: ``import
evtools.inference`` neither imports torch nor starts CUDA.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import decimal
import functools
import gc
import io
import json
import logging
import math
import operator
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from ._checks import count as _count
from ._checks import seconds as _seconds
from ._json import msgspec_path_to_pointer, strip_msgspec_path
from ._machine import cpu_model
from .errors import InputError, MissingDependency, UsageError
from .events import RawEvent

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import torch

    from .registry import Registry

__all__ = [
    "ORDER_FEATURES",
    "ColdStart",
    "Correctness",
    "Feature",
    "FeatureBatch",
    "FeatureColumns",
    "FeatureSpec",
    "InferenceBenchmark",
    "NaivePipeline",
    "Run",
    "TypedPipeline",
    "benchmark_model",
    "benchmark_pipelines",
    "check_pipelines",
    "environment",
    "hash_ids",
    "measure_cold_start",
    "order_line_count",
    "order_quantity",
    "order_total",
    "order_workload",
    "rehydrate_orders",
    "risk_scorer",
    "run_inference_benchmark",
    "select_device",
]

log = logging.getLogger(__name__)

_DTYPE_ALIASES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}
#: The prime of the ID hash: products of a 31-bit multiplier and a 32-bit half of an
#: int64 stay below 2**63, so the hash is exact int64 arithmetic on every device.
HASH_PRIME = 2**31 - 1
#: Seeds run from 0 to 2**64 - 1: torch's generator takes 64 bits (it would read -1 as
#: 2**64 - 1) and the generated workload refuses a negative seed.
SEED_LIMIT = 2**64
#: The batch sizes :func:`run_inference_benchmark` sweeps unless told (those up to its
#: ``n_orders``).
DEFAULT_BATCH_SIZES = (1, 8, 64, 512)


def _seed(value: Any) -> int:
    return _count(value, "seed", 0, SEED_LIMIT - 1)


def _batch_size(value: Any) -> int:
    return _count(value, "batch_size")


# -- lazy torch ------------------------------------------------------------------------------

def _need_torch() -> None:
    """Raise :class:`MissingDependency` when torch is not installed."""
    try:
        import torch  # noqa: F401  # imported here so that the module import stays light
    except ImportError as e:
        raise MissingDependency("torch", "torch") from e


def _dtype_name(dtype: str) -> str:
    try:
        return _DTYPE_ALIASES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise UsageError(f"unknown dtype {dtype!r}; choose float32, float16 or bfloat16") from None


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    name = _dtype_name(dtype)
    return {"float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[name]


def select_device(device: str | torch.device = "auto") -> torch.device:
    """The device to run on: ``"auto"`` picks CUDA, then MPS, then CPU; ``"cuda"``,
    ``"cuda:1"``, ``"mps"`` or ``"cpu"`` force one (an unavailable one is a UsageError)."""
    _need_torch()
    import torch

    name = str(device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from e
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    if chosen.type == "cuda" and chosen.index is not None \
            and chosen.index >= torch.cuda.device_count():
        raise UsageError(f"device {device!r} asked for, but only "
                         f"{torch.cuda.device_count()} CUDA device(s) are visible")
    if chosen.type == "mps" and not _mps_available():
        raise UsageError(f"device {device!r} asked for, but MPS is not available here")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"device {device!r} is not supported; use auto, cpu, cuda or mps")
    return chosen


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _sync(device: torch.device) -> None:
    """Wait for the device to finish queued work (before reading a clock)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# -- features --------------------------------------------------------------------------------

FeatureKind = Literal["id", "money", "count"]
_KINDS: tuple[str, ...] = ("id", "money", "count")


@dataclasses.dataclass(frozen=True)
class Feature:
    """One model input, read from a state.

    ``kind``: ``"id"`` (an integer identifier: int64 on the typed path, hashed into an
    embedding), ``"money"`` (an exact ``Decimal``: held as an integer of minor units, given
    to the model in currency units) or ``"count"`` (an integer). ``typed`` reads the value
    from an exact state (an aggregate or its ``to_state()`` dict; by default the attribute
    or key ``name``); ``naive`` reads it from the untyped consumer's dict (by default the
    key ``name``), the way code written against such dicts does.
    """

    name: str
    kind: FeatureKind
    typed: Callable[[Any], Any] | None = None
    naive: Callable[[Mapping[str, Any]], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise UsageError(f"feature {self.name!r}: kind must be one of {', '.join(_KINDS)}")

    def typed_reader(self, sample: Any) -> Callable[[Any], Any]:
        if self.typed is not None:
            return self.typed
        if isinstance(sample, Mapping):
            return operator.itemgetter(self.name)
        return operator.attrgetter(self.name)

    def naive_reader(self) -> Callable[[Mapping[str, Any]], Any]:
        if self.naive is not None:
            return self.naive
        name = self.name
        return lambda d: d.get(name)

    def describe(self) -> dict[str, str]:
        def where(fn: Callable[..., Any] | None) -> str:
            return getattr(fn, "__qualname__", repr(fn)) if fn is not None else self.name

        return {"name": self.name, "kind": self.kind, "typed": where(self.typed),
                "naive": where(self.naive)}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs, in the order the model sees them: IDs first (``ids`` tensor),
    then money and counts (``numeric`` tensor). ``money_scale``: 2 holds money in cents
    (an int in 0..9: a float, text or a bool is a :class:`UsageError`)."""

    features: tuple[Feature, ...]
    money_scale: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.features, str | bytes | Mapping) \
                or not isinstance(self.features, Iterable):
            raise UsageError("a FeatureSpec takes a sequence of Feature, got "
                             f"{type(self.features).__name__}")
        features = tuple(self.features)
        strays = [f for f in features if not isinstance(f, Feature)]
        if strays:
            raise UsageError(f"a FeatureSpec takes Feature objects only, got "
                             f"{type(strays[0]).__name__} {strays[0]!r}")
        object.__setattr__(self, "features", features)
        # a float or text scale had been accepted, then failed as a TypeError in 10**scale
        object.__setattr__(self, "money_scale", _count(self.money_scale, "money_scale", 0, 9))
        if not any(f.kind == "id" for f in self.features):
            raise UsageError("a FeatureSpec needs at least one ID feature")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise UsageError(f"feature names repeat: {names}")

    def of_kind(self, kind: FeatureKind) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == kind)

    @property
    def ordered(self) -> tuple[Feature, ...]:
        """IDs, then money, then counts: the column order of every pipeline."""
        return (*self.of_kind("id"), *self.of_kind("money"), *self.of_kind("count"))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.ordered)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.of_kind("id"))

    @property
    def money(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.of_kind("money"))

    @property
    def counts(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.of_kind("count"))

    @property
    def n_ids(self) -> int:
        return len(self.of_kind("id"))

    @property
    def n_numeric(self) -> int:
        return len(self.features) - self.n_ids

    def describe(self) -> dict[str, Any]:
        return {"features": [f.describe() for f in self.ordered],
                "money_scale": self.money_scale}


# Order states: a frozen `evtools.orders.Order` (attributes) or a state dict (to_state()
# for the exact one, the untyped rebuild's dict for the naive one). Lines are keyed by SKU.

def _lines(state: Any) -> Any:
    """The lines of an order state (``Order.lines`` or ``state["lines"]``), as an iterable
    of line values; ``isinstance(..., dict)``, not ``Mapping``: this runs per order."""
    lines = state.get("lines") if isinstance(state, dict) else getattr(state, "lines", None)
    if not lines:
        return ()
    return lines.values() if isinstance(lines, dict) else lines


def order_total(state: Any) -> Decimal:
    """Exact order total: ``Order.total``, or the sum over a state dict's lines."""
    if not isinstance(state, dict):
        total = state.total
        if isinstance(total, Decimal):
            return total
    return sum((Decimal(line["unit_price"]["amount"]) * line["quantity"]
                for line in _lines(state)), Decimal(0))


def order_line_count(state: Any) -> int:
    """Number of distinct SKUs on the order."""
    return len(_lines(state))


def order_quantity(state: Any) -> int:
    """Units ordered, over all lines."""
    lines = _lines(state)
    if isinstance(state, dict):
        return sum(int(line["quantity"]) for line in lines)
    return sum(line.quantity for line in lines)


def _naive_total(state: Mapping[str, Any]) -> Any:
    # what code written against the untyped dicts does: float(amount) * quantity, summed
    total = 0.0
    for line in _lines(state):
        price = line.get("unit_price") or {}
        total += float(price.get("amount", 0.0)) * line.get("quantity", 0)
    return total


def _naive_lines(state: Mapping[str, Any]) -> Any:
    return len(_lines(state))


def _naive_quantity(state: Mapping[str, Any]) -> Any:
    return sum(line.get("quantity", 0) for line in _lines(state))


#: The order domain's features (:class:`evtools.orders.Order`): order and customer IDs,
#: the total, the number of lines and of units.
ORDER_FEATURES = FeatureSpec(features=(
    Feature("order_id", "id"),
    Feature("customer_id", "id"),
    Feature("total", "money", typed=order_total, naive=_naive_total),
    Feature("lines", "count", typed=order_line_count, naive=_naive_lines),
    Feature("quantity", "count", typed=order_quantity, naive=_naive_quantity),
))


def _one_kind_of_state(states: Sequence[Any]) -> None:
    """A :class:`UsageError` when ``states`` mix state dicts and aggregates: a feature's
    default reader (key or attribute) is chosen from the first state, and the other kind
    had failed as a TypeError ("'Order' object is not subscriptable")."""
    kinds = {type(s) for s in states}
    if len(kinds) > 1 and len({issubclass(k, Mapping) for k in kinds}) > 1:
        first = isinstance(states[0], Mapping)
        i = next(i for i, s in enumerate(states) if isinstance(s, Mapping) != first)
        raise UsageError(f"the states mix state dicts and aggregates: row 0 is a "
                         f"{type(states[0]).__name__}, row {i} a {type(states[i]).__name__};"
                         " give one kind (an aggregate's to_state() is its state dict)")


def _typed_column(states: Sequence[Any], feature: Feature) -> list[Any]:
    if not states:
        return []
    read = feature.typed_reader(states[0])
    try:
        return [read(s) for s in states]
    except (KeyError, AttributeError) as e:
        raise UsageError(f"cannot read feature {feature.name!r} from a "
                         f"{type(states[0]).__name__} state: {e}") from e


def _pointer(name: str) -> str:
    return "/" + name.replace(".", "/")


def _int64_column(values: list[Any], name: str) -> np.ndarray:
    for v in values:
        # None, a float, str or bool never belongs here: coercing it would hide the bug
        if not isinstance(v, int | np.integer) or isinstance(v, bool):
            raise InputError(f"feature {name!r} holds {type(v).__name__} {v!r}, not an "
                             "integer: the typed pipeline takes exact states only",
                             path=_pointer(name))
    try:
        return np.fromiter(values, dtype=np.int64, count=len(values))
    except OverflowError as e:
        raise InputError(f"feature {name!r} holds an integer outside int64",
                         path=_pointer(name)) from e


_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
#: ``Decimal.adjusted()`` of the largest int64 (9.2e18): an amount whose minor units have a
#: larger one is beyond int64 whatever its digits.
_INT64_ADJUSTED = 18


def _minor_units_column(values: list[Any], name: str, scale: int) -> np.ndarray:
    factor = 10**scale
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, Decimal):
            if not v.is_finite():
                raise InputError(f"money feature {name!r} holds {v}, not an amount",
                                 path=_pointer(name))
            # refused from its exponent, before int() builds the integer: int() of 1E+1000000
            # had taken about 37 s (a zero has no magnitude, whatever its exponent)
            if v and v.adjusted() + scale > _INT64_ADJUSTED:
                raise InputError(f"money feature {name!r} holds {v}, beyond int64 minor "
                                 "units", path=_pointer(name))
            scaled = v.scaleb(scale, _EXACT)  # no rounding at the context's 28 digits
            whole = int(scaled)
            if whole != scaled:
                raise InputError(f"money feature {name!r} holds {v}, finer than 10**-{scale}",
                                 path=_pointer(name))
        elif isinstance(v, int) and not isinstance(v, bool):
            whole = v * factor
        else:
            raise InputError(f"money feature {name!r} holds {type(v).__name__} {v!r}, not a "
                             "Decimal: binary floats cannot hold cents exactly",
                             path=_pointer(name))
        try:
            out[i] = whole
        except OverflowError as e:
            raise InputError(f"money feature {name!r} holds {v}, beyond int64 minor units",
                             path=_pointer(name)) from e
    return out


@dataclasses.dataclass
class FeatureColumns:
    """The typed pipeline's host-side columns (numpy, exact).

    ``ids`` int64 ``[N, k]``; ``money`` int64 ``[N, len(spec.money)]`` in minor units
    (``10**-spec.money_scale``: exact cents); ``counts`` int64; ``numeric`` the model's
    float32 view of money (in currency units) and counts, ``[N, m]``.
    """

    spec: FeatureSpec
    ids: np.ndarray
    money: np.ndarray
    counts: np.ndarray
    numeric: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to_tensors(self) -> FeatureBatch:
        """Zero-copy tensors over these columns (``torch.from_numpy``)."""
        import torch

        return FeatureBatch(ids=torch.from_numpy(self.ids),
                            numeric=torch.from_numpy(self.numeric))

    def to_polars(self) -> pl.DataFrame:
        """One column per feature; IDs, minor units and counts as exact ``Int64``."""
        import polars as pl

        data: dict[str, pl.Series] = {}
        for j, name in enumerate(self.spec.ids):
            data[name] = pl.Series(name, self.ids[:, j], dtype=pl.Int64)
        for j, name in enumerate(self.spec.money):
            col = f"{name}_minor_units"
            data[col] = pl.Series(col, self.money[:, j], dtype=pl.Int64)
        for j, name in enumerate(self.spec.counts):
            data[name] = pl.Series(name, self.counts[:, j], dtype=pl.Int64)
        return pl.DataFrame(data)


@dataclasses.dataclass
class FeatureBatch:
    """The model's inputs: ``ids`` int64 ``[B, k]`` and ``numeric`` float ``[B, m]``."""

    ids: torch.Tensor
    numeric: torch.Tensor

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def as_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.ids, self.numeric)


class TypedPipeline:
    """Typed aggregates -> exact numpy int64 columns -> ``torch.from_numpy`` -> model.

    IDs stay int64 end to end; money is held as exact minor units and reaches the model
    as float only at the end, in currency units. Requests are batches of ``batch_size``
    states (an int >= 1, else a :class:`UsageError`; one larger than the states given
    makes one request of all of them). On CUDA each batch goes through a pinned host
    buffer, copied with ``non_blocking=True``.
    """

    name = "typed"

    def __init__(self, spec: FeatureSpec = ORDER_FEATURES, *, batch_size: int = 512) -> None:
        self.spec = spec
        self.batch_size = _batch_size(batch_size)

    @property
    def mode(self) -> str:
        return "per-row" if self.batch_size == 1 else "batched"

    def columns(self, states: Sequence[Any]) -> FeatureColumns:
        """The exact columns of ``states`` (aggregates, or exact state dicts: one kind, a
        mix of both is a :class:`UsageError`)."""
        spec = self.spec
        n = len(states)
        if n > 1 and any(f.typed is None for f in spec.features):
            _one_kind_of_state(states)  # the default readers take one kind
        ids_f, money_f, counts_f = spec.of_kind("id"), spec.of_kind("money"), \
            spec.of_kind("count")
        ids = np.empty((n, len(ids_f)), dtype=np.int64)
        for j, f in enumerate(ids_f):
            ids[:, j] = _int64_column(_typed_column(states, f), f.name)
        money = np.empty((n, len(money_f)), dtype=np.int64)
        for j, f in enumerate(money_f):
            money[:, j] = _minor_units_column(_typed_column(states, f), f.name,
                                              spec.money_scale)
        counts = np.empty((n, len(counts_f)), dtype=np.int64)
        for j, f in enumerate(counts_f):
            counts[:, j] = _int64_column(_typed_column(states, f), f.name)
        numeric = np.empty((n, spec.n_numeric), dtype=np.float32)
        k = len(money_f)
        # exact integer -> float64 (exact below 2**53) -> one rounding to float32
        numeric[:, :k] = money / float(10**spec.money_scale)
        numeric[:, k:] = counts
        return FeatureColumns(spec=spec, ids=ids, money=money, counts=counts, numeric=numeric)

    def batches(self, states: Sequence[Any]) -> Iterator[FeatureBatch]:
        """Host tensors, one batch per request (zero-copy views of the columns)."""
        for start in range(0, len(states), self.batch_size):
            yield self.columns(states[start:start + self.batch_size]).to_tensors()

    def predict(self, model: Any, states: Sequence[Any], *,
                device: torch.device | str = "cpu", dtype: str = "float32",
                latencies: list[float] | None = None) -> torch.Tensor:
        """Predictions on the host, ``[N]`` float32; appends each request's seconds to
        ``latencies`` (the clock is read once the result is on the host). An ``nn.Module``
        runs on ``device`` in ``dtype`` in eval mode: moved there on a copy unless it
        already is; the caller's model is left as it was, its training mode included."""
        _need_torch()
        import torch

        _callable_model(model)
        dev = select_device(device)  # 'auto' too; a missing CUDA is a UsageError
        fdtype = _torch_dtype(dtype)
        staging = _Staging(dev)
        outputs: list[torch.Tensor] = []
        # an nn.Module on the device, in dtype (a copy if moved), in eval mode for the block
        with _prepared(model, dev, fdtype) as model, torch.inference_mode():
            for start in range(0, len(states), self.batch_size):
                t0 = time.perf_counter()
                batch = self.columns(states[start:start + self.batch_size]).to_tensors()
                ids, numeric = staging.to_device(batch.ids, batch.numeric)
                out = model(ids, numeric.to(fdtype))
                out = out.to("cpu", torch.float32)  # waits for the device: request done
                outputs.append(out.reshape(-1))
                if latencies is not None:
                    latencies.append(time.perf_counter() - t0)
        return torch.cat(outputs) if outputs else torch.empty(0)


class NaivePipeline:
    """What an untyped consumer does: dicts -> pandas -> ``torch.tensor(..., float32)``.

    The dicts are whatever the untyped rebuild holds (IDs as ``float`` where its decoder
    rounded them, money as ``float`` or text). Numbers held as text are parsed with
    ``pd.to_numeric`` (as such code does); every row becomes one float tensor (``dtype``,
    float32 by default: the dtype of the model's weights), from which the IDs are cut back
    out with ``.long()``. ``batch_size=1`` walks the frame with ``iterrows`` and calls the
    model once per row; larger sizes slice the frame (one larger than the states given
    makes one request of all of them; a batch size is an int >= 1, else a
    :class:`UsageError`).
    """

    name = "naive"

    def __init__(self, spec: FeatureSpec = ORDER_FEATURES, *, batch_size: int = 1,
                 dtype: str = "float32") -> None:
        self.spec = spec
        self.batch_size = _batch_size(batch_size)
        self.dtype = _dtype_name(dtype)

    @property
    def mode(self) -> str:
        return "per-row" if self.batch_size == 1 else "batched"

    def frame(self, states: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """The DataFrame the untyped consumer builds from its dicts (model columns only).

        Numbers the decoder kept as text (``"19.99"``, an ID as a string) are parsed with
        ``pd.to_numeric``, as such code does; text that is no number, and an integer that
        fits neither int64 nor uint64 (pandas keeps it as a Python object, which torch
        cannot take), are an :class:`~evtools.errors.InputError` naming the feature; a
        state that is not a dict (mapping) is a :class:`UsageError`."""
        import pandas as pd

        for i, s in enumerate(states):
            if type(s) is not dict and not isinstance(s, Mapping):
                raise UsageError(f"the naive pipeline takes the untyped rebuild's state dicts "
                                 f"(mappings); row {i} is a {type(s).__name__}")
        readers = [(f.name, f.naive_reader()) for f in self.spec.ordered]
        rows = [{name: read(s) for name, read in readers} for s in states]
        cols = list(self.spec.columns)
        df = pd.DataFrame.from_records(rows, columns=cols)
        for c in cols:
            # text is object in pandas 2 and a str dtype in pandas 3 (not object)
            if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype):
                try:
                    df[c] = pd.to_numeric(df[c])
                except (ValueError, TypeError) as e:  # pandas' own words: value, position
                    raise InputError(f"naive feature {c!r} holds a value that is not a "
                                     f"number: {e}", path=_pointer(c)) from None
            _numeric_column(df[c], c)
        return df

    def _split(self, x: torch.Tensor) -> FeatureBatch:
        import torch

        k = self.spec.n_ids
        return FeatureBatch(ids=x[:, :k].to(torch.int64), numeric=x[:, k:])

    def batches(self, states: Sequence[Mapping[str, Any]]) -> Iterator[FeatureBatch]:
        """Host tensors, one batch per request."""
        yield from self._batches(self.frame(states))

    def _batches(self, df: pd.DataFrame) -> Iterator[FeatureBatch]:
        import torch

        fdtype = _torch_dtype(self.dtype)
        if self.batch_size == 1:
            for _, row in df.iterrows():
                yield self._split(torch.tensor(row.to_numpy(), dtype=fdtype).unsqueeze(0))
        else:
            for start in range(0, len(df), self.batch_size):
                chunk = df.iloc[start:start + self.batch_size].to_numpy()
                yield self._split(torch.tensor(chunk, dtype=fdtype))

    def predict(self, model: Any, states: Sequence[Mapping[str, Any]], *,
                device: torch.device | str = "cpu", dtype: str = "float32",
                latencies: list[float] | None = None) -> torch.Tensor:
        """Predictions on the host, ``[N]`` float32. The frame is built once (its time
        counts in samples/s, not in per-request latency); each request is one row or
        slice of it, copied to the device the plain way (pageable memory, blocking). An
        ``nn.Module`` runs on ``device`` in ``dtype`` in eval mode: moved on a copy unless
        it is there; the caller's model is left as it was, its training mode included."""
        _need_torch()
        import torch

        _callable_model(model)
        dev = select_device(device)  # 'auto' too; a missing CUDA is a UsageError
        fdtype = _torch_dtype(dtype)
        outputs: list[torch.Tensor] = []
        df = self.frame(states)
        # an nn.Module on the device, in dtype (a copy if moved), in eval mode for the block
        with _prepared(model, dev, fdtype) as model, torch.inference_mode():
            batches = self._batches(df)
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                out = model(batch.ids.to(dev), batch.numeric.to(dev, fdtype))
                out = out.to("cpu", torch.float32)
                outputs.append(out.reshape(-1))
                if latencies is not None:
                    latencies.append(time.perf_counter() - t0)
        return torch.cat(outputs) if outputs else torch.empty(0)


def _numeric_column(column: pd.Series, name: str) -> None:
    """An :class:`~evtools.errors.InputError` unless ``column`` is a numpy int, uint or
    float column: anything else (Python ints beyond int64 and uint64, booleans) makes
    ``to_numpy()`` an object array, which ``torch.tensor`` refuses with a TypeError."""
    dtype = column.dtype
    if (isinstance(dtype, np.dtype) and dtype.kind in "iuf") or not len(column):
        return
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        odd = next((v for v in column.tolist()
                    if not isinstance(v, int | float) or isinstance(v, bool)
                    or (type(v) is int and not -(2**63) <= v < 2**64)), None)
        example = f" (such as {odd!r})" if odd is not None else ""
        raise InputError(f"naive feature {name!r} holds numbers that pandas keeps as Python "
                         f"objects{example}: integers beyond int64 and uint64 fit no numeric "
                         "column, and torch takes no object array", path=_pointer(name))
    raise InputError(f"naive feature {name!r} holds {dtype} values, not numbers",
                     path=_pointer(name))


class _Staging:
    """Host -> device copies: pinned buffers and ``non_blocking`` on CUDA, plain elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._buffers: dict[tuple[int, str], torch.Tensor] = {}

    def _buffer(self, slot: int, t: torch.Tensor) -> torch.Tensor:
        import torch

        key = (slot, str(t.dtype))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < t.numel():
            buf = torch.empty(max(t.numel(), 1), dtype=t.dtype, pin_memory=True)
            self._buffers[key] = buf
        return buf[:t.numel()].view(t.shape)

    def to_device(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.device.type == "cpu":
            return tensors
        if not self.pinned:
            return tuple(t.to(self.device) for t in tensors)
        out = []
        for slot, t in enumerate(tensors):
            host = self._buffer(slot, t)
            # the previous copy from this buffer must be done before it is overwritten;
            # callers read each result back (a sync) before the next request
            host.copy_(t)
            out.append(host.to(self.device, non_blocking=True))
        return tuple(out)


# -- the model -------------------------------------------------------------------------------

def hash_ids(ids: np.ndarray, params: np.ndarray, buckets: int) -> np.ndarray:
    """Reference (numpy) of the model's ID hash: ``ids`` int64 ``[N, k]``, ``params``
    int64 ``[k, H, 3]`` -> bucket indices ``[N, k, H]`` in ``0..buckets-1``.

    ``h = (a*hi mod p + b*lo mod p + c) mod p mod buckets`` over the two 32-bit halves of
    the exact int64, ``p = 2**31 - 1``: every product stays below ``2**63``.
    """
    x = np.asarray(ids, dtype=np.int64)[:, :, None]
    hi = (x >> 32) & 0xFFFFFFFF
    lo = x & 0xFFFFFFFF
    a, b, c = params[None, :, :, 0], params[None, :, :, 1], params[None, :, :, 2]
    return (((a * hi) % HASH_PRIME + (b * lo) % HASH_PRIME + c) % HASH_PRIME) % buckets


@functools.cache
def _risk_scorer_class() -> type:
    import torch
    from torch import nn

    class OrderRiskScorer(nn.Module):
        """Order-risk scorer: hashed ID embeddings + numeric features -> MLP -> sigmoid.

        ``forward(ids int64 [B, k], numeric float [B, m]) -> [B]`` probabilities. Each ID
        column has its own region of one embedding table; each ID is hashed ``n_hashes``
        times (the embeddings summed), so two IDs share a vector only if all hashes agree.
        Numeric features go through ``sign(x) * log1p(|x|)``.
        """

        hash_params: torch.Tensor  # int64 [k, H, 3]: (a, b, c) per ID column and hash
        offsets: torch.Tensor  # int64 [k]: each ID column's region of the table

        def __init__(self, n_ids: int = 2, n_numeric: int = 3, *, buckets: int = 2**16,
                     dim: int = 16, n_hashes: int = 2, hidden: Sequence[int] = (64, 32),
                     seed: int = 0) -> None:
            super().__init__()
            n_ids, n_numeric = _count(n_ids, "n_ids"), _count(n_numeric, "n_numeric", 0)
            buckets = _count(buckets, "buckets", 1, HASH_PRIME)
            dim, n_hashes = _count(dim, "dim"), _count(n_hashes, "n_hashes")
            hidden = _widths(hidden)
            seed = _seed(seed)
            self.n_ids, self.n_numeric, self.buckets = n_ids, n_numeric, buckets
            self.dim, self.n_hashes, self.seed = dim, n_hashes, seed
            gen = torch.Generator().manual_seed(seed)
            # layer constructors draw from torch's global generator: keep it untouched
            with torch.random.fork_rng(devices=[]):
                self.embedding = nn.Embedding(n_ids * buckets, dim)
                layers: list[nn.Module] = []
                width = n_ids * dim + n_numeric
                for h in hidden:
                    layers += [nn.Linear(width, h), nn.ReLU()]
                    width = h
                layers.append(nn.Linear(width, 1))
                self.mlp = nn.Sequential(*layers)
            with torch.no_grad():
                self.embedding.weight.normal_(0.0, 0.5, generator=gen)
                for m in self.mlp:
                    if isinstance(m, nn.Linear):
                        bound = 1.0 / math.sqrt(m.in_features)
                        m.weight.uniform_(-bound, bound, generator=gen)
                        m.bias.uniform_(-bound, bound, generator=gen)
            params = torch.randint(1, HASH_PRIME, (n_ids, n_hashes, 3), generator=gen,
                                   dtype=torch.int64)
            self.register_buffer("hash_params", params)
            self.register_buffer("offsets", torch.arange(n_ids, dtype=torch.int64) * buckets)

        def bucket(self, ids: torch.Tensor) -> torch.Tensor:
            """Bucket indices ``[B, k, H]`` of exact int64 IDs (same as :func:`hash_ids`)."""
            p = self.hash_params
            x = ids.to(torch.int64).unsqueeze(-1)
            hi = (x >> 32) & 0xFFFFFFFF
            lo = x & 0xFFFFFFFF
            h = ((p[:, :, 0] * hi) % HASH_PRIME + (p[:, :, 1] * lo) % HASH_PRIME
                 + p[:, :, 2]) % HASH_PRIME
            return h % self.buckets

        def forward(self, ids: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
            idx = self.bucket(ids) + self.offsets.view(1, -1, 1)
            emb = self.embedding(idx).sum(dim=2).flatten(1)  # [B, k*dim]
            num = numeric.to(emb.dtype)
            num = torch.sign(num) * torch.log1p(torch.abs(num))
            return torch.sigmoid(self.mlp(torch.cat([emb, num], dim=1))).squeeze(1)

        def extra_repr(self) -> str:
            return (f"n_ids={self.n_ids}, n_numeric={self.n_numeric}, buckets={self.buckets},"
                    f" dim={self.dim}, n_hashes={self.n_hashes}, seed={self.seed}")

    return OrderRiskScorer


def risk_scorer(spec: FeatureSpec = ORDER_FEATURES, *, seed: int = 0, buckets: int = 2**16,
                dim: int = 16, n_hashes: int = 2,
                hidden: Sequence[int] = (64, 32)) -> torch.nn.Module:
    """An ``OrderRiskScorer`` sized for ``spec``, weights drawn from ``seed`` (same seed,
    same weights, on any machine; torch's global generator is left as it was). ``seed``
    is an int in ``0..2**64 - 1``; sizes are ints >= 1 (``buckets`` at most
    ``2**31 - 1``), ``hidden`` a sequence of them; anything else is a
    :class:`UsageError`."""
    _need_torch()
    cls = _risk_scorer_class()
    model: torch.nn.Module = cls(spec.n_ids, spec.n_numeric, buckets=buckets, dim=dim,
                                 n_hashes=n_hashes, hidden=_widths(hidden), seed=seed)
    return model.eval()


def _widths(hidden: Any) -> tuple[int, ...]:
    """The hidden layers' widths: a sequence of ints >= 1 (``(64, 32)``), else a
    :class:`UsageError` (a bare int had been a TypeError, text read digit by digit)."""
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Iterable):
        raise UsageError(f"hidden must be a sequence of layer widths (ints >= 1), e.g. "
                         f"(64, 32), got {hidden!r}")
    return tuple(_count(h, "a hidden layer's width") for h in hidden)


def __getattr__(name: str) -> Any:
    if name == "OrderRiskScorer":  # the class needs torch: built on first access
        _need_torch()
        return _risk_scorer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- results ---------------------------------------------------------------------------------

def _percentile(values: Sequence[float], q: float) -> float:
    if not len(values):
        return float("nan")
    # "higher": the reported percentile is a latency that was observed (LoadGen style)
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="higher"))


@dataclasses.dataclass
class Run:
    """One measured configuration.

    ``stage`` is ``"end-to-end"`` (rehydrated state -> predictions on the host) or
    ``"model"`` (inputs ready on the host -> predictions on the host, the model alone);
    ``pipeline`` is ``"naive"``, ``"typed"`` or the model's label. ``throughput`` is
    samples/s over the whole run; ``latencies_ms`` one entry per request (a request is
    one batch). ``peak_memory_bytes``: on CUDA, ``torch.cuda.max_memory_allocated`` over
    the timed phases (reset before them): the device memory held in tensors, the model's
    weights included (see :func:`benchmark_model`); ``None`` elsewhere. ``stats`` holds
    the summary figures when they were computed from more latencies than the run carries
    (a run read back from JSON keeps a sampled CDF).
    """

    stage: str
    pipeline: str
    mode: str
    batch_size: int
    samples: int
    requests: int
    seconds: float
    throughput: float
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    peak_memory_bytes: int | None = None
    repeats: int = 1
    stats: dict[str, float] | None = None

    @property
    def label(self) -> str:
        return f"{self.pipeline} {self.mode}, batch {self.batch_size}"

    def percentile(self, q: float) -> float:
        key = f"p{q:g}_ms"
        if self.stats is not None and key in self.stats:
            return self.stats[key]
        return _percentile(self.latencies_ms, q)

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p90_ms(self) -> float:
        return self.percentile(90)

    @property
    def p95_ms(self) -> float:
        return self.percentile(95)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)

    @property
    def mean_ms(self) -> float:
        if self.stats is not None and "mean_ms" in self.stats:
            return self.stats["mean_ms"]
        return float(np.mean(self.latencies_ms)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        """The run as one flat row (no latency list)."""
        return {"stage": self.stage, "pipeline": self.pipeline, "mode": self.mode,
                "batch_size": self.batch_size, "samples": self.samples,
                "requests": self.requests, "seconds": self.seconds,
                "throughput": self.throughput, "mean_ms": self.mean_ms, "p50_ms": self.p50_ms,
                "p90_ms": self.p90_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "peak_memory_bytes": self.peak_memory_bytes, "repeats": self.repeats}

    def to_dict(self, *, latencies: bool = True, max_points: int = 2000) -> dict[str, Any]:
        """The summary, plus the latencies (``latencies``): all of them, or, past
        ``max_points``, that many evenly spaced quantiles of them (the same CDF)."""
        d = self.summary()
        if latencies:
            values = self.latencies_ms
            if len(values) > max_points:
                probs = np.linspace(0.0, 1.0, max_points)
                values = np.quantile(np.asarray(values), probs, method="inverted_cdf").tolist()
                d["latencies_sampled"] = True
            d["latencies_ms"] = list(values)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Run:
        """The run :meth:`to_dict` wrote (raises :class:`~evtools.errors.InputError`)."""
        doc = _nan_for_none(d, ("seconds", "throughput"))
        if isinstance(doc, Mapping) and isinstance(doc.get("latencies_ms"), list):
            doc = {**doc, "latencies_ms": [math.nan if v is None else v
                                           for v in doc["latencies_ms"]]}
        run = _convert(doc, cls, "a benchmark run")
        stats = _convert(doc, _RunStats, "a benchmark run")
        run.stats = {k: v for k, v in msgspec.structs.asdict(stats).items()
                     if v is not None} or None
        return run


class _RunStats(msgspec.Struct):
    """The summary figures :meth:`Run.to_dict` writes beside the (maybe sampled)
    latencies; ``None`` where a figure was not finite."""

    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


def _convert(doc: Any, kind: Any, what: str, path: str = "") -> Any:
    """``doc`` (parsed JSON, as a ``to_dict`` wrote it) as ``kind``; a member missing or of
    the wrong type is an :class:`~evtools.errors.InputError` naming its JSON Pointer
    (``path`` is where ``doc`` sits in the whole document)."""
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as e:
        message = str(e)
        raise InputError(f"not {what}: {strip_msgspec_path(message)}",
                         path=path + msgspec_path_to_pointer(message)) from None


def _nan_for_none(doc: Any, names: Sequence[str]) -> Any:
    """``doc`` with the figures ``names`` that :func:`_json_safe` wrote as ``null`` (not
    finite) back as NaN; anything else as it is."""
    if not isinstance(doc, Mapping) or not any(doc.get(n, 0.0) is None for n in names):
        return doc
    return {**doc, **{n: math.nan for n in names if n in doc and doc[n] is None}}


@dataclasses.dataclass
class ColdStart:
    """Seconds from nothing to the first prediction: build the model (seeded init), load
    its weights from a checkpoint in memory, move it to the device, run one request.
    ``device_initialised`` tells whether the device (CUDA context) was already up."""

    construct_s: float
    load_s: float
    to_device_s: float
    first_inference_s: float
    device_initialised: bool

    @property
    def total_s(self) -> float:
        return self.construct_s + self.load_s + self.to_device_s + self.first_inference_s

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total_s": self.total_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColdStart:
        """The cold start :meth:`to_dict` wrote (raises an ``InputError``)."""
        doc = _nan_for_none(d, ("construct_s", "load_s", "to_device_s", "first_inference_s"))
        start: ColdStart = _convert(doc, cls, "a cold start")
        return start


@dataclasses.dataclass
class Correctness:
    """What the naive pipeline changes, measured against the exact (typed) states.

    Per ID field: ``ids_corrupted`` (rows whose ID reached the model as another value),
    ``ids_distinct`` (distinct exact IDs), ``ids_colliding`` (distinct exact IDs that reach
    the model as the same value as another distinct ID), ``ids_corrupted_before_tensor``
    (already wrong in the array the naive pipeline hands to ``torch.tensor``, the frame's
    ``to_numpy()``: lost by the decoder, or by pandas, which turns a frame with a float
    column (money) into float64 rows, changing IDs above 2**53 that are not multiples of
    their float64 step; 0 when the frame's columns are all int64 and the decoder kept
    the IDs).

    Money, per path, on the amounts exactly as the model receives them (the pipeline's
    numeric column cast to the model's dtype, as ``predict`` does), against the exact
    amounts (the typed states' minor units): ``money_inexact``, amounts whose value is
    not exactly the decimal amount (binary floats hold few decimal fractions: 19.99 is
    not one, so most amounts count, on the typed path too); ``money_cents_lost``, amounts
    that do not even round (half to even) to the right minor unit. A NaN or infinity (as
    money above 65504 becomes in float16) counts in both. The typed path keeps exact minor
    units up to that last cast, so its counts are the dtype's alone (float32 keeps every
    cent below 2**17 currency units, the half types 2 to 3 significant digits: a warning
    is logged for them); where the naive counts are higher, its decoder or frame lost
    the rest.

    ``predictions_differ``: rows where the two pipelines' scores differ by more than
    ``atol``, and ``max_abs_prediction_diff`` the largest difference, both over the rows
    that both pipelines scored with a finite number; ``predictions_non_finite`` counts
    the others (NaN or infinity from either pipeline: features that overflow the dtype,
    as money above 65504 does in float16). ``max_abs_prediction_diff`` is NaN (``None``
    in :meth:`to_dict`) when no row has two finite scores. ``trap``: sample rows of
    ``(exact ID, ID as the naive frame's column holds it (as the decoder left it), ID as
    the float32 tensor holds it)``.
    """

    rows: int
    ids_distinct: dict[str, int]
    typed_ids_corrupted: dict[str, int]
    typed_ids_colliding: dict[str, int]
    naive_ids_corrupted: dict[str, int]
    naive_ids_colliding: dict[str, int]
    naive_ids_corrupted_before_tensor: dict[str, int]
    typed_money_inexact: int
    naive_money_inexact: int
    naive_money_cents_lost: int
    predictions_differ: int
    max_abs_prediction_diff: float
    atol: float
    trap: list[tuple[int, int, int]]
    predictions_non_finite: int = 0
    typed_money_cents_lost: int = 0

    @property
    def typed_corrupted(self) -> int:
        """Typed rows whose ID changed plus distinct IDs that collide (0 when correct)."""
        return sum(self.typed_ids_corrupted.values()) + sum(self.typed_ids_colliding.values())

    @property
    def naive_corrupted(self) -> int:
        """Naive rows whose ID changed (all ID fields)."""
        return sum(self.naive_ids_corrupted.values())

    @property
    def naive_colliding(self) -> int:
        return sum(self.naive_ids_colliding.values())

    def to_frame(self) -> pl.DataFrame:
        """One row per ID field: distinct IDs, and per path how many reached the model
        changed or colliding (naive: also how many were already wrong in the array handed
        to torch, ``naive_wrong_before_tensor``)."""
        import polars as pl

        return pl.DataFrame([{
            "field": field, "distinct": n,
            "typed_corrupted": self.typed_ids_corrupted.get(field, 0),
            "typed_colliding": self.typed_ids_colliding.get(field, 0),
            "naive_corrupted": self.naive_ids_corrupted.get(field, 0),
            "naive_colliding": self.naive_ids_colliding.get(field, 0),
            "naive_wrong_before_tensor": self.naive_ids_corrupted_before_tensor.get(field, 0),
        } for field, n in self.ids_distinct.items()])

    def trap_frame(self, n: int | None = None) -> pl.DataFrame:
        """The sampled IDs: exact, as the naive frame's column held it (the decoder's
        value), as float32 (all exact ``Int64``) and the float32 error, in IDs."""
        import polars as pl

        rows = self.trap if n is None else self.trap[:n]
        data = {"exact_id": [e for e, _, _ in rows],
                "naive_frame_id": [f for _, f, _ in rows],
                "float32_id": [s for _, _, s in rows],
                "float32_error": [s - e for e, _, s in rows]}
        fits = all(-(2**63) <= v < 2**63 for col in data.values() for v in col)
        # float32 can round an ID up to 2**63, past int64: then show text, still exact
        dtype = pl.Int64 if fits else pl.String
        return pl.DataFrame({k: [v if fits else str(v) for v in col]
                             for k, col in data.items()},
                            schema=dict.fromkeys(data, dtype))

    def to_dict(self) -> dict[str, Any]:
        """JSON values only: a non-finite float is ``None``."""
        d = dataclasses.asdict(self)
        d["trap"] = [[str(a), str(b), str(c)] for a, b, c in self.trap]  # exact in JSON
        d.update(typed_corrupted=self.typed_corrupted, naive_corrupted=self.naive_corrupted,
                 naive_colliding=self.naive_colliding)
        safe: dict[str, Any] = _json_safe(d)
        return safe

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Correctness:
        """The check :meth:`to_dict` wrote (raises :class:`~evtools.errors.InputError`):
        the trap's IDs are read back from their exact text, a ``None`` difference as NaN."""
        what = "a correctness check"
        doc = _nan_for_none(d, ("max_abs_prediction_diff",))
        if isinstance(doc, Mapping) and "trap" in doc:  # exact IDs, written as text
            rows = _convert(doc["trap"], list[tuple[int | str, int | str, int | str]], what,
                            "/trap")
            trap = []
            for i, row in enumerate(rows):
                try:
                    trap.append(tuple(v if type(v) is int else int(v, 10) for v in row))
                except ValueError:
                    raise InputError(f"not {what}: an ID that is not an integer in {row!r}",
                                     path=f"/trap/{i}") from None
            doc = {**doc, "trap": trap}
        correctness: Correctness = _convert(doc, cls, what)
        return correctness


class _BenchmarkDoc(msgspec.Struct):
    """The members of a written :class:`InferenceBenchmark` that are read back (its
    runs and parts are read by their own ``from_dict``)."""

    environment: dict[str, Any]
    config: dict[str, Any]
    runs: list[Any]
    correctness: dict[str, Any] | None = None
    cold_start: dict[str, Any] | None = None


def _part(kind: Any, doc: Any, path: str) -> Any:
    """``kind.from_dict(doc)``, its error naming where ``doc`` is in the document."""
    try:
        return kind.from_dict(doc)
    except InputError as e:
        raise InputError(e.message, path=path + (e.context.path or "")) from None


@dataclasses.dataclass
class InferenceBenchmark:
    """Everything one benchmark run measured, with its environment and configuration."""

    environment: dict[str, Any]
    config: dict[str, Any]
    runs: list[Run]
    correctness: Correctness | None = None
    cold_start: ColdStart | None = None

    def select(self, *, stage: str | None = None, pipeline: str | None = None,
               mode: str | None = None) -> list[Run]:
        return [r for r in self.runs if (stage is None or r.stage == stage)
                and (pipeline is None or r.pipeline == pipeline)
                and (mode is None or r.mode == mode)]

    @property
    def naive_per_row(self) -> Run | None:
        runs = self.select(stage="end-to-end", pipeline="naive", mode="per-row")
        return runs[0] if runs else None

    @property
    def best_typed(self) -> Run | None:
        runs = self.select(stage="end-to-end", pipeline="typed")
        return max(runs, key=lambda r: r.throughput) if runs else None

    @property
    def speedup(self) -> float:
        """End-to-end samples/s of the best typed batch size over naive per-row (same run)."""
        base, best = self.naive_per_row, self.best_typed
        if base is None or best is None or base.throughput <= 0:
            return float("nan")
        return best.throughput / base.throughput

    def speedup_at(self, batch_size: int) -> float:
        """Typed over naive end-to-end samples/s at the same batch size."""
        typed = [r for r in self.select(stage="end-to-end", pipeline="typed")
                 if r.batch_size == batch_size]
        naive = [r for r in self.select(stage="end-to-end", pipeline="naive")
                 if r.batch_size == batch_size]
        if not typed or not naive or naive[0].throughput <= 0:
            return float("nan")
        return typed[0].throughput / naive[0].throughput

    def to_frame(self, backend: Literal["polars", "pandas"] = "polars") -> Any:
        """One row per run: stage, pipeline, mode, batch size, samples/s, latency
        percentiles (ms), peak memory; device and dtype repeated on each row."""
        rows = [{**r.summary(), "device": self.environment.get("device"),
                 "dtype": self.config.get("dtype")} for r in self.runs]
        if backend == "pandas":
            import pandas as pd

            return pd.DataFrame(rows)
        import polars as pl

        return pl.DataFrame(rows, infer_schema_length=None)

    def headlines(self) -> dict[str, Any]:
        """The figures a report leads with."""
        best, base = self.best_typed, self.naive_per_row
        c = self.correctness
        return {
            "speedup": self.speedup,
            "typed_best_batch_size": best.batch_size if best else None,
            "typed_best_samples_per_s": best.throughput if best else None,
            "typed_best_p99_ms": best.p99_ms if best else None,
            "naive_per_row_samples_per_s": base.throughput if base else None,
            "naive_per_row_p99_ms": base.p99_ms if base else None,
            "typed_corrupted_ids": c.typed_corrupted if c else None,
            "naive_corrupted_ids": c.naive_corrupted if c else None,
            "naive_colliding_ids": c.naive_colliding if c else None,
            "predictions_differ": c.predictions_differ if c else None,
            "predictions_non_finite": c.predictions_non_finite if c else None,
            "cold_start_s": self.cold_start.total_s if self.cold_start else None,
        }

    def to_dict(self, *, latencies: bool = True) -> dict[str, Any]:
        """JSON values only: a figure that is not finite (NaN, infinity) is ``None``."""
        d: dict[str, Any] = _json_safe({
            "benchmark": "inference",
            "headlines": self.headlines(),
            "environment": self.environment,
            "config": self.config,
            "cold_start": self.cold_start.to_dict() if self.cold_start else None,
            "correctness": self.correctness.to_dict() if self.correctness else None,
            "runs": [r.to_dict(latencies=latencies) for r in self.runs],
        })
        return d

    def to_json(self, *, latencies: bool = True, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(latencies=latencies), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InferenceBenchmark:
        """The result :meth:`to_dict` wrote, e.g. read back from ``inference.json``
        (raises :class:`~evtools.errors.InputError` naming the member at fault)."""
        doc = _convert(d, _BenchmarkDoc, "an inference benchmark result")
        return cls(environment=doc.environment, config=doc.config,
                   runs=[_part(Run, r, f"/runs/{i}") for i, r in enumerate(doc.runs)],
                   correctness=_part(Correctness, doc.correctness, "/correctness")
                   if doc.correctness else None,
                   cold_start=_part(ColdStart, doc.cold_start, "/cold_start")
                   if doc.cold_start else None)

    def summary(self) -> str:
        lines = [f"device {self.environment.get('device')} "
                 f"({self.environment.get('device_name')}), dtype {self.config.get('dtype')},"
                 f" {self.environment.get('torch_threads')} torch threads"]
        for r in self.runs:
            lines.append(f"{r.stage:10} {r.label:28} {r.throughput:12,.0f} samples/s  "
                         f"p50 {r.p50_ms:8.3f} ms  p99 {r.p99_ms:8.3f} ms")
        if not math.isnan(self.speedup):
            lines.append(f"typed batched vs naive per-row, end to end: {self.speedup:.1f}x")
        if self.correctness:
            c = self.correctness
            lines.append(f"corrupted IDs: typed {c.typed_corrupted}, naive {c.naive_corrupted} "
                         f"({c.naive_colliding} colliding); predictions differing: "
                         f"{c.predictions_differ} of {c.rows}")
            if c.predictions_non_finite:
                lines.append(f"rows scored NaN or infinity (left out of the comparison): "
                             f"{c.predictions_non_finite} of {c.rows}")
        return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity: not JSON) replaced by ``None``,
    in dicts, lists and tuples (a tuple becomes a list)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# -- environment -----------------------------------------------------------------------------

def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _describe_dialect(dialect: Any) -> str:
    if isinstance(dialect, str):
        return "json.loads (standard library)" if dialect == "json" else dialect
    return str(getattr(dialect, "name", None) or getattr(dialect, "__qualname__", None)
               or repr(dialect))


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where a measurement was taken: device and its name, versions (torch, CUDA, cuDNN,
    numpy, pandas, polars, Python), torch thread counts, CPU count and load average."""
    _need_torch()
    import pandas as pd
    import polars as pl
    import torch

    dev = select_device(device)  # "auto" resolved; a CUDA that is not there: UsageError
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    env: dict[str, Any] = {
        "device": str(dev),
        "device_type": dev.type,
        "device_name": cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": (torch.backends.cudnn.version()
                  if torch.backends.cudnn.is_available() else None),
        "cuda_available": torch.cuda.is_available(),
        "mps_available": _mps_available(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "loadavg": _loadavg(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "polars": pl.__version__,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        env.update(device_name=torch.cuda.get_device_name(index),
                   gpu_memory_bytes=int(props.total_memory),
                   gpu_capability=f"{props.major}.{props.minor}",
                   gpu_count=torch.cuda.device_count())
    elif dev.type == "mps":
        env.update(device_name=f"Apple MPS ({platform.machine()})")
    return env


# -- harness ---------------------------------------------------------------------------------

def _peak_reset(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def _device_index(device: torch.device) -> int:
    """The index of ``device``: ``cuda`` without one is the current CUDA device (asked
    only of a tensor's or a chosen CUDA device, so CUDA is up or is meant to be)."""
    import torch

    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if device.type == "cuda" else 0


def _physical_memory() -> int | None:
    """Bytes of memory this machine has, or ``None`` where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _on_device(actual: torch.device, wanted: torch.device) -> bool:
    """Whether a tensor on ``actual`` is on ``wanted``: ``torch.device("cuda")`` (what
    :func:`select_device` returns) is the tensor's ``cuda:0`` when 0 is current, though
    the two ``torch.device`` objects compare unequal."""
    return actual.type == wanted.type and _device_index(actual) == _device_index(wanted)


def _own_copy(model: torch.nn.Module, device: torch.device,
              dtype: torch.dtype) -> torch.nn.Module:
    """``model``, or a deep copy of it when moving it to ``device`` in ``dtype`` would
    change it: ``nn.Module.to`` works in place, and the caller's model stays as it was."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(not _on_device(t.device, device) or (t.is_floating_point() and t.dtype != dtype)
           for t in tensors):
        return copy.deepcopy(model)
    return model


def _prepare_model(model: torch.nn.Module, device: torch.device,
                   dtype: torch.dtype) -> torch.nn.Module:
    """``model`` on ``device`` in ``dtype``, in eval mode: a copy when that moves or casts
    it, else ``model`` itself, switched to eval mode in place (:func:`_prepared` puts its
    mode back)."""
    # .to(dtype) casts floating parameters and buffers only: int64 buffers (hash
    # parameters) stay exact. A model already on that device in that dtype is used as is
    return _own_copy(model, device, dtype).to(device=device, dtype=dtype).eval()


@contextlib.contextmanager
def _prepared(model: Any, device: torch.device, dtype: torch.dtype) -> Iterator[Any]:
    """For the ``with`` block, an ``nn.Module`` ready to serve (:func:`_prepare_model`:
    copied only where moving or casting it would change the caller's), and afterwards the
    caller's model as it was: used as is, it had been left in eval mode. Each submodule's
    ``training`` flag is restored (a caller may keep some in eval on purpose). Anything
    else (a plain function) is used as it is."""
    import torch

    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield _prepare_model(model, device, dtype)
    finally:
        for module, training in modes:
            module.training = training


def _callable_model(model: Any) -> None:
    if not callable(model):
        raise UsageError(f"the model must be a torch.nn.Module or a function of the "
                         f"inputs, got {type(model).__name__}")


def _built(factory: Callable[[], Any]) -> torch.nn.Module:
    """``factory()``, which must be an ``nn.Module`` (else a :class:`UsageError`)."""
    import torch

    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"the model factory returned {type(model).__name__}, not a "
                         "torch.nn.Module")
    return model


def _host_inputs(inputs: Any, what: str) -> list[torch.Tensor]:
    """``inputs`` (a sequence of batch-first host tensors, or a :class:`FeatureBatch`) as a
    list, or a :class:`UsageError` saying what is expected."""
    import torch

    if isinstance(inputs, FeatureBatch):
        return list(inputs.as_inputs())
    if isinstance(inputs, torch.Tensor):
        raise UsageError(f"{what} takes a tuple of input tensors (the model's arguments), "
                         "got one tensor: pass (x,)")
    if isinstance(inputs, str | bytes | Mapping) or not isinstance(inputs, Iterable):
        raise UsageError(f"{what} takes a tuple of input tensors or a FeatureBatch, got "
                         f"{type(inputs).__name__}")
    host = list(inputs)
    if not host:
        raise UsageError(f"{what} needs at least one input tensor")
    for i, t in enumerate(host):
        if not isinstance(t, torch.Tensor):
            kind = f"{type(t).__module__}.{type(t).__name__}".removeprefix("builtins.")
            hint = " (torch.from_numpy makes one)" if isinstance(t, np.ndarray) else ""
            raise UsageError(f"{what}: input {i} is a {kind}, not a torch.Tensor{hint}")
        if t.dim() == 0:
            raise UsageError(f"{what}: input {i} is a 0-dimensional tensor; inputs are "
                             "batch-first, their first dimension the rows")
        if t.device.type != "cpu":
            raise UsageError(f"{what}: input {i} is on {t.device}; inputs are host (CPU) "
                             "tensors, moved to the device by the harness")
    return host


def _batch_sizes(batch_sizes: Any, name: str = "a batch size") -> list[int]:
    """``batch_sizes`` as a list of ints >= 1: a bare int or text is a :class:`UsageError`
    (an int had been a TypeError)."""
    if isinstance(batch_sizes, str | bytes) or not isinstance(batch_sizes, Iterable):
        raise UsageError(f"batch_sizes must be a sequence of ints >= 1, e.g. (1, 8), got "
                         f"{batch_sizes!r}")
    return [_count(b, name) for b in batch_sizes]


def _cast_inputs(inputs: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    return [t.to(dtype) if t.is_floating_point() else t for t in inputs]


def measure_cold_start(factory: Callable[[], torch.nn.Module],
                       example_inputs: Sequence[torch.Tensor], *,
                       device: str | torch.device = "auto",
                       dtype: str = "float32") -> ColdStart:
    """Time build + weight load + move to device + first inference of a fresh model.

    ``factory`` builds the model (any ``nn.Module``; a factory that is not callable, or
    returns anything else, is a :class:`UsageError`); its weights are then saved to a
    checkpoint in memory and loaded back (``torch.load(weights_only=True)``), as serving
    does from disk. ``example_inputs`` are batch-first host tensors (a sequence of them,
    or a :class:`FeatureBatch`); one row is used. A model the factory hands over twice is
    left as it was (device, dtype, training mode).
    """
    _need_torch()
    import torch

    if not callable(factory):
        raise UsageError(f"factory must be a function returning a torch.nn.Module, got "
                         f"{type(factory).__name__}")
    example = _host_inputs(example_inputs, "measure_cold_start")
    dev = select_device(device)
    fdtype = _torch_dtype(dtype)
    initialised = dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_initialized())
    t0 = time.perf_counter()
    built = _built(factory)
    t1 = time.perf_counter()
    modes = [(m, m.training) for m in built.modules()]  # put back at the end
    try:
        buf = io.BytesIO()
        torch.save(built.state_dict(), buf)
        buf.seek(0)
        t_save = time.perf_counter()
        built.load_state_dict(torch.load(buf, weights_only=True))
        t2 = time.perf_counter()
        # a model the factory hands over twice is not moved under its caller; serving moves
        # its own model and copies nothing, so the copy is left out of to_device_s
        model = _own_copy(built, dev, fdtype)
        t_copied = time.perf_counter()
        model = model.to(device=dev, dtype=fdtype).eval()
        _sync(dev)
        t3 = time.perf_counter()
        with torch.inference_mode():
            inputs = _cast_inputs([t[:1].to(dev) for t in example], fdtype)
            out = model(*inputs)
            _sync(dev)
            out.to("cpu")
        t4 = time.perf_counter()
    finally:
        for module, training in modes:
            module.training = training
    return ColdStart(construct_s=t1 - t0, load_s=t2 - t_save, to_device_s=t3 - t_copied,
                     first_inference_s=t4 - t3, device_initialised=initialised)


def benchmark_model(model: torch.nn.Module, inputs: Sequence[torch.Tensor] | FeatureBatch, *,
                    batch_sizes: Sequence[int] = (1, 8, 64, 512),
                    device: str | torch.device = "auto", dtype: str = "float32",
                    warmup: int = 10, latency_requests: int = 200, min_seconds: float = 0.3,
                    max_requests: int = 10_000,
                    label: str = "model") -> list[Run]:
    """Sweep batch sizes over any ``nn.Module`` called as ``model(*inputs)``.

    ``inputs`` are batch-first host tensors (``N`` rows; a sequence of them, or a
    :class:`FeatureBatch`); request ``i`` of batch size ``b`` is the ``i``-th slice of
    ``b`` rows (wrapping around). For each size: ``warmup`` requests; a single-stream
    phase of ``latency_requests`` requests, each from host tensors to a result on the
    host, timed one by one (device synchronised); an offline phase issuing requests back
    to back for ``min_seconds`` (at least one request, at most ``max_requests``), for
    samples/s: its results are not kept (each output is dropped when the next request is
    issued), and the clock stops once the last one is on the host and the device is
    synchronised (one stream: every request is then done). Every request is a slice of
    host buffers prepared before timing (the rows past ``N`` repeat the first ones); on
    CUDA they sit in pinned memory and are copied with ``non_blocking=True``.

    ``peak_memory_bytes`` (CUDA only, else ``None``): the most device memory held in
    tensors (``torch.cuda.max_memory_allocated``, reset after the warm-up of each batch
    size) during the timed phases of that size: the model's weights and buffers, each
    request's inputs, activations and output (the one before it too, while it runs),
    and whatever else this process holds on that device at the time; not the
    allocator's cached free blocks, and no stored results.

    Batch sizes are a sequence of ints >= 1; those buffers hold ``N + max(batch_sizes) -
    1`` rows, and a batch size whose buffers would need more than the machine's memory is
    refused. So are a ``model`` that is not an ``nn.Module``, inputs that are not host
    tensors with a first dimension, ``warmup`` below 0, ``latency_requests`` or
    ``max_requests`` below 1 and a ``min_seconds`` that is negative or not finite: each a
    :class:`UsageError`, before anything runs. The caller's model is left as it was
    (device, dtype, training mode).
    """
    _need_torch()
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"benchmark_model times a torch.nn.Module, got "
                         f"{type(model).__name__} (wrap a function in a module)")
    sizes = _batch_sizes(batch_sizes)
    warmup = _count(warmup, "warmup", 0)
    latency_requests = _count(latency_requests, "latency_requests")
    max_requests = _count(max_requests, "max_requests")
    min_seconds = _seconds(min_seconds, "min_seconds")
    host = _host_inputs(inputs, "benchmark_model")
    dev = select_device(device)
    fdtype = _torch_dtype(dtype)
    n = int(host[0].shape[0])
    if n == 0 or any(int(t.shape[0]) != n for t in host):
        raise UsageError("inputs must be non-empty and share their first (batch) dimension")
    # rows n.. repeat rows 0.. so that every request, wrapping around or not, is a slice
    # of these buffers: no gather, no pinned allocation inside the timed loops, and a
    # non_blocking copy never reads a temporary freed before the copy ran
    rows = n + max(sizes, default=1) - 1
    need = rows * sum(t[:1].numel() * t.element_size() for t in host)
    memory = _physical_memory()
    if memory is not None and need > memory:
        raise UsageError(f"batch size {max(sizes)} needs {need / 2**30:,.1f} GiB of input "
                         f"buffers (its requests repeat the {n} input rows), more than this "
                         f"machine's {memory / 2**30:,.1f} GiB of memory")
    host = [t[torch.arange(rows) % n] if rows > n else t.contiguous() for t in host]
    pinned = dev.type == "cuda"  # non_blocking only from pinned memory, only on CUDA
    if pinned:
        host = [t.pin_memory() for t in host]
    runs: list[Run] = []

    def request(i: int, b: int) -> torch.Tensor:
        start = (i * b) % n
        on_dev = [t[start:start + b].to(dev, non_blocking=pinned) for t in host]
        out: torch.Tensor = model(*_cast_inputs(on_dev, fdtype))
        return out

    # on the device, in dtype (a copy if moved), in eval mode for the block
    with _prepared(model, dev, fdtype) as model, torch.inference_mode():
        for b in sizes:
            for i in range(warmup):
                request(i, b).to("cpu")
            _sync(dev)
            _peak_reset(dev)
            latencies: list[float] = []
            for i in range(latency_requests):
                t0 = time.perf_counter()
                request(i, b).to("cpu")  # blocking copy back: the request is complete
                _sync(dev)
                latencies.append((time.perf_counter() - t0) * 1e3)
            _sync(dev)
            count = 0
            t0 = time.perf_counter()
            deadline = t0 + min_seconds
            # only the last output is held: every result had been kept on the device until
            # the end (max_requests x b values), which the peak memory then measured
            last: torch.Tensor | None = None
            while count < max_requests and (count == 0 or time.perf_counter() < deadline):
                last = request(count, b)
                count += 1
            if last is not None:
                last.to("cpu")  # a blocking copy after every request of the stream
            _sync(dev)  # and every queued kernel done, before the clock is read
            seconds = time.perf_counter() - t0
            del last
            runs.append(Run(stage="model", pipeline=label, mode="batched" if b > 1 else
                            "per-row", batch_size=b, samples=count * b, requests=count,
                            seconds=seconds, throughput=count * b / seconds,
                            latencies_ms=latencies, peak_memory_bytes=_peak(dev)))
            log.info("model b=%d: %.0f samples/s, p99 %.3f ms", b, runs[-1].throughput,
                     runs[-1].p99_ms)
    return runs


@dataclasses.dataclass
class _E2EConfig:
    pipeline: TypedPipeline | NaivePipeline
    states: Sequence[Any]
    latencies: list[float] = dataclasses.field(default_factory=list)
    rounds: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    peak: int | None = None


def _e2e_round(cfg: _E2EConfig, model: torch.nn.Module, device: torch.device, dtype: str,
               min_seconds: float) -> None:
    """One round of a configuration: whole passes over its states until ``min_seconds``."""
    n = len(cfg.states)
    passes = 0
    _peak_reset(device)
    t0 = time.perf_counter()
    while True:
        cfg.pipeline.predict(model, cfg.states, device=device, dtype=dtype,
                             latencies=cfg.latencies)
        _sync(device)
        passes += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            break
    cfg.rounds.append((elapsed, passes * n, passes * math.ceil(n / cfg.pipeline.batch_size)))
    peak = _peak(device)
    if peak is not None:
        cfg.peak = max(cfg.peak or 0, peak)


def benchmark_pipelines(model: torch.nn.Module, typed_states: Sequence[Any],
                        naive_states: Sequence[Mapping[str, Any]], *,
                        spec: FeatureSpec = ORDER_FEATURES,
                        batch_sizes: Sequence[int] = (1, 8, 64, 512),
                        device: str | torch.device = "auto",
                        dtype: str = "float32", repeats: int = 3,
                        naive_batch_sizes: Sequence[int] | None = None,
                        warmup_states: int = 64, min_seconds: float = 0.25) -> list[Run]:
    """End to end, from rehydrated state to predictions on the host, in the same run:
    naive per row (and at ``naive_batch_sizes``, by default the sizes up to 64) and
    typed at every batch size.

    After a warm-up of each configuration (``warmup_states``, at least two full requests
    and the shorter last request of a pass), ``repeats`` rounds run every configuration
    once each, interleaved, so that a neighbour's burst on a shared machine hits all of
    them alike. In a round a configuration makes whole passes over all its states until
    ``min_seconds`` have passed. Its samples/s is that of the median round; its
    latencies are every request of every round. A batch size larger than the states makes
    one request of all of them. Batch sizes (a sequence of them) and ``repeats`` below 1,
    a negative ``warmup_states`` and a ``min_seconds`` that is negative or not finite are
    a :class:`UsageError`, before anything runs. The caller's model is left as it was
    (device, dtype, training mode)."""
    _need_torch()
    _callable_model(model)
    repeats = _count(repeats, "repeats")
    warmup_states = _count(warmup_states, "warmup_states", 0)
    min_seconds = _seconds(min_seconds, "min_seconds")
    sizes = sorted(set(_batch_sizes(batch_sizes)))
    naive_sizes = sorted({1, *(_batch_sizes(naive_batch_sizes, "a naive batch size")
                               if naive_batch_sizes is not None
                               else [b for b in sizes if b <= 64])})
    dev = select_device(device)
    fdtype = _torch_dtype(dtype)
    configs = ([_E2EConfig(NaivePipeline(spec, batch_size=b), naive_states)
                for b in naive_sizes]
               + [_E2EConfig(TypedPipeline(spec, batch_size=b), typed_states) for b in sizes])
    # on the device, in dtype (a copy if moved), in eval mode for the block
    with _prepared(model, dev, fdtype) as model:
        for cfg in configs:
            if warmup_states:  # at least two full requests, so the timed shapes are warm too
                n, b = len(cfg.states), cfg.pipeline.batch_size
                warm = min(n, max(warmup_states, 2 * b))
                cfg.pipeline.predict(model, cfg.states[:warm], device=dev, dtype=dtype)
                if warm < n and n % b:  # and the shorter last request of every pass (on
                    # CUDA a new shape can pick a GEMM kernel whose module loads at first
                    # launch)
                    cfg.pipeline.predict(model, cfg.states[n - n % b:], device=dev,
                                         dtype=dtype)
        _sync(dev)
        for _ in range(repeats):
            for cfg in configs:
                _e2e_round(cfg, model, dev, dtype, min_seconds)
    runs: list[Run] = []
    for cfg in configs:
        seconds, samples, requests = sorted(cfg.rounds, key=lambda r: r[1] / r[0])[
            len(cfg.rounds) // 2]
        p = cfg.pipeline
        run = Run(stage="end-to-end", pipeline=p.name, mode=p.mode, batch_size=p.batch_size,
                  samples=samples, requests=requests, seconds=seconds,
                  throughput=samples / seconds,
                  latencies_ms=[v * 1e3 for v in cfg.latencies],
                  peak_memory_bytes=cfg.peak, repeats=repeats)
        log.info("end-to-end %s: %.0f samples/s, p99 %.3f ms", run.label, run.throughput,
                 run.p99_ms)
        runs.append(run)
    return runs


def _exact_int(value: Any) -> int | None:
    """The integer a consumer's value stands for (a float is taken at its exact value)."""
    if value is None:
        return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _colliding(exact: Sequence[int], seen: Sequence[Any]) -> int:
    """Distinct exact values that share their seen value with another distinct exact one."""
    groups: dict[Any, set[int]] = {}
    for e, s in zip(exact, seen, strict=True):
        groups.setdefault(s, set()).add(e)
    return sum(len(g) for g in groups.values() if len(g) > 1)


def check_pipelines(model: torch.nn.Module, typed_states: Sequence[Any],
                    naive_states: Sequence[Mapping[str, Any]], *,
                    spec: FeatureSpec = ORDER_FEATURES, batch_size: int = 512,
                    device: str | torch.device = "auto", dtype: str = "float32",
                    atol: float | None = None,
                    trap_samples: int = 256) -> Correctness:
    """Count what the naive pipeline corrupts, row by row against the typed states (each
    count is defined in :class:`Correctness`: IDs as the model and as torch receive them,
    money as the model receives it on each path, in its dtype).

    ``typed_states[i]`` and ``naive_states[i]`` must be the same order. Both pipelines
    run with the same batch size, so any difference in predictions comes from the
    features. The caller's model is left as it was (device, dtype, training mode).
    ``atol`` defaults to 1e-6 for float32 and 1e-2 for half types. Rows that either
    pipeline scores NaN or infinity are counted apart
    (``predictions_non_finite``, with a logged warning), not compared. ``trap_samples``
    (the first rows kept in ``trap``) is an int >= 0, ``atol`` a finite number >= 0.
    """
    _need_torch()
    import torch

    _callable_model(model)
    batch_size = _batch_size(batch_size)
    trap_samples = _count(trap_samples, "trap_samples", 0)
    if atol is not None and (isinstance(atol, bool) or not isinstance(atol, int | float)
                             or not math.isfinite(atol) or atol < 0):
        raise UsageError(f"atol must be a finite number >= 0 or None, got {atol!r}")

    if len(typed_states) != len(naive_states):
        raise UsageError(f"typed and naive states differ in length: {len(typed_states)} vs "
                         f"{len(naive_states)}; they must be the same orders in the same order")
    dev = select_device(device)
    name = _dtype_name(dtype)
    tol = atol if atol is not None else (1e-6 if name == "float32" else 1e-2)
    fdtype = _torch_dtype(name)
    typed = TypedPipeline(spec, batch_size=batch_size)
    naive = NaivePipeline(spec, batch_size=batch_size)
    cols = typed.columns(typed_states)
    df = naive.frame(naive_states)
    # the rows exactly as the naive pipeline hands them to torch.tensor: `to_numpy()` of
    # the frame (or of its slices, or rows: the same dtype, the columns' common one), which
    # is float64 as soon as one column is (money): IDs above 2**53 change there already
    rows = df.to_numpy()
    # ... and as torch holds them (before `.long()` on the IDs)
    naive_x = torch.tensor(rows, dtype=_torch_dtype(naive.dtype)) if len(df) else \
        torch.empty((0, len(spec.columns)))
    typed_ids = cols.to_tensors().ids

    distinct: dict[str, int] = {}
    t_bad: dict[str, int] = {}
    t_coll: dict[str, int] = {}
    n_bad: dict[str, int] = {}
    n_coll: dict[str, int] = {}
    n_before: dict[str, int] = {}
    trap: list[tuple[int, int, int]] = []
    for j, feature in enumerate(spec.of_kind("id")):
        field = feature.name
        exact = [int(v) for v in _typed_column(typed_states, feature)]
        distinct[field] = len(set(exact))
        typed_seen = typed_ids[:, j].tolist()
        t_bad[field] = sum(a != b for a, b in zip(exact, typed_seen, strict=True))
        t_coll[field] = _colliding(exact, typed_seen)
        # the float value itself, exactly (`.long()` of a value rounded up to 2**63 wraps)
        seen32 = [_exact_int(v) for v in naive_x[:, j].tolist()]
        n_bad[field] = sum(a != b for a, b in zip(exact, seen32, strict=True))
        n_coll[field] = _colliding(exact, seen32)
        handed = [_exact_int(v) for v in rows[:, j].tolist()] if len(df) else []
        n_before[field] = sum(a != b for a, b in zip(exact, handed, strict=True))
        if j == 0:  # the frame's own column: the ID as the decoder left it
            frame_vals = [_exact_int(v) for v in df[field].tolist()]
            trap = [(e, f if f is not None else 0, s if s is not None else 0)
                    for e, f, s in list(zip(exact, frame_vals, seen32,
                                            strict=True))[:trap_samples]]

    # money as the model receives it on each path: the pipeline's float32 numeric column,
    # cast to the model's dtype (as predict does), against the exact minor units
    k, n_money = spec.n_ids, len(spec.money)
    typed_money = torch.from_numpy(cols.numeric[:, :n_money]).to(fdtype).to(torch.float64)
    naive_money = naive_x[:, k:k + n_money].to(fdtype).to(torch.float64)
    t_inexact = t_cents = n_inexact = n_cents = 0
    for j in range(n_money):
        minor = cols.money[:, j].tolist()
        inexact, cents = _money_losses(typed_money[:, j].tolist(), minor, spec.money_scale)
        t_inexact, t_cents = t_inexact + inexact, t_cents + cents
        inexact, cents = _money_losses(naive_money[:, j].tolist(), minor, spec.money_scale)
        n_inexact, n_cents = n_inexact + inexact, n_cents + cents

    with _prepared(model, dev, fdtype) as model:  # moved or cast once, for both
        p_typed = typed.predict(model, typed_states, device=dev, dtype=name)
        p_naive = naive.predict(model, naive_states, device=dev, dtype=name)
    finite = torch.isfinite(p_typed) & torch.isfinite(p_naive)
    non_finite = int((~finite).sum().item())
    diff = (p_typed - p_naive)[finite].abs()
    differ = int((diff > tol).sum().item()) if len(diff) else 0
    if non_finite:
        log.warning("%d of %d rows were scored NaN or infinity in %s (typed or naive "
                    "pipeline): the features overflow the dtype%s; the prediction "
                    "comparison leaves them out", non_finite, len(typed_states), name,
                    " (float16 holds at most 65504: money in currency units can be more)"
                    if name == "float16" else "")
    if t_cents and name != "float32":
        log.warning("%d of %d money amounts reach the model in %s without their cents, on "
                    "the typed path too: IDs and minor units stay exact, but %s holds 2 to 3 "
                    "significant digits; run float32 where cents matter", t_cents,
                    len(typed_states) * len(spec.money), name, name)
    result = Correctness(
        rows=len(typed_states), ids_distinct=distinct, typed_ids_corrupted=t_bad,
        typed_ids_colliding=t_coll, naive_ids_corrupted=n_bad, naive_ids_colliding=n_coll,
        naive_ids_corrupted_before_tensor=n_before, typed_money_inexact=t_inexact,
        naive_money_inexact=n_inexact, naive_money_cents_lost=n_cents,
        predictions_differ=differ,
        max_abs_prediction_diff=(float(diff.max().item()) if len(diff)
                                 else float("nan") if non_finite else 0.0),
        atol=tol, trap=trap, predictions_non_finite=non_finite,
        typed_money_cents_lost=t_cents)
    log.info("corrupted IDs: typed %d, naive %d; predictions differing %d of %d",
             result.typed_corrupted, result.naive_corrupted, differ, len(typed_states))
    return result


def _money_losses(seen: Sequence[float], minor_units: Sequence[int],
                  scale: int) -> tuple[int, int]:
    """``(inexact, cents_lost)`` of amounts as the model received them (``seen``, floats
    taken at their exact binary value) against their exact ``minor_units`` (of
    ``10**-scale``): ``inexact`` the amounts that are not exactly the decimal amount,
    ``cents_lost`` those that do not even round (half to even) to it; a NaN or an
    infinity is both."""
    inexact = lost = 0
    for value, units in zip(seen, minor_units, strict=True):
        if not math.isfinite(value):
            inexact, lost = inexact + 1, lost + 1
            continue
        scaled = Decimal(value).scaleb(scale, _EXACT)  # exact: no rounding at 28 digits
        if scaled != units:
            inexact += 1
            if scaled.to_integral_value(decimal.ROUND_HALF_EVEN, _EXACT) != units:
                lost += 1
    return inexact, lost


# -- the benchmark on the generated workload --------------------------------------------------

def run_inference_benchmark(device: str | torch.device = "auto",
                            batch_sizes: Sequence[int] | None = None, *,
                            n_orders: int = 5_000, seed: int = 7, dtype: str = "float32",
                            repeats: int = 3, round_seconds: float = 0.25,
                            model_seconds: float = 0.3,
                            latency_requests: int = 200,
                            warmup_states: int = 64, naive_dialect: str | Any = "json",
                            model_factory: Callable[[], torch.nn.Module] | None = None,
                            num_threads: int | None = None) -> InferenceBenchmark:
    """The whole inference benchmark on a generated order workload, in one run.

    Generates ``n_orders`` orders (seeded), rebuilds them twice (typed, and the way an
    untyped consumer does), then: cold start on the device, the correctness counts, the
    end-to-end sweep (naive per-row and small batches, typed at every batch size;
    ``repeats`` interleaved rounds of at least ``round_seconds`` each, see
    :func:`benchmark_pipelines`) and the model-only sweep (``model_seconds`` of offline
    load and ``latency_requests`` timed requests per batch size, see
    :func:`benchmark_model`). ``model_factory`` replaces the risk scorer by any module taking
    ``(ids int64 [B, k], numeric float [B, m])``: a function of no arguments returning an
    ``nn.Module`` (anything else is a :class:`UsageError`: when it is not callable, before
    anything runs; when what it returns is no module, at the cold start).
    ``naive_dialect`` is the untyped consumer's decoder (:func:`rehydrate_orders`).

    ``dtype``: ``float32``, or a half type (``float16``, ``bfloat16``) meant for CUDA: on
    the CPU one runs, with a logged warning, as most CPUs compute half types in software;
    float16 also overflows above 65504 (money in currency units can), and the rows it
    scores NaN are counted in ``correctness.predictions_non_finite``. Figures that are
    not finite are ``None`` in :meth:`InferenceBenchmark.to_dict`.

    ``num_threads`` sets torch's intra-op threads for the run (restored afterwards); 0
    keeps torch's default. ``None`` (the default) means 1 on CPU and torch's default on a
    GPU: on a small shared CPU, OpenMP workers spin at every op while a neighbour's
    process holds the other cores, which makes multi-threaded timings unreadable (batched
    requests 10-50x slower than with one thread on a loaded 2-core machine), and both
    pipelines get the same threads, so the comparison stays fair. The count used is
    recorded (``environment["torch_threads"]``).

    ``batch_sizes`` defaults to :data:`DEFAULT_BATCH_SIZES`, those up to ``n_orders``.
    Arguments out of range raise a :class:`UsageError` before anything runs: ``n_orders``,
    a batch size, ``repeats`` or ``latency_requests`` that is not an int >= 1 (a bool or
    a float is not one either), a batch size larger than ``n_orders`` (a request holds at
    most every order: it is refused rather than cut down to ``n_orders``, which would
    label results with a size that never ran), ``num_threads`` outside ``0..4 * CPUs``, a
    ``seed`` outside ``0..2**64 - 1``, a negative ``warmup_states``, and seconds that are
    negative or not finite.
    """
    _need_torch()
    import torch

    n_orders = _count(n_orders, "n_orders")
    if batch_sizes is None:  # the defaults that fit the orders
        batch_sizes = [b for b in DEFAULT_BATCH_SIZES if b <= n_orders]
    bad_sizes = UsageError(f"batch sizes must be positive integers, got {batch_sizes!r}")
    try:
        sizes = tuple(sorted({_count(b, "a batch size") for b in batch_sizes}))
    except (TypeError, UsageError):
        raise bad_sizes from None
    if not sizes:
        raise bad_sizes
    if sizes[-1] > n_orders:
        too_big = [str(b) for b in sizes if b > n_orders]
        which = (f"batch sizes {', '.join(too_big)} are" if len(too_big) > 1
                 else f"batch size {too_big[0]} is")
        raise UsageError(f"{which} more than n_orders ({n_orders}): a request holds at "
                         f"most all {n_orders} orders; use batch sizes up to {n_orders}, "
                         f"or more orders")
    most = _max_threads()
    if num_threads is not None and (isinstance(num_threads, bool)
                                    or not isinstance(num_threads, int)
                                    or not 0 <= num_threads <= most):
        raise UsageError(f"num_threads must be 1..{most} (at most 4 per CPU), 0 (torch's "
                         f"default) or None (1 on CPU), got {num_threads!r}")
    seed = _seed(seed)
    if model_factory is not None and not callable(model_factory):
        raise UsageError(f"model_factory must be a function returning a torch.nn.Module, "
                         f"got {type(model_factory).__name__}")
    repeats = _count(repeats, "repeats")
    latency_requests = _count(latency_requests, "latency_requests")
    warmup_states = _count(warmup_states, "warmup_states", 0)
    round_seconds = _seconds(round_seconds, "round_seconds")
    model_seconds = _seconds(model_seconds, "model_seconds")
    dtype = _dtype_name(dtype)
    dev = select_device(device)
    if dev.type == "cpu" and dtype != "float32":
        log.warning("dtype %s on the CPU: half types are meant for CUDA; most CPUs compute "
                    "them in software, so these timings say little about %s on a GPU (or "
                    "about float32 here)", dtype, dtype)
    spec = ORDER_FEATURES
    factory = model_factory or functools.partial(risk_scorer, spec, seed=seed)
    previous_threads = torch.get_num_threads()
    threads = (1 if dev.type == "cpu" else 0) if num_threads is None else num_threads
    if threads:
        torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        typed_states, naive_states = order_workload(n_orders, seed=seed,
                                                    naive_dialect=naive_dialect)
        prepare_s = time.perf_counter() - t0
        # first touch of the device: the cold start includes CUDA context creation
        example = TypedPipeline(spec).columns(typed_states[:1]).to_tensors().as_inputs()
        cold = measure_cold_start(factory, example, device=str(dev), dtype=dtype)
        env = environment(dev)
        model = _built(factory)
        correctness = check_pipelines(model, typed_states, naive_states, spec=spec,
                                      batch_size=max(sizes), device=str(dev), dtype=dtype)
        features = TypedPipeline(spec).columns(typed_states).to_tensors()
        # the workload is long-lived: keep the cyclic GC from re-walking it while we time
        gc.collect()
        gc.freeze()
        try:
            runs = benchmark_pipelines(model, typed_states, naive_states, spec=spec,
                                       batch_sizes=sizes, device=str(dev), dtype=dtype,
                                       repeats=repeats, warmup_states=warmup_states,
                                       min_seconds=round_seconds)
            runs += benchmark_model(model, features, batch_sizes=sizes, device=str(dev),
                                    dtype=dtype, min_seconds=model_seconds,
                                    latency_requests=latency_requests)
        finally:
            gc.unfreeze()
        env["loadavg_after"] = _loadavg()
    finally:
        torch.set_num_threads(previous_threads)
    config = {"device": str(device), "batch_sizes": list(sizes), "n_orders": n_orders,
              "rows": len(typed_states), "seed": seed, "dtype": dtype, "repeats": repeats,
              "warmup_states": warmup_states, "model_warmup_requests": 10,
              "round_seconds": round_seconds,
              "model_seconds": model_seconds, "latency_requests": latency_requests,
              "num_threads": threads or None, "naive_dialect": _describe_dialect(naive_dialect),
              "workload_seconds": round(prepare_s, 3), "model": type(model).__name__,
              "features": spec.describe(),
              "percentiles": "numpy 'higher' (each one an observed latency)",
              "end_to_end": "rehydrated state -> predictions on the host; the naive frame "
                            "build counts in samples/s, not in per-request latency",
              "gc": "collected, workload frozen out of the collector while timing"}
    result = InferenceBenchmark(environment=env, config=config, runs=runs,
                                correctness=correctness, cold_start=cold)
    log.info("inference benchmark: %.1fx typed vs naive per-row", result.speedup)
    return result


def _max_threads() -> int:
    """The most torch threads a run may ask for: 4 per CPU (torch takes any C int and
    then starts that many OpenMP workers)."""
    return 4 * (os.cpu_count() or 1)


def rehydrate_orders(events: Iterable[RawEvent], *, naive_dialect: str | Any = "json",
                     registry: Registry | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Rebuild every order stream in ``events`` twice, row for row: typed
    (:func:`~evtools.rehydration.rehydrate`, strict, frozen ``Order`` aggregates) and the way
    an untyped consumer does (:func:`~evtools.rehydration.naive_rehydrate` state dicts).

    ``naive_dialect``: ``"json"`` is the standard library's ``json.loads`` (what Python
    code reading events writes: big ints exact, money as binary floats); any dialect name
    (``"go"``, ``"js"``...), ``Dialect`` or ``bytes -> value`` callable is passed on.
    Streams keep the order in which they first appear.
    """
    from .orders import Order, order_registry
    from .rehydration import naive_rehydrate, rehydrate

    reg = registry or order_registry()
    decoder: Any = json.loads if naive_dialect == "json" else naive_dialect
    streams: dict[str, list[RawEvent]] = {}
    for raw in events:
        streams.setdefault(raw.stream, []).append(raw)
    typed: list[Any] = []
    naive: list[dict[str, Any]] = []
    for stream, raws in streams.items():
        typed.append(rehydrate(raws, reg, Order, stream=stream).aggregate)
        naive.append(naive_rehydrate(raws, dialect=decoder).state)
    return typed, naive


def order_workload(n_orders: int, *, seed: int = 7,
                   naive_dialect: str | Any = "json") -> tuple[list[Any], list[dict[str, Any]]]:
    """``n_orders`` generated orders (:mod:`evtools.datagen`, no injected faults) rebuilt
    twice by :func:`rehydrate_orders`: typed aggregates and untyped dicts, row for row."""
    from .datagen import generate

    return rehydrate_orders(generate(n_streams=_count(n_orders, "n_orders"), seed=seed),
                            naive_dialect=naive_dialect)
