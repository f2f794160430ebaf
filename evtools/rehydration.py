"""Rehydration: fold a stream of ``RawEvent``s into an aggregate, with checks and snapshots.

:func:`rehydrate` runs four explicit stages (:class:`Stage`):

1. **construct**: the aggregate from a :class:`Snapshot` (hash checked, state upcast through
   the registry when its schema is older) or empty;
2. **validate**: each event in turn: stream identity, version continuity, decode through
   the :class:`~evtools.registry.Registry`, aggregate identity, causality, apply, invariants;
3. **freeze**: the aggregate becomes read-only (:meth:`~evtools.aggregate.Aggregate.freeze`);
4. **ready**: a :class:`RehydrationResult` with the aggregate, its version, every violation
   and counts.

It streams: events are consumed one at a time and never collected (a bounded reorder
buffer of at most ``reorder_window`` events is the only look-ahead), so memory does not
grow with stream length.

Checks (each violation has a :class:`ViolationKind`, the stream, the version and a message):

==================  ==========================================================================
``gap``             versions missing (a truncated or lossy log); also a stream that does not
                    start at 0 (or right after the snapshot)
``duplicate``       a version delivered twice, or the same event id at two consecutive
                    versions (a producer retry stored twice); ids are compared with the
                    previous event's only, so memory does not grow with the stream
``out_of_order``    a version that arrives after a later one (also one already reported
                    missing, or one the snapshot covers)
``truncated``       the stream ends before ``expected_version``
``clock_skew``      an event earlier than the previous event (or the snapshot) by more than
                    ``clock_skew``
``wrong_stream``    an event of another stream
``invalid_version`` a version below 0 (no position in a stream)
``wrong_aggregate`` an event whose ``id_field`` names another aggregate
``decode_error``    payload rejected by the registry (with its JSON path)
``unknown_type``    no class or upcaster for the type / schema version
``unhandled_event`` the aggregate has no handler for a decoded event
``apply_error``     a handler raised (what it changed before raising stays: the result's
                    ``partly_applied`` names that event, and no snapshot is taken of the
                    aggregate)
``invariant``       an invariant does not hold after applying an event
``snapshot_*``      the snapshot's hash does not match its state or it belongs elsewhere
                    (``snapshot_invalid``), it is ahead of the stream (``snapshot_ahead``),
                    or it disagrees with the stream (``snapshot_conflict``: the event at the
                    snapshot's version is not the one it was taken after, or replaying from
                    zero gives another state, with ``verify_snapshot=True``)
==================  ==========================================================================

``lazy=True`` leaves undecoded the payloads of event types the aggregate has no handler
for (a view that needs five event types of eight skips the rest): their versions and
whether the registry knows their type are still checked, but their payload is not
validated and, having no fields, they take no part in the identity and causality checks.

Policies: ``strict`` raises :class:`~evtools.errors.RehydrationError` carrying the first
violation. ``audit`` records every violation and goes on *where that is safe*:

* it **stops applying** (``halted_at`` says from which version) at a gap, an event it cannot
  decode or whose type it does not know, an event of another aggregate, a handler error, or
  a snapshot found inconsistent with the stream: from there the state cannot be known, and
  applying later events as if nothing happened is exactly the silent loss evtools exists to
  expose. It **keeps scanning** to the end (decode, identity, continuity and causality
  checks still run), so one pass reports every problem of the stream. A handler that
  raised may have changed the state before it did, and that stays (undoing it would take a
  copy of the state per event): its version is the result's ``partly_applied``, the
  aggregate is then not the state at any version, and :func:`take_snapshot` refuses it;
* it **skips** duplicates (already applied: re-applying would double count), events of
  another stream (they do not belong here) and versions below 0, and goes on applying;
* it **reorders** within the window: a version that arrives late is reported and applied in
  version order (events buffered behind it follow);
* it **applies and reports** clock skew and invariant violations: the recorded history
  itself says so, and the state is what that history gives;
* an invalid snapshot (hash, identity, undecodable) is dropped and the stream replayed from
  version 0, which the events must then include (a stream that starts later is a gap).

:func:`rehydrate_store` rebuilds every stream of a store (or one), loading the latest
snapshot of each from its snapshot stream (``snapshot-<stream>``, events of type
``$snapshot``), and under ``audit`` replays from zero when the snapshot is rejected.

:func:`rehydrate_events` does the same over events as a consumer received them (grouped
in memory, versions as given, so delivery faults stay visible), and
:func:`compare_with_manifest` counts, per fault kind, what a generator injected against
what was caught.

:func:`naive_rehydrate` is the anti-pattern for comparisons: payloads decoded to dicts
through a dialect, fields assigned by hand, no checks. :func:`compare_naive` counts, per
state field, the orders each naive dialect gets wrong; :func:`side_by_side` lines up a
typed state and naive ones leaf by leaf.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import msgspec

from ._accel import speedups
from ._diff import ABSENT, leaf_pairs, plain_children
from ._json import lossless
from .aggregate import _NO_EVENT, Aggregate, BoundInvariant, run_invariant, state_hash_of
from .errors import (
    Context,
    EvtoolsError,
    InputError,
    RehydrationError,
    SchemaError,
    StreamNotFound,
    UnknownEventType,
    UnknownSchemaVersion,
    UsageError,
)
from .events import (
    JSON_CONTENT_TYPE,
    SNAPSHOT_PREFIX,
    SNAPSHOT_TYPE,
    RawEvent,
    is_snapshot_stream,
    without_snapshots,
)
from .registry import Registry
from .scalars import Timestamp, dec_hook, enc_hook

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "NOT_DECODED",
    "SNAPSHOT_PREFIX",
    "SNAPSHOT_TYPE",
    "FaultLike",
    "NaiveComparison",
    "NaiveResult",
    "Policy",
    "Rehydration",
    "RehydrationResult",
    "Snapshot",
    "Stage",
    "StoreRehydration",
    "StreamSummary",
    "Violation",
    "ViolationKind",
    "compare_naive",
    "compare_with_manifest",
    "group_streams",
    "is_snapshot_stream",
    "load_snapshot",
    "naive_rehydrate",
    "rehydrate",
    "rehydrate_events",
    "rehydrate_store",
    "side_by_side",
    "snapshot_stream",
    "take_snapshot",
    "without_snapshots",
    "write_snapshot",
]

log = logging.getLogger(__name__)

#: the C loop of feed_all (None without evtools._speedups: the Python loop runs)
_Folder: Any = None if speedups is None else speedups.Folder

A = TypeVar("A", bound=Aggregate)
Policy = Literal["strict", "audit"]

SNAPSHOT_FORMAT_VERSION = 1
DEFAULT_CLOCK_SKEW = timedelta(seconds=5)
DEFAULT_REORDER_WINDOW = 64
_SNAPSHOT_NS = uuid.UUID("5b0c1d6e-2f8a-5e1b-9c4d-7a3e6f1b2c9d")


class ViolationKind(enum.StrEnum):
    GAP = "gap"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    TRUNCATED = "truncated"
    CLOCK_SKEW = "clock_skew"
    WRONG_STREAM = "wrong_stream"
    INVALID_VERSION = "invalid_version"
    WRONG_AGGREGATE = "wrong_aggregate"
    DECODE_ERROR = "decode_error"
    UNKNOWN_TYPE = "unknown_type"
    UNHANDLED = "unhandled_event"
    APPLY_ERROR = "apply_error"
    INVARIANT = "invariant"
    SNAPSHOT_INVALID = "snapshot_invalid"
    SNAPSHOT_AHEAD = "snapshot_ahead"
    SNAPSHOT_CONFLICT = "snapshot_conflict"


class Stage(enum.StrEnum):
    CONSTRUCT = "construct"
    VALIDATE = "validate"
    FREEZE = "freeze"
    READY = "ready"


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """One problem found while rebuilding an aggregate."""

    kind: ViolationKind
    stream: str | None
    version: int | None
    message: str
    event_type: str | None = None
    event_id: str | None = None
    path: str | None = None  # JSON Pointer in the payload, for decode errors

    @property
    def context(self) -> Context:
        return Context(stream=self.stream, version=self.version, event_type=self.event_type,
                       path=self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "stream": self.stream, "version": self.version,
                "message": self.message, "event_type": self.event_type,
                "event_id": self.event_id, "path": self.path}

    def __str__(self) -> str:
        where = self.context.describe()
        return f"{self.kind}: {self.message}" + (f" ({where})" if where else "")


_VIOLATION_SCHEMA = {"kind": "str", "stream": "str", "version": "int", "message": "str",
                     "event_type": "str", "event_id": "str", "path": "str"}


def violations_frame(violations: Iterable[Violation]) -> pl.DataFrame:
    """A polars DataFrame with one row per violation."""
    import polars as pl

    rows = [v.to_dict() for v in violations]
    return pl.DataFrame(rows, schema={"kind": pl.String, "stream": pl.String,
                                      "version": pl.Int64, "message": pl.String,
                                      "event_type": pl.String, "event_id": pl.String,
                                      "path": pl.String})


class FaultLike(Protocol):
    """An injected fault as the generator's manifest lists it
    (:class:`evtools.datagen.Fault`): where it is and the violation kind it is caught as."""

    @property
    def kind(self) -> Any: ...

    @property
    def detected_as(self) -> str: ...

    @property
    def stream(self) -> str: ...

    @property
    def version(self) -> int: ...


def compare_with_manifest(violations: Iterable[Violation], faults: Iterable[FaultLike] | Any
                          ) -> pl.DataFrame:
    """Injected against caught, one row per fault kind.

    ``faults`` is a manifest (anything with ``.faults``, such as
    :class:`evtools.datagen.Manifest`) or the faults themselves. Columns: ``fault`` (the
    injected kind; null for violations no fault explains), ``detected_as`` (the violation
    kind it should be caught as), ``injected``, ``caught`` (violations of that kind) and
    ``matched`` (faults with a violation of that kind at the same stream and version). When
    every fault is caught where it was injected and nothing else is reported,
    ``injected == caught == matched`` on every row.
    """
    import polars as pl

    items: Iterable[FaultLike] = getattr(faults, "faults", faults)
    found = list(violations)
    at = {(str(v.kind), v.stream, v.version) for v in found}
    caught = Counter(str(v.kind) for v in found)
    rows: dict[str, dict[str, Any]] = {}
    for f in items:
        detected = str(f.detected_as)
        row = rows.setdefault(detected, {"fault": str(f.kind), "detected_as": detected,
                                         "injected": 0, "caught": caught.get(detected, 0),
                                         "matched": 0})
        row["injected"] += 1
        row["matched"] += (detected, f.stream, f.version) in at
    for kind, n in caught.items():
        if kind not in rows:
            rows[kind] = {"fault": None, "detected_as": kind, "injected": 0, "caught": n,
                          "matched": 0}
    return pl.DataFrame(list(rows.values()),
                        schema={"fault": pl.String, "detected_as": pl.String,
                                "injected": pl.Int64, "caught": pl.Int64,
                                "matched": pl.Int64})


# -- snapshots -------------------------------------------------------------------------------

class Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The state of an aggregate at a version, with what is needed to trust it.

    ``state`` is the canonical JSON of the state (:meth:`Aggregate.state_bytes`) at
    ``schema_version`` (the aggregate's ``state_version`` when taken); ``state_hash`` is
    the hash of exactly those bytes. ``last_event_id`` is the id of the event at
    ``version``; ``timestamp`` the time of that event.
    """

    aggregate_type: str
    aggregate_id: str | None
    stream: str
    version: int
    schema_version: int
    last_event_id: str
    timestamp: Timestamp | None
    state_hash: str
    state: msgspec.Raw

    def hash_ok(self) -> bool:
        """Whether ``state_hash`` is the hash of ``state``."""
        return state_hash_of(bytes(self.state)) == self.state_hash

    def to_raw(self, version: int = 0, *, recorded_at: datetime | None = None) -> RawEvent:
        """This snapshot as an event of its snapshot stream (``snapshot-<stream>``), with
        a deterministic id."""
        return RawEvent(stream=snapshot_stream(self.stream), version=version,
                        type=SNAPSHOT_TYPE, data=_snapshot_encoder.encode(self),
                        id=str(uuid.uuid5(_SNAPSHOT_NS,
                                          f"{self.stream}:{self.version}:{self.state_hash}:"
                                          f"{self.last_event_id}")),
                        recorded_at=recorded_at, schema_version=SNAPSHOT_FORMAT_VERSION)

    @classmethod
    def from_raw(cls, raw: RawEvent) -> Snapshot:
        """Decode a ``$snapshot`` event (raises an :class:`~evtools.errors.InputError`)."""
        if raw.type != SNAPSHOT_TYPE:
            raise UnknownEventType(f"expected a {SNAPSHOT_TYPE} event, got {raw.type!r}",
                                   raw.context)
        if raw.schema_version != SNAPSHOT_FORMAT_VERSION:
            raise UnknownSchemaVersion(f"snapshot format v{raw.schema_version} is not known "
                                       f"(this evtools reads v{SNAPSHOT_FORMAT_VERSION})",
                                       raw.context)
        try:
            return _snapshot_decoder.decode(raw.data)
        except msgspec.ValidationError as e:
            raise SchemaError(f"not a snapshot: {e}", raw.context) from e
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            raise SchemaError(f"snapshot is not valid JSON: {e}", raw.context) from e


