"""The rehydration plots: each draws what it is given, with a title, labelled axes (units)
and a one-sentence caption."""

from __future__ import annotations

from typing import Any

import matplotlib
import polars as pl
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.axes import Axes

from evtools.datagen import DETECTED_AS, FaultKind, FaultRates, generate
from evtools.orders import Order, order_registry
from evtools.plots import rehydration as plots
from evtools.rehydration import (
    NaiveComparison,
    Violation,
    ViolationKind,
    compare_with_manifest,
    rehydrate_events,
    violations_frame,
)


def _v(kind: ViolationKind, stream: str, version: int | None) -> Violation:
    return Violation(kind=kind, stream=stream, version=version, message=f"{kind} here")


VIOLATIONS = [
    _v(ViolationKind.GAP, "order-1", 3), _v(ViolationKind.GAP, "order-2", 5),
    _v(ViolationKind.DUPLICATE, "order-1", 1), _v(ViolationKind.CLOCK_SKEW, "order-3", 2),
    _v(ViolationKind.CLOCK_SKEW, "order-4", 2), _v(ViolationKind.CLOCK_SKEW, "order-5", 7),
    _v(ViolationKind.SNAPSHOT_INVALID, "order-6", None),
]


@pytest.fixture(autouse=True)
def _close() -> Any:
    yield
    plt.close("all")


def _check(ax: Axes) -> None:
    assert ax.get_title()
    assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel()
    caption = ax.caption  # type: ignore[attr-defined]
    assert caption and caption.endswith(".")
    assert caption in [t.get_text() for t in ax.texts]  # drawn, not only attached


def _bars(ax: Axes, label: str | None = None) -> dict[str, float]:
    """Bar widths by y tick label, for the container named ``label`` (or the only one)."""
    containers = [c for c in ax.containers if label is None or c.get_label() == label]
    assert len(containers) == 1, [c.get_label() for c in ax.containers]
    ticks = {round(t, 3): lab.get_text() for t, lab in zip(ax.get_yticks(),
                                                           ax.get_yticklabels(), strict=True)}
    out = {}
    for patch in containers[0]:
        centre = patch.get_y() + patch.get_height() / 2
        nearest = min(ticks, key=lambda t: abs(t - centre))
        out[ticks[nearest]] = patch.get_width()
    return out


def test_violations_by_kind_counts_each_kind() -> None:
    ax = plots.violations_by_kind(VIOLATIONS)
    assert _bars(ax) == {"gap": 2, "duplicate": 1, "clock_skew": 3, "snapshot_invalid": 1}
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "gap", "duplicate", "clock_skew", "snapshot_invalid"]  # catalogue order
    assert "7 in all" in ax.caption  # type: ignore[attr-defined]
    assert ax.get_legend() is None
    _check(ax)


def test_violations_by_kind_takes_a_frame_and_a_given_axes() -> None:
    _, given = plt.subplots()
    ax = plots.violations_by_kind(violations_frame(VIOLATIONS), ax=given)
    assert ax is given
    assert _bars(ax) == {"gap": 2, "duplicate": 1, "clock_skew": 3, "snapshot_invalid": 1}
    _check(ax)


def test_violations_by_kind_against_injected_counts() -> None:
    injected = {"gap": 2, "duplicate": 2, "clock_skew": 3, "snapshot_invalid": 1}
    ax = plots.violations_by_kind(VIOLATIONS, injected=injected)
    assert _bars(ax, "injected (generator manifest)") == injected
    assert _bars(ax, "caught (rehydration, audit)")["duplicate"] == 1
    assert "caught differs from injected for duplicate" in ax.caption  # type: ignore[attr-defined]
    assert ax.get_legend() is not None
    _check(ax)


