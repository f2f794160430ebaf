"""Hypothesis strategies shared by the test suite (one module, as attrs keeps them)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
from hypothesis import strategies as st

from evtools.events import RawEvent
from evtools.scalars import Int64, Timestamp


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"
    JPY = "JPY"


class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: Decimal
    currency: Currency


class Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Int64
    quantity: int
    price: Money


class Placed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: Int64
    customer: uuid.UUID
    placed_at: Timestamp
    total: Money
    lines: list[Line]
    tags: dict[str, str] = {}
    note: str | None = None
    huge: int = 0  # any size: JSON integers stay Python ints


int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 300
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)


@st.composite
def timestamps(draw: st.DrawFn) -> Timestamp:
    dt = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    tz = draw(offsets)
    ns = draw(st.integers(0, 999))
    return Timestamp.from_datetime(dt.replace(tzinfo=tz), ns)


money = st.builds(Money, amount=decimals, currency=st.sampled_from(Currency))
lines = st.builds(Line, sku=int64s, quantity=st.integers(0, 10**6), price=money)
placed_events = st.builds(
    Placed,
    order_id=int64s,
    customer=st.uuids(),
    placed_at=timestamps(),
    total=money,
    lines=st.lists(lines, max_size=4),
    tags=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    note=st.none() | st.text(max_size=20),
    huge=st.integers(min_value=-(2**200), max_value=2**200),
)

# Arbitrary JSON values (for "decode succeeds exactly or raises EvtoolsError")
json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@st.composite
def raw_events(draw: st.DrawFn, payload: st.SearchStrategy[bytes] | None = None) -> RawEvent:
    data = draw(payload if payload is not None else json_values.map(msgspec.json.encode))
    return RawEvent(
        stream=draw(st.text(min_size=1, max_size=12)),
        version=draw(st.integers(0, 10**9)),
        type=draw(st.text(min_size=1, max_size=12)),
        data=data,
        metadata=draw(st.sampled_from([b"", b"{}", b'{"correlation_id":"c-1"}'])),
        id=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        recorded_at=draw(st.none() | st.datetimes(timezones=st.just(UTC))),
        position=draw(st.none() | st.integers(0, 2**62)),
        schema_version=draw(st.integers(1, 5)),
    )