_snapshot_encoder = msgspec.json.Encoder(enc_hook=enc_hook)
_snapshot_decoder = msgspec.json.Decoder(Snapshot, dec_hook=dec_hook)


def snapshot_stream(stream: str) -> str:
    """The stream holding the snapshots of ``stream``."""
    return SNAPSHOT_PREFIX + stream


def take_snapshot(aggregate: Aggregate, *, stream: str | None = None) -> Snapshot:
    """A snapshot of ``aggregate`` at its current version (frozen or not)."""
    if not isinstance(aggregate, Aggregate):
        raise UsageError(f"take_snapshot takes an Aggregate, not {type(aggregate).__name__}")
    the_stream = stream or aggregate.stream
    partly = vars(aggregate).get(_PARTLY_APPLIED)
    if partly is not None:
        ident = aggregate.aggregate_id
        who = aggregate.aggregate_type + (f" {ident}" if ident is not None else "")
        raise UsageError(
            f"take_snapshot: {who} may hold the event at version {partly} partly applied "
            f"(its handler raised, and what it had changed stays): not the state at any "
            f"version, which a snapshot would store as the state at version "
            f"{aggregate.version}; fix the handler (or the event) and rebuild",
            stream=the_stream, version=partly)
    if the_stream is None:
        raise UsageError("take_snapshot needs the stream: the aggregate was not rebuilt by "
                         "rehydrate(); pass stream=")
    state = aggregate.snapshot_state_bytes()  # refuses a state that would not restore as is
    when = aggregate.last_event_time
    if isinstance(when, datetime):
        when = Timestamp.from_datetime(when)
    return Snapshot(aggregate_type=aggregate.aggregate_type,
                    aggregate_id=_id_text(aggregate), stream=the_stream, version=aggregate.version,
                    schema_version=aggregate.state_version,
                    last_event_id=aggregate.last_event_id, timestamp=when,
                    state_hash=state_hash_of(state), state=msgspec.Raw(state))


#: the attribute of an aggregate whose handler raised midway: that event's version (a
#: bookkeeping attribute, not state; set by Rehydration._handler_failed)
_PARTLY_APPLIED = "_evtools_partly_applied"


def _id_text(aggregate: Aggregate) -> str | None:
    """The aggregate's id as a snapshot's header holds it."""
    ident = aggregate.aggregate_id
    return None if ident is None else str(ident)


def restore(snapshot: Snapshot, aggregate_cls: type[A], registry: Registry | None = None) -> A:
    """A mutable aggregate holding the snapshot's state (no checks; see ``rehydrate``).

    A state of an older schema version is upcast through ``registry`` (the name is
    ``aggregate_cls.state_type_name()``, registered with ``register_state``).
    """
    if not isinstance(snapshot, Snapshot):
        raise UsageError(f"restore takes a Snapshot (Snapshot.from_raw reads a stored one), "
                         f"not {type(snapshot).__name__}")
    if not (isinstance(aggregate_cls, type) and issubclass(aggregate_cls, Aggregate)):
        raise UsageError(f"{aggregate_cls!r} is not an Aggregate subclass")
    data = bytes(snapshot.state)
    where = Context(stream=snapshot.stream, version=snapshot.version,
                    event_type=aggregate_cls.state_type_name(),
                    schema_version=snapshot.schema_version)
    if snapshot.schema_version == aggregate_cls.state_version:
        try:
            agg = aggregate_cls.from_state_bytes(data)
        except InputError as e:
            raise e.with_context(where) from None
    else:
        if registry is None:
            raise UnknownSchemaVersion(
                f"snapshot state is v{snapshot.schema_version}, {aggregate_cls.__qualname__} "
                f"is v{aggregate_cls.state_version}, and no registry was given to upcast it",
                where)
        struct = registry.decode_payload(aggregate_cls.state_type_name(),
                                         snapshot.schema_version, data, where)
        agg = aggregate_cls.from_state(struct)
    agg._version = snapshot.version
    agg._stream = snapshot.stream
    agg._last_event_id = snapshot.last_event_id
    agg._last_time = snapshot.timestamp
    return agg


# -- results ---------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class RehydrationResult(Generic[A]):
    """What :func:`rehydrate` found: the aggregate (frozen), its version and violations."""

    aggregate: A
    stream: str | None
    version: int  # version of the last event applied (-1: none)
    policy: Policy
    violations: list[Violation]
    events_seen: int
    events_applied: int
    events_skipped: int  # before the snapshot, duplicates, other streams
    snapshot_version: int | None  # the snapshot the state was built on (None: from zero)
    halted_at: int | None  # first version not applied because it was unsafe (audit)
    stage: Stage = Stage.READY
    # the version of an event whose handler raised: the aggregate may keep part of its
    # changes, so it is not the state at any version (no snapshot is taken of it)
    partly_applied: int | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def snapshot_rejected(self) -> bool:
        """Whether a snapshot was found inconsistent (a replay from zero may help)."""
        return any(v.kind in (ViolationKind.SNAPSHOT_INVALID, ViolationKind.SNAPSHOT_AHEAD,
                              ViolationKind.SNAPSHOT_CONFLICT) for v in self.violations)

    @property
    def counts(self) -> dict[str, int]:
        """Violations per kind."""
        return dict(Counter(str(v.kind) for v in self.violations))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "aggregate_type": self.aggregate.aggregate_type,
            "aggregate_id": _jsonable_id(self.aggregate.aggregate_id),
            "version": self.version,
            "policy": self.policy,
            "ok": self.ok,
            "events_seen": self.events_seen,
            "events_applied": self.events_applied,
            "events_skipped": self.events_skipped,
            "snapshot_version": self.snapshot_version,
            "halted_at": self.halted_at,
            "partly_applied": self.partly_applied,
            "state_hash": self.aggregate.state_hash(),
            "violation_counts": self.counts,
            "violations": [v.to_dict() for v in self.violations],
        }

    def to_frame(self) -> pl.DataFrame:
        """The violations, one row each."""
        return violations_frame(self.violations)

    def summary(self) -> str:
        head = (f"{self.aggregate.aggregate_type} {self.stream or '?'}: version {self.version}, "
                f"{self.events_applied}/{self.events_seen} events applied")
        if self.snapshot_version is not None:
            head += f" (from snapshot at {self.snapshot_version})"
        if self.ok:
            return head + ", no violations"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
        halted = f"; stopped applying at version {self.halted_at}" \
            if self.halted_at is not None else ""
        if self.partly_applied is not None:
            halted += (f"; version {self.partly_applied} partly applied: its handler raised, "
                       f"and the aggregate may keep part of that event's changes (not the "
                       f"state at any version)")
        return f"{head}; {len(self.violations)} violations ({kinds}){halted}"


def _jsonable_id(value: Any) -> str | None:
    """An aggregate id as JSON carries it exactly: as text (an int64 id above 2^53 as a
    JSON number is what JavaScript and Go consumers round)."""
    return None if value is None else str(value)


# -- the engine ------------------------------------------------------------------------------

_MISSING = object()
_NO_TIME = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)
_DEFAULT_TOLERANCE_NS = DEFAULT_CLOCK_SKEW // _MICROSECOND * 1000


