"""Plots of fidelity results: what each consumer loses, and how loss grows with magnitude.

``loss_by_dialect`` draws an :class:`~evtools.fidelity.AuditResult` (or its
``to_frame()``) as grouped bars per dialect; ``loss_vs_magnitude`` draws the frame of
:func:`evtools.fidelity.loss_by_magnitude`. Each takes ``ax=None`` and returns the Axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._style import axes, finish

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes

    from ..fidelity import AuditResult

__all__ = ["LOSS_COLUMNS", "loss_by_dialect", "loss_vs_magnitude"]

#: the audit columns that count a loss, in the order the bars are drawn
LOSS_COLUMNS: tuple[str, ...] = ("value_changed", "text_changed", "type_changed", "dropped",
                                 "rejected")
_LOSS_COLORS = {"value_changed": "#c0392b", "text_changed": "#e67e22",
                "type_changed": "#8e44ad", "dropped": "#2c3e50", "rejected": "#7f8c8d"}
_DIALECT_COLORS = {"go": "#00add8", "js": "#d4a017", "python": "#3776ab",
                   "pandas": "#150458", "polars": "#cd792c", "torch": "#ee4c2c"}
_MAGNITUDE_AXES = {
    "integer": ("integer magnitude b (bits: values in [2^(b-1), 2^b))", "integers"),
    "decimal": ("significant digits of an amount with cents (digits)", "amounts with cents"),
}


def _frame(result: AuditResult | pl.DataFrame) -> pl.DataFrame:
    from ..fidelity import AuditResult

    return result.to_frame() if isinstance(result, AuditResult) else result


def loss_by_dialect(result: AuditResult | pl.DataFrame, ax: Axes | None = None, *,
                    log: bool = True) -> Axes:
    """Values each consumer changed, wrote differently, re-typed or dropped, and documents
    it rejected, summed over every path: one group of bars per dialect (log count axis by
    default, since a single dialect's counts span orders of magnitude)."""
    import numpy as np

    ax = axes(ax)
    frame = _frame(result)
    dialects: list[str] = list(dict.fromkeys(frame["dialect"].to_list()))
    totals = {d: {c: int(frame.filter(frame["dialect"] == d)[c].sum()) for c in LOSS_COLUMNS}
              for d in dialects}
    x = np.arange(len(dialects))
    width = 0.8 / len(LOSS_COLUMNS)
    for i, column in enumerate(LOSS_COLUMNS):
        heights = [totals[d][column] for d in dialects]
        bars = ax.bar(x + (i - (len(LOSS_COLUMNS) - 1) / 2) * width, heights, width,
                      label=column.replace("_", " "), color=_LOSS_COLORS[column])
        for bar, h in zip(bars, heights, strict=True):
            if h:
                ax.annotate(f"{h:,}", (bar.get_x() + bar.get_width() / 2, h), ha="center",
                            va="bottom", fontsize=6.5, rotation=90, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_xticks(x, dialects)
    for xi, d in zip(x, dialects, strict=True):
        if not any(totals[d].values()):
            ax.annotate("nothing lost", (xi, 0.02), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7.5, color="#2e7d32")
    if log and any(v for t in totals.values() for v in t.values()):
        ax.set_yscale("log")
    documents = getattr(result, "documents", None)
    over = f"{documents:,} documents" if documents is not None else "the audited documents"
    return finish(ax, title="What each consumer loses",
                  xlabel="dialect (modelled consumer)",
                  ylabel="values or documents (count" + (", log scale)" if log else ")"),
                  caption=(f"Counts over {over}, summed over every JSON path; value and text "
                           "changes are counted independently, rejections are documents."),
                  legend=True, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def loss_vs_magnitude(frame: pl.DataFrame, ax: Axes | None = None, *,
                      kind: str = "integer") -> Axes:
    """Share of values each consumer changes as numbers grow, from the frame of
    :func:`evtools.fidelity.loss_by_magnitude`: the in-memory value (solid) and the text
    written back (dashed), one colour per dialect."""
    import polars as pl

    if kind not in _MAGNITUDE_AXES:
        from ..errors import UsageError

        raise UsageError(f"unknown magnitude kind {kind!r}; choose from "
                         f"{', '.join(_MAGNITUDE_AXES)}")
    ax = axes(ax)
    part = frame.filter(pl.col("kind") == kind).sort("magnitude")
    dialects = list(dict.fromkeys(part["dialect"].to_list()))
    per_step = 0
    for i, dialect in enumerate(dialects):
        rows = part.filter(pl.col("dialect") == dialect)
        per_step = max(per_step, max(rows["values"].to_list(), default=0))
        color: Any = _DIALECT_COLORS.get(dialect, f"C{i}")
        offset = (i - (len(dialects) - 1) / 2) * 0.08  # keep coinciding lines visible
        x = [m + offset for m in rows["magnitude"].to_list()]
        ax.plot(x, rows["changed_fraction"].to_list(), color=color, marker="o", ms=3.5,
                lw=1.8, label=f"{dialect}: value changed")
        ax.plot(x, rows["text_changed_fraction"].to_list(), color=color, ls="--", lw=1.2,
                label=f"{dialect}: text changed")
    if kind == "integer":
        ax.axvline(53.5, color="#555", lw=0.8, ls=":")
        ax.annotate(" 2^53: float64 stops holding every integer", (53.5, 0.5), fontsize=7,
                    color="#555", ha="left", va="center", xycoords=("data", "axes fraction"))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.03, 1.03)
    xlabel, what = _MAGNITUDE_AXES[kind]
    return finish(ax, title=f"Loss against magnitude: {what}", xlabel=xlabel,
                  ylabel="values changed (fraction of values)",
                  caption=(f"Each point is {per_step:,} random values of that magnitude, each "
                           'as {"v": value}, run through the real dialects (solid: the value '
                           "held differs; dashed: the text written back differs)."),
                  legend=bool(dialects), fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
