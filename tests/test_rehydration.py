"""Rehydration: every fault kind under both policies, snapshots, streaming, naive vs typed."""

from __future__ import annotations

import copy
import itertools
import pickle
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evtools import rehydration
from evtools._accel import SPEEDUPS
from evtools.aggregate import Aggregate, handles, state_hash_of
from evtools.datagen import FaultKind, FaultRates, generate, write_workload
from evtools.errors import EvtoolsError, RehydrationError, SchemaError, UsageError
from evtools.events import RawEvent
from evtools.orders import ItemAdded, Order, order_registry
from evtools.registry import Registry
from evtools.rehydration import (
    Rehydration,
    Snapshot,
    Stage,
    Violation,
    ViolationKind,
    compare_naive,
    compare_with_manifest,
    diff_states,
    group_streams,
    load_snapshot,
    naive_rehydrate,
    rehydrate,
    rehydrate_events,
    rehydrate_store,
    restore,
    side_by_side,
    take_snapshot,
    write_snapshot,
)
from evtools.scalars import Timestamp
from evtools.stores import MemoryStore

from .strategies import json_values

REGISTRY = order_registry()


@pytest.fixture(scope="module", autouse=True, params=["C loop", "Python loop"])
def fold_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of this module runs over both loops of ``feed_all``: the C one
    (``evtools._speedups``) and the Python one, its reference and fallback."""
    if request.param == "C loop" and not SPEEDUPS:
        pytest.skip("evtools._speedups is not built (no C compiler): the Python loop runs")
    saved = rehydration._Folder
    if request.param == "Python loop":
        rehydration._Folder = None
    yield request.param
    rehydration._Folder = saved
PER_EVENT = [FaultKind.GAP, FaultKind.DUPLICATE, FaultKind.REORDER, FaultKind.CLOCK_SKEW,
             FaultKind.CORRUPT, FaultKind.UNKNOWN_TYPE, FaultKind.FOREIGN, FaultKind.INVARIANT]
AT_REST = [FaultKind.DUPLICATE, FaultKind.CLOCK_SKEW, FaultKind.CORRUPT, FaultKind.UNKNOWN_TYPE,
           FaultKind.FOREIGN, FaultKind.INVARIANT, FaultKind.SNAPSHOT_CONFLICT,
           FaultKind.TRUNCATE]


def by_stream(events: Iterable[RawEvent]) -> dict[str, list[RawEvent]]:
    out: dict[str, list[RawEvent]] = defaultdict(list)
    for e in events:
        out[e.stream].append(e)
    return out


def one_stream(n: int = 40, seed: int = 3) -> list[RawEvent]:
    return list(generate(n, n_streams=1, seed=seed, schema_mix=0.5))


def state_of(events: Iterable[RawEvent], **options: object) -> str:
    return rehydrate(events, REGISTRY, Order, **options).aggregate.state_hash()  # type: ignore[arg-type]


def rates(kind: FaultKind, rate: float) -> FaultRates:
    return FaultRates(**{str(kind): rate})


# -- clean streams ---------------------------------------------------------------------------

def test_clean_workload_has_no_violations_and_is_frozen() -> None:
    for stream, events in by_stream(generate(3000, seed=1)).items():
        result = rehydrate(events, REGISTRY, Order)
        assert result.ok, result.summary()
        assert result.stage is Stage.READY
        assert result.version == events[-1].version == len(events) - 1
        assert result.events_applied == result.events_seen == len(events)
        assert result.aggregate.frozen
        assert result.aggregate.stream == stream
        assert result.aggregate.version == result.version
        assert result.aggregate.last_event_id == events[-1].id
        assert f"order-{result.aggregate.order_id}" == stream


def test_result_reports() -> None:
    result = rehydrate(one_stream(), REGISTRY, Order)
    d = result.to_dict()
    assert d["ok"] and d["version"] == 39 and d["violations"] == []
    assert msgspec.json.decode(msgspec.json.encode(d)) == d  # JSON-ready
    assert result.to_frame().height == 0
    assert "no violations" in result.summary()


# -- the fault catalogue, delivery view (generate -> rehydrate) -----------------------------

@pytest.mark.parametrize("kind", PER_EVENT, ids=str)
def test_audit_reports_every_injected_fault_exactly(kind: FaultKind) -> None:
    workload = generate(3000, seed=11, faults=rates(kind, 0.03))
    found: set[tuple[str, str, int | None]] = set()
    for events in by_stream(workload).values():
        result = rehydrate(events, REGISTRY, Order, policy="audit")
        found |= {(str(v.kind), v.stream, v.version) for v in result.violations}
    expected = {(f.detected_as, f.stream, f.version) for f in workload.manifest.faults}
    assert len(expected) > 20
    assert found == expected


@pytest.mark.parametrize("kind", PER_EVENT, ids=str)
def test_strict_raises_on_the_first_fault(kind: FaultKind) -> None:
    workload = generate(600, seed=5, faults=rates(kind, 0.05))
    streams = by_stream(workload)
    faults = workload.manifest.by_stream()
    assert faults, "the workload should hold faults"
    for stream, found in list(faults.items())[:5]:
        first = min(found, key=lambda f: f.version)
        with pytest.raises(RehydrationError) as info:
            rehydrate(streams[stream], REGISTRY, Order, policy="strict")
        violation = info.value.violation
        assert violation.kind == first.detected_as
        assert (violation.stream, violation.version) == (stream, first.version)
        assert info.value.context.stream == stream
        assert isinstance(info.value, EvtoolsError)


def test_audit_stops_applying_at_a_gap_but_keeps_scanning() -> None:
    events = one_stream(30)
    damaged = events[:10] + events[11:20] + events[21:]  # versions 10 and 20 lost
    result = rehydrate(damaged, REGISTRY, Order, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.GAP, 10), (ViolationKind.GAP, 20)]
    assert result.halted_at == 10
    assert result.version == 9 and result.events_applied == 10
    assert result.aggregate.state_hash() == state_of(events[:10])
    # the row is the missing event's: no type or id of its own; the next one is named
    gap = result.violations[0]
    assert (gap.event_type, gap.event_id) == (None, None)
    assert gap.message == (f"version 10 missing: the stream jumps from 9 to 11 "
                           f"(next: {events[11].type}, event {events[11].id})")

    headless = rehydrate(events[1:5], REGISTRY, Order, policy="audit")
    assert headless.violations[0].message == (
        f"version 0 missing: the stream starts at version 1 "
        f"(next: {events[1].type}, event {events[1].id})")


def test_a_version_arriving_after_its_gap_was_declared_is_late_not_a_duplicate() -> None:
    events = one_stream(10)
    late = events[:2] + events[3:8] + [events[2]]
    result = rehydrate(late, REGISTRY, Order, policy="audit", reorder_window=2)
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.GAP, 2), (ViolationKind.OUT_OF_ORDER, 2)]
    assert result.violations[1].message == ("version 2 arrived after version 7, too late: "
                                            "it was reported missing")
    assert result.halted_at == 2 and result.events_applied == 2  # still not applied
    again = rehydrate([*late, events[2]], REGISTRY, Order, policy="audit", reorder_window=2)
    assert [v.kind for v in again.violations][-1] == ViolationKind.OUT_OF_ORDER


def test_events_the_snapshot_covers_arriving_late_or_twice() -> None:
    events = one_stream(10)
    snap = take_snapshot(rehydrate(events[:4], REGISTRY, Order).aggregate)  # at version 3
    late = rehydrate([events[4], events[3], *events[5:]], REGISTRY, Order,
                     snapshot=snap, policy="audit")
    assert [(v.kind, v.version) for v in late.violations] == [
        (ViolationKind.OUT_OF_ORDER, 3)]
    assert "covered by the snapshot at 3" in late.violations[0].message
    assert late.aggregate.state_hash() == state_of(events)
    other = msgspec.structs.replace(events[3], id="not-the-snapshot's")
    conflict = rehydrate([events[4], other, *events[5:]], REGISTRY, Order, snapshot=snap,
                         policy="audit")  # the boundary's event id is still checked
    assert ViolationKind.SNAPSHOT_CONFLICT in [v.kind for v in conflict.violations]
    twice = rehydrate([*events[:5], events[3], *events[5:]], REGISTRY, Order,
                      snapshot=snap, policy="audit")
    assert [(v.kind, v.version) for v in twice.violations] == [(ViolationKind.DUPLICATE, 3)]


def test_gap_at_the_start_of_a_stream() -> None:
    result = rehydrate(one_stream(10)[3:], REGISTRY, Order, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [(ViolationKind.GAP, 0)]
    assert result.version == -1 and result.events_applied == 0


def test_a_gap_is_declared_when_the_reorder_window_fills() -> None:
    events = one_stream(30)
    result = rehydrate(events[:5] + events[6:], REGISTRY, Order, policy="audit",
                       reorder_window=3)
    assert [(v.kind, v.version) for v in result.violations] == [(ViolationKind.GAP, 5)]


def test_reordered_events_are_applied_in_version_order() -> None:
    events = one_stream(30)
    swapped = [*events[:7], events[8], events[9], events[7], *events[10:]]
    result = rehydrate(swapped, REGISTRY, Order, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.OUT_OF_ORDER, 7)]
    assert "after version 9" in result.violations[0].message
    assert result.halted_at is None
    assert result.aggregate.state_hash() == state_of(events)


def test_reordering_behind_a_gap_is_reported_too() -> None:
    events = one_stream(30)
    damaged = [*events[:2], events[3], events[5], events[4], *events[6:]]  # 2 lost, 4 late
    result = rehydrate(damaged, REGISTRY, Order, policy="audit")
    assert sorted((v.version, v.kind) for v in result.violations) == [
        (2, ViolationKind.GAP), (4, ViolationKind.OUT_OF_ORDER)]
    assert result.version == 1


def test_a_finished_rehydration_takes_no_more_events() -> None:
    from evtools.errors import UsageError

    r = Rehydration(REGISTRY, Order)
    r.feed_all(one_stream(3))
    r.finish()
    with pytest.raises(UsageError):
        r.feed(one_stream(4)[3])
    with pytest.raises(UsageError):
        r.feed_all([])


def test_duplicates_are_skipped_not_applied_twice() -> None:
    events = one_stream(30)
    redelivered = [*events[:12], events[11], events[5], *events[12:]]
    stored_twice = events[:12] + [msgspec.structs.replace(e, version=e.version + 1)
                                  for e in events[11:]]
    for stream in (redelivered, stored_twice):
        result = rehydrate(stream, REGISTRY, Order, policy="audit")
        assert {v.kind for v in result.violations} == {ViolationKind.DUPLICATE}
        assert result.halted_at is None
        assert result.aggregate.to_state() == rehydrate(events, REGISTRY, Order
                                                        ).aggregate.to_state()


def test_a_second_event_at_a_version_is_told_from_a_redelivery() -> None:
    events = one_stream(10)
    redelivered = rehydrate([*events[:4], events[3], *events[4:]], REGISTRY, Order,
                            policy="audit")
    assert [v.message for v in redelivered.violations] == [
        "version 3 delivered again after version 3 (same event id)"]
    # another event claiming version 3: two writers, not a redelivery
    rival = msgspec.structs.replace(events[4], version=3, id="rival-append")
    result = rehydrate([*events[:4], rival, *events[4:]], REGISTRY, Order, policy="audit")
    assert [(v.kind, v.version, v.event_id) for v in result.violations] == [
        (ViolationKind.DUPLICATE, 3, "rival-append")]
    assert result.violations[0].message == (
        f"version 3 delivered again after version 3 by another event, rival-append "
        f"(skipped), where version 3 is event {events[3].id}: two writers appended at "
        f"version 3 and the store kept both")
    assert result.aggregate.state_hash() == state_of(events)  # the first one was applied
    # an older version comes again: which event it was is no longer known
    older = rehydrate([*events[:6], rival, *events[6:]], REGISTRY, Order, policy="audit")
    assert [v.message for v in older.violations] == [
        "version 3 delivered again after version 5"]


def test_one_event_numbered_far_ahead_is_one_late_run_not_one_violation_per_event() -> None:
    events = one_stream(11)
    ahead = msgspec.structs.replace(events[2], version=1000)
    result = rehydrate([*events[:2], ahead, *events[3:]], REGISTRY, Order, policy="audit")
    late = [v for v in result.violations if v.kind == ViolationKind.OUT_OF_ORDER]
    assert [(v.version, v.event_id, v.message) for v in late] == [
        (3, events[3].id, "versions 3..10 arrived after version 1000")]
    assert [(v.version, v.message.split(":")[0]) for v in result.violations
            if v.kind == ViolationKind.GAP] == [(2, "version 2 missing"),
                                                (11, "versions 11..999 missing")]
    assert result.halted_at == 2 and result.events_applied == 2
    # one event delivered early: the versions it overtook are one run too
    early = rehydrate([*events[:2], events[6], *events[2:6], *events[7:]], REGISTRY, Order,
                      policy="audit")
    assert [(v.kind, v.version, v.message) for v in early.violations] == [
        (ViolationKind.OUT_OF_ORDER, 2, "versions 2..5 arrived after version 6")]
    assert early.aggregate.state_hash() == state_of(events)
    # two late runs behind different events stay two violations
    twice = rehydrate([events[0], events[2], events[1], events[4], events[3],
                       *events[5:]], REGISTRY, Order, policy="audit")
    assert [(v.version, v.message) for v in twice.violations] == [
        (1, "version 1 arrived after version 2"), (3, "version 3 arrived after version 4")]
    # late after their gap was declared: one run too
    missing = rehydrate([*events[:3], *events[6:9], *events[3:6], *events[9:]], REGISTRY,
                        Order, policy="audit", reorder_window=2)
    assert [(v.kind, v.version, v.message) for v in missing.violations
            if v.kind == ViolationKind.OUT_OF_ORDER] == [
        (ViolationKind.OUT_OF_ORDER, 3, "versions 3..5 arrived after version 8, too late: "
                                        "they were reported missing")]
    with pytest.raises(RehydrationError, match="version 2 arrived after version 6"):
        rehydrate([*events[:2], events[6], *events[2:6], *events[7:]], REGISTRY, Order)


def test_events_of_another_stream_are_skipped() -> None:
    events = one_stream(20)
    stranger = msgspec.structs.replace(one_stream(5, seed=99)[2], version=7)
    result = rehydrate([*events[:8], stranger, *events[8:]], REGISTRY, Order, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.WRONG_STREAM, 7)]
    assert result.aggregate.state_hash() == state_of(events)
    with pytest.raises(RehydrationError):
        rehydrate(events, REGISTRY, Order, stream="order-1")


def test_truncated_tail_against_the_expected_head() -> None:
    events = one_stream(20)
    result = rehydrate(events[:15], REGISTRY, Order, policy="audit", expected_version=19)
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.TRUNCATED, 15)]


def test_clock_skew_tolerance_is_configurable() -> None:
    events = one_stream(20)
    late = [*events[:6], events[7], events[6], *events[8:]]  # swap payloads, keep versions
    late = [msgspec.structs.replace(e, version=i) for i, e in enumerate(late)]
    strict_clock = rehydrate(late, REGISTRY, Order, policy="audit", clock_skew=timedelta(0))
    assert [v.kind for v in strict_clock.violations] == [ViolationKind.CLOCK_SKEW]
    lenient = rehydrate(late, REGISTRY, Order, policy="audit", clock_skew=timedelta(hours=2))
    assert lenient.ok


def test_unhandled_event_and_handler_error() -> None:
    class Picky(Aggregate):
        count: int = 0

        @handles(ItemAdded)
        def _added(self, e: ItemAdded) -> None:
            if self.count == 2:
                raise ValueError("third item refused")
            self.count += 1

    events = [e for e in one_stream(40) if e.type in ("OrderCreated", "ItemAdded")]
    events = [msgspec.structs.replace(e, version=i) for i, e in enumerate(events)]
    result = rehydrate(events, REGISTRY, Picky, policy="audit")
    kinds = [(v.kind, v.version) for v in result.violations]
    assert kinds[0] == (ViolationKind.UNHANDLED, 0)
    assert kinds[1] == (ViolationKind.APPLY_ERROR, 3)
    assert "third item refused" in result.violations[1].message
    assert result.halted_at == 3 and result.aggregate.count == 2


class ItemCount(Aggregate):
    """A view: how many items were ever added (one event type of eight)."""

    ignore_unhandled = True
    items: int = 0

    @handles(ItemAdded)
    def _added(self, e: ItemAdded) -> None:
        self.items += e.quantity


def test_lazy_leaves_payloads_no_handler_needs_undecoded() -> None:
    events = one_stream(60)
    eager = rehydrate(events, REGISTRY, ItemCount)
    lazy = rehydrate(events, REGISTRY, ItemCount, lazy=True)
    assert lazy.ok and lazy.aggregate.items == eager.aggregate.items > 0
    assert lazy.version == eager.version == len(events) - 1

    other = next(i for i, e in enumerate(events) if e.type == "ItemRemoved")
    corrupt = list(events)
    corrupt[other] = msgspec.structs.replace(events[other], data=b'{"not": "checked"}')
    assert [v.kind for v in rehydrate(corrupt, REGISTRY, ItemCount, policy="audit")
            .violations] == [ViolationKind.DECODE_ERROR]  # eager decodes every payload
    assert rehydrate(corrupt, REGISTRY, ItemCount, lazy=True).ok  # lazy: the documented cost

    gap = [e for i, e in enumerate(events) if i != other]  # versions are checked all the same
    result = rehydrate(gap, REGISTRY, ItemCount, policy="audit", lazy=True)
    assert [(v.kind, v.version) for v in result.violations] == [(ViolationKind.GAP, other)]


def test_lazy_still_reports_unknown_types_and_ignores_undecoded_times() -> None:
    events = one_stream(30)
    i = next(i for i, e in enumerate(events) if e.type == "ItemRemoved")
    unknown = list(events)
    unknown[i] = msgspec.structs.replace(events[i], type="ItemRemovd")
    result = rehydrate(unknown, REGISTRY, ItemCount, policy="audit", lazy=True)
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.UNKNOWN_TYPE, i)]
    later = list(events)  # an undecoded event has no time of its own: recorded_at is unused
    later[i] = msgspec.structs.replace(events[i], recorded_at=datetime(2099, 1, 1, tzinfo=UTC))
    assert rehydrate(later, REGISTRY, ItemCount, lazy=True).ok


def test_lazy_reports_unhandled_types_by_name() -> None:
    class Strict(ItemCount):
        ignore_unhandled = False

    result = rehydrate(one_stream(10), REGISTRY, Strict, policy="audit", lazy=True)
    unhandled = [v for v in result.violations if v.kind is ViolationKind.UNHANDLED]
    assert unhandled and "has no handler for OrderCreated" in unhandled[0].message
    with pytest.raises(RehydrationError, match="no handler for OrderCreated"):
        rehydrate(one_stream(10), REGISTRY, Strict, lazy=True)


def test_decode_errors_carry_the_json_path() -> None:
    events = one_stream(10)
    bad = msgspec.structs.replace(events[4], data=events[4].data.replace(b'"order_id":',
                                                                          b'"order_id":"', 1)
                                  .replace(b',"', b'","', 1))
    result = rehydrate([*events[:4], bad, *events[5:]], REGISTRY, Order, policy="audit")
    assert result.violations[0].kind is ViolationKind.DECODE_ERROR
    assert result.violations[0].path == "/order_id"
    assert result.halted_at == 4


# -- snapshots -------------------------------------------------------------------------------

def snapshot_at(events: list[RawEvent], version: int) -> Snapshot:
    return take_snapshot(rehydrate(events[:version + 1], REGISTRY, Order).aggregate)


def test_snapshot_round_trips_as_an_event() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    raw = snap.to_raw(3)
    assert raw.stream == f"snapshot-{events[0].stream}" and raw.type == "$snapshot"
    assert Snapshot.from_raw(raw) == snap
    assert snap.to_raw(3).id == raw.id  # deterministic
    assert snap.hash_ok() and snap.version == 12 and snap.last_event_id == events[12].id
    assert snap.aggregate_type == "Order" and snap.schema_version == Order.state_version


def test_replay_starts_after_the_snapshot() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    for given_events in (events, events[12:], events[13:]):
        result = rehydrate(given_events, REGISTRY, Order, snapshot=snap)
        assert result.ok
        assert result.snapshot_version == 12
        assert result.events_applied == 17
        assert result.aggregate.state_hash() == state_of(events)


def test_snapshot_whose_hash_does_not_match_is_dropped() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    tampered = msgspec.structs.replace(
        snap, state=msgspec.Raw(bytes(snap.state).replace(b'"pending"', b'"paid"', 1)))
    with pytest.raises(RehydrationError) as info:
        rehydrate(events, REGISTRY, Order, snapshot=tampered)
    assert info.value.violation.kind is ViolationKind.SNAPSHOT_INVALID
    result = rehydrate(events, REGISTRY, Order, snapshot=tampered, policy="audit")
    assert [v.kind for v in result.violations] == [ViolationKind.SNAPSHOT_INVALID]
    assert result.snapshot_version is None  # replayed from zero instead
    assert result.aggregate.state_hash() == state_of(events)


def test_snapshot_of_another_aggregate_is_invalid() -> None:
    events = one_stream(30)
    other = snapshot_at(one_stream(30, seed=8), 5)
    result = rehydrate(events, REGISTRY, Order, snapshot=other, stream=events[0].stream,
                       policy="audit")
    assert [v.kind for v in result.violations] == [ViolationKind.SNAPSHOT_INVALID]


def test_snapshot_whose_header_names_another_aggregate_than_its_state() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    renamed = msgspec.structs.replace(snap, aggregate_id="999")  # the hash covers the state
    result = rehydrate(events, REGISTRY, Order, snapshot=renamed, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.SNAPSHOT_INVALID, 12)]
    assert "names aggregate 999" in result.violations[0].message
    assert result.snapshot_version is None  # replayed from zero instead
    assert result.aggregate.state_hash() == state_of(events)
    verified = rehydrate(events, REGISTRY, Order, snapshot=renamed, verify_snapshot=True,
                         policy="audit")
    assert [(v.kind, v.version) for v in verified.violations] == [
        (ViolationKind.SNAPSHOT_CONFLICT, 12)]


def test_snapshot_ahead_of_the_stream() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 25)
    result = rehydrate(events[:20], REGISTRY, Order, snapshot=snap, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.SNAPSHOT_AHEAD, 20)]


def test_snapshot_conflict_found_at_the_boundary_and_by_verification() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    other_history = msgspec.structs.replace(snap, last_event_id="someone-else")
    result = rehydrate(events, REGISTRY, Order, snapshot=other_history, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.SNAPSHOT_CONFLICT, 12)]
    assert result.halted_at == 13
    # same id, wrong state with a valid hash: only replaying from zero shows it
    wrong = take_snapshot(rehydrate(events[:12], REGISTRY, Order).aggregate)
    wrong = msgspec.structs.replace(wrong, version=12, last_event_id=events[12].id)
    trusted = rehydrate(events, REGISTRY, Order, snapshot=wrong, policy="audit")
    assert ViolationKind.SNAPSHOT_CONFLICT not in {v.kind for v in trusted.violations}
    verified = rehydrate(events, REGISTRY, Order, snapshot=wrong, verify_snapshot=True,
                         policy="audit")
    assert [(v.kind, v.version) for v in verified.violations] == [
        (ViolationKind.SNAPSHOT_CONFLICT, 12)]
    assert verified.aggregate.state_hash() == state_of(events)
    assert rehydrate(events, REGISTRY, Order, snapshot=snap, verify_snapshot=True).ok


def test_event_earlier_than_the_snapshot_is_clock_skew() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    from evtools.scalars import Timestamp

    future = msgspec.structs.replace(snap, timestamp=Timestamp("2999-01-01T00:00:00Z"))
    state = bytes(future.state)
    future = msgspec.structs.replace(future, state=msgspec.Raw(state))
    result = rehydrate(events[13:], REGISTRY, Order, snapshot=future, policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.CLOCK_SKEW, 13)]
    assert "earlier than the snapshot's time 2999-01-01T00:00:00Z" \
        in result.violations[0].message


def test_snapshot_state_of_an_older_schema_is_upcast() -> None:
    events = one_stream(30)
    snap = snapshot_at(events, 12)
    order = rehydrate(events[:13], REGISTRY, Order).aggregate
    state = order.to_state()
    for line in state["lines"].values():  # write it the way state v1 was written
        price = line.pop("unit_price")
        line["price"], line["currency"] = price["amount"], price["currency"]

    data = msgspec.json.encode(state)
    v1 = msgspec.structs.replace(snap, schema_version=1, state=msgspec.Raw(data),
                                 state_hash=state_hash_of(data))
    result = rehydrate(events, REGISTRY, Order, snapshot=v1)
    assert result.ok and result.snapshot_version == 12
    assert result.aggregate.state_hash() == state_of(events)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), length=st.integers(1, 60), mix=st.floats(0, 1),
       data=st.data())
def test_property_snapshot_replay_equals_replay_from_zero(seed: int, length: int, mix: float,
                                                          data: st.DataObject) -> None:
    events = list(generate(length, n_streams=1, seed=seed, schema_mix=mix))
    at = data.draw(st.integers(0, length - 1), label="snapshot version")
    full = rehydrate(events, REGISTRY, Order)
    assert full.ok
    snap = Snapshot.from_raw(snapshot_at(events, at).to_raw())  # as stored and loaded
    for given_events in (events, events[at:], events[at + 1:]):
        from_snapshot = rehydrate(given_events, REGISTRY, Order, snapshot=snap)
        assert from_snapshot.ok
        assert from_snapshot.version == full.version
        assert from_snapshot.aggregate.to_state() == full.aggregate.to_state()
    assert rehydrate(events, REGISTRY, Order, snapshot=snap, verify_snapshot=True).ok


_SNAPSHOT_MEMBERS = list(Snapshot.__struct_fields__)


@given(member=st.sampled_from(_SNAPSHOT_MEMBERS), value=json_values, drop=st.booleans(),
       junk=st.none() | st.binary(max_size=40), policy=st.sampled_from(["audit", "strict"]))
def test_property_a_damaged_stored_snapshot_is_reported_never_a_crash(
        member: str, value: Any, drop: bool, junk: bytes | None, policy: str) -> None:
    """A stored snapshot with any member replaced or missing, or any bytes, is reported
    (its header is checked against the stream, its state against its hash) or gives the
    state replaying from version 0 gives: never a wrong state with nothing said."""
    events = list(generate(8, n_streams=1, seed=3))
    raw = snapshot_at(events, 4).to_raw()
    doc = msgspec.json.decode(raw.data)
    if drop:
        doc.pop(member)
    else:
        doc[member] = value
    data = junk if junk is not None else msgspec.json.encode(doc)
    damaged = msgspec.structs.replace(raw, data=data)
    full = rehydrate(events, REGISTRY, Order)
    try:
        result = rehydrate(events, REGISTRY, Order, snapshot=damaged,
                           policy=policy)  # type: ignore[arg-type]
    except RehydrationError:
        assert policy == "strict"
        return
    kinds = {v.kind for v in result.violations}
    if kinds <= {ViolationKind.SNAPSHOT_INVALID}:  # used as it is, or rebuilt from 0
        assert result.aggregate.to_state() == full.aggregate.to_state()
        assert result.version == full.version
    if kinds & {ViolationKind.SNAPSHOT_AHEAD, ViolationKind.SNAPSHOT_CONFLICT}:
        assert result.halted_at is not None  # nothing applied past a snapshot at odds


# -- stores ----------------------------------------------------------------------------------

def test_rehydrate_store_asks_the_store_once_per_stream_and_once_per_snapshot_lookup(
        ) -> None:
    calls: defaultdict[str, int] = defaultdict(int)

    class Counting(MemoryStore):
        def read_stream(self, *args: Any, **kwargs: Any) -> Iterator[RawEvent]:
            calls["read_stream"] += 1
            return super().read_stream(*args, **kwargs)

        def stream_version(self, stream: str) -> int | None:
            calls["stream_version"] += 1
            return super().stream_version(stream)

        def last_event(self, stream: str) -> RawEvent | None:
            calls["last_event"] += 1
            return super().last_event(stream)

    store = Counting()
    streams = write_workload(store, 300, seed=2).manifest.streams
    for snapshots, expected in ((False, {"read_stream": streams}),
                                (True, {"read_stream": streams, "last_event": streams})):
        calls.clear()
        assert rehydrate_store(store, REGISTRY, Order, snapshots=snapshots).ok
        assert dict(calls) == expected  # no head asked for: the read ends at it anyway


@pytest.mark.parametrize("kind", AT_REST, ids=str)
def test_store_faults_under_audit(kind: FaultKind) -> None:
    store = MemoryStore()
    rate = 0.3 if kind in (FaultKind.SNAPSHOT_CONFLICT, FaultKind.TRUNCATE) else 0.03
    written = write_workload(store, 2000, seed=5, faults=rates(kind, rate))
    result = rehydrate_store(store, REGISTRY, Order)
    expected = {(f.detected_as, f.stream, f.version) for f in written.manifest.faults}
    assert len(expected) > 10
    assert {(str(v.kind), v.stream, v.version) for v in result.violations} == expected
    assert result.to_frame().height == written.manifest.streams


@pytest.mark.parametrize("kind", AT_REST, ids=str)
def test_store_faults_under_strict(kind: FaultKind) -> None:
    store = MemoryStore()
    rate = 0.5 if kind in (FaultKind.SNAPSHOT_CONFLICT, FaultKind.TRUNCATE) else 0.05
    written = write_workload(store, 300, seed=9, faults=rates(kind, rate))
    stream, faults = next(iter(written.manifest.by_stream().items()))
    with pytest.raises(RehydrationError) as info:
        rehydrate_store(store, REGISTRY, Order, stream=stream, policy="strict")
    assert info.value.violation.kind == faults[0].detected_as
    assert info.value.violation.stream == stream


def test_rejected_snapshot_falls_back_to_a_replay_from_zero() -> None:
    store = MemoryStore()
    written = write_workload(store, 600, seed=2, faults=FaultRates(snapshot_conflict=1.0))
    result = rehydrate_store(store, REGISTRY, Order, keep_results=True)
    assert result.results is not None
    faulted = set(written.manifest.by_stream())
    assert len(faulted) > 10
    assert {s.stream for s in result.streams if s.replayed_from_zero} == faulted
    clean = rehydrate_store(store, REGISTRY, Order, snapshots=False)
    assert clean.ok
    assert [s.state_hash for s in result.streams] == [s.state_hash for s in clean.streams]
    assert len(result.violations) == len(written.manifest.faults)


def test_snapshot_every_writes_and_uses_snapshots() -> None:
    store = MemoryStore()
    write_workload(store, 400, n_streams=4, seed=4)
    first = rehydrate_store(store, REGISTRY, Order, snapshot_every=50)
    assert first.ok and all(s.snapshot_written == 99 for s in first.streams)
    stream = first.streams[0].stream
    assert load_snapshot(store, stream) is not None
    second = rehydrate_store(store, REGISTRY, Order, snapshot_every=50)
    assert all(s.snapshot_version == 99 and s.snapshot_written is None
               for s in second.streams)
    assert [s.state_hash for s in first.streams] == [s.state_hash for s in second.streams]
    # the store's snapshot is read through the registry: replay equals from zero
    zero = rehydrate_store(store, REGISTRY, Order, snapshots=False)
    assert [s.state_hash for s in zero.streams] == [s.state_hash for s in second.streams]
    assert "4 Order streams" in second.summary()
    d = second.to_dict()
    assert d["ok"] and len(d["stream_results"]) == 4


def test_a_named_stream_must_exist() -> None:
    from evtools.errors import StreamNotFound

    with pytest.raises(StreamNotFound):
        rehydrate_store(MemoryStore(), REGISTRY, Order, stream="order-1")


def test_write_snapshot_appends_with_expected_versions() -> None:
    store = MemoryStore()
    write_workload(store, 50, n_streams=1, seed=4)
    stream = next(iter(store.list_streams()))
    result = rehydrate(store.read_stream(stream), REGISTRY, Order)
    assert write_snapshot(store, take_snapshot(result.aggregate)) == 0
    assert write_snapshot(store, take_snapshot(result.aggregate)) == 1


# -- streaming -------------------------------------------------------------------------------

def lazy_events(n: int) -> Iterator[RawEvent]:
    """n events built one at a time (an order whose item is added and removed)."""
    template = one_stream(5)
    created = template[0]
    oid = Order().order_id  # None: just to touch the API
    assert oid is None
    order_id = rehydrate([created], REGISTRY, Order).aggregate.order_id
    add = (b'{"order_id":%d,"sku":5,"quantity":1,"unit_price":{"amount":19.99,"currency":'
           b'"EUR"},"occurred_at":"2030-01-01T00:00:00.000000001+01:00"}' % order_id)
    remove = (b'{"order_id":%d,"sku":5,"quantity":1,'
              b'"occurred_at":"2030-01-01T00:00:00.000000001+01:00"}' % order_id)
    currency = msgspec.json.decode(created.data)["currency"]
    add = add.replace(b'"EUR"', b'"%s"' % currency.encode())
    yield created
    for v in range(1, n):
        if v % 2:
            yield RawEvent(created.stream, v, "ItemAdded", add, id=f"e{v}", schema_version=2)
        else:
            yield RawEvent(created.stream, v, "ItemRemoved", remove, id=f"e{v}")


@pytest.mark.slow
def test_rehydrating_200k_events_does_not_hold_them() -> None:
    n = 200_000
    tracemalloc.start()
    try:
        result = rehydrate(lazy_events(n), REGISTRY, Order)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok and result.version == n - 1 and result.events_applied == n
    # holding the events would take > 60 MB; the fold keeps only the current state
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_rehydration_consumes_events_one_at_a_time() -> None:
    r = Rehydration(REGISTRY, Order)
    produced = 0

    def source() -> Iterator[RawEvent]:
        nonlocal produced
        for e in lazy_events(1000):
            produced += 1
            yield e

    r.feed_all(source())
    assert produced == 1000
    events = iter(lazy_events(10))
    r2 = Rehydration(REGISTRY, Order)
    for e in events:
        r2.feed(e)
        assert r2.events_seen == e.version + 1  # nothing read ahead
    assert r2.finish().version == 9


# -- naive vs typed --------------------------------------------------------------------------

def test_naive_consumers_lose_state_the_typed_rebuild_keeps() -> None:
    streams = by_stream(generate(3000, seed=7))
    lost = {"go": 0, "js": 0}
    paths: set[str] = set()
    for events in streams.values():
        typed = rehydrate(events, REGISTRY, Order).aggregate.to_state()
        exact = naive_rehydrate(events, "python")  # exact decoding, same hand assignment
        assert diff_states(typed, exact.state) == []
        for dialect in lost:
            diff = diff_states(typed, naive_rehydrate(events, dialect).state)
            lost[dialect] += bool(diff)
            paths |= {p.split("/")[1] for p, _, _ in diff}
    assert lost == {"go": len(streams), "js": len(streams)}  # every order is wrong
    assert {"order_id", "customer_id", "lines"} <= paths


def test_diff_states_tells_an_array_from_an_object() -> None:
    # no leaf differs, yet a consumer holding {} where the state has [] holds another state
    assert diff_states({"lines": []}, {"lines": {}}) == [("/lines", [], {})]
    assert diff_states({"l": ["x"]}, {"l": {"0": "x"}}) == [("/l", ["x"], {"0": "x"})]
    assert diff_states({"l": []}, {"l": []}) == []


def test_naive_rehydrator_applies_duplicates_and_ignores_gaps() -> None:
    import json

    events = one_stream(30)
    adds = [e for e in events if e.type == "ItemAdded"]
    doubled = [*events, adds[0]]
    naive = naive_rehydrate(doubled, json.loads)
    typed = rehydrate(doubled, REGISTRY, Order, policy="audit")
    assert [v.kind for v in typed.violations] == [ViolationKind.DUPLICATE]
    assert diff_states(typed.aggregate.to_state(), naive.state) != []
    assert naive.events == len(doubled)


def test_registry_is_passed_not_global() -> None:
    empty = Registry()
    result = rehydrate(one_stream(3), empty, Order, policy="audit")
    assert {v.kind for v in result.violations} == {ViolationKind.UNKNOWN_TYPE}


# -- helpers for notebooks: events as delivered, the manifest, naive vs typed -----------------

@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_rehydrate_events_catches_every_fault_of_the_manifest(kind: FaultKind) -> None:
    rate = 0.3 if kind in (FaultKind.SNAPSHOT_CONFLICT, FaultKind.TRUNCATE) else 0.03
    workload = generate(1500, seed=13, faults=rates(kind, rate))
    result = rehydrate_events(workload, REGISTRY, Order)
    assert result.policy == "audit"
    catalogue = compare_with_manifest(result.violations, workload.manifest)
    assert catalogue.height == 1
    row = catalogue.row(0, named=True)
    assert row["fault"] == str(kind) and row["detected_as"] == kind_detected(kind)
    assert row["injected"] > 5
    assert row["injected"] == row["caught"] == row["matched"]
    assert result.to_frame().height == workload.manifest.streams


def kind_detected(kind: FaultKind) -> str:
    from evtools.datagen import DETECTED_AS

    return DETECTED_AS[kind]


def test_rehydrate_events_under_strict_names_the_first_fault() -> None:
    workload = generate(600, seed=5, faults=FaultRates(gap=0.05))
    events = list(workload)
    faulted = workload.manifest.by_stream()
    stream = next(s for s in group_streams(events) if s in faulted)
    first = min(faulted[stream], key=lambda f: f.version)
    with pytest.raises(RehydrationError) as info:
        rehydrate_events(events, REGISTRY, Order, policy="strict")
    v = info.value.violation
    assert (v.kind, v.stream, v.version) == (ViolationKind.GAP, stream, first.version)
    assert info.value.context.stream == stream


def test_rehydrate_events_refuses_to_write_snapshots() -> None:
    with pytest.raises(EvtoolsError, match="read-only"):
        rehydrate_events(one_stream(5), REGISTRY, Order, snapshot_every=2)


def test_compare_with_manifest_reports_misses_and_extras() -> None:
    workload = generate(600, seed=5, faults=FaultRates(duplicate=0.05))
    events = list(workload)
    found = rehydrate_events(events, REGISTRY, Order).violations
    assert found
    extra = Violation(kind=ViolationKind.INVARIANT, stream="order-x", version=1, message="x")
    frame = compare_with_manifest([*found[1:], extra], workload.manifest.faults)
    rows = {r["detected_as"]: r for r in frame.iter_rows(named=True)}
    dup = rows["duplicate"]
    assert dup["injected"] == len(workload.manifest.faults) == dup["caught"] + 1
    assert dup["matched"] == dup["injected"] - 1
    assert rows["invariant"] == {"fault": None, "detected_as": "invariant", "injected": 0,
                                 "caught": 1, "matched": 0}
    assert compare_with_manifest([], []).height == 0


def test_group_streams_keeps_the_order_given() -> None:
    events = list(generate(300, seed=2, faults=FaultRates(reorder=0.05)))
    grouped = group_streams(events)
    assert sum(len(v) for v in grouped.values()) == len(events)
    assert list(grouped) == list(dict.fromkeys(e.stream for e in events))
    for stream, held in grouped.items():
        assert held == [e for e in events if e.stream == stream]


def test_rehydrate_store_max_streams() -> None:
    store = MemoryStore()
    write_workload(store, 400, n_streams=10, seed=4)
    assert len(rehydrate_store(store, REGISTRY, Order, max_streams=3).streams) == 3
    assert len(rehydrate_store(store, REGISTRY, Order).streams) == 10
    with pytest.raises(EvtoolsError, match="max_streams"):
        rehydrate_store(store, REGISTRY, Order, max_streams=-1)


def test_compare_naive_counts_the_fields_each_dialect_loses() -> None:
    events = list(generate(800, seed=7))
    result = compare_naive(events, REGISTRY, Order, ("python", "go", "js"))
    streams = group_streams(events)
    assert result.orders == len(streams)
    assert result.orders_wrong == {"python": 0, "go": len(streams), "js": len(streams)}
    assert result.fields_lost("python") == []
    assert {"order_id", "customer_id", "lines"} <= set(result.fields_lost("go"))
    # the counts are those of diff_states, order by order
    events_of = next(iter(streams.values()))
    typed = rehydrate(events_of, REGISTRY, Order).aggregate.to_state()
    top = {p.split("/")[1] for p, _, _ in diff_states(typed, naive_rehydrate(events_of,
                                                                               "go").state)}
    assert top and all(result.differing["go"][f] >= 1 for f in top)
    frame = result.to_frame()
    assert frame.columns == ["field", "python", "go", "js"]
    assert frame.height == len(Order().to_state())
    assert dict(zip(frame["field"], frame["go"], strict=True))["order_id"] \
        == result.differing["go"]["order_id"]
    assert "go:" in result.summary()
    assert msgspec.json.decode(msgspec.json.encode(result.to_dict())) == result.to_dict()


def test_side_by_side_lines_up_typed_and_naive_leaves() -> None:
    typed = {"order_id": 2**60 + 1, "status": "paid", "lines": {"7": {"quantity": 2}},
             "amount": Decimal("19.99"), "tags": []}
    go = {"order_id": float(2**60 + 1), "status": "paid", "lines": {"7.0": {"quantity": 2.0}},
          "amount": 19.99, "tags": []}
    exact = {**typed}
    frame = side_by_side(typed, {"go": go, "python": exact})
    rows = {r["path"]: r for r in frame.iter_rows(named=True)}
    assert frame.columns == ["path", "typed", "go", "python", "differs"]
    assert rows["/order_id"]["differs"] == "go"
    assert rows["/order_id"]["typed"] == repr(2**60 + 1)
    assert rows["/status"]["differs"] == ""
    assert rows["/amount"]["go"] == "19.99" and rows["/amount"]["differs"] == "go"
    assert rows["/lines/7/quantity"]["go"] is None  # the key itself changed
    assert rows["/lines/7.0/quantity"]["typed"] is None
    assert rows["/lines/7.0/quantity"]["differs"] == "go"  # python lacks it, as typed does
    assert rows["/tags"]["typed"] == "[]"
    only = side_by_side(typed, {"go": go, "python": exact}, differences_only=True)
    assert "/status" not in only["path"].to_list()
    assert set(only["path"]) == {p for p, r in rows.items() if r["differs"]}


def test_side_by_side_blames_only_the_states_that_differ_from_typed() -> None:
    frame = side_by_side({"a": 1}, {"x": {"a": 1}, "y": {"a": 1, "b": 2}, "z": {"a": 2}})
    differs = dict(zip(frame["path"], frame["differs"], strict=True))
    assert differs == {"/a": "z", "/b": "y"}  # x and z lack /b, as typed does: they agree


class _Ticked(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    occurred_at: Timestamp


class _Clock(Aggregate):
    ticks: int = 0

    @handles(_Ticked)
    def _ticked(self, e: _Ticked) -> None:
        self.ticks += 1


_CLOCK_REGISTRY = Registry()
_CLOCK_REGISTRY.register(_Ticked, name="Ticked")


def _stamp(epoch_ns: int, offset_minutes: int) -> Timestamp:
    return Timestamp.from_epoch_ns(epoch_ns, timedelta(minutes=offset_minutes))


def _lower(text: str) -> str:
    """The same instant written with RFC 3339's lower-case "t" (and "z")."""
    text = text[:10] + "t" + text[11:]
    return text[:-1] + "z" if text.endswith("Z") else text