class Rehydration(Generic[A]):
    """One rehydration in progress: construct on creation, :meth:`feed` events (validate),
    :meth:`finish` (freeze, ready). :func:`rehydrate` is the one-call form; use this class
    to fold events as they arrive (a subscription) or to snapshot midway."""

    # where a rehydration starts; set on the instance when they change (the immutable ones
    # are class attributes: a rehydration per short stream does not store them each time)
    events_seen = 0
    events_applied = 0
    events_skipped = 0
    halted_at: int | None = None
    partly_applied: int | None = None  # the version whose handler raised (see the result's)
    _prefix_top = -1  # the highest version read that the snapshot covers
    _max_seen = -1
    _last_id = ""  # id of the last in-order event (applied or not)
    _prev_time: Any = None  # Timestamp / datetime of the previous event
    _prev_text: str | None = None
    _prev_ns = 0  # epoch ns of _prev_ns_of, the last time whose instant was needed
    _prev_ns_of: Any = None
    _applied_version = -1
    _applied_id = ""
    _applied_time: Any = None
    # the last out_of_order violation: (its index, last version, the version they arrived
    # after, first version, whether reported missing), which the next late version extends
    _late_run: tuple[int, int, int, int, bool] | None = None
    # (decode, C loop): worked out when the first event comes (_refresh_plan)
    _decode: Callable[[RawEvent], Any] | None = None
    _folder: Any = None

    def __init__(self, registry: Registry, aggregate_cls: type[A], *,
                 stream: str | None = None, snapshot: Snapshot | RawEvent | None = None,
                 policy: Policy = "strict", clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
                 verify_snapshot: bool = False, expected_version: int | None = None,
                 reorder_window: int = DEFAULT_REORDER_WINDOW, lazy: bool = False) -> None:
        if policy not in ("strict", "audit"):
            raise UsageError(f"policy must be 'strict' or 'audit', not {policy!r}")
        if not (isinstance(aggregate_cls, type) and issubclass(aggregate_cls, Aggregate)):
            raise UsageError(f"{aggregate_cls!r} is not an Aggregate subclass")
        if not callable(getattr(registry, "decode", None)):  # a Registry, or one like it
            raise UsageError(f"registry must be an evtools Registry, not {registry!r}")
        if type(reorder_window) is not int or reorder_window < 0:
            raise UsageError(f"reorder_window must be an int >= 0, not {reorder_window!r}")
        if not isinstance(clock_skew, timedelta) or clock_skew < _NO_TIME:
            raise UsageError(f"clock_skew must be a timedelta >= 0 (e.g. "
                             f"timedelta(seconds=5)), not {clock_skew!r}")
        if expected_version is not None and type(expected_version) is not int:
            raise UsageError(f"expected_version must be an int or None, not "
                             f"{expected_version!r}")
        if stream is not None and not isinstance(stream, str):
            raise UsageError(f"stream must be a stream name (str) or None, not {stream!r}")
        if snapshot is not None and not isinstance(snapshot, Snapshot | RawEvent):
            raise UsageError(f"snapshot must be a Snapshot (take_snapshot) or its RawEvent "
                             f"(load_snapshot), not {type(snapshot).__name__}")
        self.registry = registry
        self.aggregate_cls = aggregate_cls
        self.policy: Policy = policy
        self.stream = stream
        self.clock_skew = clock_skew
        self.expected_version = expected_version
        self.reorder_window = reorder_window
        self.stage = Stage.CONSTRUCT
        self.violations: list[Violation] = []
        self._strict = policy == "strict"
        self._tolerance_ns = _DEFAULT_TOLERANCE_NS if clock_skew == DEFAULT_CLOCK_SKEW \
            else clock_skew // _MICROSECOND * 1000
        self._buffer: dict[int, RawEvent] = {}
        self._gaps: list[tuple[int, int]] = []  # versions reported missing, first..last
        self._construct(snapshot, verify_snapshot)
        self._lazy = lazy

    # -- construct --------------------------------------------------------------------------

    def _construct(self, snapshot: Snapshot | RawEvent | None, verify: bool) -> None:
        cls = self.aggregate_cls
        snap: Snapshot | None = None
        agg: A | None = None
        if isinstance(snapshot, RawEvent):
            try:
                snap = Snapshot.from_raw(snapshot)
            except InputError as e:
                self._violate(ViolationKind.SNAPSHOT_INVALID, snapshot.version,
                              f"snapshot cannot be read: {e.message}", stream=snapshot.stream,
                              event_type=snapshot.type, event_id=snapshot.id)
        elif snapshot is not None:
            snap = snapshot
        if snap is not None:
            if self.stream is None:
                self.stream = snap.stream
            problem = self._snapshot_problem(snap)
            if problem is not None:
                self._violate(ViolationKind.SNAPSHOT_INVALID, snap.version, problem,
                              event_type=SNAPSHOT_TYPE)
                snap = None
            elif not verify:
                try:
                    agg = restore(snap, cls, self.registry)
                except InputError as e:
                    self._violate(ViolationKind.SNAPSHOT_INVALID, snap.version,
                                  f"snapshot state cannot be restored: {e.message}",
                                  event_type=SNAPSHOT_TYPE, path=e.context.path)
                    snap = None
                else:
                    if _id_text(agg) != snap.aggregate_id:
                        self._violate(ViolationKind.SNAPSHOT_INVALID, snap.version,
                                      f"the snapshot names aggregate {snap.aggregate_id}, "
                                      f"but its state is of aggregate {_id_text(agg)}",
                                      event_type=SNAPSHOT_TYPE)
                        snap = agg = None
        self._verify: Snapshot | None = snap if verify else None
        self.snapshot: Snapshot | None = None if verify else snap
        self.aggregate: A = agg if agg is not None else cls()
        if self.snapshot is not None:
            self.expected = self.snapshot.version + 1
            self._prefix_until = self.snapshot.version
            self._applied_version = self.snapshot.version
            self._applied_id = self.snapshot.last_event_id
            self._applied_time = self.snapshot.timestamp
            self._prev_time = self.snapshot.timestamp
            self._last_id = self.snapshot.last_event_id
        else:
            self.expected = 0
            self._prefix_until = -1
        self._in_prefix = self._prefix_until >= 0
        # called as handler(aggregate, event), check(aggregate[, event])
        self._handlers, self._invariants = cls._dispatch_tables()
        self._id_field = cls.id_field
        self._time_field = cls.time_field
        self._ignore_unhandled = cls.ignore_unhandled
        self.stage = Stage.VALIDATE

    def _snapshot_problem(self, snap: Snapshot) -> str | None:
        cls = self.aggregate_cls
        if snap.aggregate_type != cls.aggregate_type:
            return (f"snapshot is of a {snap.aggregate_type}, not a {cls.aggregate_type}")
        if self.stream is not None and snap.stream != self.stream:
            return f"snapshot is of stream {snap.stream!r}, not {self.stream!r}"
        if not snap.hash_ok():
            return (f"snapshot state does not match its hash {snap.state_hash} (hash of the "
                    f"state: {state_hash_of(bytes(snap.state))})")
        if snap.version < 0:
            return f"snapshot version {snap.version} is negative"
        return None

    # -- violations -------------------------------------------------------------------------

    def _violate(self, kind: ViolationKind, version: int | None, message: str, *,
                 raw: RawEvent | None = None, stream: str | None = None,
                 event_type: str | None = None, event_id: str | None = None,
                 path: str | None = None) -> None:
        v = Violation(kind=kind, stream=stream or self.stream, version=version,
                      message=message,
                      event_type=event_type if raw is None else raw.type,
                      event_id=event_id if raw is None else (raw.id or None), path=path)
        if self._strict:
            raise RehydrationError(f"{kind}: {message}", violation=v, context=v.context)
        self.violations.append(v)
        log.debug("rehydration violation: %s", v)

    def _halt(self, version: int) -> None:
        if self.halted_at is None:
            self.halted_at = version
            log.debug("stream %r: stopped applying at version %d", self.stream, version)

    # -- validate ---------------------------------------------------------------------------

    def feed(self, raw: RawEvent) -> None:
        """Validate (and, where safe, apply) one event."""
        if self.stage is not Stage.VALIDATE:
            raise UsageError(f"this rehydration is {self.stage}: it takes no more events",
                             stream=self.stream)
        try:
            version = raw.version
            rid = raw.id
            raw_stream = raw.stream
        except AttributeError:
            raise UsageError(f"feed takes a RawEvent (from a store's read_stream, "
                             f"RawEvent.new or registry.to_raw), not {type(raw).__name__}",
                             stream=self.stream) from None
        # a RawEvent built by hand is not checked (RawEvent.check): the fields read here
        if type(version) is not int and (not isinstance(version, int)
                                         or isinstance(version, bool)):
            raise _misbuilt(raw, "version")
        if type(rid) is not str and not isinstance(rid, str):
            raise _misbuilt(raw, "id")
        stream = self.stream
        if raw_stream != stream or stream is None:
            if not isinstance(raw_stream, str) or not raw_stream:
                raise _misbuilt(raw, "stream")
            self.events_seen += 1
            if stream is None:
                self.stream = raw_stream
            else:
                self._violate(ViolationKind.WRONG_STREAM, version,
                              f"event of stream {raw_stream!r} read in stream {stream!r}",
                              raw=raw, stream=stream)
                self.events_skipped += 1
                return
        else:
            self.events_seen += 1
        if version < 0:
            self.events_skipped += 1
            self._violate(ViolationKind.INVALID_VERSION, version,
                          f"version {version} is below 0: a version is the 0-based position "
                          f"of the event in its stream (skipped)", raw=raw)
            return
        if version > self._max_seen:
            self._max_seen = version
        if version == self.expected and not self._buffer:
            self._in_order(raw)
        else:
            self._out_of_line(raw)

    def feed_all(self, events: Iterable[RawEvent]) -> None:
        """:meth:`feed` each event, consuming ``events`` lazily.

        The same checks as :meth:`feed`, with the common case (the next version, nothing
        unusual) run inline; anything else goes through :meth:`feed`. The common case runs
        in C where ``evtools._speedups`` was built (:meth:`_feed_all_python` is the same
        loop in Python, and takes over from the C one at anything it does not handle).
        """
        if self.stage is not Stage.VALIDATE:
            raise UsageError(f"this rehydration is {self.stage}: it takes no more events",
                             stream=self.stream)
        try:
            events = iter(events)
        except TypeError:
            raise UsageError(f"events must be an iterable of RawEvent, not "
                             f"{type(events).__name__}", stream=self.stream) from None
        decode = self._refresh_plan()  # each call: the registry may have changed since
        if self._folder is not None:
            left = self._folder.run(self, events, self._tolerance_ns)
            if left is None:
                return
            if left is not NotImplemented:  # an event the C loop does not take
                events = itertools.chain((left,), events)
        self._feed_all_python(events, decode)

    def _refresh_plan(self) -> Callable[[RawEvent], Any]:
        """The decode and the C loop for the registry as it is now (a cached lookup)."""
        self._decode, self._folder = _fold_plan(self.registry, self.aggregate_cls,
                                                self._lazy, self._handlers, self._invariants)
        return self._decode

    def _feed_all_python(self, events: Iterator[RawEvent],
                         decode: Callable[[RawEvent], Any]) -> None:
        """:meth:`feed_all`'s loop in Python (the reference for the C one)."""
        handlers = self._handlers
        invariants = self._invariants
        agg = self.aggregate
        id_field = self._id_field
        time_field = self._time_field or "\0"  # no such attribute: every event falls back
        no_invariants: tuple[BoundInvariant, ...] = ()
        stamp = Timestamp
        an_int, a_str = int, str
        missing = _MISSING
        not_decoded = NOT_DECODED
        feed = self.feed

        # the per-event state, kept in locals between slow-path calls
        expected = last_id = prev_time = prev_text = None
        prev_suffix = ""  # the last 6 characters of prev_text (its offset)
        seen = applied = top = 0
        applied_version: int = 0
        applied_id: str = ""
        applied_time: Any = None
        stream: str | None = None
        clean = False
        synced = True  # whether self holds the locals' state (nothing to store)

        def load() -> None:
            nonlocal expected, last_id, prev_time, prev_text, prev_suffix, seen, applied
            nonlocal applied_version, applied_id, applied_time, stream, clean, top, synced
            synced = True
            expected = self.expected
            top = self._max_seen
            last_id = self._last_id
            prev_time = self._prev_time
            prev_text = self._prev_text
            prev_suffix = prev_text[-6:] if prev_text is not None else ""
            seen = self.events_seen
            applied = self.events_applied
            applied_version = self._applied_version
            applied_id = self._applied_id
            applied_time = self._applied_time
            stream = self.stream
            clean = (stream is not None and not self._buffer and self.halted_at is None
                     and self._verify is None and not self._in_prefix)

        def store() -> None:
            nonlocal synced
            synced = True
            self.expected = expected  # type: ignore[assignment]
            self._last_id = last_id  # type: ignore[assignment]
            self._prev_time = prev_time
            self._prev_text = prev_text
            self.events_seen = seen
            self.events_applied = applied
            self._applied_version = applied_version
            self._applied_id = applied_id
            self._applied_time = applied_time
            self._max_seen = top

        load()
        raw: Any = None
        try:
            for raw in events:
                version = raw.version
                rid = raw.id
                # (feed() says what is wrong with a field of another type)
                if (not clean or version != expected or raw.stream != stream
                        or (rid == last_id and rid) or type(version) is not an_int
                        or type(rid) is not a_str):
                    store()
                    feed(raw)
                    load()
                    continue
                try:
                    event = decode(raw)
                except InputError:
                    store()
                    feed(raw)  # decodes again and reports it
                    load()
                    continue
                if id_field is not None:
                    theirs = getattr(event, id_field, missing)
                    if theirs is not missing:
                        ours = getattr(agg, id_field)
                        if ours is not None and theirs != ours:
                            store()
                            feed(raw)
                            load()
                            continue
                synced = False  # from here the locals are ahead of self
                seen += 1
                expected = version + 1
                top = version
                last_id = rid
                when = getattr(event, time_field, None)
                if type(when) is stamp:
                    text = when._text  # what str() gives, without a call or a new object
                    # same width, same offset (its last 6 characters), an upper-case "T" (RFC
                    # 3339's "t" sorts after it), text not earlier: the text orders like the
                    # instant
                    if not (prev_text is not None and len(text) == len(prev_text)
                            and text >= prev_text and text[10] == "T"
                            and text.endswith(prev_suffix)):
                        self._prev_time = prev_time
                        self._prev_text = prev_text
                        self._check_time(when, raw)
                        prev_suffix = text[-6:]
                    prev_time = when
                    prev_text = text
                else:
                    if when is None and event is not not_decoded:
                        when = raw.recorded_at
                    if when is not None:
                        if not (type(when) is datetime and type(prev_time) is datetime
                                and when.tzinfo is not None and prev_time.tzinfo is not None
                                and when >= prev_time):
                            self._prev_time = prev_time
                            self._prev_text = prev_text
                            self._check_time(when, raw)
                        prev_time = when
                        prev_text = None
                cls = type(event)
                handler = handlers.get(cls)
                if handler is None:
                    store()
                    self._unhandled(raw, event, when)
                    load()
                    continue
                try:
                    handler(agg, event)
                except Exception as e:  # a handler bug or a domain refusal: the state is unknown
                    store()
                    self._handler_failed(raw, event, e)
                    load()
                    continue
                applied += 1
                applied_version = version
                applied_id = rid
                if when is not None:
                    applied_time = when
                for name, check, takes_event in invariants.get(cls, no_invariants):
                    try:
                        outcome = check(agg, event) if takes_event else check(agg)
                    except Exception:  # run_invariant turns it into the message
                        outcome = False
                    if outcome is not True and outcome is not None:
                        message = run_invariant(name, getattr(agg, name),
                                                event if takes_event else _NO_EVENT)
                        if message is not None:
                            self._violate(ViolationKind.INVARIANT, version, message, raw=raw)
        except BaseException as e:
            if not synced:  # what was applied stays counted, as feed() leaves it
                store()
            if isinstance(e, AttributeError) and not isinstance(raw, RawEvent):
                raise UsageError(f"events must be RawEvent objects (from a store's "
                                 f"read_stream, RawEvent.new or registry.to_raw), not "
                                 f"{type(raw).__name__}", stream=self.stream) from None
            raise
        store()

    def _invariant_violated(self, raw: RawEvent, message: str) -> None:
        self._violate(ViolationKind.INVARIANT, raw.version, message, raw=raw)

    def _unhandled(self, raw: RawEvent, event: Any, when: Any) -> None:
        if not self._ignore_unhandled:
            what = raw.type if event is NOT_DECODED else type(event).__qualname__
            self._violate(ViolationKind.UNHANDLED, raw.version,
                          f"{self.aggregate.aggregate_type} has no handler for {what}",
                          raw=raw)
        self._applied(raw, when)

    def _handler_failed(self, raw: RawEvent, event: Any, e: Exception) -> None:
        """A handler raised (both loops and feed() come here): what it changed before
        raising stays in the aggregate, which is then not the state at any version. Said on
        the result, and on the aggregate itself, so that take_snapshot refuses it."""
        version = raw.version
        if self.partly_applied is None:
            self.partly_applied = version
            vars(self.aggregate)[_PARTLY_APPLIED] = version
        said = e.message if isinstance(e, EvtoolsError) else e  # its place is the event's
        self._violate(ViolationKind.APPLY_ERROR, version,
                      f"handler for {type(event).__qualname__} raised "
                      f"{type(e).__name__}: {said}; the aggregate may keep part of this "
                      f"event's changes (not the state at any version): no snapshot is taken "
                      f"of it", raw=raw)
        self._halt(version)

    def _out_of_line(self, raw: RawEvent) -> None:
        version = raw.version
        expected = self.expected
        if version < expected:
            self.events_skipped += 1
            if version <= self._prefix_until:  # covered by the snapshot: not applied
                if self._in_prefix:
                    self._prefix_top = max(self._prefix_top, version)
                elif version <= self._prefix_top:  # read before the snapshot's end
                    self._violate(ViolationKind.DUPLICATE, version,
                                  f"version {version} delivered again after version "
                                  f"{self._max_seen}", raw=raw)
                    return
                else:
                    self._violate(ViolationKind.OUT_OF_ORDER, version,
                                  f"version {version} (covered by the snapshot at "
                                  f"{self._prefix_until}) arrived after version "
                                  f"{self._max_seen}", raw=raw)
                if version == self._prefix_until:
                    self._check_boundary(raw)
                return
            if any(first <= version <= last for first, last in self._gaps):
                self._late(raw, self._max_seen, missing=True)
                return
            message = f"version {version} delivered again after version {expected - 1}"
            if version == expected - 1 and raw.id and self._last_id:
                if raw.id == self._last_id:
                    message += " (same event id)"
                else:  # two events claim one version: not a redelivery
                    message += (f" by another event, {raw.id} (skipped), where version "
                                f"{version} is event {self._last_id}: two writers appended "
                                f"at version {version} and the store kept both")
            self._violate(ViolationKind.DUPLICATE, version, message, raw=raw)
            return
        if version == expected:  # the buffer holds later versions: this one came late
            self._late(raw, max(self._buffer))
            self._in_order(raw)
            self._drain()
            return
        if version in self._buffer:
            self.events_skipped += 1
            self._violate(ViolationKind.DUPLICATE, version,
                          f"version {version} delivered twice", raw=raw)
            return
        if self._buffer:
            later = max(self._buffer)
            if version < later:  # waiting behind a gap, and late even so
                self._late(raw, later)
        self._buffer[version] = raw
        if len(self._buffer) > self.reorder_window:
            self._gap()

    def _late(self, raw: RawEvent, later: int, *, missing: bool = False) -> None:
        """Report ``raw`` as arriving after version ``later`` (``missing``: after its gap
        was declared). The versions that follow it, late after the same event, join its
        violation ("versions 3..10 arrived after version 1000"): one event delivered early,
        or numbered far ahead, is one violation, not one per event behind it."""
        version = raw.version
        run = self._late_run
        if run is not None and run[1] == version - 1 and run[2] == later \
                and run[4] == missing:
            index, _, _, first, _ = run
            self.violations[index] = dataclasses.replace(
                self.violations[index],
                message=f"versions {first}..{version} arrived after version {later}"
                + (", too late: they were reported missing" if missing else ""))
            self._late_run = (index, version, later, first, missing)
            return
        self._violate(ViolationKind.OUT_OF_ORDER, version,
                      f"version {version} arrived after version {later}"
                      + (", too late: it was reported missing" if missing else ""), raw=raw)
        self._late_run = (len(self.violations) - 1, version, later, version, missing)

    def _drain(self) -> None:
        buffer = self._buffer
        while self.expected in buffer:
            self._in_order(buffer.pop(self.expected))

    def _gap(self) -> None:
        first = self.expected
        nxt = min(self._buffer)
        missing = f"version {first}" if nxt == first + 1 else f"versions {first}..{nxt - 1}"
        after = self._buffer[nxt]
        # the row is the missing version's: its type and id are unknown, so the event
        # that came next is named in the message only
        self._gaps.append((first, nxt - 1))
        jump = f"starts at version {nxt}" if first == 0 \
            else f"jumps from {first - 1} to {nxt}"
        self._violate(ViolationKind.GAP, first,
                      f"{missing} missing: the stream {jump} (next: {after.type}"
                      + (f", event {after.id})" if after.id else ")"))
        self._halt(first)
        self.expected = nxt
        self._drain()

    def _check_boundary(self, raw: RawEvent) -> None:
        snap = self.snapshot
        assert snap is not None
        if snap.last_event_id and raw.id and raw.id != snap.last_event_id:
            self._violate(
                ViolationKind.SNAPSHOT_CONFLICT, raw.version,
                f"the snapshot at version {snap.version} was taken after event "
                f"{snap.last_event_id}, but the stream holds event {raw.id} there (a "
                "snapshot written by a concurrent writer whose append lost)", raw=raw)
            self._halt(snap.version + 1)

    def _in_order(self, raw: RawEvent) -> None:
        """An event at the expected version: decode, check, apply."""
        version = raw.version
        self.expected = version + 1
        self._in_prefix = False
        if raw.id and raw.id == self._last_id:
            self.events_skipped += 1
            self._violate(ViolationKind.DUPLICATE, version,
                          f"event {raw.id} at version {version} repeats version {version - 1} "
                          "(stored twice)", raw=raw)
            self._verify_if_due(raw)  # skipped: the state there is the one before
            return
        self._last_id = raw.id
        try:
            event = (self._decode or self._refresh_plan())(raw)
        except (UnknownEventType, UnknownSchemaVersion) as e:
            if not isinstance(raw.type, str) or not raw.type:
                raise _misbuilt(raw, "type") from None
            self._violate(ViolationKind.UNKNOWN_TYPE, version, e.message, raw=raw)
            self._halt(version)
            return
        except InputError as e:
            self._violate(ViolationKind.DECODE_ERROR, version, e.message, raw=raw,
                          path=e.context.path)
            self._halt(version)
            return
        agg = self.aggregate
        id_field = self._id_field
        if id_field is not None:
            theirs = getattr(event, id_field, _MISSING)
            if theirs is not _MISSING:
                ours = getattr(agg, id_field)
                if ours is not None and theirs != ours:
                    self._violate(ViolationKind.WRONG_AGGREGATE, version,
                                  f"event of {id_field} {theirs} in the stream of "
                                  f"{agg.aggregate_type} {ours}", raw=raw)
                    self._halt(version)
                    return
        when = getattr(event, self._time_field, None) if self._time_field else None
        if when is None and event is not NOT_DECODED:
            when = raw.recorded_at
        if when is not None:
            self._check_time(when, raw)
        if self.halted_at is not None:
            return
        handler = self._handlers.get(type(event))
        if handler is None:
            self._unhandled(raw, event, when)
            self._verify_if_due(raw)  # a snapshot may be taken at an event ignored
            return
        try:
            handler(agg, event)
        except Exception as e:  # a handler bug or a domain refusal: the state is unknown
            self._handler_failed(raw, event, e)
            return
        self.events_applied += 1
        self._applied(raw, when)
        for name, _, takes_event in self._invariants.get(type(event), ()):
            message = run_invariant(name, getattr(agg, name),
                                    event if takes_event else _NO_EVENT)
            if message is not None:
                self._violate(ViolationKind.INVARIANT, version, message, raw=raw)
        if self._verify is not None:
            self._verify_if_due(raw)

    def _applied(self, raw: RawEvent, when: Any) -> None:
        self._applied_version = raw.version
        self._applied_id = raw.id
        if when is not None:  # an event without a time keeps the last one known
            self._applied_time = when

    def _check_time(self, when: Any, raw: RawEvent) -> None:
        prev = self._prev_time
        self._prev_time = when
        if type(when) is Timestamp:
            text = str(when)
            prev_text = self._prev_text
            self._prev_text = text
            if prev is None:
                return
            # same offset, same width, "T" (not "t"): the text orders like the instant
            if (prev_text is not None and len(text) == len(prev_text) and text >= prev_text
                    and text[10] == "T" and text[-6:] == prev_text[-6:]):
                return
            # other offsets (producers in other zones): compare the instants to the
            # microsecond, in C. Each side drops under 1 us, so a difference below the
            # tolerance by a whole microsecond is below it exactly.
            if type(prev) is Timestamp and prev._datetime - when._datetime < self.clock_skew:
                return
        else:
            self._prev_text = None
            if prev is None:  # nothing to compare with, but a naive time never compares
                try:
                    _epoch_ns(when)
                except UsageError as e:
                    raise e.with_context(raw.context) from None
                return
        # an instant is computed once: the next event compares against this one's
        try:
            prev_ns = self._prev_ns if self._prev_ns_of is prev else _epoch_ns(prev)
            when_ns = _epoch_ns(when)
        except UsageError as e:  # a naive datetime: name the event it came with
            raise e.with_context(raw.context) from None
        self._prev_ns, self._prev_ns_of = when_ns, when
        late_ns = prev_ns - when_ns
        if late_ns > self._tolerance_ns:
            whose = "the snapshot's time" if self.snapshot is not None \
                and prev is self.snapshot.timestamp else "the previous event's"
            self._violate(ViolationKind.CLOCK_SKEW, raw.version,
                          f"event time {when} is {_describe_ns(late_ns)} earlier than "
                          f"{whose} {prev} (tolerance {self.clock_skew})", raw=raw)

    def _verify_if_due(self, raw: RawEvent) -> None:
        """With ``verify_snapshot``: compare at the snapshot's version, however the event
        there was taken (applied, ignored by the aggregate, or skipped as stored twice)."""
        if self._verify is not None and raw.version == self._verify.version \
                and self.halted_at is None:
            self._verify_against(raw)

    def _verify_against(self, raw: RawEvent) -> None:
        snap = self._verify
        assert snap is not None
        replayed = self.aggregate.state_bytes()
        if state_hash_of(replayed) != snap.state_hash and not self._same_state(snap):
            self._violate(ViolationKind.SNAPSHOT_CONFLICT, snap.version,
                          f"replaying from version 0 gives state {state_hash_of(replayed)} at "
                          f"version {snap.version}; the snapshot holds {snap.state_hash}",
                          event_type=SNAPSHOT_TYPE)
        elif snap.last_event_id and raw.id and raw.id != snap.last_event_id:
            self._violate(ViolationKind.SNAPSHOT_CONFLICT, snap.version,
                          f"the snapshot was taken after event {snap.last_event_id}, but the "
                          f"stream holds event {raw.id} at version {snap.version}",
                          event_type=SNAPSHOT_TYPE)
        elif _id_text(self.aggregate) != snap.aggregate_id:
            self._violate(ViolationKind.SNAPSHOT_CONFLICT, snap.version,
                          f"the snapshot names aggregate {snap.aggregate_id}, but the stream "
                          f"rebuilds aggregate {_id_text(self.aggregate)}",
                          event_type=SNAPSHOT_TYPE)

    def _same_state(self, snap: Snapshot) -> bool:
        """Whether the snapshot's state equals the replayed one although their bytes differ
        (equal sets can list their members in another order)."""
        try:
            return restore(snap, self.aggregate_cls, self.registry) == self.aggregate
        except InputError:
            return False

    # -- freeze, ready ----------------------------------------------------------------------

    def _close_checks(self) -> None:
        while self._buffer:
            self._gap()
        last = self.expected - 1
        ev = self.expected_version
        if ev is not None and last < ev:
            self._violate(ViolationKind.TRUNCATED, last + 1,
                          f"the stream ends at version {last}, but its head is version {ev}")
        snap = self.snapshot or self._verify
        if snap is not None and (self.events_seen or ev is not None):
            seen = max(self._max_seen, -1 if ev is None else ev)
            if seen < snap.version:
                self._violate(ViolationKind.SNAPSHOT_AHEAD, seen + 1,
                              f"the snapshot is at version {snap.version} but the stream ends "
                              f"at version {seen} (log truncated, or a snapshot of another "
                              "history)", event_type=SNAPSHOT_TYPE)
                if self.snapshot is not None:  # its state is ahead of the stream's
                    self._halt(seen + 1)  # (verified, the state is the replay's: no halt)

    def sync_aggregate(self) -> A:
        """Write the bookkeeping (version, stream, last event) into the aggregate."""
        agg = self.aggregate
        if not agg.frozen:
            agg._version = self._applied_version
            agg._stream = self.stream
            agg._last_event_id = self._applied_id
            agg._last_time = self._applied_time
        return agg

    def snapshot_now(self) -> Snapshot:
        """A snapshot of the state so far (for writers and generators)."""
        return take_snapshot(self.sync_aggregate(), stream=self.stream)

    def finish(self, *, freeze: bool = True) -> RehydrationResult[A]:
        """Run the end-of-stream checks, freeze, and return the result (once)."""
        if self.stage is not Stage.VALIDATE:
            raise UsageError(f"this rehydration is {self.stage}: finish() runs once",
                             stream=self.stream)
        self._close_checks()
        self.stage = Stage.FREEZE
        agg = self.sync_aggregate()
        if freeze:
            agg.freeze()
        self.stage = Stage.READY
        return RehydrationResult(
            aggregate=agg, stream=self.stream, version=self._applied_version,
            policy=self.policy, violations=self.violations, events_seen=self.events_seen,
            events_applied=self.events_applied, events_skipped=self.events_skipped,
            snapshot_version=self.snapshot.version if self.snapshot is not None else None,
            halted_at=self.halted_at, stage=self.stage, partly_applied=self.partly_applied)


