"""The aggregate base: handlers per typed event class, declared invariants, a frozen result.

A user subclasses :class:`Aggregate` in a few lines::

    class Cart(Aggregate):
        id_field = "cart_id"                  # event field naming the aggregate
        cart_id: Int64 | None = None          # state: annotated attributes with defaults
        items: dict[int, int] = msgspec.field(default_factory=dict)

        @handles(CartOpened)
        def _opened(self, e: CartOpened) -> None:
            self.cart_id = e.cart_id

        @handles(ItemAdded)
        def _added(self, e: ItemAdded) -> None:
            self.items[e.sku] = self.items.get(e.sku, 0) + e.quantity

        @invariant(after=(ItemAdded,))
        def positive(self) -> bool | str:
            return all(q > 0 for q in self.items.values()) or "a quantity is not positive"

The **state** is the annotated, public class attributes (not ``ClassVar``, not starting with
``_``); each needs a default (mutable literals such as ``{}`` are copied per instance, or
use ``msgspec.field(default_factory=...)``). The annotations are the state schema: they
drive :meth:`Aggregate.to_state` (plain JSON-model values, exact: ``Decimal`` stays
``Decimal``), :meth:`Aggregate.state_bytes` / :meth:`Aggregate.state_hash` (canonical JSON:
fields in declaration order, maps in insertion order, which a handler may depend on and a
snapshot restores, set members in order; for snapshots and diffs) and
:meth:`Aggregate.from_state` (strict decode). Handlers set state fields only: a public
attribute that no field declares (a typo, ``self.itmes = ...``) is refused when the
aggregate is frozen or snapshotted, as it would be left out of the state; attributes
starting with ``_`` are not state. ``id_field`` must name a state field (or an attribute
of the class).

**Handlers** (``@handles(EventClass, ...)``): one method per typed event class; dispatch is
a dict lookup on the exact class. **Invariants** (``@invariant`` or
``@invariant(after=(EventClass, ...))``) are methods checked after applying an event (all
events, or only the listed classes): returning ``True``/``None`` means it holds; ``False``
or a string (the message) means it is violated; raising ``AssertionError``/``ValueError``
(or any exception) counts as violated with the exception's text. An invariant with a
parameter besides ``self`` receives the event just applied, to check incrementally (only
what that event touched) instead of scanning the whole state after every event.

**Freezing** (:meth:`Aggregate.freeze`, done by :func:`evtools.rehydration.rehydrate`) turns
the instance read-only: its class is swapped for a frozen subclass whose ``__setattr__``
raises :class:`~evtools.errors.FrozenAggregateError`, and dict/list/set attributes are
replaced by read-only versions that raise the same error (:class:`FrozenDict`,
:class:`FrozenList`, :class:`FrozenSet`). Mutable phases pay nothing for this (no
``__setattr__`` override while events are applied). :meth:`Aggregate.thaw` gives a mutable
copy; ``copy.copy``, ``copy.deepcopy`` and ``pickle`` give a frozen one.

**Value objects** in the state (a field, or inside a dict, list, tuple or set of the state)
must be immutable: a ``msgspec.Struct`` must be declared ``frozen=True`` (as the value
objects of :mod:`evtools.orders` are), a dataclass ``@dataclass(frozen=True)``, and bytes
held as ``bytes``, not ``bytearray``; :meth:`Aggregate.freeze` refuses anything else with a
:class:`~evtools.errors.UsageError` naming the field. Freezing does not look inside a value
object, so give its fields immutable types too (tuples, frozensets).

**Snapshots** store :meth:`Aggregate.snapshot_state_bytes`: the state bytes, checked to
decode back to the same state (a value that does not fit its annotation is a
:class:`~evtools.errors.SchemaError` then, not a snapshot that cannot be restored later).
Decoding a state (:meth:`Aggregate.from_state`, :meth:`Aggregate.from_state_bytes`)
requires every field, as the aggregate writes them all; the upcasters of an older state
version must produce every field too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from operator import attrgetter
from typing import Any, ClassVar, NoReturn, Self, TypeVar

import msgspec

from ._diff import leaf_pairs, plain_children
from ._json import escape_pointer_token, msgspec_path_to_pointer, strip_msgspec_path
from .errors import FrozenAggregateError, SchemaError, UsageError
from .scalars import Timestamp, dec_hook, enc_hook

__all__ = [
    "Aggregate",
    "FrozenDict",
    "FrozenList",
    "FrozenSet",
    "handles",
    "invariant",
]

F = TypeVar("F", bound=Callable[..., Any])

_HANDLES_ATTR = "__evtools_handles__"
_INVARIANT_ATTR = "__evtools_invariant__"

_FIELD_TYPE = type(msgspec.field())
# fields in declaration order, maps in insertion order (a handler may depend on it, so a
# snapshot keeps it), set members put in order by _plain_state
_canonical = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="string")


def handles(*event_classes: type) -> Callable[[F], F]:
    """Mark a method as the handler of ``event_classes`` (exact classes, no subclasses)."""
    if not event_classes or not all(isinstance(c, type) for c in event_classes):
        raise UsageError("@handles takes one or more event classes, e.g. @handles(ItemAdded)")

    def decorator(fn: F) -> F:
        setattr(fn, _HANDLES_ATTR, event_classes)
        return fn

    return decorator


class _InvariantSpec:
    __slots__ = ("after", "name", "takes_event")

    def __init__(self, name: str, after: tuple[type, ...] | None, takes_event: bool) -> None:
        self.name = name
        self.after = after
        self.takes_event = takes_event


def _takes_event(fn: Callable[..., Any]) -> bool:
    """Whether an invariant method has a parameter besides ``self`` (the event)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional for p in params)


