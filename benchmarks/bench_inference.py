"""Inference benchmark: typed batched vs naive per-row, end to end, plus the model sweep.

    python benchmarks/bench_inference.py --device auto --batch-sizes 1,8,64,512 \\
        --out benchmarks/results/inference.json

Generates an order workload (seeded), rebuilds it typed and untyped, then measures in one
run: cold start, the correctness counts (corrupted IDs, differing predictions), end-to-end
samples/s and per-request latency for both pipelines across batch sizes, and the model
alone. Writes one JSON document (headline figures, ratios, every run with its latency
CDF, seed, versions, machine) and prints a table. ``--figures`` also writes the three
plots as PNG next to the JSON. ``--check`` exits 1 when a target is missed: typed
batched >= ``--target`` x naive per-row, 0 corrupted IDs typed, > 0 naive. Bad arguments
(``--n-orders 0``, ``--device cuda`` without a GPU...) print one line
``bench_inference.py: error: ...`` and exit 2, before anything is written.

On a GPU machine: ``--device cuda`` (``--dtype bfloat16`` for half precision).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from evtools.errors import EvtoolsError
from evtools.inference import InferenceBenchmark, run_inference_benchmark

TARGET_SPEEDUP = 20.0


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be positive integers")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=Path(__file__).name,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="comma-separated (default 1,8,64,512, those up to --n-orders)")
    p.add_argument("--n-orders", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: 1 on CPU, torch's default on GPU; "
                        "0: torch's default)")
    p.add_argument("--round-seconds", type=float, default=0.25,
                   help="end to end: least time per configuration and round")
    p.add_argument("--model-seconds", type=float, default=0.3,
                   help="offline phase length per batch size, model-only sweep")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/inference.json"))
    p.add_argument("--figures", action="store_true", help="also write PNG plots")
    p.add_argument("--target", type=float, default=TARGET_SPEEDUP)
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def targets(bench: InferenceBenchmark, target: float) -> dict[str, bool]:
    c = bench.correctness
    return {
        f"typed batched >= {target:g}x naive per-row": bench.speedup >= target,
        "typed path: 0 corrupted IDs": c is not None and c.typed_corrupted == 0,
        "naive path: corrupted IDs found": c is not None and c.naive_corrupted > 0,
    }


def write_figures(bench: InferenceBenchmark, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evtools.plots import inference as plots

    written = []
    for name, draw in (("latency_cdf", plots.latency_cdf),
                       ("throughput_vs_batch", plots.throughput_vs_batch),
                       ("float32_trap", plots.float32_trap)):
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        draw(bench, ax=ax)
        path = folder / f"inference_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        bench = run_inference_benchmark(device=args.device, batch_sizes=args.batch_sizes,
                                        n_orders=args.n_orders, seed=args.seed,
                                        dtype=args.dtype, repeats=args.repeats,
                                        round_seconds=args.round_seconds,
                                        model_seconds=args.model_seconds,
                                        num_threads=args.threads)
    except EvtoolsError as e:  # one line and exit 2, as argparse (and the evtools CLI) do;
        # 1 is a missed target under --check
        sys.stderr.write(f"{parser.prog}: error: {e}\n")
        return 2
    met = targets(bench, args.target)
    doc = bench.to_dict()
    ratios = {"typed_best_vs_naive_per_row": bench.speedup,
              **{f"typed_vs_naive_at_batch_{b}": bench.speedup_at(b)
                 for b in bench.config["batch_sizes"]}}
    doc["ratios"] = {k: v for k, v in ratios.items() if math.isfinite(v)}  # no naive run: none
    doc["targets"] = met
    doc["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                          else sys.argv[1:])])
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2, allow_nan=False))
    except OSError as e:
        sys.stderr.write(f"{parser.prog}: error: cannot write {args.out}: "
                         f"{e.strerror or e}\n")
        return 2
    print(bench.summary())
    print(f"\nwrote {args.out}")
    if args.figures:
        for path in write_figures(bench, args.out.parent):
            print(f"wrote {path}")
    for what, ok in met.items():
        print(f"{'ok  ' if ok else 'MISS'} {what}")
    return 1 if args.check and not all(met.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
