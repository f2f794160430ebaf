"""evtools.profiling: memray and py-spy wrappers, the rehydration paths and the suite.

No timing assertions: the figures are checked for shape and for orderings that do not
depend on the machine (what is resident, what is decoded), never for speed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evtools import profiling
from evtools._accel import SPEEDUPS
from evtools.errors import (
    InputError,
    MissingDependency,
    ProfilingError,
    StoreUnavailable,
    UsageError,
)
from evtools.profiling import (
    FUNCTION_COLUMNS,
    PATHS,
    PTRACE_ADVICE,
    SITE_COLUMNS,
    TIMELINE_COLUMNS,
    UNFOLDED_PATHS,
    CpuProfile,
    MemoryProfile,
    SuiteResult,
    profile_cpu,
    profile_memory,
    profile_rehydration,
    py_spy_status,
    run_rehydration_suite,
    speedscope_table,
    write_flamegraph_svg,
)

pytest.importorskip("memray")

KIB = 1024
MIB = 1024 * 1024


def _pyspy_skip_reason() -> str | None:
    ok, reason = py_spy_status()
    return None if ok else f"py-spy cannot sample here: {reason}"


needs_pyspy = pytest.mark.skipif(_pyspy_skip_reason() is not None,
                                 reason=_pyspy_skip_reason() or "")


# -- lazy imports ----------------------------------------------------------------------------

def test_importing_evtools_profiling_loads_neither_memray_nor_matplotlib() -> None:
    code = ("import sys, evtools, evtools.profiling, evtools.plots.profiling\n"
            "print(sorted(m for m in ('memray', 'matplotlib', 'eventsourcing') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_missing_memray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "memray", None)  # import memray -> ImportError
    with pytest.raises(MissingDependency) as info:
        profile_memory(lambda: None)
    assert info.value.module == "memray"
    assert info.value.extra == "profile"
    assert "pip install 'evtools[profile]'" in str(info.value)


# -- memory ----------------------------------------------------------------------------------

def keep_blocks(n: int, size: int) -> list[bytearray]:
    """Allocate ``n`` blocks of ``size`` bytes and keep them all."""
    return [bytearray(size) for _ in range(n)]


@pytest.fixture(scope="module")
def memory_profile(tmp_path_factory: pytest.TempPathFactory) -> MemoryProfile:
    out = tmp_path_factory.mktemp("memray")
    return profile_memory(keep_blocks, 40, 100 * KIB, events=40, out_dir=out)


def test_memory_profile_peak_is_what_the_callable_keeps(memory_profile: MemoryProfile) -> None:
    kept = 40 * 100 * KIB
    assert kept <= memory_profile.peak_bytes < kept + 1 * MIB
    assert len(memory_profile.result) == 40
    assert memory_profile.allocations is not None and memory_profile.allocations >= 40
    assert memory_profile.allocated_bytes is not None
    assert memory_profile.allocated_bytes >= kept
    assert memory_profile.allocations_per_event == memory_profile.allocations / 40
    assert memory_profile.bytes_per_event == memory_profile.allocated_bytes / 40
    assert memory_profile.python_allocators


def test_memory_profile_sites_name_the_allocating_function(
        memory_profile: MemoryProfile) -> None:
    sites = memory_profile.to_frame()
    assert list(sites.columns) == SITE_COLUMNS
    top = sites.iloc[0]
    assert top["file"] == __file__
    assert "keep_blocks" in top["function"] or top["function"] == "<listcomp>"
    assert top["size"] >= 40 * 100 * KIB
    assert list(sites["size"]) == sorted(sites["size"], reverse=True)


def test_memory_profile_writes_flamegraph_and_timeline(memory_profile: MemoryProfile) -> None:
    assert memory_profile.flamegraph is not None and memory_profile.flamegraph.is_file()
    head = memory_profile.flamegraph.read_text(encoding="utf-8")[:2000].lower()
    assert "<html" in head
    assert memory_profile.capture is not None and memory_profile.capture.is_file()
    assert list(memory_profile.timeline.columns) == TIMELINE_COLUMNS


def test_memory_profile_to_dict_is_json(memory_profile: MemoryProfile) -> None:
    doc = json.loads(json.dumps(memory_profile.to_dict()))
    assert doc["kind"] == "memory"
    assert doc["peak_bytes"] == memory_profile.peak_bytes
    assert doc["sites"][0]["size"] == int(memory_profile.sites.iloc[0]["size"])


def test_memory_profile_passes_keyword_arguments_and_can_aggregate(tmp_path: Path) -> None:
    def build(n: int, *, size: int) -> int:
        return len(keep_blocks(n, size))

    prof = profile_memory(build, 3, size=64 * KIB, out_dir=tmp_path, flamegraph=False,
                          count_allocations=False, keep_capture=False)
    assert prof.result == 3
    assert prof.allocations is None and prof.allocations_per_event is None
    assert prof.flamegraph is None and prof.capture is None
    assert not any(tmp_path.glob("*.bin"))


def test_memory_profile_inside_another_is_a_profiling_error(tmp_path: Path) -> None:
    def inner() -> None:
        profile_memory(keep_blocks, 1, 10, out_dir=tmp_path / "inner", flamegraph=False)

    with pytest.raises(ProfilingError, match="memray could not start"):
        profile_memory(inner, out_dir=tmp_path / "outer", flamegraph=False)


# -- cpu -------------------------------------------------------------------------------------

BURN = """\
import time

def burn():
    total = 0
    for i in range(20000):
        total += i * i
    return total

started = time.perf_counter()
while time.perf_counter() - started < 1.0:
    burn()
