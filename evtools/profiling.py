"""Profiling: memray for memory, py-spy for CPU, and the rehydration before/after suite.

Memory (memray) profiles a callable in this process::

    from evtools.profiling import profile_memory

    prof = profile_memory(rebuild, events_list, events=len(events_list), out_dir="profiles")
    prof.peak_bytes, prof.allocations_per_event, prof.bytes_per_event
    prof.to_frame()          # allocation sites at the high-water mark: function, file, line,
                             # size, count (largest first)
    prof.timeline            # memory over time: t_s, heap_bytes, rss_bytes
    prof.flamegraph          # memray's HTML flame graph of the high-water mark (no network)

It runs ``fn`` under :class:`memray.Tracker`, then reads the capture back with memray's
reader (:class:`memray.FileReader`): the peak comes from the capture's metadata, the
sites from ``get_high_watermark_allocation_records``, the time series from
``get_memory_snapshots`` and the totals from every allocation record. Python's own
allocator (pymalloc) is traced by default (``python_allocators=True``), so every object
counts, not only the arenas pymalloc asks the system for: that is what makes
"allocations per event" meaningful; the profiled code runs three to four times slower.
Memray only sees allocations made while it tracks, so the peak is memory *above the
baseline* the process had when ``fn`` started. Reading a capture back takes about a
second per five million allocations per pass (three passes); ``count_allocations=False``
lets memray aggregate in the process instead (no totals, nothing slow to read).

In a notebook memray's own magic does the same for a whole cell and shows the flame graph
inline (``--leaks``, ``--temporal`` and ``--native`` work there too)::

    %load_ext memray

    %%memray_flamegraph --trace-python-allocators
    rebuild(events_list)

CPU (py-spy) samples a subprocess it starts, so the profile is of a real process and
works the same from the CLI and from a notebook::

    from evtools.profiling import profile_cpu

    prof = profile_cpu("from mypkg import main; main()", out_dir="profiles", rate=200)
    prof.to_frame()          # function, file, line, self_s, total_s, self_pct, total_pct
    prof.speedscope          # py-spy's speedscope JSON (open at https://www.speedscope.app)
    prof.flamegraph          # an SVG flame graph drawn from the same samples

py-spy reads the child's memory with ``ptrace``/``process_vm_readv``. Where that is not
permitted (a container without ``CAP_SYS_PTRACE``, ``kernel.yama.ptrace_scope`` of 2 or
3) :func:`profile_cpu` raises :class:`~evtools.errors.ProfilingError` saying what to
change; :func:`py_spy_status` checks beforehand.

Rehydration: :func:`profile_rehydration` profiles one rehydration path (:data:`PATHS`)
over the order streams of a store (``evtools profile memory|cpu SOURCE --path typed``) and
:func:`run_rehydration_suite` runs the before/after suite (``evtools bench rehydrate``):
every path over the same generated workload, time without a profiler and memory under
memray, with ratios against the naive path of the same run and the before/after pair of
each optimisation (:data:`OPTIMISATIONS`). ``python -m evtools.profiling _run SOURCE
--path P`` runs one path in a process of its own, which is what the CPU profile samples.

memray, py-spy (``pip install 'evtools[profile]'``) and eventsourcing (``[bench]``) are
optional; nothing here imports them, nor the rehydration modules the suite drives, until
a profile runs.
"""

from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import json
import logging
import math
import operator
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._checks import count as _count
from ._checks import seconds as _seconds
from .errors import EvtoolsError, MissingDependency, ProfilingError, UsageError

if TYPE_CHECKING:
    import pandas as pd

    from .aggregate import Aggregate

__all__ = [
    "CPU_PROFILE_EVENTS",
    "OPTIMISATIONS",
    "PATHS",
    "PATH_ALIASES",
    "UNFOLDED_PATHS",
    "CpuProfile",
    "MemoryProfile",
    "Optimisation",
    "PathResult",
    "SuiteResult",
    "profile_cpu",
    "profile_memory",
    "profile_rehydration",
    "py_spy_status",
    "read_capture",
    "resolve_path",
    "run_rehydration_suite",
    "speedscope_table",
    "write_flamegraph_svg",
]

log = logging.getLogger(__name__)

_MiB = 1024 * 1024

#: The advice a ptrace failure carries (py-spy cannot read the child's memory).
PTRACE_ADVICE = (
    "py-spy could not attach to the profiled process: ptrace is not permitted here. "
    "Run the container with --cap-add SYS_PTRACE, or set kernel.yama.ptrace_scope=0 "
    "(sysctl -w kernel.yama.ptrace_scope=0), or run as root"
)
_PTRACE_MARKERS = (
    "permission denied",
    "operation not permitted",
    "os error 1)",
    "os error 13)",
    "ptrace",
    "process_vm_readv",
    "cap_sys_ptrace",
)


# -- helpers ---------------------------------------------------------------------------------

def _import_memray() -> Any:
    try:
        import memray
    except ImportError as e:
        raise MissingDependency("memray", "profile") from e
    return memray


def _pandas() -> Any:
    import pandas as pd

    return pd


def _out_dir(out_dir: str | os.PathLike[str] | None, what: str) -> Path:
    """``out_dir`` created, or a fresh temporary folder (logged) when it is ``None``."""
    if out_dir is None:
        path = Path(tempfile.mkdtemp(prefix=f"evtools-{what}-"))
        log.info("writing %s profile artefacts to %s", what, path)
        return path
    path = Path(out_dir).resolve()  # py-spy reports absolute paths: compare like with like
    if path.exists() and not path.is_dir():
        raise UsageError(f"out_dir {out_dir} is a file, not a folder", file=str(out_dir))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create out_dir {out_dir}: {e.strerror or e}",
                         file=str(out_dir)) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"out_dir {out_dir} is not writable", file=str(out_dir))
    try:  # os.access says yes to root everywhere: /proc, /sys and read-only mounts too
        fd, probe = tempfile.mkstemp(prefix=".evtools-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"out_dir {out_dir} is not writable: {e.strerror or e}",
                         file=str(out_dir)) from e
    return path


def _unwritable(folder: Path, error: OSError) -> UsageError:
    """The error for a file of ``folder`` that could not be written or replaced."""
    return UsageError(f"cannot write to out_dir {folder}: {error.strerror or error}",
                      file=str(folder))


def _clear(folder: Path, names: Iterable[str]) -> None:
    """Remove the artefacts ``names`` of an earlier run from ``folder``: a run that fails
    must not leave its own files beside those of the run before."""
    for name in names:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError as e:
            raise _unwritable(folder, e) from e


def _event_count(events: Any) -> int | None:
    """``events`` as an ``int`` (a numpy integer too), or a :class:`UsageError`: per-event
    figures need a positive count of events."""
    if events is None:
        return None
    try:
        count = operator.index(events) if not isinstance(events, bool) else None
    except TypeError:
        count = None
    if count is None or count < 1:
        raise UsageError(f"events must be a positive int (the events the call processes), "
                         f"not {events!r}; leave it out (None) for no per-event figures")
    return count


#: py-spy's ``--rate`` (samples per second) as evtools accepts it: py-spy itself takes any
#: 64-bit count (0 makes it wait forever), but it cannot sample a process more than a few
#: thousand times a second; more than one sample a microsecond is certainly a mistake.
MAX_RATE = 1_000_000
#: memray's ``memory_interval_ms`` is a C unsigned int.
_MAX_INTERVAL_MS = 2**32 - 1


def _rate(rate: Any) -> int:
    return _count(rate, "rate (py-spy samples per second)", 1, MAX_RATE)


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-") or "profile"