@settings(max_examples=300, deadline=None)
@given(first=st.integers(10**18, 2 * 10**18), step_ns=st.integers(-10**10, 10**10),
       offsets=st.lists(st.sampled_from([0, 60, -300, 330, 540, -720]), min_size=2,
                        max_size=2),
       tolerance_us=st.integers(0, 10**7), near=st.booleans(),
       lower=st.lists(st.booleans(), min_size=2, max_size=2))
@example(first=10**18, step_ns=-3_600 * 10**9, offsets=[0, 0], tolerance_us=5 * 10**6,
         near=False, lower=[False, True])  # "...T10:00:00Z" then "...t09:00:00Z"
def test_clock_skew_across_offsets_is_exact_to_the_nanosecond(
        first: int, step_ns: int, offsets: list[int], tolerance_us: int, near: bool,
        lower: list[bool]) -> None:
    """Producers in other zones write other offsets: the check compares the instants,
    and a lateness within a microsecond of the tolerance is decided to the nanosecond.
    RFC 3339 also lets them write "t" and "z" in lower case, which sort after "T", "Z"."""
    if near:  # right at the boundary, where microsecond precision cannot decide
        step_ns = -tolerance_us * 1000 + step_ns % 2001 - 1000
    times = [_stamp(first, offsets[0]), _stamp(first + step_ns, offsets[1])]
    texts = [_lower(str(t)) if low else str(t) for t, low in zip(times, lower, strict=True)]
    events = [RawEvent("clock-1", v, "Ticked", msgspec.json.encode({"occurred_at": text}),
                       id=f"e{v}") for v, text in enumerate(texts)]
    result = rehydrate(events, _CLOCK_REGISTRY, _Clock, policy="audit",
                       clock_skew=timedelta(microseconds=tolerance_us))
    late = -step_ns > tolerance_us * 1000
    assert [v.kind for v in result.violations] == ([ViolationKind.CLOCK_SKEW] if late else [])
    assert result.aggregate.ticks == 2


