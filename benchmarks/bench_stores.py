"""Append and read throughput of every available store (a benchmark, not a test).

    python benchmarks/bench_stores.py --events 100000 [--out benchmarks/results/stores.json]

Each store gets the same deterministic workload (``--seed``): order-like JSON payloads of
about 190-580 bytes with metadata, appended ``--batch`` events per call to
``events / batch`` streams, then read back with ``read_all`` and with ``read_stream`` per
stream. Appends run into a fresh store each repeat; reads run after one warm-up read.
Figures are medians over ``--repeat`` runs (NATS: ``--nats-repeat``).

JetStream is measured next to a plain nats-py loop in the same run, on the same server:
``js.publish_async`` of the same payloads with the same headers (pipelined, awaited per
batch) and a pull consumer (``AckPolicy.NONE``) fetching batches of 1,000. The ratio is
baseline rate / store rate (1.0 = as fast as plain nats-py; the target is <= 1.5).

Targets (from issue 5): SQLite read >= 300,000 events/s, append >= 100,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from _machine import machine  # benchmarks/_machine.py, beside this script

from evtools.stores import (
    EventStore,
    JsonlStore,
    MemoryStore,
    NewEvent,
    ParquetStore,
    SqliteStore,
    open_store,
)

log = logging.getLogger("bench_stores")

DEFAULT_OUT = Path(__file__).parent / "results" / "stores.json"


# -- workload ------------------------------------------------------------------------------


def workload(events: int, batch: int, seed: int) -> list[tuple[str, list[NewEvent]]]:
    """``events / batch`` appends of ``batch`` events, one stream each, deterministic."""
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    appends = []
    n = 0
    for s in range(max(1, events // batch)):
        stream = f"order-{s:06d}"
        out = []
        for _ in range(min(batch, events - n)):
            items = [{"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randrange(1, 9),
                      "price": f"{rng.randrange(100, 100_000) / 100:.2f}"}
                     for _ in range(rng.randrange(1, 6))]
            payload = json.dumps({
                "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "customer": f"cust-{rng.randrange(10**5)}",
                "placed_at": (t0 + timedelta(seconds=n)).isoformat(),
                "items": items,
                "note": "x" * rng.randrange(0, 120),
            }, separators=(",", ":")).encode()
            out.append(NewEvent("OrderPlaced", payload,
                                metadata=b'{"correlation_id":"%d"}' % n,
                                id=str(uuid.UUID(int=rng.getrandbits(128))),
                                recorded_at=t0 + timedelta(microseconds=n)))
            n += 1
        appends.append((stream, out))
    return appends


def payload_stats(appends: list[tuple[str, list[NewEvent]]]) -> dict[str, float]:
    sizes = [len(e.data) for _, events in appends for e in events]
    return {"min": min(sizes), "max": max(sizes), "mean": round(statistics.mean(sizes), 1)}


# -- timing --------------------------------------------------------------------------------


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def time_append(store: EventStore, appends: list[tuple[str, list[NewEvent]]]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    for stream, events in appends:
        store.append(stream, events)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_read(read: Callable[[], Iterator[Any]], expected: int) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    for _ in read():
        count += 1
    elapsed = time.perf_counter() - wall, time.process_time() - cpu
    if count != expected:
        raise RuntimeError(f"read {count} events, expected {expected}")
    return elapsed


def read_streams(store: EventStore, streams: list[str]) -> Callable[[], Iterator[Any]]:
    def read() -> Iterator[Any]:
        for s in streams:
            yield from store.read_stream(s)
    return read


def measure(name: str, make: Callable[[int], EventStore],
            appends: list[tuple[str, list[NewEvent]]], repeat: int,
            reopen: Callable[[EventStore], EventStore] | None = None) -> dict[str, Any]:
    """Median append, read_all and read_stream rates for one store kind."""
    total = sum(len(e) for _, e in appends)
    streams = [s for s, _ in appends]
    appends_s: list[Timing] = []
    read_all_s: list[Timing] = []
    read_stream_s: list[Timing] = []
    for r in range(repeat):
        store = make(r)
        try:
            appends_s.append(time_append(store, appends))
            if reopen is not None:
                store = reopen(store)
            time_read(store.read_all, total)  # warm-up
            read_all_s.append(time_read(store.read_all, total))
            read_stream_s.append(time_read(read_streams(store, streams), total))
        finally:
            store.close()
    result: dict[str, Any] = {}
    for what, timings in (("append", appends_s), ("read_all", read_all_s),
                          ("read_stream", read_stream_s)):
        result[f"{what}_events_per_s"] = rate(total, statistics.median(t[0] for t in timings))
        result[f"{what}_events_per_cpu_s"] = rate(total,
                                                  statistics.median(t[1] for t in timings))
    result["runs"] = repeat
    log.info("%-8s append %10.0f/s  read_all %10.0f/s  read_stream %10.0f/s", name,
             result["append_events_per_s"], result["read_all_events_per_s"],
             result["read_stream_events_per_s"])
    return result


# -- NATS ----------------------------------------------------------------------------------


def nats_binary() -> Path | None:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file():
        return candidate
    found = shutil.which("nats-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(binary: Path, store_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(binary), "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(store_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


def nats_baseline(url: str, appends: list[tuple[str, list[NewEvent]]]) -> dict[str, Any]:
    """Plain nats-py: publish_async with the store's headers, then a pull-consumer fetch."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from evtools.stores.base import prepare_events
    from evtools.stores.nats import message_headers, subject_token

    total = sum(len(e) for _, e in appends)
    name = "BASE" + uuid.uuid4().hex[:6].upper()
    prepared = [(s, list(prepare_events("bench", s, events))) for s, events in appends]

    async def run() -> tuple[Timing, Timing]:
        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=8000)
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        wall, cpu = time.perf_counter(), time.process_time()
        for stream, events in prepared:
            subject = f"{name.lower()}.{subject_token(stream)}"
            futures = []
            for version, e in enumerate(events):
                headers = message_headers(e, stream, version)  # what the store sends
                futures.append(await js.publish_async(subject, e.data, headers=headers))
            await asyncio.gather(*futures)
        append_s = time.perf_counter() - wall, time.process_time() - cpu
        sub = await js.pull_subscribe(f"{name.lower()}.>", stream=name,
                                      config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        wall, cpu = time.perf_counter(), time.process_time()
        count = 0
        while count < total:
            for _msg in await sub.fetch(1000, timeout=10):
                count += 1
        fetch_s = time.perf_counter() - wall, time.process_time() - cpu
        await js.delete_stream(name)
        await nc.close()
        return append_s, fetch_s

    append_s, fetch_s = asyncio.run(run())
    return {"publish_events_per_s": rate(total, append_s[0]),
            "fetch_events_per_s": rate(total, fetch_s[0]),
            "publish_events_per_cpu_s": rate(total, append_s[1]),
            "fetch_events_per_cpu_s": rate(total, fetch_s[1])}


def bench_nats(binary: Path, appends: list[tuple[str, list[NewEvent]]], repeat: int,
               tmp: Path) -> dict[str, Any]:
    from evtools.stores import NatsStore

    proc, url = start_nats(binary, tmp / "nats")
    try:
        def make(r: int) -> EventStore:
            tag = uuid.uuid4().hex[:8].upper()
            return NatsStore(url, f"BENCH{tag}", prefix=f"bench{tag.lower()}", timeout=10)

        baselines, stores = [], []
        for _ in range(repeat):  # interleaved, so both see the same machine load
            baselines.append(nats_baseline(url, appends))
            stores.append(measure("nats", make, appends, 1))
        baseline = {k: statistics.median(b[k] for b in baselines) for k in baselines[0]}
        store: dict[str, Any] = {k: statistics.median(s[k] for s in stores)
                                 for k in stores[0]}
        store["runs"] = repeat
        ratios = {
            "append": round(baseline["publish_events_per_s"] / store["append_events_per_s"], 2),
            "read_all": round(baseline["fetch_events_per_s"] / store["read_all_events_per_s"],
                              2),
            "append_cpu": round(baseline["publish_events_per_cpu_s"]
                                / store["append_events_per_cpu_s"], 2),
            "read_all_cpu": round(baseline["fetch_events_per_cpu_s"]
                                  / store["read_all_events_per_cpu_s"], 2),
        }
        log.info("nats-py  publish %9.0f/s  fetch %9.0f/s  (baseline / store: append %.2f, "
                 "read %.2f)", baseline["publish_events_per_s"],
                 baseline["fetch_events_per_s"], ratios["append"], ratios["read_all"])
        return {"store": store, "baseline_nats_py": baseline,
                "ratio_baseline_over_store": ratios}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- the run -------------------------------------------------------------------------------


def versions(binary: Path | None) -> dict[str, str]:
    import sqlite3

    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in ("evtools", "msgspec", "polars", "pyarrow", "nats-py", "esdbclient"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    if binary is not None:
        text = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        out["nats-server"] = text.split()[-1] if text else "?"
    return out




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per append")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nats-repeat", type=int, default=1)
    parser.add_argument("--stores", default="memory,sqlite,jsonl,parquet,nats",
                        help="comma-separated subset; add esdb with --esdb")
    parser.add_argument("--esdb", help="an EventStoreDB URI to include (e.g. "
                        "esdb://localhost:2113?tls=false)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    load_at_start = list(os.getloadavg())
    appends = workload(args.events, args.batch, args.seed)
    total = sum(len(e) for _, e in appends)
    wanted = set(args.stores.split(","))
    binary = nats_binary()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as tmpdir:
        tmp = Path(tmpdir)
        if "memory" in wanted:
            results["memory"] = measure("memory", lambda r: MemoryStore(), appends,
                                        args.repeat)
        if "sqlite" in wanted:
            results["sqlite"] = measure(
                "sqlite", lambda r: SqliteStore(tmp / f"bench-{r}.db"), appends, args.repeat)
        if "jsonl" in wanted:
            def reopen_jsonl(store: EventStore) -> EventStore:
                store.close()
                return JsonlStore(store.url)
            results["jsonl"] = measure(
                "jsonl", lambda r: JsonlStore(tmp / f"bench-{r}.jsonl", "w"), appends,
                args.repeat, reopen_jsonl)
        if "parquet" in wanted:
            def reopen_parquet(store: EventStore) -> EventStore:
                store.close()
                return ParquetStore(store.url)
            results["parquet"] = measure(
                "parquet", lambda r: ParquetStore(tmp / f"bench-{r}.parquet", "w"), appends,
                args.repeat, reopen_parquet)
        if "nats" in wanted:
            if binary is None:
                skipped["nats"] = "nats-server binary not found"
            else:
                results["nats"] = bench_nats(binary, appends, args.nats_repeat, tmp)
        if args.esdb:
            def make_esdb(r: int) -> EventStore:
                return open_store(args.esdb)
            results["esdb"] = measure("esdb", make_esdb, workload(
                args.events, args.batch, args.seed + 1 + int(time.time())), 1)
        else:
            skipped["esdb"] = "no --esdb URI given"

    sqlite = results.get("sqlite", {})
    report = {
        "benchmark": "stores",
        "when": datetime.now(UTC).isoformat(),
        "events": total,
        "batch": args.batch,
        "streams": len(appends),
        "seed": args.seed,
        "payload_bytes": payload_stats(appends),
        "method": "median of runs; append into a fresh store per run; reads after one "
                  "warm-up read; read_stream reads every stream in turn; *_per_s is wall "
                  "clock, *_per_cpu_s divides by this process's CPU time (the figure to "
                  "compare on a shared, loaded machine; a server's CPU is not included)",
        "machine": machine(),
        "versions": versions(binary),
        "results": results,
        "skipped": skipped,
        "targets": {
            "sqlite_read_all_ge_300k": sqlite.get("read_all_events_per_s", 0) >= 300_000,
            "sqlite_append_ge_100k": sqlite.get("append_events_per_s", 0) >= 100_000,
            "nats_within_1_5x_of_nats_py": (
                all(results["nats"]["ratio_baseline_over_store"][k] <= 1.5
                    for k in ("append", "read_all"))
                if "nats" in results else None),
        },
    }
    report["machine"]["load_avg_at_start"] = load_at_start
    report["machine"]["load_avg_at_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
