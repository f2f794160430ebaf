from __future__ import annotations

import contextlib
import dataclasses
import enum
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtools._json import msgspec_path_to_pointer
from evtools.aggregate import Aggregate, handles
from evtools.errors import (
    DecodeError,
    EvtoolsError,
    InputError,
    SchemaError,
    UnknownEventType,
    UnknownSchemaVersion,
    UpcastError,
    UsageError,
)
from evtools.events import RawEvent
from evtools.registry import Registry
from evtools.rehydration import rehydrate
from evtools.scalars import Int64

from .strategies import Placed, json_values, placed_events

GOOD = (b'{"order_id":9007199254740993,"customer":"7f4c2b2e-8d5e-4d8e-9a0a-1c2b3d4e5f60",'
        b'"placed_at":"2026-01-01T00:00:00.123456789+02:00",'
        b'"total":{"amount":12.30,"currency":"EUR"},'
        b'"lines":[{"sku":18014398509481985,"quantity":2,"price":{"amount":"6.15",'
        b'"currency":"EUR"}}]}')


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.register(Placed, name="OrderPlaced", version=2)
    return reg


def raw(data: bytes, *, type: str = "OrderPlaced", schema_version: int = 2,
        content_type: str = "application/json") -> RawEvent:
    return RawEvent.new("order-7", 41, type, data, schema_version=schema_version,
                        content_type=content_type)


def test_decodes_exact_values(registry: Registry) -> None:
    ev = registry.decode(raw(GOOD))
    assert isinstance(ev, Placed)
    assert ev.order_id == 9007199254740993  # above 2**53, not rounded
    assert ev.total.amount == Decimal("12.30") and str(ev.total.amount) == "12.30"
    assert ev.lines[0].price.amount == Decimal("6.15")
    assert ev.lines[0].sku == 2**54 + 1
    assert ev.placed_at.nanosecond == 123456789
    assert str(ev.placed_at) == "2026-01-01T00:00:00.123456789+02:00"
    assert ev.customer == uuid.UUID("7f4c2b2e-8d5e-4d8e-9a0a-1c2b3d4e5f60")


def test_decimal_from_number_text_is_never_via_float(registry: Registry) -> None:
    data = GOOD.replace(b"12.30", b"0.1000000000000000055511151231257827021181583404541015625")
    assert registry.decode(raw(data)).total.amount == \
        Decimal("0.1000000000000000055511151231257827021181583404541015625")


def test_big_ints_stay_ints(registry: Registry) -> None:
    big = 2**200 + 1
    ev = registry.decode(raw(GOOD[:-1] + b',"huge":' + str(big).encode() + b"}"))
    assert ev.huge == big and type(ev.huge) is int


# -- every bad input of the foundation issue, each an EvtoolsError with context ---------------

def _bad(**replace: bytes) -> bytes:
    data = GOOD
    for old, new in replace.items():
        data = data.replace(old.encode(), new)
    return data


BAD_INPUTS: list[tuple[str, bytes, type[EvtoolsError], str, str | None]] = [
    ("malformed JSON", GOOD[:40], DecodeError, "not valid JSON", None),
    ("invalid UTF-8", GOOD.replace(b'"EUR"', b'"E\xffR"', 1), DecodeError, "invalid UTF-8",
     None),
    ("not an object", b"[1, 2, 3]", SchemaError, "Expected `object`, got `array`", ""),
    ("NaN token", GOOD.replace(b"12.30", b"NaN"), DecodeError, "not valid JSON", None),
    ("Infinity token", GOOD.replace(b"12.30", b"-Infinity"), DecodeError, "not valid JSON",
     None),
    ("1e400", GOOD.replace(b'"quantity":2', b'"quantity":1e400'), SchemaError,
     "number out of range", "/lines/0/quantity"),
    ("deep nesting", GOOD[:-1] + b',"tags":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
     SchemaError, "Expected `str`, got `array`", "/tags/*"),
    ("duplicate keys", GOOD.replace(b'"currency":"EUR"}}', b'"currency":"EUR","currency":'
                                                           b'"USD"}}'),
     DecodeError, "duplicate key 'currency'", "/lines/0/price"),
    ("wrong JSON type", GOOD.replace(b'"quantity":2', b'"quantity":"2"'), SchemaError,
     "Expected `int`, got `str`", "/lines/0/quantity"),
    ("missing field", GOOD.replace(b'"quantity":2,', b""), SchemaError,
     "missing required field `quantity`", "/lines/0/quantity"),  # the member itself
    ("enum value", GOOD.replace(b'"currency":"EUR"}', b'"currency":"eur"}', 1), SchemaError,
     "Invalid enum value 'eur'", "/total/currency"),
    ("no offset", GOOD.replace(b"+02:00", b""), SchemaError, "has no UTC offset",
     "/placed_at"),
    ("int64 overflow", GOOD.replace(b"9007199254740993", b"9223372036854775808"), SchemaError,
     "<= 9223372036854775807", "/order_id"),
    ("unknown field", GOOD.replace(b'"quantity":2', b'"quantity":2,"discount":1'),
     SchemaError, "unknown field `discount`", "/lines/0/discount"),
    ("bad uuid", GOOD.replace(b"7f4c2b2e-", b"7f4c2b2x-"), SchemaError, "Invalid UUID",
     "/customer"),
]