def test_naive_fold_of_orders_refuses_events_that_are_not_orders() -> None:
    ticks = [RawEvent("clock-1", v, "Ticked", b'{"occurred_at": "2026-01-01T00:00:00Z"}')
             for v in range(3)]
    with pytest.raises(UsageError, match="none of these events is an order event"):
        naive_rehydrate(ticks)
    with pytest.raises(UsageError, match="not a _Clock: pass naive="):
        compare_naive(ticks, _CLOCK_REGISTRY, _Clock)

    def count_ticks(events: list[RawEvent], decode: Any) -> dict[str, Any]:
        return {"ticks": float(sum(1 for e in events if "occurred_at" in decode(e.data)))}

    mine = compare_naive(ticks, _CLOCK_REGISTRY, _Clock, ["js"], naive=count_ticks)
    assert (mine.orders, mine.differing) == (1, {"js": {}})  # 3.0 == 3: same value

    def drops_one(events: list[RawEvent], decode: Any) -> dict[str, Any]:
        return {"ticks": len(events) - 1}

    lossy = compare_naive(ticks, _CLOCK_REGISTRY, _Clock, ["js"], naive=drops_one)
    assert lossy.differing == {"js": {"ticks": 1}}


@pytest.mark.parametrize(("call", "message"), [
    (lambda ev: rehydrate(ev, None, Order), "registry must be an evtools Registry"),
    (lambda ev: rehydrate(None, REGISTRY, Order), "iterable of RawEvent, not NoneType"),
    (lambda ev: rehydrate(ev[0], REGISTRY, Order), "iterable of RawEvent, not RawEvent"),
    (lambda ev: rehydrate([msgspec.to_builtins(e) for e in ev], REGISTRY, Order),
     "must be RawEvent objects .* not dict"),
    (lambda ev: rehydrate([*ev[:3], ev[3].data], REGISTRY, Order),
     "must be RawEvent objects .* not bytes"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, clock_skew=5), "clock_skew must be a timedelta"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, reorder_window="3"), "reorder_window must be"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, reorder_window=2.5), "reorder_window must be"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, expected_version="5"), "expected_version"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, stream=5), "stream must be a stream name"),
    (lambda ev: rehydrate(ev, REGISTRY, Order, snapshot={}), "snapshot must be a Snapshot"),
    (lambda ev: take_snapshot(object()), "take_snapshot takes an Aggregate"),
    (lambda ev: restore({}, Order), "restore takes a Snapshot"),
    (lambda ev: restore(snapshot_at(ev, 3), dict), "is not an Aggregate subclass"),
    (lambda ev: rehydrate_store(ev, REGISTRY, Order), "rehydrate_store takes a store"),
])
def test_wrong_arguments_are_usage_errors(call: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        call(one_stream(8))


class _Tagged(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    occurred_at: Timestamp
    tag: str
    weight: int = 0


class _Tags(Aggregate):
    tags: set[str] = msgspec.field(default_factory=set)
    weight: str | None = None

    @handles(_Tagged)
    def _tagged(self, e: _Tagged) -> None:
        self.tags.add(e.tag)
        if e.weight:
            self.weight = e.weight  # type: ignore[assignment]  # a handler bug: int in a str


_TAGS_REGISTRY = Registry()
_TAGS_REGISTRY.register(_Tagged, name="Tagged")


def _tag_events(*tags: str, weight: int = 0) -> list[RawEvent]:
    return [RawEvent("tags-1", v, "Tagged", msgspec.json.encode(
        {"occurred_at": f"2026-01-01T00:00:{v:02}Z", "tag": t, "weight": weight}), id=f"t{v}")
        for v, t in enumerate(tags)]


def test_take_snapshot_refuses_a_state_that_would_not_restore() -> None:
    bad = rehydrate(_tag_events("a", "b", weight=7), _TAGS_REGISTRY, _Tags).aggregate
    with pytest.raises(SchemaError, match="/weight") as info:
        take_snapshot(bad)
    assert info.value.context.stream == "tags-1"
    good = rehydrate(_tag_events("a", "b"), _TAGS_REGISTRY, _Tags).aggregate
    assert restore(take_snapshot(good), _Tags) == good


def test_verify_snapshot_compares_sets_as_sets() -> None:
    events = _tag_events(*"qwertyuiopasdfghjklz")
    snap = take_snapshot(rehydrate(events[:12], _TAGS_REGISTRY, _Tags).aggregate)
    members = sorted(msgspec.json.decode(bytes(snap.state))["tags"], reverse=True)
    state = msgspec.json.encode({"tags": members, "weight": None})  # same set, other order
    shuffled = msgspec.structs.replace(snap, state=msgspec.Raw(state),
                                       state_hash=state_hash_of(state))
    assert shuffled.state_hash != snap.state_hash
    result = rehydrate(events, _TAGS_REGISTRY, _Tags, snapshot=shuffled,
                       verify_snapshot=True, policy="audit")
    assert result.violations == [] and result.aggregate.tags == set("qwertyuiopasdfghjklz")
    changed = msgspec.json.encode({"tags": members[1:], "weight": None})
    wrong = msgspec.structs.replace(snap, state=msgspec.Raw(changed),
                                    state_hash=state_hash_of(changed))
    result = rehydrate(events, _TAGS_REGISTRY, _Tags, snapshot=wrong, verify_snapshot=True,
                       policy="audit")
    assert [v.kind for v in result.violations] == [ViolationKind.SNAPSHOT_CONFLICT]


class _Ping(msgspec.Struct, frozen=True):
    n: int


class _Pings(Aggregate):
    time_field = None  # the store's recorded_at orders them
    seen: int = 0

    @handles(_Ping)
    def _ping(self, e: _Ping) -> None:
        self.seen += 1


def test_a_naive_time_on_the_first_event_is_refused_naming_it(fold_loop: str) -> None:
    """The first time has nothing to compare with, and a naive one had passed unseen (or
    was blamed on the next event, whose own time is fine), in both loops."""
    registry = Registry()
    registry.register(_Ping, name="Ping")
    for times in ([datetime(2026, 1, 1, 9)], [datetime(2026, 1, 1, 9),
                                               datetime(2026, 1, 1, 10, tzinfo=UTC)]):
        events = [RawEvent("ping-1", v, "Ping", b'{"n": 1}', recorded_at=at)
                  for v, at in enumerate(times)]
        with pytest.raises(UsageError, match="naive datetime") as info:
            rehydrate(events, registry, _Pings, policy="audit")
        assert (info.value.context.stream, info.value.context.version) == ("ping-1", 0)


def test_a_naive_event_time_is_refused_naming_the_event() -> None:
    registry = Registry()
    registry.register(_Ping, name="Ping")
    times = [datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 9)]  # the 2nd naive
    events = [RawEvent("ping-1", v, "Ping", b'{"n": 1}', recorded_at=at)  # unchecked
              for v, at in enumerate(times)]
    with pytest.raises(UsageError, match="naive datetime") as info:
        rehydrate(events, registry, _Pings, policy="audit")
    assert (info.value.context.stream, info.value.context.version) == ("ping-1", 1)


# -- found by a differential fuzz of both loops (feed one by one, feed_all in chunks) --------

def test_verify_snapshot_checks_a_snapshot_taken_at_an_event_the_aggregate_ignores() -> None:
    """ItemCount handles ItemAdded only: a snapshot at another event's version is verified
    all the same (it had been trusted silently: the replay never compared it)."""
    events = one_stream(30)
    at = next(i for i, e in enumerate(events) if i > 5 and e.type != "ItemAdded")
    right = take_snapshot(rehydrate(events[:at + 1], REGISTRY, ItemCount).aggregate)
    assert right.version == at
    early = rehydrate(events[:3], REGISTRY, ItemCount).aggregate
    wrong = msgspec.structs.replace(take_snapshot(early, stream=events[0].stream),
                                    version=at, last_event_id=events[at].id)
    assert wrong.state_hash != right.state_hash
    for lazy in (False, True):
        result = rehydrate(events, REGISTRY, ItemCount, snapshot=wrong, verify_snapshot=True,
                           policy="audit", lazy=lazy)
        assert [(v.kind, v.version) for v in result.violations] == [
            (ViolationKind.SNAPSHOT_CONFLICT, at)]
        assert rehydrate(events, REGISTRY, ItemCount, snapshot=right, verify_snapshot=True,
                         lazy=lazy).ok
    with pytest.raises(RehydrationError) as info:
        rehydrate(events, REGISTRY, ItemCount, snapshot=wrong, verify_snapshot=True)
    assert info.value.violation.kind is ViolationKind.SNAPSHOT_CONFLICT


def test_verify_snapshot_at_a_version_stored_twice() -> None:
    """The event at the snapshot's version repeats the one before (same id, skipped): the
    snapshot is still compared with the replayed state there."""
    events = one_stream(20)
    twice = [*events[:8], *(msgspec.structs.replace(e, version=e.version + 1)
                            for e in events[7:])]  # version 8 repeats version 7
    at7 = take_snapshot(rehydrate(events[:8], REGISTRY, Order).aggregate)
    same = msgspec.structs.replace(at7, version=8)  # the state at 8 is the state at 7
    result = rehydrate(twice, REGISTRY, Order, snapshot=same, verify_snapshot=True,
                       policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [(ViolationKind.DUPLICATE, 8)]
    at3 = take_snapshot(rehydrate(events[:4], REGISTRY, Order).aggregate)
    wrong = msgspec.structs.replace(at3, version=8, last_event_id=events[7].id)
    result = rehydrate(twice, REGISTRY, Order, snapshot=wrong, verify_snapshot=True,
                       policy="audit")
    assert [(v.kind, v.version) for v in result.violations] == [
        (ViolationKind.DUPLICATE, 8), (ViolationKind.SNAPSHOT_CONFLICT, 8)]


def test_finish_runs_once() -> None:
    """A second finish() had run the end-of-stream checks again, appending the same
    violations to the result already returned."""
    r = Rehydration(REGISTRY, Order, policy="audit", expected_version=40)
    r.feed_all(one_stream(30))
    result = r.finish()
    assert [(v.kind, v.version) for v in result.violations] == [(ViolationKind.TRUNCATED, 30)]
    with pytest.raises(UsageError, match=r"this rehydration is ready: finish\(\) runs once"):
        r.finish()
    assert len(result.violations) == 1


@pytest.mark.parametrize(("late", "said"), [
    ("2026-01-01T00:00:00Z", "0:00:05.000000001"),  # it read "0:00:05", the tolerance
    ("2026-01-01T00:00:04.999999999Z", "0:00:00.000000002"),  # it read "0:00:00"
    ("2026-01-01T00:00:04.9999Z", "0:00:00.000100001"),
])
def test_clock_skew_message_says_the_lateness_to_the_nanosecond(late: str, said: str) -> None:
    texts = ["2026-01-01T00:00:05.000000001Z", late]
    events = [RawEvent("clock-1", v, "Ticked", msgspec.json.encode({"occurred_at": text}),
                       id=f"e{v}") for v, text in enumerate(texts)]
    skew = timedelta(seconds=5) if late.endswith("00Z") else timedelta(0)
    result = rehydrate(events, _CLOCK_REGISTRY, _Clock, policy="audit", clock_skew=skew)
    assert [v.message for v in result.violations] == [
        f"event time {late} is {said} earlier than the previous event's {texts[0]} "
        f"(tolerance {skew})"]


# -- the two loops and feed(), compared on damaged streams -----------------------------------

_C_FOLDER = rehydration._Folder  # at import, before fold_loop sets it per test
_REGISTRIES = [REGISTRY, order_registry(unknown_fields="keep", duplicate_keys="last-wins")]
_EDITS = ["drop", "repeat", "swap", "stream", "id", "previous id", "time", "type",
          "schema", "truncate", "payload byte", "duplicate key", "unknown field",
          "content type", "foreign", "recorded_at", "version"]


def _edit(events: list[RawEvent], edit: str, i: int, k: int, other: RawEvent) -> None:
    e = events[i]
    replace = msgspec.structs.replace
    if edit == "drop":
        del events[i]
    elif edit == "repeat":
        events.insert(k % (len(events) + 1), e)
    elif edit == "swap":
        j = k % len(events)
        events[i], events[j] = events[j], e
    elif edit == "stream":
        events[i] = replace(e, stream=e.stream + "x")
    elif edit == "id":
        events[i] = replace(e, id=["", "same"][k % 2])
    elif edit == "previous id":
        events[i] = replace(e, id=events[i - 1].id, data=events[i - k % 2].data)
    elif edit == "time":
        ts = e.data.find(b'"occurred_at":"')
        if ts >= 0:
            start = ts + len(b'"occurred_at":"')
            end = e.data.find(b'"', start)
            try:  # an earlier edit may have damaged it: then this edit does nothing
                when = Timestamp(e.data[start:end].decode())
            except (ValueError, UnicodeDecodeError):
                return
            late = [5 * 10**9, 5 * 10**9 + 1, 10**12, 1, -1][k % 5]
            moved = Timestamp.from_epoch_ns(when.epoch_ns - late,
                                            timedelta(minutes=[0, 60, -330][k % 3]))
            events[i] = replace(e, data=e.data[:start] + str(moved).encode() + e.data[end:])
    elif edit == "type":
        events[i] = replace(e, type=["Nope", "OrderCreated", "ItemAdded"][k % 3])
    elif edit == "schema":
        events[i] = replace(e, schema_version=k % 4)
    elif edit == "truncate":
        del events[i:]
    elif edit == "payload byte" and e.data:
        data = bytearray(e.data)
        data[k % len(data)] = k % 256
        events[i] = replace(e, data=bytes(data))
    elif edit == "duplicate key":
        events[i] = replace(e, data=b'{"order_id":1,' + e.data[1:])
    elif edit == "unknown field":
        events[i] = replace(e, data=b'{"extra":[1,{"a":2}],' + e.data[1:])
    elif edit == "content type":
        events[i] = replace(e, content_type=["text/plain", "application/json; x=1"][k % 2])
    elif edit == "foreign":
        events.insert(i, replace(other, stream=[other.stream, e.stream][k % 2],
                                 version=e.version + k % 2))
    elif edit == "recorded_at":
        events[i] = replace(e, recorded_at=[None, datetime(2099, 1, 1, tzinfo=UTC)][k % 2])
    elif edit == "version":
        events[i] = replace(e, version=e.version + [-2, -1, 1, 2, 100][k % 5])


def _observed(run: Any) -> Any:
    """Everything a caller can see of a rehydration (or of the error it raised)."""
    try:
        r = run()
    except RehydrationError as e:
        v = e.violation
        return ("raised", v.kind, v.stream, v.version, v.message, v.event_id)
    return (r.aggregate.to_state(), r.version, r.events_seen, r.events_applied,
            r.events_skipped, r.halted_at, r.snapshot_version, r.stream,
            r.aggregate.last_event_id, str(r.aggregate.last_event_time),
            [(v.kind, v.stream, v.version, v.message, v.event_type, v.event_id, v.path)
             for v in r.violations])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), length=st.integers(1, 40),
       faults=st.sampled_from([FaultRates(), FaultRates(gap=0.1), FaultRates(reorder=0.1),
                               FaultRates(duplicate=0.1, clock_skew=0.1),
                               FaultRates(corrupt=0.05, unknown_type=0.05, foreign=0.05,
                                          invariant=0.05)]),
       edits=st.lists(st.tuples(st.sampled_from(_EDITS), st.integers(0, 10**4),
                                st.integers(0, 10**4)), max_size=4),
       aggregate=st.sampled_from([Order, ItemCount]), registry=st.sampled_from(_REGISTRIES),
       policy=st.sampled_from(["audit", "strict"]), window=st.sampled_from([0, 2, 64]),
       skew_us=st.sampled_from([0, 5 * 10**6]), lazy=st.booleans(),
       snapshot_at=st.none() | st.integers(0, 39), verify=st.booleans(),
       chunks=st.lists(st.integers(1, 6), min_size=1, max_size=8))
