"""The inference plots: each draws, and has a title, axis labels with units and a caption."""

from __future__ import annotations

import json

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend

from evtools.inference import ColdStart, Correctness, InferenceBenchmark, Run
from evtools.plots import inference as plots

_EXACT = [2**60 + 3 * i for i in range(40)]


def _run(stage: str, pipeline: str, batch: int, throughput: float) -> Run:
    lat = [0.1 * batch ** 0.5 * (1 + i / 50) for i in range(60)]
    return Run(stage=stage, pipeline=pipeline, mode="per-row" if batch == 1 else "batched",
               batch_size=batch, samples=600, requests=600 // batch, seconds=600 / throughput,
               throughput=throughput, latencies_ms=lat)


@pytest.fixture
def bench() -> InferenceBenchmark:
    runs = [_run("end-to-end", "naive", 1, 4e3), _run("end-to-end", "naive", 8, 1.5e4),
            _run("end-to-end", "typed", 1, 5e3), _run("end-to-end", "typed", 8, 3e4),
            _run("end-to-end", "typed", 64, 1.6e5), _run("model", "model", 1, 9e3),
            _run("model", "model", 64, 4e5)]
    trap = [(e, e, e + (1 << 36) * (1 if i % 2 else -1) // 3) for i, e in enumerate(_EXACT)]
    correctness = Correctness(
        rows=40, ids_distinct={"order_id": 40, "customer_id": 40},
        typed_ids_corrupted={"order_id": 0, "customer_id": 0},
        typed_ids_colliding={"order_id": 0, "customer_id": 0},
        naive_ids_corrupted={"order_id": 40, "customer_id": 40},
        naive_ids_colliding={"order_id": 40, "customer_id": 0},
        naive_ids_corrupted_before_tensor={"order_id": 0, "customer_id": 0},
        typed_money_inexact=0, naive_money_inexact=30, naive_money_cents_lost=0,
        predictions_differ=40, max_abs_prediction_diff=0.1, atol=1e-6, trap=trap)
    return InferenceBenchmark(
        environment={"device": "cpu", "device_type": "cpu", "device_name": "test CPU",
                     "torch_threads": 1},
        config={"dtype": "float32", "seed": 7}, runs=runs, correctness=correctness,
        cold_start=ColdStart(0.02, 0.01, 0.0, 0.005, True))


def _check(ax: object) -> None:
    assert ax.get_title()  # type: ignore[attr-defined]
    assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel()  # type: ignore[attr-defined]
    caption = ax.caption  # type: ignore[attr-defined]
    assert caption and caption.endswith(".")
    plt.close("all")


def test_latency_cdf(bench: InferenceBenchmark) -> None:
    ax = plots.latency_cdf(bench)
    _check(ax)
    # the two clocks start at different points: the caption says where
    assert "state" not in ax.get_title()
    assert "naive ones from its DataFrame, built once" in ax.caption  # type: ignore[attr-defined]
    ax = plots.latency_cdf(bench, stage="model")
    assert "model only" in ax.get_title()
    assert "DataFrame" not in ax.caption  # type: ignore[attr-defined]
    _check(ax)


def test_latency_cdf_draws_one_curve_per_run(bench: InferenceBenchmark) -> None:
    _, ax = plt.subplots()
    plots.latency_cdf(bench, ax=ax, pipelines=["typed"], batch_sizes=[1, 8])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and all(label.startswith("typed") for label in labels)
    assert ax.get_xscale() == "log"
    _check(ax)


def test_throughput_vs_batch(bench: InferenceBenchmark) -> None:
    ax = plots.throughput_vs_batch(bench)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "40.0x" in ax.caption  # type: ignore[attr-defined]  # 1.6e5 / 4e3
    assert "naive at batch 1" in ax.caption  # type: ignore[attr-defined]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["naive, end to end", "typed, end to end", "model only (inputs ready)"]
    _check(ax)


def test_throughput_label_names_its_baseline(bench: InferenceBenchmark) -> None:
    # the ratio beside the typed point is against naive per row (batch 1), not naive at
    # the typed point's batch size: the label says so, rounded as the caption rounds it
    ax = plots.throughput_vs_batch(bench)
    texts = [t.get_text() for t in ax.texts if t.get_text() != ax.caption]  # type: ignore[attr-defined]
    assert texts == ["typed batch 64: 40.0x\nvs naive at batch 1"]
    _check(ax)


def test_throughput_caption_says_how_many_rounds(bench: InferenceBenchmark) -> None:
    assert "round" not in plots.throughput_vs_batch(bench).caption  # type: ignore[attr-defined]
    bench.config["repeats"] = 1
    ax = plots.throughput_vs_batch(bench)
    assert "a single round per configuration" in ax.caption  # type: ignore[attr-defined]
    bench.config["repeats"] = 3
    ax = plots.throughput_vs_batch(bench)
    assert "median of 3 rounds" in ax.caption  # type: ignore[attr-defined]
    _check(ax)


def test_latency_cdf_legend_hides_no_curve(bench: InferenceBenchmark) -> None:
    ax = plots.latency_cdf(bench)
    fig = ax.figure
    fig.canvas.draw()  # type: ignore[union-attr]
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # right of the axes, over none of the curves
    assert legend.x1 <= fig.bbox.x1 + 1  # and still on the figure  # type: ignore[union-attr]
    _check(ax)
    ax = plots.latency_cdf(bench, legend_outside=False)
    fig = ax.figure
    fig.canvas.draw()  # type: ignore[union-attr]
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= legend.x0 and legend.x1 <= frame.x1  # inside, as asked
    _check(ax)


def test_latency_cdf_tells_pipelines_apart_by_line_style(bench: InferenceBenchmark) -> None:
    ax = plots.latency_cdf(bench)
    curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    styles = {line.get_label().split()[0]: set() for line in curves}
    for line in curves:
        styles[line.get_label().split()[0]].add(line.get_linestyle())
    assert styles == {"naive": {"--"}, "typed": {"-"}}
    # shades within a pipeline differ from one batch size to the next
    typed = [line.get_color() for line in curves if line.get_label().startswith("typed")]
    assert len(set(map(str, typed))) == len(typed) == 3
    _check(ax)


def test_float32_trap(bench: InferenceBenchmark) -> None:
    ax = plots.float32_trap(bench)
    assert "80 ID values" in ax.caption  # type: ignore[attr-defined]
    assert "40 distinct IDs collide" in ax.caption  # type: ignore[attr-defined]
    _check(ax)


def test_plots_read_the_json_form(bench: InferenceBenchmark) -> None:
    doc = json.loads(bench.to_json())
    for draw in (plots.latency_cdf, plots.throughput_vs_batch, plots.float32_trap):
        _check(draw(doc))


def test_plots_without_correctness(bench: InferenceBenchmark) -> None:
    bench.correctness = None
    ax = plots.float32_trap(bench)
    assert "No correctness" in ax.caption  # type: ignore[attr-defined]
    _check(ax)
