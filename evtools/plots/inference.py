"""Plots of :class:`~evtools.inference.InferenceBenchmark` results.

``latency_cdf`` (per-request latency CDF per pipeline and batch size),
``throughput_vs_batch`` (samples/s against batch size, log axes) and ``float32_trap``
(what float32 does to exact int64 IDs). Each takes the result (or its ``to_dict()`` /
JSON form) and ``ax=None``, and returns the Axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..inference import InferenceBenchmark, Run
from ._style import axes, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["float32_trap", "latency_cdf", "throughput_vs_batch"]

_PIPELINE_COLORS = {"naive": "#c0392b", "typed": "#1f6fb2", "model": "#6c757d"}
_CMAPS = {"naive": "Reds", "typed": "Blues", "model": "Greys"}
#: one line style and p99 marker per pipeline, so that curves of one colour family still
#: tell their pipeline apart (and in grey print)
_LINESTYLES = {"naive": "--", "typed": "-", "model": "-."}
_MARKERS = {"naive": "s", "typed": "o", "model": "D"}


def _result(result: InferenceBenchmark | Mapping[str, Any]) -> InferenceBenchmark:
    if isinstance(result, InferenceBenchmark):
        return result
    return InferenceBenchmark.from_dict(result)


def _device_note(bench: InferenceBenchmark) -> str:
    env = bench.environment
    name = env.get("device_name") or env.get("device") or "unknown device"
    threads = env.get("torch_threads")
    dtype = bench.config.get("dtype", "float32")
    extra = (f", {threads} thread{'' if threads == 1 else 's'}"
             if threads and env.get("device_type") == "cpu" else "")
    return f"{env.get('device', '?')} ({name}{extra}, {dtype})"


def _shade(pipeline: str, i: int, n: int) -> Any:
    """The ``i``-th of ``n`` shades of the pipeline's colour map, from light to dark, as far
    apart as the map allows while staying readable on white."""
    import matplotlib

    cmap = matplotlib.colormaps[_CMAPS.get(pipeline, "Greys")]
    return cmap(0.7 if n <= 1 else 0.4 + 0.55 * i / (n - 1))


def _rounds(bench: InferenceBenchmark) -> str:
    """How the end-to-end samples/s were taken, for a caption: ``""`` when not recorded."""
    repeats = bench.config.get("repeats")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        return ""
    return (" (a single round per configuration: timings vary from run to run)"
            if repeats == 1 else f" (median of {repeats} rounds per configuration)")


def latency_cdf(result: InferenceBenchmark | Mapping[str, Any], ax: Axes | None = None, *,
                stage: str = "end-to-end", pipelines: Sequence[str] | None = None,
                batch_sizes: Sequence[int] | None = None,
                legend_outside: bool = True) -> Axes:
    """Cumulative share of requests answered within each latency, one curve per
    pipeline and batch size (log-scaled latency axis); p99 marked on each curve.

    Each pipeline has its colour family (shades by batch size, darker for larger), its
    line style (naive dashed, typed solid) and its p99 marker. ``legend_outside`` puts
    the legend to the right of the axes, where it hides no curve (a new figure is then
    made wider); ``False`` keeps it inside, at the lower right."""
    bench = _result(result)
    ax = axes(ax, figsize=(9.0, 4.0) if legend_outside else (7.0, 4.0))
    runs = [r for r in bench.select(stage=stage)
            if (pipelines is None or r.pipeline in pipelines)
            and (batch_sizes is None or r.batch_size in batch_sizes) and r.latencies_ms]
    by_pipeline: dict[str, list[Run]] = {}
    for r in runs:
        by_pipeline.setdefault(r.pipeline, []).append(r)
    for pipeline, group in by_pipeline.items():
        group.sort(key=lambda r: r.batch_size)
        for i, r in enumerate(group):
            lat = np.sort(np.asarray(r.latencies_ms, dtype=float))
            share = np.arange(1, len(lat) + 1) / len(lat)
            color = _shade(pipeline, i, len(group))
            ax.step(lat, share, where="post", color=color, lw=1.6,
                    ls=_LINESTYLES.get(pipeline, "-"),
                    label=f"{r.label} (p99 {r.p99_ms:.3g} ms)")
            ax.plot([r.p99_ms], [0.99], marker=_MARKERS.get(pipeline, "o"), ms=4, color=color,
                    ls="none")
    if runs:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    what = "end to end" if stage == "end-to-end" else "model only"
    # what a request's clock covers differs between the pipelines: say it under the plot
    starts = ("typed requests are timed from the states (features built per request), "
              "naive ones from its DataFrame, built once for all requests beforehand (that "
              "time is in its throughput, not here); " if stage == "end-to-end"
              and {"naive", "typed"} <= set(by_pipeline) else "")
    finish(ax, title=f"Per-request latency, {what}",
           xlabel="latency per request (ms, log scale)",
           ylabel="share of requests (fraction)",
           caption=(f"Each curve is the share of requests answered within a latency; a request"
                    f" is one row (per-row) or one batch; the marker at the top of each curve "
                    f"is its p99, the line style its pipeline; {starts}on "
                    f"{_device_note(bench)}."),
           legend=bool(runs), fontsize=7,
           **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
              if legend_outside else {"loc": "lower right"}))
    return ax


def throughput_vs_batch(result: InferenceBenchmark | Mapping[str, Any],
                        ax: Axes | None = None, *, include_model: bool = True) -> Axes:
    """Samples per second against batch size (log-log), end to end for the naive and
    typed pipelines, and the model alone (dashed) as the ceiling."""
    bench = _result(result)
    ax = axes(ax)
    series: list[tuple[str, list[Run], str]] = []
    for pipeline in ("naive", "typed"):
        runs = sorted(bench.select(stage="end-to-end", pipeline=pipeline),
                      key=lambda r: r.batch_size)
        if runs:
            series.append((f"{pipeline}, end to end", runs, "-"))
    if include_model:
        model_runs = sorted(bench.select(stage="model"), key=lambda r: r.batch_size)
        if model_runs:
            series.append(("model only (inputs ready)", model_runs, "--"))
    for label, runs, style in series:
        color = _PIPELINE_COLORS.get(runs[0].pipeline, _PIPELINE_COLORS["model"])
        ax.plot([r.batch_size for r in runs], [r.throughput for r in runs], style,
                marker="o", color=color, label=label)
    base = bench.naive_per_row
    best = bench.best_typed
    # one rounded figure for the label and the caption; the label names its baseline
    # (naive per row, batch 1), not the naive pipeline at the typed point's batch size
    ratio = f"{bench.speedup:.1f}x" if base is not None and best is not None else ""
    if base is not None and best is not None:
        # in the lower right, which throughput rising with batch size leaves empty
        ax.annotate(f"typed batch {best.batch_size}: {ratio}\nvs naive at batch "
                    f"{base.batch_size}", xy=(best.batch_size, best.throughput),
                    xytext=(0.98, 0.06), textcoords="axes fraction", ha="right",
                    va="bottom", fontsize=9, color=_PIPELINE_COLORS["typed"],
                    arrowprops={"arrowstyle": "->", "color": _PIPELINE_COLORS["typed"],
                                "lw": 1.0, "shrinkB": 5})
    if series:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted({r.batch_size for _, runs, _ in series for r in runs})
        ax.set_xticks(sizes, [str(b) for b in sizes])
    speed = (f"typed at batch {best.batch_size} reaches {ratio} the samples/s of naive at "
             f"batch {base.batch_size} (batching and typing together)"
             if base is not None and best is not None else "samples/s per batch size")
    finish(ax, title="Throughput against batch size",
           xlabel="batch size (rows per request, log scale)",
           ylabel="throughput (samples/s, log scale)",
           caption=f"Offline throughput from rehydrated state to predictions: {speed}, "
                   f"measured in the same run{_rounds(bench)} on {_device_note(bench)}.",
           legend=bool(series), fontsize=8)
    return ax


def float32_trap(result: InferenceBenchmark | Mapping[str, Any],
                 ax: Axes | None = None) -> Axes:
    """How far each exact int64 order ID lands once it is a float32 (and, where the
    decoder already rounded it, a float64), against the exact ID, with the bound of half
    a float32 step; the typed path's error is 0 for every ID."""
    bench = _result(result)
    ax = axes(ax)
    c = bench.correctness
    trap = c.trap if c is not None else []
    if trap:
        exact = np.array([float(e) for e, _, _ in trap])
        err32 = np.array([float(s - e) for e, _, s in trap])
        err64 = np.array([float(f - e) for e, f, _ in trap])
        ax.scatter(exact, err32, s=10, color=_PIPELINE_COLORS["naive"], alpha=0.7,
                   label="naive: ID as float32 minus exact ID", zorder=3)
        if np.any(err64 != 0):
            ax.scatter(exact, err64, s=12, marker="x", color="#e67e22", alpha=0.8,
                       label="naive: ID as the decoder held it minus exact ID", zorder=3)
        # float32 keeps 24 significant bits: |error| <= 2**(floor(log2 x) - 24)
        positive = exact[exact >= 1]
        if len(positive):
            lo, hi = int(np.floor(np.log2(positive.min()))), int(np.floor(np.log2(
                positive.max())))
            xs: list[float] = []
            ys: list[float] = []
            for k in range(lo, hi + 1):
                start, stop = max(2.0**k, float(positive.min())), min(2.0**(k + 1),
                                                                       float(positive.max()))
                xs += [start, stop]
                ys += [2.0 ** (k - 24)] * 2
            ax.plot(xs, ys, color="#555", lw=1, ls="--", label="half a float32 step")
            ax.plot(xs, [-y for y in ys], color="#555", lw=1, ls="--")
        ax.axhline(0.0, color=_PIPELINE_COLORS["typed"], lw=2.5,
                   label="typed: int64, error 0", zorder=2)
    if c is not None:
        field = next(iter(c.ids_distinct), "order_id")
        caption = (f"{c.naive_corrupted:,} ID values in {c.rows:,} orders reach the model as "
                   f"another number and {c.naive_colliding:,} distinct IDs collide on the "
                   f"naive path; the typed path changes {c.typed_corrupted} "
                   f"({len(trap)} {field} values shown).")
    else:
        caption = "No correctness check in this result."
    finish(ax, title="The float32 trap: exact IDs against what the model sees",
           xlabel="exact order ID (integer, no unit)",
           ylabel="value seen minus exact ID (IDs)",
           caption=caption, legend=bool(trap), fontsize=8, loc="lower left")
    return ax
