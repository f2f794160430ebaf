"""evtools.plots.profiling: every figure has a title, labelled axes with units and a caption.

The results are built by hand (no profiler runs), so these tests are fast and exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.axes import Axes

from evtools.plots import profiling as plots
from evtools.profiling import (
    FUNCTION_COLUMNS,
    OPTIMISATIONS,
    PATHS,
    CpuProfile,
    MemoryProfile,
    PathResult,
    SuiteResult,
)

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _timeline(peak: float) -> pd.DataFrame:
    return pd.DataFrame({"t_s": [0.0, 0.5, 1.0], "heap_bytes": [0, peak * MIB / 2, peak * MIB],
                         "rss_bytes": [100 * MIB] * 3})


def _suite() -> SuiteResult:
    figures = {  # path: (peak MiB, allocations per event, cpu seconds)
        "naive-materialized": (300.0, 80.0, 10.0), "naive": (0.1, 70.0, 9.0),
        "typed-materialized": (200.0, 140.0, 20.0), "typed": (0.5, 140.0, 18.0),
        "typed-snapshots": (0.4, 100.0, 21.0), "typed-last-wins": (0.5, 115.0, 16.0),
        "typed-fresh-decoders": (0.5, 140.0, 20.0), "view-eager": (0.2, 115.0, 15.0),
        "view-lazy": (0.1, 80.0, 10.0), "rehydrate-store": (1.0, 150.0, 20.0),
    }
    paths = [PathResult(path=name, description=PATHS[name], events=100_000, seconds=cpu,
                        cpu_seconds=cpu, peak_bytes=int(peak * MIB),
                        allocations=int(per_event * 100_000),
                        allocated_bytes=int(per_event * 100_000 * 120),
                        timeline=_timeline(peak))
             for name, (peak, per_event, cpu) in figures.items()]
    return SuiteResult(n_events=100_000, seed=7, source="test", paths=paths,
                       optimisations=list(OPTIMISATIONS))


def _check(ax: Axes, *, title: str, xunit: str, yunit: str | None = None) -> None:
    assert isinstance(ax, Axes)
    assert title in ax.get_title()
    assert xunit in ax.get_xlabel()
    if yunit is not None:
        assert yunit in ax.get_ylabel()
    assert ax.get_ylabel()
    caption = ax.caption  # type: ignore[attr-defined]
    assert caption.endswith(".") and len(caption.split()) > 6
    assert any(t.get_text() == caption for t in ax.texts)


def test_memory_timeline_draws_one_line_per_path() -> None:
    suite = _suite()
    ax = plots.memory_timeline(suite)
    _check(ax, title="Memory over time", xunit="(s)", yunit="(MiB)")
    assert len(ax.get_lines()) == len(suite.paths)
    assert ax.get_legend() is not None
    typed = next(line for line in ax.get_lines() if line.get_label() == "typed")
    assert max(typed.get_ydata()) == pytest.approx(0.5)


def test_memory_timeline_of_one_profile_and_a_chosen_subset() -> None:
    prof = MemoryProfile(label="toy", peak_bytes=2 * MIB, allocations=10,
                         allocated_bytes=3 * MIB, seconds=1.0, events=None, capture=None,
                         flamegraph=None, sites=pd.DataFrame(), timeline=_timeline(2.0))
    assert [line.get_label() for line in plots.memory_timeline(prof).get_lines()] == ["toy"]
    ax = plots.memory_timeline(_suite(), paths=["naive", "typed"])
    assert sorted(line.get_label() for line in ax.get_lines()) == ["naive", "typed"]


def test_peak_memory_bars_with_ratios_to_naive() -> None:
    suite = _suite()
    _, given = plt.subplots()
    ax = plots.peak_memory(suite, ax=given)
    assert ax is given
    _check(ax, title="Peak memory per path", xunit="(MiB)")
    assert len(ax.patches) == len(suite.paths)
    labels = [t.get_text() for t in ax.texts]
    assert "300.00  (3,000x)" in labels  # naive-materialized against naive's 0.1 MiB
    assert "0.10  (1.00x)" in labels
    assert ax.get_xscale() == "log" and "log scale" in ax.get_xlabel()
    assert plots.peak_memory(suite, log=False).get_xscale() == "linear"


def test_allocations_per_event_bars() -> None:
    ax = plots.allocations_per_event(_suite())
    _check(ax, title="Allocations per event", xunit="(count)")
    assert "140.0  (2.00x)" in [t.get_text() for t in ax.texts]


def test_before_after_pairs_with_ratios() -> None:
    suite = _suite()
    ax = plots.before_after(suite)
    _check(ax, title="Before and after", xunit="(count)")
    n = len(suite.optimisations)
    assert len(ax.patches) == 2 * n
    assert [t.get_text() for t in ax.get_yticklabels()] == [o.name for o in OPTIMISATIONS]
    assert "0.70x" in [t.get_text() for t in ax.texts]  # lazy decoding: 80 / 115
    assert ax.get_xscale() == "linear"  # counts within a small factor of each other
    ax = plots.before_after(suite, metric="peak_mib")
    _check(ax, title="peak memory", xunit="(MiB)")
    assert ax.get_xscale() == "log"  # 300 MiB materialised against 0.1 MiB streaming
    assert plots.before_after(suite, metric="peak_mib", log=False).get_xscale() == "linear"
    ax = plots.before_after(suite, metric="events_per_s")
    ax.figure.canvas.draw()
    assert "10k" in [t.get_text() for t in ax.get_xticklabels()]  # not 10000 run together


def test_cpu_hotspots() -> None:
    table = pd.DataFrame(
        [("decode", "/app/d.py", 10, 60, 60, 0.6, 0.6, 60.0, 60.0),
         ("main", "/app/m.py", 1, 10, 100, 0.1, 1.0, 10.0, 100.0)], columns=FUNCTION_COLUMNS)
    prof = CpuProfile(label="typed", command=["python"], rate=100, samples=100,
                      sampled_s=1.0, seconds=1.2, speedscope=Path("x.json"), flamegraph=None,
                      functions=table)
    ax = plots.cpu_hotspots(prof, n=5)
    _check(ax, title="Where the CPU time goes: typed", xunit="(%)")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["decode (d.py:10)",
                                                            "main (m.py:1)"]