"""


@needs_pyspy
def test_cpu_profile_of_a_toy_program(tmp_path: Path) -> None:
    prof = profile_cpu(BURN, out_dir=tmp_path, rate=200, label="burn")
    table = prof.to_frame()
    assert list(table.columns) == FUNCTION_COLUMNS
    assert prof.samples > 0
    burn = table[table["function"] == "burn"]
    assert len(burn) == 1
    assert burn.iloc[0]["self_pct"] > 0
    assert burn.iloc[0]["total_pct"] >= burn.iloc[0]["self_pct"]
    assert prof.hot(1).iloc[0]["function"] == "burn"
    assert not table["file"].str.endswith("_runner.py").any()  # the wrapper is hidden
    assert prof.returncode == 0
    assert prof.speedscope.is_file()
    assert json.loads(prof.speedscope.read_text())["profiles"]
    assert prof.flamegraph is not None and prof.flamegraph.suffix == ".svg"
    ET.fromstring(prof.flamegraph.read_text(encoding="utf-8"))  # well-formed SVG
    assert json.loads(json.dumps(prof.to_dict()))["functions"][0]["function"] == "burn"


@needs_pyspy
def test_the_wrapper_is_hidden_with_a_relative_out_dir(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    prof = profile_cpu(BURN, out_dir="prof/c1", rate=200, label="burn")
    assert not prof.to_frame()["file"].str.endswith("_runner.py").any()
    assert prof.speedscope.is_absolute() and prof.speedscope.is_file()


def test_profile_memory_refuses_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="profiles a callable, not int"):
        profile_memory(42, out_dir=tmp_path / "m")  # type: ignore[arg-type]
    for events in (0, -5, 2.5):
        with pytest.raises(UsageError, match="events must be a positive int"):
            profile_memory(sum, [1, 2], events=events, out_dir=tmp_path / "m")  # type: ignore[arg-type]
    assert not (tmp_path / "m").exists()  # refused before memray wrote anything
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        profile_memory(sum, [1, 2], out_dir=tmp_path / "afile")


@needs_pyspy
def test_cpu_profile_of_a_failing_program_raises(tmp_path: Path) -> None:
    # whether or not py-spy attached before the program died, the program's error is named
    with pytest.raises(ProfilingError, match=r"exit 1.*ZeroDivisionError: division by zero"):
        profile_cpu("x = 1 / 0\n", out_dir=tmp_path)


def test_a_silent_failure_is_not_blamed_on_py_spys_backtrace() -> None:
    # what py-spy prints when the program ends before it attaches, around the program's
    # own output (here: a sys.exit(3) that writes nothing, then one that writes a line)
    spy = ("Error: Failed to get process executable name. Check that the process is "
           "running.\n\nCaused by:\n    0: No such file or directory (os error 2)\n\n"
           "Stack backtrace:\n   0: <E as anyhow::context::ext::StdError>::ext_context\n"
           "   6: std::sys::thread::unix::Thread::new::thread_start\n\n\n"
           "py-spy> Stopped sampling because process exited\n")
    assert profiling._program_error(spy) == "it wrote no error output"
    assert profiling._program_error("bad thing\n" + spy) == "bad thing"
    assert profiling._program_error(spy + "bad thing\n") == "bad thing"


@needs_pyspy
def test_cpu_profile_of_a_python_module_records_its_exit_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "burner.py").write_text(BURN, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # python -m finds the module in the working folder
    command = [sys.executable, "-m", "burner"]
    prof = profile_cpu(command, out_dir=tmp_path / "out", rate=200, label="burner")
    assert prof.returncode == 0
    assert prof.command == command  # what was asked for, not the wrapper that ran it
    assert (prof.to_frame()["function"] == "burn").any()
    assert not prof.to_frame()["file"].str.endswith("_runner.py").any()
    # the wrapper's script and status file are not left among the results
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == [
        "burner.speedscope.json", "burner.svg"]


@needs_pyspy
def test_cpu_profile_of_a_failing_python_module_raises_with_its_error(
        tmp_path: Path) -> None:
    # the module prints its error and exits 2 (no traceback): py-spy itself exits 0
    missing = tmp_path / "nofile.jsonl"
    with pytest.raises(ProfilingError, match=r"exit 2\).*no such file") as info:
        profile_cpu([sys.executable, "-m", "evtools.profiling", "_run", str(missing)],
                    out_dir=tmp_path)
    assert str(missing) in str(info.value)


def test_a_module_exiting_non_zero_fails_the_profile_even_when_sampled(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        Path(cmd[cmd.index("--output") + 1]).write_text(json.dumps(SPEEDSCOPE))
        argv = cmd[cmd.index("--") + 1:]
        assert argv[2:4] == ["-m", "evtools.profiling"]  # run under the status wrapper
        Path(argv[4]).write_text("2")  # its status file: the program exited 2
        return subprocess.CompletedProcess(cmd, 0, "", (
            "error: JSONL nofile.jsonl: no such file (file nofile.jsonl)\n"
            "py-spy> Stopped sampling because process exited\n"))

    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy", run)
    with pytest.raises(ProfilingError,
                       match=r"failed \(exit 2\): error: JSONL nofile.jsonl: no such file"):
        profile_cpu([sys.executable, "-m", "evtools.profiling", "_run", "nofile.jsonl"],
                    out_dir=tmp_path)


def _fake_run(returncode: int, stderr: str) -> Any:
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    return run


def test_missing_ptrace_permission_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy", _fake_run(
        1, "Error: Failed to copy PyInterpreterState from process\n"
           "Permission denied (os error 13)\n"))
    with pytest.raises(ProfilingError) as info:
        profile_cpu("pass\n", out_dir=tmp_path)
    message = str(info.value)
    assert message == PTRACE_ADVICE
    for advice in ("--cap-add SYS_PTRACE", "kernel.yama.ptrace_scope=0", "root"):
        assert advice in message


def test_py_spy_status_reports_missing_ptrace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling.subprocess, "run",
                        _fake_run(1, "Error: Operation not permitted (os error 1)"))
    py_spy_status.cache_clear()
    try:
        assert py_spy_status() == (False, PTRACE_ADVICE)
    finally:
        py_spy_status.cache_clear()


def test_other_py_spy_failures_keep_their_message(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy",
                        _fake_run(2, "Error: Failed to find python version from target"))
    with pytest.raises(ProfilingError, match=r"exit 2\): Failed to find python version"):
        profile_cpu(["python", "-c", "pass"], out_dir=tmp_path)


def test_a_program_too_brief_to_sample_is_named(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy", _fake_run(
        1, "Error: Failed to get process executable name. Check that the process is "
           "running.\n\nCaused by:\n    0: No such file or directory (os error 2)\n"))
    with pytest.raises(ProfilingError, match="ended before py-spy could attach"):
        profile_cpu(["python", "-c", "pass"], out_dir=tmp_path)


def test_a_program_failing_with_permission_denied_is_not_a_ptrace_problem(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        Path(cmd[-1]).write_text("1")  # the runner's status file: the program failed
        return subprocess.CompletedProcess(cmd, 1, "", (
            "Traceback (most recent call last):\n  File \"t.py\", line 1\n"
            "PermissionError: [Errno 13] Permission denied: '/root'\n"
            "Error: Failed to get process executable name. Check that the process is "
            "running.\n"))

    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy", run)
    with pytest.raises(ProfilingError, match=r"program failed.*PermissionError") as info:
        profile_cpu("open('/root/x')\n", out_dir=tmp_path)
    assert "SYS_PTRACE" not in str(info.value)


def test_missing_py_spy_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(profiling.sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setattr(profiling.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependency) as info:
        profile_cpu("pass\n", out_dir=tmp_path)
    assert (info.value.module, info.value.extra) == ("py-spy", "profile")


def test_profile_cpu_rejects_a_bad_rate() -> None:
    with pytest.raises(UsageError):
        profile_cpu("pass\n", rate=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    # py-spy had failed with only "For more information, try '--help'."
    ({"rate": 99999999999999999999}, r"rate \(py-spy samples per second\)"),
    ({"rate": 1_000_001}, "rate"),
    ({"rate": -1}, "rate"),
    ({"rate": 1.5}, "rate"),
    ({"rate": True}, "rate"),
    ({"duration": float("nan")}, "duration"),  # had been a ValueError from round()
    ({"duration": float("inf")}, "duration"),  # had been an OverflowError
    ({"duration": -1}, "duration"),  # had been rounded up to 1 s
    ({"timeout": 0}, "timeout"),
])
def test_profile_cpu_refuses_numbers_py_spy_cannot_take(tmp_path: Path,
                                                      kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(UsageError, match=message):
        profile_cpu("pass\n", out_dir=tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []  # refused before py-spy started


def test_profile_rehydration_refuses_a_bad_rate_before_opening_the_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.cli import main

    monkeypatch.setattr(profiling, "profile_cpu", _must_not_sample)
    missing = str(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="rate"):
        profile_rehydration(missing, "cpu", rate=99999999999999999999)
    assert main(["profile", "cpu", missing, "--rate", "99999999999999999999",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "rate (py-spy samples per second) must be an int in 1..1,000,000" in err
    assert "Traceback" not in err and "--help" not in err


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"events": True}, "events"),  # had been taken as 1
    ({"events": 2.5}, "events"),
])
def test_profile_rehydration_refuses_events_that_are_not_a_count(
        tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        profile_rehydration(str(tmp_path / "missing.jsonl"), "cpu", **kwargs)


@pytest.mark.parametrize("interval_ms", [-1, 0, 2**70, 1.5, True])
def test_profile_memory_refuses_an_interval_memray_cannot_take(
        tmp_path: Path, interval_ms: object) -> None:
    # -1 and 2**70 had ended in an OverflowError inside memray
    with pytest.raises(UsageError, match="interval_ms"):
        profile_memory(sum, [1], out_dir=tmp_path, interval_ms=interval_ms)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_events": True}, "n_events"),
    ({"n_events": 2.5}, "n_events"),
    ({"repeat": 0}, "repeat"),
    ({"repeat": 1.5}, "repeat"),
    ({"peer_events": 0}, "peer_events"),
    ({"n_streams": 0}, "n_streams"),
    ({"snapshot_lag": -1}, "snapshot_lag"),
])
def test_suite_refuses_counts_out_of_range(tmp_path: Path, kwargs: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_rehydration_suite(**{"n_events": 10, "out_dir": tmp_path, **kwargs})
    assert list(tmp_path.iterdir()) == []


# -- speedscope and SVG (no py-spy needed) ----------------------------------------------------

SPEEDSCOPE = {
    "shared": {"frames": [{"name": "main", "file": "/app/m.py", "line": 1},
                          {"name": "decode", "file": "/app/d.py", "line": 10},
                          {"name": "fold", "file": "/app/f.py", "line": 20}]},
    "profiles": [
        {"type": "sampled", "samples": [[0, 1], [0, 1], [0, 2], [0], []],
         "weights": [0.01, 0.01, 0.01, 0.01, 0.01]},
        {"type": "sampled", "samples": [[0, 1]], "weights": [0.01]},
    ],
}


def test_speedscope_table_splits_self_and_total_time() -> None:
    table, samples, sampled = speedscope_table(SPEEDSCOPE)
    assert samples == 6
    assert sampled == pytest.approx(0.06)
    rows = {r["function"]: r for r in table.to_dict("records")}
    assert rows["decode"]["self_samples"] == 3 and rows["decode"]["total_samples"] == 3
    assert rows["fold"]["self_samples"] == 1
    assert rows["main"]["self_samples"] == 1 and rows["main"]["total_samples"] == 5
    assert rows["main"]["total_pct"] == pytest.approx(500 / 6)
    assert table.iloc[0]["function"] == "decode"  # sorted by self time


def test_flamegraph_svg_is_well_formed(tmp_path: Path) -> None:
    svg = write_flamegraph_svg(SPEEDSCOPE, tmp_path / "f.svg", title="toy <&>")
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("decode (d.py:10)") for t in titles)
    assert any(t.startswith("all: 100.0%") for t in titles)


# -- rehydration paths and the suite ----------------------------------------------------------

@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    pytest.importorskip("eventsourcing")
    out = tmp_path_factory.mktemp("suite")
    return run_rehydration_suite(800, seed=3, out_dir=out, repeat=1, peer_events=300,
                                 flamegraphs=["typed"])


def test_suite_runs_every_path_over_the_same_workload(suite: SuiteResult) -> None:
    assert [p.path for p in suite.paths] == list(PATHS)
    assert suite.n_events >= 800
    statuses = {json.dumps(p.check["statuses"], sort_keys=True) for p in suite.paths
                if p.path not in UNFOLDED_PATHS}
    assert len(statuses) == 1  # every fold rebuilt the same orders
    for p in suite.paths:
        assert p.check["violations"] == 0
        assert p.peak_bytes is not None and p.allocations is not None
        expected = suite.n_events if p.path != "eventsourcing" else p.events
        assert p.events == expected
    assert suite.path("eventsourcing").events <= suite.n_events
    assert suite.path("typed-snapshots").check["events_read"] < suite.n_events


def test_suite_orderings_that_do_not_depend_on_the_machine(suite: SuiteResult) -> None:
    def peak(name: str) -> int:
        value = suite.path(name).peak_bytes
        assert value is not None
        return value

    def per_event(name: str) -> float:
        value = suite.path(name).allocations_per_event
        assert value is not None
        return value

    assert peak("typed") < peak("typed-materialized")
    assert peak("naive") < peak("naive-materialized")
    assert per_event("view-lazy") < per_event("view-eager")
    if SPEEDUPS:  # the C duplicate-key scan allocates nothing: within noise of none
        assert abs(per_event("typed") - per_event("typed-last-wins")) < 0.05
    else:  # the key count and the second parse allocate
        assert per_event("typed-last-wins") < per_event("typed")
    assert per_event("scan") < per_event("decode-only") < per_event("typed")
    assert per_event("scan") < per_event("naive")
    assert suite.targets["decode_only_allocations_ratio"] == pytest.approx(
        per_event("decode-only") / per_event("naive"))


def test_suite_frames_ratios_and_json(suite: SuiteResult) -> None:
    frame = suite.to_frame().set_index("path")
    assert frame.loc["naive", "allocations_ratio"] == pytest.approx(1.0)
    assert frame.loc["naive", "speed_ratio"] == pytest.approx(1.0)
    comparisons = suite.comparisons()
    assert set(comparisons["optimisation"]) == {o.name for o in suite.optimisations}
    row = comparisons[(comparisons["before"] == "typed-materialized")
                      & (comparisons["metric"] == "peak_mib")].iloc[0]
    assert row["ratio"] == pytest.approx(row["after_value"] / row["before_value"])
    doc = json.loads(json.dumps(suite.to_dict()))
    assert doc["n_events"] == suite.n_events and doc["seed"] == 3
    assert {"python", "versions", "cpu_count"} <= set(doc["environment"])
    assert {"peak_met", "allocations_met", "typed_allocations_ratio"} <= set(doc["targets"])
    assert suite.out_dir is not None
    assert json.loads((suite.out_dir / "suite.json").read_text())["paths"]
    assert suite.path("typed").flamegraph is not None
    assert suite.path("naive").flamegraph is None
    assert "typed" in suite.flamegraph_markdown(relative_to=suite.out_dir)
    assert suite.timelines()["typed"] is not None


def test_suite_can_skip_memory_and_use_long_streams(tmp_path: Path) -> None:
    result = run_rehydration_suite(200, seed=1, out_dir=tmp_path, repeat=1, memory=False,
                                   paths=["naive", "streaming", "typed-snapshots"], n_streams=4)
    assert [p.path for p in result.paths] == ["naive", "typed", "typed-snapshots"]
    assert all(p.peak_bytes is None for p in result.paths)
    assert result.to_frame()["peak_ratio"].isna().all()
    assert list(result.to_frame(full=False).columns) == profiling.SUMMARY_COLUMNS
    assert result.path("typed").check["streams"] == 4
    # a snapshot two events before each head: only the tail is read
    assert result.path("typed-snapshots").check["events_read"] == 4 * 3
    from evtools.report import results_sources  # the report says on what CPU it ran

    doc = result.to_dict()
    assert doc["environment"]["cpu_model"]
    machine = results_sources({"suite": doc})["machine"].to_list()[0]
    assert machine.startswith(doc["environment"]["cpu_model"]), machine


def test_suite_leaves_out_the_peer_when_eventsourcing_is_not_installed(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "eventsourcing" else find_spec(name, *a))
    result = run_rehydration_suite(60, seed=1, repeat=1, memory=False)
    assert [p.path for p in result.paths] == [p for p in profiling.PATHS
                                              if p != "eventsourcing"]
    assert "eventsourcing path is left out" in caplog.text


def test_suite_without_out_dir_removes_its_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run_rehydration_suite(200, seed=1, repeat=1, paths=["typed"])
    assert not list(tmp_path.glob("evtools-suite-*"))
    assert result.out_dir is None and result.workload is None
    typed = result.path("typed")
    assert typed.peak_bytes is not None and typed.flamegraph is None  # nothing kept
    assert json.loads(json.dumps(result.to_dict()))["workload"] is None


def test_suite_without_out_dir_removes_its_temporary_folder_on_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise ProfilingError("memray could not start")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(profiling, "_measure", fail)
    with pytest.raises(ProfilingError):
        run_rehydration_suite(200, seed=1, repeat=1, paths=["typed"])
    assert not list(tmp_path.glob("evtools-suite-*"))


def test_unknown_paths_and_kinds_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown rehydration path"):
        run_rehydration_suite(10, out_dir=tmp_path, paths=["fast"])
    with pytest.raises(UsageError, match="kind"):
        profile_rehydration("memory:", kind="disk")
    with pytest.raises(UsageError, match="eventsourcing"):
        profile_rehydration("memory:", path="eventsourcing")


def _workload_url(suite: SuiteResult) -> str:
    assert suite.out_dir is not None
    return f"sqlite:///{next(suite.out_dir.glob('workload-*.db'))}"


def test_profile_rehydration_memory(suite: SuiteResult, tmp_path: Path) -> None:
    prof = profile_rehydration(_workload_url(suite), "memory", "materialized", tmp_path,
                               events=100)
    assert isinstance(prof, MemoryProfile)
    assert prof.label == "typed-materialized"
    assert prof.events is not None and prof.events >= 100
    assert prof.result["events"] == prof.events and prof.result["violations"] == 0
    assert prof.flamegraph is not None and prof.flamegraph.parent == tmp_path


@needs_pyspy
def test_profile_rehydration_cpu_samples_the_fold(suite: SuiteResult, tmp_path: Path) -> None:
    # the workload is small: fold it 30 times so that the fold, not start-up, is sampled
    prof = profile_rehydration(_workload_url(suite), "cpu", "typed", tmp_path, rate=250,
                               repeat=30)
    assert isinstance(prof, CpuProfile)
    assert "evtools.profiling" in prof.command and "--repeat" in prof.command
    assert prof.speedscope.is_file() and prof.flamegraph is not None
    assert prof.flamegraph.is_file()
    assert (prof.to_frame()["function"].str.contains("rehydrate")).any()


def test_run_entry_prints_what_it_rebuilt(suite: SuiteResult,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert profiling._main(["_run", _workload_url(suite), "--path", "naive",
                            "--events", "50"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == "naive" and doc["events"] >= 50 and doc["streams"] >= 1
    assert profiling._main(["_run", "memory:", "--path", "typed"]) == 2


@pytest.fixture(scope="module")
def order_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL export of 300 generated order events."""
    from evtools.datagen import write_workload
    from evtools.stores import open_store

    path = tmp_path_factory.mktemp("source") / "orders.jsonl"
    with open_store(str(path), mode="w") as store:
        write_workload(store, 300, seed=1)
    return path