def test_property_c_loop_python_loop_and_feed_agree(
        seed: int, length: int, faults: FaultRates, edits: list[tuple[str, int, int]],
        aggregate: type[Aggregate], registry: Registry, policy: str, window: int,
        skew_us: int, lazy: bool, snapshot_at: int | None, verify: bool,
        chunks: list[int]) -> None:
    """feed_all in C, feed_all in Python and feed()/feed_all() in chunks see the same
    damaged stream the same way: state, counts, every violation and its message."""
    workload = [e for e in generate(length, n_streams=2, seed=seed, faults=faults,
                                    schema_mix=0.5) if not e.stream.startswith("snapshot-")]
    streams = by_stream(workload)
    name = workload[0].stream
    events, other = list(streams[name]), workload[-1]
    for edit, i, k in edits:
        if events:
            _edit(events, edit, i % len(events), k, other)
    options: dict[str, Any] = {"policy": policy, "reorder_window": window, "lazy": lazy,
                               "clock_skew": timedelta(microseconds=skew_us)}
    clean = streams[name]
    if snapshot_at is not None and snapshot_at < len(clean):
        built = rehydrate(clean[:snapshot_at + 1], registry, aggregate, policy="audit")
        if built.version >= 0:
            options["snapshot"] = take_snapshot(built.aggregate)
            options["verify_snapshot"] = verify

    def whole() -> Any:
        return rehydrate(iter(events), registry, aggregate, **options)

    def in_chunks() -> Any:
        r = Rehydration(registry, aggregate, **options)
        at = 0
        for n, size in enumerate(itertools.cycle(chunks)):
            if at >= len(events):
                break
            if n % 2:
                r.feed_all(events[at:at + size])
            else:
                for e in events[at:at + size]:
                    r.feed(e)
            at += size
        return r.finish()

    saved = rehydration._Folder
    try:
        rehydration._Folder = None
        python, fed = _observed(whole), _observed(in_chunks)
        rehydration._Folder = _C_FOLDER
        c_loop = _observed(whole) if _C_FOLDER is not None else python
    finally:
        rehydration._Folder = saved
    assert c_loop == python
    assert fed == python


