"""The order domain: exact decoding, upcasting, the Order aggregate and its invariants."""

from __future__ import annotations

import uuid
from decimal import Decimal

import msgspec
import pytest

from evtools.events import RawEvent
from evtools.orders import (
    Address,
    Carrier,
    Currency,
    ItemAdded,
    ItemRemoved,
    Money,
    Order,
    OrderCreated,
    OrderShipped,
    OrderStatus,
    PaymentAuthorized,
    order_registry,
)
from evtools.registry import Registry
from evtools.scalars import Timestamp

BIG = 2**53 + 1  # not representable as a float64
SKU = 2**60 + 7
ADDRESS = b'{"street":"Hauptstra\xc3\x9fe 5","city":"Berlin","postal_code":"10115",' \
          b'"country":"DE","line2":null}'


def created(currency: str = "EUR") -> bytes:
    return (b'{"order_id":%d,"customer_id":%d,"request_id":"12345678-1234-4234-8234-'
            b'123456789abc","currency":"%s","shipping_address":%s,'
            b'"occurred_at":"2024-03-01T12:00:00.123456789+02:00"}'
            % (BIG, BIG + 2, currency.encode(), ADDRESS))


def raw(version: int, type_: str, data: bytes, schema_version: int = 1) -> RawEvent:
    return RawEvent(stream=f"order-{BIG}", version=version, type=type_, data=data,
                    id=f"e{version}", schema_version=schema_version)


@pytest.fixture
def registry() -> Registry:
    return order_registry()


def test_registry_knows_every_event_in_both_versions(registry: Registry) -> None:
    assert registry.latest_version("ItemAdded") == 2
    assert registry.latest_version("PaymentAuthorized") == 2
    assert ("ItemAdded", 1) in registry
    for name in ("OrderCreated", "ItemRemoved", "AddressChanged", "OrderShipped",
                 "OrderDelivered", "OrderCancelled"):
        assert name in registry
    assert (Order.state_type_name(), Order.state_version) in registry


def test_decoding_is_exact(registry: Registry) -> None:
    event = registry.decode(raw(0, "OrderCreated", created()))
    assert isinstance(event, OrderCreated)
    assert event.order_id == BIG and isinstance(event.order_id, int)
    assert event.request_id == uuid.UUID("12345678-1234-4234-8234-123456789abc")
    assert event.currency is Currency.EUR
    assert event.shipping_address == Address("Hauptstraße 5", "Berlin", "10115", "DE")
    assert str(event.occurred_at) == "2024-03-01T12:00:00.123456789+02:00"
    assert event.occurred_at.nanosecond == 123_456_789


def test_item_added_v1_is_upcast_to_money(registry: Registry) -> None:
    v1 = (b'{"order_id":%d,"sku":%d,"quantity":2,"price":19.99,"currency":"EUR",'
          b'"occurred_at":"2024-03-01T12:00:01Z"}' % (BIG, SKU))
    v2 = (b'{"order_id":%d,"sku":%d,"quantity":2,"unit_price":{"amount":19.99,'
          b'"currency":"EUR"},"occurred_at":"2024-03-01T12:00:01Z"}' % (BIG, SKU))
    old = registry.decode(raw(1, "ItemAdded", v1, 1))
    new = registry.decode(raw(1, "ItemAdded", v2, 2))
    assert isinstance(old, ItemAdded)
    assert old == new
    assert old.unit_price == Money(Decimal("19.99"), Currency.EUR)
    assert str(old.unit_price.amount) == "19.99"  # read from the text, never a float


def test_payment_v1_is_upcast(registry: Registry) -> None:
    v1 = (b'{"order_id":%d,"payment_id":"12345678-1234-4234-8234-123456789abc",'
          b'"amount":39.98,"currency":"USD","occurred_at":"2024-03-01T12:00:01Z"}' % BIG)
    event = registry.decode(raw(2, "PaymentAuthorized", v1, 1))
    assert isinstance(event, PaymentAuthorized)
    assert event.amount == Money(Decimal("39.98"), Currency.USD)