def test_every_path_runs_over_corrupt_payloads_and_counts_them(tmp_path: Path) -> None:
    from evtools.datagen import write_workload
    from evtools.stores import open_store

    url = f"sqlite:///{tmp_path / 'corrupt.db'}"
    with open_store(url, mode="a") as store:
        write_workload(store, 400, seed=2, faults="corrupt=0.05")
    with open_store(url, mode="r") as store:
        streams, _ = profiling._select_streams(store, None)
        found = {name: profiling._Runner(name, store, streams)().violations
                 for name in PATHS if name not in ("scan", "eventsourcing")}
    assert all(found.values()), found  # each path met the bad payloads and said so


def test_profile_rehydration_cpu_repeats_a_small_store_enough(
        order_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argvs: list[list[str]] = []

    def sample(argv: list[str], **kwargs: Any) -> Any:
        argvs.append(argv)
        return types.SimpleNamespace(details={})

    monkeypatch.setattr(profiling, "profile_cpu", sample)
    auto = profile_rehydration(str(order_file), "cpu", out_dir=tmp_path, repeat=None)
    runs = auto.details["repeat"]
    total = auto.details["events"]
    assert (runs - 1) * total < profiling.CPU_PROFILE_EVENTS <= runs * total
    assert argvs[-1][-2:] == ["--repeat", str(runs)]
    once = profile_rehydration(str(order_file), "cpu", out_dir=tmp_path)
    assert once.details["repeat"] == 1 and "--repeat" not in argvs[-1]
    with pytest.raises(UsageError, match="repeat must be"):
        profile_rehydration(str(order_file), "cpu", out_dir=tmp_path, repeat=0)


def _must_not_sample(*args: Any, **kwargs: Any) -> CpuProfile:
    raise AssertionError("py-spy started on a source that cannot be read")


@pytest.mark.parametrize("kind", ["cpu", "memory"])
def test_profile_rehydration_of_a_missing_source_names_it(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiling, "profile_cpu", _must_not_sample)
    missing = tmp_path / "nofile.jsonl"
    with pytest.raises(StoreUnavailable, match="no such file") as info:
        profile_rehydration(str(missing), kind, out_dir=tmp_path / "out")
    assert info.value.context.file == str(missing)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["cpu", "memory"])
