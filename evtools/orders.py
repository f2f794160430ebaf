"""The order domain used across evtools: typed events, value objects and the ``Order``
aggregate (generator, notebooks, benchmarks and tests all use it).

What makes it a good test of a consumer: ids above 2**53 (``order_id``, ``customer_id``,
``sku``), money as JSON numbers with cents read into ``Decimal`` (:class:`Money`),
timestamps with UTC offsets and nanoseconds (:class:`~evtools.scalars.Timestamp`), enums,
nested value objects (:class:`Address`), UUIDs, and two schema versions of two events:

============================  ===================================================
``ItemAdded`` v1              ``price`` a bare number plus ``currency``
``ItemAdded`` v2 (current)    ``unit_price``: :class:`Money`
``PaymentAuthorized`` v1      ``amount`` a bare number plus ``currency``
``PaymentAuthorized`` v2      ``amount``: :class:`Money`
============================  ===================================================

The upcasters registered by :func:`order_registry` lift v1 events to v2; they are typed
(``ItemAddedV1 -> ItemAdded``: see :meth:`~evtools.registry.Registry.add_upcaster`). The
``Order`` state itself is at schema version 2; a v1 snapshot state (lines with ``price``
and ``currency``) is upcast by a dict upcaster, there being no class for it.

Every event carries ``order_id`` (the aggregate id) and ``occurred_at`` (its time).
"""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import msgspec

from .aggregate import Aggregate, handles, invariant
from .registry import DuplicateKeyPolicy, Registry, UnknownFieldPolicy
from .scalars import Int64, Timestamp

__all__ = [
    "EVENT_TYPES",
    "Address",
    "AddressChanged",
    "CancelReason",
    "Carrier",
    "Currency",
    "ItemAdded",
    "ItemAddedV1",
    "ItemRemoved",
    "Line",
    "Money",
    "Order",
    "OrderCancelled",
    "OrderCreated",
    "OrderDelivered",
    "OrderShipped",
    "OrderStatus",
    "PaymentAuthorized",
    "PaymentAuthorizedV1",
    "order_registry",
]

Quantity = Annotated[int, msgspec.Meta(gt=0, le=1_000_000)]


class Currency(enum.StrEnum):
    EUR = "EUR"
    USD = "USD"
    GBP = "GBP"
    JPY = "JPY"
    CHF = "CHF"


class Carrier(enum.StrEnum):
    DHL = "dhl"
    UPS = "ups"
    FEDEX = "fedex"
    USPS = "usps"
    LA_POSTE = "la-poste"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class CancelReason(enum.StrEnum):
    CUSTOMER_REQUEST = "customer_request"
    PAYMENT_FAILED = "payment_failed"
    OUT_OF_STOCK = "out_of_stock"
    FRAUD_SUSPECTED = "fraud_suspected"


# -- value objects ---------------------------------------------------------------------------

class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """An exact amount in a currency (``19.99`` is ``Decimal('19.99')``, never a float)."""

    amount: Decimal
    currency: Currency


