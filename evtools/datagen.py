"""Deterministic order workloads with injected faults.

:func:`generate` yields :class:`~evtools.events.RawEvent`s of order streams
(``order-<order_id>``): created, items added and removed, address changed, payment
authorized, shipped, delivered or cancelled. Everything derives from
``random.Random(seed)`` (ids, times, ``recorded_at``): the same arguments give the same
bytes. Payloads carry what untyped consumers lose: ids above 2**53, money as JSON numbers
with cents (``19.99``), timestamps with UTC offsets and nanoseconds, enums, nested
addresses, UUIDs, and ``ItemAdded`` / ``PaymentAuthorized`` in both schema versions
(``schema_mix`` is the share of v1).

Faults (:class:`FaultRates`) are injected at chosen rates, and each one is recorded in the
workload's :class:`Manifest` with the stream, the version and the violation kind that
:func:`evtools.rehydration.rehydrate` reports for it:

=====================  ==================================================  =================
fault                  what is injected                                     reported as
=====================  ==================================================  =================
``gap``                an event is lost (the next version follows)          ``gap``
``duplicate``          an event is delivered / stored twice                 ``duplicate``
``reorder``            two consecutive events swap places                   ``out_of_order``
``clock_skew``         an event's time lies 10 min to 2 h in the past       ``clock_skew``
``corrupt``            a payload is truncated or has a mistyped field       ``decode_error``
``unknown_type``       an extra event of a type nobody registered           ``unknown_type``
``foreign``            an extra event of another order                      ``wrong_aggregate``
``invariant``          an extra ``OrderShipped`` before any payment         ``invariant``
``snapshot_conflict``  a snapshot by a writer whose append lost             ``snapshot_conflict``
``truncate``           the stream's tail is cut after its snapshot          ``snapshot_ahead``
=====================  ==================================================  =================

The first eight are rates per order event yielded (injected extra events and duplicate
copies included, snapshots not), the last two per stream. Each order event yielded is one
draw of the per-event faults, but a fault is not possible everywhere: not at the first
event of a stream (``clock_skew``, ``unknown_type``, ``foreign``, ``invariant``), after
its payment (``invariant``), at its last event (``gap``, ``reorder``), where the workload
has no room for two more events (``duplicate``, ``reorder`` and the extra events), nor in
a stream with a snapshot fault (its snapshot is built by folding its clean events through
the typed ``Order``). A draw that lands where its fault is not possible waits, and is
injected at the next event where it is (the kinds waiting take turns), so over a workload
each fault comes at its rate times the events yielded. Each stream is one draw of the
snapshot faults, which need a stream of 3 events or more: their rate is per stream long
enough (every stream of a workload given ``n_events`` alone; a draw on a shorter stream is
not injected), and one drawn for a stream that ``n_events`` cuts short may not be reached.
Snapshots are events of the stream ``snapshot-<stream>``.

Some rates cannot be met. A draw still waiting when the workload ends is not injected (a
few at most, at rates that leave room). A duplicate, a reorder and an extra event take two
of the events yielded, so such a fault cannot come at more than every other event, nor can
the faults together take more events than there are; and a kind with few places
(``invariant`` at a high rate, ``gap`` in streams of one event) falls behind. The manifest
says so: :attr:`Manifest.asked` is what the rates drew, :attr:`Manifest.counts` what was
injected, :attr:`Manifest.shortfall` the difference, and a warning is logged when that is
more than the end of a workload explains.

One kind at a time, rehydration reports every fault at the stream and version the
manifest gives, and nothing else. Several kinds at once can hide one another: rehydration
stops folding a stream at an event it cannot apply (lost, damaged, of an unknown type or
of another order), so an ``invariant`` or ``foreign`` fault later in that stream, which
only the fold can see, goes unreported, as does a ``clock_skew`` right after a damaged
event (there is no time to measure it against). The manifest still lists them where
they were injected.

``gap`` and ``reorder`` exist on the way to a consumer (a lossy or reordering
subscription, an export); a store numbers the events it appends itself, so they cannot be
written into one: :func:`write_workload` refuses them (``at_rest`` view) and
:func:`export_jsonl` writes a JSON-lines file that keeps versions as generated.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import ConcurrencyError, StoreError, UsageError
from .events import JSON_CONTENT_TYPE, RawEvent, to_cloudevent

if TYPE_CHECKING:
    import os

    import polars as pl

    from .registry import Registry
    from .rehydration import Rehydration

__all__ = [
    "Fault",
    "FaultKind",
    "FaultRates",
    "Manifest",
    "Workload",
    "WorkloadWritten",
    "export_jsonl",
    "generate",
    "write_workload",
]

log = logging.getLogger(__name__)


class FaultKind(enum.StrEnum):
    GAP = "gap"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    CLOCK_SKEW = "clock_skew"
    CORRUPT = "corrupt"
    UNKNOWN_TYPE = "unknown_type"
    FOREIGN = "foreign"
    INVARIANT = "invariant"
    SNAPSHOT_CONFLICT = "snapshot_conflict"
    TRUNCATE = "truncate"


#: The violation kind (``evtools.rehydration.ViolationKind`` value) each fault is caught as.
DETECTED_AS: dict[FaultKind, str] = {
    FaultKind.GAP: "gap",
    FaultKind.DUPLICATE: "duplicate",
    FaultKind.REORDER: "out_of_order",
    FaultKind.CLOCK_SKEW: "clock_skew",
    FaultKind.CORRUPT: "decode_error",
    FaultKind.UNKNOWN_TYPE: "unknown_type",
    FaultKind.FOREIGN: "wrong_aggregate",
    FaultKind.INVARIANT: "invariant",
    FaultKind.SNAPSHOT_CONFLICT: "snapshot_conflict",
    FaultKind.TRUNCATE: "snapshot_ahead",
}

_PER_EVENT = ("gap", "duplicate", "reorder", "clock_skew", "corrupt", "unknown_type",
              "foreign", "invariant")
_PER_STREAM = ("snapshot_conflict", "truncate")
_DELIVERY_ONLY = ("gap", "reorder")
#: how far above 1 a sum of rates may be and still count as 1 (float rounding)
_SUM_SLACK = 1e-12


@dataclasses.dataclass(frozen=True, slots=True)
class FaultRates:
    """Fault probabilities: per order event yielded for the first eight fields, per
    stream (of 3 events or more) for ``snapshot_conflict`` and ``truncate``; see the module
    docstring for where each is possible. ``FaultRates.parse("gap=0.01,duplicate=0.02")``
    reads the CLI form."""

    gap: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    clock_skew: float = 0.0
    corrupt: float = 0.0
    unknown_type: float = 0.0
    foreign: float = 0.0
    invariant: float = 0.0
    snapshot_conflict: float = 0.0
    truncate: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 <= value <= 1.0:
                raise UsageError(f"fault rate {f.name} must be a number in [0, 1], "
                                 f"got {value!r}")
        # the exact sum, with room for the rounding of rates written in decimal: 0.33,
        # 0.56 and 0.11 add up to 1, though the floats nearest them add up to 1 + 2**-52
        per_event = math.fsum(getattr(self, name) for name in _PER_EVENT)
        if per_event > 1.0 + _SUM_SLACK:
            raise UsageError(f"per-event fault rates add up to {per_event!r}, more than 1")
        per_stream = math.fsum((self.snapshot_conflict, self.truncate))
        if per_stream > 1.0 + _SUM_SLACK:
            raise UsageError(f"snapshot_conflict + truncate add up to {per_stream!r}, more "
                             "than 1")

    def delivery_only(self) -> list[str]:
        """The faults set here that exist only in delivery (a lost or swapped version):
        a store numbers what it appends, so they cannot be written into one."""
        return [name for name in _DELIVERY_ONLY if getattr(self, name)]

    @classmethod
    def parse(cls, text: str | None) -> FaultRates:
        """``"gap=0.01,duplicate=0.02"`` (empty or ``None``: no faults)."""
        if not text or not text.strip():
            return cls()
        values: dict[str, float] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise UsageError(f"bad fault {part!r}: use NAME=RATE with NAME one of "
                                 f"{', '.join(sorted(names))}")
            if name in values:
                raise UsageError(f"fault {name} is given twice in {text!r}")
            try:
                values[name] = rate = float(raw)
                exact = Decimal(raw.strip().replace("_", ""))
            except (ValueError, ArithmeticError):
                raise UsageError(f"bad fault rate in {part!r}: {raw!r} is not a number") \
                    from None
            if exact.is_signed() and exact != 0 and not exact.is_nan():
                raise UsageError(f"fault rate {name} must be a number in [0, 1], got "
                                 f"{raw.strip()}")
            if rate == 0.0 and exact != 0:  # so small that it is 0 as a float
                raise UsageError(f"fault rate {name}={raw.strip()} is too small to be told "
                                 f"from 0")
        return cls(**values)

    @classmethod
    def all(cls, rate: float) -> FaultRates:
        """Every per-event fault at ``rate``, every per-stream fault at ``rate``."""
        return cls(**{name: rate for name in _PER_EVENT + _PER_STREAM})

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in dataclasses.fields(self))

    def __str__(self) -> str:
        parts = [f"{k}={float(v)!r}" for k, v in self.to_dict().items() if v]  # parse() reads it
        return ",".join(parts) or "none"


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: where it is and what rehydration reports for it."""

    kind: FaultKind
    stream: str
    version: int
    detail: str = ""

    @property
    def detected_as(self) -> str:
        return DETECTED_AS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "stream": self.stream, "version": self.version,
                "detected_as": self.detected_as, "detail": self.detail}