def test_profile_rehydration_of_a_truncated_source_names_it(
        kind: str, order_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiling, "profile_cpu", _must_not_sample)
    cut = tmp_path / "cut.jsonl"
    # a line cut off inside the file (its last line cut off is an append that did not
    # finish: left out, with a warning, as evtools.stores.files says)
    data = order_file.read_bytes()
    cut.write_bytes(data[:2500] + data[data.index(b"\n", 2500):])
    with pytest.raises(InputError) as info:
        profile_rehydration(str(cut), kind, out_dir=tmp_path / "out")
    assert info.value.context.file == str(cut)
    assert str(cut) in str(info.value)


@needs_pyspy
def test_profile_rehydration_cpu_fails_when_the_sampled_process_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the source passes the check here and is missing in the sampled process
    @contextlib.contextmanager
    def checked(source_url: str, events: int | None) -> Iterator[tuple[Any, list[str], int]]:
        yield None, ["order-1"], 5

    monkeypatch.setattr(profiling, "_order_source", checked)
    missing = tmp_path / "nofile.jsonl"
    with pytest.raises(ProfilingError, match=r"exit 2\).*no such file") as info:
        profile_rehydration(str(missing), "cpu", out_dir=tmp_path)
    assert str(missing) in str(info.value)


def test_profile_rehydration_alias_names_the_path_that_ran(order_file: Path,
                                                           tmp_path: Path) -> None:
    prof = profile_rehydration(str(order_file), "memory", "streaming", tmp_path, events=100)
    assert isinstance(prof, MemoryProfile)
    assert prof.label == "typed"
    assert prof.flamegraph == tmp_path / "typed.flamegraph.html"  # the canonical name
    doc = json.loads(json.dumps(prof.to_dict()))
    details = doc["details"]
    assert details["path"] == "typed" and details["requested_path"] == "streaming"
    # whole streams: at least the events asked for, all of them profiled
    assert details["events_requested"] == 100
    assert details["events"] == doc["events"] == prof.result["events_read"] >= 100
    assert details["streams"] == prof.result["streams"]
    assert "until at least 100 events" in details["selection"]


