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
from collections.abc import Callable
from decimal import Decimal
from operator import attrgetter
from typing import Any, NoReturn

import msgspec

from ._accel import speedups
from .errors import UsageError

__all__ = ["FiniteDecoder", "finite_check", "finite_parts", "nonfinite_path", "refuse"]

#: ``check(value)``: True when every plain ``Decimal`` in ``value`` is finite.
Check = Callable[[Any], bool]

_is_finite: Check = Decimal.is_finite


def _is_finite_or_none(value: Any) -> bool:
    return value is None or value.is_finite()


_DECIMAL_LEAVES = (_is_finite, _is_finite_or_none)
_COLLECTIONS = (msgspec.inspect.ListType, msgspec.inspect.SetType,
                msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType)


def finite_check(tp: Any) -> Check | None:
    """The :data:`Check` for values of ``tp``, or ``None`` when ``tp`` holds no ``Decimal``."""
    parts = finite_parts(tp)
    if parts is None:
        return None
    getters, rest = parts

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
    direct = [p for p in probes if p.path and p.leaf in _DECIMAL_LEAVES]
    others = [p for p in probes if p not in direct]
    getters = tuple(attrgetter(".".join(p.path)) for p in direct)
    return getters, _join(others) if others else None


class FiniteDecoder:
    """A msgspec decoder whose ``decode`` also refuses a non-finite ``Decimal``, with the
    ``msgspec.ValidationError`` msgspec gives for a value of the wrong type, so that every
    caller reports it as it reports those (the field's JSON path included). ``decode`` is
    ``evtools._speedups.FiniteDecode`` where it was built, else its Python twin."""

    __slots__ = ("decode", "plain", "type")

    def __init__(self, decoder: msgspec.json.Decoder[Any],
                 parts: tuple[tuple[Callable[[Any], Any], ...], Check | None]) -> None:
        self.plain = decoder
        self.type = decoder.type
        getters, rest = parts
        self.decode: Callable[[bytes | bytearray | memoryview | str], Any] = (
            _python_decode(decoder.decode, getters, rest) if speedups is None
            else speedups.FiniteDecode(decoder.decode, getters, rest, refuse))


def _python_decode(decode: Callable[[Any], Any], getters: tuple[Callable[[Any], Any], ...],
                   rest: Check | None) -> Callable[[Any], Any]:
    def run(data: Any) -> Any:
        value = decode(data)
        try:
            if _getters_ok(getters, value) and (rest is None or rest(value)):
                return value
        except Exception:  # the walk below says what is wrong
            pass
        refuse(value)
    return run


def _getters_ok(getters: tuple[Callable[[Any], Any], ...], value: Any) -> bool:
    for get in getters:
        found = get(value)
        if found is not None and not found.is_finite():
            return False
    return True


def refuse(value: Any) -> NoReturn:
    """Raise the ``msgspec.ValidationError`` for ``value``, which failed the check."""
    found = nonfinite_path(value)
    if found is None:  # the check said no, the walk finds nothing: say so, not pass
        raise msgspec.ValidationError("Expected a finite `decimal`")
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
            children = [(getattr(item, attr), f"{path}.{name}") for attr, name in zip(
                item.__struct_fields__, item.__struct_encode_fields__, strict=True)]
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [(getattr(item, f.name), f"{path}.{f.name}")
                        for f in dataclasses.fields(item)]
        elif isinstance(item, dict):
            for key, sub in item.items():
                if type(key) is Decimal and not key.is_finite():
                    return f"`key` in `{path}`", key
                children.append((sub, f"{path}[...]"))
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
            return [_Probe((), _is_finite)]
        if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
            if info.cls in active:  # recursive: walk what is there
                return [_Probe((), _walked)]
            active.add(info.cls)
            for f in info.fields:
                if type(f.default) is Decimal and not f.default.is_finite():
                    raise UsageError(
                        f"{info.cls.__qualname__}.{f.name} defaults to {f.default!r}, and a "
                        "decoded Decimal is never NaN or infinite; give it a finite default, "
                        "or declare it `Decimal | None = None`")
            try:
                found = [_Probe((f.name, *p.path), p.leaf) for f in info.fields
                         for p in self.probes(f.type, active) or ()]
            finally:
                active.discard(info.cls)
            return found or None
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
            members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            held = [self.probes(t, active) for t in members]
            if all(p is None for p in held):
                return None
            if len(members) == 1 and held[0] is not None:  # Optional[T]: None, or a T
                if held[0] == [_Probe((), _is_finite)]:
                    return [_Probe((), _is_finite_or_none)]
                inner = _join(held[0])
                return [_Probe((), lambda v: v is None or inner(v))]
            return [_Probe((), _walked)]  # which member was decoded: let the value say
        if isinstance(info, msgspec.inspect.TypedDictType | msgspec.inspect.NamedTupleType):
            if all(self.probes(f.type, active) is None for f in info.fields):
                return None
            return [_Probe((), _walked)]
        return None  # scalars, custom types (DecimalText checks itself), Any, Raw


def _walked(value: Any) -> bool:
    return nonfinite_path(value) is None


def _join(probes: list[_Probe]) -> Check:
    """One function running every probe: the paths read by one ``attrgetter``."""
    if len(probes) == 1:
        (probe,) = probes
        if not probe.path:
            return probe.leaf
        get = attrgetter(".".join(probe.path))
        leaf = probe.leaf
        if leaf is _is_finite:
            return lambda v: get(v).is_finite()
        return lambda v: leaf(get(v))
    own = [p.leaf for p in probes if not p.path]
    nested = [p for p in probes if p.path]
    gets = attrgetter(*(".".join(p.path) for p in nested)) if len(nested) > 1 else None
    leaves = tuple(p.leaf for p in nested)
    single = _join(nested) if len(nested) == 1 else None

    def check(v: Any) -> bool:
        if not all(leaf(v) for leaf in own):
            return False
        if single is not None:
            return single(v)
        return gets is None or all(map(_call, leaves, gets(v)))
    return check


def _call(fn: Check, value: Any) -> bool:
    return fn(value)