def _per(value: float | int, events: int | None) -> float | None:
    return value / events if events else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # NaN and inf are not JSON
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def _json_safe(value: Any) -> Any:
    """``value`` with every float that JSON cannot hold (NaN, infinities) made ``None``,
    in lists and dicts too."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) or (hasattr(value, "item") and callable(value.item)):
        return _jsonable(_jsonable(value))  # a numpy float becomes a float, then is checked
    return value


def _records(frame: pd.DataFrame, top: int | None) -> list[dict[str, Any]]:
    rows = frame if top is None else frame.head(top)
    return [{k: _jsonable(v) for k, v in row.items()} for row in rows.to_dict("records")]


# -- memory ----------------------------------------------------------------------------------

SITE_COLUMNS = ["function", "file", "line", "size", "count"]
TIMELINE_COLUMNS = ["t_s", "heap_bytes", "rss_bytes"]


class _PerEvent:
    """The per-event figures of a result with allocation counts and an event count."""

    allocations: int | None
    allocated_bytes: int | None
    events: int | None

    @property
    def allocations_per_event(self) -> float | None:
        return None if self.allocations is None else _per(self.allocations, self.events)

    @property
    def bytes_per_event(self) -> float | None:
        """Bytes allocated per event (all allocations, freed or not)."""
        return None if self.allocated_bytes is None else _per(self.allocated_bytes,
                                                                self.events)


@dataclasses.dataclass
class MemoryProfile(_PerEvent):
    """What memray saw while a callable ran.

    ``peak_bytes`` is the largest heap memray tracked (memory above the baseline the
    process had when the call started); ``allocations`` and ``allocated_bytes`` count every
    allocation made during the call, whether freed or not (``None`` when the capture was
    aggregated, ``count_allocations=False``). ``events`` is the number of
    events the call processed, when the caller said so, and enables the per-event figures.
    ``sites`` holds the allocation sites alive at the high-water mark (largest first),
    ``allocators`` the lines that allocated most often over the whole call (function, file,
    line, count; empty where memray's statistics are not available), ``timeline`` the
    tracked heap and the RSS over time. ``result`` is what the callable returned (not
    serialised). ``details`` is what the caller adds about the run, serialised as it is
    (:func:`profile_rehydration`: the path that ran and how the events were chosen).
    """

    label: str
    peak_bytes: int
    allocations: int | None
    allocated_bytes: int | None
    seconds: float
    events: int | None
    capture: Path | None
    flamegraph: Path | None
    sites: pd.DataFrame = dataclasses.field(repr=False)
    timeline: pd.DataFrame = dataclasses.field(repr=False)
    allocators: pd.DataFrame | None = dataclasses.field(default=None, repr=False)
    native: bool = False
    python_allocators: bool = True
    result: Any = dataclasses.field(default=None, repr=False, compare=False)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / _MiB


    @property
    def peak_bytes_per_event(self) -> float | None:
        return _per(self.peak_bytes, self.events)

    def to_frame(self) -> pd.DataFrame:
        """The allocation sites at the high-water mark: function, file, line, size, count."""
        return self.sites

    def to_dict(self, *, top: int = 10) -> dict[str, Any]:
        """A JSON-able summary; the ``top`` largest sites; the timeline as two lists."""
        return _json_safe({
            "kind": "memory",
            "label": self.label,
            "events": self.events,
            "seconds": self.seconds,
            "peak_bytes": self.peak_bytes,
            "peak_mib": self.peak_mib,
            "allocations": self.allocations,
            "allocated_bytes": self.allocated_bytes,
            "allocations_per_event": self.allocations_per_event,
            "bytes_per_event": self.bytes_per_event,
            "peak_bytes_per_event": self.peak_bytes_per_event,
            "native": self.native,
            "python_allocators": self.python_allocators,
            "capture": str(self.capture) if self.capture else None,
            "flamegraph": str(self.flamegraph) if self.flamegraph else None,
            "sites": _records(self.sites, top),
            "allocators": [] if self.allocators is None else _records(self.allocators, top),
            "timeline": {"t_s": [float(t) for t in self.timeline["t_s"]],
                         "heap_bytes": [int(b) for b in self.timeline["heap_bytes"]]},
            "details": self.details,
        })


def profile_memory(fn: Callable[..., Any], /, *args: Any, events: int | None = None,
                   out_dir: str | os.PathLike[str] | None = None, label: str | None = None,
                   native: bool = False, python_allocators: bool = True,
                   interval_ms: int = 10, flamegraph: bool = True,
                   count_allocations: bool = True, keep_capture: bool = True,
                   **kwargs: Any) -> MemoryProfile:
    """Run ``fn(*args, **kwargs)`` under memray and return what it allocated.

    ``events``: how many events the call processes (for the per-event figures).
    ``out_dir``: where the capture (``<label>.memray.bin``) and the flame graph
    (``<label>.flamegraph.html``) go, replacing those of an earlier run with the same
    label (both are removed before this one starts); a new temporary folder when ``None``.
    ``native``: also record C/C++ frames (slower; needs debug symbols to be useful).
    ``python_allocators``: trace pymalloc, so every Python object counts (default).
    ``interval_ms``: how often memray samples the heap and RSS for the timeline.
    ``count_allocations``: record every allocation, for the totals (default). ``False``
    lets memray aggregate in the process instead: a small capture read in no time, with the
    peak, the sites, the timeline and the flame graph but no totals; use it for long runs
    (reading a full capture takes about a second per five million allocations, three
    times over).
    ``keep_capture``: keep the raw capture file (it can be large) once it has been read.

    Keyword arguments not listed here go to ``fn``; wrap ``fn`` in
    :func:`functools.partial` to pass one of the names above to it.
    """
    if not callable(fn):
        raise UsageError(f"profile_memory profiles a callable, not {type(fn).__name__}")
    events = _event_count(events)
    interval_ms = _count(interval_ms, "interval_ms", 1, _MAX_INTERVAL_MS)
    memray = _import_memray()
    folder = _out_dir(out_dir, "memory")
    name = _slug(label or str(getattr(fn, "__name__", "call")))
    capture = folder / f"{name}.memray.bin"
    # memray refuses to overwrite its capture, and an earlier run's flame graph would pass
    # for this one's (or stay beside its capture, should this one fail)
    _clear(folder, (capture.name, f"{name}.flamegraph.html"))
    gc.collect()  # garbage from before the call must not be freed inside it
    try:
        file_format = (memray.FileFormat.ALL_ALLOCATIONS if count_allocations
                       else memray.FileFormat.AGGREGATED_ALLOCATIONS)
        tracker = memray.Tracker(capture, native_traces=native,
                                 trace_python_allocators=python_allocators,
                                 memory_interval_ms=interval_ms, follow_fork=False,
                                 file_format=file_format)
    except (OSError, ValueError) as e:
        raise ProfilingError(f"memray could not start: {e}", file=str(capture)) from e
    started = time.perf_counter()
    try:
        with tracker:
            result = fn(*args, **kwargs)
    except RuntimeError as e:
        if "Tracker" in str(e):  # another tracker (a %%memray cell) is already active
            raise ProfilingError(f"memray could not start: {e}") from e
        raise
    seconds = time.perf_counter() - started
    profile = read_capture(capture, label=name, events=events, seconds=seconds,
                           flamegraph=folder / f"{name}.flamegraph.html" if flamegraph
                           else None)
    profile.result = result
    if not keep_capture:
        capture.unlink(missing_ok=True)
        profile.capture = None
    log.info("memory profile %s: peak %.1f MiB, %s allocations (%s)", name, profile.peak_mib,
             "?" if profile.allocations is None else f"{profile.allocations:,}", folder)
    return profile


def read_capture(capture: str | os.PathLike[str], *, label: str | None = None,
                 events: int | None = None, seconds: float | None = None,
                 flamegraph: str | os.PathLike[str] | None = None) -> MemoryProfile:
    """Read a memray capture file (from :func:`profile_memory` or ``memray run``).

    ``events``: how many events the captured run processed (a positive int, for the
    per-event figures; ``None``: none). ``seconds``: how long it ran (``None``: from the
    capture, the time between the tracker's start and its end). ``flamegraph``: where to
    write memray's HTML flame graph of the high-water mark (``None``: none).
    """
    events = _event_count(events)
    if seconds is not None:
        seconds = _seconds(seconds, "seconds")
    memray = _import_memray()
    path = Path(capture)
    try:
        reader = memray.FileReader(os.fspath(path))
    except (OSError, ValueError) as e:
        raise ProfilingError(f"cannot read the memray capture: {e}", file=str(path)) from e
    with reader:
        meta = reader.metadata
        snapshots = list(reader.get_memory_snapshots())
        # one pass over the capture serves the sites and the flame graph
        high = list(reader.get_high_watermark_allocation_records(merge_threads=True))
        sites = _sites(high, native=meta.has_native_traces)
        allocations: int | None = None
        allocated: int | None = None
        allocators = None
        if int(meta.file_format) == int(memray.FileFormat.ALL_ALLOCATIONS):
            allocations, allocated, allocators = _totals(reader, path)
        html = None
        if flamegraph is not None:
            html = _memray_flamegraph(reader, path, Path(flamegraph), snapshots, high)
    if seconds is None:
        seconds = _capture_seconds(meta)
    return MemoryProfile(
        label=label or path.stem, peak_bytes=int(meta.peak_memory), allocations=allocations,
        allocated_bytes=allocated, seconds=seconds, events=events, capture=path,
        flamegraph=html, sites=sites, timeline=_timeline(snapshots, meta.start_time),
        allocators=allocators,
        native=bool(meta.has_native_traces),
        python_allocators=bool(meta.trace_python_allocators))


def _capture_seconds(meta: Any) -> float:
    """How long the tracker of a capture ran, from its metadata (0.0 when it says nothing
    usable)."""
    try:
        elapsed = (meta.end_time - meta.start_time).total_seconds()
    except (AttributeError, TypeError, ValueError, OverflowError):
        return 0.0
    return elapsed if math.isfinite(elapsed) and elapsed >= 0 else 0.0


def _sites(records: Iterable[Any], *, native: bool) -> pd.DataFrame:
    """Group high-water-mark records by the frame that allocated (innermost first)."""
    pd = _pandas()
    grouped: dict[tuple[str, str, int], list[int]] = {}
    for rec in records:
        stack = rec.hybrid_stack_trace(max_stacks=1) if native else rec.stack_trace(
            max_stacks=1)
        function, file, line = stack[0] if stack else ("<unknown>", "", 0)
        acc = grouped.setdefault((str(function), str(file), int(line)), [0, 0])
        acc[0] += int(rec.size)
        acc[1] += int(rec.n_allocations)
    rows = [(f, file, int(line), size, count)
            for (f, file, line), (size, count) in grouped.items()]
    frame = pd.DataFrame(rows, columns=SITE_COLUMNS)
    return frame.sort_values("size", ascending=False, ignore_index=True)


ALLOCATOR_COLUMNS = ["function", "file", "line", "count"]


def _totals(reader: Any, path: Path) -> tuple[int, int, pd.DataFrame]:
    """Number and bytes of every allocation in the capture (frees excluded), and the lines
    that allocated most often."""
    pd = _pandas()
    try:
        # memray's own statistics pass (what ``memray stats`` prints): two to three times
        # faster than iterating the records from Python, and it ranks the allocating lines
        from memray._memray import compute_statistics

        stats = compute_statistics(os.fspath(path), num_largest=20)
        top = pd.DataFrame([(str(f), str(file), int(line), int(count))
                            for (f, file, line), count in stats.top_locations_by_count],
                           columns=ALLOCATOR_COLUMNS)
        return int(stats.total_num_allocations), int(stats.total_memory_allocated), top
    except (ImportError, AttributeError, NotImplementedError, TypeError, ValueError) as e:
        log.debug("memray statistics unavailable (%s); counting records", e)
    memray = _import_memray()
    frees = {memray.AllocatorType.FREE, memray.AllocatorType.MUNMAP,
             memray.AllocatorType.PYMALLOC_FREE}
    count = size = 0
    for rec in reader.get_allocation_records():
        if rec.allocator not in frees:
            count += rec.n_allocations
            size += rec.size
    return count, size, pd.DataFrame([], columns=ALLOCATOR_COLUMNS)


def _timeline(snapshots: Sequence[Any], start: datetime) -> pd.DataFrame:
    """Seconds since the tracker started (snapshot times are epoch milliseconds)."""
    pd = _pandas()
    origin = min(start.timestamp() * 1000, snapshots[0].time) if snapshots else 0.0
    return pd.DataFrame({
        "t_s": [(s.time - origin) / 1000 for s in snapshots],
        "heap_bytes": [int(s.heap) for s in snapshots],
        "rss_bytes": [int(s.rss) for s in snapshots],
    }, columns=TIMELINE_COLUMNS)


def _memray_flamegraph(reader: Any, capture: Path, target: Path,
                       snapshots: Sequence[Any], high: Sequence[Any]) -> Path:
    """Memray's flame graph of the high-water mark, self-contained (``--no-web``)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        from memray.reporters.flamegraph import FlameGraphReporter

        reporter = FlameGraphReporter.from_snapshot(
            high, memory_records=tuple(snapshots),
            native_traces=reader.metadata.has_native_traces)
        with target.open("w", encoding="utf-8") as f:
            reporter.render(outfile=f, metadata=reader.metadata, show_memory_leaks=False,
                            merge_threads=True, inverted=False, no_web=True)
        return target
    except OSError as e:
        raise ProfilingError(f"cannot write the flame graph file {target}: {e.strerror or e}",
                             file=str(target)) from e
    except (ImportError, AttributeError, TypeError) as e:
        log.debug("memray reporter API unavailable (%s); running `memray flamegraph`", e)
    done = subprocess.run(
        [sys.executable, "-m", "memray", "flamegraph", "--force", "--no-web", "-o",
         os.fspath(target), os.fspath(capture)], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.exists():
        raise ProfilingError(f"memray flamegraph failed: {_last_line(done.stderr)}",
                             file=str(capture))
    return target


# -- cpu -------------------------------------------------------------------------------------

FUNCTION_COLUMNS = ["function", "file", "line", "self_samples", "total_samples", "self_s",
                    "total_s", "self_pct", "total_pct"]


@dataclasses.dataclass
class CpuProfile:
    """What py-spy sampled in a subprocess.

    ``functions`` has one row per function (name, file, first line) with its self time
    (samples where it was running) and total time (samples where it was on the stack),
    in seconds and as a share of all samples, sorted by self time. ``returncode`` is the
    profiled program's exit status (0: a failing program raises instead); ``None`` where it
    cannot be known: a command line other than ``[sys.executable, "-m", module, ...]``, or
    a program stopped by ``duration``. ``details``: what the caller adds about the run
    (:func:`profile_rehydration`: the path that ran and how the events were chosen).
    """

    label: str
    command: list[str]
    rate: int
    samples: int
    sampled_s: float
    seconds: float
    speedscope: Path
    flamegraph: Path | None
    functions: pd.DataFrame = dataclasses.field(repr=False)
    returncode: int | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The per-function table: self and total time (seconds and %)."""
        return self.functions

    def hot(self, n: int = 10, by: str = "self_s") -> pd.DataFrame:
        """The ``n`` functions with the most ``self_s`` (or ``total_s``)."""
        return self.functions.sort_values(by, ascending=False, ignore_index=True).head(n)

    def to_dict(self, *, top: int = 15) -> dict[str, Any]:
        """A JSON-able summary; the ``top`` functions by self time."""
        return _json_safe({
            "kind": "cpu",
            "label": self.label,
            "command": self.command,
            "rate": self.rate,
            "samples": self.samples,
            "sampled_s": self.sampled_s,
            "seconds": self.seconds,
            "returncode": self.returncode,
            "speedscope": str(self.speedscope),
            "flamegraph": str(self.flamegraph) if self.flamegraph else None,
            "functions": _records(self.functions, top),
            "details": self.details,
        })


def _find_py_spy() -> str:
    # the interpreter's own bin folder first: a venv's scripts are not on PATH unless the
    # venv is activated
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("py-spy")
    if not found:
        raise MissingDependency("py-spy", "profile")
    return found


@cache
def py_spy_status() -> tuple[bool, str]:
    """Whether py-spy can sample a child process here: ``(ok, reason)``. Cached.

    Runs a short probe (about half a second): py-spy records a child that spins for
    0.3 s.
    """
    try:
        exe = _find_py_spy()
    except MissingDependency as e:
        return False, str(e)
    with tempfile.TemporaryDirectory(prefix="evtools-pyspy-") as tmp:
        out = Path(tmp) / "probe.json"
        code = "import time\nt = time.time()\nwhile time.time() - t < 0.3:\n    pass\n"
        try:
            done = subprocess.run([exe, "record", "--format", "speedscope", "--output",
                                   str(out), "--rate", "50", "--", sys.executable, "-c", code],
                                  capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"py-spy did not run: {e}"
        text = done.stdout + done.stderr
        if done.returncode != 0 or not out.exists():
            if _is_ptrace_failure(text):
                return False, PTRACE_ADVICE
            return False, f"py-spy failed (exit {done.returncode}): {_last_line(text)}"
    return True, "py-spy can attach"


def _is_ptrace_failure(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _PTRACE_MARKERS)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


#: Runs the profiled program and writes its exit status to a file (py-spy does not report
#: it), the way the interpreter would have run it: ``runner.py SOURCE STATUS`` runs Python
#: source written to a file (as ``python -c`` would: the working folder on ``sys.path``),
#: ``runner.py -m MODULE STATUS [ARG...]`` what ``python -m MODULE [ARG...]`` runs,
#: ``runner.py -c CODE STATUS [ARG...]`` what ``python -c CODE [ARG...]`` runs and
#: ``runner.py -f SCRIPT STATUS [ARG...]`` what ``python SCRIPT [ARG...]`` runs.
_RUNNER = '''\
import os, runpy, sys, traceback
_mode = sys.argv[1] if sys.argv[1] in ("-m", "-c", "-f") else None
if _mode is None:
    _src, _status = sys.argv[1], sys.argv[2]
    sys.argv = [_src]
    sys.path[0] = os.getcwd()  # as python -c has it
else:
    _src, _status = sys.argv[2], sys.argv[3]
    sys.argv = [{"-m": _src, "-c": "-c", "-f": _src}[_mode], *sys.argv[4:]]
    if _mode == "-f":  # __file__ and the frames' file absolute, as python SCRIPT has them
        _src = os.path.abspath(_src)
    sys.path[0] = os.path.dirname(_src) if _mode == "-f" else os.getcwd()
_code = 0
try:
    if _mode == "-m":
        runpy.run_module(_src, run_name="__main__", alter_sys=True)
    elif _mode == "-c":
        exec(compile(_src, "<string>", "exec"), {"__name__": "__main__"})
    else:
        with open(_src, encoding="utf-8") as _f:
            exec(compile(_f.read(), _src, "exec"), {"__name__": "__main__", "__file__": _src})
except SystemExit as _e:
    if isinstance(_e.code, int) or _e.code is None:
        _code = _e.code or 0
    else:  # sys.exit("message"): Python prints it and exits 1
        sys.stderr.write(f"{_e.code}\\n")
        _code = 1
except BaseException:
    traceback.print_exc()
    _code = 1
with open(_status, "w") as _f:
    _f.write(str(_code))
sys.exit(_code)
'''

#: What a Python interpreter's name looks like (``python``, ``python3``, ``python3.11``).
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?(\.exe)?", re.IGNORECASE)


def _wrapped_argv(command: list[str], runner: Path, status: Path) -> list[str] | None:
    """``command`` run under the status wrapper, when it is a Python interpreter running
    ``-m MODULE``, ``-c CODE`` or a script, with no interpreter options; else ``None``."""
    if len(command) < 2 or not (command[0] == sys.executable
                                or _PYTHON_NAME.fullmatch(Path(command[0]).name)):
        return None
    python, first = command[0], command[1]
    if first in ("-m", "-c") and len(command) > 2:
        return [python, str(runner), first, command[2], str(status), *command[3:]]
    if not first.startswith("-") and first.endswith(".py"):
        return [python, str(runner), "-f", first, str(status), *command[2:]]
    return None


def profile_cpu(target: str | Sequence[str], *, out_dir: str | os.PathLike[str] | None = None,
                rate: int = 100, duration: float | None = None, label: str = "cpu",
                timeout: float | None = None, env: Mapping[str, str] | None = None,
                subprocesses: bool = False) -> CpuProfile:
    """Sample a subprocess with py-spy and return where it spent its time.

    ``target`` is Python source (a ``str``, run by this interpreter from a file written
    into ``out_dir``) or a command line (a sequence of strings, e.g.
    ``[sys.executable, "-m", "mypkg"]``). ``rate`` is samples per second (an int in
    ``1..MAX_RATE``); ``duration`` stops sampling (and the process) after that many
    seconds (py-spy counts whole seconds: it is rounded, to 1 at least); ``timeout`` kills
    py-spy and the process after that many seconds and raises. A ``rate``, ``duration`` or
    ``timeout`` out of range is a :class:`UsageError`; so is a ``target`` of bytes. py-spy
    runs in a process group of its own with the program it starts: on a timeout, an
    interrupt (:class:`KeyboardInterrupt`) or when py-spy ends, what is left of that group
    is killed, so nothing of the program outlives the call.

    Writes ``<label>.speedscope.json`` (py-spy's file) and ``<label>.svg`` (a flame
    graph drawn from the same samples) into ``out_dir``, after removing whatever an earlier
    run with the same label left there; a file that cannot be written there is a
    :class:`UsageError` naming ``out_dir``. py-spy does not report the exit
    status of the program it runs, so a Python source (run as ``python -c`` runs it: the
    working folder is on ``sys.path``), and a command line that runs a Python interpreter
    (``sys.executable`` or one named ``python...``) as ``-m MODULE``, ``-c CODE`` or
    ``SCRIPT.py``, each with its arguments, run under a small wrapper that records it
    (its frames are taken out of the speedscope file, the flame graph and the table
    alike): a program that exits with a non-zero status raises
    :class:`~evtools.errors.ProfilingError` with the last line of its error output
    (``CpuProfile.returncode`` is 0 otherwise). Of any other command line only a Python
    traceback on its stderr can be seen. A callable cannot be sampled in a process of
    its own: put it in a module and pass source that imports and calls it.
    """
    rate = _rate(rate)
    duration = None if duration is None else _seconds(duration, "duration", above_zero=True)
    timeout = None if timeout is None else _seconds(timeout, "timeout", above_zero=True)
    _check_target(target)
    exe = _find_py_spy()
    folder = _out_dir(out_dir, "cpu")
    name = _slug(label)
    speedscope = folder / f"{name}.speedscope.json"
    runner: Path | None = folder / f"{name}_runner.py"
    status: Path | None = folder / f"{name}.status"
    # every file of this label goes first: an earlier run's would pass for this one's, or
    # stay beside what this one leaves should it fail
    _clear(folder, (speedscope.name, f"{name}.svg", f"{name}_target.py",
                    f"{name}_runner.py", f"{name}.status"))
    if isinstance(target, str):
        source = folder / f"{name}_target.py"
        _write(folder, source, target)
        argv = [sys.executable, str(runner), str(source), str(status)]
        command = [sys.executable, str(source)]  # the wrapper is gone when this returns
    else:
        command = [os.fspath(a) for a in target]
        if not command:
            raise UsageError("profile_cpu needs a command to run")
        wrapped = _wrapped_argv(command, folder / f"{name}_runner.py",
                                folder / f"{name}.status")
        if wrapped is None:
            runner = status = None
        argv = wrapped or command
    cmd = [exe, "record", "--format", "speedscope", "--output", str(speedscope),
           "--rate", str(rate), "--function"]
    if duration is not None:
        cmd += ["--duration", str(max(1, round(duration)))]
    if subprocesses:
        cmd.append("--subprocesses")
    cmd += ["--", *argv]
    log.info("py-spy: %s", " ".join(cmd))
    started = time.perf_counter()
    try:
        if runner is not None:
            _write(folder, runner, _RUNNER)
        done = _run_py_spy(cmd, timeout=timeout, env=dict(env) if env is not None else None)
        code = _read_status(status)
    except subprocess.TimeoutExpired as e:
        raise ProfilingError(f"py-spy ran past the {timeout} s timeout: it and the profiled "
                             f"program were stopped") from e
    except OSError as e:
        raise ProfilingError(f"py-spy could not start: {e}") from e
    finally:
        if runner is not None and status is not None:  # the wrapper's files: not results
            with contextlib.suppress(OSError):
                runner.unlink(missing_ok=True)
                status.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    output = (done.stdout or "") + (done.stderr or "")
    log.debug("py-spy output:\n%s", output)
    if done.returncode != 0 or not speedscope.exists():
        _raise_py_spy_failure(done.returncode, output, code)
    returncode = _status_of(status is not None, code, duration, output)
    try:
        doc = json.loads(speedscope.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, not a speedscope document")
    except (OSError, ValueError) as e:
        raise ProfilingError(f"py-spy wrote an unreadable speedscope file: {e}",
                             file=str(speedscope)) from e
    if runner is not None:
        # the wrapper that runs the program is not the user's code (and its file is gone):
        # out of the speedscope file, the flame graph and the table alike
        doc = _strip_file(doc, str(runner))
        _write(folder, speedscope, json.dumps(doc))
    functions, samples, sampled = speedscope_table(doc)
    if samples == 0 and _is_ptrace_failure(output):
        raise ProfilingError(PTRACE_ADVICE)
    svg = _write(folder, folder / f"{name}.svg",
                 _flamegraph_svg(doc, title=f"CPU flame graph: {label}"))
    log.info("cpu profile %s: %d samples over %.2f s (%s)", name, samples, sampled, folder)
    return CpuProfile(label=label, command=command, rate=rate, samples=samples,
                      sampled_s=sampled, seconds=seconds, speedscope=speedscope,
                      flamegraph=svg, functions=functions, returncode=returncode)


def _check_target(target: Any) -> None:
    """A :class:`UsageError` unless ``target`` is Python source (a ``str``) or a command
    line (a sequence of ``str``, or of paths)."""
    wanted = "a str (Python source) or a list of str (a command line)"
    if isinstance(target, bytes | bytearray | memoryview):
        raise UsageError(f"profile_cpu takes {wanted}, not {type(target).__name__}: decode "
                         f"it first (e.g. source.decode())")
    if callable(target) or not isinstance(target, str | Sequence):
        raise UsageError(
            f"profile_cpu samples a process of its own, so it takes {wanted}, not "
            f"{type(target).__name__}: to profile a function, put it in a module and pass "
            f"'from mymodule import fn; fn()' (the working folder is on sys.path), or use "
            f"profile_memory for a callable")
    if not isinstance(target, str):
        for i, arg in enumerate(target):
            if not isinstance(arg, str | os.PathLike) or isinstance(
                    os.fspath(arg), bytes):
                raise UsageError(f"profile_cpu takes {wanted}; item {i} of the command "
                                 f"line is {type(arg).__name__} ({arg!r}), not a str")


def _write(folder: Path, path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` in ``folder``; an :class:`OSError` is a
    :class:`UsageError` naming ``folder``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise _unwritable(folder, e) from e
    return path


def _run_py_spy(cmd: list[str], *, timeout: float | None,
                env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """Run py-spy, and so the program it starts, in a session (and process group) of its
    own. On a timeout (:class:`subprocess.TimeoutExpired`) or an interrupt
    (:class:`KeyboardInterrupt`) the whole group is killed (py-spy, the program and what
    that started) and waited for before the exception goes on; when py-spy ends, anything
    the program left running in the group goes too."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
            proc.communicate(timeout=10)  # reaps py-spy and closes the pipes
        if proc.poll() is None:  # pragma: no cover - killed, yet not reaped in 10 s
            proc.kill()
            proc.wait()
        raise
    _kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL to the process group ``proc`` leads (a group with none left is no error)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    else:  # pragma: no cover - no process groups (Windows)
        with contextlib.suppress(OSError):
            proc.kill()


def _strip_file(doc: Mapping[str, Any], file: str) -> dict[str, Any]:
    """A copy of the speedscope document ``doc`` without the frames of ``file``: they
    leave every sample's stack (a sample left with none stays, as idle), every evented
    profile's events, and the shared frames (the other frames' indices renumbered)."""
    shared = doc.get("shared") or {}
    frames = list(shared.get("frames") or [])
    keep = [i for i, f in enumerate(frames)
            if not (isinstance(f, Mapping) and str(f.get("file", "")) == file)]
    if len(keep) == len(frames):
        return dict(doc)
    index = {old: new for new, old in enumerate(keep)}
    profiles = []
    for profile in doc.get("profiles") or []:
        profile = dict(profile)
        if "samples" in profile:
            profile["samples"] = [[index[i] for i in stack if i in index]
                                  for stack in profile["samples"]]
        if "events" in profile:
            profile["events"] = [{**event, "frame": index[event["frame"]]}
                                 for event in profile["events"]
                                 if event.get("frame") in index]
        profiles.append(profile)
    return {**doc, "shared": {**shared, "frames": [frames[i] for i in keep]},
            "profiles": profiles}


def _raise_py_spy_failure(returncode: int, output: str, code: int | None) -> None:
    """Say why py-spy failed: the program itself (``code``: its exit status, when the
    wrapper recorded one), ptrace, a program too brief to sample, or py-spy's own error
    line."""
    if code:
        raise ProfilingError(f"the profiled program failed (exit {code}): "
                             f"{_program_error(output)}")
    if _is_ptrace_failure(output if code is None else _py_spy_lines(output)):
        raise ProfilingError(PTRACE_ADVICE)
    error = _py_spy_error(output)
    if code == 0 or "check that the process is running" in output.lower():
        raise ProfilingError("the profiled program ended before py-spy could attach to it; "
                             f"give it more work to do (py-spy: {error})")
    raise ProfilingError(f"py-spy failed (exit {returncode}): {error}")


def _read_status(status: Path | None) -> int | None:
    if status is None or not status.exists():
        return None
    try:
        return int(status.read_text() or 0)
    except ValueError:
        return None


def _py_spy_error(output: str) -> str:
    """py-spy's ``Error: ...`` line (its backtrace follows it), else the last line."""
    for line in output.splitlines():
        if line.startswith("Error:"):
            return line[len("Error:"):].strip()
    return _last_line(output)


def _program_error(output: str) -> str:
    """The exception line of the last Python traceback in ``output``, else its last line
    that py-spy did not write."""
    lines = _program_lines(output)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last)"):
            for line in lines[i + 1:]:
                if line and not line[0].isspace():
                    return line.strip()
    last = _last_line("\n".join(lines))
    return "it wrote no error output" if last == "(no output)" else last


def _py_spy_lines(output: str) -> str:
    """What py-spy itself wrote in ``output`` (the lines :func:`_program_lines` leaves
    out, and its ``Permission Denied:`` line)."""
    kept = set(_program_lines(output))
    return "\n".join(line for line in output.splitlines()
                     if line not in kept or line.startswith("Permission Denied"))


def _program_lines(output: str) -> list[str]:
    """``output`` without what py-spy wrote: its ``py-spy>`` lines, and an ``Error:`` line
    with the causes and Rust backtrace under it (indented, or headed ``Caused by:`` and
    ``Stack backtrace:``), which it prints when the program ends before it attaches."""
    kept: list[str] = []
    in_error = False
    for line in output.splitlines():
        if line.startswith("py-spy>"):
            continue
        if line.startswith("Error:"):
            in_error = True
            continue
        if in_error and (not line.strip() or line[0].isspace()
                         or line.startswith(("Caused by:", "Stack backtrace:"))):
            continue
        in_error = False
        kept.append(line)
    return kept


def _status_of(wrapped: bool, code: int | None, duration: float | None,
               output: str) -> int | None:
    """The profiled program's exit status (``code``, as the wrapper recorded it, when it
    ran ``wrapped``), raising when it failed."""
    if not wrapped:  # a command line: only a traceback on its stderr tells
        if "Traceback (most recent call last)" in output:
            raise ProfilingError(f"the profiled command failed: {_program_error(output)}")
        return None
    if code is None:
        if duration is None:
            raise ProfilingError(f"the profiled program exited without finishing: "
                                 f"{_program_error(output)}")
        return None  # stopped by py-spy when the duration elapsed
    if code != 0:
        raise ProfilingError(f"the profiled program failed (exit {code}): "
                             f"{_program_error(output)}")
    return code


def speedscope_table(doc: Mapping[str, Any]) -> tuple[pd.DataFrame, int, float]:
    """Per-function self and total time from a speedscope document (all threads).

    Returns ``(table, samples, sampled seconds)``. Samples with an empty stack (idle) count
    in the total but belong to no function.
    """
    pd = _pandas()
    frames = doc.get("shared", {}).get("frames", [])
    self_w: dict[int, float] = {}
    total_w: dict[int, float] = {}
    self_n: dict[int, int] = {}
    total_n: dict[int, int] = {}
    samples = 0
    sampled = 0.0
    for profile in doc.get("profiles", []):
        if profile.get("type") != "sampled":
            continue
        stacks = profile.get("samples", [])
        weights = profile.get("weights") or [1.0] * len(stacks)
        for stack, weight in zip(stacks, weights, strict=False):
            samples += 1
            sampled += weight
            if not stack:
                continue
            leaf = stack[-1]
            self_w[leaf] = self_w.get(leaf, 0.0) + weight
            self_n[leaf] = self_n.get(leaf, 0) + 1
            for index in set(stack):
                total_w[index] = total_w.get(index, 0.0) + weight
                total_n[index] = total_n.get(index, 0) + 1
    rows: dict[tuple[str, str, int], list[float]] = {}
    for index, total in total_w.items():
        frame = frames[index]
        key = (str(frame.get("name", "?")), str(frame.get("file", "")),
               int(frame.get("line") or 0))
        acc = rows.setdefault(key, [0, 0, 0.0, 0.0])
        acc[0] += self_n.get(index, 0)
        acc[1] += total_n[index]
        acc[2] += self_w.get(index, 0.0)
        acc[3] += total
    scale = 100.0 / sampled if sampled else 0.0
    table = pd.DataFrame(
        [(f, file, line, int(sn), int(tn), sw, tw, sw * scale, tw * scale)
         for (f, file, line), (sn, tn, sw, tw) in rows.items()], columns=FUNCTION_COLUMNS)
    table = table.sort_values(["self_s", "total_s"], ascending=False, ignore_index=True)
    return table, samples, sampled


# -- SVG flame graph -------------------------------------------------------------------------

@dataclasses.dataclass
class _Node:
    name: str
    value: float = 0.0
    children: dict[str, _Node] = dataclasses.field(default_factory=dict)


def _color(name: str) -> str:
    digest = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    hue = 0.0 + digest[0] / 255 * 0.12  # reds to oranges, as flame graphs are drawn
    r, g, b = colorsys.hls_to_rgb(hue, 0.55 + digest[1] / 255 * 0.1, 0.75)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def write_flamegraph_svg(doc: Mapping[str, Any], target: str | os.PathLike[str], *,
                         title: str = "CPU flame graph", width: int = 1200,
                         row: int = 17) -> Path:
    """Draw a static SVG flame graph (root at the bottom) from a speedscope document.

    Every box has a tooltip with the function, its file and line, and its share of the
    samples; boxes narrower than half a pixel are dropped. Stacks of any depth are drawn
    (nothing here recurses). A file that cannot be written is a :class:`ProfilingError`.
    """
    path = Path(target)
    svg = _flamegraph_svg(doc, title=title, width=width, row=row)
    try:
        path.write_text(svg, encoding="utf-8")
    except OSError as e:
        raise ProfilingError(f"cannot write the flame graph file {path}: {e.strerror or e}",
                             file=str(path)) from e
    return path


def _flamegraph_svg(doc: Mapping[str, Any], *, title: str = "CPU flame graph",
                    width: int = 1200, row: int = 17) -> str:
    """The SVG text of :func:`write_flamegraph_svg`."""
    frames = doc.get("shared", {}).get("frames", [])
    labels = [f"{f.get('name', '?')} ({Path(str(f.get('file', ''))).name}:{f.get('line', 0)})"
              for f in frames]
    root = _Node("all")
    for profile in doc.get("profiles", []):
        stacks = profile.get("samples", [])
        weights = profile.get("weights") or [1.0] * len(stacks)
        for stack, weight in zip(stacks, weights, strict=False):
            root.value += weight
            node = root
            for index in stack:
                node = node.children.setdefault(labels[index], _Node(labels[index]))
                node.value += weight
    depth = nesting_depth(root)
    top_pad, bottom_pad = 34, 8
    height = top_pad + (depth + 1) * row + bottom_pad
    boxes: list[str] = []
    total = root.value or 1.0
    span = width - 20
    # depth first, children in name order: a stack of (node, x, level), not recursion,
    # so that a stack as deep as py-spy reports is drawn
    todo: list[tuple[_Node, float, int]] = [(root, 0.0, 0)]
    while todo:
        node, x, level = todo.pop()
        w = node.value / total * span
        if w < 0.5:
            continue
        y = height - bottom_pad - (level + 1) * row
        pct = node.value / total * 100
        text = escape(node.name)
        chars = int(w / 7)
        label = escape(node.name[:chars - 2] + "..") if len(node.name) > chars else text
        boxes.append(
            f'<g><title>{text}: {pct:.1f}% of samples</title>'
            f'<rect x="{10 + x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
            f'fill="{"#b0b0b0" if level == 0 else _color(node.name)}" rx="2"/>'
            + (f'<text x="{13 + x:.1f}" y="{y + row - 5}">{label}</text>' if chars > 3
               else "") + "</g>")
        placed: list[tuple[_Node, float, int]] = []
        offset = x
        for child in sorted(node.children.values(), key=lambda n: n.name):
            placed.append((child, offset, level + 1))
            offset += child.value / total * span
        todo.extend(reversed(placed))  # the first child is drawn next
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">'
            f'<rect width="100%" height="100%" fill="#fdfdf8"/>'
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">'
            f'{escape(title)}</text>' + "".join(boxes) + "</svg>")


def nesting_depth(node: _Node) -> int:
    """How many levels lie below ``node`` (0 for a node without children); iterative, so
    any depth works."""
    deepest = 0
    todo = [(node, 0)]
    while todo:
        current, level = todo.pop()
        deepest = max(deepest, level)
        todo.extend((child, level + 1) for child in current.children.values())
    return deepest


# -- suite results ---------------------------------------------------------------------------

PATH_COLUMNS = ["path", "events", "seconds", "cpu_seconds", "events_per_s", "peak_bytes",
                "peak_mib", "allocations", "allocated_bytes", "allocations_per_event",
                "bytes_per_event", "peak_ratio", "allocations_ratio", "speed_ratio"]
SUMMARY_COLUMNS = ["path", "events_per_s", "peak_mib", "allocations_per_event",
                   "bytes_per_event", "peak_ratio", "allocations_ratio", "speed_ratio"]
COMPARISON_COLUMNS = ["optimisation", "before", "after", "metric", "before_value",
                      "after_value", "ratio"]


@dataclasses.dataclass
class PathResult(_PerEvent):
    """One rehydration path of the suite: time without a profiler, memory under memray.

    ``seconds``/``cpu_seconds`` are the median wall and CPU time of the untraced runs;
    ``events_per_s`` is ``events / cpu_seconds`` (CPU time is steadier than wall time on a
    shared machine). The memory figures come from one run under memray (``None`` when the
    suite ran without memory profiling). ``check`` is what the path computed (aggregates
    rebuilt and a digest of their states), so paths that should agree can be compared.
    """

    path: str
    description: str
    events: int
    seconds: float
    cpu_seconds: float
    runs: int = 1
    peak_bytes: int | None = None
    allocations: int | None = None
    allocated_bytes: int | None = None
    flamegraph: Path | None = None
    check: dict[str, Any] = dataclasses.field(default_factory=dict)
    top_allocators: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)
    timeline: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @property
    def events_per_s(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / _MiB


    def metric(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "description": self.description, "events": self.events,
            "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "runs": self.runs,
            "events_per_s": _jsonable(self.events_per_s), "peak_bytes": self.peak_bytes,
            "peak_mib": self.peak_mib, "allocations": self.allocations,
            "allocated_bytes": self.allocated_bytes,
            "allocations_per_event": self.allocations_per_event,
            "bytes_per_event": self.bytes_per_event,
            "flamegraph": str(self.flamegraph) if self.flamegraph else None,
            "check": self.check,
            "top_allocators": self.top_allocators,
        }


@dataclasses.dataclass(frozen=True)
class Optimisation:
    """A before/after pair of suite paths that differ by one optimisation."""

    name: str
    before: str
    after: str
    metrics: tuple[str, ...] = ("peak_mib", "allocations_per_event", "bytes_per_event",
                                "events_per_s")
    note: str = ""


@dataclasses.dataclass
class SuiteResult:
    """The rehydration suite: every path over the same workload, ratios against
    ``baseline`` (the naive path) from the same run, and the before/after pairs.
    ``workload`` is the SQLite file the paths read (``sqlite:///`` + it is a store URL).

    ``to_frame()`` has one row per path; :meth:`comparisons` one row per optimisation and
    metric; ``to_dict()`` is what ``evtools bench rehydrate --format json`` prints.
    """

    n_events: int
    seed: int
    source: str
    paths: list[PathResult]
    optimisations: list[Optimisation]
    baseline: str = "naive"
    reference: str = "naive-materialized"
    out_dir: Path | None = None
    workload: Path | None = None
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)
    started_at: str = ""
    targets: dict[str, Any] = dataclasses.field(default_factory=dict)

    def path(self, name: str) -> PathResult:
        for p in self.paths:
            if p.path == name:
                return p
        raise KeyError(f"no path {name!r} in this suite (have: "
                       f"{', '.join(p.path for p in self.paths)})")

    def __contains__(self, name: object) -> bool:
        return any(p.path == name for p in self.paths)

    def _ratio(self, p: PathResult, metric: str) -> float | None:
        if self.baseline not in self:
            return None
        return _ratio(p.metric(metric), self.path(self.baseline).metric(metric))

    def to_frame(self, *, full: bool = True) -> pd.DataFrame:
        """One row per path; ``*_ratio`` columns are this path / the baseline path.
        ``full=False``: only the figures (:data:`SUMMARY_COLUMNS`), for narrow tables."""
        pd = _pandas()
        rows = []
        for p in self.paths:
            d = p.to_dict()
            d["peak_ratio"] = self._ratio(p, "peak_bytes")
            d["allocations_ratio"] = self._ratio(p, "allocations_per_event")
            d["speed_ratio"] = self._ratio(p, "events_per_s")
            rows.append({c: d.get(c) for c in PATH_COLUMNS})
        frame = pd.DataFrame(rows, columns=PATH_COLUMNS)
        return frame if full else frame[SUMMARY_COLUMNS]

    def comparisons(self) -> pd.DataFrame:
        """Before/after per optimisation and metric; ``ratio`` is after / before."""
        pd = _pandas()
        rows = []
        for opt in self.optimisations:
            if opt.before not in self or opt.after not in self:
                continue
            before, after = self.path(opt.before), self.path(opt.after)
            for metric in opt.metrics:
                b, a = before.metric(metric), after.metric(metric)
                rows.append((opt.name, opt.before, opt.after, metric, b, a, _ratio(a, b)))
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)

    def flamegraph_markdown(self, relative_to: str | os.PathLike[str] | None = None) -> str:
        """A Markdown list linking each path's memray flame graph (paths relative to
        ``relative_to`` when given, e.g. the folder the report page is written to)."""
        lines = []
        for p in self.paths:
            if p.flamegraph is None:
                continue
            target = (os.path.relpath(p.flamegraph, relative_to) if relative_to is not None
                      else p.flamegraph.resolve().as_uri())
            lines.append(f"- [{p.path}]({target}): {p.description}")
        return "\n".join(lines) or "_no flame graphs were written_"

    def timelines(self) -> dict[str, pd.DataFrame]:
        """Memory over time (under memray) per path that has one."""
        return {p.path: p.timeline for p in self.paths if p.timeline is not None}

    def to_dict(self) -> dict[str, Any]:
        frame = self.to_frame()
        return {
            "benchmark": "rehydrate",
            "n_events": self.n_events,
            "seed": self.seed,
            "source": self.source,
            "workload": str(self.workload) if self.workload else None,
            "baseline": self.baseline,
            "started_at": self.started_at,
            "environment": self.environment,
            "paths": [{**p.to_dict(), **{k: _jsonable(row[k]) for k in
                                         ("peak_ratio", "allocations_ratio", "speed_ratio")}}
                      for p, row in zip(self.paths, frame.to_dict("records"), strict=True)],
            "optimisations": _records(self.comparisons(), None),
            "targets": self.targets,
        }

    def write_json(self, target: str | os.PathLike[str]) -> Path:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        return path


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- rehydration paths -----------------------------------------------------------------------