@dataclasses.dataclass(slots=True)
class Manifest:
    """What a workload holds and every fault injected (complete once it is exhausted)."""

    seed: int
    rates: FaultRates
    at_rest: bool
    faults: list[Fault] = dataclasses.field(default_factory=list)
    events: int = 0  # order events yielded
    snapshots: int = 0  # snapshot events yielded
    streams: int = 0
    schema_v1: int = 0  # events yielded in schema version 1
    heads: dict[str, int] = dataclasses.field(default_factory=dict)  # truncated streams
    #: faults the rates drew, per kind: one draw per order event yielded (per stream for
    #: the snapshot faults); ``counts`` are those injected (see :attr:`shortfall`)
    asked: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(str(f.kind) for f in self.faults))

    @property
    def shortfall(self) -> dict[str, int]:
        """Per kind, the draws not injected (``asked`` less ``counts``): per-event draws
        that found no event where their fault is possible before the workload ended,
        snapshot faults drawn on a stream too short for one or not reached in a stream cut
        short; empty when every draw was injected."""
        counts = self.counts
        return {k: n - counts.get(k, 0) for k, n in sorted(self.asked.items())
                if n > counts.get(k, 0)}

    def by_stream(self) -> dict[str, list[Fault]]:
        out: dict[str, list[Fault]] = {}
        for f in self.faults:
            out.setdefault(f.stream, []).append(f)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rates": self.rates.to_dict(), "at_rest": self.at_rest,
                "events": self.events, "snapshots": self.snapshots, "streams": self.streams,
                "schema_v1": self.schema_v1, "fault_counts": self.counts,
                "fault_asked": dict(sorted(self.asked.items())),
                "faults": [f.to_dict() for f in self.faults]}

    def to_frame(self) -> pl.DataFrame:
        """One row per fault."""
        import polars as pl

        return pl.DataFrame([f.to_dict() for f in self.faults],
                            schema={"kind": pl.String, "stream": pl.String,
                                    "version": pl.Int64, "detected_as": pl.String,
                                    "detail": pl.String})

    def summary(self) -> str:
        counts, short = self.counts, self.shortfall
        faults = ", ".join(f"{k} {counts.get(k, 0)}" + (f" ({self.asked[k]} asked)"
                                                        if k in short else "")
                           for k in sorted(counts.keys() | short.keys())) or "no faults"
        return (f"{self.events} events in {self.streams} streams (+{self.snapshots} "
                f"snapshots), seed {self.seed}: {faults}")


