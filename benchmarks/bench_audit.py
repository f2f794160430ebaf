"""Audit benchmark: the fidelity audit of one dialect against plain ``json.loads`` +
``json.dumps`` of the same events, in the same run.

    python benchmarks/bench_audit.py --events 1000000 --repeat 3 \\
        --out benchmarks/results/audit.json

A synthetic order stream (``--events``, default 1,000,000, ``--seed``) is generated once;
its payloads are then, in each round and in this order:

* ``json_roundtrip``: ``json.dumps(json.loads(payload))`` for every payload (the baseline:
  what reading and writing the same events costs a plain Python program);
* ``audit_<dialect>``: :func:`evtools.fidelity.audit` of the same payloads with that one
  dialect (``--dialects``, default ``go,js``, each audited separately).

Times are CPU seconds (``time.process_time``) after a warm-up of every path on the first
``--warmup`` events; each figure is the median of ``--repeat`` rounds, and the ratio of a
dialect is its median over the baseline's median (the rounds interleave the paths, so a
noisy neighbour slows all of them alike; the median of the per-round ratios is recorded
too). Target: the audit of one dialect costs at most ``--target`` (3x) the baseline.
Writes one JSON document (figures, ratios, targets, what the audit found, seed, versions,
machine) to ``--out``, prints a table, and with ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _machine import machine, versions  # benchmarks/_machine.py, beside this script

from evtools.datagen import generate
from evtools.fidelity import AuditResult, audit

TARGET_RATIO = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=20_000, help="events per warm-up run")
    p.add_argument("--dialects", default="go,js", help="comma-separated, each audited alone")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--target", type=float, default=TARGET_RATIO)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/audit.json"))
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    args.dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    if args.events < 1 or args.repeat < 1 or not args.dialects:
        p.error("--events and --repeat must be positive, --dialects not empty")
    return args


def cpu_seconds(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of one call, after a full collection."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def json_roundtrip(payloads: Sequence[bytes]) -> int:
    loads, dumps = json.loads, json.dumps
    n = 0
    for payload in payloads:
        n += len(dumps(loads(payload)))
    return n


def audit_one(payloads: Sequence[bytes], dialect: str, batch_size: int) -> AuditResult:
    return audit(payloads, [dialect], batch_size=batch_size)






def found(result: AuditResult) -> dict[str, Any]:
    """What the audit reported, so a run that measured nothing shows it."""
    totals = {k: sum(r[k] for r in result.rows)
              for k in ("values", "at_risk", "value_changed", "text_changed", "type_changed",
                        "dropped", "rejected")}
    return {"documents": result.documents, "rows": len(result.rows), **totals}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = machine()
    t0 = time.perf_counter()
    payloads = [e.data for e in generate(args.events, seed=args.seed)]
    generated_s = time.perf_counter() - t0
    sizes = [len(p) for p in payloads]
    print(f"{len(payloads):,} order events generated in {generated_s:.1f} s "
          f"({min(sizes)}-{max(sizes)} bytes, {sum(sizes) / len(sizes):.0f} on average)",
          file=sys.stderr)

    paths: dict[str, Callable[[Sequence[bytes]], Any]] = {"json_roundtrip": json_roundtrip}
    for d in args.dialects:
        paths[f"audit_{d}"] = lambda p, d=d: audit_one(p, d, args.batch_size)

    warm = payloads[: args.warmup]
    for fn in paths.values():
        fn(warm)

    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    results: dict[str, AuditResult] = {}
    for r in range(args.repeat):
        for name, fn in paths.items():
            cpu, wall, out = cpu_seconds(lambda fn=fn: fn(payloads))
            runs[name].append((cpu, wall))
            if isinstance(out, AuditResult):
                results[name] = out
            print(f"  round {r + 1}: {name:<16} {cpu:8.3f} s CPU", file=sys.stderr)

    n = len(payloads)
    figures: dict[str, dict[str, Any]] = {}
    for name, timings in runs.items():
        cpu = statistics.median(t[0] for t in timings)
        figures[name] = {"cpu_s": cpu, "wall_s": statistics.median(t[1] for t in timings),
                         "events_per_s": n / cpu, "us_per_event": cpu / n * 1e6,
                         "runs_cpu_s": [t[0] for t in timings]}
    base = runs["json_roundtrip"]
    ratios: dict[str, dict[str, float]] = {}
    for d in args.dialects:
        name = f"audit_{d}"
        ratios[d] = {
            "median_over_median": figures[name]["cpu_s"] / figures["json_roundtrip"]["cpu_s"],
            "median_of_round_ratios": statistics.median(
                a[0] / b[0] for a, b in zip(runs[name], base, strict=True)),
        }
    met = {f"audit {d} <= {args.target:g}x json.loads + json.dumps":
           ratios[d]["median_over_median"] <= args.target for d in args.dialects}
    doc = {
        "benchmark": "audit",
        "command": " ".join([Path(sys.argv[0]).name,
                             *(argv if argv is not None else sys.argv[1:])]),
        "config": {"events": n, "seed": args.seed, "repeat": args.repeat,
                   "warmup_events": len(warm), "dialects": args.dialects,
                   "batch_size": args.batch_size, "clock": "time.process_time (CPU s)",
                   "payload_bytes": {"min": min(sizes), "max": max(sizes),
                                     "mean": sum(sizes) / n}},
        "figures": figures,
        "ratios": ratios,
        "targets": met,
        "found": {name: found(res) for name, res in results.items()},
        "versions": versions(),
        "machine": {**started, "load_average_at_end": os.getloadavg()
                    if hasattr(os, "getloadavg") else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, allow_nan=False))

    print(f"\n{n:,} events, seed {args.seed}, median of {args.repeat} (CPU time)")
    print(f"{'path':<18}{'CPU s':>9}{'events/s':>13}{'us/event':>10}{'ratio':>8}")
    for name, f in figures.items():
        ratio = "" if name == "json_roundtrip" else \
            f"{ratios[name.removeprefix('audit_')]['median_over_median']:7.2f}x"
        print(f"{name:<18}{f['cpu_s']:9.3f}{f['events_per_s']:13,.0f}"
              f"{f['us_per_event']:10.2f}{ratio:>8}")
    print(f"\nwrote {args.out}")
    for what, ok in met.items():
        print(f"{'ok  ' if ok else 'MISS'} {what}")
    return 1 if args.check and not all(met.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