_WANTED = {"version": "an int >= 0 (the 0-based position in the stream)",
           "stream": "a non-empty str", "id": "a str", "type": "a non-empty str"}


def _misbuilt(raw: RawEvent, field: str) -> UsageError:
    """The error for an event whose ``field`` holds a value of the wrong type (a RawEvent
    built by hand: its constructor checks nothing)."""
    stream, version, kind = raw.stream, raw.version, raw.type
    return UsageError(
        f"RawEvent {field} must be {_WANTED[field]}, not {getattr(raw, field)!r}; build "
        f"events with RawEvent.new, which checks their fields (RawEvent(...) does not)",
        stream=stream if isinstance(stream, str) else None,
        version=version if type(version) is int else None,
        event_type=kind if isinstance(kind, str) else None)


class _NotDecoded:
    """Stands for a payload :func:`rehydrate` left undecoded (``lazy=True``): no handler
    needs it. It has no fields, so no identity or causality check uses it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_DECODED"


NOT_DECODED = _NotDecoded()


def _fold_plan(registry: Registry, aggregate_cls: type[Aggregate], lazy: bool,
               handlers: dict[type, Any], invariants: dict[Any, Any]
               ) -> tuple[Callable[[RawEvent], Any], Any]:
    """``(decode, folder)`` of a rehydration: the registry's decode (or, ``lazy``, one that
    leaves unhandled types undecoded) and the C loop's constants (``None`` without
    ``evtools._speedups``), worked out once per registry and aggregate class."""
    cache = registry._derived if isinstance(registry, Registry) else None
    key = ("fold", aggregate_cls, lazy, _Folder)  # (_Folder is None in the Python tests)
    settings = (handlers, invariants, aggregate_cls.id_field, aggregate_cls.time_field,
                aggregate_cls.ignore_unhandled, getattr(registry, "duplicate_keys", None),
                getattr(registry, "max_payload_bytes", None),
                getattr(registry, "unknown_fields", None))
    if cache is not None:
        hit = cache.get(key)
        # the tables are rebuilt when a method is replaced: then so is the plan
        if hit is not None and hit[0][0] is handlers and hit[0][1] is invariants \
                and hit[0][2:] == settings[2:]:
            return hit[1], hit[2]
    needed = _handled_types(registry, aggregate_cls) if lazy else None
    decode = _handled_only(registry, needed) if needed is not None else registry.decode
    folder = None
    if _Folder is not None:
        fast = None
        plain = isinstance(registry, Registry) and type(registry).decode is Registry.decode
        if plain:
            fast = registry._fast_decoders()
            if needed is not None:  # the other types go to _handled_only: NOT_DECODED
                fast = {name: entry for name, entry in fast.items() if name in needed}
        folder = _Folder(decode=decode, fast_decoders=fast,
                         lossless_decode=lossless.decode if plain else None,
                         encode=registry._encoder.encode if plain else None,
                         reject_duplicates=plain and registry.duplicate_keys == "reject",
                         max_payload=min(registry.max_payload_bytes, sys.maxsize)
                         if plain else 0,
                         json_content_type=JSON_CONTENT_TYPE, handlers=handlers,
                         invariants=invariants, id_field=aggregate_cls.id_field,
                         time_field=aggregate_cls.time_field or None,
                         ignore_unhandled=bool(aggregate_cls.ignore_unhandled),
                         timestamp_cls=Timestamp, raw_event_cls=RawEvent,
                         not_decoded=NOT_DECODED, input_error=InputError, no_event=_NO_EVENT,
                         run_invariant=run_invariant)
    if cache is not None:
        cache[key] = (settings, decode, folder)
    return decode, folder


def _handled_types(registry: Registry, aggregate_cls: type[Aggregate]) -> set[str]:
    """The type names of the events ``aggregate_cls`` handles."""
    needed: set[str] = set()
    for cls in aggregate_cls.handler_table():
        with contextlib.suppress(UsageError):  # a class never registered is never decoded
            needed.add(registry.type_of(cls)[0])
    return needed


def _handled_only(registry: Registry, needed: set[str]) -> Callable[[RawEvent], Any]:
    """``registry.decode`` for the event types named in ``needed``; every other event
    gives :data:`NOT_DECODED`."""
    decode = registry.decode
    knows = registry.knows

    def handled_only(raw: RawEvent) -> Any:
        if raw.type in needed or not knows(raw.type, raw.schema_version):
            return decode(raw)  # unknown types and versions are reported all the same
        return NOT_DECODED

    return handled_only


def _epoch_ns(value: Any) -> int:
    if isinstance(value, Timestamp):
        return value.epoch_ns
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError(f"naive datetime {value!r} cannot be compared: it has no offset")
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 \
            + delta.microseconds * 1000
    raise UsageError(f"event time {value!r} is neither a Timestamp nor a datetime")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _describe_ns(ns: int) -> str:
    """``ns`` (>= 0) as ``timedelta`` writes it, with the nanoseconds below its microsecond
    (a lateness of 5 s + 1 ns had read "0:00:05", the tolerance it exceeds)."""
    micro, nanos = divmod(ns, 1000)
    text = str(timedelta(microseconds=micro))
    if nanos:
        text += ("" if "." in text else ".000000") + f"{nanos:03d}"
    return text


def rehydrate(events: Iterable[RawEvent], registry: Registry, aggregate_cls: type[A], *,
              stream: str | None = None, snapshot: Snapshot | RawEvent | None = None,
              policy: Policy = "strict", clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
              verify_snapshot: bool = False, expected_version: int | None = None,
              reorder_window: int = DEFAULT_REORDER_WINDOW,
              freeze: bool = True, lazy: bool = False) -> RehydrationResult[A]:
    """Rebuild one aggregate from ``events`` (one stream, in version order).

    ``stream`` is the stream the events must belong to (default: that of the snapshot or
    the first event). With a ``snapshot``, events up to its version are skipped without
    decoding (pass the stream from the snapshot's version on, inclusive, so the event it
    was taken after can be checked; or from 0); ``verify_snapshot=True`` instead replays
    from version 0 and reports a snapshot whose state differs at its version.
    ``expected_version`` is the head the stream should reach (a truncated tail is
    reported). ``reorder_window`` bounds how many later events are held while waiting for a
    late one. ``lazy=True`` does not decode payloads of event types the aggregate has no
    handler for (see the module docstring, with the checks and policies). ``events`` is
    consumed lazily and never stored.
    """
    r = Rehydration(registry, aggregate_cls, stream=stream, snapshot=snapshot, policy=policy,
                    clock_skew=clock_skew, verify_snapshot=verify_snapshot,
                    expected_version=expected_version, reorder_window=reorder_window,
                    lazy=lazy)
    r.feed_all(events)
    return r.finish(freeze=freeze)


# -- stores ----------------------------------------------------------------------------------

class StoreLike(Protocol):
    """What rehydration needs of a store (every :class:`evtools.stores.base.EventStore`)."""

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]: ...

    def list_streams(self) -> Iterator[str]: ...

    def stream_version(self, stream: str) -> int | None: ...


def load_snapshot(store: StoreLike, stream: str) -> RawEvent | None:
    """The latest ``$snapshot`` event of ``stream`` (undecoded), or ``None``."""
    snap_stream = snapshot_stream(stream)
    last_event = getattr(store, "last_event", None)
    if last_event is not None:  # an evtools store: one request
        found: RawEvent | None = last_event(snap_stream)
        return found
    head = store.stream_version(snap_stream)
    if head is None:
        return None
    try:
        for raw in store.read_stream(snap_stream, head, limit=1):
            return raw
    except StreamNotFound:
        return None
    return None


def write_snapshot(store: Any, snapshot: Snapshot) -> int:
    """Append ``snapshot`` to its snapshot stream, recorded now (a stored event appended
    keeps the time it has, none included); returns the snapshot stream's version."""
    from .stores.base import NO_STREAM  # I/O helper: the pure core does not import stores

    snap_stream = snapshot_stream(snapshot.stream)
    head = store.stream_version(snap_stream)
    raw = snapshot.to_raw(0 if head is None else head + 1, recorded_at=datetime.now(UTC))
    result: int = store.append(snap_stream, [raw], NO_STREAM if head is None else head)
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class StreamSummary:
    """One stream of a :class:`StoreRehydration`."""

    stream: str
    aggregate_id: Any
    version: int
    events_seen: int
    events_applied: int
    violations: int
    snapshot_version: int | None
    replayed_from_zero: bool  # the snapshot was rejected and the stream replayed
    halted_at: int | None
    state_hash: str
    snapshot_written: int | None  # version of a snapshot written by this run

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["aggregate_id"] = _jsonable_id(self.aggregate_id)
        return d


