"""Key counts of typed values: the registry's fast, exact duplicate-key check (private).

msgspec keeps the last of repeated keys without a word. Re-parsing every payload untyped to
look for repeats doubles the cost of a typed decode, so the registry first tries a proof
that no key repeats:

* :func:`~evtools._json.compact` deletes whitespace from a payload without backslashes.
  In what is left, every key written gives one ``":`` (its closing quote, its colon); a
  string that starts with a colon gives one more. So ``compact(data).count(b'":')`` is
  never below the number of keys written, repeats included.
* :func:`key_count` compiles, once per class, how many distinct keys a decoded value of it
  holds: a constant for fixed shapes, else a function of the value (and of the compact
  payload, to see whether a field left at its default was written). It is never above the
  true number of distinct keys.

When the two are equal, every key was written once. When they are not (or a class cannot
be counted: ``Any``, raw JSON, dataclasses, ``__post_init__``, custom default factories),
the registry runs the exact check. Only classes whose every struct forbids unknown fields
are counted: an ignored unknown key would be written but never decoded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec

from .scalars import Timestamp, UInt64

__all__ = ["KeyCount", "key_count"]

#: Distinct keys of a decoded value: a constant, or ``count(value, compact_payload)``.
KeyCount = int | Callable[[Any, bytes], int]


def key_count(tp: Any) -> KeyCount | None:
    """The :data:`KeyCount` of values of ``tp``, or ``None`` where it cannot be known."""
    info = msgspec.inspect.type_info(tp)
    census = _Census()
    census.walk(info, set())
    return _Compiler(census).count(info, set(), singular=True)


_NO_KEYS = (msgspec.inspect.NoneType, msgspec.inspect.BoolType, msgspec.inspect.IntType,
            msgspec.inspect.FloatType, msgspec.inspect.StrType, msgspec.inspect.BytesType,
            msgspec.inspect.ByteArrayType, msgspec.inspect.DecimalType,
            msgspec.inspect.UUIDType, msgspec.inspect.EnumType, msgspec.inspect.LiteralType,
            msgspec.inspect.DateType, msgspec.inspect.TimeDeltaType)
_COLLECTIONS = (msgspec.inspect.ListType, msgspec.inspect.SetType,
                msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType)
_EMPTY_FACTORIES = (list, dict, set, frozenset, tuple)
_REQUIRED = object()


class _Census:
    """Every key name the schema can write, once per place it can appear. A field at its
    default may be probed for in the payload only when its name can appear nowhere else."""

    def __init__(self) -> None:
        self.names: Counter[str] = Counter()
        self.any_name = False  # a dict (any key) or a recursive struct: probe nothing

    def walk(self, info: msgspec.inspect.Type, active: set[Any]) -> None:
        if isinstance(info, msgspec.inspect.Metadata):
            self.walk(info.type, active)
        elif isinstance(info, msgspec.inspect.StructType):
            if info.cls in active:
                self.any_name = True
                return
            active.add(info.cls)
            if info.tag_field is not None:
                self.names[info.tag_field.replace(" ", "")] += 1
            for f in info.fields:
                self.names[f.encode_name.replace(" ", "")] += 1
                self.walk(f.type, active)
            active.discard(info.cls)
        elif isinstance(info, msgspec.inspect.UnionType):
            for t in info.types:
                self.walk(t, active)
        elif isinstance(info, _COLLECTIONS):
            self.walk(info.item_type, active)
        elif isinstance(info, msgspec.inspect.DictType):
            self.any_name = True
        elif not isinstance(info, (*_NO_KEYS, msgspec.inspect.CustomType)):
            self.any_name = True  # Any, Raw, tuples, dataclasses...: be safe

    def unique(self, name: str) -> bool:
        """Whether ``"name":`` in the compact payload can only be this field's key. Names
        are compared as compact() leaves them: without spaces ("a b" is "ab" there)."""
        return not self.any_name and " " not in name and self.names[name] == 1


class _Compiler:
    def __init__(self, census: _Census) -> None:
        self.census = census

    def count(self, info: msgspec.inspect.Type, active: set[Any], singular: bool
              ) -> KeyCount | None:
        """``singular``: at most one value of ``info`` in a payload (reached through struct
        fields and optionals only)."""
        if isinstance(info, _NO_KEYS):
            return 0
        if isinstance(info, msgspec.inspect.Metadata):
            return self.count(info.type, active, singular)
        if isinstance(info, msgspec.inspect.CustomType):
            return 0 if info.cls in (Timestamp, UInt64) else None  # decoded from str / int
        if isinstance(info, msgspec.inspect.StructType):
            return self.struct(info, active, singular)
        if isinstance(info, msgspec.inspect.UnionType):
            return self.union(info, active, singular)
        if isinstance(info, _COLLECTIONS):
            item = self.count(info.item_type, active, singular=False)
            if item is None or item == 0:
                return item
            if isinstance(item, int):
                return lambda v, c, k=item: k * len(v)
            return lambda v, c, count=item: sum(count(x, c) for x in v)
        if isinstance(info, msgspec.inspect.DictType):
            value = self.count(info.value_type, active, singular=False)
            if value is None:
                return None
            if isinstance(value, int):
                return lambda v, c, k=value + 1: k * len(v)
            return lambda v, c, count=value: len(v) + sum(count(x, c) for x in v.values())
        return None

    def struct(self, info: msgspec.inspect.StructType, active: set[Any], singular: bool
               ) -> KeyCount | None:
        if info.array_like or info.cls in active or hasattr(info.cls, "__post_init__"):
            return None  # __post_init__ may change fields after decoding: count nothing
        active.add(info.cls)
        try:
            fixed = 0  # the tag key is not counted: a tagged struct may leave it out
            parts: list[tuple[str, KeyCount, Any, bytes | None]] = []
            for f in info.fields:
                sub = self.count(f.type, active, singular)
                if sub is None:
                    return None
                if f.required:
                    if isinstance(sub, int):
                        fixed += 1 + sub
                    else:
                        fixed += 1
                        parts.append((f.name, sub, _REQUIRED, None))
                    continue
                if f.default is not msgspec.NODEFAULT:
                    default = f.default
                elif f.default_factory is msgspec.NODEFAULT:
                    default = msgspec.UNSET  # `x: int | UnsetType = UNSET`
                elif f.default_factory in _EMPTY_FACTORIES:
                    default = f.default_factory()  # always the same empty value
                else:
                    return None  # another factory may return anything, any time
                # a field written at its default ("line2":null) is seen by its key token,
                # when that name can stand in no other object of the payload
                token = (f'"{f.encode_name}":'.encode()
                         if singular and self.census.unique(f.encode_name) else None)
                parts.append((f.name, sub, default, token))
        finally:
            active.discard(info.cls)
        if not parts:
            return fixed
        getters = tuple((attrgetter(name), sub, default, token)
                        for name, sub, default, token in parts)

        def count(value: Any, written: bytes) -> int:
            n = fixed
            for get, sub, default, token in getters:
                v = get(value)
                if default is _REQUIRED:
                    n += sub if type(sub) is int else sub(v, written)  # type: ignore[operator]
                elif v is not default and v != default:  # absent fields hold their default
                    n += 1 + (sub if type(sub) is int else sub(v, written))  # type: ignore[operator]
                elif token is not None and written.find(token) >= 0:
                    n += 1  # written out at its default value
            return n

        return count

    def union(self, info: msgspec.inspect.UnionType, active: set[Any], singular: bool
              ) -> KeyCount | None:
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        one = singular and len(members) == 1  # an optional: still at most one value
        by_class: dict[type, KeyCount] = {}
        for member in members:
            sub = self.count(member, active, one)
            if sub is None:
                return None
            if sub != 0:
                if not isinstance(member, msgspec.inspect.StructType):
                    return None  # a list or dict among other types: not worth dispatching
                by_class[member.cls] = sub
        if not by_class:
            return 0

        def count(value: Any, written: bytes) -> int:
            sub = by_class.get(type(value), 0)
            return sub if type(sub) is int else sub(value, written)  # type: ignore[operator]

        return count