# -- found by a review: verify with a snapshot ahead, partly applied events, event fields ----

def test_verify_snapshot_with_a_snapshot_ahead_of_the_store_replays_from_zero() -> None:
    """rehydrate_store had read a stream whose snapshot is ahead of it from its head even
    with verify_snapshot=True, reporting the versions before as a gap and returning an
    empty state; verifying replays from 0: the state is the one without verification."""
    store = MemoryStore()
    write_workload(store, 60, seed=4, faults=FaultRates(truncate=1.0))
    trusted = rehydrate_store(store, REGISTRY, Order, keep_results=True)
    verified = rehydrate_store(store, REGISTRY, Order, verify_snapshot=True,
                               keep_results=True)
    assert trusted.results is not None and verified.results is not None
    ahead = [s.stream for s in trusted.streams if s.replayed_from_zero]
    assert ahead
    for name in ahead:
        plain, checked = trusted.results[name], verified.results[name]
        assert [v.kind for v in checked.violations] == [ViolationKind.SNAPSHOT_AHEAD]
        assert checked.version == plain.version == store.stream_version(name)
        assert checked.events_applied == plain.events_applied == plain.version + 1
        assert checked.aggregate == plain.aggregate
        assert checked.halted_at is plain.halted_at is None
    assert [s.state_hash for s in verified.streams] == [s.state_hash for s in trusted.streams]