class Address(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    street: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None


class Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One order line of the ``Order`` state."""

    sku: Int64
    quantity: int
    unit_price: Money


# -- events ----------------------------------------------------------------------------------

class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    order_id: Int64


class OrderCreated(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    customer_id: Int64
    request_id: uuid.UUID
    currency: Currency
    shipping_address: Address
    occurred_at: Timestamp


class ItemAdded(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    """Schema v2: the price is :class:`Money`."""

    sku: Int64
    quantity: Quantity
    unit_price: Money
    occurred_at: Timestamp


class ItemAddedV1(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    """Schema v1: ``price`` is a bare number, ``currency`` a separate field."""

    sku: Int64
    quantity: Quantity
    price: Decimal
    currency: Currency
    occurred_at: Timestamp


class ItemRemoved(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    sku: Int64
    quantity: Quantity
    occurred_at: Timestamp


class AddressChanged(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    address: Address
    occurred_at: Timestamp


class PaymentAuthorized(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    """Schema v2: the amount is :class:`Money`."""

    payment_id: uuid.UUID
    amount: Money
    occurred_at: Timestamp


class PaymentAuthorizedV1(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    """Schema v1: ``amount`` is a bare number, ``currency`` a separate field."""

    payment_id: uuid.UUID
    amount: Decimal
    currency: Currency
    occurred_at: Timestamp


class OrderShipped(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    carrier: Carrier
    tracking_number: str
    occurred_at: Timestamp


class OrderDelivered(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    occurred_at: Timestamp
    signed_by: str | None = None


class OrderCancelled(_Event, frozen=True, forbid_unknown_fields=True, gc=False):
    reason: CancelReason
    occurred_at: Timestamp


#: (type name, schema version, class) of every order event, current versions last.
EVENT_TYPES: tuple[tuple[str, int, type], ...] = (
    ("OrderCreated", 1, OrderCreated),
    ("ItemAdded", 1, ItemAddedV1),
    ("ItemAdded", 2, ItemAdded),
    ("ItemRemoved", 1, ItemRemoved),
    ("AddressChanged", 1, AddressChanged),
    ("PaymentAuthorized", 1, PaymentAuthorizedV1),
    ("PaymentAuthorized", 2, PaymentAuthorized),
    ("OrderShipped", 1, OrderShipped),
    ("OrderDelivered", 1, OrderDelivered),
    ("OrderCancelled", 1, OrderCancelled),
)


def _money_from_v1(payload: dict[str, Any], amount_key: str, target: str) -> dict[str, Any]:
    out = payload.copy()
    amount = out.pop(amount_key, _ABSENT)
    currency = out.pop("currency", _ABSENT)
    if amount is not _ABSENT or currency is not _ABSENT:
        out[target] = {"amount": None if amount is _ABSENT else amount,
                       "currency": None if currency is _ABSENT else currency}
    return out


_ABSENT = object()


def upcast_item_added_v1(e: ItemAddedV1) -> ItemAdded:
    """ItemAdded v1 -> v2 (a typed upcaster): ``price`` + ``currency`` become
    ``unit_price: Money``."""
    return ItemAdded(order_id=e.order_id, sku=e.sku, quantity=e.quantity,
                     unit_price=Money(e.price, e.currency), occurred_at=e.occurred_at)


def upcast_payment_authorized_v1(e: PaymentAuthorizedV1) -> PaymentAuthorized:
    """PaymentAuthorized v1 -> v2 (a typed upcaster): ``amount`` + ``currency`` become
    ``amount: Money``."""
    return PaymentAuthorized(order_id=e.order_id, payment_id=e.payment_id,
                             amount=Money(e.amount, e.currency), occurred_at=e.occurred_at)


def upcast_order_state_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Order state v1 -> v2: each line's ``price`` + ``currency`` become ``unit_price``."""
    lines = payload.get("lines")
    if isinstance(lines, dict):
        payload = {**payload, "lines": {
            sku: _money_from_v1(line, "price", "unit_price") if isinstance(line, dict) else line
            for sku, line in lines.items()}}
    return payload


# -- the aggregate ---------------------------------------------------------------------------

class Order(Aggregate):
    """An order, rebuilt from its events. State fields are the annotated attributes."""

    id_field: ClassVar[str | None] = "order_id"
    stream_prefix: ClassVar[str | None] = "order-"
    state_version: ClassVar[int] = 2

    order_id: Int64 | None = None
    customer_id: Int64 | None = None
    request_id: uuid.UUID | None = None
    status: OrderStatus | None = None
    currency: Currency | None = None
    shipping_address: Address | None = None
    lines: dict[int, Line] = msgspec.field(default_factory=dict)
    payment_id: uuid.UUID | None = None
    authorized_amount: Money | None = None
    carrier: Carrier | None = None
    tracking_number: str | None = None
    cancel_reason: CancelReason | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    shipped_at: Timestamp | None = None
    delivered_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None

    # -- handlers ---------------------------------------------------------------------------

    @handles(OrderCreated)
    def _created(self, e: OrderCreated) -> None:
        self.order_id = e.order_id
        self.customer_id = e.customer_id
        self.request_id = e.request_id
        self.currency = e.currency
        self.shipping_address = e.shipping_address
        self.status = OrderStatus.PENDING
        self.created_at = self.updated_at = e.occurred_at

    @handles(ItemAdded)
    def _item_added(self, e: ItemAdded) -> None:
        line = self.lines.get(e.sku)
        quantity = e.quantity if line is None else line.quantity + e.quantity
        self.lines[e.sku] = Line(e.sku, quantity, e.unit_price)
        self.updated_at = e.occurred_at

    @handles(ItemRemoved)
    def _item_removed(self, e: ItemRemoved) -> None:
        line = self.lines.get(e.sku)
        if line is not None and line.quantity == e.quantity:
            del self.lines[e.sku]
        else:  # removing more than there is leaves a negative line: an invariant says so
            price = line.unit_price if line is not None else Money(
                Decimal(0), self.currency or Currency.EUR)
            held = line.quantity if line is not None else 0
            self.lines[e.sku] = Line(e.sku, held - e.quantity, price)
        self.updated_at = e.occurred_at

    @handles(AddressChanged)
    def _address_changed(self, e: AddressChanged) -> None:
        self.shipping_address = e.address
        self.updated_at = e.occurred_at

    @handles(PaymentAuthorized)
    def _payment_authorized(self, e: PaymentAuthorized) -> None:
        self.payment_id = e.payment_id
        self.authorized_amount = e.amount
        self.status = OrderStatus.PAID
        self.updated_at = e.occurred_at

    @handles(OrderShipped)
    def _shipped(self, e: OrderShipped) -> None:
        self.carrier = e.carrier
        self.tracking_number = e.tracking_number
        self.status = OrderStatus.SHIPPED
        self.shipped_at = self.updated_at = e.occurred_at

    @handles(OrderDelivered)
    def _delivered(self, e: OrderDelivered) -> None:
        self.status = OrderStatus.DELIVERED
        self.delivered_at = self.updated_at = e.occurred_at

    @handles(OrderCancelled)
    def _cancelled(self, e: OrderCancelled) -> None:
        self.status = OrderStatus.CANCELLED
        self.cancel_reason = e.reason
        self.cancelled_at = self.updated_at = e.occurred_at

    # -- invariants -------------------------------------------------------------------------

    @invariant(after=(ItemAdded, ItemRemoved, AddressChanged, PaymentAuthorized, OrderShipped,
                      OrderDelivered, OrderCancelled))
    def created_first(self) -> bool | str:
        return self.status is not None or "event applied to an order that was never created"

    @invariant(after=(ItemAdded,))
    def lines_in_order_currency(self, e: ItemAdded) -> bool | str:
        """The line just priced is in the order's currency (checked as each line is
        priced, so every line is)."""
        if e.unit_price.currency is self.currency:
            return True
        return f"sku {e.sku} is priced in {e.unit_price.currency} but the order is in " \
               f"{self.currency}"

    @invariant(after=(ItemRemoved,))
    def quantities_positive(self, e: ItemRemoved) -> bool | str:
        """The line just reduced is gone or still holds a positive quantity."""
        line = self.lines.get(e.sku)
        if line is None or line.quantity > 0:
            return True
        return f"sku {line.sku} has quantity {line.quantity}"

    @invariant(after=(PaymentAuthorized,))
    def payment_matches_total(self) -> bool | str:
        amount = self.authorized_amount
        if amount is None:
            return True
        if amount.currency is not self.currency or amount.amount != self.total:
            return (f"authorized {amount.amount} {amount.currency} but the order totals "
                    f"{self.total} {self.currency}")
        return True

    @invariant(after=(OrderShipped, OrderDelivered))
    def shipped_after_payment(self) -> bool | str:
        if self.status not in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
            return True
        if self.payment_id is None:
            return f"order is {self.status} but no payment was authorized"
        if self.status is OrderStatus.DELIVERED and self.shipped_at is None:
            return "order delivered but never shipped"
        return True

    # -- views ------------------------------------------------------------------------------

    @property
    def total(self) -> Decimal:
        """Sum of quantity x unit price over the lines (exact)."""
        return sum((line.unit_price.amount * line.quantity for line in self.lines.values()),
                   Decimal(0))


def order_registry(*, unknown_fields: UnknownFieldPolicy = "reject",
                   duplicate_keys: DuplicateKeyPolicy = "reject") -> Registry:
    """A new :class:`~evtools.registry.Registry` with every order event (both schema
    versions), the v1 -> v2 upcasters, and the ``Order`` state schema (for snapshots)."""
    registry = Registry(unknown_fields=unknown_fields, duplicate_keys=duplicate_keys)
    for name, version, cls in EVENT_TYPES:
        registry.register(cls, name=name, version=version)
    registry.add_upcaster("ItemAdded", 1, upcast_item_added_v1, typed=True)
    registry.add_upcaster("PaymentAuthorized", 1, upcast_payment_authorized_v1, typed=True)
    Order.register_state(registry)
    registry.add_upcaster(Order.state_type_name(), 1, upcast_order_state_v1)
    return registry