@typing.overload
def invariant(fn: F, /) -> F: ...


@typing.overload
def invariant(*, after: Iterable[type] | type | None = None) -> Callable[[F], F]: ...


def invariant(fn: Any = None, /, *, after: Iterable[type] | type | None = None) -> Any:
    """Declare an invariant method, checked after each applied event (or only after the
    event classes in ``after``: one class or several). Use as ``@invariant`` or
    ``@invariant(after=(A, B))``."""
    classes = None if after is None else (after,) if isinstance(after, type) else tuple(after)
    if classes is not None and not all(isinstance(c, type) for c in classes):
        raise UsageError(f"invariant(after=...) takes event classes, not "
                         f"{', '.join(repr(c) for c in classes if not isinstance(c, type))}")

    def decorator(f: F) -> F:
        setattr(f, _INVARIANT_ATTR, _InvariantSpec(f.__name__, classes, _takes_event(f)))
        return f

    if fn is not None:
        return decorator(fn)
    return decorator


# -- read-only containers --------------------------------------------------------------------

def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise FrozenAggregateError(
        f"this {self._kind} belongs to a frozen aggregate and cannot be changed; call "
        ".thaw() on the aggregate for a mutable copy")


class FrozenDict(dict[Any, Any]):
    """A dict of a frozen aggregate: reads work, every mutation raises
    :class:`~evtools.errors.FrozenAggregateError`. Copies and pickles stay frozen."""

    __slots__ = ()
    _kind: ClassVar[str] = "dict"
    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if self:  # __init__ again would refill it
            _refuse(self)
        super().__init__(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_frozen_dict, (dict(self),))


class FrozenList(list[Any]):
    """A list of a frozen aggregate: reads work, every mutation raises
    :class:`~evtools.errors.FrozenAggregateError`. Copies and pickles stay frozen."""

    __slots__ = ()
    _kind: ClassVar[str] = "list"
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __init__(self, *args: Any) -> None:
        if self:  # __init__ again would refill it
            _refuse(self)
        super().__init__(*args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_frozen_list, (list(self),))


def _frozen_dict(items: Mapping[Any, Any]) -> FrozenDict:
    """A :class:`FrozenDict` of ``items``, filled in C (freezing makes one per dict)."""
    frozen = dict.__new__(FrozenDict)
    dict.update(frozen, items)
    return frozen


def _frozen_list(items: Iterable[Any]) -> FrozenList:
    """A :class:`FrozenList` of ``items``, filled in C (freezing makes one per list)."""
    frozen = list.__new__(FrozenList)
    list.extend(frozen, items)
    return frozen


class FrozenSet(frozenset[Any]):
    """A set of a frozen aggregate: a ``frozenset`` (hashable, equal to a set with the same
    members) whose set mutations raise :class:`~evtools.errors.FrozenAggregateError`
    instead of a bare ``AttributeError``. Copies and pickles stay frozen."""

    __slots__ = ()
    _kind: ClassVar[str] = "set"
    add = discard = remove = pop = clear = update = _refuse
    difference_update = intersection_update = symmetric_difference_update = _refuse
    __ior__ = __iand__ = __isub__ = __ixor__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenSet, (list(self),))


_MUTABLE = (dict, list, set)
_CONTAINERS = (dict, list, set, tuple)  # what freezing looks inside
_FROZEN = (FrozenDict, FrozenList, FrozenSet)
#: types whose values freezing leaves as they are (exact types: subclasses are looked at);
#: each class's plan adds the types it meets that need nothing (value objects, enums, ...)
_SETTLED = frozenset({type(None), bool, int, float, str, bytes, Decimal, Timestamp,
                      frozenset, FrozenDict, FrozenList, FrozenSet})


class _MutableValueObject(Exception):
    """A value freezing cannot make read-only (a ``msgspec.Struct`` or dataclass that is
    not frozen, a ``bytearray``), met while freezing (freeze says where and what to do)."""

    def __init__(self, kind: type) -> None:
        super().__init__(kind.__qualname__)
        self.kind = kind


#: mutable values freezing cannot wrap, and what to hold instead
_MUTABLE_SCALARS = {bytearray: "bytes", memoryview: "bytes"}


def _needs_freezing(kind: type, settled: set[type]) -> bool:
    """Whether values of ``kind`` (not in ``settled``) are containers to make read-only;
    ``kind`` joins ``settled`` when its values need nothing. Raises
    :class:`_MutableValueObject` for a value that would stay mutable: a Struct or a
    dataclass that is not frozen, a ``bytearray`` or ``memoryview``."""
    if issubclass(kind, _MUTABLE) or issubclass(kind, tuple):
        return True  # a tuple is looked inside: it may hold lists, dicts or sets
    if issubclass(kind, msgspec.Struct):
        if not kind.__struct_config__.frozen:
            raise _MutableValueObject(kind)
    elif dataclasses.is_dataclass(kind):
        if not kind.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise _MutableValueObject(kind)
    elif issubclass(kind, tuple(_MUTABLE_SCALARS)):
        raise _MutableValueObject(kind)
    settled.add(kind)
    return False