def test_verify_snapshot_with_snapshot_every_writes_no_second_snapshot_at_a_version() -> None:
    """Verified, a snapshot is not the start of the state (snapshot_version is None), and
    snapshot_every had taken that for no snapshot at all, writing the same one again."""
    store = MemoryStore()
    write_workload(store, 400, n_streams=4, seed=4)
    first = rehydrate_store(store, REGISTRY, Order, snapshot_every=50)
    assert all(s.snapshot_written == 99 for s in first.streams)
    again = rehydrate_store(store, REGISTRY, Order, snapshot_every=50, verify_snapshot=True)
    assert again.ok and all(s.snapshot_written is None for s in again.streams)
    assert all(store.stream_version(f"snapshot-{s.stream}") == 0 for s in again.streams)

class _Counted(msgspec.Struct, frozen=True):
    q: int


class _Tally(Aggregate):
    """A handler that changes the state, then raises (for q == 13)."""

    time_field = None
    total: int = 0
    log: list[int] = msgspec.field(default_factory=list)

    @handles(_Counted)
    def _counted(self, e: _Counted) -> None:
        self.total += e.q
        self.log.append(e.q)
        if e.q == 13:
            raise ValueError("unlucky")


_TALLY_REGISTRY = Registry()
_TALLY_REGISTRY.register(_Counted, name="Counted")


