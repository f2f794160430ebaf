"""Run every benchmark, one after the other, and summarise their targets (``make bench``).

Each benchmark runs in its own process (so one's memory and caches do not colour the next)
and writes its own JSON into ``--out``; ``summary.json`` beside them lists, per benchmark,
the command, its exit status, the seconds it took and each target with whether it was met.

    python benchmarks/run_all.py --out benchmarks/results          # the issues' sizes
    python benchmarks/run_all.py --quick --out /tmp/bench          # a smoke run, seconds
    python benchmarks/run_all.py --only rehydrate,audit --check    # exit 1 on a missed target

At the issues' sizes (1,000,000 events for rehydration and the audit; 100,000 for the
profiling suite) the whole run takes about 8 minutes on two cores. ``--quick`` runs every
benchmark on a few thousand events: its figures say the scripts work, not how fast
anything is, and targets stated for a million events are not expected to hold there.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: name -> (script, arguments at the issues' sizes, arguments for --quick). ``{out}`` is the
#: JSON file the benchmark writes, ``{dir}`` a folder for its other artefacts.
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "rehydrate": ("bench_rehydrate.py", ["--out", "{out}"],
                  ["--events", "5000", "--repeat", "1", "--out", "{out}"]),
    "profile": ("bench_profile.py", ["--out", "{dir}", "--json", "{out}"],
                ["--events", "3000", "--peer-events", "2000", "--repeat", "1",
                 "--out", "{dir}", "--json", "{out}"]),
    "audit": ("bench_audit.py", ["--out", "{out}"],
              ["--events", "5000", "--warmup", "1000", "--repeat", "1", "--out", "{out}"]),
    "stores": ("bench_stores.py", ["--out", "{out}"],
               ["--events", "2000", "--repeat", "1", "--out", "{out}"]),
    "inference": ("bench_inference.py", ["--out", "{out}"],
                  ["--n-orders", "500", "--repeats", "1", "--round-seconds", "0.05",
                   "--model-seconds", "0.05", "--out", "{out}"]),
}


def targets_of(result: dict[str, Any]) -> dict[str, bool]:
    """Each target a benchmark's JSON states, with whether it was met.

    The benchmarks grew separately and say it in two ways: ``targets_met`` (name -> met,
    beside ``targets``: name -> threshold), or ``targets`` holding the verdicts themselves
    (booleans, or keys ending in ``_met`` among the thresholds and measured figures)."""
    if isinstance(result.get("targets_met"), dict):
        return {k: bool(v) for k, v in result["targets_met"].items()}
    stated = result.get("targets")
    if not isinstance(stated, dict):
        return {}
    flags = {k: v for k, v in stated.items() if isinstance(v, bool)}
    met = {k: v for k, v in flags.items() if k.endswith("_met")}
    return met or flags


def run_one(name: str, out_dir: Path, quick: bool) -> dict[str, Any]:
    script, full, small = BENCHMARKS[name]
    out = out_dir / f"{name}.json"
    args = [a.format(out=out, dir=out_dir / name) for a in (small if quick else full)]
    command = [sys.executable, f"benchmarks/{script}", *args]  # from the repo root
    print(f"== {name}: python {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    status = subprocess.run(command, cwd=HERE.parent).returncode
    entry: dict[str, Any] = {"command": ["python", *command[1:]], "exit_status": status,
                             "seconds": round(time.perf_counter() - started, 1),
                             "json": str(out)}
    if status == 0 and out.is_file():
        entry["targets"] = targets_of(json.loads(out.read_text()))
    else:
        entry["error"] = (f"exited with status {status}" if status else
                          f"exited 0 but wrote no {out}")
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="folder for every benchmark's JSON and summary.json")
    p.add_argument("--quick", action="store_true",
                   help="a few thousand events each: checks the scripts, not the targets")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated, from {', '.join(BENCHMARKS)}")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a benchmark fails or misses a target")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        p.error(f"unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(BENCHMARKS)}")
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    results = {name: run_one(name, out_dir, args.quick) for name in names}
    summary = {"quick": args.quick, "python": platform.python_version(), "benchmarks": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    failed = missed = 0
    print(f"\n{'benchmark':<10} {'target':<48} result", file=sys.stderr)
    for name, entry in results.items():
        if "error" in entry:
            failed += 1
            print(f"{name:<10} {'(did not finish)':<48} {entry['error']}", file=sys.stderr)
            continue
        for target, met in entry["targets"].items():
            missed += not met
            print(f"{name:<10} {target:<48} {'met' if met else 'MISSED'}", file=sys.stderr)
    print(f"\nwrote {out_dir / 'summary.json'}: {len(results) - failed}/{len(results)} "
          f"benchmarks finished, {missed} target(s) missed"
          + (" (--quick: sizes too small for the targets)" if args.quick else ""),
          file=sys.stderr)
    if failed:
        return 1
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
