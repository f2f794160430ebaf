"""The optional C module (evtools/_speedups.c) against its Python twins.

Each C path must give the Python answer, or hand the question to Python: the Timestamp
``dec_hook``, the duplicate-key scan, and the C loop of ``Rehydration.feed_all`` (whose
Python loop runs every test of tests/test_rehydration.py a second time).
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from collections import defaultdict
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evtools import rehydration
from evtools._accel import SPEEDUPS, speedups
from evtools._json import find_duplicate_key
from evtools.datagen import FaultRates, generate
from evtools.errors import EvtoolsError
from evtools.events import RawEvent
from evtools.orders import Order, order_registry
from evtools.profiling import _status_view
from evtools.rehydration import rehydrate
from evtools.scalars import Timestamp, UInt64, dec_hook, py_dec_hook

from .stores.strategies import store_pages

needs_speedups = pytest.mark.skipif(not SPEEDUPS, reason="evtools._speedups is not built "
                                                         "(no C compiler): nothing to compare")


def test_the_speedups_are_built_where_a_c_compiler_is() -> None:
    cc = (sysconfig.get_config_var("CC") or "").split()
    if not cc or shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler here ({cc[0] if cc else 'sysconfig has no CC'}): evtools "
                    "runs its pure-Python paths, as designed")
    assert SPEEDUPS, ("a C compiler is here but evtools._speedups was not built; "
                      "`pip install -e .` prints why")


# -- Timestamp dec_hook ------------------------------------------------------------------------

@st.composite
def timestamp_texts(draw: st.DrawFn) -> str:
    """RFC 3339-like text, valid or nearly: every field may step out of its range."""
    fields = [draw(st.integers(0, 9999)), draw(st.integers(0, 13)), draw(st.integers(0, 32)),
              draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 61))]
    year, month, day, hour, minute, second = fields
    text = (f"{year:04d}-{month:02d}-{day:02d}{draw(st.sampled_from('TTt '))}"
            f"{hour:02d}:{minute:02d}:{second:02d}")
    fraction = draw(st.none() | st.text(alphabet="0123456789", max_size=11))
    if fraction is not None:
        text += "." + fraction
    text += draw(st.sampled_from(["Z", "z", "", "+00:00"])
                 | st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
                             st.sampled_from("+-"), st.integers(0, 24), st.integers(0, 60)))
    if draw(st.integers(0, 4)) == 0:  # one character changed
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from("0139-:.+TtZ \u0663x")) + text[i + 1:]
    return text


def _python_accepts(text: str) -> bool:
    try:
        Timestamp(text)
    except ValueError:
        return False
    return True


@needs_speedups
@given(timestamp_texts())
@example("2024-02-29T10:00:00Z")  # a leap day
@example("2023-02-29T10:00:00Z")  # not one
@example("2100-02-29T10:00:00Z")  # centuries are not leap years...
@example("2000-02-29T10:00:00Z")  # ...but every fourth is
@example("2024-04-31T10:00:00Z")
@example("0000-01-01T00:00:00Z")
@example("2024-06-30T23:59:60Z")  # a leap second: Python decides
@example("2024-01-01T00:00:00.1234567891Z")
@example("2024-01-01t00:00:00z")
def test_the_c_shape_check_takes_what_python_takes(text: str) -> None:
    assert speedups is not None
    takes = speedups.timestamp_shape(text)
    assert takes == (_python_accepts(text) and text[17:19] != "60"), text


def _outcome(hook: Any, type_: type, value: Any) -> tuple[str, Any]:
    try:
        out = hook(type_, value)
    except Exception as e:  # compared by type and text
        return type(e).__name__, str(e)
    if isinstance(out, Timestamp):
        return "Timestamp", (str(out), out.epoch_ns, out.utcoffset, out.nanosecond)
    return type(out).__name__, out


@needs_speedups
@given(timestamp_texts() | st.text(max_size=40))
@example("2024-11-11T14:47:52.083002874-03:30")
def test_the_c_hook_gives_the_python_hooks_answer(text: str) -> None:
    assert _outcome(dec_hook, Timestamp, text) == _outcome(py_dec_hook, Timestamp, text)


@needs_speedups
@pytest.mark.parametrize("type_, value", [
    (Timestamp, 5), (Timestamp, b"2024-01-01T00:00:00Z"), (UInt64, 5), (UInt64, -1),
    (UInt64, 2**64), (UInt64, "5"), (int, 5), (Timestamp, None),
])
def test_the_c_hook_hands_everything_else_to_python(type_: type, value: Any) -> None:
    assert _outcome(dec_hook, type_, value) == _outcome(py_dec_hook, type_, value)


@needs_speedups
def test_c_built_timestamps_behave_as_python_built_ones() -> None:
    import copy
    import pickle

    text = "2024-11-11T14:47:52.083002874-03:30"
    c_built, py_built = dec_hook(Timestamp, text), py_dec_hook(Timestamp, text)
    assert type(c_built) is Timestamp and c_built == py_built and hash(c_built) == hash(py_built)
    assert pickle.loads(pickle.dumps(c_built)) == c_built == copy.deepcopy(c_built)
    assert c_built.to_datetime(truncate=True) == py_built.to_datetime(truncate=True)
    assert repr(c_built) == repr(py_built) and c_built.isoformat() == text


# -- duplicate keys -----------------------------------------------------------------------------

_KEYS = st.text(alphabet='ab"\\\u00e9\u2028 :', max_size=3)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(alphabet='x"\\:{}[], ', max_size=4)
# objects as lists of pairs, so that keys can repeat
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.tuples(st.just("array"), st.lists(children, max_size=3))
    | st.tuples(st.just("object"), st.lists(st.tuples(_KEYS, children), max_size=4)),
    max_leaves=12)


def _write(tree: Any, ascii_only: bool, space: str) -> str:
    if isinstance(tree, tuple) and tree[0] == "array":
        return "[" + ("," + space).join(_write(x, ascii_only, space) for x in tree[1]) + "]"
    if isinstance(tree, tuple):
        return "{" + space + ("," + space).join(
            f"{json.dumps(k, ensure_ascii=ascii_only)}{space}:{space}"
            f"{_write(v, ascii_only, space)}" for k, v in tree[1]) + space + "}"
    return json.dumps(tree, ensure_ascii=ascii_only)


@needs_speedups
@given(_TREES, st.booleans(), st.sampled_from(["", " ", "\n\t "]))
@example(("object", [("a", 1), ("a", 2)]), True, "")
@example(("object", [("a", ("object", [("b", 1)])), ("b", ("object", [("b", 1)]))]), True, "")
@example(("object", [("\u00e9", 1), ("\u00e9", 2)]), True, "")  # escaped: Python decides
@example(("array", [("object", [("a", 1)]), ("object", [("a", 1)])]), False, " ")
def test_the_c_scan_is_exact_or_says_it_cannot_tell(tree: Any, ascii_only: bool,
                                                    space: str) -> None:
    assert speedups is not None
    data = _write(tree, ascii_only, space).encode()
    exact = find_duplicate_key(data) is not None
    found = speedups.duplicate_key(data)
    assert found is None or found == exact, data
    if b"\\" not in data:  # no escape in any key: the scan always tells
        assert found is exact, data


@needs_speedups
def test_the_c_scan_limits() -> None:
    assert speedups is not None
    deep = b"[" * 63 + b"{}" + b"]" * 63  # 64 levels
    assert speedups.duplicate_key(deep) is False
    assert speedups.duplicate_key(b"[" + deep + b"]") is None  # 65: too deep to tell
    many = "{" + ",".join(f'"k{i}":{i}' for i in range(256)) + "}"
    assert speedups.duplicate_key(many.encode()) is False
    assert speedups.duplicate_key(many.replace("}", ',"k300":1}').encode()) is None
    assert speedups.duplicate_key(many.replace("}", ',"k3":1}').encode()) is True
    with pytest.raises(TypeError, match="takes bytes"):
        speedups.duplicate_key(memoryview(b"{}"))  # type: ignore[arg-type]


@needs_speedups
@given(st.binary(max_size=64) | st.text(alphabet='{}[]":,ab\\ 1', max_size=40).map(str.encode))
def test_the_c_scan_takes_any_bytes(data: bytes) -> None:
    assert speedups is not None
    found = speedups.duplicate_key(data)  # never reads past the end, never raises
    assert found in (True, False, None)
    try:
        json.loads(data)
    except ValueError:
        return  # not JSON: the registry never asks
    if found is not None:
        assert found == (find_duplicate_key(data) is not None)


# -- the C loop of feed_all --------------------------------------------------------------------

def _both(fold: Any) -> tuple[Any, Any]:
    """``fold()`` with the C loop, then with the Python loop."""
    saved = rehydration._Folder
    try:
        c_side = _outcome_of(fold)
        rehydration._Folder = None
        py_side = _outcome_of(fold)
    finally:
        rehydration._Folder = saved
    return c_side, py_side


def _outcome_of(fold: Any) -> Any:
    try:
        results = fold()
    except EvtoolsError as e:
        return type(e).__name__, str(e)
    if not isinstance(results, list):  # the fold says what to compare
        return results
    return [(r.to_dict(), r.aggregate.state_bytes(), r.aggregate.frozen) for r in results]


def _streams(events: list[RawEvent]) -> dict[str, list[RawEvent]]:
    out: dict[str, list[RawEvent]] = defaultdict(list)
    for e in events:
        out[e.stream].append(e)
    return out


RATES = st.builds(FaultRates, **{name: st.sampled_from([0.0, 0.0, 0.02, 0.1]) for name in (
    "gap", "duplicate", "reorder", "clock_skew", "corrupt", "unknown_type", "foreign",
    "invariant")})


@needs_speedups
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), faults=RATES, policy=st.sampled_from(["audit", "strict"]),
       mix=st.sampled_from([0.0, 0.5]), lazy=st.booleans())
def test_the_c_loop_gives_the_python_loops_result(seed: int, faults: FaultRates, policy: str,
                                                   mix: float, lazy: bool) -> None:
    registry = order_registry()
    streams = _streams(list(generate(300, seed=seed, faults=faults, schema_mix=mix)))
    aggregate = _status_view() if lazy else Order

    def fold() -> list[Any]:
        return [rehydrate(events, registry, aggregate, stream=name, policy=policy,  # type: ignore[arg-type]
                          lazy=lazy) for name, events in sorted(streams.items())
                if not name.startswith("snapshot-")]

    c_side, py_side = _both(fold)
    assert c_side == py_side


@needs_speedups
def test_the_c_loop_hands_back_what_it_does_not_take() -> None:
    registry = order_registry()
    events = list(generate(30, n_streams=1, seed=4))

    class Later(RawEvent):  # a RawEvent, but not exactly one: the Python loop takes it
        pass

    odd = Later(**{f: getattr(events[10], f) for f in RawEvent.__struct_fields__})
    mixed = [*events[:10], odd, *events[11:]]
    c_side, py_side = _both(lambda: [rehydrate(mixed, registry, Order)])
    assert c_side == py_side and c_side == _outcome_of(lambda: [rehydrate(events, registry,
                                                                          Order)])
    for version in (2**70, 2**63 - 1):  # beyond a C long long, and its last value
        huge = [*events[:5], RawEvent(events[5].stream, version, events[5].type,
                                      events[5].data)]
        c_side, py_side = _both(lambda huge=huge: [rehydrate(huge, registry, Order,
                                                             policy="audit")])
        assert c_side == py_side
    not_raw = [*events[:3], {"stream": events[3].stream}]
    c_side, py_side = _both(lambda: [rehydrate(not_raw, registry, Order)])  # type: ignore[list-item]
    assert c_side == py_side and c_side[0] == "UsageError"


@needs_speedups
def test_the_c_loop_keeps_its_state_between_calls() -> None:
    registry = order_registry()
    events = list(generate(60, n_streams=1, seed=9, faults=FaultRates(duplicate=0.1)))

    def in_pieces() -> list[Any]:
        r = rehydration.Rehydration(registry, Order, policy="audit")
        for start in range(0, len(events), 7):
            r.feed_all(events[start:start + 7])
        return [r.finish()]

    c_side, py_side = _both(in_pieces)
    assert c_side == py_side == _outcome_of(lambda: [rehydrate(events, registry, Order,
                                                               policy="audit")])


# -- found by a review: each gave the C loop another answer than the Python one ------------------

@needs_speedups
def test_a_check_that_changes_its_own_invariant_table() -> None:
    from evtools.aggregate import invariant
    from evtools.orders import ItemAdded

    def first(self: Any) -> bool:
        type(self).invariant_table()[ItemAdded] = ()  # frees the tuple being run
        return True

    checks = {f"check_{i:02d}": invariant(after=(ItemAdded,))(
        first if i == 0 else (lambda self: True)) for i in range(25)}
    events = list(generate(6, n_streams=1, seed=3))

    def fold() -> list[Any]:
        fickle = type("Fickle", (Order,), dict(checks))  # a fresh class: a fresh table
        return [rehydrate(events, order_registry(), fickle)]

    c_side, py_side = _both(fold)
    assert c_side == py_side


@needs_speedups
def test_events_with_fields_of_the_wrong_type_get_the_registrys_answer() -> None:
    events = list(generate(4, n_streams=1, seed=3))
    for bad in ({"schema_version": [1]}, {"type": ["ItemAdded"]}, {"data": "{}"},
                {"content_type": None}):
        fields = {f: getattr(events[2], f) for f in RawEvent.__struct_fields__} | bad
        odd = [*events[:2], RawEvent(**fields), events[3]]
        c_side, py_side = _both(lambda odd=odd: [rehydrate(odd, order_registry(), Order,
                                                           policy="audit")])
        assert c_side == py_side, bad


class _ItemAddedV3(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: int
    sku: int
    quantity: int
    unit_price: dict[str, Any]
    occurred_at: Timestamp


@needs_speedups
def test_registry_changes_after_a_rehydration_is_built_are_seen() -> None:
    events = list(generate(6, n_streams=1, seed=3))

    def max_payload() -> list[Any]:
        registry = order_registry()
        rehydration.Rehydration(registry, Order)  # plans (and caches) the fold
        registry.max_payload_bytes = 50
        return [rehydrate(events, registry, Order, policy="audit")]

    def duplicate_keys() -> list[Any]:
        registry = order_registry(duplicate_keys="last-wins")
        rehydration.Rehydration(registry, Order)
        registry.duplicate_keys = "reject"
        twice = [*events[:2], RawEvent(events[2].stream, 2, events[2].type,
                                       events[2].data[:-1] + b',"quantity":1}',
                                       schema_version=events[2].schema_version)]
        return [rehydrate(twice, registry, Order, policy="audit")]

    def later_version() -> list[Any]:
        registry = order_registry()
        r = rehydration.Rehydration(registry, Order, policy="audit")
        registry.register(_ItemAddedV3, name="ItemAdded", version=3)  # v2: not current
        r.feed_all(events)
        return [r.finish()]

    for fold in (max_payload, duplicate_keys, later_version):
        c_side, py_side = _both(fold)
        assert c_side == py_side, fold.__name__
    huge = order_registry()
    huge.max_payload_bytes = 2**63  # beyond a C ssize_t: no limit in practice
    assert rehydrate(events, huge, Order).ok


@needs_speedups
def test_a_handlers_error_is_the_context_of_the_rehydration_error() -> None:
    from evtools.errors import RehydrationError
    from evtools.orders import ItemAdded

    class Failing(Order):
        def _item_added(self, e: ItemAdded) -> None:  # replaces the handler
            raise ValueError("boom")

    events = list(generate(6, n_streams=1, seed=3))
    contexts = []
    for loop in ("C", "Python"):
        saved = rehydration._Folder
        if loop == "Python":
            rehydration._Folder = None
        try:
            with pytest.raises(RehydrationError, match="raised ValueError: boom") as info:
                rehydrate(events, order_registry(), Failing)
        finally:
            rehydration._Folder = saved
        contexts.append(type(info.value.__context__))
    assert contexts == [ValueError, ValueError]


@needs_speedups
def test_the_state_after_a_strict_error_is_what_was_applied() -> None:
    from evtools.aggregate import invariant
    from evtools.errors import RehydrationError
    from evtools.orders import ItemAdded

    class Never(Order):
        @invariant(after=(ItemAdded,))
        def never(self) -> bool:
            return False

    events = list(generate(6, n_streams=1, seed=3))

    def fold() -> Any:
        r = rehydration.Rehydration(order_registry(), Never)  # strict, no stream= given
        with pytest.raises(RehydrationError):
            r.feed_all(events)
        return r.events_seen, r.events_applied, r.expected, r.stream

    c_side, py_side = _both(fold)
    assert c_side == py_side
    assert c_side[:3] == (2, 2, 2)  # the created order and the item that broke the check



@needs_speedups
def test_a_handler_that_raised_midway_is_said_alike_by_both_loops() -> None:
    """The C loop hands a handler's error to rehydration._handler_failed, as the Python
    loop does: the same partly_applied on the result, the same refused snapshot."""
    from evtools.orders import ItemAdded
    from evtools.rehydration import take_snapshot

    class Midway(Order):
        def _item_added(self, e: ItemAdded) -> None:  # replaces the handler
            super()._item_added(e)
            if len(self.lines) == 2:
                raise ValueError("after the change")

    events = list(generate(40, n_streams=1, seed=3))

    def fold() -> Any:
        result = rehydrate(events, order_registry(), Midway, policy="audit")
        assert result.partly_applied is not None
        return (result.to_dict(), result.aggregate.state_bytes(),
                _outcome_of(lambda: take_snapshot(result.aggregate)))

    c_side, py_side = _both(fold)
    assert c_side == py_side
    assert c_side[2][0] == "UsageError" and "partly applied" in c_side[2][1]


@needs_speedups
def test_the_c_loop_sends_a_stream_or_id_that_is_not_exactly_a_str_to_feed() -> None:
    class Name(str):
        pass

    events = list(generate(6, n_streams=1, seed=3))
    replace = msgspec.structs.replace
    for field, value in (("id", Name("an-id")), ("stream", Name(events[0].stream)),
                         ("id", 7), ("stream", 7)):
        at = 0 if field == "stream" else 2  # the first event names the stream
        odd = [*events[:at], replace(events[at], **{field: value}), *events[at + 1:]]
        c_side, py_side = _both(lambda odd=odd: [rehydrate(odd, order_registry(), Order,
                                                           policy="audit")])
        assert c_side == py_side, (field, value)
        if isinstance(value, str):
            assert c_side == _outcome_of(lambda: [rehydrate(events, order_registry(), Order,
                                                            policy="audit")])
        else:
            assert c_side[0] == "UsageError" and f"RawEvent {field} must be" in c_side[1]

# -- the SQLite store's look at a page of rows -------------------------------------------------

@needs_speedups
@settings(max_examples=600, deadline=None)
@given(store_pages())
def test_the_c_look_at_store_rows_is_the_python_one(page: tuple[list[Any], bool]) -> None:
    from evtools.stores.sqlite import _py_rows_look_right

    rows, with_stream = page
    assert speedups is not None
    assert speedups.rows_look_right(rows, with_stream) is _py_rows_look_right(rows,
                                                                              with_stream)