#: Every path of the suite, with what it does. ``streaming`` and ``materialized`` are
#: aliases of ``typed`` and ``typed-materialized`` (the CLI's names).
PATHS: dict[str, str] = {
    "scan": "read every event of every stream, decode nothing (the I/O floor)",
    "decode-only": "read every event and decode it (registry, every check of the decode), "
                   "fold nothing: the floor of any typed path",
    "naive-materialized": "load every event, json.loads every payload into dicts, then "
                          "fold each stream by hand (naive_rehydrate)",
    "naive": "stream by stream: json.loads each payload into a dict and fold it by hand "
             "(naive_rehydrate), one event at a time",
    "typed-materialized": "load every event, decode every payload into typed Structs "
                          "(registry), then rehydrate each stream",
    "typed": "stream by stream: rehydrate() decodes (registry) and folds one event at a "
             "time, every check on; the result is tallied and dropped",
    "typed-snapshots": "typed, starting each stream from its latest snapshot and replaying "
                       "only the events after it",
    "typed-last-wins": "typed with duplicate_keys='last-wins': no duplicate-key check (no C "
                       "scan of the payload; without evtools._speedups, no key count nor "
                       "second, untyped parse)",
    "typed-fresh-decoders": "typed-last-wins, but a new msgspec Decoder is built for every "
                            "event instead of once per class",
    "view-eager": "a status-only view aggregate (5 of the 8 event types handled): every "
                  "payload decoded, unneeded ones then ignored",
    "view-lazy": "the same view with rehydrate(lazy=True): payloads of event types without "
                 "a handler left undecoded",
    "rehydrate-store": "rehydrate_store(): typed, keeping a StreamSummary (with a state "
                       "hash) per stream",
    "eventsourcing": "the Python eventsourcing library (outside peer): its own SQLite "
                     "store, repository.get() per aggregate",
}
PATH_ALIASES = {"streaming": "typed", "materialized": "typed-materialized"}