@needs_pyspy
def test_profile_rehydration_cpu_records_the_exit_status_and_the_path(
        order_file: Path, tmp_path: Path) -> None:
    prof = profile_rehydration(str(order_file), "cpu", "streaming", tmp_path, rate=250,
                               repeat=20)
    assert isinstance(prof, CpuProfile)
    assert prof.returncode == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["typed.speedscope.json",
                                                          "typed.svg"]
    doc = json.loads(json.dumps(prof.to_dict()))
    assert doc["returncode"] == 0
    assert doc["details"]["path"] == "typed" and doc["details"]["events"] == 300
    assert doc["details"]["selection"] == "every order stream"


# -- from a review as a new user -------------------------------------------------------------

def test_profile_cpu_of_a_callable_says_how_to_profile_one(tmp_path: Path) -> None:
    # it had failed with "TypeError: 'function' object is not iterable"
    with pytest.raises(UsageError, match=r"not function.*put it in a module") as info:
        profile_cpu(burn_nothing, out_dir=tmp_path)  # type: ignore[arg-type]
    assert "profile_memory" in str(info.value)
    with pytest.raises(UsageError, match="not int"):
        profile_cpu(3, out_dir=tmp_path)  # type: ignore[arg-type]


def burn_nothing() -> None:
    """A callable a user might hand to profile_cpu."""


SPIN = """\
import time

def spin():
    started = time.perf_counter()
    while time.perf_counter() - started < 0.6:
        sum(range(200))
"""