# -- vocabulary ------------------------------------------------------------------------------

_CURRENCIES = ("EUR",) * 8 + ("USD",) * 6 + ("GBP",) * 3 + ("JPY",) * 2 + ("CHF",)
_OFFSETS = ((0, "Z"), (3600, "+01:00"), (7200, "+02:00"), (-18000, "-05:00"),
            (19800, "+05:30"), (-28800, "-08:00"), (32400, "+09:00"), (20700, "+05:45"),
            (-12600, "-03:30"), (0, "+00:00"))
_CARRIERS = (("dhl", 3600, "+01:00"), ("ups", -18000, "-05:00"), ("fedex", -21600, "-06:00"),
             ("usps", -18000, "-05:00"), ("la-poste", 7200, "+02:00"))
_REASONS = ("customer_request", "payment_failed", "out_of_stock", "fraud_suspected")
_STREETS = ("Hauptstraße 5", "1 Infinite Loop", "221B Baker Street", "Rue de Rivoli 10",
            "Calle Mayor 3", "Via Roma 12", "Karl Johans gate 7", "Nørrebrogade 44",
            "Ul. Marszałkowska 1", "Avenida Paulista 1000")
_CITIES = (("Berlin", "10115", "DE"), ("Cupertino", "95014", "US"), ("London", "NW1 6XE", "GB"),
           ("Paris", "75001", "FR"), ("Madrid", "28013", "ES"), ("Roma", "00185", "IT"),
           ("Oslo", "0154", "NO"), ("København", "2200", "DK"), ("Warszawa", "00-001", "PL"),
           ("São Paulo", "01310-100", "BR"), ("Zürich", "8001", "CH"), ("東京", "100-0001", "JP"))
_LINE2 = ("null", "null", "null", '"Apt 4B"', '"c/o Müller"', '"2. OG"')
_SIGNERS = ("null", '"J. Doe"', '"Müller"', '"front desk"')
_NS = 1_000_000_000
_START = 1_704_067_200 * _NS  # 2024-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _uuid_text(bits: int) -> str:
    h = f"{(bits & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _money_text(units: int, currency: str) -> str:
    if currency == "JPY":
        return str(units)
    return f"{units // 100}.{units % 100:02d}"


_DAYS: dict[int, str] = {}
_HOURS_MINUTES = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]


def _timestamp(t_ns: int, offset_s: int, offset_text: str) -> str:
    """RFC 3339 text of ``t_ns`` (epoch nanoseconds) at a UTC offset, 9 fraction digits."""
    sec, ns = divmod(t_ns, _NS)
    day, second = divmod(sec + offset_s, 86_400)
    date = _DAYS.get(day)
    if date is None:
        tm = time.gmtime(day * 86_400)
        date = _DAYS[day] = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
    minute, second = divmod(second, 60)
    return f"{date}{_HOURS_MINUTES[minute]}{second:02d}.{ns:09d}{offset_text}"


# -- one stream ------------------------------------------------------------------------------

class _Stream:
    __slots__ = ("address", "body_left", "counted", "currency", "customer_id", "id_prefix",
                 "last_t", "left", "length", "lines", "name", "next_version", "offset",
                 "order_id", "paid", "prices", "seq", "shadow", "skus", "snap_at",
                 "snap_fault", "snap_version", "t_ns", "tail", "truncate_k")

    def __init__(self) -> None:
        self.lines: dict[int, int] = {}
        self.next_version = 0
        self.seq = 0
        self.counted = False
        self.paid = False
        self.shadow: Rehydration[Any] | None = None
        self.snap_fault: str | None = None
        self.snap_at = -1
        self.snap_version = 0
        self.truncate_k = 0

    name: str
    order_id: int
    customer_id: int
    currency: str
    offset: tuple[int, str]
    t_ns: int
    last_t: int
    id_prefix: str
    skus: list[int]
    prices: dict[int, int]
    address: str
    length: int
    left: int  # planned events not generated yet
    body_left: int
    tail: list[str]


def _possible(name: str, s: _Stream, budget: int) -> bool:
    """Whether a per-event fault can be injected at the next event of ``s``, with
    ``budget`` events left to yield: a lost event (``gap``) or a swap needs two events left
    in the stream; an extra event, a duplicate and a swap need room for two events; a skew
    and an extra event need an event before (v >= 1); a shipment before payment needs a
    stream not paid yet."""
    if name == "corrupt":
        return True
    if name == "duplicate":
        return budget >= 2
    if name == "gap":
        return s.left >= 2
    if name == "reorder":
        return s.left >= 2 and budget >= 2
    if s.next_version < 1:
        return False
    if name == "clock_skew":
        return True
    if name == "invariant":
        return not s.paid and budget >= 2
    return budget >= 2  # unknown_type, foreign