def test_ids_beyond_int64_are_rejected(registry: Registry) -> None:
    from evtools.errors import SchemaError

    bad = created().replace(b'"order_id":%d' % BIG, b'"order_id":%d' % 2**63)
    with pytest.raises(SchemaError) as info:
        registry.decode(raw(0, "OrderCreated", bad))
    assert info.value.context.path == "/order_id"


def ts(second: int) -> Timestamp:
    return Timestamp(f"2024-03-01T12:00:{second:02d}.000000001+02:00")


def lifecycle() -> Order:
    order = Order()
    order.apply(OrderCreated(BIG, BIG + 2, uuid.UUID(int=1), Currency.EUR,
                             Address("a", "b", "c", "DE"), ts(0)))
    order.apply(ItemAdded(BIG, SKU, 2, Money(Decimal("19.99"), Currency.EUR), ts(1)))
    order.apply(ItemAdded(BIG, SKU + 1, 1, Money(Decimal("0.01"), Currency.EUR), ts(2)))
    order.apply(ItemRemoved(BIG, SKU + 1, 1, ts(3)))
    return order


def test_order_handlers_fold_the_lifecycle() -> None:
    order = lifecycle()
    assert order.status is OrderStatus.PENDING
    assert list(order.lines) == [SKU]
    assert order.lines[SKU].quantity == 2
    assert order.total == Decimal("39.98")
    assert order.updated_at == ts(3)
    assert order.check_invariants() == []
    order.apply(PaymentAuthorized(BIG, uuid.UUID(int=2), Money(Decimal("39.98"),
                                                               Currency.EUR), ts(4)))
    order.apply(OrderShipped(BIG, Carrier.DHL, "1Z", ts(5)))
    assert order.status is OrderStatus.SHIPPED
    assert order.check_invariants() == []


@pytest.mark.parametrize(("event", "fragment"), [
    (ItemAdded(BIG, SKU + 5, 1, Money(Decimal(1), Currency.USD), ts(9)), "priced in USD"),
    (ItemRemoved(BIG, SKU, 3, ts(9)), "quantity -1"),
    (PaymentAuthorized(BIG, uuid.UUID(int=2), Money(Decimal("1.00"), Currency.EUR), ts(9)),
     "authorized 1.00 EUR"),
    (OrderShipped(BIG, Carrier.UPS, "1Z", ts(9)), "no payment was authorized"),
])
def test_order_invariants(event: object, fragment: str) -> None:
    order = lifecycle()
    order.apply(event)
    problems = order.check_invariants(event)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_event_before_creation_breaks_created_first() -> None:
    order = Order()
    event = ItemRemoved(BIG, SKU, 1, ts(1))
    order.apply(event)
    assert any("never created" in p for p in order.check_invariants(event))


def test_order_state_round_trips_exactly() -> None:
    order = lifecycle()
    state = order.to_state()
    assert state["order_id"] == BIG
    assert state["lines"][str(SKU)]["unit_price"] == {"amount": Decimal("19.99"),
                                                      "currency": "EUR"}
    assert state["created_at"] == "2024-03-01T12:00:00.000000001+02:00"
    assert Order.from_state(state) == order
    assert Order.from_state_bytes(order.state_bytes()).state_hash() == order.state_hash()


def test_order_state_v1_is_upcast(registry: Registry) -> None:
    fields = {**Order().to_state(), "order_id": "<id>", "currency": "EUR", "lines": "<lines>"}
    v1 = (msgspec.json.encode(fields)
          .replace(b'"<id>"', b"%d" % BIG)
          .replace(b'"<lines>"', b'{"%d":{"sku":%d,"quantity":2,"price":19.99,"currency":"EUR"}}'
                   % (SKU, SKU)))  # every field: a v1 state was written whole, as v2 is
    state = registry.decode_payload(Order.state_type_name(), 1, v1)
    order = Order.from_state(state)
    assert order.lines[SKU].unit_price == Money(Decimal("19.99"), Currency.EUR)
    assert order.order_id == BIG
