"""Plots of the before/after summary (:func:`evtools.report.before_after`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._style import axes, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["comparison", "improvements"]


def comparison(row: Mapping[str, Any], ax: Axes | None = None) -> Axes:
    """One comparison: the *before* and *after* values side by side, with the factor."""
    ax = axes(ax, figsize=(6.0, 3.2))
    labels = [str(row["before"]), str(row["after"])]
    values = [float(row["before_value"]), float(row["after_value"])]
    bars = ax.barh(labels, values, color=["#c0392b", "#1e8449"])
    ax.bar_label(bars, labels=[_fmt(v) for v in values], padding=3)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.25 or 1)
    factor = row.get("improvement")
    better = (f"{factor:,.1f}x better after" if factor and factor >= 1 else
              f"{1 / factor:,.1f}x worse after" if factor else "nothing left after")
    return finish(ax, title=f"{row['comparison']}: {better}", xlabel=str(row["unit"]),
                  ylabel="path",
                  caption=f"{row['metric']} measured in one run ({row['source']}); "
                          f"the lower bar is the path evtools recommends.")


def improvements(table: Any, ax: Axes | None = None) -> Axes:
    """Every comparison's improvement factor on a log scale (1 = no change)."""
    rows = [r for r in table.iter_rows(named=True) if r["improvement"]]
    ax = axes(ax, figsize=(7.5, 0.35 * len(rows) + 1.5))
    labels = [f"{r['comparison']} ({r['unit']})" for r in rows]
    values = [r["improvement"] for r in rows]
    colors = ["#1e8449" if v >= 1 else "#c0392b" for v in values]
    ax.barh(labels, values, color=colors)
    ax.axvline(1.0, color="#333", linewidth=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    return finish(ax, title="Before and after, every comparison",
                  xlabel="improvement factor (after vs before, log scale)",
                  ylabel="comparison (unit)",
                  caption="Green bars are better after the change, red bars worse; "
                          "1 means no change.")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