#: The paths that do not rebuild every order (their statuses are not compared).
UNFOLDED_PATHS = frozenset({"scan", "decode-only", "rehydrate-store", "eventsourcing"})

#: The before/after pairs of the suite.
OPTIMISATIONS: tuple[Optimisation, ...] = (
    Optimisation("stream instead of materialise (naive)", "naive-materialized", "naive"),
    Optimisation("stream instead of materialise (typed)", "typed-materialized", "typed"),
    Optimisation("typed Structs instead of dicts (resident)", "naive-materialized",
                 "typed-materialized",
                 note="both hold every decoded event: the peak shows what each form costs"),
    Optimisation("typed Structs instead of dicts (streaming)", "naive", "typed"),
    Optimisation("decoders built once", "typed-fresh-decoders", "typed-last-wins"),
    Optimisation("snapshots", "typed", "typed-snapshots"),
    Optimisation("lazy decoding of unneeded payloads", "view-eager", "view-lazy"),
    Optimisation("no duplicate-key check", "typed", "typed-last-wins"),
    Optimisation("tally instead of a summary per stream", "rehydrate-store", "typed"),
)

#: The issue's targets (on 1,000,000 events).
TARGET_PEAK_MIB = 10.0
TARGET_ALLOCATIONS_RATIO = 1 / 3


