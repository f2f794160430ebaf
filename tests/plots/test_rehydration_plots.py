"""The rehydration plots: each draws what it is given, with a title, labelled axes (units)
and a one-sentence caption."""

from __future__ import annotations

from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.axes import Axes

from evtools.datagen import FaultRates, generate
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


def test_violations_over_versions_with_nothing_to_draw() -> None:
    ax = plots.violations_over_versions([])
    assert "none with a version" in ax.caption  # type: ignore[attr-defined]
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
