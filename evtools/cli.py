"""The ``evtools`` command (also ``python -m evtools``).

Exit codes: 0 success; 1 the check found problems (``--fail-on-loss``, ``--strict``,
``--fail-on-drift``); 2 bad input or usage, as one line naming file, stream, version and
JSON path where known, never a traceback. The CLI is the only place that reads the
environment and configures logging; every command calls the library and formats the result.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import IO, Any

from . import __version__
from ._files import silence, write_stdout, writing
from .errors import EvtoolsError, MissingDependency, UsageError
from .stores.base import redact_url

log = logging.getLogger("evtools")

DEFAULT_STORE = "sqlite:///data/events.db"
# The embedded default carries a few faults a real store accumulates, so that the report
# shows the checks catching them on the store itself.
DEFAULT_FAULTS = "duplicate=0.002,clock_skew=0.002,invariant=0.001"
DEFAULT_AUDIT_DIALECTS = ("go", "js", "pandas", "polars", "torch")
#: what running and exporting the notebooks takes (each notebook's own needs, torch or
#: memray, it reports itself)
_REPORT_NEEDS = (("papermill", "notebooks"), ("nbconvert", "notebooks"),
                 ("ipykernel", "notebooks"), ("matplotlib", "plots"))
DEFAULT_AGGREGATE = "evtools.orders:Order"
DEFAULT_REGISTRY = "evtools.orders:order_registry"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2. Each parser names
    itself as ``command_parser`` in what it parses, so that the deepest one (the command's)
    is there to report what no parser took."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(command_parser=self)  # after the parents' defaults it copied

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix("evtools").strip()  # "" for the top level
        raise UsageError(f"{command + ': ' if command else ''}{message} "
                         f"(`{self.prog} --help` lists the options)")


def _common_options() -> argparse.ArgumentParser:
    """-v / -q, accepted before or after the command name."""
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more logging (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress display")
    return common


class _Commands(argparse._SubParsersAction):
    """Sub-commands that all inherit the common options (argparse's registered hook)."""

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("parents", [_common_options()])
        return super().add_parser(name, **kwargs)


# A file or a pipe is not a screen: rich lays a table out as wide as its cells (it pads
# lines to the table, not to this width), so nothing is cut short or wrapped.
_UNLIMITED_WIDTH = 100_000


def _console(stderr: bool = False) -> Any:
    """The console for stdout (or stderr): the terminal's width on a terminal, else
    unlimited (``evtools ... | grep`` sees whole stream names and ids)."""
    stream = sys.stderr if stderr else sys.stdout
    # no markup: stream names, paths and messages are data, and "[...]" in them is text
    return _console_class()(stderr=stderr, highlight=False, markup=False,
                            width=None if stream.isatty() else _UNLIMITED_WIDTH)


@cache
def _console_class() -> type[Any]:
    from rich.console import Console

    class PipedConsole(Console):
        """A console whose reader may go away (``evtools ... | head``): what is left to
        print goes nowhere, and the command ends with its own exit status (rich's
        console would exit with 1, which here says problems were found)."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            silence(self.file)

    return PipedConsole


@contextmanager
def _table_output(out: str | None) -> Iterator[Any]:
    """The console a command's tables go to: stdout, or the file ``out`` as plain text (no
    ANSI codes) as wide as the tables."""
    if not out:
        yield _console()
        return
    from rich.console import Console

    with writing(out) as fh:
        yield Console(file=fh, width=_UNLIMITED_WIDTH, color_system=None,
                      force_terminal=False, force_jupyter=False, highlight=False,
                      markup=False)


@contextmanager
def _progress(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr, on a terminal only (a pipe or a log file gets the
    command's own lines, not the bar's frames); yields ``advance(n)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(stderr=True), transient=False) as p:
        task = p.add_task(label, total=total)
        yield lambda n: p.update(task, completed=n)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {value!r}") \
            from None


def _write_output(text: str, out: str | None) -> None:
    text = text if text.endswith("\n") else text + "\n"
    if out:
        with writing(out) as fh:
            fh.write(text)
    else:
        write_stdout(text)  # `evtools ... | head`: the command's exit status stands


def _is_store_url(source: str) -> bool:
    return "://" in source or source == "memory:" or source.startswith("memory:")


# -- generate -------------------------------------------------------------------------------

def cmd_generate(args: argparse.Namespace) -> int:
    from . import datagen
    from .stores import store_files

    if args.events < 1:
        raise UsageError(f"--events must be >= 1, got {args.events}")
    if args.seed < 0:  # refused before anything is created (a negative seed repeats another)
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    faults = datagen.FaultRates.parse(args.faults) if args.faults else datagen.FaultRates()
    target = args.store
    console = _console(stderr=True)
    export = target.lower().endswith((".jsonl", ".ndjson"))  # as open_store reads names
    if export:
        path = Path(target)
        if path.is_file() and path.stat().st_size > 0:
            raise UsageError(f"{target} already exists and holds events; generate never "
                             f"overwrites: remove it or choose another path")
    else:
        bad = faults.delivery_only()
        if bad:  # refused before anything is created
            raise UsageError(
                f"--faults {','.join(bad)}: a store numbers the events it appends itself, "
                f"so a lost or swapped version cannot be stored in {target}; generate a "
                f"JSONL export instead (--store events.jsonl), which keeps versions as "
                f"generated")
    with _removed_on_failure(store_files(target), folders=True):  # new data: its folder too
        if export:
            # an export keeps versions exactly as generated, delivery faults included
            workload = datagen.generate(args.events, seed=args.seed, faults=faults)
            counts = {"events": 0, "streams": 0, "snapshots": 0}
            datagen.export_jsonl(_counted(workload, counts), target)
        else:
            from .stores import open_store

            with open_store(target, create=True) as store:
                _refuse_non_empty(store, target)
                with _progress("generating", args.events, not args.quiet) as advance:
                    written = datagen.write_workload(store, args.events, seed=args.seed,
                                                     faults=faults, progress=advance)
    if export:
        manifest = workload.manifest
        console.print(_wrote(counts["events"], counts["streams"], counts["snapshots"],
                             target))
    else:
        manifest = written.manifest
        console.print(_wrote(written.events - written.snapshots,
                             written.streams - written.snapshot_streams, written.snapshots,
                             target))
    if manifest.faults:
        injected = ", ".join(f"{k} {v}" for k, v in sorted(manifest.counts.items()))
        console.print(f"injected faults: {injected}")
    return EXIT_OK


@contextmanager
def _removed_on_failure(files: list[Path], folders: bool = False) -> Iterator[None]:
    """The body creates a store in ``files`` (a database with its journals, or an export;
    with ``folders``, their missing folders are made first). When it fails (an error,
    Ctrl-C), what it created is removed: a failed command leaves nothing behind, and its
    rerun is not refused as a store that already holds events. A store that was there
    before is left as the store left it."""
    new_files = [] if not files or files[0].exists() else files
    new_folders: list[Path] = []
    try:
        for folder in {p.parent for p in files} if folders else ():
            missing = [f for f in (folder, *folder.parents) if not f.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            new_folders += missing
        yield
    except BaseException:
        for path in new_files:
            with suppress(OSError):
                path.unlink(missing_ok=True)
        for folder in sorted(new_folders, key=lambda f: len(f.parts), reverse=True):
            with suppress(OSError):  # deepest first; one that holds something else stays
                folder.rmdir()
        raise


def _wrote(events: int, streams: int, snapshots: int, target: str) -> str:
    """What generate wrote, counted the same way into a store or a file: the order events
    and their streams, then the snapshot records written beside them."""
    also = f" and {snapshots:,} snapshots" if snapshots else ""
    return f"wrote {events:,} events in {streams:,} streams{also} to {target}"


def _counted(events: Iterable[Any], counts: dict[str, int]) -> Iterator[Any]:
    """``events`` as they pass, counted into ``counts`` as :func:`_wrote` reports them."""
    from .events import is_snapshot_stream

    streams: set[str] = set()
    for raw in events:
        if is_snapshot_stream(raw.stream):
            counts["snapshots"] += 1
        else:
            counts["events"] += 1
            streams.add(raw.stream)
        yield raw
    counts["streams"] = len(streams)


def _refuse_non_empty(store: Any, target: str) -> None:
    """Generated workloads go into empty stores only: appending one to another would mix
    two seeds (or collide on the same stream names)."""
    first = next(iter(store.list_streams()), None)
    if first is not None:
        raise UsageError(f"{target} already holds events; generate writes only into an "
                         f"empty store: remove it or choose another path", stream=first)


def _open_source(source: str) -> Any:
    """A store to read from: a missing database or file is an error, never created."""
    from .stores import open_store

    return open_store(source, mode="r")


# -- audit ----------------------------------------------------------------------------------

def cmd_audit(args: argparse.Namespace) -> int:
    from . import fidelity
    from .dialects import get_dialect

    if args.dialect is None:  # every default dialect this installation can run
        dialects = []
        for name in DEFAULT_AUDIT_DIALECTS:
            try:
                get_dialect(name)
            except MissingDependency as e:
                sys.stderr.write(f"evtools: note: the {name} dialect is left out: "
                                 f"{e.message}\n")
            else:
                dialects.append(name)
    else:
        dialects = _csv(args.dialect)
        for name in dialects:
            get_dialect(name)  # unknown names fail before any reading
    documents: Any
    if _is_store_url(args.source) or _is_parquet(args.source):
        from .events import without_snapshots

        store = _open_source(args.source)  # a Parquet file is an event export
        documents = without_snapshots(store.read_all())  # states, not what consumers read
    else:
        documents = _without_snapshot_documents(fidelity.read_source(args.source))
    result = fidelity.audit(documents, dialects, examples=args.examples)
    if args.format == "table":
        _print_audit_table(result, args.out)
    else:
        render = {"json": result.to_json, "csv": result.to_csv, "html": result.to_html}
        _write_output(render[args.format](), args.out)
    if args.fail_on_loss and result.has_loss:
        return EXIT_PROBLEMS
    return EXIT_OK


def _without_snapshot_documents(documents: Iterable[tuple[Any, bytes]]
                                ) -> Iterator[tuple[Any, bytes]]:
    """The documents of a file less the envelopes of evtools' own snapshots (a JSONL export
    holds them as ``copy`` and ``rehydrate --snapshot-every`` write them), as
    ``without_snapshots`` leaves them out of a store: states, not what consumers read."""
    from .events import SNAPSHOT_TYPE, is_snapshot_stream

    for where, document in documents:
        if not (where.event_type == SNAPSHOT_TYPE and where.stream
                and is_snapshot_stream(where.stream)):
            yield where, document


def _print_audit_table(result: Any, out: str | None) -> None:
    from rich.table import Table

    frame = result.to_frame()
    table = Table(title="What each consumer loses, by JSON path", show_lines=False)
    columns = ["dialect", "path", "values", "at_risk", "value_changed", "text_changed",
               "type_changed", "dropped", "rejected"]
    for col in columns:
        table.add_column(col, justify="right" if col not in ("dialect", "path") else "left")
    table.add_column("example")
    for row in frame.iter_rows(named=True):
        changed = any(row[c] for c in columns[3:])
        if not changed and len(frame) > 40:
            continue  # keep the terminal view to paths where something happens
        examples = row.get("examples") or []
        example = ""
        if examples:
            first = examples[0]
            before, after = (first["before"], first["after"]) if isinstance(first, dict) \
                else first
            example = f"{before} -> {after}"
        table.add_row(*[str(row[c]) for c in columns], example[:60])
    with _table_output(out) as console:
        console.print(table)
        if len(frame) > 40:
            console.print(f"({len(frame)} paths in all; unchanged paths hidden: use "
                          "--format csv or json for every path)")


# -- dialect roundtrip ----------------------------------------------------------------------

def cmd_dialect_roundtrip(args: argparse.Namespace) -> int:
    from .dialects import get_dialect
    from .errors import ConsumerRejected

    dialect = get_dialect(args.dialect)
    out = sys.stdout.buffer
    stream: IO[bytes]
    if args.file and args.file != "-":
        try:
            stream = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from e
    else:
        stream = sys.stdin.buffer
    try:
        for line in _lines(stream):
            try:
                out.write(dialect.roundtrip(line))
            except ConsumerRejected as e:
                out.write(b"ERR\t" + e.reason.encode("utf-8", "surrogateescape"))
            out.write(b"\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    out.flush()
    return EXIT_OK


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Documents, one per line, split on ``\\n`` only (a final newline ends the last one)."""
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