def _tally_events(*qs: int, stream: str = "tally-1") -> list[RawEvent]:
    return [RawEvent(stream, v, "Counted", msgspec.json.encode({"q": q}), id=f"q{v}")
            for v, q in enumerate(qs)]


def test_an_event_whose_handler_raised_midway_is_said_and_never_snapshot() -> None:
    """Under audit the state keeps what the failing handler changed before it raised (a
    copy per event to roll it back would cost the hot path): the result says so, and no
    snapshot is taken of it (it had been stored as the state at the version before, with
    a valid hash, and trusted by every later rebuild)."""
    events = _tally_events(1, 13, 5)

    def by_feed() -> Any:
        r = Rehydration(_TALLY_REGISTRY, _Tally, policy="audit")
        for e in events:
            r.feed(e)
        with pytest.raises(UsageError, match="partly applied"):
            r.snapshot_now()
        return r.finish()

    for result in (rehydrate(events, _TALLY_REGISTRY, _Tally, policy="audit"), by_feed()):
        assert (result.version, result.halted_at, result.partly_applied) == (0, 1, 1)
        assert (result.aggregate.total, list(result.aggregate.log)) == (14, [1, 13])
        (v,) = result.violations
        assert v.kind is ViolationKind.APPLY_ERROR and v.version == 1
        assert "raised ValueError: unlucky" in v.message
        assert "part of this event's changes" in v.message
        assert "version 1 partly applied" in result.summary()
        assert result.to_dict()["partly_applied"] == 1
        for held in (result.aggregate, copy.deepcopy(result.aggregate),
                     pickle.loads(pickle.dumps(result.aggregate)), result.aggregate.thaw()):
            with pytest.raises(UsageError, match="partly applied") as info:
                take_snapshot(held)
            assert (info.value.context.stream, info.value.context.version) == ("tally-1", 1)
    clean = rehydrate(_tally_events(1, 2), _TALLY_REGISTRY, _Tally)
    assert clean.partly_applied is None and "partly" not in clean.summary()
    assert take_snapshot(clean.aggregate).version == 1