def _deep_freeze(value: Any, settled: set[type]) -> Any:
    """``value`` (a dict, list or set) made read-only, the containers in it too; its other
    items are looked at once per type, not once per item."""
    if isinstance(value, _FROZEN):
        return value
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:  # a set: its members are hashable, so no list, dict or set; but a value object
        # hashed by identity (a Struct with eq=False) may be mutable, or a tuple hold one
        if not settled.issuperset(map(type, value)):
            for kind in set(map(type, value)).difference(settled):
                if _needs_freezing(kind, settled):  # tuples: their members looked at
                    for member in value:
                        if type(member) is kind:
                            _deep_freeze(member, settled)
        return FrozenSet(value)
    nested = False
    if not settled.issuperset(map(type, items)):
        for kind in set(map(type, items)).difference(settled):
            nested = _needs_freezing(kind, settled) or nested
    if isinstance(value, dict):
        if not nested:
            return _frozen_dict(value)  # one C copy
        return _frozen_dict({k: _deep_freeze(v, settled) if isinstance(v, _CONTAINERS)
                           else v for k, v in value.items()})
    if isinstance(value, tuple):  # stays a tuple (of its own class), its items frozen
        if not nested:
            return value
        frozen = [_deep_freeze(v, settled) if isinstance(v, _CONTAINERS) else v
                  for v in value]
        return type(value)(frozen) if type(value) is tuple else _remake(value, frozen)
    if not nested:
        return _frozen_list(value)
    return _frozen_list(_deep_freeze(v, settled) if isinstance(v, _CONTAINERS) else v
                      for v in value)


