"""Rehydration before/after suite: time, events/s, peak memory and allocations per path.

Every path of :data:`evtools.profiling.PATHS` runs over the same generated order workload
(naive dicts and typed Structs, each streaming and materialised; typed from snapshots; the
variants isolating one optimisation each; the Python ``eventsourcing`` library as an
outside peer). Time is measured without a profiler (median of ``--repeat`` runs, CPU and
wall seconds); memory in one run per path under memray with Python's allocator traced.
Ratios are against the streaming naive path of the same run. The result is written as JSON
(``suite.json`` in ``--out``, and ``--json`` if given) with the seed, the versions, the
machine and the warm-up; the issue's targets (on 1,000,000 events) are evaluated under
``targets``.

    python benchmarks/bench_profile.py --events 100000 --out benchmarks/results/rehydrate
    python benchmarks/bench_profile.py --events 1000000 \\
        --memory-paths naive-materialized,naive,typed --out benchmarks/results/rehydrate-1m

At a million events a full capture of every allocation takes minutes to read back per
path: ``--memory-paths`` limits memray to the paths named (the targets need
``naive-materialized``, ``naive`` and ``typed``), ``--no-counts`` keeps peaks, timelines
and flame graphs but skips the allocation totals. ``evtools bench rehydrate --events N
--format json`` runs the same suite with its defaults.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from evtools.errors import EvtoolsError, UsageError
from evtools.profiling import (
    PATH_ALIASES,
    PATHS,
    SuiteResult,
    resolve_path,
    run_rehydration_suite,
)

log = logging.getLogger("bench_profile")


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in PATHS and n not in PATH_ALIASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown path(s) {', '.join(unknown)}; choose from "
                                         f"{', '.join(PATHS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=Path(__file__).name,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000,
                        help="events in the generated workload (default 100,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--streams", type=int,
                        help="share the events among this many streams (default: orders of "
                             "natural length, 3 to 11 events)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rehydrate"),
                        help="folder for the workload, flame graphs and suite.json")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--source", help="copy whole streams of this store instead of "
                                         "generating a workload")
    parser.add_argument("--paths", type=_names, help="comma-separated paths (default: all)")
    parser.add_argument("--memory-paths", type=_names,
                        help="profile only these paths under memray (default: all)")
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument("--no-counts", action="store_true",
                        help="aggregate in memray: peaks and flame graphs, no allocation "
                             "totals (fast to read back at a million events)")
    parser.add_argument("--flamegraphs", type=_names,
                        help="write memray flame graphs of these paths (default: all "
                             "profiled paths)")
    parser.add_argument("--repeat", type=int, help="timed runs per path (default 3 below "
                                                   "200,000 events, else 1)")
    parser.add_argument("--peer-events", type=int, default=200_000,
                        help="events the eventsourcing peer replays (0: all; default "
                             "200,000)")
    return parser


def check(args: argparse.Namespace) -> None:
    """A :class:`UsageError` for options that contradict each other: each had run the suite
    without the figures or flame graphs it asked for."""
    if args.no_memory and args.memory_paths:
        raise UsageError("--memory-paths and --no-memory contradict each other: drop one")
    if args.no_memory and args.flamegraphs:
        raise UsageError("--flamegraphs needs memory profiling (flame graphs come from "
                         "memray), which --no-memory turns off: drop one")
    running = None if args.paths is None else {resolve_path(p) for p in args.paths}
    traced = running
    if args.memory_paths:
        traced = {resolve_path(p) for p in args.memory_paths}
        if running is not None and traced - running:
            raise UsageError(f"--memory-paths names path(s) that --paths leaves out: "
                             f"{', '.join(sorted(traced - running))}")
    if args.flamegraphs and traced is not None:
        drawn = {resolve_path(p) for p in args.flamegraphs}
        if drawn - traced:
            raise UsageError(f"--flamegraphs names path(s) not profiled under memray "
                             f"(--paths, --memory-paths): {', '.join(sorted(drawn - traced))}")


def run(args: argparse.Namespace) -> SuiteResult:
    check(args)
    memory: bool | list[str] = (False if args.no_memory
                                else args.memory_paths if args.memory_paths else True)
    return run_rehydration_suite(
        args.events, args.seed, args.out, paths=args.paths, source=args.source,
        memory=memory, count_allocations=not args.no_counts,
        flamegraphs=args.flamegraphs if args.flamegraphs is not None else True,
        repeat=args.repeat, peer_events=args.peer_events or None, n_streams=args.streams,
        progress=lambda step, state: log.info("%s: %s", step, state))


def summary(suite: SuiteResult) -> str:
    """A plain-text table of the figures (what the JSON holds, rounded)."""

    def fmt(value: object, spec: str) -> str:
        return "-" if value is None or value != value else format(value, spec)

    def times(value: object) -> str:
        if not isinstance(value, int | float) or value != value:
            return "-"
        return format(value, ",.0f" if value >= 100 else ".2f")

    lines = [f"{suite.n_events:,} events, seed {suite.seed}, {suite.source}",
             f"{'path':22} {'events/s':>10} {'peak MiB':>10} {'alloc/ev':>9} "
             f"{'bytes/ev':>9} {'x peak':>8} {'x alloc':>8} {'x speed':>8}"]
    for row in suite.to_frame().to_dict("records"):
        lines.append(
            f"{row['path']:22} {fmt(row['events_per_s'], ',.0f'):>10} "
            f"{fmt(row['peak_mib'], ',.2f'):>10} {fmt(row['allocations_per_event'], '.1f'):>9} "
            f"{fmt(row['bytes_per_event'], ',.0f'):>9} {times(row['peak_ratio']):>8} "
            f"{times(row['allocations_ratio']):>8} {times(row['speed_ratio']):>8}")
    lines.append("targets: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else
                                         f"{k}={v}" for k, v in suite.targets.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        suite = run(args)
    except EvtoolsError as e:  # one line and exit 2, as argparse (and the evtools CLI) do
        sys.stderr.write(f"{parser.prog}: error: {e}\n")
        return 2
    if args.json:
        try:
            suite.write_json(args.json)
        except OSError as e:
            sys.stderr.write(f"{parser.prog}: error: cannot write {args.json}: "
                             f"{e.strerror or e}\n")
            return 2
    sys.stdout.write(summary(suite) + "\n")
    log.info("done in %.0f s; results in %s", time.perf_counter() - started, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