@dataclasses.dataclass(slots=True)
class StoreRehydration:
    """What :func:`rehydrate_store` found, stream by stream."""

    aggregate_type: str
    policy: Policy
    streams: list[StreamSummary]
    violations: list[Violation]
    results: dict[str, RehydrationResult[Any]] | None = None  # with keep_results=True

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(str(v.kind) for v in self.violations))

    @property
    def events_seen(self) -> int:
        return sum(s.events_seen for s in self.streams)

    def to_frame(self) -> pl.DataFrame:
        """One row per stream."""
        import polars as pl

        schema = {"stream": pl.String, "aggregate_id": pl.String, "version": pl.Int64,
                  "events_seen": pl.Int64, "events_applied": pl.Int64,
                  "violations": pl.Int64, "snapshot_version": pl.Int64,
                  "replayed_from_zero": pl.Boolean, "halted_at": pl.Int64,
                  "state_hash": pl.String, "snapshot_written": pl.Int64}
        rows = []
        for s in self.streams:
            d = s.to_dict()
            d["aggregate_id"] = None if s.aggregate_id is None else str(s.aggregate_id)
            rows.append(d)
        return pl.DataFrame(rows, schema=schema)

    def violations_frame(self) -> pl.DataFrame:
        return violations_frame(self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {"aggregate_type": self.aggregate_type, "policy": self.policy, "ok": self.ok,
                "streams": len(self.streams), "events_seen": self.events_seen,
                "violation_counts": self.counts,
                "stream_results": [s.to_dict() for s in self.streams],
                "violations": [v.to_dict() for v in self.violations]}

    def summary(self) -> str:
        bad = sum(1 for s in self.streams if s.violations)
        text = (f"{len(self.streams)} {self.aggregate_type} streams, {self.events_seen} events: "
                f"{len(self.streams) - bad} clean, {bad} with violations")
        if self.violations:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))
            text += f" ({kinds})"
        started = sum(1 for s in self.streams if s.snapshot_version is not None)
        written = sum(1 for s in self.streams if s.snapshot_written is not None)
        if started or written:
            text += f"; {started} started from a snapshot, {written} snapshots written"
        return text


