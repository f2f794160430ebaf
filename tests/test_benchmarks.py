"""The benchmark scripts run and write what their readers rely on (``make bench``).

Benchmarks are not tests: nothing here asserts a timing. Each script runs once on a few
thousand events (``run_all.py --quick``) and the JSON it writes is checked for its shape,
for ratios that agree with its own figures, and for the correctness facts it reports
(which do not depend on the machine)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def _run_all_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _run_all_module()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "run_all.py"), "--quick",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _load(folder: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    return data


def test_every_script_the_makefile_and_run_all_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    named = set(re.findall(r"benchmarks/([\w.]+\.py)", makefile))
    assert "run_all.py" in named
    named |= {script for script, _, _ in run_all.BENCHMARKS.values()}
    missing = sorted(n for n in named if not (BENCHMARKS / n).is_file())
    assert not missing, f"Makefile or run_all.py names missing scripts: {missing}"
    on_disk = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    assert on_disk <= named, f"benchmarks run_all.py does not run: {on_disk - named}"


def test_summary_lists_every_benchmark_finished_with_its_targets(quick: Path) -> None:
    summary = json.loads((quick / "summary.json").read_text())
    assert summary["quick"] is True
    assert set(summary["benchmarks"]) == set(run_all.BENCHMARKS)
    for name, entry in summary["benchmarks"].items():
        assert entry["exit_status"] == 0, name
        assert "error" not in entry, name
        assert entry["targets"], f"{name} states no target"
        assert all(isinstance(v, bool) for v in entry["targets"].values()), name
        assert entry["command"][:2] == ["python", f"benchmarks/{run_all.BENCHMARKS[name][0]}"]
        assert (quick / f"{name}.json").is_file()


def test_rehydrate_ratios_agree_with_its_own_figures(quick: Path) -> None:
    result = _load(quick, "rehydrate")
    figures, ratios = result["figures"], result["ratios"]
    typed = figures["typed"]["cpu_s"]
    assert ratios["typed_vs_naive_speedup"] == pytest.approx(
        figures["naive_json"]["cpu_s"] / typed)
    assert ratios["typed_over_msgspec_ratio"] == pytest.approx(
        typed / figures["msgspec_untyped"]["cpu_s"])
    assert ratios["typed_vs_eventsourcing_speedup"] == pytest.approx(
        figures["eventsourcing"]["cpu_s"] / typed)
    assert ratios["noop_aggregate_over_msgspec_ratio"] == pytest.approx(
        figures["typed_noop_aggregate"]["cpu_s"] / figures["msgspec_untyped"]["cpu_s"])
    assert result["eventsourcing"]["lines_equal"] is True  # the peer rebuilt the same lines
    assert set(result["targets_met"]) == set(result["targets"])
    assert result["memory"]["ok"] is True and result["memory"]["events"] == 5000


def test_profile_suite_orders_peaks_and_counts_allocations(quick: Path) -> None:
    result = _load(quick, "profile")
    targets = result["targets"]
    # an ordering, not a timing: streaming typed holds one aggregate, materialised naive
    # holds every event
    assert targets["streaming_typed_peak_mib"] < targets["materialized_naive_peak_mib"]
    assert targets["peak_met"] is True
    assert 0 < targets["decode_only_allocations_ratio"] < targets["typed_allocations_ratio"]
    paths = {p["path"] for p in result["paths"]}
    assert {"naive", "naive-materialized", "typed", "typed-snapshots", "eventsourcing"} <= paths


def test_audit_and_inference_report_the_lost_state(quick: Path) -> None:
    audit = _load(quick, "audit")
    for dialect in ("go", "js"):
        found = audit["found"][f"audit_{dialect}"]
        assert found["documents"] == 5000 and found["at_risk"] > 0
    inference = _load(quick, "inference")
    correctness = inference["correctness"]
    assert correctness["typed_corrupted"] == 0
    assert correctness["naive_corrupted"] > 0
    assert inference["environment"]["device_type"] in ("cpu", "cuda", "mps")


def test_stores_benchmark_covers_each_local_store(quick: Path) -> None:
    result = _load(quick, "stores")
    assert {"memory", "sqlite", "jsonl", "parquet"} <= set(result["results"])
    assert result["events"] == 2000
    if "nats" not in result["results"]:
        assert "nats" in result.get("skipped", {}), "NATS neither measured nor said skipped"


@pytest.mark.parametrize(("result", "expected"), [
    ({"targets": {"a": 1.0}, "targets_met": {"a": True}}, {"a": True}),
    ({"targets": {"x >= 2": True, "y": False}}, {"x >= 2": True, "y": False}),
    ({"targets": {"on_events": 10, "peak_met": True, "ratio": 0.5, "alloc_met": False}},
     {"peak_met": True, "alloc_met": False}),
    ({"figures": {}}, {}),
])
def test_targets_of_reads_both_ways_benchmarks_state_them(result: dict[str, Any],
                                                          expected: dict[str, bool]) -> None:
    assert run_all.targets_of(result) == expected


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_all.main(["--only", "rehydrate,nope"])
    assert exit_.value.code == 2
    assert "unknown benchmark(s) nope" in capsys.readouterr().err


def _bench_profile_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_profile",
                                                  BENCHMARKS / "bench_profile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("argv", "message"), [
    (["--events", "0"], "n_events"),
    (["--repeat", "0"], "repeat"),
    (["--streams", "0"], "n_streams"),
    (["--peer-events", "-1"], "peer_events"),
    # combinations that had silently measured less than asked for
    (["--memory-paths", "typed", "--paths", "naive"], "typed"),
    (["--flamegraphs", "typed", "--no-memory"], "flame graph"),
    (["--flamegraphs", "naive", "--memory-paths", "typed"], "naive"),
    (["--memory-paths", "typed", "--no-memory"], "--no-memory"),
])
def test_bench_profile_refuses_bad_arguments_in_one_line(
        argv: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # they had ended in a traceback (exit 1), or run without the figures asked for
    bench = _bench_profile_module()
    out = tmp_path / "out"
    assert bench.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_profile.py: error: "), err
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


def test_bench_profile_exits_2_on_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_profile.py"), "--events",
                           "0", "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("bench_profile.py: error: ")
    assert "Traceback" not in done.stderr


def _bench_inference_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_inference",
                                                  BENCHMARKS / "bench_inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _no_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


@pytest.mark.parametrize(("argv", "message"), [
    (["--n-orders", "0"], "n_orders"),
    (["--repeats", "0"], "repeats"),
    (["--dtype", "float32", "--model-seconds", "nan"], "model_seconds"),
    (["--batch-sizes", "8", "--n-orders", "4"], "more than n_orders"),
    pytest.param(["--device", "cuda"], "CUDA",
                 marks=pytest.mark.skipif(not _no_cuda(), reason="a CUDA GPU is visible")),
])
def test_bench_inference_refuses_bad_arguments_in_one_line(
        argv: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # they had ended in a traceback and exit 1, the code of a missed target under --check
    pytest.importorskip("torch")
    bench = _bench_inference_module()
    out = tmp_path / "inference.json"
    assert bench.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_inference.py: error: "), err
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


def test_bench_inference_exits_2_on_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_inference.py"),
                           "--n-orders", "0", "--out", str(tmp_path / "inference.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("bench_inference.py: error: ")
    assert "Traceback" not in done.stderr