def resolve_path(path: str) -> str:
    """The suite name of ``path`` (aliases resolved), or a :class:`UsageError`."""
    name = PATH_ALIASES.get(path, path)
    if name not in PATHS:
        raise UsageError(f"unknown rehydration path {path!r}; choose one of "
                         f"{', '.join([*PATHS, *PATH_ALIASES])}")
    return name


class _Tally:
    """What a path computed, in constant memory: streams, events read, violations, and how
    many aggregates end in each status (equal across paths on a clean workload)."""

    __slots__ = ("events", "statuses", "streams", "violations")

    def __init__(self) -> None:
        self.streams = 0
        self.events = 0
        self.violations = 0
        self.statuses: dict[str, int] = {}

    def add(self, events: int, status: Any, violations: int = 0) -> None:
        self.streams += 1
        self.events += events
        self.violations += violations
        key = "none" if status is None else str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"streams": self.streams, "events_read": self.events,
                "violations": self.violations, "statuses": dict(sorted(self.statuses.items()))}


class _Failed:
    """A payload the materialised naive path could not parse, kept until folded."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _unwrap(doc: Any) -> Any:
    if type(doc) is _Failed:
        raise doc.error
    return doc


class _FreshDecoders:
    """A registry that builds a new msgspec Decoder for every current-version event (the
    'before' of 'decoders built once'), with the registry's check of its Decimal fields
    (compiled once per class, as the registry's is); other events go to the real
    registry."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._finite: dict[type, Any] = {}

    def decode(self, raw: Any) -> Any:
        import msgspec

        from ._decimals import FiniteDecoder, finite_parts
        from .scalars import dec_hook

        registry = self._registry
        if raw.type in registry and registry.latest_version(raw.type) == raw.schema_version:
            cls = registry.class_for(raw.type)
            if cls not in self._finite:
                self._finite[cls] = finite_parts(cls)
            finite = self._finite[cls]
            decoder: Any = msgspec.json.Decoder(cls, dec_hook=dec_hook)
            if finite is not None:
                decoder = FiniteDecoder(decoder, finite)
            try:
                return decoder.decode(raw.data)
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass  # the registry raises the typed error with its context
        return registry.decode(raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


class _Predecoded:
    """A registry over events decoded beforehand (the materialised paths): ``decode``
    returns the decoded event of ``raw`` (or raises its error)."""

    def __init__(self, registry: Any, raws: list[Any], decoded: list[Any]) -> None:
        self._registry = registry
        self._raws = raws
        self._decoded = decoded
        self._i = 0

    def decode(self, raw: Any) -> Any:
        raws, i, n = self._raws, self._i, len(self._raws)
        while i < n and raws[i] is not raw:
            i += 1
        if i == n:
            return self._registry.decode(raw)
        self._i = i + 1
        value = self._decoded[i]
        if isinstance(value, Exception):
            raise value
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


@cache
def _status_view() -> type[Aggregate]:
    """An aggregate that keeps only an order's status: five of the eight event types."""
    from .aggregate import Aggregate, handles
    from .orders import (
        OrderCancelled,
        OrderCreated,
        OrderDelivered,
        OrderShipped,
        PaymentAuthorized,
    )

    class OrderStatusView(Aggregate):
        aggregate_type = "OrderStatusView"
        id_field = "order_id"
        time_field = None  # the store's recorded_at for every event, decoded or not
        stream_prefix = "order-"
        ignore_unhandled = True

        order_id: int | None = None
        status: str | None = None

        @handles(OrderCreated)
        def _created(self, e: Any) -> None:
            self.order_id = e.order_id
            self.status = "pending"

        @handles(PaymentAuthorized)
        def _paid(self, e: Any) -> None:
            self.status = "paid"

        @handles(OrderShipped)
        def _shipped(self, e: Any) -> None:
            self.status = "shipped"

        @handles(OrderDelivered)
        def _delivered(self, e: Any) -> None:
            self.status = "delivered"

        @handles(OrderCancelled)
        def _cancelled(self, e: Any) -> None:
            self.status = "cancelled"

    return OrderStatusView


def _order_streams(store: Any) -> Iterable[str]:
    from .orders import Order
    from .rehydration import is_snapshot_stream

    prefix = Order.stream_prefix or ""
    return (s for s in store.list_streams() if s.startswith(prefix)
            and not is_snapshot_stream(s))


def _select_streams(store: Any, events: int | None) -> tuple[list[str], int]:
    """Order streams (store order) up to ``events`` events in whole streams, and their
    event count."""
    chosen: list[str] = []
    total = 0
    for s in _order_streams(store):
        if events is not None and total >= events:
            break
        head = store.stream_version(s)
        if head is None:
            continue
        chosen.append(s)
        total += head + 1
    return chosen, total


def _plain_status(value: Any) -> Any:
    return getattr(value, "value", value)


class _Runner:
    """Runs one path over ``streams`` of ``store``; ``__call__`` returns a :class:`_Tally`.

    Everything a path needs (registry, decoders, stream list) is built here, before a
    profiler starts, so that what is measured is the rehydration itself.
    """

    def __init__(self, path: str, store: Any, streams: list[str],
                 peer: Any = None) -> None:
        from .orders import order_registry

        self.path = resolve_path(path)
        self.store = store
        self.streams = streams
        self.peer = peer
        self.registry = order_registry(
            duplicate_keys="last-wins" if path in ("typed-last-wins", "typed-fresh-decoders")
            else "reject")
        if self.path == "eventsourcing" and peer is None:
            raise UsageError("the eventsourcing path needs its store set up first "
                             "(run_rehydration_suite does it)")

    def __call__(self) -> _Tally:
        method: Callable[[], _Tally] = getattr(self, "_" + self.path.replace("-", "_"))
        return method()

    def warm(self, streams: int = 20) -> None:
        """Run the path over the first ``streams`` streams: imports, compiled patterns and
        decoder caches are then in place before anything is measured."""
        everything = self.streams
        self.streams = everything[:streams]
        try:
            self()
        finally:
            self.streams = everything

    # each path ------------------------------------------------------------------------------

    def _scan(self) -> _Tally:
        tally = _Tally()
        read = self.store.read_stream
        for s in self.streams:
            n = 0
            for _ in read(s):
                n += 1
            tally.add(n, None)
        return tally

    def _decode_only(self) -> _Tally:
        from .errors import InputError

        tally = _Tally()
        read = self.store.read_stream
        decode = self.registry.decode
        for s in self.streams:
            n = errors = 0
            for raw in read(s):
                n += 1
                try:
                    decode(raw)
                except InputError:
                    errors += 1
            tally.add(n, None, errors)
        return tally

    def _naive(self) -> _Tally:
        from .rehydration import naive_rehydrate

        tally = _Tally()
        read = self.store.read_stream
        for s in self.streams:
            r = naive_rehydrate(read(s), dialect=json.loads)
            tally.add(r.events, r.state["status"], len(r.errors))
        return tally

    def _naive_materialized(self) -> _Tally:
        from .rehydration import naive_rehydrate

        read = self.store.read_stream
        loaded = [list(read(s)) for s in self.streams]

        def parse(data: bytes) -> Any:
            try:
                return json.loads(data)
            except Exception as e:  # naive_rehydrate reports it where it meets it
                return _Failed(e)

        decoded = [[parse(raw.data) for raw in raws] for raws in loaded]
        tally = _Tally()
        for raws, docs in zip(loaded, decoded, strict=True):
            nxt = iter(docs).__next__
            r = naive_rehydrate(raws, dialect=lambda _data, nxt=nxt: _unwrap(nxt()))
            tally.add(r.events, r.state["status"], len(r.errors))
        return tally

    def _fold(self, registry: Any, aggregate_cls: Any = None,
              events: Callable[[str], Iterable[Any]] | None = None,
              lazy: bool = False) -> _Tally:
        from .orders import Order
        from .rehydration import rehydrate

        cls = aggregate_cls or Order
        tally = _Tally()
        read = events or self.store.read_stream
        for s in self.streams:
            r = rehydrate(read(s), registry, cls, stream=s, policy="audit", lazy=lazy)
            tally.add(r.events_seen, _plain_status(r.aggregate.status), len(r.violations))
        return tally

    def _typed(self) -> _Tally:
        return self._fold(self.registry)

    _typed_last_wins = _typed

    def _typed_fresh_decoders(self) -> _Tally:
        return self._fold(_FreshDecoders(self.registry))

    def _typed_materialized(self) -> _Tally:
        from .errors import InputError
        from .orders import Order
        from .rehydration import rehydrate

        registry = self.registry
        read = self.store.read_stream
        loaded = [list(read(s)) for s in self.streams]

        def decode(raw: Any) -> Any:
            try:
                return registry.decode(raw)
            except InputError as e:  # rehydrate reports it where it meets it
                return e

        decoded = [[decode(raw) for raw in raws] for raws in loaded]
        tally = _Tally()
        for s, raws, events in zip(self.streams, loaded, decoded, strict=True):
            shim: Any = _Predecoded(registry, raws, events)  # a Registry by duck typing
            r = rehydrate(raws, shim, Order, stream=s, policy="audit")
            tally.add(r.events_seen, _plain_status(r.aggregate.status), len(r.violations))
        return tally

    def _typed_snapshots(self) -> _Tally:
        from .errors import InputError
        from .orders import Order
        from .rehydration import Snapshot, load_snapshot, rehydrate

        registry = self.registry
        store = self.store
        tally = _Tally()
        for s in self.streams:
            raw = load_snapshot(store, s)
            snap: Any = None
            start = 0
            if raw is not None:
                try:
                    snap = Snapshot.from_raw(raw)
                    start = snap.version
                except InputError:
                    snap = raw  # rehydrate reports it and replays from zero
            r = rehydrate(store.read_stream(s, start), registry, Order, stream=s,
                          snapshot=snap, policy="audit")
            tally.add(r.events_seen, _plain_status(r.aggregate.status), len(r.violations))
        return tally

    def _view_eager(self) -> _Tally:
        return self._fold(self.registry, _status_view())

    def _view_lazy(self) -> _Tally:
        return self._fold(self.registry, _status_view(), lazy=True)

    def _rehydrate_store(self) -> _Tally:
        from .orders import Order
        from .rehydration import rehydrate_store

        result = rehydrate_store(self.store, self.registry, Order, self.streams,
                                 policy="audit", snapshots=False)
        tally = _Tally()
        for summary in result.streams:
            tally.add(summary.events_seen, None, summary.violations)
        tally.statuses = {"not kept": len(result.streams)}
        return tally

    def _eventsourcing(self) -> _Tally:
        app, ids = self.peer
        tally = _Tally()
        get = app.repository.get
        for ident in ids:
            agg = get(ident)
            tally.add(agg.version, agg.status)
        return tally


# -- the eventsourcing peer ------------------------------------------------------------------

_ES_NAMESPACE = "6f1c2a3b-4d5e-5f60-8a7b-9c0d1e2f3a4b"


@cache
def _es_order_class() -> type:
    """The order aggregate written for the Python ``eventsourcing`` library: the same
    events and fold as :class:`evtools.orders.Order`, in that library's idiom (built once:
    eventsourcing resolves event classes by topic)."""
    try:
        from eventsourcing.domain import Aggregate as EsAggregate
        from eventsourcing.domain import event
    except ImportError as e:
        raise MissingDependency("eventsourcing", "bench") from e
    import uuid

    namespace = uuid.UUID(_ES_NAMESPACE)

    class EsOrder(EsAggregate):
        @staticmethod
        def create_id(order_id: int) -> uuid.UUID:
            return uuid.uuid5(namespace, str(order_id))

        @event("Created")
        def __init__(self, order_id: int, customer_id: int, request_id: uuid.UUID,
                     currency: str, shipping_address: dict[str, Any],
                     occurred_at: str) -> None:
            self.order_id = order_id
            self.customer_id = customer_id
            self.request_id = request_id
            self.currency = currency
            self.shipping_address = shipping_address
            self.status = "pending"
            self.lines: dict[int, dict[str, Any]] = {}
            self.payment_id: uuid.UUID | None = None
            self.authorized_amount: dict[str, Any] | None = None
            self.carrier: str | None = None
            self.tracking_number: str | None = None
            self.cancel_reason: str | None = None
            self.created_at = self.updated_at = occurred_at

        @event("ItemAdded")
        def add_item(self, sku: int, quantity: int, unit_price: dict[str, Any],
                     occurred_at: str) -> None:
            held = self.lines.get(sku)
            total = quantity if held is None else held["quantity"] + quantity
            self.lines[sku] = {"sku": sku, "quantity": total, "unit_price": unit_price}
            self.updated_at = occurred_at

        @event("ItemRemoved")
        def remove_item(self, sku: int, quantity: int, occurred_at: str) -> None:
            held = self.lines.get(sku)
            if held is not None and held["quantity"] == quantity:
                del self.lines[sku]
            elif held is not None:
                self.lines[sku] = {**held, "quantity": held["quantity"] - quantity}
            self.updated_at = occurred_at

        @event("AddressChanged")
        def change_address(self, address: dict[str, Any], occurred_at: str) -> None:
            self.shipping_address = address
            self.updated_at = occurred_at

        @event("PaymentAuthorized")
        def authorize(self, payment_id: uuid.UUID, amount: dict[str, Any],
                      occurred_at: str) -> None:
            self.payment_id = payment_id
            self.authorized_amount = amount
            self.status = "paid"
            self.updated_at = occurred_at

        @event("Shipped")
        def ship(self, carrier: str, tracking_number: str, occurred_at: str) -> None:
            self.carrier = carrier
            self.tracking_number = tracking_number
            self.status = "shipped"
            self.updated_at = occurred_at

        @event("Delivered")
        def deliver(self, signed_by: str | None, occurred_at: str) -> None:
            self.status = "delivered"
            self.updated_at = occurred_at

        @event("Cancelled")
        def cancel(self, reason: str, occurred_at: str) -> None:
            self.status = "cancelled"
            self.cancel_reason = reason
            self.updated_at = occurred_at

    return EsOrder


def _es_apply(agg: Any, event: Any) -> Any:
    """Replay one typed evtools event as the eventsourcing aggregate's command."""
    import msgspec

    def plain(value: Any) -> Any:
        return msgspec.to_builtins(value, builtin_types=(_decimal(),), enc_hook=str)

    kind = type(event).__name__
    at = str(event.occurred_at)
    if kind == "OrderCreated":
        return _es_order_class()(order_id=event.order_id, customer_id=event.customer_id,
                                 request_id=event.request_id, currency=str(event.currency),
                                 shipping_address=plain(event.shipping_address),
                                 occurred_at=at)
    if kind == "ItemAdded":
        agg.add_item(sku=event.sku, quantity=event.quantity,
                     unit_price=plain(event.unit_price), occurred_at=at)
    elif kind == "ItemRemoved":
        agg.remove_item(sku=event.sku, quantity=event.quantity, occurred_at=at)
    elif kind == "AddressChanged":
        agg.change_address(address=plain(event.address), occurred_at=at)
    elif kind == "PaymentAuthorized":
        agg.authorize(payment_id=event.payment_id, amount=plain(event.amount), occurred_at=at)
    elif kind == "OrderShipped":
        agg.ship(carrier=str(event.carrier), tracking_number=event.tracking_number,
                 occurred_at=at)
    elif kind == "OrderDelivered":
        agg.deliver(signed_by=event.signed_by, occurred_at=at)
    elif kind == "OrderCancelled":
        agg.cancel(reason=str(event.reason), occurred_at=at)
    return agg


def _decimal() -> type:
    from decimal import Decimal

    return Decimal


def _es_setup(store: Any, streams: list[str], db: Path,
              max_events: int | None) -> tuple[tuple[Any, list[Any]], int]:
    """Write the first streams of ``store`` (up to ``max_events`` events) into an
    eventsourcing application on SQLite; ``((app, aggregate ids), events)``."""
    try:
        from eventsourcing.application import Application
    except ImportError as e:
        raise MissingDependency("eventsourcing", "bench") from e
    from .orders import order_registry

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    app: Any = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                           "SQLITE_DBNAME": str(db)})
    registry = order_registry()
    ids: list[Any] = []
    written = 0
    for s in streams:
        if max_events is not None and written >= max_events:
            break
        agg: Any = None
        for raw in store.read_stream(s):
            agg = _es_apply(agg, registry.decode(raw))
            written += 1
        if agg is not None:
            app.save(agg)
            ids.append(agg.id)
    log.info("eventsourcing peer: %d events in %d aggregates (%s)", written, len(ids), db)
    return (app, ids), written


