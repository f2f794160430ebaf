from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import polars as pl

from evtools.plots import summary
from evtools.report import BEFORE_AFTER_COLUMNS, before_after

RESULTS = {
    "inference": {"benchmark": "inference", "_file": "inference.json",
                  "environment": {"device": "cpu"},
                  "headlines": {"naive_per_row_samples_per_s": 1000.0,
                                "typed_best_samples_per_s": 40000.0,
                                "naive_corrupted_ids": 10, "typed_corrupted_ids": 0}},
    "rehydrate": {"benchmark": "rehydrate", "_file": "rehydrate.json",
                  "figures": {"naive_json": {"events_per_s": 200.0},
                              "typed": {"events_per_s": 300.0},
                              "eventsourcing": {"events_per_s": 50.0}}},
    "stores": {"benchmark": "stores", "_file": "stores.json",
               "results": {"nats": {"ratio_baseline_over_store": {"append": 0.6,
                                                                  "read_all": 0.7}}}},
    "other": {"benchmark": "unknown"},
}


def test_before_after_table_from_each_result_kind() -> None:
    table = before_after(RESULTS)
    assert table.columns == BEFORE_AFTER_COLUMNS
    by = {r["comparison"]: r for r in table.iter_rows(named=True)}
    assert by["inference end to end (cpu)"]["improvement"] == 40.0
    assert by["IDs that reach the model intact"]["improvement"] is None  # after is 0
    assert by["typed rehydration vs naive json.loads + dict"]["improvement"] == 1.5
    assert by["typed rehydration vs the eventsourcing library"]["improvement"] == 6.0
    assert round(by["JetStream append: evtools store vs plain nats-py"]["improvement"], 6) \
        == 2.5
    assert len(table) == 6


def test_plots_have_titles_labels_and_captions() -> None:
    table = before_after(RESULTS)
    row = table.filter(pl.col("metric") == "samples_per_s").row(0, named=True)
    ax = summary.comparison(row)
    assert "40.0x better after" in ax.get_title()
    assert ax.get_xlabel() == "samples/s" and ax.caption  # type: ignore[attr-defined]
    assert [p.get_width() for p in ax.patches] == [1000.0, 40000.0]
    ax2 = summary.improvements(table)
    assert len(ax2.patches) == 5 and "log scale" in ax2.get_xlabel()
    plt.close("all")
