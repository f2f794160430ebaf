"""Hypothesis strategies for schema inference: batches of event payloads that share a shape.

A *shape* maps each key to a kind of value (an id above 2**53, money with cents, an RFC 3339
timestamp, a UUID, a status, free text, a nested object, a list, ...); each payload of a
batch draws its values from the shape and may leave optional keys out, so that inference
sees required and optional fields, nulls, mixed kinds and formats together.
"""

from __future__ import annotations

import string
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import strategies as st

from evtools.events import RawEvent

from ..strategies import timestamps

_encoder = msgspec.json.Encoder(decimal_format="number")  # Decimal -> its own number text

KEYS = ["id", "amount", "at", "status", "note", "class", "ref-id", "tags", "nested", "n"]

big_ids = st.integers(min_value=2**53 + 1, max_value=2**63 - 1)
small_ints = st.integers(min_value=-1000, max_value=1000)
huge_ints = st.integers(min_value=-(2**80), max_value=2**80)
money = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False,
                    allow_infinity=False)
any_decimals = st.decimals(allow_nan=False, allow_infinity=False).filter(
    lambda d: abs(d.adjusted()) < 300)
text = st.text(alphabet=string.ascii_letters + string.digits + " -_.", max_size=8)
statuses = st.sampled_from(["new", "paid", "shipped"])
uuids = st.uuids().map(str)
timestamp_text = timestamps().map(str)
decimal_strings = money.map(lambda d: f"{d:.2f}")

SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "big_id": big_ids,
    "small_int": small_ints,
    "huge_int": huge_ints,
    "money": money,
    "decimal": any_decimals,
    "text": text,
    "status": statuses,
    "uuid": uuids,
    "timestamp": timestamp_text,
    "decimal_string": decimal_strings,
    "bool": st.booleans(),
    "int_or_text": small_ints | text,
}


def _value(kind: Any) -> st.SearchStrategy[Any]:
    if isinstance(kind, str):
        return SCALARS[kind]
    tag, inner = kind
    if tag == "nullable":
        return st.none() | _value(inner)
    if tag == "list":
        return st.lists(_value(inner), max_size=3)
    return _object(inner)  # "object"


def _object(shape: dict[str, tuple[Any, bool]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, (kind, optional) in shape.items():
            if optional and draw(st.booleans()):
                continue
            out[key] = draw(_value(kind))
        return out

    return build()


kinds: st.SearchStrategy[Any] = st.recursive(
    st.sampled_from(sorted(SCALARS)),
    lambda inner: st.tuples(st.just("nullable"), inner)
    | st.tuples(st.just("list"), inner)
    | st.tuples(st.just("object"), st.dictionaries(st.sampled_from(KEYS[:4]),
                                                   st.tuples(inner, st.booleans()),
                                                   max_size=3)),
    max_leaves=4,
)
shapes = st.dictionaries(st.sampled_from(KEYS), st.tuples(kinds, st.booleans()), max_size=6)


@st.composite
def payload_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1 to 8 payloads drawn from one shape."""
    shape = draw(shapes)
    return draw(st.lists(_object(shape), min_size=1, max_size=8))


def to_events(payloads: list[dict[str, Any]], event_type: str = "Thing") -> list[RawEvent]:
    return [RawEvent(stream="s-1", version=i, type=event_type, data=encode(p))
            for i, p in enumerate(payloads)]


def encode(payload: Any) -> bytes:
    """JSON with every Decimal written as a number from its own text."""
    return _encoder.encode(payload)


def json_equal(decoded: Any, original: Any) -> bool:
    """Whether ``decoded`` (to_builtins of a typed event, Decimal kept) is ``original``:
    numbers by exact value, absent optional fields as None."""
    if isinstance(original, dict):
        if not isinstance(decoded, dict):
            return False
        extra = set(decoded) - set(original)
        return (all(decoded[k] is None for k in extra)
                and all(k in decoded and json_equal(decoded[k], v) for k, v in original.items()))
    if isinstance(original, list):
        return (isinstance(decoded, list) and len(decoded) == len(original)
                and all(json_equal(d, o) for d, o in zip(decoded, original, strict=True)))
    if isinstance(original, str) and isinstance(decoded, Decimal):  # format: decimal
        return str(decoded) == original
    if isinstance(original, bool) or original is None or isinstance(original, str):
        return decoded == original and type(decoded) is type(original)
    if isinstance(decoded, bool) or not isinstance(decoded, int | float | Decimal):
        return False
    return Decimal(str(decoded)) == Decimal(original)
