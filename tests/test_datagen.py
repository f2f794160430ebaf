"""The workload generator: determinism, what the payloads carry, faults and the manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.datagen import (
    DETECTED_AS,
    FaultKind,
    FaultRates,
    export_jsonl,
    generate,
    write_workload,
)
from evtools.errors import ConcurrencyError, UsageError
from evtools.events import RawEvent
from evtools.orders import order_registry
from evtools.rehydration import ViolationKind, rehydrate_store
from evtools.stores import MemoryStore, open_store

REGISTRY = order_registry()


def digest(events: list[RawEvent]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(msgspec.msgpack.encode(e))
    return h.hexdigest()


def test_same_seed_same_bytes() -> None:
    faults = FaultRates.all(0.01)
    a = generate(3000, seed=42, faults=faults)
    b = generate(3000, seed=42, faults=faults)
    events_a, events_b = list(a), list(b)
    assert digest(events_a) == digest(events_b)
    assert a.manifest.to_dict() == b.manifest.to_dict()
    assert digest(list(generate(3000, seed=43, faults=faults))) != digest(events_a)


def test_counts_and_shapes() -> None:
    assert sum(1 for _ in generate(1234, seed=1)) == 1234
    long = list(generate(5000, n_streams=1, seed=1))
    assert [e.version for e in long] == list(range(5000))
    assert len({e.stream for e in long}) == 1
    assert len({e.id for e in long}) == 5000
    split = list(generate(1000, n_streams=10, seed=1))
    assert Counter(e.stream for e in split) == Counter(
        {s: 100 for s in {e.stream for e in split}})
    whole = generate(n_streams=50, seed=1)
    streams = Counter(e.stream for e in whole)
    assert len(streams) == 50 == whole.manifest.streams
    assert all(3 <= n <= 11 for n in streams.values())


def test_payloads_carry_what_untyped_consumers_lose() -> None:
    events = list(generate(4000, seed=2))
    types = Counter((e.type, e.schema_version) for e in events)
    assert {t for t, _ in types} == {"OrderCreated", "ItemAdded", "ItemRemoved",
                                     "AddressChanged", "PaymentAuthorized", "OrderShipped",
                                     "OrderDelivered", "OrderCancelled"}
    assert types["ItemAdded", 1] and types["ItemAdded", 2]
    assert types["PaymentAuthorized", 1] and types["PaymentAuthorized", 2]
    blob = b"\n".join(e.data for e in events)
    ids = [int(m) for m in re.findall(rb'"order_id":(\d+)', blob)]
    assert min(ids) > 2**53 and max(ids) < 2**63
    assert re.search(rb'"amount":\d+\.\d\d[,}]', blob)  # money as a number with cents
    assert re.search(rb'"price":\d+\.\d\d,', blob)
    stamps = re.findall(rb'"occurred_at":"([^"]+)"', blob)
    assert all(re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)", t)
               for t in stamps)
    assert {t[-6:] for t in stamps if not t.endswith(b"Z")} > {b"+02:00"}
    assert all(e.recorded_at is not None and e.recorded_at.utcoffset() is not None
               for e in events)


def test_every_clean_event_decodes() -> None:
    for e in generate(3000, seed=3, schema_mix=0.5):
        REGISTRY.decode(e)


def test_fault_rates_parse_and_validate() -> None:
    assert FaultRates.parse("gap=0.01, duplicate=0.02") == FaultRates(gap=0.01, duplicate=0.02)
    assert FaultRates.parse("") == FaultRates() and not FaultRates().any
    assert FaultRates.parse("clock-skew=0.5").clock_skew == 0.5
    assert str(FaultRates(gap=0.01)) == "gap=0.01"
    for bad in ("gap", "nope=0.1", "gap=x", "gap=2", "gap=0.6,duplicate=0.6"):
        with pytest.raises(UsageError):
            FaultRates.parse(bad)
    assert set(DETECTED_AS.values()) <= {str(k) for k in ViolationKind}


def test_fault_rates_parse_refuses_a_name_given_twice_and_a_rate_lost_to_zero() -> None:
    with pytest.raises(UsageError, match="gap is given twice"):
        FaultRates.parse("gap=0.1,gap=0.2")
    with pytest.raises(UsageError, match="too small"):
        FaultRates.parse("gap=1e-400")  # 0.0 as a float: it would inject nothing
    assert FaultRates.parse("gap=0e5, duplicate=0.0") == FaultRates()
    with pytest.raises(UsageError, match=r"must be a number in \[0, 1\], got -1e-400"):
        FaultRates.parse("gap=-1e-400")
    numpy_rates = FaultRates(gap=np.float64(0.1))  # as a notebook computes them
    assert FaultRates.parse(str(numpy_rates)) == numpy_rates


_RATE_NAMES = [f.name for f in dataclasses.fields(FaultRates)]


@given(st.lists(st.tuples(st.sampled_from([*_RATE_NAMES, "clock-skew", "nope", ""]),
                          st.sampled_from(["=", "", "=="]),
                          st.text(max_size=8) | st.floats().map(repr)),
                max_size=4).map(lambda parts: ",".join(a + b + c for a, b, c in parts)))
def test_property_fault_rates_parse_gives_rates_or_a_usage_error(text: str) -> None:
    try:
        rates = FaultRates.parse(text)
    except UsageError:
        return
    assert all(0.0 <= v <= 1.0 for v in rates.to_dict().values())
    assert FaultRates.parse(str(rates) if rates.any else "") == rates


@given(st.dictionaries(st.sampled_from(_RATE_NAMES), st.floats(0.0, 0.1), max_size=4))
def test_property_fault_rates_text_reads_back_exactly(rates: dict[str, float]) -> None:
    written = FaultRates(**rates)
    assert FaultRates.parse(str(written) if written.any else None) == written


def test_faults_are_injected_at_about_their_rates() -> None:
    workload = generate(20_000, seed=4, faults=FaultRates(gap=0.01, duplicate=0.02,
                                                          corrupt=0.01))
    for _ in workload:
        pass
    counts = workload.manifest.counts
    assert 100 < counts["gap"] < 300
    assert 250 < counts["duplicate"] < 550
    assert 100 < counts["corrupt"] < 300
    frame = workload.manifest.to_frame()
    assert frame.height == len(workload.manifest.faults)
    assert set(frame["detected_as"]) == {"gap", "duplicate", "decode_error"}
    assert "gap" in workload.manifest.summary()


def test_delivery_faults_cannot_be_stored() -> None:
    with pytest.raises(UsageError, match="export_jsonl"):
        write_workload(MemoryStore(), 100, faults="gap=0.1")
    with pytest.raises(UsageError):
        generate(100, faults=FaultRates(reorder=0.1), at_rest=True)


def test_write_workload_appends_in_batches_with_expected_versions() -> None:
    store = MemoryStore()
    written = write_workload(store, 3000, n_streams=3, seed=6, batch_size=250)
    assert written.events == 3000 and written.streams == 3 and written.appends == 12
    for stream in store.list_streams():
        versions = [e.version for e in store.read_stream(stream)]
        assert versions == list(range(1000))
    assert list(generate(3000, n_streams=3, seed=6, at_rest=True))[-1].data == \
        list(store.read_all())[-1].data
    with pytest.raises(ConcurrencyError):
        write_workload(store, 3000, n_streams=3, seed=6)
    assert "3000 events" in written.summary()
    assert written.to_dict()["manifest"]["events"] == 3000


def test_write_workload_stores_snapshot_faults() -> None:
    store = MemoryStore()
    seen: list[int] = []
    written = write_workload(store, 1000, seed=7,
                             faults=FaultRates(snapshot_conflict=0.3, truncate=0.3),
                             progress=seen.append)
    # progress counts the order events against the 1000 asked for, not the snapshots
    assert written.snapshots > 0 and seen[-1] == written.events - written.snapshots
    assert seen == sorted(seen)
    kinds = written.manifest.counts
    assert kinds["snapshot_conflict"] and kinds["truncate"]
    snapshot_streams = [s for s in store.list_streams() if s.startswith("snapshot-")]
    assert len(snapshot_streams) == written.manifest.snapshots
    for fault in written.manifest.faults:
        if fault.kind is FaultKind.TRUNCATE:
            head = written.manifest.heads[fault.stream]
            assert store.stream_version(fault.stream) == fault.version - 1 < head


def test_exported_jsonl_keeps_delivery_faults(tmp_path: Path) -> None:
    workload = generate(2000, seed=8, faults=FaultRates(gap=0.02, reorder=0.02))
    path = tmp_path / "orders.jsonl"
    assert export_jsonl(workload, path) == 2000
    with open_store(str(path)) as store:
        result = rehydrate_store(store, REGISTRY, __import__("evtools.orders").orders.Order)
    expected = {(f.detected_as, f.stream, f.version) for f in workload.manifest.faults}
    assert {(str(v.kind), v.stream, v.version) for v in result.violations} == expected