def test_violations_by_kind_from_a_real_run_matches_the_manifest() -> None:
    workload = generate(600, seed=3, faults=FaultRates(gap=0.03, clock_skew=0.03))
    result = rehydrate_events(workload, order_registry(), Order, policy="audit")
    catalogue = compare_with_manifest(result.violations, workload.manifest)
    for ax in (plots.violations_by_kind(result, injected=workload.manifest),
               plots.violations_by_kind(catalogue)):
        caught = _bars(ax, "caught (rehydration, audit)")
        injected = _bars(ax, "injected (generator manifest)")
        assert caught == injected == {k: float(n) for k, n in result.counts.items()}
        assert set(caught) == {"gap", "clock_skew"}
        assert "caught equals injected for every kind" in ax.caption  # type: ignore[attr-defined]
        _check(ax)


OTHERS = [
    _v(ViolationKind.SNAPSHOT_AHEAD, "order-1", 4), _v(ViolationKind.APPLY_ERROR, "order-2", 1),
    _v(ViolationKind.OUT_OF_ORDER, "order-3", 2), _v(ViolationKind.WRONG_AGGREGATE, "order-4", 3),
    _v(ViolationKind.OUT_OF_ORDER, "order-5", 2), _v(ViolationKind.DECODE_ERROR, "order-6", 5),
    _v(ViolationKind.SNAPSHOT_CONFLICT, "order-7", 2),
]


def test_violations_by_kind_by_fault_labels_and_orders_rows_as_the_faults() -> None:
    ax = plots.violations_by_kind(OTHERS)
    assert [t.get_text() for t in ax.get_yticklabels()] == [  # catalogue order, kinds only
        "out_of_order", "wrong_aggregate", "decode_error", "apply_error", "snapshot_ahead",
        "snapshot_conflict"]
    assert ax.get_ylabel() == "violation kind (category)"
    ax = plots.violations_by_kind(OTHERS, by_fault=True)
    # FaultKind order (reorder, corrupt, foreign, snapshot_conflict, truncate); apply_error,
    # which no fault is caught as, last and under its own name
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "reorder → out_of_order", "corrupt → decode_error", "foreign → wrong_aggregate",
        "snapshot_conflict → snapshot_conflict", "truncate → snapshot_ahead", "apply_error"]
    assert _bars(ax)["reorder → out_of_order"] == 2
    assert _bars(ax)["apply_error"] == 1
    assert ax.get_ylabel() == "fault → violation kind (category)"
    _check(ax)


def test_violations_by_kind_by_fault_on_the_catalogue_keeps_its_order() -> None:
    faults = (FaultKind.REORDER, FaultKind.FOREIGN, FaultKind.TRUNCATE)
    frames = []
    for kind in faults:
        rate = 0.3 if kind == FaultKind.TRUNCATE else 0.03
        workload = generate(600, seed=3, faults=FaultRates(**{str(kind): rate}))
        result = rehydrate_events(workload, order_registry(), Order, policy="audit")
        frames.append(compare_with_manifest(result.violations, workload.manifest))
    catalogue = pl.concat(frames)
    ax = plots.violations_by_kind(catalogue, by_fault=True)
    labels = [f"{f} → {d}" for f, d in zip(catalogue["fault"], catalogue["detected_as"],
                                           strict=True)]
    assert labels == [f"{k} → {DETECTED_AS[k]}" for k in faults]
    assert [t.get_text() for t in ax.get_yticklabels()] == labels  # the table's rows, in order
    caught = _bars(ax, "caught (rehydration, audit)")
    injected = _bars(ax, "injected (generator manifest)")
    assert caught == injected == dict(zip(labels, map(float, catalogue["injected"]), strict=True))
    assert "caught equals injected for every fault" in ax.caption  # type: ignore[attr-defined]
    _check(ax)


def test_violations_by_kind_by_fault_names_the_fault_that_differs() -> None:
    ax = plots.violations_by_kind(OTHERS, by_fault=True, injected={"out_of_order": 3})
    assert ("caught differs from injected for reorder → out_of_order, corrupt → decode_error"
            in ax.caption)  # type: ignore[attr-defined]
    _check(ax)


