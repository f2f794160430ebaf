"""The types a msgspec type reaches (evtools._types)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, NamedTuple, TypedDict

import msgspec

from evtools._types import reached
from evtools.registry import _can_collapse

_mi = msgspec.inspect


class Node(msgspec.Struct):
    value: Decimal
    children: list[Node] = []


class Pair(NamedTuple):
    n: int
    tags: frozenset[str]


class Shape(TypedDict):
    by_id: dict[int, str]


class Holder(msgspec.Struct):
    node: Node | None
    pair: Pair
    shape: Shape
    pairs: tuple[int, bytes]
    bounded: Annotated[list[int], msgspec.Meta(min_length=1)]


def _kinds(tp: object) -> list[str]:
    return sorted(type(t).__name__ for t in reached(_mi.type_info(tp)))


def test_every_type_inside_is_reached_once_per_class() -> None:
    kinds = _kinds(Holder)
    for kind in ("StructType", "NamedTupleType", "TypedDictType", "DecimalType", "ListType",
                 "FrozenSetType", "DictType", "IntType", "StrType", "UnionType", "NoneType",
                 "TupleType", "BytesType"):
        assert kind in kinds, kind
    assert "Metadata" not in kinds  # looked through
    assert kinds.count("StructType") == 2  # Holder and Node: Node in its own list is not
    # walked (nor yielded) again


def test_a_deep_type_is_walked() -> None:
    tp: object = int
    for _ in range(400):  # (msgspec's own type_info recurses: not much deeper)
        tp = list[tp]  # type: ignore[valid-type]
    assert sum(1 for _ in reached(_mi.type_info(tp))) == 401


def test_collapsible_values_are_found_wherever_they_are() -> None:
    assert _can_collapse(_mi.type_info(Holder))  # dict[int, str] in a TypedDict, a frozenset
    assert not _can_collapse(_mi.type_info(Node))
    assert _can_collapse(_mi.type_info(dict[Annotated[int, msgspec.Meta(ge=0)], str]))
    assert not _can_collapse(_mi.type_info(dict[Annotated[str, msgspec.Meta(min_length=1)],
                                               list[int]]))