# -- rehydrate ------------------------------------------------------------------------------

def cmd_rehydrate(args: argparse.Namespace) -> int:
    from .rehydration import SNAPSHOT_PREFIX, is_snapshot_stream, rehydrate_store
    from .schema import load_aggregate, load_registry
    from .stores import open_store

    aggregate = load_aggregate(args.aggregate)
    if args.registry is None and args.aggregate != DEFAULT_AGGREGATE:
        raise UsageError(f"--aggregate {args.aggregate} needs --registry MODULE:ATTR, the "
                         f"Registry its events are decoded with")
    registry = load_registry(args.registry or DEFAULT_REGISTRY)
    if args.snapshot_every < 0:
        raise UsageError(f"--snapshot-every must be >= 0 (0: no snapshots), got "
                         f"{args.snapshot_every}")
    if args.stream and is_snapshot_stream(args.stream):
        raise UsageError(f"--stream {args.stream} is a snapshot stream, not an "
                         f"{aggregate.aggregate_type} stream: rehydrate uses the snapshots of a "
                         f"stream by itself; pass --stream "
                         f"{args.stream[len(SNAPSHOT_PREFIX):]}", stream=args.stream)
    mode = "r"
    if args.snapshot_every:
        # snapshots are written into the store they are taken from (and used from there),
        # but a read command never creates: the source must exist and be readable first
        _open_source(args.source).close()
        if _is_parquet(args.source):
            raise UsageError(
                f"--snapshot-every: snapshots cannot be written into a Parquet export "
                f"({args.source}); they go into a SQLite database, a JSONL file, a NATS or "
                f"EventStoreDB store: copy it first (evtools copy {args.source} "
                f"events.db) or drop --snapshot-every")
        mode = "a"
    options: dict[str, Any] = {}
    if args.clock_skew is not None:  # else the library's default tolerance
        options["clock_skew"] = args.clock_skew
    empty = False
    with open_store(args.source, mode=mode) as store:
        result = rehydrate_store(store, registry, aggregate, stream=args.stream,
                                 policy="audit", snapshot_every=args.snapshot_every or None,
                                 verify_snapshot=args.verify_snapshots, **options)
        if not result.streams and not args.stream:
            empty = not any(not is_snapshot_stream(name) for name in store.list_streams())
    if not result.streams and not args.stream:  # say so: an empty table reads as "clean"
        prefix = aggregate.stream_prefix
        why = ": it holds no event streams at all" if empty \
            else "; --aggregate names another aggregate"
        _console(stderr=True).print(
            f"note: {redact_url(args.source)} has no {aggregate.aggregate_type} streams"
            + (f" (names starting {prefix!r})" if prefix is not None else "") + why
            + ("; under --strict, rebuilding nothing is a failure" if args.strict else ""))
    if args.format == "json":
        _write_output(json.dumps(result.to_dict(), indent=2, default=str), args.out)
    else:
        with _table_output(args.out) as console:
            limit = None if args.out else 50  # a file gets every row
            _print_frame(console, result.to_frame(), result.summary(), limit)
            if result.violations:
                _print_frame(console, result.violations_frame(), "Violations", limit)
    # --strict: every violation is reported (audit policy) and the exit code says so
    return EXIT_PROBLEMS if (args.strict and (not result.ok or not result.streams)) \
        else EXIT_OK