def test_violations_over_versions_draws_a_dot_per_kind_and_version() -> None:
    ax = plots.violations_over_versions(VIOLATIONS)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["gap", "duplicate", "clock_skew"]  # the one without a version is left out
    drawn: dict[str, dict[float, float]] = {}
    for collection in ax.collections:
        for (x, y), size in zip(collection.get_offsets(), collection.get_sizes(), strict=True):
            drawn.setdefault(labels[round(y)], {})[float(x)] = float(size)
    # areas proportional to the counts: the largest (clock_skew at version 2, twice) is 300
    assert drawn == {"gap": {3: 150, 5: 150}, "duplicate": {1: 150},
                     "clock_skew": {2: 300, 7: 150}}
    caption = ax.caption  # type: ignore[attr-defined]
    assert "(7 violations" in caption and "1 without a version" in caption
    assert "largest dot stands for 2" in caption
    _check(ax)


def _key(ax: Axes) -> list[tuple[str, float]]:
    """The size key: (label, dot area in points squared) per entry."""
    legend = ax.get_legend()
    assert legend is not None
    return [(text.get_text(), round(handle.get_markersize() ** 2, 6))
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)]


def test_violations_over_versions_has_a_size_key() -> None:
    ax = plots.violations_over_versions(VIOLATIONS)
    # the largest dot (2 violations) is 300 points squared, one violation half of it
    assert _key(ax) == [("1 violation", 150.0), ("2 violations", 300.0)]
    assert ax.get_legend().get_title().get_text() == "at one version"
    many = [_v(ViolationKind.GAP, f"order-{i}", 4) for i in range(42)] + VIOLATIONS
    ax = plots.violations_over_versions(many, max_area=420.0)
    assert _key(ax) == [("1 violation", 10.0), ("21 violations", 210.0),
                        ("42 violations", 420.0)]
    assert "largest dot stands for 42" in ax.caption  # type: ignore[attr-defined]
    # the key's handles are not drawn on the axes: only the data's dots are
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6
    _check(ax)


def test_violations_over_versions_by_fault() -> None:
    ax = plots.violations_over_versions(OTHERS, by_fault=True)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["reorder → out_of_order", "corrupt → decode_error",
                      "foreign → wrong_aggregate", "snapshot_conflict → snapshot_conflict",
                      "truncate → snapshot_ahead", "apply_error"]
    drawn = {labels[round(y)]: float(x) for c in ax.collections for x, y in c.get_offsets()}
    assert drawn["truncate → snapshot_ahead"] == 4 and drawn["apply_error"] == 1
    _check(ax)


def test_violations_over_versions_with_nothing_to_draw() -> None:
    ax = plots.violations_over_versions([])
    assert "none with a version" in ax.caption  # type: ignore[attr-defined]
    assert ax.get_legend() is None  # no dots, no size key
    _check(ax)


COMPARISON = NaiveComparison(
    dialects=("python", "go", "js"), fields=("order_id", "status", "lines", "authorized_amount"),
    orders=40, differing={"python": {}, "go": {"order_id": 40, "lines": 38},
                          "js": {"order_id": 40, "lines": 38, "authorized_amount": 5}},
    orders_wrong={"python": 0, "go": 40, "js": 40})


def test_naive_vs_typed_draws_orders_per_field_and_dialect() -> None:
    ax = plots.naive_vs_typed(COMPARISON)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "order_id", "lines", "authorized_amount"]  # status: no dialect gets it wrong
    assert _bars(ax, "go") == {"order_id": 40, "lines": 38, "authorized_amount": 0}
    assert _bars(ax, "js") == {"order_id": 40, "lines": 38, "authorized_amount": 5}
    assert _bars(ax, "python") == {"order_id": 0, "lines": 0, "authorized_amount": 0}
    caption = ax.caption  # type: ignore[attr-defined]
    assert "of 40" in caption and "python 0, go 2, js 3" in caption
    assert "of 40" in ax.get_xlabel()
    _check(ax)


def test_naive_vs_typed_takes_the_frame_and_all_fields() -> None:
    ax = plots.naive_vs_typed(COMPARISON.to_frame(), all_fields=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(COMPARISON.fields)
    assert _bars(ax, "go")["status"] == 0
    _check(ax)


def test_naive_vs_typed_rejects_other_input() -> None:
    with pytest.raises(TypeError, match="NaiveComparison"):
        plots.naive_vs_typed([1, 2, 3])  # type: ignore[arg-type]