class _Backlog:
    """Per-event fault draws not injected yet, per kind, and the order in which the kinds
    are served: a draw waits for the next event where its fault is possible. The kinds
    that wait take turns (the one waiting longest first; a kind with more draws left goes
    to the back after each), so that a kind with few places does not hold back others."""

    __slots__ = ("asked", "pending", "queue")

    def __init__(self, asked: dict[str, int]) -> None:
        self.asked = asked  # the manifest's: every draw, injected or not
        self.pending: dict[str, int] = {}
        self.queue: list[str] = []  # the kinds with draws pending, each once

    def add(self, kind: str) -> None:
        self.asked[kind] = self.asked.get(kind, 0) + 1
        n = self.pending.get(kind, 0)
        self.pending[kind] = n + 1
        if not n:
            self.queue.append(kind)

    def take(self, possible: Callable[[str], bool]) -> str | None:
        """The first waiting kind that is ``possible`` here (one of its draws is spent)."""
        queue = self.queue
        for i, kind in enumerate(queue):
            if possible(kind):
                del queue[i]
                n = self.pending[kind] - 1
                self.pending[kind] = n
                if n:
                    queue.append(kind)
                return kind
        return None


class Workload(Iterator[RawEvent]):
    """The iterator :func:`generate` returns; ``manifest`` fills in as it is consumed."""

    def __init__(self, n_events: int | None = None, *, n_streams: int | None = None,
                 seed: int = 0, faults: FaultRates | str | None = None,
                 schema_mix: float = 0.2, interleave: int = 16, at_rest: bool = False,
                 on_stream_end: Callable[[str], None] | None = None) -> None:
        if n_events is None and n_streams is None:
            raise UsageError("give n_events, n_streams, or both")
        if (n_events is not None and n_events < 0) or (n_streams is not None and n_streams < 1):
            raise UsageError("n_events must be >= 0 and n_streams >= 1")
        if not 0.0 <= schema_mix <= 1.0:
            raise UsageError("schema_mix must be in [0, 1]")
        if interleave < 1:
            raise UsageError("interleave must be >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            # random.Random ignores the sign of an int seed: -7 would give seed 7's bytes
            raise UsageError(f"seed must be an int >= 0, got {seed!r}")
        if faults is not None and not isinstance(faults, FaultRates | str):
            raise UsageError(f"faults must be a FaultRates, a str such as 'gap=0.01' or "
                             f"None, not {type(faults).__name__}")
        rates = faults if isinstance(faults, FaultRates) else FaultRates.parse(faults)
        if at_rest:
            bad = rates.delivery_only()
            if bad:
                raise UsageError(
                    f"{' and '.join(bad)} cannot be stored: a store numbers the events it "
                    "appends itself, so a lost or swapped version does not exist at rest. "
                    "Feed generate() to rehydrate() directly, or export_jsonl() a file that "
                    "keeps the versions")
        self.n_events = n_events
        self.n_streams = n_streams
        self.seed = seed
        self.rates = rates
        self.schema_mix = schema_mix
        self.interleave = interleave
        self.at_rest = at_rest
        self.manifest = Manifest(seed=seed, rates=rates, at_rest=at_rest)
        self._on_end = on_stream_end
        self._rng = random.Random(seed)
        self._registry: Registry | None = None
        # per-event fault thresholds, cumulative
        acc = 0.0
        self._thresholds: list[tuple[float, str]] = []
        for name in _PER_EVENT:
            rate = getattr(rates, name)
            if rate:
                acc += rate
                self._thresholds.append((acc, name))
        self._fault_total = acc
        self._backlog = _Backlog(self.manifest.asked)  # per-event draws waiting for a place
        self._stream_faults = bool(rates.snapshot_conflict or rates.truncate)
        # snapshot faults drawn on streams too short for one (not those n_events cut short:
        # the streams still open when a workload ends, as the draws still waiting then)
        self._too_short: dict[str, int] = {}
        self._length = None if n_streams is None or n_events is None else (n_events, n_streams)
        self._gen = self._run()

    def __next__(self) -> RawEvent:
        return next(self._gen)

    def __iter__(self) -> Iterator[RawEvent]:
        return self._gen  # iterate the generator itself: no extra call per event

    # -- streams ----------------------------------------------------------------------------

    def _new_stream(self, index: int) -> _Stream:
        rng = self._rng
        rnd = rng.random
        s = _Stream()
        s.order_id = (1 << 53) + 1 + rng.getrandbits(61)
        s.customer_id = (1 << 53) + 1 + rng.getrandbits(58)
        s.name = f"order-{s.order_id}"
        s.currency = _CURRENCIES[int(rnd() * len(_CURRENCIES))]
        s.offset = _OFFSETS[int(rnd() * len(_OFFSETS))]
        s.t_ns = s.last_t = _START + rng.getrandbits(55) % (366 * 86_400 * _NS)
        s.id_prefix = _uuid_text(rng.getrandbits(128))[:24]
        s.skus = [(1 << 53) + 1 + rng.getrandbits(60) for _ in range(8)]
        jpy = s.currency == "JPY"
        s.prices = {sku: (100 + int(rnd() * 49_900)) if jpy else (99 + int(rnd() * 99_900))
                    for sku in s.skus}
        s.address = self._address()
        if self._length is not None:
            total, count = self._length
            length = total // count + (1 if index < total % count else 0)
        else:
            length = 1 + 1 + int(rnd() * 7) + 3
        r = rnd()
        if length <= 1:
            tail: list[str] = []
        elif length == 2:
            tail = ["OrderCancelled"]
        elif length == 3:
            tail = ["PaymentAuthorized", "OrderShipped"]
        elif r < 0.12:
            tail = ["OrderCancelled"]
        elif r < 0.25:
            tail = ["PaymentAuthorized", "OrderShipped"]
        else:
            tail = ["PaymentAuthorized", "OrderShipped", "OrderDelivered"]
        s.tail = tail
        s.length = s.left = length
        s.body_left = max(length - 1 - len(tail), 0)
        return s

    def _plan_snapshot_fault(self, s: _Stream) -> None:
        """Draw the snapshot fault of ``s`` as it yields its first event: one draw per
        stream of the workload. A stream of fewer than 3 events cannot hold one: a draw
        there is asked and not injected (the rate is per stream long enough)."""
        rates = self.rates
        rnd = self._rng.random
        r = rnd()
        if r < rates.snapshot_conflict:
            kind = "snapshot_conflict"
        elif r < rates.snapshot_conflict + rates.truncate:
            kind = "truncate"
        else:
            return
        asked = self.manifest.asked
        asked[kind] = asked.get(kind, 0) + 1
        length = s.length
        if length < 3:
            self._too_short[kind] = self._too_short.get(kind, 0) + 1
            return
        if kind == "snapshot_conflict":
            s.snap_at = 1 + int(rnd() * (length - 2))  # conflict at version snap_at
        else:
            s.truncate_k = 1 + int(rnd() * min(3, length - 2))
        s.snap_fault = kind
        from .orders import Order
        from .rehydration import Rehydration

        s.shadow = Rehydration(self._order_registry(), Order, stream=s.name)

    def _order_registry(self) -> Registry:
        if self._registry is None:
            from .orders import order_registry

            self._registry = order_registry()
        return self._registry

    def _address(self) -> str:
        rnd = self._rng.random
        city, postal, country = _CITIES[int(rnd() * len(_CITIES))]
        street = _STREETS[int(rnd() * len(_STREETS))]
        line2 = _LINE2[int(rnd() * len(_LINE2))]
        return (f'{{"street":"{street}","city":"{city}","postal_code":"{postal}",'
                f'"country":"{country}","line2":{line2}}}')

    # -- events -----------------------------------------------------------------------------

    def _next_kind(self, s: _Stream) -> str:
        s.left -= 1
        if s.seq == 0:
            return "OrderCreated"
        if s.body_left > 0:
            s.body_left -= 1
            if not s.lines:
                return "ItemAdded"
            r = self._rng.random()
            if r < 0.6:
                return "ItemAdded"
            if r < 0.9:
                return "ItemRemoved"
            return "AddressChanged"
        if s.tail:
            return s.tail.pop(0)
        raise AssertionError("stream is past its plan")  # callers check _left()


    def _raw(self, s: _Stream, type_: str, data: str, t_ns: int, offset: tuple[int, str],
             version: int, schema_version: int = 1) -> RawEvent:
        seq = s.seq
        s.seq = seq + 1
        s.last_t = t_ns
        if schema_version == 1 and type_ in ("ItemAdded", "PaymentAuthorized"):
            self.manifest.schema_v1 += 1
        us = t_ns // 1000 + 1000 + (seq * 7919 % 250_000)  # stored a little later
        # (a float of seconds holds these microseconds exactly, and is 3x faster than
        # adding a timedelta; the rounding is Python's own, the same on every platform)
        return RawEvent(s.name, version, type_, data.encode(), b"", f"{s.id_prefix}{seq:012x}",
                        datetime.fromtimestamp(us / 1e6, UTC), None, JSON_CONTENT_TYPE,
                        schema_version)

    def _build(self, s: _Stream, kind: str, version: int, *, skew_ns: int = 0) -> RawEvent:
        """The next planned event of ``s`` (advances the stream's model)."""
        rng = self._rng
        rnd = rng.random
        s.t_ns += _NS + int(rnd() * 600 * _NS)
        t_ns = s.last_t - skew_ns if skew_ns else s.t_ns
        offset = s.offset
        oid = s.order_id
        cur = s.currency
        schema = 1
        if kind == "ItemAdded":
            sku = s.skus[int(rnd() * 8)]
            q = 1 + int(rnd() * 3)
            s.lines[sku] = s.lines.get(sku, 0) + q
            amount = _money_text(s.prices[sku], cur)
            ts = _timestamp(t_ns, *offset)
            if rnd() < self.schema_mix:
                data = (f'{{"order_id":{oid},"sku":{sku},"quantity":{q},"price":{amount},'
                        f'"currency":"{cur}","occurred_at":"{ts}"}}')
            else:
                schema = 2
                data = (f'{{"order_id":{oid},"sku":{sku},"quantity":{q},"unit_price":'
                        f'{{"amount":{amount},"currency":"{cur}"}},"occurred_at":"{ts}"}}')
        elif kind == "ItemRemoved":
            skus = list(s.lines)
            sku = skus[int(rnd() * len(skus))]
            held = s.lines[sku]
            q = held if held == 1 or rnd() < 0.5 else 1 + int(rnd() * (held - 1))
            if q == held:
                del s.lines[sku]
            else:
                s.lines[sku] = held - q
            data = (f'{{"order_id":{oid},"sku":{sku},"quantity":{q},'
                    f'"occurred_at":"{_timestamp(t_ns, *offset)}"}}')
        elif kind == "OrderCreated":
            data = (f'{{"order_id":{oid},"customer_id":{s.customer_id},"request_id":'
                    f'"{_uuid_text(rng.getrandbits(128))}","currency":"{cur}",'
                    f'"shipping_address":{s.address},'
                    f'"occurred_at":"{_timestamp(t_ns, *offset)}"}}')
        elif kind == "AddressChanged":
            s.address = self._address()
            data = (f'{{"order_id":{oid},"address":{s.address},'
                    f'"occurred_at":"{_timestamp(t_ns, *offset)}"}}')
        elif kind == "PaymentAuthorized":
            total = sum(q * s.prices[sku] for sku, q in s.lines.items())
            amount = _money_text(total, cur)
            pid = _uuid_text(rng.getrandbits(128))
            ts = _timestamp(t_ns, *offset)
            s.paid = True
            if rnd() < self.schema_mix:
                data = (f'{{"order_id":{oid},"payment_id":"{pid}","amount":{amount},'
                        f'"currency":"{cur}","occurred_at":"{ts}"}}')
            else:
                schema = 2
                data = (f'{{"order_id":{oid},"payment_id":"{pid}","amount":{{"amount":'
                        f'{amount},"currency":"{cur}"}},"occurred_at":"{ts}"}}')
        elif kind == "OrderShipped":
            carrier, off_s, off_text = _CARRIERS[int(rnd() * len(_CARRIERS))]
            offset = (off_s, off_text)
            data = (f'{{"order_id":{oid},"carrier":"{carrier}","tracking_number":'
                    f'"1Z{rng.getrandbits(64):016X}",'
                    f'"occurred_at":"{_timestamp(t_ns, *offset)}"}}')
        elif kind == "OrderDelivered":
            signer = _SIGNERS[int(rnd() * len(_SIGNERS))]
            data = (f'{{"order_id":{oid},"occurred_at":"{_timestamp(t_ns, *offset)}",'
                    f'"signed_by":{signer}}}')
        elif kind == "OrderCancelled":
            data = (f'{{"order_id":{oid},"reason":"{_REASONS[int(rnd() * 4)]}",'
                    f'"occurred_at":"{_timestamp(t_ns, *offset)}"}}')
        else:  # pragma: no cover - the plan only holds the kinds above
            raise AssertionError(kind)
        return self._raw(s, kind, data, t_ns, offset, version, schema)

    def _extra(self, s: _Stream, fault: str, version: int) -> RawEvent:
        """An injected event that is not part of the order's history."""
        rnd = self._rng.random
        t_ns = s.t_ns + 1 + int(rnd() * _NS)
        ts = _timestamp(t_ns, *s.offset)
        if fault == "unknown_type":
            return self._raw(s, "OrderArchived",
                             f'{{"order_id":{s.order_id},"occurred_at":"{ts}"}}', t_ns,
                             s.offset, version)
        if fault == "foreign":
            other = (1 << 53) + 1 + self._rng.getrandbits(61)
            return self._raw(s, "AddressChanged",
                             f'{{"order_id":{other},"address":{self._address()},'
                             f'"occurred_at":"{ts}"}}', t_ns, s.offset, version)
        # invariant: shipped before any payment
        return self._raw(s, "OrderShipped",
                         f'{{"order_id":{s.order_id},"carrier":"dhl","tracking_number":'
                         f'"1Z{self._rng.getrandbits(64):016X}","occurred_at":"{ts}"}}',
                         t_ns, s.offset, version)

    def _corrupt(self, raw: RawEvent) -> RawEvent:
        data = raw.data
        if self._rng.random() < 0.5:
            bad = data[: max(1, len(data) // 2)]  # a torn write
        else:  # the id as a string: valid JSON, wrong type
            head, sep, rest = data.partition(b'"order_id":')
            num, comma, tail = rest.partition(b",")
            bad = head + sep + b'"' + num + b'"' + comma + tail
        return msgspec.structs.replace(raw, data=bad)

    def _draw(self) -> None:
        """One order event's draw of the per-event faults: a hit waits in the backlog."""
        r = self._rng.random()
        if r < self._fault_total:
            self._backlog.add(next(n for t, n in self._thresholds if r < t))

    def _roll(self, s: _Stream, budget: int) -> str | None:
        """Draw for the next event of ``s`` and return the fault to inject there: the
        draw waiting longest (this one included) whose fault is possible at that event."""
        r = self._rng.random()  # self._draw(), inlined: this runs for every event
        backlog = self._backlog
        if r < self._fault_total:
            backlog.add(next(n for t, n in self._thresholds if r < t))
        if not backlog.queue:
            return None
        return backlog.take(lambda name: _possible(name, s, budget))

    def _record(self, kind: FaultKind, s: _Stream, version: int, detail: str = "") -> None:
        self.manifest.faults.append(Fault(kind, s.name, version, detail))

    def _advance(self, s: _Stream, budget: int) -> list[RawEvent]:
        """The events stream ``s`` emits next (its next planned event, with any fault).
        Each order event it returns is one draw of the per-event faults."""
        if s.seq == 0 and self._stream_faults:
            self._plan_snapshot_fault(s)
        if s.shadow is not None:  # no per-event fault here: its draws wait for other streams
            out = self._advance_shadowed(s)
            if self._thresholds:
                for raw in out:
                    if raw.type != "$snapshot":
                        self._draw()
            return out
        fault = self._roll(s, budget) if self._thresholds else None
        v = s.next_version
        if fault is None:
            raw = self._build(s, self._next_kind(s), v)
            s.next_version = v + 1
            return [raw]
        if fault == "gap":
            self._build(s, self._next_kind(s), v)  # lost on the way
            raw = self._build(s, self._next_kind(s), v + 1)
            s.next_version = v + 2
            self._record(FaultKind.GAP, s, v, "event lost")
            return [raw]
        if fault == "reorder":
            first = self._build(s, self._next_kind(s), v)
            second = self._build(s, self._next_kind(s), v + 1)
            s.next_version = v + 2
            self._record(FaultKind.REORDER, s, v, f"version {v + 1} delivered before {v}")
            self._draw()  # the second event yielded
            return [second, first]
        if fault == "duplicate":
            raw = self._build(s, self._next_kind(s), v)
            self._draw()  # the copy is an event yielded too
            if self.at_rest:
                s.next_version = v + 2
                self._record(FaultKind.DUPLICATE, s, v + 1, f"event {raw.id} stored twice")
                return [raw, msgspec.structs.replace(raw, version=v + 1)]
            s.next_version = v + 1
            self._record(FaultKind.DUPLICATE, s, v, f"event {raw.id} delivered twice")
            return [raw, raw]
        if fault == "clock_skew":
            skew = 600 * _NS + int(self._rng.random() * 6600 * _NS)
            raw = self._build(s, self._next_kind(s), v, skew_ns=skew)
            s.next_version = v + 1
            self._record(FaultKind.CLOCK_SKEW, s, v, f"{skew // _NS} s in the past")
            return [raw]
        if fault == "corrupt":
            raw = self._corrupt(self._build(s, self._next_kind(s), v))
            s.next_version = v + 1
            self._record(FaultKind.CORRUPT, s, v, "payload damaged")
            return [raw]
        extra = self._extra(s, fault, v)
        raw = self._build(s, self._next_kind(s), v + 1)
        s.next_version = v + 2
        self._record(FaultKind(fault), s, v, f"extra {extra.type} event")
        self._draw()  # the extra event is yielded too
        return [extra, raw]

    def _advance_shadowed(self, s: _Stream) -> list[RawEvent]:
        shadow = s.shadow
        assert shadow is not None
        v = s.next_version
        out: list[RawEvent] = []
        if s.snap_fault == "snapshot_conflict" and v == s.snap_at:
            out.append(self._conflicting_snapshot(s, v))
        if s.snap_fault == "truncate" and s.left == s.truncate_k:
            head = v + s.truncate_k - 1
            while s.left:
                shadow.feed(self._build(s, self._next_kind(s), s.next_version))
                s.next_version += 1
            snap = shadow.snapshot_now().to_raw(s.snap_version,
                                                recorded_at=_EPOCH + timedelta(
                                                    microseconds=s.t_ns // 1000 + 2000))
            s.snap_version += 1
            self.manifest.snapshots += 1
            self.manifest.heads[s.name] = head
            self._record(FaultKind.TRUNCATE, s, v,
                         f"versions {v}..{head} cut after a snapshot at {head}")
            return [snap]
        raw = self._build(s, self._next_kind(s), v)
        s.next_version = v + 1
        shadow.feed(raw)
        out.insert(0, raw)
        return out

    def _conflicting_snapshot(self, s: _Stream, version: int) -> RawEvent:
        """A snapshot at ``version`` made by a writer whose event there lost the race."""
        from .orders import Order
        from .rehydration import Rehydration

        shadow = s.shadow
        assert shadow is not None
        loser = Rehydration(self._order_registry(), Order, stream=s.name,
                            snapshot=shadow.snapshot_now())
        sku = s.skus[0]
        ts = _timestamp(s.t_ns + _NS, *s.offset)
        phantom = RawEvent(
            stream=s.name, version=version, type="ItemAdded",
            data=(f'{{"order_id":{s.order_id},"sku":{sku},"quantity":1,"unit_price":'
                  f'{{"amount":{_money_text(s.prices[sku], s.currency)},'
                  f'"currency":"{s.currency}"}},"occurred_at":"{ts}"}}').encode(),
            id=_uuid_text(self._rng.getrandbits(128)), schema_version=2)
        loser.feed(phantom)
        snap = loser.snapshot_now().to_raw(s.snap_version, recorded_at=_EPOCH + timedelta(
            microseconds=s.t_ns // 1000 + 3000))
        s.snap_version += 1
        self.manifest.snapshots += 1
        self._record(FaultKind.SNAPSHOT_CONFLICT, s, version,
                     f"snapshot after phantom event {phantom.id}")
        return snap

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> Iterator[RawEvent]:
        manifest = self.manifest
        limit = self.n_events if self.n_events is not None else 1 << 62
        max_streams = self.n_streams if self.n_streams is not None else 1 << 62
        interleave = self.interleave
        active: list[_Stream] = []
        rnd = self._rng.random
        advance = self._advance
        on_end = self._on_end
        emitted = started = 0
        while True:
            while len(active) < interleave and started < max_streams:
                active.append(self._new_stream(started))
                started += 1
            if not active or emitted >= limit:
                break
            while True:
                i = int(rnd() * len(active))
                s = active[i]
                for raw in advance(s, limit - emitted):
                    if raw.type != "$snapshot":
                        emitted += 1
                        manifest.events = emitted
                        if not s.counted:
                            s.counted = True
                            manifest.streams += 1
                    yield raw
                if not s.left:
                    active[i] = active[-1]
                    active.pop()
                    if on_end is not None:
                        on_end(s.name)
                    break  # start another stream
                if emitted >= limit:
                    break
        if on_end is not None:
            for s in active:
                on_end(s.name)
        self._warn_shortfall()

    def _warn_shortfall(self) -> None:
        """Say which faults fell short of what their rates drew by more than the end of
        the workload explains (more than 3 draws, and more than 5 % of them, not injected;
        for the snapshot faults, those drawn on streams too short for one: the streams
        that ``n_events`` cuts short are the end of the workload)."""
        manifest = self.manifest
        counts = manifest.counts
        for kind, missing in manifest.shortfall.items():
            asked = manifest.asked[kind]
            if kind in _PER_STREAM:
                missing = self._too_short.get(kind, 0)
                per, why = "stream", "drawn on streams of fewer than 3 events"
            else:
                per, why = "event", "found no event where the fault is possible"
            if missing > 3 and missing * 20 > asked:
                log.warning("%s: %d asked, %d injected (rate %g per %s): %d %s", kind,
                            asked, counts.get(kind, 0), getattr(self.rates, kind), per,
                            missing, why)


def generate(n_events: int | None = None, *, n_streams: int | None = None, seed: int = 0,
             faults: FaultRates | str | None = None, schema_mix: float = 0.2,
             interleave: int = 16, at_rest: bool = False) -> Workload:
    """An iterator of order events (see the module docstring); ``.manifest`` lists the
    injected faults once the iterator is exhausted.

    ``n_events`` alone: streams of natural length (3 to 11 events) until that many events.
    ``n_streams`` alone: that many complete streams. Both: ``n_streams`` streams sharing
    ``n_events`` (``n_streams=1`` gives one long stream: items added and removed, address
    changes). ``interleave`` streams are in progress at once, their events mixed as in a
    store's global order. ``at_rest=True`` numbers events as a store holds them (see
    :func:`write_workload`).
    """
    return Workload(n_events, n_streams=n_streams, seed=seed, faults=faults,
                    schema_mix=schema_mix, interleave=interleave, at_rest=at_rest)


@dataclasses.dataclass(slots=True)
class WorkloadWritten:
    """What :func:`write_workload` wrote."""

    manifest: Manifest
    events: int  # events appended, snapshots included
    streams: int  # streams written, snapshot streams included
    appends: int
    seconds: float
    snapshots: int = 0  # of ``events``: records in snapshot streams
    snapshot_streams: int = 0  # of ``streams``

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "streams": self.streams, "appends": self.appends,
                "snapshots": self.snapshots, "snapshot_streams": self.snapshot_streams,
                "seconds": round(self.seconds, 3), "manifest": self.manifest.to_dict()}

    def to_frame(self) -> pl.DataFrame:
        """The injected faults, one row each."""
        return self.manifest.to_frame()

    def summary(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        return (f"wrote {self.events} events to {self.streams} streams in {self.appends} "
                f"appends ({rate:,.0f} events/s); {self.manifest.summary()}")


def write_workload(store: Any, n_events: int | None = None, *, n_streams: int | None = None,
                   seed: int = 0, faults: FaultRates | str | None = None,
                   schema_mix: float = 0.2, interleave: int = 16,
                   batch_size: int = 1000,
                   progress: Callable[[int], None] | None = None) -> WorkloadWritten:
    """Generate a workload (``at_rest`` view) into ``store``: batched appends per stream,
    each with the exact expected version. ``store`` must be empty: a store that already
    holds events (of another workload, or of this one) is a
    :class:`~evtools.errors.ConcurrencyError`, and nothing is written. ``gap`` and
    ``reorder`` are refused (see the module docstring). Stores that keep one event per id
    (NATS, whose ``Nats-Msg-Id`` is the event id, and EventStoreDB) refuse the second copy
    of a ``duplicate`` fault with an error naming its id: write that fault into SQLite or
    a JSONL export.
    ``progress`` is called after each append with the order events written so far
    (snapshots not counted), so that it ends at ``n_events``."""
    if batch_size < 1:
        raise UsageError("batch_size must be >= 1")
    from .rehydration import is_snapshot_stream
    from .stores.base import NO_STREAM  # I/O at the edge: only the writer needs stores

    pending: dict[str, list[RawEvent]] = {}
    heads: dict[str, int] = {}
    counts = {"events": 0, "appends": 0, "snapshots": 0}

    def flush(stream: str) -> None:
        batch = pending.pop(stream, None)
        if not batch:
            return
        head = heads.get(stream)
        last = store.append(stream, batch, NO_STREAM if head is None else head)
        if last != batch[-1].version:
            raise StoreError(f"{stream}: the store numbered the batch up to version {last}, "
                             f"the workload up to {batch[-1].version}", stream=stream)
        heads[stream] = last
        counts["events"] += len(batch)
        if is_snapshot_stream(stream):
            counts["snapshots"] += len(batch)
        counts["appends"] += 1
        if progress is not None:  # against n_events: the snapshots written are not counted
            progress(counts["events"] - counts["snapshots"])

    def on_end(stream: str) -> None:
        flush(stream)
        flush("snapshot-" + stream)

    workload = Workload(n_events, n_streams=n_streams, seed=seed, faults=faults,
                        schema_mix=schema_mix, interleave=interleave, at_rest=True,
                        on_stream_end=on_end)
    first = next(iter(store.list_streams()), None)
    if first is not None:  # another workload's streams would mix with this one's
        raise ConcurrencyError(f"the store already holds events (stream {first!r}): "
                               "write_workload writes only into an empty store",
                               expected=NO_STREAM, stream=first)
    started = time.perf_counter()
    for raw in workload:
        batch = pending.get(raw.stream)
        if batch is None:
            batch = pending[raw.stream] = []
        batch.append(raw)
        if len(batch) >= batch_size:
            flush(raw.stream)
    for stream in list(pending):
        flush(stream)
    elapsed = time.perf_counter() - started
    log.info("wrote %d events to %d streams", counts["events"], len(heads))
    return WorkloadWritten(manifest=workload.manifest, events=counts["events"],
                           streams=len(heads), appends=counts["appends"], seconds=elapsed,
                           snapshots=counts["snapshots"],
                           snapshot_streams=sum(map(is_snapshot_stream, heads)))


def export_jsonl(events: Iterable[RawEvent], path: str | os.PathLike[str]) -> int:
    """Write ``events`` as CloudEvents JSON lines (versions kept exactly as given, faults
    included); ``open_store(path)`` reads them back. Returns the number written."""
    n = 0
    with Path(path).open("wb") as out:
        for raw in events:
            out.write(to_cloudevent(raw))
            out.write(b"\n")
            n += 1
    return n