@pytest.mark.parametrize("name, data, error, message, path", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_with_context(registry: Registry, name: str, data: bytes,
                                       error: type[EvtoolsError], message: str,
                                       path: str | None) -> None:
    with pytest.raises(error, match=message) as info:
        registry.decode(raw(data))
    ctx = info.value.context
    assert (ctx.stream, ctx.version, ctx.event_type, ctx.schema_version) == \
        ("order-7", 41, "OrderPlaced", 2)
    if path is not None:
        assert ctx.path == path
    assert info.value.__cause__ is not None or isinstance(info.value, DecodeError)
    assert "order-7" in str(info.value) and "version 41" in str(info.value)


@pytest.mark.parametrize("message, pointer", [
    ("Expected `int`, got `str` - at `$.lines[0].quantity`", "/lines/0/quantity"),
    ("Object contains unknown field `discount` - at `$.lines[0]`", "/lines/0/discount"),
    ("Object contains unknown field `a/b~`", "/a~1b~0"),
    ("Object missing required field `sku` - at `$.lines[0]`", "/lines/0/sku"),
    ("Expected `str`, got `int` - at `$.tags[...]`", "/tags/*"),
    ("Expected `object`, got `array`", ""),
])
def test_msgspec_messages_become_json_pointers(message: str, pointer: str) -> None:
    assert msgspec_path_to_pointer(message) == pointer


def test_unknown_fields_are_pointed_at_alike_by_msgspec_and_the_registry() -> None:
    strict = Registry()  # a class that rejects unknown fields itself: msgspec finds them
    strict.register(Tight, name="Tight")
    lenient = Registry()  # one that does not: the registry's own walk finds them
    lenient.register(Loose, name="Loose")
    pointers = []
    for reg, name in ((strict, "Tight"), (lenient, "Loose")):
        with pytest.raises(SchemaError) as info:
            reg.decode(raw(b'{"inner":{"a":1,"zz":2}}', type=name, schema_version=1))
        pointers.append(info.value.context.path)
    assert pointers == ["/inner/zz", "/inner/zz"]


class TightInner(msgspec.Struct, forbid_unknown_fields=True):
    a: int


class Tight(msgspec.Struct, forbid_unknown_fields=True):
    inner: TightInner


class LooseInner(msgspec.Struct):
    a: int


class Loose(msgspec.Struct):
    inner: LooseInner


def test_50_mb_string_is_refused_before_parsing(registry: Registry) -> None:
    data = b'{"note":"' + b"x" * (50 * 1024 * 1024) + b'"}'
    with pytest.raises(DecodeError, match="exceeds the limit"):
        registry.decode(raw(data))


def test_nesting_deeper_than_the_parser_allows_is_a_decode_error() -> None:
    reg = Registry()

    @reg.register("Any")
    class AnyPayload(msgspec.Struct):
        x: Any

    with pytest.raises(DecodeError, match=r"^payload is nested too deeply to read"):
        reg.decode(raw(b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", type="Any",
                       schema_version=1))


def test_unknown_type_and_version(registry: Registry) -> None:
    with pytest.raises(UnknownEventType, match="'Nope'"):
        registry.decode(raw(GOOD, type="Nope"))
    with pytest.raises(UnknownSchemaVersion, match="schema version 3"):
        registry.decode(raw(GOOD, schema_version=3))
    with pytest.raises(UnknownSchemaVersion, match="schema version 1"):
        registry.decode(raw(GOOD, schema_version=1))


def test_non_json_content_type_is_refused(registry: Registry) -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        registry.decode(raw(GOOD, content_type="application/octet-stream"))


# -- unknown-field policy ---------------------------------------------------------------------

class Lenient(msgspec.Struct):  # does not forbid unknown fields itself
    a: int
    inner: dict[str, int] = {}


def test_reject_policy_catches_unknown_fields_msgspec_ignores() -> None:
    reg = Registry()
    reg.register(Lenient, version=1)
    with pytest.raises(SchemaError, match="unknown field 'zz'") as info:
        reg.decode(raw(b'{"a":1,"zz":2}', type="Lenient", schema_version=1))
    assert info.value.context.path == "/zz"


def test_keep_policy_decodes_and_reports() -> None:
    reg = Registry(unknown_fields="keep")
    reg.register(Lenient, version=1)
    reg.register(Placed, name="OrderPlaced", version=2)
    out = reg.decode_verbose(raw(b'{"a":1,"zz":{"q":2}}', type="Lenient", schema_version=1))
    assert out.event == Lenient(a=1) and out.unknown == {"/zz": {"q": 2}}
    # a class that forbids unknown fields itself: keep still keeps
    data = GOOD.replace(b'"quantity":2', b'"quantity":2,"discount":1')
    out = reg.decode_verbose(raw(data))
    assert out.unknown == {"/lines/0/discount": 1} and out.event.lines[0].quantity == 2
    assert reg.unknown_field_counts[("OrderPlaced", 2, "/lines/0/discount")] == 1


def test_dataclasses_are_accepted() -> None:
    reg = Registry()

    @reg.register("Renamed", version=1)
    @dataclasses.dataclass
    class Renamed:
        old: str
        new: str

    assert reg.decode(raw(b'{"old":"a","new":"b"}', type="Renamed", schema_version=1)) == \
        Renamed("a", "b")
    with pytest.raises(SchemaError, match="unknown field 'x'"):
        reg.decode(raw(b'{"old":"a","new":"b","x":0}', type="Renamed", schema_version=1))


# -- upcasters -------------------------------------------------------------------------------

class V3(msgspec.Struct, forbid_unknown_fields=True):
    order_id: Int64
    total: Decimal
    currency: str
    channel: str


def upcast_registry(duplicate_keys: Any = "reject") -> Registry:
    reg = Registry(duplicate_keys=duplicate_keys)
    reg.register(V3, name="Placed", version=3)

    @reg.upcaster("Placed", from_version=1)
    def rename(p: dict[str, Any]) -> dict[str, Any]:
        p["total"] = p.pop("amount")
        p["currency"] = "EUR"
        return p

    @reg.upcaster("Placed", from_version=2)
    def add_channel(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "channel": "web"}

    return reg


def test_upcasters_chain_and_keep_values_exact() -> None:
    reg = upcast_registry()
    ev = reg.decode(raw(b'{"order_id":9007199254740993,"amount":0.30}', type="Placed",
                        schema_version=1))
    assert ev == V3(order_id=9007199254740993, total=Decimal("0.30"), currency="EUR",
                    channel="web")
    assert str(ev.total) == "0.30"


def test_missing_upcaster_step_names_type_and_versions() -> None:
    reg = Registry()
    reg.register(V3, name="Placed", version=3)
    reg.add_upcaster("Placed", 1, lambda p: p)
    with pytest.raises(UpcastError, match=r"no upcaster for Placed from v2 .*v1 -> v2.*v3"):
        reg.decode(raw(b"{}", type="Placed", schema_version=1))


def test_upcasters_only_go_forward() -> None:
    reg = Registry()
    reg.register(V3, name="Placed", version=3)
    reg.add_upcaster("Placed", 1, lambda p: p)
    for back in (1, 2):  # back or in place: a chain could loop forever
        with pytest.raises(UsageError, match=rf"later version: Placed v2 -> v{back} goes back"):
            reg.add_upcaster("Placed", 2, lambda p: p, to_version=back)
    with pytest.raises(UsageError, match="goes back"):
        reg.upcaster("Placed", 2, to_version=2)
    reg.add_upcaster("Placed", 2, lambda p: p, to_version=4)  # v4 may be registered later
    with pytest.raises(UpcastError, match=r"Placed v1 -> v2 -> v4 goes past v3, the latest"):
        reg.decode(raw(b"{}", type="Placed", schema_version=1))


@pytest.mark.parametrize("args, message", [
    (("Placed", "1", lambda p: p), r"from_version: schema versions are ints from 1, not '1'"),
    (("Placed", 0, lambda p: p), r"from_version: schema versions are ints from 1, not 0"),
    (("Placed", True, lambda p: p), r"from_version: .* not True"),
    (("Placed", 1, lambda p: p, "3"), r"to_version: schema versions are ints from 1, not '3'"),
    ((5, 1, lambda p: p), r"event type must be a non-empty str, not 5"),
    (("", 1, lambda p: p), r"event type must be a non-empty str, not ''"),
    (("Placed", 1, 5), r"upcaster for Placed v1 must be a function of the payload dict, "
                       r"not int"),
    (("Placed", 1, None), r"not NoneType"),
])
def test_upcaster_arguments_are_checked_when_added(args: tuple[Any, ...],
                                                   message: str) -> None:
    reg = Registry()
    reg.register(V3, name="Placed", version=3)
    with pytest.raises(UsageError, match=message):
        reg.add_upcaster(*args)
    if callable(args[2]):  # the decorator checks its arguments before it gets the function
        with pytest.raises(UsageError, match=message):
            reg.upcaster(args[0], args[1], *args[3:])
    assert not reg.knows("Placed", 1)  # nothing was added


def test_upcaster_output_the_class_rejects() -> None:
    reg = Registry()
    reg.register(V3, name="Placed", version=3)
    reg.add_upcaster("Placed", 2, lambda p: p)  # forgets the channel
    with pytest.raises(UpcastError, match=r"v2 -> v3 produced a payload V3 rejects: .*"
                                          r"channel") as info:
        reg.decode(raw(b'{"order_id":1,"total":1,"currency":"EUR"}', type="Placed",
                       schema_version=2))
    assert info.value.context.stream == "order-7"


def test_upcaster_that_raises_is_wrapped() -> None:
    reg = upcast_registry()
    with pytest.raises(UpcastError, match=r"v1 -> v2 failed: KeyError"):
        reg.decode(raw(b'{"order_id":1}', type="Placed", schema_version=1))


@pytest.mark.parametrize("payload", [
    b'{"order_id":1,"amount":0.30,"amount":0.31}',
    b'{"order_id":1, "amount" : 0.30,"order_id":1}',
    b'{"order_id":1,"amount":0.30,"\\u006frder_id":2}',  # an escaped spelling of a key
])
def test_duplicate_keys_in_old_versions_are_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="duplicate key") as info:
        upcast_registry().decode(raw(payload, type="Placed", schema_version=1))
    assert info.value.context.schema_version == 1
    ev = upcast_registry(duplicate_keys="last-wins").decode(raw(payload, type="Placed",
                                                                 schema_version=1))
    assert ev.order_id in (1, 2)