@needs_pyspy
def test_profile_cpu_source_imports_from_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the docstring's own example, "from mypkg import main; main()", had failed with
    # ModuleNotFoundError for a module in the working folder (python -c finds it)
    (tmp_path / "spinner.py").write_text(SPIN, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    prof = profile_cpu("from spinner import spin; spin()", out_dir=tmp_path / "out",
                       rate=200, label="spin")
    assert prof.returncode == 0
    spin = prof.to_frame()[prof.to_frame()["function"] == "spin"]
    assert list(spin["file"]) == [str(tmp_path / "spinner.py")]  # the user's file and line
    assert list(spin["line"]) == [3]
    # the command is one the user can run again, not the wrapper (removed by now)
    assert prof.command == [sys.executable, str(tmp_path / "out" / "spin_target.py")]


@needs_pyspy
@pytest.mark.parametrize("code, message", [
    ("import sys; sys.exit(3)", r"failed \(exit 3\)"),  # too brief to sample
    (SPIN + "spin()\nraise SystemExit(4)\n", r"failed \(exit 4\)"),  # sampled, then exit 4
    ("1 / 0", r"failed \(exit 1\): ZeroDivisionError"),  # had been "give it more work"
])
def test_profile_cpu_of_python_dash_c_records_its_exit_status(
        code: str, message: str, tmp_path: Path) -> None:
    # a python -c command line that exited non-zero had passed (returncode None)
    with pytest.raises(ProfilingError, match=message):
        profile_cpu([sys.executable, "-c", code], out_dir=tmp_path)
    left = [f.name for f in tmp_path.iterdir()]  # no wrapper nor status file left behind
    assert not [n for n in left if n.endswith(("_runner.py", ".status"))], left


@needs_pyspy
def test_profile_cpu_of_a_script_and_of_dash_c_with_arguments(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    script = tmp_path / "job.py"
    script.write_text(SPIN + "import sys\nspin()\nsys.exit(int(sys.argv[1]))\n")
    monkeypatch.chdir(tmp_path)
    prof = profile_cpu([sys.executable, "job.py", "0"], out_dir=tmp_path / "a", rate=200)
    assert prof.returncode == 0
    assert (prof.to_frame()["file"] == str(script)).any()
    with pytest.raises(ProfilingError, match=r"failed \(exit 5\)"):
        profile_cpu([sys.executable, str(script), "5"], out_dir=tmp_path / "b", rate=200)
    (tmp_path / "spinner.py").write_text(SPIN, encoding="utf-8")
    prof = profile_cpu([sys.executable, "-c", "import sys, spinner; spinner.spin(); "
                        "assert sys.argv == ['-c', 'x'], sys.argv", "x"],
                       out_dir=tmp_path / "c", rate=200)
    assert prof.returncode == 0


def test_ptrace_refused_after_the_program_ran_is_not_called_too_brief(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # py-spy could not attach, the program still ran and exited 0: the advice is ptrace's
    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        Path(cmd[-1]).write_text("0")  # the runner's status file
        return subprocess.CompletedProcess(cmd, 1, "", (
            "Permission Denied: Try running again with elevated permissions by going "
            "'sudo env \"PATH=$PATH\" !!'\n"))

    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    monkeypatch.setattr(profiling, "_run_py_spy", run)
    with pytest.raises(ProfilingError) as info:
        profile_cpu("pass\n", out_dir=tmp_path)
    assert str(info.value) == PTRACE_ADVICE


def test_an_unwritable_out_dir_is_a_usage_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # it had been a bare OSError from unlink or write_text (PermissionError, EROFS)
    real = profiling.os.access
    monkeypatch.setattr(profiling.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    with pytest.raises(UsageError, match="is not writable"):
        profile_memory(sum, [1], out_dir=tmp_path)
    monkeypatch.setattr(profiling, "_find_py_spy", lambda: "/usr/bin/py-spy")
    with pytest.raises(UsageError, match="is not writable"):
        profile_cpu("pass\n", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_events_may_be_a_numpy_integer(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    prof = profile_memory(keep_blocks, 2, 10, events=np.int64(2), out_dir=tmp_path,
                          flamegraph=False)
    assert prof.events == 2 and type(prof.events) is int
    assert json.loads(json.dumps(prof.to_dict()))["events"] == 2
    with pytest.raises(UsageError, match=r"positive int.*leave it out"):
        profile_memory(sum, [1], events=True, out_dir=tmp_path)
    unset = profile_memory(sum, [1], out_dir=tmp_path, flamegraph=False)
    assert unset.bytes_per_event is None and unset.to_dict()["bytes_per_event"] is None


def test_a_stale_flamegraph_is_not_left_beside_a_new_profile(tmp_path: Path) -> None:
    first = profile_memory(keep_blocks, 2, 10, out_dir=tmp_path, label="run")
    assert first.flamegraph is not None and first.flamegraph.is_file()
    second = profile_memory(keep_blocks, 2, 10, out_dir=tmp_path, label="run",
                            flamegraph=False)
    assert second.flamegraph is None
    assert sorted(f.name for f in tmp_path.iterdir()) == ["run.memray.bin"]


def test_a_raising_callable_raises_its_own_error(tmp_path: Path) -> None:
    def fails() -> None:
        raise KeyError("the user's")

    with pytest.raises(KeyError, match="the user's") as info:
        profile_memory(fails, out_dir=tmp_path)
    assert info.traceback[-1].name == "fails"  # the user's frame, where it raised


def test_profile_rehydration_memory_leaves_the_page_cache_out(tmp_path: Path) -> None:
    # a cold SQLite page cache (megabytes) had been most of a streaming path's peak, so
    # typed and naive had shown the same peak; the suite warms it first, and so does this
    from evtools.datagen import write_workload
    from evtools.stores import open_store

    url = f"sqlite:///{tmp_path / 'orders.db'}"
    with open_store(url, mode="a") as store:
        write_workload(store, 20_000, seed=3)
    prof = profile_rehydration(url, "memory", "typed", tmp_path / "out",
                               count_allocations=False)
    materialized = profile_rehydration(url, "memory", "typed-materialized", tmp_path / "out",
                                       count_allocations=False)
    assert prof.peak_bytes < MIB  # the fold streams: its peak is not the page cache
    assert prof.peak_bytes * 4 < materialized.peak_bytes


def test_fresh_decoders_refuse_a_nan_amount_as_the_registry_does(tmp_path: Path) -> None:
    """typed-fresh-decoders is typed-last-wins with a decoder built per event: the same
    checks, so the before/after pair measures only where the decoder is built."""
    import re

    import msgspec

    from evtools.datagen import generate
    from evtools.orders import order_registry
    from evtools.stores import NO_STREAM, open_store

    latest = order_registry().latest_version
    events = list(generate(200, seed=3))
    added = next(e for e in events if e.type == "ItemAdded"
                 and e.schema_version == latest("ItemAdded")
                 and re.search(rb'"amount":[0-9.]+', e.data))
    nan = re.sub(rb'"amount":[0-9.]+', b'"amount":"NaN"', added.data, count=1)
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    with open_store(url, mode="a") as store:
        store.append(added.stream, [msgspec.structs.replace(e, data=nan) if e is added else e
                                    for e in events if e.stream == added.stream], NO_STREAM)
        streams = [added.stream]
        found = {name: profiling._Runner(name, store, streams)().to_dict()
                 for name in ("typed-last-wins", "typed-fresh-decoders")}
    assert found["typed-last-wins"]["violations"] >= 1
    assert found["typed-fresh-decoders"] == found["typed-last-wins"]


# -- from a sixth review ----------------------------------------------------------------------

def _processes_with(marker: str) -> list[int]:
    """The ids of the running processes whose command line holds ``marker``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    found: list[int] = []
    if psutil is not None:
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.info["cmdline"] and marker in " ".join(proc.info["cmdline"]) \
                        and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
        return found
    for entry in Path("/proc").iterdir():  # pragma: no cover - psutil is installed
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def _kill_all(pids: list[int]) -> None:
    import os
    import signal

    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _spinner(marker: str, seconds: int = 15) -> list[str]:
    """A command line that spins ``seconds`` with ``marker`` on its command line."""
    return [sys.executable, "-c", f"# {marker}\nimport time\nt = time.time()\n"
                                  f"while time.time() - t < {seconds}:\n    pass\n"]


@needs_pyspy
def test_a_timeout_leaves_nothing_of_the_profiled_program_running(tmp_path: Path) -> None:
    # py-spy had been killed and its child, the program, had kept spinning
    import uuid

    marker = f"evtools-timeout-{uuid.uuid4().hex}"
    try:
        with pytest.raises(ProfilingError, match="timeout"):
            profile_cpu(_spinner(marker), out_dir=tmp_path, label="spin", timeout=2)
        assert _processes_with(marker) == []  # the program spins for 15 s unless killed
    finally:
        _kill_all(_processes_with(marker))


@needs_pyspy
def test_an_interrupted_profile_leaves_nothing_running(tmp_path: Path) -> None:
    # py-spy runs in a session of its own (a Ctrl-C in the terminal does not reach it), so
    # an interrupt in this process must stop it and the program
    import signal
    import threading
    import time
    import uuid

    marker = f"evtools-interrupt-{uuid.uuid4().hex}"
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer = threading.Timer(1.5, signal.pthread_kill, (main_thread, signal.SIGINT))
    # Python leaves SIGINT ignored when it started ignored (a background job of a
    # non-interactive shell, as CI may run it): the interrupt a user's Ctrl-C raises
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            profile_cpu(_spinner(marker), out_dir=tmp_path, label="spin")
            time.sleep(30)  # pragma: no cover - the interrupt arrived too late
        assert _processes_with(marker) == []
        assert not [f.name for f in tmp_path.iterdir() if f.name.endswith(
            ("_runner.py", ".status"))]
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        _kill_all(_processes_with(marker))


def _deep_document(depth: int) -> dict[str, Any]:
    frames = [{"name": f"f{i}", "file": "/app/deep.py", "line": i + 1} for i in range(depth)]
    return {"shared": {"frames": frames},
            "profiles": [{"type": "sampled", "samples": [list(range(depth)),
                                                         list(range(depth // 2)), []],
                          "weights": [0.01, 0.01, 0.01]}]}


def test_a_flame_graph_of_a_stack_thousands_of_frames_deep(tmp_path: Path) -> None:
    # a stack of about 600 frames (within Python's recursion limit) had raised a raw
    # RecursionError while the flame graph was drawn
    depth = 5000
    doc = _deep_document(depth)
    assert profiling.nesting_depth(_tree(depth)) == depth
    svg = write_flamegraph_svg(doc, tmp_path / "deep.svg")
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert len(titles) == depth + 1  # "all" and one box per frame
    assert titles[0].startswith("all: 100.0%")
    assert titles[-1].startswith(f"f{depth - 1} (deep.py:{depth}): 33.3%")
    assert int(root.get("height") or 0) > depth * 17
    table, samples, _ = speedscope_table(doc)
    assert samples == 3 and len(table) == depth


def _tree(depth: int) -> Any:
    root = node = profiling._Node("all")
    for i in range(depth):
        node = node.children.setdefault(str(i), profiling._Node(str(i)))
    return root


def test_the_flame_graph_draws_what_the_recursive_drawing_drew(tmp_path: Path) -> None:
    # the same boxes, in the same order, at the same places as before it was iterative
    doc = {"shared": {"frames": [{"name": n, "file": f"/app/{n}.py", "line": 1}
                                 for n in ("main", "b", "a", "c", "tiny")]},
           "profiles": [{"type": "sampled",
                         "samples": [[0, 1], [0, 2], [0, 2, 3], [0, 1, 3], [0]] * 800
                         + [[0, 4]], "weights": None}]}
    svg = write_flamegraph_svg(doc, tmp_path / "f.svg").read_text(encoding="utf-8")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    boxes = [((g.find(f"{ns}title").text or "").split(":")[0],  # type: ignore[union-attr]
              g.find(f"{ns}rect").get("x"), g.find(f"{ns}rect").get("y"))  # type: ignore[union-attr]
             for g in root.iter(f"{ns}g")]
    assert [b[0] for b in boxes] == ["all", "main (main.py", "a (a.py", "c (c.py",
                                     "b (b.py", "c (c.py"]
    x = {name: float(bx) for name, bx, _ in boxes}
    assert x["all"] == x["main (main.py"] == x["a (a.py"] == 10.0
    assert x["b (b.py"] == pytest.approx(10 + 1600 / 4001 * 1180, abs=0.1)


@pytest.fixture(scope="module")
def snapshot_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store of 5,000 order events with a snapshot every 3 versions."""
    from evtools.datagen import write_workload
    from evtools.orders import Order, order_registry
    from evtools.rehydration import rehydrate_store
    from evtools.stores import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('snap') / 'snap.db'}"
    with open_store(url, mode="a") as store:
        write_workload(store, 5000, seed=3)
        rehydrate_store(store, order_registry(), Order, snapshot_every=3)
    return url


def test_profile_rehydration_memory_leaves_the_snapshot_pages_out(snapshot_store: str,
                                                                  tmp_path: Path) -> None:
    # the warm-up had read the order streams only: SQLite's cache of the snapshot streams
    # (about 1.1 MB) had been counted as typed-snapshots' peak, 30 times typed's
    typed = profile_rehydration(snapshot_store, "memory", "typed", tmp_path,
                                count_allocations=False)
    snaps = profile_rehydration(snapshot_store, "memory", "typed-snapshots", tmp_path,
                                count_allocations=False)
    assert snaps.result["events_read"] < typed.result["events_read"]  # snapshots were used
    assert snaps.peak_bytes < 3 * typed.peak_bytes, (snaps.peak_bytes, typed.peak_bytes)
    assert snaps.peak_bytes < 256 * KIB


@pytest.mark.parametrize("events", [-5, 0, "abc", 2.5, True])
def test_read_capture_refuses_events_that_are_not_a_count(memory_profile: MemoryProfile,
                                                          events: Any) -> None:
    # -5 had given a negative bytes_per_event, "abc" a TypeError in to_dict, 0 None
    assert memory_profile.capture is not None
    with pytest.raises(UsageError, match="events must be a positive int"):
        profiling.read_capture(memory_profile.capture, events=events)


def test_read_capture_takes_the_seconds_from_the_capture_and_is_json(
        memory_profile: MemoryProfile) -> None:
    import math

    assert memory_profile.capture is not None
    prof = profiling.read_capture(memory_profile.capture, events=40)
    assert math.isfinite(prof.seconds) and prof.seconds >= 0  # had been NaN
    assert prof.bytes_per_event == memory_profile.bytes_per_event
    doc = json.loads(json.dumps(prof.to_dict(), allow_nan=False))  # NaN had been written
    assert doc["seconds"] == prof.seconds
    # whatever a caller put in, what to_dict gives is JSON
    prof.seconds = float("nan")
    prof.details = {"ratio": float("inf"), "nested": [float("-inf"), 1.5]}
    doc = json.loads(json.dumps(prof.to_dict(), allow_nan=False))
    assert doc["seconds"] is None
    assert doc["details"] == {"ratio": None, "nested": [None, 1.5]}


def test_read_capture_into_an_unwritable_flame_graph_names_it(
        memory_profile: MemoryProfile) -> None:
    # it had been a raw FileNotFoundError
    assert memory_profile.capture is not None
    with pytest.raises(ProfilingError, match=r"/proc/x/y\.html"):
        profiling.read_capture(memory_profile.capture, flamegraph="/proc/x/y.html")


@pytest.mark.parametrize("target", ["pass\n", [sys.executable, "-c", "pass"], ["true"]])
def test_an_out_dir_that_takes_no_files_is_a_usage_error_even_for_root(
        target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # os.access passes for root: /proc had raised a raw FileNotFoundError (/sys/kernel a
    # PermissionError) on the wrapper's files
    monkeypatch.setattr(profiling.os, "access", lambda p, mode: True)  # as for root
    with pytest.raises(UsageError, match="out_dir /proc") as info:
        profile_cpu(target, out_dir="/proc", label="cpu")
    assert "cpu_runner" not in str(info.value) and "cpu_target" not in str(info.value)
    with pytest.raises(UsageError, match="out_dir /proc"):
        profile_memory(sum, [1], out_dir="/proc")


def test_a_failing_write_of_an_artefact_names_the_out_dir(tmp_path: Path) -> None:
    # an artefact that cannot be replaced (here a folder in its place) had been a raw
    # OSError
    (tmp_path / "cpu.svg").mkdir()
    with pytest.raises((UsageError, ProfilingError), match=f"out_dir {tmp_path}"):
        profile_cpu("pass\n", out_dir=tmp_path, label="cpu")
    (tmp_path / "run.flamegraph.html").mkdir()
    with pytest.raises((UsageError, ProfilingError), match=f"out_dir {tmp_path}"):
        profile_memory(sum, [1], out_dir=tmp_path, label="run")


@needs_pyspy
def test_the_wrapper_is_hidden_from_every_cpu_artefact(tmp_path: Path) -> None:
    # the SVG's root frame and the speedscope file had been the wrapper's (a file removed
    # when the profile returns); only the table had left it out
    prof = profile_cpu(BURN, out_dir=tmp_path, rate=200, label="c1")
    doc = json.loads(prof.speedscope.read_text())
    files = [f.get("file", "") for f in doc["shared"]["frames"]]
    assert not [f for f in files if f.endswith("_runner.py")], files
    assert str(tmp_path / "c1_target.py") in files
    for profile in doc["profiles"]:
        for stack in profile["samples"]:
            assert all(0 <= i < len(files) for i in stack)
    assert prof.flamegraph is not None
    svg = prof.flamegraph.read_text(encoding="utf-8")
    assert "_runner.py" not in svg
    assert "&lt;module&gt; (c1_target.py:1)" in svg
    table, samples, _ = speedscope_table(doc)
    assert samples == prof.samples
    assert sorted(table["function"]) == sorted(prof.to_frame()["function"])


def test_runner_frames_are_stripped_from_a_document() -> None:
    doc = {"shared": {"frames": [{"name": "main", "file": "/o/t.py", "line": 1},
                                 {"name": "<module>", "file": "/o/cpu_runner.py", "line": 1},
                                 {"name": "burn", "file": "/o/t.py", "line": 3}]},
           "profiles": [{"type": "sampled", "samples": [[1, 0, 2], [1], [1, 0]],
                         "weights": [0.01, 0.01, 0.01]},
                        {"type": "evented", "events": [
                            {"type": "O", "frame": 1, "at": 0}, {"type": "O", "frame": 2,
                                                                 "at": 0},
                            {"type": "C", "frame": 2, "at": 1},
                            {"type": "C", "frame": 1, "at": 1}]}]}
    out = profiling._strip_file(doc, "/o/cpu_runner.py")
    assert [f["name"] for f in out["shared"]["frames"]] == ["main", "burn"]
    assert out["profiles"][0]["samples"] == [[0, 1], [], [0]]
    assert out["profiles"][0]["weights"] == [0.01, 0.01, 0.01]
    assert out["profiles"][1]["events"] == [{"type": "O", "frame": 1, "at": 0},
                                            {"type": "C", "frame": 1, "at": 1}]
    assert doc["profiles"][0]["samples"][0] == [1, 0, 2]  # the document given is kept


@needs_pyspy
def test_a_failed_cpu_run_leaves_nothing_of_an_earlier_one(tmp_path: Path) -> None:
    # the earlier run's st.svg had stayed beside the failed run's st.speedscope.json
    profile_cpu(SPIN + "spin()\n", out_dir=tmp_path, rate=200, label="st")
    assert (tmp_path / "st.svg").is_file()
    with pytest.raises(ProfilingError):
        profile_cpu(SPIN + "spin()\n1 / 0\n", out_dir=tmp_path, rate=200, label="st")
    assert not (tmp_path / "st.svg").exists()


def test_a_failed_memory_run_leaves_nothing_of_an_earlier_one(tmp_path: Path) -> None:
    def fails() -> None:
        raise KeyError("the user's")

    first = profile_memory(keep_blocks, 2, 10, out_dir=tmp_path, label="run")
    assert first.flamegraph is not None and first.flamegraph.is_file()
    with pytest.raises(KeyError):
        profile_memory(fails, out_dir=tmp_path, label="run")
    assert not (tmp_path / "run.flamegraph.html").exists()


@pytest.mark.parametrize("target", [b"pass", bytearray(b"pass"), memoryview(b"pass"),
                                    [sys.executable, b"-c", "pass"], [sys.executable, 3]])
def test_profile_cpu_of_bytes_says_what_it_takes(target: Any, tmp_path: Path) -> None:
    # b"pass" had been taken as the command line "112 97 115 115"
    with pytest.raises(UsageError, match=r"a str \(Python source.*or a list of str"):
        profile_cpu(target, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_rehydration_profile.ipynb"


@pytest.mark.parametrize("keep", [False, True])
def test_notebook_03_removes_the_folder_it_made(tmp_path: Path, keep: bool) -> None:
    # without results_dir, every run had left a 30 MB evtools-03-* folder in /tmp
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("IPython")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    setup = next(c for c in code if "out = " in c.source)
    cleanup = [c for c in code if "cleanup" in c.metadata.get("tags", [])]
    assert len(cleanup) == 1 and code[-1] is cleanup[0], "the last cell cleans up"
    namespace: dict[str, Any] = {}
    exec(params.source, namespace)  # the notebook's own cells
    namespace["results_dir"] = str(tmp_path / "results") if keep else ""
    exec(setup.source, namespace)
    out = namespace["out"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "artefact.txt").write_text("x")
    exec(cleanup[0].source, namespace)
    assert (out / "artefact.txt").exists() == keep
    if not keep:
        assert not out.exists()