def rehydrate_store(store: StoreLike, registry: Registry, aggregate_cls: type[A],
                    stream: str | Iterable[str] | None = None, *,
                    policy: Policy = "audit", snapshots: bool = True,
                    snapshot_every: int | None = None,
                    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
                    verify_snapshot: bool = False, keep_results: bool = False,
                    reorder_window: int = DEFAULT_REORDER_WINDOW,
                    max_streams: int | None = None, lazy: bool = False) -> StoreRehydration:
    """Rebuild every stream of ``aggregate_cls`` in ``store`` (or ``stream``: one name or
    several); ``max_streams=N`` stops after the first N streams (a sample of a big store).

    Without ``stream``, the streams are those starting with ``aggregate_cls.stream_prefix``
    (all streams when it is ``None``), snapshot streams excluded. With ``snapshots``, the
    latest snapshot of each stream is used; a snapshot ahead of the stream, invalid, or in
    conflict with it is reported and, under ``audit``, the stream replayed from zero.
    ``snapshot_every=N`` writes a new snapshot of each clean stream that has advanced at
    least N versions past its latest snapshot (the store must be writable). Under
    ``strict`` the first violation raises :class:`~evtools.errors.RehydrationError`. A
    named stream that does not exist raises :class:`~evtools.errors.StreamNotFound`.
    ``lazy`` is :func:`rehydrate`'s: payloads no handler needs are left undecoded.
    """
    if not all(hasattr(store, name) for name in ("read_stream", "list_streams",
                                                  "stream_version")):
        raise UsageError(f"rehydrate_store takes a store (evtools.stores.open_store), not "
                         f"{type(store).__name__}; for events in memory use rehydrate() "
                         f"per stream, or rehydrate_events()")
    if snapshot_every is not None and snapshot_every < 1:
        raise UsageError("snapshot_every must be >= 1")
    if max_streams is not None and max_streams < 0:
        raise UsageError("max_streams must be >= 0")
    if stream is None:
        prefix = aggregate_cls.stream_prefix
        names: Iterable[str] = (s for s in store.list_streams()
                                if not is_snapshot_stream(s)
                                and (prefix is None or s.startswith(prefix)))
    else:
        names = [stream] if isinstance(stream, str) else list(stream)
        for name in names:
            if store.stream_version(name) is None:
                raise StreamNotFound(f"stream {name!r} does not exist", stream=name)
    if max_streams is not None:
        names = itertools.islice(names, max_streams)
    summaries: list[StreamSummary] = []
    violations: list[Violation] = []
    results: dict[str, RehydrationResult[Any]] | None = {} if keep_results else None
    options: dict[str, Any] = {"policy": policy, "clock_skew": clock_skew,
                               "verify_snapshot": verify_snapshot,
                               "reorder_window": reorder_window, "lazy": lazy}
    for name in names:
        result, replayed, verified = _rehydrate_one(store, registry, aggregate_cls, name,
                                                    snapshots, options)
        written = None
        if snapshot_every is not None and result.ok and result.version >= 0:
            # the latest snapshot, used or (verify_snapshot) checked against the replay
            base = result.snapshot_version if result.snapshot_version is not None \
                else verified if verified is not None else -1
            if result.version - base >= snapshot_every:
                write_snapshot(store, take_snapshot(result.aggregate))
                written = result.version
        violations.extend(result.violations)
        summaries.append(StreamSummary(
            stream=name, aggregate_id=result.aggregate.aggregate_id, version=result.version,
            events_seen=result.events_seen, events_applied=result.events_applied,
            violations=len(result.violations), snapshot_version=result.snapshot_version,
            replayed_from_zero=replayed, halted_at=result.halted_at,
            state_hash=result.aggregate.state_hash(), snapshot_written=written))
        if results is not None:
            results[name] = result
    return StoreRehydration(aggregate_type=aggregate_cls.aggregate_type, policy=policy,
                            streams=summaries, violations=violations, results=results)