def test_upcast_plans_follow_later_registrations() -> None:
    reg = upcast_registry()
    old = raw(b'{"order_id":1,"amount":0.30}', type="Placed", schema_version=1)
    assert reg.decode(old).channel == "web"  # the plan v1 -> v3 is built and cached

    class V4(msgspec.Struct, forbid_unknown_fields=True):
        order_id: Int64
        total: Decimal
        currency: str
        channel: str
        region: str

    reg.register(V4, name="Placed", version=4)
    with pytest.raises(UpcastError, match="no upcaster for Placed from v3"):
        reg.decode(old)  # the cached plan to v3 is gone: v4 is now the target
    reg.add_upcaster("Placed", 3, lambda p: {**p, "region": "eu"})
    assert reg.decode(old) == V4(1, Decimal("0.30"), "EUR", "web", "eu")


# -- typed upcasters -------------------------------------------------------------------------

class TypedV1(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    order_id: Int64
    amount: Decimal


class TypedV2(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    order_id: Int64
    total: Decimal
    currency: str


def typed_registry(*, last: str = "typed", duplicate_keys: Any = "reject") -> Registry:
    """Placed v1 -> v2 typed; v2 -> v3 typed (``last="typed"``) or a dict step."""
    reg = Registry(duplicate_keys=duplicate_keys)
    reg.register(TypedV1, name="Placed", version=1)
    reg.register(TypedV2, name="Placed", version=2)
    reg.register(V3, name="Placed", version=3)

    @reg.upcaster("Placed", from_version=1, typed=True)
    def to_v2(e: TypedV1) -> TypedV2:
        return TypedV2(order_id=e.order_id, total=e.amount, currency="EUR")

    if last == "typed":
        reg.add_upcaster("Placed", 2, lambda e: V3(e.order_id, e.total, e.currency, "web"),
                         typed=True)
    else:
        reg.add_upcaster("Placed", 2, lambda p: {**p, "channel": "web"})
    return reg


V1_PAYLOAD = b'{"order_id":9007199254740993,"amount":0.30}'


@pytest.mark.parametrize("last", ["typed", "dict"])
def test_typed_upcasters_chain_alone_and_with_dict_steps(last: str) -> None:
    reg = typed_registry(last=last)
    want = V3(order_id=9007199254740993, total=Decimal("0.30"), currency="EUR", channel="web")
    ev = reg.decode(raw(V1_PAYLOAD, type="Placed", schema_version=1))
    assert ev == want and str(ev.total) == "0.30"
    assert reg.decode(raw(b'{"order_id":1,"total":2.5,"currency":"USD"}', type="Placed",
                          schema_version=2)) == V3(1, Decimal("2.5"), "USD", "web")
    slow = reg.decode_payload("Placed", 1, V1_PAYLOAD)  # the path that explains errors
    assert slow == want
    plan = reg._plan(("Placed", 1))
    assert (plan is not None) == (last == "typed")  # a mixed chain takes the slow path


def test_a_dict_step_before_a_typed_one() -> None:
    reg = Registry()
    reg.register(TypedV2, name="Placed", version=2)
    reg.register(V3, name="Placed", version=3)
    reg.add_upcaster("Placed", 1, lambda p: {"order_id": p["id"], "total": p["amount"],
                                             "currency": "EUR"})
    reg.add_upcaster("Placed", 2, lambda e: V3(e.order_id, e.total, e.currency, "web"),
                     typed=True)
    assert reg.decode(raw(b'{"id":1,"amount":1.10}', type="Placed", schema_version=1)) == \
        V3(1, Decimal("1.10"), "EUR", "web")
    forgets = Registry()  # the dict step forgets a field the typed step's class needs
    forgets.register(TypedV2, name="Placed", version=2)
    forgets.register(V3, name="Placed", version=3)
    forgets.add_upcaster("Placed", 1, lambda p: {"order_id": 1, "total": 1})
    forgets.add_upcaster("Placed", 2, lambda e: e, typed=True)
    with pytest.raises(UpcastError, match=r"upcast Placed v1 -> v2 produced a payload "
                                          r"TypedV2 rejects: .*currency") as info:
        forgets.decode(raw(b'{"id":1}', type="Placed", schema_version=1))
    assert info.value.context.schema_version == 1  # the stored version, as for dict chains
    assert info.value.context.stream == "order-7"


class TextV1(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    order_id: Int64
    amount: str  # v1 kept the amount as text; the v1 -> v2 upcaster makes it a Decimal


@pytest.mark.parametrize("last", ["typed", "dict"])
@pytest.mark.parametrize("amount", ["NaN", "-Infinity", "sNaN"])
def test_a_typed_upcaster_cannot_bring_in_a_nan_amount(last: str, amount: str) -> None:
    """TypedV2 refuses "NaN" in a payload; a typed upcaster that builds one from text is
    refused the same way, on the hot path and on the slow one, naming the field."""
    reg = Registry()
    reg.register(TextV1, name="Placed", version=1)
    reg.register(TypedV2, name="Placed", version=2)
    reg.register(V3, name="Placed", version=3)
    reg.add_upcaster("Placed", 1, lambda e: TypedV2(e.order_id, Decimal(e.amount), "EUR"),
                     typed=True)
    if last == "typed":
        reg.add_upcaster("Placed", 2, lambda e: V3(e.order_id, e.total, e.currency, "web"),
                         typed=True)
    else:
        reg.add_upcaster("Placed", 2, lambda p: {**p, "channel": "web"})
    assert reg.decode(raw(b'{"order_id":1,"amount":"0.30"}', type="Placed",
                          schema_version=1)) == V3(1, Decimal("0.30"), "EUR", "web")
    assert (reg._plan(("Placed", 1)) is not None) == (last == "typed")
    bad = raw(b'{"order_id":1,"amount":"%s"}' % amount.encode(), type="Placed",
              schema_version=1)
    for decode in (reg.decode, lambda r: reg.decode_payload("Placed", 1, r.data)):
        with pytest.raises(UpcastError, match=r"^the typed upcaster Placed v1 -> v2 returned "
                                              r"a TypedV2 holding what TypedV2 rejects in a "
                                              r"payload: Expected a finite `decimal`, got "
                                              rf"`{amount}`") as info:
            decode(bad)
        assert info.value.context.path == "/total"
        assert info.value.context.schema_version == 1


def test_a_typed_upcaster_may_return_an_unset_or_none_decimal() -> None:
    class Optional2(msgspec.Struct, forbid_unknown_fields=True):
        order_id: Int64
        total: Decimal | None = None

    reg = Registry()
    reg.register(TextV1, name="Placed", version=1)
    reg.register(Optional2, name="Placed", version=2)
    reg.add_upcaster("Placed", 1, lambda e: Optional2(e.order_id), typed=True)
    assert reg.decode(raw(b'{"order_id":1,"amount":"x"}', type="Placed",
                          schema_version=1)) == Optional2(1)


class LaxV2(msgspec.Struct, frozen=True):  # ignores fields it does not declare
    order_id: Int64
    total: Decimal
    currency: str


@pytest.mark.parametrize("v2", [TypedV2, LaxV2], ids=["strict v2", "lax v2"])
def test_every_decode_of_a_chain_follows_the_unknown_field_policy(v2: type) -> None:
    def chain(policy: Any) -> Registry:  # v1 (dict) -> v2 (typed) -> v3
        reg = Registry(unknown_fields=policy)
        reg.register(v2, name="Placed", version=2)
        reg.register(V3, name="Placed", version=3)
        reg.add_upcaster("Placed", 1, lambda p: {**p, "currency": "EUR"})
        reg.add_upcaster("Placed", 2, lambda e: V3(e.order_id, e.total, e.currency, "web"),
                         typed=True)
        return reg

    extra = raw(b'{"order_id":1,"total":2,"tag":"a"}', type="Placed", schema_version=1)
    with pytest.raises(SchemaError, match="unknown field 'tag'") if v2 is LaxV2 else \
            pytest.raises(UpcastError, match="unknown field `tag`"):
        chain("reject").decode(extra)
    keep = chain("keep")
    decoded = keep.decode_verbose(extra)
    assert decoded.event == V3(1, Decimal(2), "EUR", "web")
    assert decoded.unknown == {"/tag": "a"}
    assert keep.unknown_field_counts[("Placed", 2, "/tag")] == 1


def test_a_typed_first_step_keeps_and_reports_unknown_fields() -> None:
    keep = typed_registry()
    keep.unknown_fields = "keep"
    extra = raw(b'{"order_id":1,"amount":2,"gift":true}', type="Placed", schema_version=1)
    decoded = keep.decode_verbose(extra)
    assert decoded.event.total == 2 and decoded.unknown == {"/gift": True}
    assert keep.unknown_field_counts[("Placed", 1, "/gift")] == 1  # the class without it


def test_a_typed_upcaster_returns_its_class_and_nothing_else() -> None:
    reg = Registry()
    reg.register(TypedV1, name="Placed", version=1)
    reg.register(TypedV2, name="Placed", version=2)
    reg.add_upcaster("Placed", 1, lambda e: {"order_id": 1, "total": 1, "currency": "EUR"},
                     typed=True)
    with pytest.raises(UpcastError, match=r"typed upcaster Placed v1 -> v2 returned dict, "
                                          r"not TypedV2"):
        reg.decode(raw(V1_PAYLOAD, type="Placed", schema_version=1))


def test_an_input_error_from_an_upcaster_gets_the_events_context() -> None:
    reg = Registry()
    reg.register(V3, name="Placed", version=3)

    def refuse(p: dict[str, Any]) -> dict[str, Any]:
        raise SchemaError("amounts in old events must be positive", path="/amount")

    reg.add_upcaster("Placed", 1, refuse, to_version=3)
    with pytest.raises(SchemaError, match="must be positive") as info:
        reg.decode(raw(b'{"order_id":1,"amount":-1}', type="Placed", schema_version=1))
    assert (info.value.context.stream, info.value.context.version,
            info.value.context.path) == ("order-7", 41, "/amount")


def test_typed_upcaster_errors_name_the_step() -> None:
    old = raw(V1_PAYLOAD, type="Placed", schema_version=1)
    wrong = Registry()
    wrong.register(TypedV1, name="Placed", version=1)
    wrong.register(TypedV2, name="Placed", version=2)
    wrong.add_upcaster("Placed", 1, lambda e: e, typed=True)  # returns the old class
    with pytest.raises(UpcastError, match=r"returned TypedV1, not TypedV2 \(the class of v2\)"):
        wrong.decode(old)
    raising = Registry()
    raising.register(TypedV1, name="Placed", version=1)
    raising.register(TypedV2, name="Placed", version=2)
    raising.add_upcaster("Placed", 1, lambda e: e.missing, typed=True)
    with pytest.raises(UpcastError, match=r"v1 -> v2 failed: AttributeError") as info:
        raising.decode(old)
    assert info.value.context.stream == "order-7"
    no_class = Registry()
    no_class.register(TypedV2, name="Placed", version=2)
    no_class.add_upcaster("Placed", 1, lambda e: e, typed=True)
    with pytest.raises(UpcastError, match=r"takes an event of that version, and no class is "
                                          r"registered for it"):
        no_class.decode(old)


def test_an_old_payload_is_checked_against_its_own_class() -> None:
    reg = typed_registry()
    with pytest.raises(SchemaError, match=r"Invalid decimal string") as info:
        reg.decode(raw(b'{"order_id":1,"amount":"x"}', type="Placed", schema_version=1))
    assert info.value.context.path == "/amount" and info.value.context.schema_version == 1
    with pytest.raises(SchemaError, match="unknown field"):
        reg.decode(raw(b'{"order_id":1,"amount":1,"extra":1}', type="Placed",
                       schema_version=1))
    with pytest.raises(DecodeError, match="duplicate key 'amount'"):
        reg.decode(raw(b'{"order_id":1,"amount":1,"amount":2}', type="Placed",
                       schema_version=1))
    lenient = typed_registry(duplicate_keys="last-wins")
    assert lenient.decode(raw(b'{"order_id":1,"amount":1,"amount":2}', type="Placed",
                              schema_version=1)).total == 2


def test_typed_upcasters_are_checked_when_added() -> None:
    reg = Registry()
    with pytest.raises(UsageError, match=r"must be a function of an event of that version"):
        reg.add_upcaster("Placed", 1, 5, typed=True)  # type: ignore[arg-type]


# -- registration rules ----------------------------------------------------------------------

def test_registration_mistakes_are_usage_errors() -> None:
    reg = Registry()
    reg.register(Placed, name="OrderPlaced", version=2)
    with pytest.raises(UsageError, match="already registered"):
        reg.register(Placed, name="Other", version=1)
    with pytest.raises(UsageError, match=r"not a msgspec\.Struct or a dataclass"):
        reg.register(dict, name="X")  # type: ignore[arg-type]

    class WithDatetime(msgspec.Struct):
        at: datetime

    with pytest.raises(UsageError, match=r"drops nanoseconds.*evtools\.Timestamp"):
        reg.register(WithDatetime)
    assert reg.type_of(Placed) == ("OrderPlaced", 2)
    assert ("OrderPlaced", 2) in reg and "OrderPlaced" in reg and len(reg) == 1


class _A(msgspec.Struct, forbid_unknown_fields=True):
    x: int


@pytest.mark.parametrize("call, message", [
    (lambda reg: reg.register(5), r"5 is not a msgspec\.Struct or a dataclass"),
    (lambda reg: reg.register(_A, version="2"), r"schema versions are ints from 1, not '2'"),
    (lambda reg: reg.register(_A, version=0), r"schema versions are ints from 1, not 0"),
    (lambda reg: reg.register(_A, version=True), r"not True"),
    (lambda reg: reg.register(_A, name=5), r"type name must be a non-empty str, not 5"),
    (lambda reg: reg.register(_A, name=""), r"type name must be a non-empty str, not ''"),
    (lambda reg: reg.register("T", version="2"), r"not '2'"),  # the decorator, at once
    (lambda reg: reg.register(name=5), r"not 5"),
    (lambda reg: reg.register("T", name="U"), r"give the type name once"),
])
def test_register_refuses_arguments_that_cannot_work(call: Callable[[Registry], Any],
                                                     message: str) -> None:
    reg = Registry()
    with pytest.raises(UsageError, match=message):
        call(reg)
    assert len(reg) == 0


def test_registering_again_is_a_no_op_and_a_second_class_is_refused() -> None:
    reg = Registry()
    reg.register(_A, name="X")
    assert reg.register(_A, name="X") is _A  # the very same class again: nothing changes

    class _A2(msgspec.Struct, forbid_unknown_fields=True):  # e.g. a notebook cell run again
        x: int

    _A2.__qualname__ = "_A"
    with pytest.raises(UsageError, match=r"X v1 is already registered to tests\.test_registry"
                                         r"\._A; tests\.test_registry\._A cannot take its place"):
        reg.register(_A2, name="X")
    assert len(reg) == 1 and reg.class_for("X") is _A
    assert reg.decode(raw(b'{"x":1}', type="X", schema_version=1)) == _A(1)


@pytest.mark.parametrize("value", ["1", 0, -1, True, 1.5, None])
def test_registry_options_are_checked(value: Any) -> None:
    with pytest.raises(UsageError, match=r"max_payload_bytes must be an int >= 1"):
        Registry(max_payload_bytes=value)


# -- what is not a RawEvent, or a RawEvent built by hand with a field that cannot work -------

@pytest.mark.parametrize("call", [
    lambda reg: reg.decode(GOOD),
    lambda reg: reg.decode({"order_id": 1}),
    lambda reg: reg.decode(None),
    lambda reg: reg.decode_verbose(GOOD),
])
def test_decode_takes_a_raw_event(registry: Registry, call: Callable[[Registry], Any]) -> None:
    with pytest.raises(UsageError, match=r"takes a RawEvent, not \w+ \(decode_payload\("
                                         r"event_type, schema_version, data\) decodes a bare"):
        call(registry)


@pytest.mark.parametrize("fields, message", [
    ({"data": GOOD.decode()}, "data must be bytes, not str"),
    ({"data": None}, "data must be bytes, not None"),
    ({"data": 5}, "data must be bytes, not int"),
    ({"schema_version": "2"}, "schema_version must be an int >= 1, not '2'"),
    ({"schema_version": None}, "schema_version must be an int >= 1, not None"),
    ({"content_type": None}, "content_type must be a str, not None"),
])
def test_decode_names_the_field_of_a_hand_built_event_that_cannot_work(
        registry: Registry, fields: dict[str, Any], message: str) -> None:
    event = msgspec.structs.replace(raw(GOOD), **fields)  # the unchecked path, as stores use
    for decode in (registry.decode, registry.decode_verbose):
        with pytest.raises(UsageError, match=message) as info:
            decode(event)
        assert "build events with RawEvent.new" in str(info.value)
        assert (info.value.context.stream, info.value.context.version) == ("order-7", 41)


@pytest.mark.parametrize("args, message", [
    (("OrderPlaced", 2, GOOD.decode()), "data must be bytes, not str"),
    (("OrderPlaced", 2, None), "data must be bytes, not NoneType"),
    (("OrderPlaced", "2", GOOD), "schema_version must be an int, not '2'"),
    (("OrderPlaced", 2, memoryview(GOOD)), "data must be bytes, not memoryview"),
    (("OrderPlaced", 2, 5), "data must be bytes, not int"),
])
def test_decode_payload_names_the_argument_that_cannot_work(
        registry: Registry, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        registry.decode_payload(*args)


def test_lookups_refuse_a_version_that_is_not_an_int(registry: Registry) -> None:
    with pytest.raises(UsageError, match=r"knows: schema_version must be an int, not '2'"):
        registry.knows("OrderPlaced", "2")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"class_for: schema versions are ints from 1"):
        registry.class_for("OrderPlaced", "2")  # type: ignore[arg-type]


@pytest.mark.parametrize("where, message", [
    ({"stream": None, "version": 0}, "stream must be a non-empty str, not None"),
    ({"stream": "s", "version": None}, "version must be an int >= 0"),
    ({"stream": "s", "version": -1}, "version must be an int >= 0"),
    ({"stream": "s", "version": 0, "foo": 1}, r"to_raw takes no 'foo' \(it takes "
                                              r"content_type, id, metadata, position"),
    ({"stream": "s", "version": 0, "schema_version": 1}, r"takes no 'schema_version'"),
    ({"stream": "s", "version": 0, "recorded_at": datetime(2026, 1, 1)}, "no UTC offset"),
])
def test_to_raw_refuses_what_cannot_work(registry: Registry, where: dict[str, Any],
                                         message: str) -> None:
    event = registry.decode(raw(GOOD))
    with pytest.raises(UsageError, match=message):
        registry.to_raw(event, **where)


# -- where the parser's complaint points -------------------------------------------------------

class _Account(msgspec.Struct, forbid_unknown_fields=True):
    account_id: int
    occurred_at: str = ""


class _LaxAccount(msgspec.Struct):  # unknown fields are checked apart (the slower path)
    account_id: int
    occurred_at: str = ""


def _account_registry() -> Registry:
    reg = Registry()
    reg.register(_Account, name="A", version=2)
    reg.register(_LaxAccount, name="L")
    reg.add_upcaster("A", 1, lambda p: p)
    return reg


@pytest.mark.parametrize("schema_version, type", [(2, "A"), (1, "A"), (1, "L")],
                         ids=["typed", "upcast", "unknown-field check"])
@pytest.mark.parametrize("payload, offset", [
    (b'{"account_id":1,"occ\xffurred_at":"2026-01-01"}', 20),
    (b'{"account_id":1,"occurred_at":"2026-\xff"}', 36),
    (b'{"account_id" : 1, "occurred_at":"\xe9t\xe9"}', 34),
])
def test_invalid_utf8_offset_counts_from_the_start_of_the_payload(
        schema_version: int, type: str, payload: bytes, offset: int) -> None:
    reg = _account_registry()
    with pytest.raises(DecodeError, match=rf"invalid UTF-8 \(byte 0x{payload[offset]:02x} at "
                                          rf"offset {offset}\)"):
        reg.decode(raw(payload, type=type, schema_version=schema_version))
    with pytest.raises(DecodeError, match=rf"at offset {offset}\)"):
        reg.decode_payload(type, schema_version, payload)


@pytest.mark.parametrize("schema_version, type", [(2, "A"), (1, "A"), (1, "L")],
                         ids=["typed", "upcast", "unknown-field check"])
@pytest.mark.parametrize("payload, hint", [
    (b'{"account_id": NaN}', True),
    (b'{"account_id": Infinity}', True),
    (b'{"account_id": -Infinity}', True),
    (b'{"occurred_at": "x", "account_id": -NaN}', True),
    (b'{"occurred_at": "NaN", "account_id": tru}', False),  # the word, but in a string
    (b'{"account_id": nan}', False),
])
def test_nan_and_infinity_tokens_get_a_hint(schema_version: int, type: str, payload: bytes,
                                            hint: bool) -> None:
    with pytest.raises(DecodeError, match=r"invalid character \(byte \d+\)") as info:
        _account_registry().decode(raw(payload, type=type, schema_version=schema_version))
    assert ("(NaN and Infinity are not JSON)" in str(info.value)) == hint


# -- properties ------------------------------------------------------------------------------

@given(placed_events)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_encode_then_decode_gives_an_equal_event(registry: Registry, ev: Placed) -> None:
    assert registry.decode(registry.to_raw(ev, stream="s", version=0)) == ev


@given(st.dictionaries(st.sampled_from(["order_id", "customer", "placed_at", "total", "lines",
                                        "tags", "note", "huge", "extra"]), json_values)
       | json_values)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_payload_decodes_or_raises_input_error(registry: Registry, value: Any) -> None:
    data = msgspec.json.encode(value)
    try:
        ev = registry.decode(raw(data))
    except InputError:
        return
    # accepted: then it is exactly what the payload says
    assert msgspec.json.decode(registry.encode(ev)) == msgspec.json.decode(
        registry.encode(registry.decode(raw(registry.encode(ev)))))


@given(st.binary(max_size=300))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_bytes_decode_or_raise_input_error(registry: Registry, data: bytes) -> None:
    with contextlib.suppress(InputError):
        registry.decode(raw(data))


@given(st.recursive(st.integers() | st.text(max_size=3),
                    lambda c: st.lists(c, max_size=3)
                    | st.lists(st.tuples(st.sampled_from("abc:"), c), max_size=4),
                    max_leaves=12))
def test_duplicate_key_check_is_exact(value: Any) -> None:
    from evtools._json import find_duplicate_key, has_duplicate_key, py_has_duplicate_key

    def render(v: Any) -> str:
        if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
            return "{" + ",".join(f'"{k}" : {render(x)}' for k, x in v) + "}"
        if isinstance(v, list):
            return "[" + ",".join(render(x) for x in v) + "]"
        return msgspec.json.encode(v).decode()

    def has_dup(v: Any) -> bool:
        if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
            keys = [k for k, _ in v]
            return len(keys) != len(set(keys)) or any(has_dup(x) for _, x in v)
        return isinstance(v, list) and any(has_dup(x) for x in v)

    data = render(value).encode()
    assert has_duplicate_key(data) == has_dup(value)  # the C scan, where it can tell
    assert py_has_duplicate_key(data) == has_dup(value)
    assert (find_duplicate_key(data) is not None) == has_dup(value)


# -- the fast duplicate-key check of the typed path agrees with the exact one -----------------

class _Obj(list):  # type: ignore[type-arg]
    """A JSON object as a list of (key, value) pairs, so a key can repeat."""


def _pairs(value: Any, defaults: bool) -> Any:
    """``value`` as nested :class:`_Obj`; with ``defaults``, fields left at their default
    are written out too (they are keys like any other)."""
    if isinstance(value, msgspec.Struct):
        fields = msgspec.structs.asdict(value)
        if not defaults:
            fields = {k: v for k, v in fields.items()
                      if not (k in ("tags", "note", "huge") and v in ({}, None, 0))}
        return _Obj((k, _pairs(v, defaults)) for k, v in fields.items())
    if isinstance(value, dict):
        return _Obj((k, _pairs(v, defaults)) for k, v in value.items())
    if isinstance(value, list):
        return [_pairs(v, defaults) for v in value]
    return value


def _render(node: Any, space: str) -> str:
    if isinstance(node, _Obj):
        return "{" + ",".join(f"{msgspec.json.encode(k).decode()}{space}:{_render(v, space)}"
                              for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_render(x, space) for x in node) + "]"
    return msgspec.json.encode(node, enc_hook=str).decode()


def _objects(node: Any) -> list[_Obj]:
    found: list[_Obj] = []
    if isinstance(node, _Obj):
        found.append(node)
        node = [v for _, v in node]
    if isinstance(node, list):
        for x in node:
            found.extend(_objects(x))
    return found


@given(placed_events, st.booleans(), st.sampled_from(["", " "]), st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
def test_typed_duplicate_check_is_exact(registry: Registry, event: Placed, defaults: bool,
                                        space: str, data: st.DataObject) -> None:
    tree = _pairs(event, defaults)
    objects = [o for o in _objects(tree) if o]
    duplicate = data.draw(st.booleans())
    if duplicate:  # repeat one key of one object, with its own value or null
        obj = data.draw(st.sampled_from(objects))
        key, value = obj[data.draw(st.integers(0, len(obj) - 1))]
        obj.insert(data.draw(st.integers(0, len(obj))),
                   (key, value if data.draw(st.booleans()) else None))
    payload = _render(tree, space).encode()
    try:
        decoded = registry.decode(raw(payload))
    except DecodeError as e:
        assert duplicate and "duplicate key" in e.message, e
        return
    except SchemaError:
        assert duplicate  # the repeated key's null does not fit the field
        return
    assert not duplicate, payload
    assert decoded == event


def test_fast_duplicate_check_counts_every_kind_of_field() -> None:
    from evtools._keys import key_count as _key_count
    from evtools.scalars import dec_hook

    from .strategies import Line, Money

    assert _key_count(Line) == 5 and _key_count(Money) == 2
    count = _key_count(Placed)
    assert callable(count)
    event = msgspec.json.decode(GOOD, type=Placed, dec_hook=dec_hook)
    assert count(event, GOOD) == 5 + 2 + 5  # the five fields, total's two keys, one line
    line = event.lines[0]
    extras = msgspec.structs.replace(event, lines=[line, line], tags={"a": "b"}, note="n",
                                     huge=7)
    assert count(extras, GOOD) == 5 + 2 + 2 * 5 + 3 + 1  # + note, huge, tags and its key
    assert _key_count(dict[str, Any]) is None  # values of any shape: the exact check runs

    class Tagged(msgspec.Struct, tag=True, forbid_unknown_fields=True):
        a: int

    tagged = Registry()
    tagged.register(Tagged)
    for payload in (b'{"a":1,"a":2}', b'{"type":"Tagged","a":1,"a":2}'):  # tag optional
        with pytest.raises(DecodeError, match="duplicate key 'a'"):
            tagged.decode(raw(payload, type="Tagged", schema_version=1))
    assert tagged.decode(raw(b'{"type":"Tagged","a":1}', type="Tagged",
                             schema_version=1)) == Tagged(1)

    entry = Registry(duplicate_keys="reject")
    entry.register(Placed, name="P")
    fast = entry._entries[("P", 1)]
    assert fast.counted_unique(event, GOOD)  # compact, every field counted: no second parse
    assert not fast.counted_unique(event, GOOD.replace(b'"EUR"}', b'"EUR","currency":"EUR"}',
                                                      1))
    assert fast.counted_unique(event, GOOD.replace(b'":', b'" \n: '))  # whitespace is fine
    assert not fast.counted_unique(event, GOOD.replace(b'"EUR"', b'"\\u0045UR"'))  # escapes


@given(st.recursive(st.integers() | st.text(alphabet=' :"\\ab\t', max_size=4),
                    lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(alphabet=' :"\\ab', max_size=3), c, max_size=3),
                    max_leaves=10),
       st.sampled_from(["", " ", "\n\t"]))
def test_compact_key_tokens_never_undercounts(value: Any, space: str) -> None:
    from evtools._json import compact_key_tokens

    def keys(v: Any) -> int:
        if isinstance(v, dict):
            return len(v) + sum(map(keys, v.values()))
        return sum(map(keys, v)) if isinstance(v, list) else 0

    data = msgspec.json.encode(value)
    spaced = data.replace(b'":', f'"{space}:{space}'.encode()) if b"\\" not in data else data
    tokens = compact_key_tokens(spaced)
    if tokens is None:
        assert b"\\" in spaced
    else:
        assert tokens >= keys(value)  # never below: a duplicate is never missed
        if ":" not in str(value):  # more only for a string that starts with a colon
            assert tokens == keys(value)


class _Inner(msgspec.Struct, forbid_unknown_fields=True):
    x: int = 0


_FILLED_LATER: list[_Inner] = []


class _PostInit(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    b: int = 0

    def __post_init__(self) -> None:
        self.b = 5  # changes a field after decoding: no key count can be trusted


class _Factory(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    items: list[_Inner] = msgspec.field(default_factory=lambda: list(_FILLED_LATER))


class _Unset(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    b: int | msgspec.UnsetType = msgspec.UNSET


class _Spiky(enum.Enum):
    CALM = "calm"
    SPIKY = "spiky"

    def __eq__(self, other: object) -> bool:  # a comparison that raises
        if self is _Spiky.SPIKY or other is _Spiky.SPIKY:
            raise ArithmeticError("spiky")
        return self is other

    __hash__ = enum.Enum.__hash__


class _OddDefault(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    k: _Spiky = _Spiky.CALM


@pytest.mark.parametrize("cls, payload", [
    (_PostInit, b'{"a":1,"a":2}'),
    (_Factory, b'{"a":1,"a":2,"a":3}'),
    (_Unset, b'{"a":1,"a":2}'),
    (_Unset, b'{"a":1,"b":2,"b":3}'),
    (_OddDefault, b'{"a":1,"a":2}'),
])
def test_duplicates_found_whatever_the_class_does_with_defaults(cls: type,
                                                                payload: bytes) -> None:
    reg = Registry()
    reg.register(cls, name="T")
    _FILLED_LATER.append(_Inner(0))  # the factory's value changes after registration
    try:
        with pytest.raises(DecodeError, match="duplicate key"):
            reg.decode(raw(payload, type="T", schema_version=1))
    finally:
        _FILLED_LATER.clear()


def test_a_default_whose_comparison_raises_falls_back_to_the_exact_check() -> None:
    reg = Registry()
    reg.register(_OddDefault, name="T")
    entry = reg._entries[("T", 1)]
    written = b'{"a":1,"k":"spiky"}'
    event = msgspec.json.decode(written, type=_OddDefault)
    assert not entry.counted_unique(event, written)  # the comparison raised: no proof
    assert entry.counted_unique(msgspec.json.decode(b'{"a":1}', type=_OddDefault), b'{"a":1}')
    assert reg.decode(raw(written, type="T", schema_version=1)).k is _Spiky.SPIKY
    with pytest.raises(DecodeError, match="duplicate key 'k'"):
        reg.decode(raw(b'{"a":1,"k":"spiky","k":"spiky"}', type="T", schema_version=1))


class _Lax(msgspec.Struct, tag=True):
    a: int


class _Tight(msgspec.Struct, tag=True, forbid_unknown_fields=True):
    b: int


class _Holder(msgspec.Struct, forbid_unknown_fields=True):
    x: _Lax | _Tight


def test_unions_of_structs_must_forbid_unknown_fields() -> None:
    with pytest.raises(UsageError, match=r"/x is a union of structs, and _Lax accepts "
                                         r"unknown fields"):
        Registry().register(_Holder)


@dataclasses.dataclass
class _Loose:  # a dataclass ignores unknown fields: the registry looks for them itself
    z: int = 0


class _TagB(msgspec.Struct, tag="b", forbid_unknown_fields=True):
    y: int
    inner: _Loose | None = None


class _Tagged(msgspec.Struct, forbid_unknown_fields=True):
    either: _Tight | _TagB | None = None
    loose: _Loose | None = None


@pytest.mark.parametrize("policy", ["reject", "keep"])
def test_a_tagged_union_is_looked_into_by_its_tag(policy: Any) -> None:
    """Where the registry looks for unknown fields itself (here because of a dataclass),
    the tag of a union member is declared, and each member is checked with its own fields
    (the first member's had been used for all, and the tag called unknown)."""
    reg = Registry(unknown_fields=policy)
    reg.register(_Tagged, name="T")
    assert reg._entries[("T", 1)].check_unknown
    for payload, expected in [(b'{"either":{"type":"b","y":1}}', _TagB(y=1)),
                              (b'{"either":{"type":"_Tight","b":2}}', _Tight(b=2)),
                              (b'{"either":{"type":"b","y":1,"inner":{"z":3}}}',
                               _TagB(y=1, inner=_Loose(z=3)))]:
        assert reg.decode(raw(payload, type="T", schema_version=1)).either == expected
    for bad_tag in (b"[1]", b"{}", b"null", b"1.5"):  # msgspec says what is wrong with it
        with pytest.raises(SchemaError):
            reg.decode(raw(b'{"zz":0,"either":{"type":%s,"y":1}}' % bad_tag,
                           type="T", schema_version=1))
    unknown = b'{"either":{"type":"b","y":1,"inner":{"z":3,"extra":4}}}'
    if policy == "reject":
        with pytest.raises(SchemaError, match="unknown field 'extra'") as caught:
            reg.decode(raw(unknown, type="T", schema_version=1))
        assert caught.value.context.path == "/either/inner/extra"
    else:
        kept = reg.decode_verbose(raw(unknown, type="T", schema_version=1))
        assert kept.unknown == {"/either/inner/extra": 4}
        assert kept.event.either == _TagB(y=1, inner=_Loose(z=3))


def test_knows_what_decode_would_not_call_unknown() -> None:
    reg = upcast_registry()  # Placed v3, upcasters from v1 and v2
    assert reg.knows("Placed", 3) and reg.knows("Placed", 1) and reg.knows("Placed", 2)
    assert not reg.knows("Placed", 4) and not reg.knows("Other", 1)
    only_v3 = Registry()
    only_v3.register(V3, name="Placed", version=3)
    assert not only_v3.knows("Placed", 2)
    with pytest.raises(UnknownSchemaVersion):
        only_v3.decode(raw(b"{}", type="Placed", schema_version=2))


class _Addr(msgspec.Struct, forbid_unknown_fields=True):
    street: str
    line2: str | None = None
    floor: int = 0


class _Probed(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    to: _Addr
    note: str | None = None


class _Twice(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    to: _Addr
    back: _Addr | None = None  # line2 and floor may stand in two objects: never probed


_ADDRS = st.builds(_Addr, street=st.text(max_size=5), line2=st.none() | st.text(max_size=3),
                   floor=st.sampled_from([0, 0, 3]))


@given(st.one_of(st.builds(_Probed, id=st.integers(0, 9), to=_ADDRS,
                           note=st.none() | st.text(max_size=3)),
                 st.builds(_Twice, id=st.integers(0, 9), to=_ADDRS, back=st.none() | _ADDRS)),
       st.data())
@settings(max_examples=400)
def test_fields_written_at_their_default_are_counted_exactly(event: Any,
                                                             data: st.DataObject) -> None:
    reg = Registry()
    reg.register(type(event), name="T")

    def tree(value: Any) -> Any:  # each field at its default: left out or written
        if not isinstance(value, msgspec.Struct):
            return value
        pairs = [(f.encode_name, tree(getattr(value, f.name)))
                 for f in msgspec.structs.fields(value)
                 if f.required or getattr(value, f.name) != f.default
                 or data.draw(st.booleans())]
        return _Obj(pairs)

    doc = tree(event)
    duplicate = data.draw(st.booleans())
    if duplicate:
        obj = data.draw(st.sampled_from([o for o in _objects(doc) if o]))
        obj.insert(data.draw(st.integers(0, len(obj))),
                   obj[data.draw(st.integers(0, len(obj) - 1))])
    payload = _render(doc, data.draw(st.sampled_from(["", " "]))).encode()
    try:
        decoded = reg.decode(raw(payload, type="T", schema_version=1))
    except DecodeError as e:
        assert duplicate and "duplicate key" in e.message, payload
        return
    assert not duplicate, payload
    assert decoded == event


def test_a_field_written_at_its_default_needs_no_exact_check() -> None:
    reg = Registry()
    reg.register(_Probed, name="T")
    entry = reg._entries[("T", 1)]
    written = b'{"id":1,"to":{"street":"x","line2":null,"floor":0},"note":null}'
    assert entry.counted_unique(msgspec.json.decode(written, type=_Probed), written)
    twice = Registry()
    twice.register(_Twice, name="T")
    written = b'{"id":1,"to":{"street":"x","line2":null}}'
    assert not twice._entries[("T", 1)].counted_unique(
        msgspec.json.decode(written, type=_Twice), written)  # the exact check decides


class _Spaced(msgspec.Struct, forbid_unknown_fields=True):
    x: int = msgspec.field(name="a b")
    ab: int = 0  # in the compact payload "a b" reads "ab": never probed for


class _Precise(msgspec.Struct, tag=True, forbid_unknown_fields=True):
    d: Decimal


class _LaxInner(msgspec.Struct):
    z: int = 0


class _LaxUnion(msgspec.Struct, forbid_unknown_fields=True):
    u: _LaxInner | int


def test_key_names_with_spaces_are_not_probed() -> None:
    reg = Registry()
    reg.register(_Spaced, name="T")
    with pytest.raises(DecodeError, match="duplicate key 'a b'"):
        reg.decode(raw(b'{"a b":1,"a b":2}', type="T", schema_version=1))
    assert reg.decode(raw(b'{"a b":1,"ab":0}', type="T", schema_version=1)) == _Spaced(1)


def test_the_exact_path_accepts_what_the_typed_decode_accepts() -> None:
    reg = Registry()
    reg.register(_Precise, name="T")
    for payload in (b'{"d":1e400}', b'{"type":"_Precise","d":1e400}'):  # tag: exact path
        assert reg.decode(raw(payload, type="T", schema_version=1)).d == Decimal("1e400")


def test_unknown_fields_inside_a_union_with_scalars_are_found() -> None:
    reg = Registry()
    reg.register(_LaxUnion, name="T")
    with pytest.raises(SchemaError, match="unknown field 'extra'") as info:
        reg.decode(raw(b'{"u":{"extra":1}}', type="T", schema_version=1))
    assert info.value.context.path == "/u/extra"
    assert reg.decode(raw(b'{"u":3}', type="T", schema_version=1)).u == 3


def test_encode_writes_decimals_as_exact_json_numbers() -> None:
    from evtools.orders import order_registry

    registry = order_registry()
    event = registry.decode(RawEvent.new("order-1", 0, "ItemAdded", (
        b'{"order_id":9007199254740993,"sku":7,"quantity":1,'
        b'"unit_price":{"amount":512.740,"currency":"CHF"},'
        b'"occurred_at":"2026-01-01T10:00:00.123456789+02:00"}'), schema_version=2))
    data = registry.to_raw(event, stream="order-1", version=0).data
    assert b'"amount":512.740' in data  # a number, every digit kept
    assert b'"occurred_at":"2026-01-01T10:00:00.123456789+02:00"' in data
    assert registry.decode(registry.to_raw(event, stream="order-1", version=0)) == event


# -- map keys that are not strings -----------------------------------------------------------

class _Stock(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    by_sku: dict[int, int]


class _Ledger(msgspec.Struct, frozen=True):  # accepts unknown fields: the slow path
    rows: list[dict[uuid.UUID, Decimal]]


class _Rates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    by_amount: dict[Decimal, str]


@pytest.mark.parametrize("cls, payload, pointer", [
    (_Stock, b'{"by_sku":{"0":1,"-0":2}}', "/by_sku"),
    (_Rates, b'{"by_amount":{"1.0":"a","1.00":"b"}}', "/by_amount"),
    (_Rates, b'{"by_amount":{"1":"a","1e0":"b"}}', "/by_amount"),
    (_Ledger, b'{"rows":[{},{"12345678-1234-5678-1234-567812345678":1,'
              b'"12345678123456781234567812345678":2}]}', "/rows/1"),
    (_Ledger, b'{"rows":[{"ABCDEF78-1234-5678-1234-567812345678":1,'
              b'"abcdef78-1234-5678-1234-567812345678":2}]}', "/rows/0"),
])
def test_map_keys_written_differently_that_decode_to_one_are_duplicates(
        cls: type, payload: bytes, pointer: str) -> None:
    """Two keys no text scan sees as equal ("0" and "-0" of an int map) decode to one key:
    the first value was dropped silently, even through rehydration's C fold."""
    reg = Registry()
    reg.register(cls, name="T")
    event = raw(payload, type="T", schema_version=1)
    with pytest.raises(DecodeError, match=r"duplicate key: .* are one key of this map") as info:
        reg.decode(event)
    assert info.value.context.path == pointer and info.value.context.stream == "order-7"
    with pytest.raises(DecodeError, match="are one key"):
        reg.decode_verbose(event)
    with pytest.raises(DecodeError, match="are one key"):
        reg.decode_payload("T", 1, payload)
    assert reg.knows("T", 1) and "T" not in reg._fast_decoders()  # decode() checks them
    lenient = Registry(duplicate_keys="last-wins")  # as Go and JavaScript: the last wins
    lenient.register(cls, name="T")
    lenient.decode(event)


def test_merged_map_keys_are_found_through_rehydration() -> None:
    class Stock(Aggregate):
        total: int = 0

        @handles(_Stock)
        def _put(self, e: _Stock) -> None:
            self.total += sum(e.by_sku.values())

    reg = Registry()
    reg.register(_Stock, name="Put")
    events = [RawEvent.new("stock-1", 0, "Put", b'{"by_sku":{"0":1,"-0":2}}')]
    with pytest.raises(EvtoolsError, match="are one key"):  # had rebuilt a total of 2
        rehydrate(events, reg, Stock)
    good = [RawEvent.new("stock-1", 0, "Put", b'{"by_sku":{"0":1,"7":2}}')]
    assert rehydrate(good, reg, Stock).aggregate.total == 3


def test_a_typed_upcast_from_a_class_with_int_keys_checks_them() -> None:
    class Old(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        by_sku: dict[int, int]

    class New(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        total: int

    reg = Registry()
    reg.register(Old, name="T", version=1)
    reg.register(New, name="T", version=2)
    reg.add_upcaster("T", 1, lambda e: New(sum(e.by_sku.values())), typed=True)
    with pytest.raises(DecodeError, match="are one key") as info:
        reg.decode(raw(b'{"by_sku":{"5":1,"-0":3,"0":4}}', type="T", schema_version=1))
    assert info.value.context.schema_version == 1
    assert reg.decode(raw(b'{"by_sku":{"5":1,"0":4}}', type="T", schema_version=1)).total == 5


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.integers(-3, 3), st.integers(), max_size=5), st.data())
def test_int_map_keys_decode_exactly_or_fail(keys: dict[int, int], data: st.DataObject) -> None:
    """Property: however each int key is spelt ("0" or "-0"), the decode holds every
    written key, or fails as a duplicate; never fewer keys than written."""
    written = {}
    for key, value in keys.items():
        spelling = data.draw(st.sampled_from([str(key), "-0"] if key == 0 else [str(key)]))
        written[spelling] = value
        if key == 0 and data.draw(st.booleans()):
            written["-0" if spelling == "0" else "0"] = value + 1
    reg = Registry()
    reg.register(_Stock, name="T")
    payload = msgspec.json.encode({"by_sku": written})
    try:
        event = reg.decode(raw(payload, type="T", schema_version=1))
    except DecodeError as e:
        assert "are one key" in str(e) and {"0", "-0"} <= set(written)
        return
    assert len(event.by_sku) == len(written)


class _Tags(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: int


class _Tagged2(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ids: set[int] = set()
    labels: frozenset[str] = frozenset()
    amounts: frozenset[Decimal] = frozenset()
    lines: list[_TagLine] = []


class _TagLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    skus: frozenset[_Tags] = frozenset()


@pytest.mark.parametrize("payload, pointer, elements", [
    (b'{"ids":[1,2,1]}', "/ids", "1 and 1"),
    (b'{"labels":["a","b","a"]}', "/labels", '"a" and "a"'),
    (b'{"amounts":["1.0","1.00"]}', "/amounts", '"1.0" and "1.00"'),
    (b'{"amounts":[1.0,1.00]}', "/amounts", "1.0 and 1.00"),
    (b'{"lines":[{},{"skus":[{"sku":3},{"sku":3}]}]}', "/lines/1/skus",
     '{"sku":3} and {"sku":3}'),
])
def test_set_elements_that_decode_to_one_are_repeats(payload: bytes, pointer: str,
                                                      elements: str) -> None:
    """A set field had folded repeated elements of the array written, without a word: a
    Go or JavaScript consumer of the same JSON keeps both."""
    reg = Registry()
    reg.register(_Tagged2, name="T")
    event = raw(payload, type="T", schema_version=1)
    with pytest.raises(DecodeError, match="repeated element: ") as info:
        reg.decode(event)
    assert info.value.context.path == pointer
    assert f"{elements} are one element of this set" in str(info.value)
    with pytest.raises(DecodeError, match="repeated element"):
        reg.decode_payload("T", 1, payload)
    assert "T" not in reg._fast_decoders()  # decode() checks it, also under rehydration
    lenient = Registry(duplicate_keys="last-wins")
    lenient.register(_Tagged2, name="T")
    assert lenient.decode(event) is not None
    assert reg.decode(raw(b'{"ids":[1,2],"labels":["a"],"lines":[{"skus":[{"sku":3}]}]}',
                          type="T", schema_version=1)).ids == {1, 2}


def test_repeated_set_elements_are_found_through_rehydration() -> None:
    class Seen(Aggregate):
        count: int = 0

        @handles(_Tagged2)
        def _put(self, e: _Tagged2) -> None:
            self.count += len(e.ids)

    reg = Registry()
    reg.register(_Tagged2, name="Put")
    events = [RawEvent.new("seen-1", 0, "Put", b'{"ids":[7,7]}')]
    with pytest.raises(EvtoolsError, match="repeated element"):  # had counted 1
        rehydrate(events, reg, Seen)
    assert rehydrate([RawEvent.new("seen-1", 0, "Put", b'{"ids":[7,8]}')], reg,
                     Seen).aggregate.count == 2


def test_a_map_key_of_the_wrong_type_is_pointed_at_its_map() -> None:
    reg = Registry()
    reg.register(_Stock, name="T")
    with pytest.raises(SchemaError) as info:
        reg.decode(raw(b'{"by_sku":{"01":1}}', type="T", schema_version=1))
    assert str(info.value).startswith("map key: Expected `int`, got `str` (")
    assert "`key`" not in str(info.value)
    assert info.value.context.path == "/by_sku"  # had been "" (the whole document)


def test_an_unknown_field_is_named_as_written_not_as_a_pointer_token() -> None:
    class Lax(msgspec.Struct, frozen=True):
        a: int = 0

    reg = Registry()
    reg.register(Lax, name="T")
    with pytest.raises(SchemaError, match=r"unknown field 'x/y~z' ") as info:
        reg.decode(raw(b'{"a":1,"x/y~z":2}', type="T", schema_version=1))
    assert info.value.context.path == "/x~1y~0z"
