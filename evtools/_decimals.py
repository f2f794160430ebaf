"""Non-finite decimals: the registry's check that a ``Decimal`` field holds a number (private).

msgspec reads a JSON string into a ``decimal.Decimal`` field with Python's ``Decimal()``,
which takes ``"NaN"``, ``"sNaN"``, ``"Infinity"`` and ``"-inf"``. No money, quantity or rate
is one of those: NaN equals nothing (a state hash, a diff, an invariant comparing it all go
wrong), a signalling NaN raises in the first handler that does arithmetic on it, and the
registry cannot write either back as JSON. So the registry refuses them where they are read,
naming the field, as msgspec refuses a string in an ``int`` field.

:func:`finite_parts` compiles, once per class, a test of a decoded value that reads only the
places where the class can hold a ``Decimal`` (one ``attrgetter`` and one ``is_finite`` for
the usual ``unit_price.amount``, run in C by ``evtools._speedups.FiniteDecode`` where it was
built); :func:`nonfinite_path` finds the first one, in msgspec's path notation, when the
test fails. :class:`DecimalText` fields need neither: the type
refuses non-finite values itself. A class whose ``Decimal`` field defaults to NaN is refused
when it is registered: every payload leaving the field out would fail.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from decimal import Decimal
from operator import attrgetter
from typing import Any

import msgspec

from ._accel import speedups
from .errors import UsageError

__all__ = ["FiniteDecoder", "finite_check", "finite_parts", "nonfinite_path", "refuse"]

#: ``check(value)``: True when every plain ``Decimal`` in ``value`` is finite.
Check = Callable[[Any], bool]



def _finite_leaf(value: Any) -> bool:
    """A place that holds a Decimal, or its default (``None``, ``UNSET``), or another
    member of a union (``Decimal | str``): only a plain Decimal is looked at."""
    return type(value) is not Decimal or value.is_finite()
# a key msgspec's path notation can name (``$.rates.EUR``); others are ``[...]``
_PLAIN_KEY = re.compile(r"[^.\[\]`]+")
_COLLECTIONS = (msgspec.inspect.ListType, msgspec.inspect.SetType,
                msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType)


def finite_check(tp: Any) -> Check | None:
    """The :data:`Check` for values of ``tp``, or ``None`` when ``tp`` holds no ``Decimal``."""
    parts = finite_parts(tp)
    return None if parts is None else check_of(parts)


def check_of(parts: tuple[tuple[Callable[[Any], Any], ...], Check | None]) -> Check:
    """The :data:`Check` that :func:`finite_parts` gave in two parts."""
    getters, rest = parts
    if rest is None and len(getters) == 1:  # one amount, as most events have: no loop
        (get,) = getters

        def one(value: Any) -> bool:
            found = get(value)
            return type(found) is not Decimal or found.is_finite()
        return one

    def check(value: Any) -> bool:
        return _getters_ok(getters, value) and (rest is None or rest(value))
    return check


def finite_parts(tp: Any) -> tuple[tuple[Callable[[Any], Any], ...], Check | None] | None:
    """:func:`finite_check` in two parts, as :class:`FiniteDecoder` runs it: getters that
    each read a ``Decimal`` or ``None`` (``attrgetter("unit_price.amount")``), and a
    :data:`Check` for the rest (containers, unions, optional structs), or ``None``."""
    probes = _Compiler().probes(msgspec.inspect.type_info(tp), set())
    if probes is None:
        return None
    direct = [p for p in probes if p.path and p.leaf is _finite_leaf]
    others = [p for p in probes if p not in direct]
    getters = tuple(attrgetter(".".join(p.path)) for p in direct)
    return getters, _join(others) if others else None


class FiniteDecoder:
    """A msgspec decoder whose ``decode`` also refuses a non-finite ``Decimal``, with the
    ``msgspec.ValidationError`` msgspec gives for a value of the wrong type, so that every
    caller reports it as it reports those (the field's JSON path included). ``decode`` is
    ``evtools._speedups.FiniteDecode`` where it was built, else its Python twin."""

    __slots__ = ("decode",)

    def __init__(self, decoder: msgspec.json.Decoder[Any],
                 parts: tuple[tuple[Callable[[Any], Any], ...], Check | None]) -> None:
        getters, rest = parts
        self.decode: Callable[[bytes | bytearray | memoryview | str], Any] = (
            _python_decode(decoder.decode, getters, rest) if speedups is None
            else speedups.FiniteDecode(decoder.decode, getters, rest, refuse, Decimal))


def _python_decode(decode: Callable[[Any], Any], getters: tuple[Callable[[Any], Any], ...],
                   rest: Check | None) -> Callable[[Any], Any]:
    def run(data: Any) -> Any:
        value = decode(data)
        try:
            if _getters_ok(getters, value) and (rest is None or rest(value)):
                return value
        except Exception:  # the walk below says what is wrong
            pass
        return refuse(value)
    return run


def _getters_ok(getters: tuple[Callable[[Any], Any], ...], value: Any) -> bool:
    for get in getters:
        found = get(value)
        if type(found) is Decimal and not found.is_finite():
            return False
    return True


def refuse(value: Any) -> Any:
    """Raise the ``msgspec.ValidationError`` for ``value``, which failed the check (or
    whose check raised): the walk, which looks at everything, decides. ``value`` is
    returned when it finds nothing."""
    found = nonfinite_path(value)
    if found is None:
        return value
    path, bad = found
    raise msgspec.ValidationError(
        f"Expected a finite `decimal`, got `{bad}` (JSON has no NaN or infinity, and no "
        f"amount is one) - at {path}")


def nonfinite_path(value: Any) -> tuple[str, Decimal] | None:
    """Where ``value`` (a decoded event) holds a non-finite plain ``Decimal``: its location
    as msgspec writes one (``$.lines[0].price``, ```key` in `$.rates```) and the value."""
    stack: list[tuple[Any, str]] = [(value, "$")]
    seen: set[int] = set()
    while stack:
        item, path = stack.pop()
        if isinstance(item, Decimal):
            if type(item) is Decimal and not item.is_finite():
                return f"`{path}`", item
            continue
        if isinstance(item, str | bytes | int | float | bool) or item is None:
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        children: list[tuple[Any, str]] = []
        if isinstance(item, msgspec.Struct):
            if item.__struct_config__.array_like:
                children = [(getattr(item, attr), f"{path}[{i}]")
                            for i, attr in enumerate(item.__struct_fields__)]
            else:
                children = [(getattr(item, attr), f"{path}.{name}") for attr, name in zip(
                    item.__struct_fields__, item.__struct_encode_fields__, strict=True)]
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [(getattr(item, f.name), f"{path}.{f.name}")
                        for f in dataclasses.fields(item)]
        elif isinstance(item, dict):
            for key, sub in item.items():
                if type(key) is Decimal and not key.is_finite():
                    return f"`key` in `{path}`", key
                named = type(key) is str and _PLAIN_KEY.fullmatch(key) is not None
                children.append((sub, f"{path}.{key}" if named else f"{path}[...]"))
        elif isinstance(item, list | tuple):
            children = [(sub, f"{path}[{i}]") for i, sub in enumerate(item)]
        elif isinstance(item, set | frozenset):  # no order to point into: the whole set
            children = [(sub, path) for sub in item]
        stack.extend(reversed(children))
    return None


# -- compiling the check ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class _Probe:
    """Read ``path`` (attribute names, possibly none) from the value, then ``leaf`` it."""

    path: tuple[str, ...]
    leaf: Check


class _Compiler:
    def probes(self, info: msgspec.inspect.Type, active: set[Any]) -> list[_Probe] | None:
        """The probes of a value of ``info``; ``None`` when it holds no ``Decimal``."""
        if isinstance(info, msgspec.inspect.Metadata):
            return self.probes(info.type, active)
        if isinstance(info, msgspec.inspect.DecimalType):
            return [_Probe((), _finite_leaf)]
        if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType
                      | msgspec.inspect.NamedTupleType):
            return self.fields(info, active)
        if isinstance(info, msgspec.inspect.TypedDictType):  # a dict: keys, not attributes
            if info.cls in active:
                return [_Probe((), _walked)]
            active.add(info.cls)
            try:
                by_key = [(f.name, _join(p)) for f in info.fields
                          if (p := self.probes(f.type, active)) is not None]
            finally:
                active.discard(info.cls)
            if not by_key:
                return None
            return [_Probe((), lambda v: all(c(v[k]) for k, c in by_key if k in v))]
        if isinstance(info, _COLLECTIONS):
            item = self.probes(info.item_type, active)
            if item is None:
                return None
            check = _join(item)
            return [_Probe((), lambda v: all(map(check, v)))]
        if isinstance(info, msgspec.inspect.TupleType):
            parts = [(i, self.probes(t, active)) for i, t in enumerate(info.item_types)]
            checks = [(i, _join(p)) for i, p in parts if p is not None]
            if not checks:
                return None
            return [_Probe((), lambda v: all(c(v[i]) for i, c in checks))]
        if isinstance(info, msgspec.inspect.DictType):
            key = self.probes(info.key_type, active)
            value = self.probes(info.value_type, active)
            if key is None and value is None:
                return None
            key_ok = _join(key) if key is not None else None
            value_ok = _join(value) if value is not None else None
            return [_Probe((), lambda v: (key_ok is None or all(map(key_ok, v)))
                           and (value_ok is None or all(map(value_ok, v.values()))))]
        if isinstance(info, msgspec.inspect.UnionType):
            return self.union(info, active)
        return None  # scalars, custom types (DecimalText checks itself), Any, Raw

    def fields(self, info: Any, active: set[Any]) -> list[_Probe] | None:
        """A struct's probes: one ``attrgetter`` path through fields that always hold a
        value of their type; a field that may hold its default (``None``, ``UNSET``...)
        instead is checked by a function that lets anything but a struct through."""
        if info.cls in active:  # recursive: walk what is there
            return [_Probe((), _walked)]
        active.add(info.cls)
        for f in info.fields:
            if type(f.default) is Decimal and not f.default.is_finite():
                raise UsageError(
                    f"{info.cls.__qualname__}.{f.name} defaults to {f.default!r}, and a "
                    "decoded Decimal is never NaN or infinite; give it a finite default, "
                    "or declare it `Decimal | None = None`")
        found: list[_Probe] = []
        try:
            for f in info.fields:
                sub = self.probes(f.type, active)
                if sub is None:
                    continue
                if f.required or all(not p.path and p.leaf is _finite_leaf for p in sub):
                    found += [_Probe((f.name, *p.path), p.leaf) for p in sub]
                else:  # the default may be anything: look in only where the value is there
                    found.append(_Probe((f.name,), _present(_join(sub))))
        finally:
            active.discard(info.cls)
        return found or None

    def union(self, info: msgspec.inspect.UnionType, active: set[Any]) -> list[_Probe] | None:
        """A check picked by the decoded value's class (a union's members decode to
        different classes; ``None`` and ``UNSET`` hold nothing)."""
        by_class: dict[type, Check] = {}
        for member in info.types:
            while isinstance(member, msgspec.inspect.Metadata):
                member = member.type
            sub = self.probes(member, active)
            if sub is not None:
                for cls in _classes_of(member):
                    by_class[cls] = _join(sub)
        if not by_class:
            return None
        if set(by_class) == {Decimal}:
            return [_Probe((), _finite_leaf)]

        def check(v: Any) -> bool:
            found = by_class.get(type(v))
            return found is None or found(v)
        return [_Probe((), check)]


def _present(inner: Check) -> Check:
    """``inner``, for a field that may hold ``None`` or ``UNSET`` instead."""
    return lambda v: v is None or v is msgspec.UNSET or inner(v)


def _classes_of(info: msgspec.inspect.Type) -> tuple[type, ...]:
    """The classes a value of ``info`` decodes to."""
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType
                  | msgspec.inspect.NamedTupleType):
        return (info.cls,)
    return {msgspec.inspect.DecimalType: (Decimal,), msgspec.inspect.ListType: (list,),
            msgspec.inspect.SetType: (set,), msgspec.inspect.FrozenSetType: (frozenset,),
            msgspec.inspect.VarTupleType: (tuple,), msgspec.inspect.TupleType: (tuple,),
            msgspec.inspect.DictType: (dict,), msgspec.inspect.TypedDictType: (dict,),
            }.get(type(info), ())


def _walked(value: Any) -> bool:
    return nonfinite_path(value) is None


def _join(probes: list[_Probe]) -> Check:
    """One function running every probe."""
    checks = [_one(p) for p in probes]
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _one(probe: _Probe) -> Check:
    if not probe.path:
        return probe.leaf
    get, leaf = attrgetter(".".join(probe.path)), probe.leaf
    return lambda v: leaf(get(v))