# -- the suite -------------------------------------------------------------------------------

Progress = Callable[[str, str], None]
_WORKLOAD_FORMAT = 1


def _prepare_workload(folder: Path, n_events: int, seed: int, source: str | None,
                      snapshot_lag: int, n_streams: int | None = None) -> Path:
    """The suite's SQLite workload: generated (reused when it exists for the same
    arguments) or copied from ``source`` (whole streams up to ``n_events`` events), with a
    snapshot ``snapshot_lag`` events before the head of every stream long enough."""
    from .datagen import write_workload
    from .orders import Order, order_registry
    from .rehydration import rehydrate, take_snapshot, write_snapshot
    from .stores import NO_STREAM, open_store

    name = (f"workload-source-{n_events}" if source is not None
            else f"workload-{n_events}-{seed}" + (f"-{n_streams}s" if n_streams else ""))
    db = folder / f"{name}.db"
    marker = folder / f"{name}.json"
    spec = {"format": _WORKLOAD_FORMAT, "n_events": n_events, "seed": seed,
            "source": source, "snapshot_lag": snapshot_lag}
    if n_streams:
        spec["n_streams"] = n_streams
    if source is None and db.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()) == spec:
                log.info("reusing the workload %s", db)
                return db
        except ValueError:
            pass
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    with open_store(f"sqlite:///{db}") as store:
        if source is None:
            write_workload(store, n_events, n_streams=n_streams, seed=seed)
        else:
            with open_store(source, mode="r") as src:
                chosen, _ = _select_streams(src, n_events)
                for s in chosen:
                    store.append(s, list(src.read_stream(s)), NO_STREAM)
        registry = order_registry()
        snapshots = 0
        for s in list(_order_streams(store)):
            head = store.stream_version(s)
            if head is None or head < snapshot_lag + 2:
                continue
            upto = head - snapshot_lag
            r = rehydrate(store.read_stream(s, limit=upto + 1), registry, Order, stream=s,
                          policy="audit")
            if r.ok and r.version == upto:
                write_snapshot(store, take_snapshot(r.aggregate))
                snapshots += 1
    marker.write_text(json.dumps(spec))
    log.info("workload %s ready in %.1f s (%d snapshots)", db, time.perf_counter() - started,
             snapshots)
    return db


