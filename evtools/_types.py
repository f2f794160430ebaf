"""The types a msgspec type reaches (private): one walk for the registry and the schema
check, which each ask whether some type inside a class is of a kind."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

__all__ = ["reached"]

_mi = msgspec.inspect


def reached(info: _mi.Type) -> Iterator[_mi.Type]:
    """``info`` and every type inside it (fields, items, keys and values, union members),
    each class's fields once (a recursive class ends there); ``Metadata`` is looked
    through. Without recursion: any depth of types is walked."""
    seen: set[type] = set()
    stack = [info]
    while stack:
        t = stack.pop()
        while isinstance(t, _mi.Metadata):
            t = t.type
        if isinstance(t, _mi.StructType | _mi.DataclassType | _mi.TypedDictType
                      | _mi.NamedTupleType):
            if t.cls in seen:
                continue
            seen.add(t.cls)
            stack.extend(f.type for f in t.fields)
        elif isinstance(t, _mi.ListType | _mi.SetType | _mi.FrozenSetType | _mi.VarTupleType):
            stack.append(t.item_type)
        elif isinstance(t, _mi.TupleType):
            stack.extend(t.item_types)
        elif isinstance(t, _mi.DictType):
            stack.extend((t.key_type, t.value_type))
        elif isinstance(t, _mi.UnionType):
            stack.extend(t.types)
        yield t