def _rehydrate_one(store: StoreLike, registry: Registry, aggregate_cls: type[A], stream: str,
                   use_snapshots: bool, options: dict[str, Any]
                   ) -> tuple[RehydrationResult[A], bool, int | None]:
    """``(result, whether replayed from zero after a rejected snapshot, the version of the
    snapshot verify_snapshot checked)``."""
    snap_raw = load_snapshot(store, stream) if use_snapshots else None
    if snap_raw is None:  # the whole stream: no need to ask for its head first
        return rehydrate(_read_whole(store, stream), registry, aggregate_cls, stream=stream,
                         **options), False, None
    head = store.stream_version(stream)
    verify = options["verify_snapshot"]
    snap_version: int | None = None
    with contextlib.suppress(InputError):  # rehydrate reports it as snapshot_invalid
        snap_version = Snapshot.from_raw(snap_raw).version
    start = 0 if verify or snap_version is None else snap_version
    if not verify and head is not None and snap_version is not None and snap_version > head:
        start = head  # read the tail anyway, so the boundary is seen and reported
        # (verify replays from 0 whatever the snapshot's version: it trusts none of it)
    first = rehydrate(_read(store, stream, start, head), registry, aggregate_cls,
                      stream=stream, snapshot=snap_raw, expected_version=head, **options)
    if options["policy"] == "audit" and first.snapshot_rejected and not verify:
        again = rehydrate(_read(store, stream, 0, head), registry, aggregate_cls,
                          stream=stream, expected_version=head, **options)
        again.violations[:0] = [v for v in first.violations if v.kind in (
            ViolationKind.SNAPSHOT_INVALID, ViolationKind.SNAPSHOT_AHEAD,
            ViolationKind.SNAPSHOT_CONFLICT)]
        return again, True, None
    return first, False, snap_version if verify else None


def _read_whole(store: StoreLike, stream: str) -> Iterator[RawEvent]:
    try:
        return store.read_stream(stream)
    except StreamNotFound:  # listed, then deleted: nothing to rebuild
        return iter(())


def _read(store: StoreLike, stream: str, start: int, head: int | None) -> Iterator[RawEvent]:
    if head is None or start > head:
        return iter(())
    return store.read_stream(stream, start)


def group_streams(events: Iterable[RawEvent]) -> dict[str, list[RawEvent]]:
    """``events`` by stream, each in the order given (streams in order of first event).

    This holds every event: for workloads that fit in memory (notebooks, tests). Stores
    and :func:`rehydrate` stream instead."""
    out: dict[str, list[RawEvent]] = {}
    for raw in events:
        held = out.get(raw.stream)
        if held is None:
            held = out[raw.stream] = []
        held.append(raw)
    return out


class _Delivered:
    """Events as a consumer received them, readable like a store (read-only): versions
    kept exactly as given (gaps, duplicates, reordering), as a JSON-lines export does."""

    def __init__(self, events: Iterable[RawEvent]) -> None:
        self._streams = group_streams(events)

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        events = self._streams.get(stream)
        if events is None:
            raise StreamNotFound(f"stream {stream!r} does not exist", stream=stream)
        selected = (e for e in events if e.version >= from_version)
        return selected if limit is None else itertools.islice(selected, limit)

    def list_streams(self) -> Iterator[str]:
        return iter(list(self._streams))

    def stream_version(self, stream: str) -> int | None:
        events = self._streams.get(stream)
        return max(e.version for e in events) if events else None


def rehydrate_events(events: Iterable[RawEvent], registry: Registry, aggregate_cls: type[A],
                     *, policy: Policy = "audit", **options: Any) -> StoreRehydration:
    """:func:`rehydrate_store` over events as delivered: every stream of ``events``
    (interleaved, as :func:`evtools.datagen.generate` yields them, snapshot streams
    included), versions kept as given, so delivery faults (gaps, reordering) are seen.

    The events are grouped in memory first (see :func:`group_streams`); ``options`` are
    those of :func:`rehydrate_store` (``stream``, ``snapshots``, ``clock_skew``,
    ``verify_snapshot``, ``keep_results``, ``reorder_window``, ``max_streams``)."""
    if "snapshot_every" in options:
        raise UsageError("rehydrate_events cannot write snapshots: its events are read-only")
    return rehydrate_store(_Delivered(events), registry, aggregate_cls, policy=policy,
                           **options)


# -- the naive rehydrator ----------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class NaiveResult:
    """What the hand-written untyped consumer ends up with."""

    state: dict[str, Any]
    stream: str | None
    events: int
    errors: list[str]


def _decoder_for(dialect: Any) -> Callable[[bytes], Any]:
    if isinstance(dialect, str):
        from .dialects import get_dialect

        decode: Callable[[bytes], Any] = get_dialect(dialect).decode
        return decode
    method = getattr(dialect, "decode", None)
    if callable(method):
        return method
    if callable(dialect):
        return dialect
    raise UsageError(f"dialect must be a name, a Dialect or a callable, not {dialect!r}")


def naive_state() -> dict[str, Any]:
    """The empty state of the naive consumer (same keys as ``Order.to_state()``)."""
    return {"order_id": None, "customer_id": None, "request_id": None, "status": None,
            "currency": None, "shipping_address": None, "lines": {}, "payment_id": None,
            "authorized_amount": None, "carrier": None, "tracking_number": None,
            "cancel_reason": None, "created_at": None, "updated_at": None, "shipped_at": None,
            "delivered_at": None, "cancelled_at": None}