def _environment(repeat: int, memory: bool, counted: bool) -> dict[str, Any]:
    import platform
    import sqlite3
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("evtools", "msgspec", "memray", "py-spy", "eventsourcing", "pandas"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    machine: dict[str, Any] = {}
    try:
        import psutil

        machine["memory_total_bytes"] = int(psutil.virtual_memory().total)
        machine["cpu_count_physical"] = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        machine["load_average"] = [round(x, 2) for x in os.getloadavg()]
    from ._accel import SPEEDUPS
    from ._machine import cpu_model

    return {
        **machine,
        "evtools_speedups": SPEEDUPS,
        "evtools_source_sha256": _source_digest(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        "warm_up": "one untimed pass reading every stream before the first path",
        "timing": f"median of {repeat} untimed-profiler run(s) per path: wall "
                  "(perf_counter) and CPU (process_time) seconds, cyclic GC on",
        "memory": ("one run per path under memray.Tracker(trace_python_allocators=True, "
                   f"file_format={'ALL' if counted else 'AGGREGATED'}_ALLOCATIONS); peak is "
                   "the largest heap memray tracked (above the baseline at the start of "
                   "the run)") if memory else "not measured",
    }


def _source_digest() -> str:
    """A digest of evtools' own source files: which code the figures were measured on."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_rehydration_suite(n_events: int = 100_000, seed: int = 7,
                          out_dir: str | os.PathLike[str] | None = None, *,
                          paths: Sequence[str] | None = None, source: str | None = None,
                          memory: bool | Sequence[str] = True, count_allocations: bool = True,
                          flamegraphs: bool | Sequence[str] = True,
                          repeat: int | None = None, peer_events: int | None = 200_000,
                          snapshot_lag: int = 2, n_streams: int | None = None,
                          progress: Progress | None = None) -> SuiteResult:
    """Run every rehydration path over the same workload; time and memory per path.

    The workload is ``n_events`` generated order events (``seed``), written to a SQLite
    store in ``out_dir`` (reused on the next run with the same arguments), or whole
    streams of ``source`` until at least ``n_events`` events copied there; a snapshot is
    written ``snapshot_lag`` events before the head of every stream long enough. ``n_streams``
    shares the generated events among that many streams (default: orders of natural length,
    3 to 11 events; fewer, longer streams are where snapshots pay off). ``paths`` picks
    paths (default: all of :data:`PATHS`, ``eventsourcing`` only where it is installed).
    Each path is timed ``repeat`` times without a profiler (default 3 below 200,000
    events, else 1) and run once under memray
    (``memory``: all paths, none, or the paths named), writing memray's flame graph of
    the paths ``flamegraphs`` names (all, none, or a list: each is about 4 MB of
    self-contained HTML); ``count_allocations=False`` keeps the peak, timeline and flame graph
    but skips the allocation totals, which take minutes to read back at a million events
    (see :func:`profile_memory`). The eventsourcing peer
    replays the first streams up to ``peer_events`` events (``None``: all), as it is about
    twenty times slower. A path named in ``memory`` that ``paths`` leaves out, or in
    ``flamegraphs`` that is not profiled under memray, is a :class:`UsageError`.

    ``out_dir`` keeps the artefacts: the workload, the flame graphs and ``suite.json``.
    Without it (``None``) the suite works in a temporary folder that it removes when it
    is done, also when it fails: then no flame graph is drawn, and the result's
    ``out_dir`` and ``workload`` are ``None``.
    """
    from .stores import open_store

    n_events = _count(n_events, "n_events")
    if repeat is not None:
        repeat = _count(repeat, "repeat")
    if peer_events is not None:
        peer_events = _count(peer_events, "peer_events")
    if n_streams is not None:
        n_streams = _count(n_streams, "n_streams")
    snapshot_lag = _count(snapshot_lag, "snapshot_lag", 0)
    names = list(PATHS) if paths is None else list(dict.fromkeys(resolve_path(p)
                                                                 for p in paths))
    if paths is None and importlib.util.find_spec("eventsourcing") is None:
        names.remove("eventsourcing")  # asked for by name, it is a MissingDependency
        log.warning("the eventsourcing path is left out: eventsourcing is not installed "
                    "(pip install 'evtools[bench]')")
    traced = _chosen(memory, names)
    drawn = _chosen(flamegraphs, names)
    # a path named for memory or a flame graph that would not be measured had been left
    # out without a word
    if not isinstance(memory, bool) and traced - set(names):
        raise UsageError(f"memory names path(s) the suite does not run: "
                         f"{', '.join(sorted(traced - set(names)))}; add them to paths "
                         f"(running: {', '.join(names)})")
    if not isinstance(flamegraphs, bool) and drawn - traced:
        why = ("no path is profiled under memray (memory=False)" if not traced
               else f"memray profiles only {', '.join(sorted(traced))}")
        raise UsageError(f"flame graphs come from memray, and {why}: no flame graph of "
                         f"{', '.join(sorted(drawn - traced))} can be drawn")
    runs = repeat if repeat is not None else (3 if n_events < 200_000 else 1)
    if runs < 1:
        raise UsageError(f"repeat must be >= 1, got {runs}")
    keep = out_dir is not None
    if keep:
        folder = _out_dir(out_dir, "suite")
    else:  # nothing to keep: no flame graphs, and the folder goes when the suite ends
        folder = Path(tempfile.mkdtemp(prefix="evtools-suite-"))
        drawn = set()
    notify = progress or (lambda step, state: None)
    started_at = _now()
    try:
        notify("workload", "start")
        db = _prepare_workload(folder, n_events, seed, source, snapshot_lag, n_streams)
        notify("workload", "done")
        results: list[PathResult] = []
        with open_store(f"sqlite:///{db}", mode="r") as store:
            streams, total = _select_streams(store, None)
            _Runner("scan", store, streams)()  # warm-up: page cache, sqlite, imports
            peer: Any = None
            peer_total = 0
            if "eventsourcing" in names:
                notify("eventsourcing setup", "start")
                peer, peer_total = _es_setup(store, streams, folder / "eventsourcing.db",
                                             peer_events)
                notify("eventsourcing setup", "done")
            for name in names:
                notify(name, "start")
                runner = _Runner(name, store, streams, peer=peer)
                events = peer_total if name == "eventsourcing" else total
                results.append(_measure(runner, name, events, runs, folder, name in traced,
                                        count_allocations, name in drawn))
                notify(name, "done")
        suite = SuiteResult(n_events=total, seed=seed,
                            source=source or f"generated (seed {seed})", paths=results,
                            optimisations=list(OPTIMISATIONS),
                            out_dir=folder if keep else None, workload=db if keep else None,
                            environment=_environment(runs, bool(traced), count_allocations),
                            started_at=started_at)
        suite.targets = _targets(suite)
        if keep:
            suite.write_json(folder / "suite.json")
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    _check_agreement(results)
    return suite


def _chosen(choice: bool | Sequence[str], names: list[str]) -> set[str]:
    if choice is True:
        return set(names)
    if choice is False:
        return set()
    return {resolve_path(p) for p in choice}


def _measure(runner: _Runner, name: str, events: int, runs: int, folder: Path,
             memory: bool, count_allocations: bool, flamegraphs: bool) -> PathResult:
    import statistics

    walls: list[float] = []
    cpus: list[float] = []
    tally = _Tally()
    runner.warm()
    for _ in range(runs):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        tally = runner()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    result = PathResult(path=name, description=PATHS[name], events=events,
                        seconds=statistics.median(walls), cpu_seconds=statistics.median(cpus),
                        runs=runs, check=tally.to_dict())
    if memory:
        prof = profile_memory(runner, events=events, out_dir=folder / "memray", label=name,
                              flamegraph=flamegraphs, count_allocations=count_allocations,
                              keep_capture=False)
        result.peak_bytes = prof.peak_bytes
        result.allocations = prof.allocations
        result.allocated_bytes = prof.allocated_bytes
        result.flamegraph = prof.flamegraph
        result.timeline = prof.timeline
        if prof.allocators is not None:
            result.top_allocators = _records(prof.allocators, 8)
    per_event = result.allocations_per_event
    log.info("path %s: %.0f events/s%s%s", name, result.events_per_s,
             "" if result.peak_mib is None else f", peak {result.peak_mib:.1f} MiB",
             "" if per_event is None else f", {per_event:.1f} allocations/event")
    return result


def _targets(suite: SuiteResult) -> dict[str, Any]:
    out: dict[str, Any] = {"on_events": suite.n_events, "targets_stated_for": 1_000_000}
    if "typed" in suite and "naive-materialized" in suite:
        typed, mat = suite.path("typed"), suite.path("naive-materialized")
        if typed.peak_mib is not None and mat.peak_mib is not None:
            out["streaming_typed_peak_mib"] = typed.peak_mib
            out["materialized_naive_peak_mib"] = mat.peak_mib
            out["peak_target_mib"] = TARGET_PEAK_MIB
            out["peak_met"] = typed.peak_mib < TARGET_PEAK_MIB and typed.peak_mib < mat.peak_mib
    if "typed" in suite and "naive" in suite:
        ratio = _ratio(suite.path("typed").allocations_per_event,
                       suite.path("naive").allocations_per_event)
        if ratio is not None:
            out["typed_allocations_ratio"] = ratio
            out["allocations_ratio_target"] = TARGET_ALLOCATIONS_RATIO
            out["allocations_met"] = ratio <= TARGET_ALLOCATIONS_RATIO
    if "decode-only" in suite and "naive" in suite:
        # reading and decoding alone, before any fold: no typed path allocates less
        floor = _ratio(suite.path("decode-only").allocations_per_event,
                       suite.path("naive").allocations_per_event)
        if floor is not None:
            out["decode_only_allocations_ratio"] = floor
    return out


def _check_agreement(results: Sequence[PathResult]) -> None:
    """Warn when paths that fold the whole Order disagree on the final statuses."""
    full = [r for r in results if r.path not in UNFOLDED_PATHS]
    seen = {json.dumps(r.check.get("statuses"), sort_keys=True) for r in full}
    if len(seen) > 1:
        log.warning("paths disagree on the order statuses they rebuilt: %s",
                    {r.path: r.check.get("statuses") for r in full})


# -- one path, for the CLI --------------------------------------------------------------------

@contextlib.contextmanager
def _order_source(source_url: str,
                  events: int | None) -> Iterator[tuple[Any, list[str], int]]:
    """``(store, streams, events)``: the store or file opened read-only, its order streams
    (whole streams, in store order, until at least ``events`` events; all when ``None``)
    and how many events they hold. A source that is missing, unreadable or corrupt raises
    the store's error here, naming it; one without order streams a :class:`UsageError`."""
    from .stores import open_store

    with open_store(source_url, mode="r") as store:
        streams, total = _select_streams(store, events)
        if not streams:
            raise UsageError(f"{source_url}: no order streams to rehydrate")
        yield store, streams, total


def _selection(events: int | None) -> str:
    """How :func:`_select_streams` chose the events, in words (for the results)."""
    if events is None:
        return "every order stream"
    return f"whole order streams, in store order, until at least {events} events"


def _run_path(source_url: str, path: str, events: int | None,
              repeat: int = 1) -> dict[str, Any]:
    """Run one path over ``source_url`` ``repeat`` times (no profiler); what the CPU
    profile samples."""
    name = resolve_path(path)
    with _order_source(source_url, events) as (store, streams, total):
        runner = _Runner(name, store, streams)
        tally = _Tally()
        for _ in range(max(1, repeat)):
            tally = runner()
    return {"path": name, "events": total, "repeat": max(1, repeat), **tally.to_dict()}


#: A CPU profile with ``repeat=None`` runs its path until about this many events have been
#: rebuilt: on a small store the samples then show rehydration, not the sampled process's
#: start-up (imports).
CPU_PROFILE_EVENTS = 200_000
_MAX_REPEAT = 10_000


def profile_rehydration(source_url: str, kind: str = "memory", path: str = "typed",
                        out_dir: str | os.PathLike[str] | None = None,
                        events: int | None = None, *, rate: int = 100,
                        repeat: int | None = 1,
                        count_allocations: bool = True) -> MemoryProfile | CpuProfile:
    """Profile one rehydration path over the order streams of a store or file.

    ``kind``: ``"memory"`` (memray, in this process: :func:`profile_memory`) or ``"cpu"``
    (py-spy sampling ``python -m evtools.profiling _run SOURCE --path PATH``:
    :func:`profile_cpu`). ``path``: a name of :data:`PATHS` or an alias of one
    (:data:`PATH_ALIASES`: ``streaming`` is ``typed``, ``materialized`` is
    ``typed-materialized``); an alias runs the path it names, and the label and the
    artefacts (``<path>.*`` in ``out_dir``) carry that path's name, so ``streaming``
    writes (and replaces) the ``typed.*`` files. ``typed-snapshots`` uses the snapshots
    the store has. ``events``: whole streams, in store order, until at least that many
    events (``None``: every stream); a stream is never cut, so the count profiled is
    usually a little more than asked. This is ``evtools profile memory|cpu SOURCE
    --path P``.

    The source is opened read-only and its order streams chosen before any profiler
    starts, for both kinds: a missing, unreadable or corrupt source raises the store's
    error (a :class:`~evtools.errors.StoreUnavailable`, an
    :class:`~evtools.errors.InputError`...), one without order streams a
    :class:`UsageError`. The result's ``details`` say what ran: ``path`` (the path's name),
    ``requested_path`` (as given), ``events_requested``, ``events`` (those profiled),
    ``streams`` and ``selection`` (how they were chosen, in words).

    CPU only: ``rate`` is py-spy's samples per second (an int in ``1..MAX_RATE``, checked
    before the source is opened); ``repeat`` runs the path that many times in the sampled
    process, so that its start-up (imports) weighs less on a small store (``None``: enough
    runs to rebuild about :data:`CPU_PROFILE_EVENTS` events, at most 10,000;
    ``details["repeat"]`` says how many ran); a sampled process that fails
    raises :class:`ProfilingError` with its error line.
    Memory only: ``count_allocations`` (see :func:`profile_memory`). The path runs once
    untraced over every chosen stream before memray starts, as in the suite, so that the
    store's page cache (SQLite: megabytes, filled by a cold run) holds everything the path
    reads (the snapshot streams of ``typed-snapshots`` too) and is not counted in its
    peak; the profile is of the second run.
    """
    name = resolve_path(path)
    if name == "eventsourcing":
        raise UsageError("the eventsourcing peer needs its own store: measure it with "
                         "'evtools bench rehydrate' (run_rehydration_suite(paths="
                         "['eventsourcing']))")
    events = _event_count(events)
    if kind not in ("memory", "cpu"):
        raise UsageError(f"kind must be 'memory' or 'cpu', not {kind!r}")
    if repeat is not None and (type(repeat) is not int or repeat < 1):
        raise UsageError(f"repeat must be an int >= 1 or None, not {repeat!r}")
    if kind == "cpu":
        rate = _rate(rate)
    with _order_source(source_url, events) as (store, streams, total):
        details = {"path": name, "requested_path": path, "events_requested": events,
                   "events": total, "streams": len(streams), "selection": _selection(events)}
        if kind == "memory":
            # the path runs once untraced over every chosen stream first, as in the suite:
            # whatever it reads (the order streams, and the snapshot streams of
            # typed-snapshots) is then in the store's page cache (SQLite: megabytes)
            # before memray tracks, and imports and decoder caches are in place; a cold
            # cache had been counted as the path's peak and hidden the difference between
            # paths
            runner = _Runner(name, store, streams)
            runner()
            memory = profile_memory(runner, events=total, out_dir=out_dir, label=name,
                                    count_allocations=count_allocations)
            memory.result = {"path": name, "events": total, **memory.result.to_dict()}
            memory.details = details
            return memory
    # cpu: the source is readable and has order streams; the sampled process reopens it
    runs = repeat if repeat is not None \
        else max(1, min(_MAX_REPEAT, -(-CPU_PROFILE_EVENTS // total)))
    details["repeat"] = runs
    argv = [sys.executable, "-m", "evtools.profiling", "_run", source_url, "--path", name]
    if events is not None:
        argv += ["--events", str(events)]
    if runs != 1:
        argv += ["--repeat", str(runs)]
    cpu = profile_cpu(argv, out_dir=out_dir, rate=rate, label=name)
    cpu.details = details
    return cpu


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m evtools.profiling _run SOURCE [--path P] [--events N] [--repeat R]``:
    run one path and print what it rebuilt as one JSON line (the process py-spy
    samples)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m evtools.profiling")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("_run", help="run one rehydration path, no profiler")
    run.add_argument("source", help="a store URL or export file")
    run.add_argument("--path", default="typed", help=", ".join([*PATHS, *PATH_ALIASES]))
    run.add_argument("--events", type=int, default=None)
    run.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        summary = _run_path(args.source, args.path, args.events, args.repeat)
    except EvtoolsError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
