"""Plots of profiling results: memory over time, peak memory and allocations per path,
before/after ratios, and the hottest functions of a CPU profile.

Each function takes a result from :mod:`evtools.profiling` and an optional Axes and
returns the Axes: :class:`~evtools.profiling.SuiteResult` for the per-path figures (a
:class:`~evtools.profiling.MemoryProfile` works for :func:`memory_timeline` too), and
:class:`~evtools.profiling.CpuProfile` for :func:`cpu_hotspots`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._style import axes, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..profiling import CpuProfile, MemoryProfile, SuiteResult

__all__ = [
    "allocations_per_event",
    "before_after",
    "cpu_hotspots",
    "memory_timeline",
    "peak_memory",
]

_MiB = 1024 * 1024
_BASE_COLOR = "#8c8c8c"
_PATH_COLOR = "#3b6ea8"
_AFTER_COLOR = "#2e8b57"
_METRIC_LABELS = {
    "peak_mib": "peak memory",
    "allocations_per_event": "allocations per event",
    "bytes_per_event": "bytes allocated per event",
    "events_per_s": "events per second",
}


def _timelines(result: SuiteResult | MemoryProfile) -> dict[str, Any]:
    if hasattr(result, "timelines"):
        return dict(result.timelines())
    return {result.label: result.timeline}


def memory_timeline(result: SuiteResult | MemoryProfile, ax: Axes | None = None, *,
                    paths: list[str] | None = None) -> Axes:
    """Heap memory memray tracked over time, one line per path (or the one profile)."""
    ax = axes(ax)
    series = _timelines(result)
    if paths is not None:
        series = {k: v for k, v in series.items() if k in paths}
    for name, frame in series.items():
        if frame is None or len(frame) == 0:
            continue
        ax.plot(frame["t_s"], frame["heap_bytes"] / _MiB, label=name, linewidth=1.6)
    ax.set_ylim(bottom=0)
    return finish(ax, title="Memory over time while rehydrating",
                  xlabel="time under memray (s)", ylabel="tracked heap (MiB)",
                  caption="Heap allocated since the call started, sampled by memray: a "
                          "streaming path stays flat while a materialising one climbs.",
                  legend=bool(series), fontsize=8)


def _bars(ax: Axes, names: list[str], values: list[float], baseline: str | None,
          fmt: str) -> None:
    colors = [_BASE_COLOR if n == baseline else _PATH_COLOR for n in names]
    bars = ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    base = values[names.index(baseline)] if baseline in names else None
    for bar, value in zip(bars, values, strict=True):
        text = format(value, fmt)
        if base:
            text += f"  ({_times(value / base)})"
        ax.annotate(text, xy=(bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.margins(x=0.3)


def _times(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2g}x" if ratio < 0.1 else f"{ratio:.2f}x"


def _series(result: SuiteResult, metric: str) -> tuple[list[str], list[float]]:
    names, values = [], []
    for p in result.paths:
        value = p.metric(metric)
        if value is not None:
            names.append(p.path)
            values.append(value)
    return names, values


def peak_memory(result: SuiteResult, ax: Axes | None = None, *,
                log: bool | None = None) -> Axes:
    """Peak memory above the baseline per path (bars), with the ratio to the naive path.

    ``log``: a logarithmic axis (default: when the largest peak is over 100 times the
    smallest, as materialising against streaming is).
    """
    ax = axes(ax)
    names, values = _series(result, "peak_mib")
    _bars(ax, names, values, result.baseline, ",.2f")
    positive = [v for v in values if v > 0]
    if log or (log is None and positive and max(positive) > 100 * min(positive)):
        ax.set_xscale("log")
        ax.set_xlim(right=max(positive) * 30)  # room for the labels
    scale = " (log scale)" if ax.get_xscale() == "log" else ""
    return finish(ax, title=f"Peak memory per path ({result.n_events:,} events)",
                  xlabel=f"peak tracked heap above baseline (MiB){scale}", ylabel="path",
                  caption=f"Largest heap memray saw per path; in brackets the ratio to the "
                          f"{result.baseline} path (grey) of the same run.")


def allocations_per_event(result: SuiteResult, ax: Axes | None = None) -> Axes:
    """Allocations per event per path (bars), with the ratio to the naive path."""
    ax = axes(ax)
    names, values = _series(result, "allocations_per_event")
    _bars(ax, names, values, result.baseline, ",.1f")
    return finish(ax, title=f"Allocations per event ({result.n_events:,} events)",
                  xlabel="allocations per event (count)", ylabel="path",
                  caption=f"Every allocation memray traced (pymalloc included) divided by "
                          f"the events processed; ratio to the {result.baseline} path "
                          f"(grey) in brackets.")


def before_after(result: SuiteResult, ax: Axes | None = None, *,
                 metric: str = "allocations_per_event", log: bool | None = None) -> Axes:
    """Each optimisation's before and after values of ``metric``, with after/before.
    ``log``: a logarithmic axis (default: when the largest value is over 100 times the
    smallest, as streaming's peak against materialising's)."""
    ax = axes(ax, figsize=(7.5, 4.5))
    table = result.comparisons()
    table = table[table["metric"] == metric].dropna(subset=["before_value", "after_value"])
    positive = [float(v) for v in (*table["before_value"], *table["after_value"]) if v > 0]
    if log or (log is None and positive and max(positive) > 100 * min(positive)):
        ax.set_xscale("log")
    if metric == "events_per_s":  # 75k, 100k: not 75000100000 run together
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    labels = list(table["optimisation"])
    positions = list(range(len(labels)))
    height = 0.38
    ax.barh([p - height / 2 for p in positions], table["before_value"], height,
            color=_BASE_COLOR, label="before")
    bars = ax.barh([p + height / 2 for p in positions], table["after_value"], height,
                   color=_AFTER_COLOR, label="after")
    for bar, ratio in zip(bars, table["ratio"], strict=True):
        if ratio == ratio and ratio is not None:
            ax.annotate(_times(ratio), xy=(bar.get_width(), bar.get_y() + height / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    label = _METRIC_LABELS.get(metric, metric.replace("_", " "))
    unit = {"peak_mib": " (MiB)", "allocations_per_event": " (count)",
            "bytes_per_event": " (bytes)", "events_per_s": " (events/s)"}.get(metric, "")
    scale = " (log scale)" if ax.get_xscale() == "log" else ""
    return finish(ax, title=f"Before and after each optimisation: {label}",
                  xlabel=f"{label}{unit}{scale}", ylabel="optimisation",
                  caption="Grey is the path without the optimisation, green the path with "
                          "it; the figure beside each green bar is after / before.",
                  legend=True, fontsize=8, loc="best")


def cpu_hotspots(result: CpuProfile, ax: Axes | None = None, *, n: int = 12) -> Axes:
    """The ``n`` functions with the most self time (bars) and their total time (outline)."""
    ax = axes(ax)
    top = result.hot(n)
    labels = [f"{f} ({str(file).rsplit('/', 1)[-1]}:{line})"
              for f, file, line in zip(top["function"], top["file"], top["line"], strict=True)]
    ax.barh(labels, top["total_pct"], color="none", edgecolor=_PATH_COLOR, label="total")
    ax.barh(labels, top["self_pct"], color=_PATH_COLOR, label="self")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    return finish(ax, title=f"Where the CPU time goes: {result.label}",
                  xlabel="share of samples (%)", ylabel="function",
                  caption=f"py-spy samples at {result.rate}/s ({result.samples:,} in all): "
                          "filled is time in the function itself, outline time with it on "
                          "the stack.", legend=True, fontsize=8, loc="lower right")