def _remake(value: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    """A tuple of ``value``'s class (a named tuple...) holding ``items``."""
    make = getattr(type(value), "_make", None)
    return make(items) if callable(make) else type(value)(items)


def _thawed(value: Any) -> Any:
    """``value`` with the read-only containers of a frozen aggregate turned back into
    mutable ones of the same kind (dict, list, set), at every depth; other values, immutable,
    are shared."""
    kind = type(value)
    if kind is FrozenDict:
        return {k: _thawed(v) for k, v in value.items()}
    if kind is FrozenList:
        return [_thawed(v) for v in value]
    if kind is FrozenSet:
        return set(value)  # members are hashable: nothing to thaw in them
    if isinstance(value, tuple) and not isinstance(value, msgspec.Struct):
        items = [_thawed(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if kind is tuple else _remake(value, items)
    return value


def _find(test: Callable[[Any], bool], value: Any, pointer: str) -> tuple[str, Any] | None:
    """(JSON Pointer, value) of the first value in ``value`` that passes ``test`` (slow:
    error paths)."""
    if test(value):
        return pointer, value
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    for key, item in items:
        hit = _find(test, item, f"{pointer}/{escape_pointer_token(str(key))}")
        if hit is not None:
            return hit
    return None


# -- the base --------------------------------------------------------------------------------

class _Field:
    __slots__ = ("default", "factory", "name")

    def __init__(self, name: str, default: Any, factory: Callable[[], Any] | None) -> None:
        self.name = name
        self.default = default
        self.factory = factory

    def initial(self) -> Any:
        if self.factory is not None:
            return self.factory()
        return self.default


class _Plan:
    """What construction and freezing do with the fields of one class, worked out once."""

    __slots__ = ("attributes", "containers", "defaults", "factories", "fields", "names",
                 "plain", "scalars", "settled")

    def __init__(self, cls: type[Aggregate]) -> None:
        fields = cls._fields()
        names = tuple(f.name for f in fields)
        self.names = names
        self.fields = frozenset(names)
        self.defaults = {f.name: f.default for f in fields if f.factory is None}
        self.factories = tuple((f.name, f.factory) for f in fields if f.factory is not None)
        # the fields that start as a container (a factory), and the others: as long as the
        # others hold values of settled types, freezing looks at the containers only
        self.containers = tuple(name for name, _ in self.factories)
        self.scalars = tuple(name for name in names if name in self.defaults)
        # no __setattr__ of the user's: construction may fill __dict__ directly
        self.plain = cls.__setattr__ is object.__setattr__
        # the types freezing leaves as they are, grown as freeze meets more of them
        self.settled: set[type] = set(_SETTLED)
        # what an instance's __dict__ holds: the fields and the bookkeeping
        self.attributes = len(names) + len(_BOOKKEEPING)
        id_field = cls.id_field
        if id_field and id_field not in self.fields and not hasattr(cls, id_field):
            raise UsageError(
                f"{cls.__qualname__}.id_field is {id_field!r}, which is not one of its state "
                f"fields ({', '.join(names) or 'none'}): id_field names the state field that "
                "holds the aggregate's id and the event field that carries it")


_BOOKKEEPING = {"_version": -1, "_stream": None, "_last_event_id": "", "_last_time": None}


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is ClassVar or annotation is ClassVar


class Aggregate:
    """Base class of aggregates rebuilt by :func:`evtools.rehydration.rehydrate`.

    Class attributes a subclass may set:

    ``aggregate_type``
        Name used in snapshots and reports (default: the class name).
    ``id_field``
        The state attribute holding the aggregate's id *and* the event field that carries
        it; events whose field differs from the aggregate's are reported as coming from
        another aggregate. ``None`` (default) disables the check.
    ``time_field``
        The event field holding the event's :class:`~evtools.scalars.Timestamp`, for the
        causality check (default ``"occurred_at"``; events without it fall back to the
        store's ``recorded_at``).
    ``stream_prefix``
        Streams of this aggregate start with it (``rehydrate_store`` picks them).
    ``state_version``
        Schema version of the state, written into snapshots (default 1).
    ``ignore_unhandled``
        ``True``: events without a handler are skipped silently; ``False`` (default): they
        are reported.

    A value object in the state (a field, or inside a dict, list, tuple or set of the
    state) that is a ``msgspec.Struct`` must be declared ``frozen=True``, a dataclass
    ``@dataclass(frozen=True)``, and bytes must be ``bytes``: :meth:`freeze` refuses
    anything else (:class:`~evtools.errors.UsageError` naming the field), since it would
    stay mutable in a frozen aggregate. Freezing does not look inside value objects.
    """

    aggregate_type: ClassVar[str] = "Aggregate"
    id_field: ClassVar[str | None] = None
    time_field: ClassVar[str | None] = "occurred_at"
    stream_prefix: ClassVar[str | None] = None
    state_version: ClassVar[int] = 1
    ignore_unhandled: ClassVar[bool] = False

    # filled by __init_subclass__
    _evtools_handlers: ClassVar[dict[type, str]] = {}
    _evtools_invariants: ClassVar[tuple[_InvariantSpec, ...]] = ()
    _evtools_frozen: ClassVar[bool] = False
    _evtools_frozen_cls: ClassVar[type[Aggregate] | None] = None
    _evtools_base_cls: ClassVar[type[Aggregate] | None] = None
    _evtools_tables_cache: ClassVar[tuple[Any, ...] | None] = None
    _evtools_methods: ClassVar[Callable[[type], Any]] = staticmethod(lambda cls: ())

    # bookkeeping set by the rehydrator (not state)
    _version: int
    _stream: str | None
    _last_event_id: str
    _last_time: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_evtools_frozen", False):
            return  # the frozen variant made by _frozen_class
        if "aggregate_type" not in cls.__dict__:
            cls.aggregate_type = cls.__name__
        handlers: dict[type, str] = {}
        invariants: dict[str, _InvariantSpec] = {}
        for klass in reversed(cls.__mro__):
            own: dict[type, tuple[str, Any]] = {}  # the handlers this class body declares
            for name, value in vars(klass).items():
                func = value.__func__ if isinstance(value, staticmethod | classmethod) \
                    else value
                for event_cls in getattr(func, _HANDLES_ATTR, ()):
                    taken = own.get(event_cls)
                    if taken is not None and taken[1] is not func:
                        # one of them would be dropped silently (a subclass may override)
                        raise UsageError(
                            f"{klass.__qualname__} has two handlers for "
                            f"{event_cls.__qualname__}: {taken[0]} and {name} (one event "
                            "class has one handler; merge them into one method)")
                    own[event_cls] = (name, func)
                    handlers[event_cls] = name
                spec = getattr(func, _INVARIANT_ATTR, None)
                if isinstance(spec, _InvariantSpec):  # by the name it has here, as handlers
                    invariants[name] = spec if spec.name == name \
                        else _InvariantSpec(name, spec.after, spec.takes_event)
        cls._evtools_handlers = handlers
        cls._evtools_invariants = tuple(invariants.values())
        # the handlers and invariants as the class holds them now, as a tuple, in one C call
        names = list(dict.fromkeys([*handlers.values(), *invariants]))
        cls._evtools_methods = staticmethod(
            attrgetter(*names) if len(names) > 1
            else lambda klass: tuple(getattr(klass, n) for n in names))
        cls._evtools_frozen_cls = None
        cls._evtools_base_cls = cls
        for attr in ("_evtools_fields_cache", "_evtools_plan_cache",
                     "_evtools_state_type_cache", "_evtools_state_decoder_cache",
                     "_evtools_tables_cache"):
            setattr(cls, attr, None)

    def __init__(self) -> None:
        plan = type(self)._plan()
        if plan.plain:
            state = self.__dict__
            state.update(plan.defaults)
            for name, factory in plan.factories:
                state[name] = factory()
            state.update(_BOOKKEEPING)
            return
        for f in type(self)._fields():
            setattr(self, f.name, f.default if f.factory is None else f.factory())
        self._version = -1
        self._stream = None
        self._last_event_id = ""
        self._last_time = None

    # -- schema -----------------------------------------------------------------------------

    @classmethod
    def _fields(cls) -> tuple[_Field, ...]:
        cached: tuple[_Field, ...] | None = cls.__dict__.get("_evtools_fields_cache")
        if cached is not None:
            return cached
        base = cls._base()
        if base is not cls:
            return base._fields()
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            if klass is Aggregate or not issubclass(klass, Aggregate):
                continue
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                if name.startswith("_") or _is_classvar(annotation):
                    continue
                names[name] = None
        fields = []
        for name in names:
            if not hasattr(cls, name):
                raise UsageError(f"{cls.__qualname__}.{name}: state fields need a default "
                                 "(the state of an aggregate before its first event)")
            default = getattr(cls, name)
            factory: Callable[[], Any] | None = None
            if isinstance(default, _FIELD_TYPE):
                if default.default_factory is not msgspec.NODEFAULT:
                    factory = default.default_factory
                    default = None
                else:
                    default = default.default
            elif isinstance(default, dict | list | set):
                factory = _copier(default)
            fields.append(_Field(name, default, factory))
        result = tuple(fields)
        cls._evtools_fields_cache = result  # type: ignore[attr-defined]
        return result

    @classmethod
    def _plan(cls) -> _Plan:
        cached: _Plan | None = cls.__dict__.get("_evtools_plan_cache")
        if cached is None:
            cached = _Plan(cls)
            cls._evtools_plan_cache = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def _base(cls) -> type[Aggregate]:
        return cls._evtools_base_cls or cls

    @classmethod
    def state_fields(cls) -> tuple[str, ...]:
        """Names of the state attributes, in declaration order."""
        return tuple(f.name for f in cls._fields())

    @classmethod
    def state_type(cls) -> type[msgspec.Struct]:
        """A msgspec Struct mirroring the state (built from the annotations, strict): every
        field is required, as a state the aggregate writes holds them all, and unknown
        fields are refused."""
        base = cls._base()
        cached: type[msgspec.Struct] | None = base.__dict__.get("_evtools_state_type_cache")
        if cached is not None:
            return cached
        try:
            hints = typing.get_type_hints(base, include_extras=True)
        except Exception as e:  # NameError etc. from unresolvable annotations
            raise UsageError(f"cannot resolve the state annotations of "
                             f"{base.__qualname__}: {e}") from e
        spec = [(f.name, hints[f.name]) for f in base._fields()]
        struct = msgspec.defstruct(base.state_type_name(), spec, forbid_unknown_fields=True,
                                   kw_only=True, module=base.__module__)
        base._evtools_state_type_cache = struct  # type: ignore[attr-defined]
        return struct

    @classmethod
    def state_type_name(cls) -> str:
        """The name the state schema has in a Registry (snapshot upcasting)."""
        return f"{cls._base().aggregate_type}State"

    @classmethod
    def register_state(cls, registry: Any) -> None:
        """Register :meth:`state_type` in ``registry`` under :meth:`state_type_name` at
        :attr:`state_version`, so that snapshots of older state versions are upcast by the
        registry's upcasters for that name."""
        registry.register(cls.state_type(), name=cls.state_type_name(),
                          version=cls.state_version)

    @classmethod
    def _state_decoder(cls) -> msgspec.json.Decoder[Any]:
        base = cls._base()
        cached = base.__dict__.get("_evtools_state_decoder_cache")
        if cached is None:
            cached = msgspec.json.Decoder(base.state_type(), dec_hook=dec_hook)
            base._evtools_state_decoder_cache = cached  # type: ignore[attr-defined]
        return cached

    # -- identity and bookkeeping -----------------------------------------------------------

    @property
    def aggregate_id(self) -> Any:
        """The value of the :attr:`id_field` attribute (``None`` without one)."""
        return getattr(self, self.id_field) if self.id_field else None

    @property
    def version(self) -> int:
        """Version of the last event applied (-1: none)."""
        return self._version

    @property
    def stream(self) -> str | None:
        return self._stream

    @property
    def last_event_id(self) -> str:
        return self._last_event_id

    @property
    def last_event_time(self) -> Any:
        """The timestamp of the last event applied (a ``Timestamp`` or ``datetime``)."""
        return self._last_time

    @property
    def frozen(self) -> bool:
        return self._evtools_frozen

    # -- applying ---------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Apply one typed event through its handler (no checks: see ``rehydrate``)."""
        if self._evtools_frozen:
            self._refuse_change("apply an event")
        name = self._evtools_handlers.get(type(event))
        if name is None:
            raise UsageError(f"{type(self).__qualname__} has no handler for "
                             f"{type(event).__qualname__}")
        getattr(self, name)(event)

    @classmethod
    def handler_table(cls) -> dict[type, Callable[[Any, Any], Any]]:
        """``{event class: handler}``, each called as ``handler(aggregate, event)``: what
        the rehydrator dispatches on."""
        return cls._dispatch_tables()[0]

    @classmethod
    def invariant_table(cls) -> dict[type | None, tuple[BoundInvariant, ...]]:
        """Like :meth:`bound_invariants`, for the class: each check is called as
        ``check(aggregate, event)`` when it takes the event, else ``check(aggregate)``."""
        return cls._dispatch_tables()[1]

    @classmethod
    def _dispatch_tables(cls) -> tuple[dict[type, Callable[[Any, Any], Any]],
                                       dict[type | None, tuple[BoundInvariant, ...]]]:
        """Both tables, built once per class and rebuilt when a method they hold has been
        replaced since (checked with one attribute lookup per method)."""
        current = cls._evtools_methods(cls)
        cached = cls.__dict__.get("_evtools_tables_cache")
        if cached is not None and cached[0] == current:
            return cached[1], cached[2]
        handlers = {event_cls: _plain_function(cls, name)
                    for event_cls, name in cls._evtools_handlers.items()}
        checks = {spec.name: _plain_function(cls, spec.name) for spec in cls._evtools_invariants}
        invariants = {key: tuple((spec.name, checks[spec.name], spec.takes_event)
                                 for spec in cls._evtools_invariants
                                 if spec.after is None or (key is not None and key in spec.after))
                      for key in [*cls._evtools_handlers, None]}
        cls._evtools_tables_cache = (current, handlers, invariants)
        return handlers, invariants

    def bound_handlers(self) -> dict[type, Callable[[Any], Any]]:
        """``{event class: bound handler}`` for fast dispatch."""
        return {cls: getattr(self, name) for cls, name in self._evtools_handlers.items()}

    def bound_invariants(self) -> dict[type | None, tuple[BoundInvariant, ...]]:
        """``{event class: ((name, bound invariant, takes the event), ...)}``; the ``None``
        key lists the invariants checked after every event."""
        return {key: tuple((name, getattr(self, name), takes) for name, _, takes in checks)
                for key, checks in self.invariant_table().items()}

    def check_invariants(self, event: Any = None) -> list[str]:
        """Messages of the invariants that do not hold after ``event`` (those declared for
        its class), or of every invariant that needs no event when ``event`` is None."""
        out: list[str] = []
        for spec in self._evtools_invariants:
            if event is None and spec.takes_event:
                continue
            if event is not None and spec.after is not None and type(event) not in spec.after:
                continue
            message = run_invariant(spec.name, getattr(self, spec.name),
                                    event if spec.takes_event else _NO_EVENT)
            if message is not None:
                out.append(message)
        return out

    # -- freezing ---------------------------------------------------------------------------

    def freeze(self) -> Self:
        """Make this aggregate read-only (in place); returns it."""
        if self._evtools_frozen:
            return self
        plan = self._plan()
        if len(self.__dict__) != plan.attributes:
            self._refuse_undeclared("freeze")
        settled = plan.settled
        try:
            if plan.plain:  # the fields are in __dict__: look at their types in C calls
                state = self.__dict__
                get = state.get
                # usually only the fields that started as containers hold containers
                names = plan.containers \
                    if settled.issuperset(map(type, map(get, plan.scalars))) else plan.names
                if names:
                    # all or nothing: the read-only values go in once every field passed;
                    # (a loop over the names: one over state.items() allocates per item)
                    done = {}
                    for name in names:
                        value = get(name)
                        kind = type(value)
                        if kind not in settled and _needs_freezing(kind, settled):
                            done[name] = _deep_freeze(value, settled)
                    state.update(done)  # replaces values only: no resize
            else:
                done = {}
                for name in plan.names:
                    value = getattr(self, name)
                    if type(value) not in settled and _needs_freezing(type(value), settled):
                        done[name] = _deep_freeze(value, settled)
                for name, value in done.items():
                    object.__setattr__(self, name, value)
        except _MutableValueObject as e:
            raise self._mutable_value_object(e.kind) from None
        object.__setattr__(self, "__class__", _frozen_class(type(self)))
        return self

    def _refuse_undeclared(self, what: str) -> None:
        """Raise a :class:`~evtools.errors.UsageError` when a public attribute that is no
        state field was set on this aggregate (a typo in a handler: ``self.itmes = ...``):
        it would be left out of the state, its hash and its snapshots."""
        fields = self._plan().fields
        extra = [name for name in self.__dict__
                 if name not in fields and not name.startswith("_")]
        if extra:
            names = ", ".join(map(repr, extra))
            raise UsageError(
                f"cannot {what} {self._base().__qualname__}: {names} "
                f"{'was' if len(extra) == 1 else 'were'} set on it but "
                f"{'is no state field' if len(extra) == 1 else 'are no state fields'}, so "
                f"{'it' if len(extra) == 1 else 'they'} would be left out of its state, its "
                "hash and its snapshots; declare each on the class with an annotation and a "
                "default (or start the name with _ if it is not state)",
                stream=self._stream, version=self._version)

    def _mutable_value_object(self, kind: type) -> UsageError:
        names = self._plan().names
        where = next((hit[0] for hit in (_find(lambda v: type(v) is kind, getattr(self, n),
                                               "/" + n) for n in names)
                      if hit is not None), "")
        if issubclass(kind, msgspec.Struct):
            what = "a msgspec.Struct that is not frozen"
            fix = f"declare it `class {kind.__name__}(msgspec.Struct, frozen=True)`"
        elif dataclasses.is_dataclass(kind):
            what = "a dataclass that is not frozen"
            fix = f"declare {kind.__name__} with `@dataclass(frozen=True)`"
        else:
            instead = next(v for k, v in _MUTABLE_SCALARS.items() if issubclass(kind, k))
            what = "a mutable value"
            fix = f"hold {instead} instead"
        return UsageError(
            f"cannot freeze {self._base().__qualname__}: {where or 'a field'} holds a "
            f"{kind.__qualname__}, {what}, so it could still be changed; {fix}",
            path=where or None)

    def thaw(self) -> Self:
        """A mutable copy (state, version and bookkeeping copied)."""
        base: type[Self] = self._base()  # type: ignore[assignment]
        # the values themselves, containers made mutable again: a round trip through the
        # state bytes would turn what an ``Any`` field holds into JSON types (a Decimal
        # into a str, a set into a list, int keys into str keys)
        copy = base.__new__(base)
        Aggregate.__init__(copy)  # bookkeeping + defaults
        for f in base._fields():
            setattr(copy, f.name, _thawed(getattr(self, f.name)))
        copy._version = self._version
        copy._stream = self._stream
        copy._last_event_id = self._last_event_id
        copy._last_time = self._last_time
        # a handler raised midway (evtools.rehydration): the copy is no state at any
        # version either, and take_snapshot refuses it as it refuses the original
        partly = self.__dict__.get("_evtools_partly_applied")
        if partly is not None:
            copy.__dict__["_evtools_partly_applied"] = partly
        return copy

    def _refuse_change(self, what: str) -> NoReturn:
        ident = self.aggregate_id
        who = self.aggregate_type + (f" {ident}" if ident is not None else "")
        where = f" of stream {self._stream!r}" if self._stream else ""
        raise FrozenAggregateError(
            f"cannot {what}: {who}{where} was rebuilt at version {self._version} and is "
            "frozen; apply new events through a new rehydration, or call .thaw() for a "
            "mutable copy", stream=self._stream, version=self._version)

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The state as plain, exact values: ``int`` at any size, ``Decimal``, ``str`` for
        timestamps (their text), UUIDs and enum values, dicts for value objects; map keys
        as strings (as JSON has them)."""
        # set members in order where the state declares sets: equal sets, equal bytes
        values = self._values()
        try:
            return _plain_state(values, self._base()._set_fields())
        except TypeError as e:  # a value JSON cannot hold (an object, a bool map key...)
            raise self._unwritable(values, e) from e

    def _unwritable(self, values: dict[str, Any], e: TypeError) -> SchemaError:
        """The error for a state that cannot be written (error path: finds the field)."""
        pointer = ""
        for name, value in values.items():
            try:
                _to_builtins(value)
            except TypeError:
                pointer = "/" + escape_pointer_token(name)
                break
        ident = self.aggregate_id
        who = self._base().aggregate_type + (f" {ident}" if ident is not None else "")
        return SchemaError(
            f"the state of {who} cannot be written as JSON: the value at {pointer or '/'} "
            f"holds what JSON cannot hold ({e})", stream=self._stream,
            version=self._version, event_type=self.state_type_name(),
            schema_version=self.state_version, path=pointer)

    def _values(self, source: Any = None) -> dict[str, Any]:
        """The field values of this aggregate (or of ``source``, a state Struct)."""
        source = self if source is None else source
        return {f.name: getattr(source, f.name) for f in self._fields()}

    @classmethod
    def _set_fields(cls) -> frozenset[str]:
        """The fields whose declared type can hold a set (worked out once per class)."""
        known: frozenset[str] | None = cls.__dict__.get("_evtools_set_fields")
        if known is None:
            info = msgspec.inspect.type_info(cls.state_type())
            assert isinstance(info, msgspec.inspect.StructType)
            known = frozenset(f.name for f in info.fields if _holds_sets(f.type, set()))
            cls._evtools_set_fields = known  # type: ignore[attr-defined]
        return known

    def state_bytes(self) -> bytes:
        """Canonical JSON of the state: fields in declaration order, maps in the order
        their keys were added (a handler may depend on that order, so a snapshot keeps
        it), set members in order, decimals as strings. Equal bytes, the same state."""
        return _canonical.encode(self.to_state())

    def snapshot_state_bytes(self) -> bytes:
        """:meth:`state_bytes`, checked to restore as this same state: decoded with
        :meth:`state_type` and encoded again, they must give the same bytes. Raises
        :class:`~evtools.errors.SchemaError` naming the field (a JSON Pointer) when a value
        does not fit its annotation, so that a snapshot could not be restored (``12345`` in
        a ``str | None`` field) or would restore another state than the replay's (floats in
        a ``list[Decimal]``)."""
        if len(self.__dict__) != self._plan().attributes:
            self._refuse_undeclared("take a snapshot of")
        data = self.state_bytes()
        if b"null" in data:  # NaN and infinities are written as null: they restore as None
            found = _find(lambda v: type(v) is float and not math.isfinite(v),
                          self.to_state(), "")
            if found is not None:
                raise self._unsnapshotable(
                    found[0], f"{found[1]!r} is written as null, which restores as None")
        try:
            struct = self._state_decoder().decode(data)
        except msgspec.ValidationError as e:
            pointer = msgspec_path_to_pointer(str(e))
            raise self._unsnapshotable(pointer, f"it cannot be decoded: {e}") from e
        values = self._values(struct)
        if _canonical.encode(_plain_state(values, self._base()._set_fields())) == data:
            return data
        # sets the annotations do not declare (under Any): compared with members in order
        written = self._state_bytes_sets_sorted()
        again = _canonical.encode(_plain_state(values, True))
        if written == again:
            return data
        before, after = msgspec.json.decode(written), msgspec.json.decode(again)
        pointer, was, becomes = next(
            ((p, a, b) for p, a, b in leaf_pairs(before, after, plain_children)
             if type(a) is not type(b) or a != b), ("", before, after))
        raise self._unsnapshotable(
            pointer, f"it is written as {msgspec.json.encode(was).decode()} but restores as "
                     f"{msgspec.json.encode(becomes).decode()}")

    def _unsnapshotable(self, pointer: str, why: str) -> SchemaError:
        ident = self.aggregate_id
        who = self._base().aggregate_type + (f" {ident}" if ident is not None else "")
        return SchemaError(
            f"the state of {who} cannot go into a snapshot: the value at {pointer or '/'} "
            f"does not fit the field's annotation ({why}); a snapshot must restore the state "
            "that replaying the events gives", stream=self._stream, version=self._version,
            event_type=self.state_type_name(), schema_version=self.state_version,
            path=pointer)

    def _state_bytes_sets_sorted(self) -> bytes:
        """:meth:`state_bytes` with the members of every set in order, declared or not
        (slow: sorts every map too)."""
        return _canonical.encode(_plain_state(self._values(), True))

    def state_hash(self) -> str:
        """``sha256:<hex>`` of :meth:`state_bytes`: equal states, equal hashes."""
        return state_hash_of(self.state_bytes())

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | msgspec.Struct) -> Self:
        """A mutable aggregate holding ``state`` (a mapping as :meth:`to_state` gives, or an
        instance of :meth:`state_type`). Raises :class:`~evtools.errors.SchemaError` when
        the state does not fit the schema."""
        struct_type = cls.state_type()
        if not isinstance(state, struct_type):
            try:
                state = msgspec.convert(state, struct_type, dec_hook=dec_hook, str_keys=True)
            except msgspec.ValidationError as e:
                raise cls._unfit_state(e) from e
        return cls._from_struct(state)

    @classmethod
    def from_state_bytes(cls, data: bytes) -> Self:
        """Like :meth:`from_state`, from :meth:`state_bytes` (JSON)."""
        try:
            struct = cls._state_decoder().decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise cls._unfit_state(e) from e
        return cls._from_struct(struct)

    @classmethod
    def _unfit_state(cls, e: msgspec.MsgspecError) -> SchemaError:
        located = isinstance(e, msgspec.ValidationError)  # where: said by the pointer
        pointer = msgspec_path_to_pointer(str(e)) if located else None
        why = strip_msgspec_path(str(e)) if located else str(e)
        return SchemaError(f"state does not fit {cls._base().__qualname__}: {why}",
                           event_type=cls.state_type_name(), schema_version=cls.state_version,
                           path=pointer)

    @classmethod
    def _from_struct(cls, struct: Any) -> Self:
        base: type[Self] = cls._base()  # type: ignore[assignment]
        agg = base.__new__(base)
        Aggregate.__init__(agg)  # bookkeeping + defaults
        for f in base._fields():
            setattr(agg, f.name, getattr(struct, f.name))
        return agg

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Aggregate):
            return NotImplemented
        if self._base() is not other._base():
            return False
        if self.state_bytes() == other.state_bytes():
            return True
        # sets the annotations do not declare (under Any) may list members in another order
        return self._state_bytes_sets_sorted() == other._state_bytes_sets_sorted()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        flag = " frozen" if self._evtools_frozen else ""
        ident = self.aggregate_id
        return (f"<{self._base().__qualname__}{flag} id={ident!r} version={self._version}>")


def _holds_sets(info: msgspec.inspect.Type, seen: set[type]) -> bool:
    if isinstance(info, msgspec.inspect.SetType | msgspec.inspect.FrozenSetType
                  | msgspec.inspect.AnyType):
        return True  # (Any may hold a set)
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        if info.cls in seen:
            return False
        seen.add(info.cls)
        return any(_holds_sets(f.type, seen) for f in info.fields)
    inner = [getattr(info, name) for name in ("type", "item_type", "key_type", "value_type")
             if isinstance(getattr(info, name, None), msgspec.inspect.Type)]
    inner += list(getattr(info, "types", ()) or getattr(info, "item_types", ()))
    return any(_holds_sets(t, seen) for t in inner)


def _plain_state(values: dict[str, Any], sort_sets: bool | frozenset[str]
                 ) -> dict[str, Any]:
    """The plain values of a state, fields in declaration order, maps in insertion order;
    the members of the sets in the fields ``sort_sets`` names (``True``: every field) in
    order: by ``<`` where they can be ordered, else (enums, value objects, mixed types) by
    their canonical JSON, so that the order never depends on hashing
    (``PYTHONHASHSEED``)."""
    if not sort_sets:
        plain: dict[str, Any] = _to_builtins(values)
        return plain
    return {name: _to_builtins(_sets_in_order(value))
            if sort_sets is True or name in sort_sets else _to_builtins(value)
            for name, value in values.items()}


def _sets_in_order(value: Any) -> Any:
    """``value`` with every set in it (in dicts, lists, tuples, sets and value objects)
    replaced by a list of its members in a deterministic order; dicts keep their order."""
    if isinstance(value, set | frozenset):
        members = [_sets_in_order(m) for m in value]
        try:
            return sorted(members)
        except TypeError:
            return sorted(members, key=lambda m: _canonical.encode(_to_builtins(m)))
    if isinstance(value, dict):
        return {k: _sets_in_order(v) for k, v in value.items()}
    if isinstance(value, list | tuple) and not isinstance(value, msgspec.Struct):
        return [_sets_in_order(v) for v in value]
    if isinstance(value, msgspec.Struct):
        changed = {}
        for name in value.__struct_fields__:
            item = getattr(value, name, msgspec.UNSET)
            if isinstance(item, dict | list | tuple | set | frozenset | msgspec.Struct):
                changed[name] = _sets_in_order(item)
        # written, not validated: to_builtins writes the lists where the sets were
        return msgspec.structs.replace(value, **changed) if changed else value
    return value


def _to_builtins(value: Any, order: Any = None) -> Any:
    """The plain, exact values of a state (what :meth:`Aggregate.to_state` gives)."""
    return msgspec.to_builtins(value, builtin_types=(Decimal,), str_keys=True,
                               enc_hook=enc_hook, order=order)


def _copier(value: dict[Any, Any] | list[Any] | set[Any]) -> Callable[[], Any]:
    def copy() -> Any:
        return value.copy()

    return copy


def _frozen_setattr(self: Aggregate, name: str, value: Any) -> None:
    self._refuse_change(f"set {name!r}")


def _frozen_delattr(self: Aggregate, name: str) -> None:
    self._refuse_change(f"delete {name!r}")


def _frozen_reduce(self: Aggregate) -> tuple[Any, ...]:
    # the frozen class has the qualname of the class it derives from, so pickle cannot
    # name it: rebuild from that class (the read-only containers pickle as themselves)
    return (_rebuild_frozen, (self._base(), self.__dict__.copy()))


def _rebuild_frozen(cls: type[Aggregate], attributes: dict[str, Any]) -> Aggregate:
    """A frozen ``cls`` holding ``attributes`` (what unpickling and copying call)."""
    agg = cls.__new__(cls)
    agg.__dict__.update(attributes)
    return agg.freeze()


def _frozen_class(cls: type[Aggregate]) -> type[Aggregate]:
    cached = cls.__dict__.get("_evtools_frozen_cls")
    if cached is not None:
        return cached
    frozen = type(cls.__name__, (cls,), {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__setattr__": _frozen_setattr,
        "__delattr__": _frozen_delattr,
        "__reduce__": _frozen_reduce,
        "_evtools_frozen": True,
        "_evtools_base_cls": cls,
    })
    cls._evtools_frozen_cls = frozen
    return frozen


_NO_EVENT: Any = object()

#: (name, bound method, whether it takes the event just applied)
BoundInvariant = tuple[str, Callable[..., Any], bool]


def _plain_function(cls: type, name: str) -> Callable[..., Any]:
    """``cls.name`` as a function taking the instance first."""
    attr = inspect.getattr_static(cls, name)
    if isinstance(attr, types.FunctionType):
        return attr
    return lambda self, *args: getattr(self, name)(*args)  # static/class methods, wrappers


def run_invariant(name: str, check: Callable[..., Any], event: Any = _NO_EVENT) -> str | None:
    """Run one invariant (passing ``event`` when given); ``None`` when it holds, else its
    message."""
    try:
        outcome = check() if event is _NO_EVENT else check(event)
    except Exception as e:  # an invariant that raises is violated; say how
        lines = str(e).splitlines()
        return f"{name}: {lines[0] if lines else type(e).__name__}"
    if outcome is None or outcome is True:
        return None
    if outcome is False:
        return f"{name} does not hold"
    if isinstance(outcome, str):
        return f"{name}: {outcome}"
    return None if outcome else f"{name} does not hold"


def state_hash_of(data: bytes) -> str:
    """``sha256:<hex>`` of state bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