def naive_rehydrate(events: Iterable[RawEvent], dialect: str | Any = "python") -> NaiveResult:
    """Rebuild an order the way the seed's anti-pattern does.

    Each payload is decoded to a dict by ``dialect`` (a dialect name such as ``"go"`` or
    ``"js"``, a :class:`~evtools.dialects.Dialect`, or any ``bytes -> value`` callable such
    as ``json.loads``) and fields are copied by hand into a plain dict shaped like
    ``Order.to_state()``. No versions, no schema, no checks: whatever the consumer's decoder
    turned a value into is what the state holds (ids rounded, money in binary floating
    point), duplicates are applied twice, gaps go unnoticed. Documents the dialect rejects
    are skipped and listed in ``errors``, as the seed logged and moved on.
    """
    decode = _decoder_for(dialect)
    state = naive_state()
    lines: dict[str, Any] = state["lines"]
    errors: list[str] = []
    count = known = 0
    ignored: set[str] = set()
    stream: str | None = None
    for raw in events:
        count += 1
        stream = stream or raw.stream
        try:
            d = decode(raw.data)
        except Exception as e:  # the seed caught everything and logged it
            errors.append(f"{raw.stream}@{raw.version} {raw.type}: {e}")
            continue
        if not isinstance(d, Mapping):
            errors.append(f"{raw.stream}@{raw.version} {raw.type}: not an object")
            continue
        kind = raw.type
        at = d.get("occurred_at")
        if kind == "OrderCreated":
            state["order_id"] = d.get("order_id")
            state["customer_id"] = d.get("customer_id")
            state["request_id"] = d.get("request_id")
            state["currency"] = d.get("currency")
            state["shipping_address"] = _plain(d.get("shipping_address"))
            state["status"] = "pending"
            state["created_at"] = state["updated_at"] = at
        elif kind == "ItemAdded":
            sku = d.get("sku")
            if "unit_price" in d:
                price = _plain(d.get("unit_price"))
            else:
                price = {"amount": d.get("price"), "currency": d.get("currency")}
            key = str(sku)
            held = lines.get(key)
            quantity = d.get("quantity") or 0
            if held is not None:
                quantity = held["quantity"] + quantity
            lines[key] = {"sku": sku, "quantity": quantity, "unit_price": price}
            state["updated_at"] = at
        elif kind == "ItemRemoved":
            key = str(d.get("sku"))
            held = lines.get(key)
            if held is not None:
                left = held["quantity"] - (d.get("quantity") or 0)
                if left == 0:
                    del lines[key]
                else:
                    lines[key] = {**held, "quantity": left}
            state["updated_at"] = at
        elif kind == "AddressChanged":
            state["shipping_address"] = _plain(d.get("address"))
            state["updated_at"] = at
        elif kind == "PaymentAuthorized":
            amount = d.get("amount")
            state["payment_id"] = d.get("payment_id")
            state["authorized_amount"] = (_plain(amount) if isinstance(amount, Mapping)
                                          else {"amount": amount,
                                                "currency": d.get("currency")})
            state["status"] = "paid"
            state["updated_at"] = at
        elif kind == "OrderShipped":
            state["carrier"] = d.get("carrier")
            state["tracking_number"] = d.get("tracking_number")
            state["status"] = "shipped"
            state["shipped_at"] = state["updated_at"] = at
        elif kind == "OrderDelivered":
            state["status"] = "delivered"
            state["delivered_at"] = state["updated_at"] = at
        elif kind == "OrderCancelled":
            state["status"] = "cancelled"
            state["cancel_reason"] = d.get("reason")
            state["cancelled_at"] = state["updated_at"] = at
        else:  # the seed ignored types it did not know
            ignored.add(kind)
            continue
        known += 1
    if count and not known and len(errors) < count:
        raise UsageError(f"naive_rehydrate models the order consumer of the seed, and none of "
                         f"these events is an order event (types: "
                         f"{', '.join(sorted(ignored)[:8])}); fold your own events by hand "
                         f"and compare with diff_states() / side_by_side()", stream=stream)
    return NaiveResult(state=state, stream=stream, events=count, errors=errors)


def _naive_order_state(events: list[RawEvent], decode: Callable[[bytes], Any]
                       ) -> dict[str, Any]:
    return naive_rehydrate(events, decode).state


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(slots=True)
class NaiveComparison:
    """What naive consumers lose, order by order, against the typed rebuild
    (:func:`compare_naive`)."""

    dialects: tuple[str, ...]
    fields: tuple[str, ...]  # the top-level state fields, in state order
    orders: int  # orders compared
    differing: dict[str, dict[str, int]]  # dialect -> field -> orders where it differs
    orders_wrong: dict[str, int]  # dialect -> orders with at least one difference

    def fields_lost(self, dialect: str) -> list[str]:
        """The fields ``dialect`` gets wrong in at least one order."""
        counts = self.differing[dialect]
        return [f for f in self.fields if counts.get(f)]

    def to_frame(self) -> pl.DataFrame:
        """One row per field: in how many orders each dialect's value differs."""
        import polars as pl

        data: dict[str, list[Any]] = {"field": list(self.fields)}
        for d in self.dialects:
            data[d] = [self.differing[d].get(f, 0) for f in self.fields]
        return pl.DataFrame(data, schema={"field": pl.String,
                                          **{d: pl.Int64 for d in self.dialects}})

    def to_dict(self) -> dict[str, Any]:
        return {"dialects": list(self.dialects), "orders": self.orders,
                "orders_wrong": dict(self.orders_wrong),
                "fields_lost": {d: self.fields_lost(d) for d in self.dialects},
                "differing": {d: dict(c) for d, c in self.differing.items()}}

    def summary(self) -> str:
        parts = [f"{d}: {self.orders_wrong[d]} orders wrong, {len(self.fields_lost(d))} "
                 f"fields lost" for d in self.dialects]
        return f"{self.orders} orders; " + "; ".join(parts)


def compare_naive(events: Iterable[RawEvent], registry: Registry, aggregate_cls: type[A],
                  dialects: Iterable[str | Any] = ("go", "js"), *,
                  naive: Callable[[list[RawEvent], Callable[[bytes], Any]], Mapping[str, Any]]
                  | None = None) -> NaiveComparison:
    """Rebuild every stream of ``events`` typed (``audit``) and through each naive dialect,
    and count, per top-level state field, the aggregates whose naive value differs from
    the typed one (:func:`diff_states`: exact values).

    ``naive(events, decode)`` is the hand-written fold of one stream whose payloads
    ``decode`` turns into plain values; it returns the state as a dict shaped like
    ``aggregate_cls().to_state()``. The default is :func:`naive_rehydrate`'s, which
    rebuilds orders: any other aggregate needs its own. Snapshot streams and streams
    outside ``aggregate_cls.stream_prefix`` are left out. The events are grouped in memory
    (:func:`group_streams`)."""
    names = tuple(d if isinstance(d, str) else getattr(d, "name", repr(d)) for d in dialects)
    decoders = [_decoder_for(d) for d in dialects]
    fields = tuple(aggregate_cls().to_state())
    if naive is None:
        if set(fields) != set(naive_state()):
            raise UsageError(f"compare_naive's default naive fold rebuilds orders, not a "
                             f"{aggregate_cls.__qualname__}: pass naive=, your consumer's "
                             f"fold of one stream")
        naive = _naive_order_state
    differing: dict[str, Counter[str]] = {n: Counter() for n in names}
    wrong: Counter[str] = Counter()
    prefix = aggregate_cls.stream_prefix
    orders = 0
    for stream, held in group_streams(events).items():
        if is_snapshot_stream(stream) or (prefix is not None and not stream.startswith(prefix)):
            continue
        orders += 1
        typed = rehydrate(held, registry, aggregate_cls, stream=stream,
                          policy="audit").aggregate.to_state()
        for name, decode in zip(names, decoders, strict=True):
            diff = diff_states(typed, dict(naive(held, decode)))
            top = {p.split("/")[1] for p, _, _ in diff}
            differing[name].update(top)
            wrong[name] += bool(top)
    return NaiveComparison(dialects=names, fields=fields, orders=orders,
                           differing={n: dict(c) for n, c in differing.items()},
                           orders_wrong={n: wrong[n] for n in names})


def side_by_side(typed_state: Any, naive_states: Mapping[str, Any], *,
                 differences_only: bool = False) -> pl.DataFrame:
    """One row per leaf of the states (JSON Pointer ``path``): the typed value and each
    naive one (``repr``; null where the leaf is absent), and ``differs``: the names of the
    naive states whose value there is not exactly the typed one (comma-separated)."""
    import polars as pl

    typed = dict(_leaves(typed_state))
    others = {name: dict(_leaves(state)) for name, state in naive_states.items()}
    paths = list(typed)
    known = set(paths)
    for leaves in others.values():
        for p in leaves:
            if p not in known:
                known.add(p)
                paths.append(p)
    rows = []
    for p in paths:
        want = typed.get(p, ABSENT)
        # absent from both is agreement; absent from one side only, a difference
        bad = [name for name, leaves in others.items()
               if (p in leaves) is (want is ABSENT)
               or (want is not ABSENT and not _same_value(want, leaves[p]))]
        if differences_only and not bad:
            continue
        row: dict[str, Any] = {"path": p, "typed": None if want is ABSENT else repr(want)}
        for name, leaves in others.items():
            row[name] = repr(leaves[p]) if p in leaves else None
        row["differs"] = ", ".join(bad)
        rows.append(row)
    return pl.DataFrame(rows, schema={"path": pl.String, "typed": pl.String,
                                      **{n: pl.String for n in others},
                                      "differs": pl.String})


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            token = str(key).replace("~", "~0").replace("/", "~1")
            yield from _leaves(item, f"{path}/{token}")
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}/{i}")
    else:
        yield path, value


def diff_states(expected: Any, actual: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(JSON Pointer, expected, actual)`` for every leaf where two plain states differ
    (a field on one side only comes with ``<absent>`` on the other).

    Numbers compare by exact value across ``int``, ``float`` and ``Decimal``
    (``Decimal('19.99')`` and the float ``19.99`` differ; ``2**53 + 1`` and the float
    ``2.0**53`` differ; ``Decimal('1356')`` and ``1356`` do not); anything else must have
    the same type and compare equal."""
    return [(p, a, b) for p, a, b in leaf_pairs(expected, actual, plain_children, path)
            if a is ABSENT or b is ABSENT or not _same_value(a, b)]


def _same_value(a: Any, b: Any) -> bool:
    numbers = (int, float, Decimal)
    a, b = _exact(a), _exact(b)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return bool(a == b)  # exact across int, float and Decimal
    return type(a) is type(b) and bool(a == b)


def _exact(value: Any) -> Any:
    to_decimal = getattr(value, "to_decimal", None)  # an exact number kept as its text
    return to_decimal() if callable(to_decimal) else value


