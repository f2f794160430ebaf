"""Shared plumbing for the plot modules (private)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MissingDependency

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["axes", "finish"]


def axes(ax: Axes | None = None, *, figsize: tuple[float, float] = (7.0, 4.0)) -> Axes:
    """``ax`` itself, or the axes of a new figure."""
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependency("matplotlib", "plots") from e
    _, new = plt.subplots(figsize=figsize, layout="constrained")
    return new


def finish(ax: Axes, *, title: str, xlabel: str, ylabel: str, caption: str,
           legend: bool = False, **legend_kw: Any) -> Axes:
    """Title, axis labels (with units) and a one-sentence caption under the axes."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(**legend_kw)
    ax.grid(True, alpha=0.3)
    # the caption sits under the x label, in axes coordinates, so it survives subplots
    ax.annotate(caption, xy=(0, 0), xycoords="axes fraction", xytext=(0, -42),
                textcoords="offset points", ha="left", va="top", fontsize=8.5,
                color="#444", wrap=True)
    ax.caption = caption  # type: ignore[attr-defined]  # read back by tests and reports
    return ax