def _is_parquet(source: str) -> bool:
    return not _is_store_url(source) and source.lower().endswith(".parquet")


def _print_frame(console: Any, frame: Any, title: str, limit: int | None = 50) -> None:
    """``frame`` as a table on ``console``, its first ``limit`` rows (``None``: all)."""
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    rows = frame if limit is None else frame.head(limit)
    for row in rows.iter_rows():
        table.add_row(*[_cell(v) for v in row])
    console.print(table)
    if limit is not None and len(frame) > limit:
        console.print(f"... {len(frame) - limit} more rows (use --format json, or --out "
                      f"FILE for every row)")


def _seconds(value: str) -> timedelta:
    """``--clock-skew``: a number of seconds >= 0, as a timedelta."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (0 <= seconds < math.inf):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{value} seconds is more than a timedelta holds "
                                         f"({timedelta.max.days:,} days)") from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return number


# -- copy -----------------------------------------------------------------------------------

def cmd_copy(args: argparse.Namespace) -> int:
    from .stores import copy, open_store, store_files

    # a destination this copy created is removed when the copy fails: a failed copy
    # leaves nothing behind (an existing destination is left as the store left it)
    with _removed_on_failure(store_files(args.dest)), \
            open_store(args.source, mode="r") as source, \
            open_store(args.dest, create=True) as dest, \
            _progress("copying", None, not args.quiet) as advance:
        count = copy(source, dest, progress=advance)
    _console(stderr=True).print(f"copied {count:,} events from {redact_url(args.source)} to "
                                f"{redact_url(args.dest)}")
    return EXIT_OK


# -- bench ----------------------------------------------------------------------------------

#: the options of each benchmark (the others are refused: ignored, they would mislead)
_BENCH_OPTIONS = {"rehydrate": {"events": "--events", "artefacts": "--artefacts"},
                  "inference": {"device": "--device", "batch_sizes": "--batch-sizes",
                                "n_orders": "--n-orders", "dtype": "--dtype",
                                "threads": "--threads"}}


def cmd_bench(args: argparse.Namespace) -> int:
    other = next(what for what in _BENCH_OPTIONS if what != args.what)
    given = [flag for dest, flag in _BENCH_OPTIONS[other].items()
             if getattr(args, dest) is not None]
    if given:
        raise UsageError(f"{' and '.join(given)}: only for 'evtools bench {other}'")
    if args.what == "inference":
        from .inference import run_inference_benchmark

        n_orders = _at_least_one(args.n_orders, "--n-orders", 5000)
        result: Any = run_inference_benchmark(  # no --batch-sizes: the defaults that fit
            device=args.device or "auto", batch_sizes=args.batch_sizes, seed=args.seed,
            n_orders=n_orders, dtype=args.dtype or "float32", num_threads=args.threads)
    elif args.what == "rehydrate":
        from .profiling import run_rehydration_suite

        events = _at_least_one(args.events, "--events", 100_000)
        result = run_rehydration_suite(n_events=events, seed=args.seed,
                                       out_dir=args.artefacts)
    else:  # pragma: no cover - argparse restricts the choices
        raise UsageError(f"unknown benchmark {args.what!r}")
    if args.format == "json":
        _write_output(json.dumps(result.to_dict(), indent=2, default=str), args.out)
    else:
        frame = result.to_frame(full=False) if args.what == "rehydrate" else result.to_frame()
        with _table_output(args.out) as console:
            _print_frame(console, _polars(frame), f"evtools bench {args.what}",
                         None if args.out else 50)
    return EXIT_OK


def _at_least_one(value: int | None, flag: str, default: int) -> int:
    if value is None:
        return default
    if value < 1:
        raise UsageError(f"{flag} must be 1 or more, not {value}")
    return value


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return "" if value is None else str(value)


def _polars(frame: Any) -> Any:
    if hasattr(frame, "iter_rows"):
        return frame
    import polars as pl

    return pl.from_pandas(frame)


# -- profile --------------------------------------------------------------------------------

def cmd_profile(args: argparse.Namespace) -> int:
    from .profiling import CPU_PROFILE_EVENTS, profile_rehydration

    given = [flag for flag, value in (("--rate", args.rate), ("--repeat", args.repeat))
             if value is not None]
    if args.kind == "memory" and given:
        raise UsageError(f"{' and '.join(given)}: only for 'evtools profile cpu' (memray "
                         f"records every allocation of one run; there is nothing to "
                         f"sample or repeat)")
    options: dict[str, Any] = {}
    if args.kind == "cpu":  # repeat None: profiling runs enough for CPU_PROFILE_EVENTS
        options = {"rate": args.rate or 100, "repeat": args.repeat}
    result = profile_rehydration(args.source, kind=args.kind, path=args.path,
                                 out_dir=args.out, events=args.events, **options)
    details = result.details
    runs = details.get("repeat", 1) if args.kind == "cpu" else 1
    asked, profiled = details.get("events_requested"), details.get("events")
    if not args.quiet and asked is not None and profiled is not None and profiled < asked:
        _console(stderr=True).print(
            f"note: {redact_url(args.source)} holds {profiled:,} events in its order "
            f"streams, fewer than the {asked:,} asked: all of them were profiled")
    if not args.quiet and args.repeat is None and runs > 1:
        rebuilt = f"{runs * profiled:,}" if profiled else f"about {CPU_PROFILE_EVENTS:,}"
        _console(stderr=True).print(
            f"profiled {runs:,} runs of the path ({rebuilt} events in all; --repeat to "
            f"choose)")
    _write_output(json.dumps(result.to_dict(), indent=2, default=str), None)
    return EXIT_OK


# -- report ---------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report, parse_parameters, select_notebooks

    # a bad --only or -p fails before any work
    overrides = parse_parameters(args.param or [], select_notebooks(args.notebooks, args.only))
    for module, extra in _REPORT_NEEDS:  # before the default data is generated
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(module, extra)
    source = args.source or os.environ.get("EVTOOLS_SOURCE") or DEFAULT_STORE
    if source == DEFAULT_STORE:
        _ensure_default_store(args.quick, args.seed, not args.quiet)
    else:  # the notebooks read it: a missing or unreadable source fails here, not in one
        _open_source(source).close()
    parameters: dict[str, Any] = {"source": _absolute_source(source), "seed": args.seed,
                                  "quick": args.quick}
    console = _console(stderr=True)
    if not args.quiet:
        from rich.status import Status
        from rich.text import Text

        status = Status("", console=console)

        def progress(step: str, state: str) -> None:
            if state == "start":
                status.update(f"running notebook {step}")
                status.start()
            else:
                status.stop()
                mark = ("ok", "green") if state == "done" else ("FAILED", "red")
                console.print(Text.assemble(f"{step}: ", mark))
    else:
        def progress(step: str, state: str) -> None:
            return None

    result = build_report(args.out, notebooks_dir=args.notebooks, parameters=parameters,
                          overrides=overrides, only=args.only, hide_input=args.hide_input,
                          progress=progress)
    console.print(f"report: {result.index}")
    for run in result.failures:
        error = run.error or ""
        if error.startswith("MissingDependency: "):  # not a problem the report found
            raise UsageError(f"notebook {run.name} needs what is not installed: "
                             f"{error.removeprefix('MissingDependency: ')}")
        console.print(f"{run.name} failed at cell In [{run.cell}]: {error}", style="red")
    return EXIT_OK if result.ok else EXIT_PROBLEMS


def _absolute_source(source: str) -> str:
    if source.startswith("sqlite:///") and not source.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(source[len("sqlite:///"):]).resolve())
    if not _is_store_url(source):
        return str(Path(source).resolve())
    return source


def _ensure_default_store(quick: bool, seed: int, show: bool) -> None:
    path = Path(DEFAULT_STORE[len("sqlite:///"):])
    if path.exists():
        return
    from . import datagen
    from .stores import open_store

    path.parent.mkdir(parents=True, exist_ok=True)
    events = 20_000 if quick else 200_000
    _console(stderr=True).print(f"creating the embedded default data: {path} "
                                f"({events:,} events, seed {seed}, faults {DEFAULT_FAULTS})")
    with open_store(DEFAULT_STORE, create=True) as store, \
            _progress("generating", events, show) as advance:
        datagen.write_workload(store, events, seed=seed, progress=advance,
                               faults=datagen.FaultRates.parse(DEFAULT_FAULTS))


# -- the parser -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from .profiling import CPU_PROFILE_EVENTS  # light: profiling imports its tools lazily

    parser = _Parser(prog="evtools", description=(
        "Reproduce, audit and fix the state untyped consumers lose from event streams."))
    parser.add_argument("--version", action="version", version=f"evtools {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.register("action", "parsers", _Commands)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("generate", help="write a deterministic synthetic order workload")
    p.add_argument("--store", default=DEFAULT_STORE,
                   help=f"store URL or .jsonl export (default {DEFAULT_STORE})")
    p.add_argument("--events", type=int, default=100_000,
                   help="order events to write (default 100000)")
    p.add_argument("--seed", type=int, default=7,
                   help="the same seed writes the same events (default 7)")
    p.add_argument("--faults", default="",
                   help="injected fault rates, e.g. duplicate=0.005,clock_skew=0.01; gap and "
                        "reorder (a lost or swapped version) go only into a .jsonl export, "
                        "which keeps versions as generated: --store events.jsonl --faults "
                        "gap=0.01,reorder=0.01")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("audit", help="what each consumer loses, path by path")
    p.add_argument("source", help="a .json/.jsonl file, a .parquet export or a store URL")
    p.add_argument("--dialect", default=None,
                   help=f"comma-separated dialects (default: {','.join(DEFAULT_AUDIT_DIALECTS)}"
                        f", those whose libraries are installed)")
    p.add_argument("--format", choices=["table", "json", "csv", "html"], default="table")
    p.add_argument("--out", help="write the output to this file (a table as plain text)")
    p.add_argument("--examples", type=int, default=3, help="examples per path (default 3)")
    p.add_argument("--fail-on-loss", action="store_true", help="exit 1 when anything changed")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("dialect", help="run one document at a time through a dialect")
    p.register("action", "parsers", _Commands)
    dsub = p.add_subparsers(dest="dialect_command", required=True, parser_class=_Parser)
    d = dsub.add_parser("roundtrip", help="JSON lines in, what the consumer writes back out")
    d.add_argument("--dialect", required=True, help="go or js (or any dialect)")
    d.add_argument("file", nargs="?", help="input file (default: stdin)")
    d.set_defaults(func=cmd_dialect_roundtrip)

    p = sub.add_parser("rehydrate", help="rebuild aggregates and report violations")
    p.add_argument("source", help="a store URL or export file")
    p.add_argument("--stream", help="only this stream")
    p.add_argument("--strict", action="store_true", help="exit 1 on any violation")
    p.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="after rebuilding a clean stream that has advanced N or more "
                        "versions past its latest snapshot (or has none), write one snapshot "
                        "of it at its head into SOURCE (which is then opened for appending; "
                        "a SQLite, JSONL, NATS or EventStoreDB store, not Parquet); the next "
                        "run starts from it. 0 (default): none")
    p.add_argument("--verify-snapshots", action="store_true",
                   help="check each stream's latest snapshot instead of starting from it: "
                        "replay the stream from version 0 and report a snapshot whose state "
                        "differs from the replay's at its version (snapshot_conflict). The "
                        "snapshots then save nothing: every stream is read and applied whole, "
                        "as without snapshots")
    p.add_argument("--clock-skew", type=_seconds, default=None, metavar="SECONDS",
                   help="how far an event's time may go back from the previous event's "
                        "before it is a clock_skew violation (default 5)")
    p.add_argument("--aggregate", default=DEFAULT_AGGREGATE, metavar="MODULE:CLASS",
                   help="your Aggregate subclass (module:Class or path/to/file.py:Class; "
                        f"default {DEFAULT_AGGREGATE}, the example orders); it rebuilds the "
                        "streams whose names start with its stream_prefix")
    p.add_argument("--registry", default=None, metavar="MODULE:ATTR",
                   help="the Registry of its events (module:attr, or a function returning "
                        f"one; default with the default aggregate: {DEFAULT_REGISTRY})")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--out", help="write the output (table as plain text, or JSON) to this "
                                 "file; a table in a file has every row")
    p.set_defaults(func=cmd_rehydrate)

    p = sub.add_parser("copy", help="copy every stream from one store or file to another")
    p.add_argument("source")
    p.add_argument("dest")
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("bench", help="benchmarks, results as a table or JSON (--format json)")
    p.add_argument("what", choices=["rehydrate", "inference"])
    p.add_argument("--events", type=int,
                   help="rehydrate: events in the workload (default 100000)")
    p.add_argument("--device",
                   help="inference: auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="inference: comma-separated batch sizes (default 1,8,64,512, "
                        "those up to --n-orders)")
    p.add_argument("--n-orders", type=int,
                   help="inference: orders to score (default 5000)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="inference: model dtype, float32 (default); the half types are "
                        "meant for CUDA (on a CPU they run, slowly)")
    p.add_argument("--threads", type=int, default=None,
                   help="inference: torch CPU threads (default 1 on CPU; 0 = torch default)")
    p.add_argument("--seed", type=int, default=7,
                   help="seed of the generated events (and of the inference model; "
                        "default 7)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--out", help="write the results (table as plain text, or JSON) to "
                                 "this file")
    p.add_argument("--artefacts", help="rehydrate: keep the workload and flame graphs here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "profile", help="memray / py-spy profiles of rehydration",
        description="Profile rehydrating SOURCE along one path: memory with memray (peak, "
                    "allocations and bytes per event, the allocation sites at the peak) or "
                    "CPU with py-spy (self and total time per function). The figures go to "
                    "stdout as JSON; the files into --out: for memory, PATH.memray.bin "
                    "(memray's capture: 'memray stats', 'memray flamegraph') and "
                    "PATH.flamegraph.html; for cpu, PATH.speedscope.json (speedscope.app) "
                    "and PATH.svg (a flame graph).")
    p.add_argument("kind", choices=["memory", "cpu"])
    p.add_argument("source", help="a store URL or export file")
    p.add_argument("--path", default="typed",
                   help="a rehydration path of the profiling suite: typed (default), naive, "
                        "typed-snapshots, typed-materialized, naive-materialized, view-lazy..."
                        " (aliases: streaming = typed, materialized = typed-materialized)")
    p.add_argument("--events", type=int,
                   help="whole order streams, in store order, until at least N events "
                        "(default: all)")
    p.add_argument("--rate", type=_positive, metavar="HZ",
                   help="cpu: py-spy samples per second (default 100)")
    p.add_argument("--repeat", type=_positive, metavar="R",
                   help="cpu: run the path R times in the sampled process (default: enough "
                        f"runs for about {CPU_PROFILE_EVENTS:,} events, so that a small "
                        "store's profile shows rehydration rather than Python start-up)")
    p.add_argument("--out", default="profiles", help="folder for the profile files "
                                                     "(default profiles)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "report", help="execute the notebooks and export HTML",
        description="Execute the report's notebooks on SOURCE and write into the --out "
                    "folder: index.html (the headline figures, with links), one NN_name.html "
                    "page per notebook, executed/ (the executed notebooks) and results/ (the "
                    "figures as JSON, flame graphs and profiles the pages link to). The pages "
                    "open from disk with no network; send the folder whole.")
    p.add_argument("--source", help=f"store URL or file (default {DEFAULT_STORE}, created "
                                    "when missing)")
    p.add_argument("--out", default="reports", metavar="DIR",
                   help="the report folder (default reports)")
    p.add_argument("--notebooks", default="notebooks", metavar="DIR",
                   help="the folder of the report's notebooks, NN_name.ipynb (default "
                        "notebooks, as in a clone of the repository)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (as CI runs it): the notebooks cap their sizes, "
                        "including those given with -p")
    p.add_argument("--seed", type=int, default=7,
                   help="seed of the generated default store and of the notebooks' "
                        "workloads (default 7)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="set a parameter of the notebooks that declare it, such as "
                        "n_events=100000 (01, 02, 03, 05) or n_orders=5000 (04); repeat "
                        "for more. The value has the type of the notebook's default")
    p.add_argument("--only", type=_csv, help="only notebooks whose name contains these")
    p.add_argument("--hide-input", action="store_true", help="hide code cells in the pages")
    p.set_defaults(func=cmd_report)

    from .schema import register_cli

    register_cli(sub)
    return parser


class _LogFormat(logging.Formatter):
    """Warnings as the command's own lines (``evtools: warning: ...``); with ``-v``, the
    module each message comes from."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"evtools: {record.levelname.lower()}: {text}"
        return f"{record.levelname} {record.name}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's parser, whose --help lists its options
            args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LogFormat())
        logging.basicConfig(
            level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
            handlers=[handler])
        code: int = args.func(args)
        return code
    except EvtoolsError as e:
        sys.stderr.write(f"evtools: error: {e}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # `evtools ... | head`, from a write not through the above
        silence()
        return EXIT_OK
    except OSError as e:  # a path the user gave: missing folder, a folder for a file...
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"evtools: error: {where}{e.strerror or e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("evtools: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
