"""evtools.plots.fidelity: every figure has a title, labelled axes with units and a caption,
and draws what the result holds.

The results are built by hand (no dialect runs), so these tests are fast and exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import polars as pl
import pytest
from matplotlib.axes import Axes

from evtools.errors import UsageError
from evtools.fidelity import AuditResult
from evtools.plots import fidelity as plots


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _row(dialect: str, path: str, **counts: int) -> dict[str, Any]:
    row: dict[str, Any] = {"dialect": dialect, "path": path, "values": 10, "at_risk": 0,
                           "value_changed": 0, "text_changed": 0, "type_changed": 0,
                           "dropped": 0, "rejected": 0, "examples": ()}
    row.update(counts)
    return row


def _audit() -> AuditResult:
    rows = (
        _row("python", ""), _row("python", "/id"),
        _row("go", "", rejected=2), _row("go", "/id", value_changed=7, text_changed=6),
        _row("go", "/price", value_changed=3),
        _row("torch", "/id", value_changed=9, text_changed=9, type_changed=9),
        _row("torch", "/name", dropped=10),
    )
    return AuditResult(rows=rows, dialects=("python", "go", "torch"), documents=10)


def _magnitudes() -> pl.DataFrame:
    rows = []
    for dialect, share in (("go", 0.5), ("torch", 1.0)):
        for kind, steps in (("integer", (52, 53, 54, 55)), ("decimal", (2, 3))):
            for m in steps:
                changed = share if kind == "decimal" or m > 53 or dialect == "torch" else 0.0
                rows.append({"dialect": dialect, "kind": kind, "magnitude": m, "values": 100,
                             "changed_fraction": changed, "text_changed_fraction": changed / 2})
    return pl.DataFrame(rows)


def _captioned(ax: Axes) -> None:
    assert ax.get_title()
    assert "(" in ax.get_xlabel() and ")" in ax.get_xlabel()  # units
    assert "(" in ax.get_ylabel() and ")" in ax.get_ylabel()
    caption: str = ax.caption  # type: ignore[attr-defined]
    assert caption.endswith(".") and len(caption) > 40


def test_loss_by_dialect_draws_one_group_per_dialect() -> None:
    ax = plots.loss_by_dialect(_audit())
    _captioned(ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["python", "go", "torch"]
    heights = {(c.get_label(), i): bar.get_height()
               for c in ax.containers for i, bar in enumerate(c)}  # type: ignore[attr-defined]
    assert len(ax.containers) == len(plots.LOSS_COLUMNS)
    assert heights[("value changed", 1)] == 10  # go: 7 + 3 over two paths
    assert heights[("rejected", 1)] == 2
    assert heights[("dropped", 2)] == 10
    assert all(heights[(c.replace("_", " "), 0)] == 0 for c in plots.LOSS_COLUMNS)
    assert any("nothing lost" in t.get_text() for t in ax.texts)
    assert ax.get_yscale() == "log"
    assert "10 documents" in ax.caption  # type: ignore[attr-defined]


def test_loss_by_dialect_takes_the_frame_and_an_axes() -> None:
    _, given = plt.subplots()
    ax = plots.loss_by_dialect(_audit().to_frame(), ax=given, log=False)
    assert ax is given
    assert ax.get_yscale() == "linear"
    _captioned(ax)


@pytest.mark.parametrize("kind", ["integer", "decimal"])
def test_loss_vs_magnitude_draws_value_and_text_lines_per_dialect(kind: str) -> None:
    ax = plots.loss_vs_magnitude(_magnitudes(), kind=kind)
    _captioned(ax)
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["go: value changed", "go: text changed", "torch: value changed",
                      "torch: text changed"]
    go = next(line for line in ax.get_lines() if line.get_label() == "go: value changed")
    expected = [0.0, 0.0, 0.5, 0.5] if kind == "integer" else [0.5, 0.5]
    assert list(go.get_ydata()) == expected
    assert "100 random values" in ax.caption  # type: ignore[attr-defined]
    assert ax.get_ylim()[1] > 1.0


def test_loss_vs_magnitude_rejects_an_unknown_kind() -> None:
    with pytest.raises(UsageError, match="unknown magnitude kind"):
        plots.loss_vs_magnitude(_magnitudes(), kind="complex")
