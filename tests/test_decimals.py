"""A ``Decimal`` field refuses NaN and infinities (evtools._decimals, through the registry)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, NamedTuple, TypedDict
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtools import _decimals, rehydration
from evtools._decimals import finite_check, nonfinite_path
from evtools.datagen import generate
from evtools.errors import RehydrationError, SchemaError, UpcastError, UsageError
from evtools.events import RawEvent
from evtools.orders import Order, order_registry
from evtools.registry import Registry
from evtools.rehydration import ViolationKind, rehydrate
from evtools.scalars import DecimalText

NON_FINITE = ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-inf", "+Inf"]


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: Decimal
    label: str = ""


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Decimal
    children: list[Node] = []


class A(msgspec.Struct, tag=True, frozen=True, forbid_unknown_fields=True):
    x: Decimal


class B(msgspec.Struct, tag=True, frozen=True, forbid_unknown_fields=True):
    y: int


@dataclasses.dataclass(frozen=True)
class Rate:
    per_unit: Decimal


class Everything(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plain: Decimal = Decimal(0)
    optional: Decimal | None = None
    price: Price | None = None
    prices: list[Price] = []
    by_name: dict[str, Decimal] = {}
    by_amount: dict[Decimal, int] = {}
    pair: tuple[int, Decimal] = (0, Decimal(0))
    bag: frozenset[Decimal] = frozenset()
    either: A | B | None = None
    tree: Node | None = None
    rate: Rate | None = None
    text: DecimalText = DecimalText("0")


@pytest.fixture(params=["C", "Python"], autouse=True)
def twin(request: pytest.FixtureRequest) -> Any:
    """Every test runs with evtools._speedups.FiniteDecode and with its Python twin."""
    if request.param == "C" and _decimals.speedups is None:
        pytest.skip("evtools._speedups was not built here")
    with mock.patch.object(_decimals, "speedups",
                           _decimals.speedups if request.param == "C" else None):
        yield request.param


def registry() -> Registry:
    reg = Registry()
    reg.register(Everything, name="E")
    decode = reg._entries[("E", 1)].decoder.decode
    assert (type(decode).__name__ == "FiniteDecode") is (_decimals.speedups is not None)
    return reg


def raw(data: bytes, version: int = 0) -> RawEvent:
    return RawEvent.new("e-1", version, "E", data)


# (field, payload with a NaN there, the JSON pointer the error names)
PLACES = [
    ("plain", b'{"plain":"NaN"}', "/plain"),
    ("optional", b'{"optional":"-Infinity"}', "/optional"),
    ("price", b'{"price":{"amount":"sNaN","label":"x"}}', "/price/amount"),
    ("prices", b'{"prices":[{"amount":1},{"amount":"NaN"}]}', "/prices/1/amount"),
    ("by_name", b'{"by_name":{"a":1,"b":"inf"}}', "/by_name/b"),
    ("by_amount", b'{"by_amount":{"1":1,"NaN":2}}', "/by_amount"),
    ("pair", b'{"pair":[1,"Infinity"]}', "/pair/1"),
    ("bag", b'{"bag":[1,"NaN"]}', "/bag"),
    ("either", b'{"either":{"type":"A","x":"NaN"}}', "/either/x"),
    ("tree", b'{"tree":{"value":1,"children":[{"value":2},{"value":"NaN"}]}}',
     "/tree/children/1/value"),
    ("rate", b'{"rate":{"per_unit":"nan"}}', "/rate/per_unit"),
]


@pytest.mark.parametrize("field, payload, pointer", PLACES, ids=[p[0] for p in PLACES])
def test_a_non_finite_decimal_is_a_schema_error_naming_its_field(
        field: str, payload: bytes, pointer: str) -> None:
    with pytest.raises(SchemaError, match="Expected a finite `decimal`") as caught:
        registry().decode(raw(payload))
    assert caught.value.context.path == pointer
    assert caught.value.context.stream == "e-1" and caught.value.context.event_type == "E"
    finite = payload
    for text in (b"NaN", b"-Infinity", b"sNaN", b"inf", b"Infinity", b"nan"):
        finite = finite.replace(b'"%s"' % text, b'"2"')
    assert finite != payload
    assert registry().decode(raw(finite)) is not None  # the same place, finite: decoded


@pytest.mark.parametrize("text", NON_FINITE)
def test_every_spelling_of_nan_and_infinity_is_refused(text: str) -> None:
    with pytest.raises(SchemaError, match=r"Expected a finite `decimal`, got `[-sA-Za-z]+`"):
        registry().decode(raw(b'{"plain":"%s"}' % text.encode()))


def test_finite_values_keep_their_exact_digits() -> None:
    event = registry().decode(raw(b'{"plain":"1e3","optional":null,"text":"5.10",'
                                  b'"prices":[{"amount":0.10}],"by_name":{"a":"-0.00"}}'))
    assert event.plain == Decimal("1E+3") and event.optional is None
    assert str(event.text) == "5.10" and str(event.prices[0].amount) == "0.10"
    assert str(event.by_name["a"]) == "-0.00"


def test_decimal_text_keeps_refusing_on_its_own() -> None:
    with pytest.raises(SchemaError, match="'NaN' is not a decimal numeral") as caught:
        registry().decode(raw(b'{"text":"NaN"}'))
    assert caught.value.context.path == "/text"


def test_a_class_whose_decimal_defaults_to_nan_is_refused_at_register() -> None:
    class Odd(msgspec.Struct):
        rate: Decimal = Decimal("NaN")

    with pytest.raises(UsageError, match=r"Odd.rate defaults to Decimal\('NaN'\).*"
                                         r"Decimal \| None = None"):
        Registry().register(Odd)


def test_a_class_without_decimals_is_not_checked() -> None:
    class Plain(msgspec.Struct, forbid_unknown_fields=True):
        a: int
        b: list[str] = []

    assert finite_check(Plain) is None
    assert finite_check(DecimalText) is None
    reg = Registry()
    reg.register(Plain)
    assert type(reg._entries[("Plain", 1)].decoder) is msgspec.json.Decoder  # no wrapper


class Absent(msgspec.Struct, forbid_unknown_fields=True):
    amount: Decimal | msgspec.UnsetType = msgspec.UNSET
    either: Decimal | msgspec.UnsetType | None = msgspec.UNSET
    price: Price | msgspec.UnsetType = msgspec.UNSET
    maybe: Price = None  # type: ignore[assignment]  # a default msgspec allows


class Row(msgspec.Struct, array_like=True, frozen=True):
    label: str
    amount: Decimal


class Shapes(TypedDict):
    amount: Decimal


class Pair(NamedTuple):
    n: int
    amount: Decimal


class Elsewhere(msgspec.Struct, forbid_unknown_fields=True):
    row: Row | None = None
    shapes: Shapes | None = None
    pair: Pair | None = None


@pytest.mark.parametrize("payload", [b"{}", b'{"amount":1,"either":null,"price":{"amount":2}}',
                                     b'{"maybe":{"amount":3}}'])
def test_a_field_left_at_its_default_is_not_a_decimal_to_check(payload: bytes) -> None:
    """UNSET and None defaults (which msgspec.inspect does not show) had been refused as a
    non-finite decimal, with no path."""
    reg = Registry()
    reg.register(Absent, name="A")
    assert reg.decode(RawEvent.new("a-1", 0, "A", payload)) is not None
    with pytest.raises(SchemaError, match="finite") as caught:
        reg.decode(RawEvent.new("a-1", 0, "A", b'{"maybe":{"amount":"NaN"}}'))
    assert caught.value.context.path == "/maybe/amount"


@pytest.mark.parametrize("payload, pointer", [
    (b'{"row":["x","NaN"]}', "/row/1"),  # an array: its index, as msgspec says
    (b'{"shapes":{"amount":"NaN"}}', "/shapes/amount"),
    (b'{"pair":[1,"-inf"]}', "/pair/1"),
])
def test_the_path_is_the_one_msgspec_gives(payload: bytes, pointer: str) -> None:
    reg = Registry()
    reg.register(Elsewhere, name="W")
    with pytest.raises(SchemaError, match="finite") as caught:
        reg.decode(RawEvent.new("w-1", 0, "W", payload))
    assert caught.value.context.path == pointer
    good = payload.replace(b'"NaN"', b"1").replace(b'"-inf"', b"1")
    assert reg.decode(RawEvent.new("w-1", 0, "W", good)) is not None


class Swapped(msgspec.Struct, forbid_unknown_fields=True):
    price: Price

    def __post_init__(self) -> None:  # a class that puts something else there
        if self.price.label == "free":
            self.price = "free"  # type: ignore[assignment]


def test_a_check_that_cannot_read_its_field_defers_to_the_walk() -> None:
    reg = Registry()
    reg.register(Swapped, name="S")
    event = reg.decode(RawEvent.new("s-1", 0, "S", b'{"price":{"amount":0,"label":"free"}}'))
    assert event.price == "free"


def test_a_union_is_checked_by_the_member_decoded_not_walked() -> None:
    """The check of a union member reads its Decimal fields only: a member with a long
    list of ints had been walked item by item on every decode (30x the decode)."""
    check = finite_check(Everything)
    assert check is not None
    calls: list[Any] = []
    many = Everything(either=A(x=Decimal(1)))
    with mock.patch.object(_decimals, "nonfinite_path",
                           side_effect=lambda v: calls.append(v)):
        assert check(many) and check(Everything(either=B(y=1)))
        assert not check(Everything(either=A(x=Decimal("NaN"))))
    assert calls == []


# -- the order workload: every decode path the fold takes ---------------------------------

def _stream() -> list[RawEvent]:
    events = list(generate(n_streams=1, seed=3))
    return [e for e in events if e.stream == events[0].stream]


def _with(events: list[RawEvent], version: int, old: bytes, new: bytes) -> list[RawEvent]:
    out = list(events)
    assert old in out[version].data
    out[version] = msgspec.structs.replace(out[version], data=out[version].data.replace(old, new))
    return out


@pytest.mark.parametrize("c_fold", [True, False], ids=["C fold", "Python fold"])
def test_rehydration_reports_a_nan_price_as_a_decode_violation(c_fold: bool) -> None:
    events = _stream()
    item = next(e for e in events if e.type == "ItemAdded" and e.schema_version == 2)
    amount = item.data.split(b'"amount":', 1)[1].split(b",", 1)[0]
    bad = _with(events, item.version, b'"amount":' + amount, b'"amount":"NaN"')
    with mock.patch.object(rehydration, "_Folder", rehydration._Folder if c_fold else None):
        result = rehydrate(bad, order_registry(), Order, policy="audit")
        with pytest.raises(RehydrationError, match=r"finite `decimal`.*version "
                                                   rf"{item.version}.*/unit_price/amount"):
            rehydrate(bad, order_registry(), Order, policy="strict")
    (violation,) = result.violations
    assert violation.kind == ViolationKind.DECODE_ERROR and violation.version == item.version
    assert "/unit_price/amount" in violation.message or \
        violation.context.path == "/unit_price/amount"


def test_an_old_version_with_a_nan_price_is_refused_before_its_upcast() -> None:
    events = _stream()
    payment = next(e for e in events if e.type == "PaymentAuthorized")
    assert payment.schema_version == 1  # v1: a bare amount, upcast to Money
    amount = payment.data.split(b'"amount":', 1)[1].split(b",", 1)[0]
    bad = _with(events, payment.version, b'"amount":' + amount, b'"amount":"Infinity"')
    with pytest.raises((SchemaError, UpcastError), match="finite `decimal`") as caught:
        order_registry().decode(bad[payment.version])
    assert caught.value.context.path == "/amount"
    result = rehydrate(bad, order_registry(), Order, policy="audit")
    assert [v.version for v in result.violations] == [payment.version]


# -- the compiled check agrees with the walk ---------------------------------------------

_amounts = st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=2),
                      st.sampled_from([Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN"),
                                       Decimal("Infinity")]))
_prices = st.builds(Price, amount=_amounts)
_nodes = st.recursive(st.builds(Node, value=_amounts),
                      lambda kids: st.builds(Node, value=_amounts,
                                             children=st.lists(kids, max_size=3)), max_leaves=6)
_everything = st.builds(
    Everything, plain=_amounts, optional=st.none() | _amounts, price=st.none() | _prices,
    prices=st.lists(_prices, max_size=3),
    by_name=st.dictionaries(st.text(max_size=3), _amounts, max_size=3),
    by_amount=st.dictionaries(_amounts.filter(lambda d: not d.is_snan()), st.integers(),
                              max_size=3),
    pair=st.tuples(st.integers(), _amounts),
    bag=st.frozensets(_amounts.filter(lambda d: not d.is_snan()), max_size=3),
    either=st.none() | st.builds(A, x=_amounts) | st.builds(B, y=st.integers()),
    tree=st.none() | _nodes, rate=st.none() | st.builds(Rate, per_unit=_amounts))


def _all_finite(value: Any) -> bool:
    if isinstance(value, Decimal):
        return value.is_finite()
    if isinstance(value, msgspec.Struct):
        return all(_all_finite(getattr(value, f)) for f in value.__struct_fields__)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(_all_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(_all_finite(k) and _all_finite(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(map(_all_finite, value))
    return True


@settings(max_examples=300, deadline=None)
@given(_everything)
def test_the_compiled_check_and_the_walk_agree_with_a_plain_recursion(value: Everything
                                                                       ) -> None:
    check = finite_check(Everything)
    assert check is not None
    expected = _all_finite(value)
    assert check(value) is expected
    assert (nonfinite_path(value) is None) is expected