def test_a_strict_handler_error_leaves_a_rehydration_that_takes_no_snapshot() -> None:
    r = Rehydration(_TALLY_REGISTRY, _Tally)
    with pytest.raises(RehydrationError, match="part of this event's changes"):
        r.feed_all(_tally_events(1, 13, 5))
    assert r.partly_applied == 1
    with pytest.raises(UsageError, match="partly applied"):
        r.snapshot_now()


def test_snapshot_every_writes_no_snapshot_of_a_partly_applied_event() -> None:
    store = MemoryStore()
    store.append("tally-1", _tally_events(1, 13, 5))
    store.append("tally-2", _tally_events(1, 2, 3, stream="tally-2"))
    result = rehydrate_store(store, _TALLY_REGISTRY, _Tally, snapshot_every=1)
    assert [(s.stream, s.halted_at, s.snapshot_written) for s in result.streams] == [
        ("tally-1", 1, None), ("tally-2", None, 2)]
    assert load_snapshot(store, "tally-1") is None


def test_a_snapshot_that_cannot_be_restored_names_its_place_once() -> None:
    events = one_stream(12)
    snap = snapshot_at(events, 7)
    unknown = msgspec.structs.replace(snap, schema_version=3)
    state = msgspec.json.decode(bytes(snap.state))
    del state["carrier"]
    data = msgspec.json.encode(state)
    missing = msgspec.structs.replace(snap, state=msgspec.Raw(data),
                                      state_hash=state_hash_of(data))
    for bad, path in ((unknown, None), (missing, "/carrier")):
        result = rehydrate(events, REGISTRY, Order, snapshot=bad, policy="audit")
        (v,) = [v for v in result.violations if v.kind is ViolationKind.SNAPSHOT_INVALID]
        assert v.message.startswith("snapshot state cannot be restored: ")
        assert "(stream" not in v.message and v.path == path
        assert str(v).count(events[0].stream) == 1
        with pytest.raises(RehydrationError) as info:
            rehydrate(events, REGISTRY, Order, snapshot=bad)
        assert str(info.value).count(events[0].stream) == 1


def test_a_handler_raising_an_evtools_error_names_the_place_once() -> None:
    class Refusing(_Tally):
        @handles(_Counted)
        def _counted(self, e: _Counted) -> None:
            raise UsageError("no counting here", stream="tally-1", version=e.q)

    result = rehydrate(_tally_events(1), _TALLY_REGISTRY, Refusing, policy="audit")
    (v,) = result.violations
    assert "raised UsageError: no counting here" in v.message
    assert "(stream" not in v.message


def test_a_version_below_zero_is_an_invalid_version_not_a_duplicate() -> None:
    good = _tally_events(1, 2, 3)
    below = msgspec.structs.replace(good[0], version=-1, id="minus")
    later = msgspec.structs.replace(below, version=-7)
    for events, where in (([below, *good], -1), ([good[0], later, *good[1:]], -7)):
        result = rehydrate(events, _TALLY_REGISTRY, _Tally, policy="audit")
        (v,) = result.violations
        assert (v.kind, v.version) == (ViolationKind.INVALID_VERSION, where)
        assert "below 0" in v.message and "again" not in v.message
        assert v.event_id == "minus"
        assert (result.version, result.aggregate.total, result.events_skipped) == (2, 6, 1)
        assert result.halted_at is None
        with pytest.raises(RehydrationError) as info:
            rehydrate(events, _TALLY_REGISTRY, _Tally)
        assert info.value.violation.kind is ViolationKind.INVALID_VERSION


@pytest.mark.parametrize(("field", "value"), [
    ("version", "0"), ("version", None), ("version", 1.0), ("version", True),
    ("stream", 5), ("stream", None), ("stream", b"tally-1"),
    ("id", 5), ("id", None), ("id", b"q0"), ("type", 5), ("type", None),
])
def test_an_event_field_of_the_wrong_type_is_a_usage_error_naming_it(
        field: str, value: Any) -> None:
    """A RawEvent built by hand (RawEvent(...) checks nothing) with a version that is not
    an int had given a bare TypeError from feed and feed_all, or been taken as one (1.0,
    True at version 1); a stream or an id that is not a str had been taken as one."""
    good = _tally_events(1, 2, 3)
    for at in (0, 1):
        events = list(good)
        events[at] = msgspec.structs.replace(good[at], **{field: value})
        for how in ("feed_all", "feed"):
            for stream in ("tally-1", None):
                r = Rehydration(_TALLY_REGISTRY, _Tally, policy="audit", stream=stream)
                with pytest.raises(UsageError, match=f"RawEvent {field} must be") as info:
                    if how == "feed":
                        for e in events:
                            r.feed(e)
                    else:
                        r.feed_all(events)
                assert "build events with RawEvent.new" in str(info.value)
                assert r.events_applied == at  # refused before it was applied


def test_write_snapshot_records_the_time_it_was_written() -> None:
    # a RawEvent appended keeps the time it has (a copy invents none), so the snapshot's
    # event is given the time it is written, as a new event would get from the store
    from datetime import UTC, datetime

    from evtools.rehydration import load_snapshot, write_snapshot
    from evtools.stores import open_store

    before = datetime.now(UTC)
    with open_store("memory:") as store:
        events = list(generate(30, seed=4))
        stream = events[0].stream
        mine = [e for e in events if e.stream == stream]
        result = rehydrate(mine, order_registry(), Order, policy="audit")
        write_snapshot(store, take_snapshot(result.aggregate))
        raw = load_snapshot(store, stream)
    assert raw is not None and raw.recorded_at is not None
    assert before <= raw.recorded_at <= datetime.now(UTC)
