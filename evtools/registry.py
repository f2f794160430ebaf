"""The registry: (event type, schema version) -> typed class, upcasters, strict decoding.

A :class:`Registry` is an object you build and pass around (there is no global one)::

    registry = Registry()

    @registry.register("OrderPlaced", version=2)
    class OrderPlaced(msgspec.Struct, forbid_unknown_fields=True):
        order_id: Int64
        total: Decimal
        placed_at: Timestamp

    @registry.upcaster("OrderPlaced", from_version=1)
    def add_currency(payload: dict) -> dict:
        return {**payload, "currency": "EUR"}

    event = registry.decode(raw_event)      # an OrderPlaced, or an InputError

Decoding is strict and exact: integers stay ``int`` at any size (``Int64`` fields reject
values outside int64), ``Decimal`` fields are read from the number's own text, timestamps
keep offset and nanoseconds (:class:`~evtools.scalars.Timestamp`), UUIDs, enums (by value),
nested structs, lists and maps decode to their declared types. What msgspec would let
through is checked here: duplicate keys, unknown fields (per-registry policy: ``"reject"``
or ``"keep"`` and report), invalid UTF-8, absurd nesting and oversized payloads. Every
error is an :class:`~evtools.errors.InputError` that names stream, version, event type and
JSON path, with the parser's error as ``__cause__``.

Upcasters lift an old payload one version at a time (v1 -> v2 -> v3) before the typed
decode. They receive the payload decoded losslessly (ints exact, non-integer numbers as
``Decimal``) and return a new dict, which is re-encoded with numbers written from their
exact value. A typed upcaster (``add_upcaster(..., typed=True)``) instead receives the old
payload decoded into the class registered for its version and returns an instance of the
next version's class, which saves the second parse. Upcasters should be pure functions:
one that fails is run again on the path that reports the error with its context.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar, overload

import msgspec

from ._decimals import Check, FiniteDecoder, check_of, finite_parts, refuse
from ._json import (
    compact,
    escape_pointer_token,
    fast_duplicate_key,
    find_duplicate_key,
    has_duplicate_key,
    is_invalid_utf8,
    lossless,
    msgspec_path_to_pointer,
    strip_msgspec_path,
    too_deep,
    unescape_pointer_token,
)
from ._keys import KeyCount, key_count
from ._types import reached
from .errors import (
    Context,
    DecodeError,
    InputError,
    SchemaError,
    UnknownEventType,
    UnknownSchemaVersion,
    UpcastError,
    UsageError,
)
from .events import JSON_CONTENT_TYPE, RawEvent
from .scalars import dec_hook, enc_hook

__all__ = ["Decoded", "Registry", "Upcaster"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[[Any], Any])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UnknownFieldPolicy = Literal["reject", "keep"]
DuplicateKeyPolicy = Literal["reject", "last-wins"]
#: How the C fold lifts an older version: (the old class's decode, or None for dict steps
#: from the lossless payload; the upcasters; the class each typed step returns)
FastUpcast = tuple[Callable[[bytes], Any] | None, tuple[Callable[[Any], Any], ...],
                   tuple[type, ...]]
#: (latest version, its decode, {older version: how it is lifted}): see
#: :meth:`Registry._fast_decoders`
FastEntry = tuple[int, Callable[[bytes], Any], dict[int, FastUpcast]]

_number_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=enc_hook)

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded event with what the ``keep`` policy found besides its declared fields."""

    event: Any
    unknown: dict[str, Any]  # JSON Pointer -> the value that had no field


@dataclasses.dataclass(slots=True)
class _Entry:
    cls: type
    name: str
    version: int
    decoder: msgspec.json.Decoder[Any] | FiniteDecoder
    shape: _Shape
    check_unknown: bool  # False when msgspec already rejects unknown fields everywhere
    key_count: KeyCount | None  # keys the decoded value held (None: unknown)
    # a map whose keys are not plain strings (int, UUID, Decimal...): two keys written
    # differently ("0" and "-0") may decode to one, which no scan of the text sees
    collapsible: bool = False
    # True when a value of cls holds no non-finite Decimal (None: cls holds no Decimal); the
    # decoder runs it on what it decodes, the upcast paths on what a typed upcaster returns
    finite: Check | None = None

    def surely_unique(self, event: Any, data: bytes) -> bool:
        """True when ``data``, decoded into ``event``, provably repeats no key (fast);
        False when that takes the exact check (:func:`has_duplicate_key`, then
        :func:`_merged_key` where :attr:`collapsible`)."""
        found = fast_duplicate_key(data)  # the C scan, where it was built
        if found is not None:
            return not found and not self.collapsible
        return self.counted_unique(event, data)

    def counted_unique(self, event: Any, data: bytes) -> bool:
        """:meth:`surely_unique` in Python: as many keys written as ``event`` holds (see
        :mod:`evtools._keys`)."""
        counter = self.key_count
        if counter is None:
            return False
        written = compact(data)
        if written is None:
            return False
        keys = written.count(b'":')  # never below the keys written (see evtools._keys)
        if isinstance(counter, int):
            return keys == counter
        try:
            return keys == counter(event, written)
        except Exception:  # a default whose == raises (Decimal sNaN...): the exact check
            return False


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How the hot path lifts an old version (see :meth:`Registry._plan`)."""

    entry: _Entry  # the latest version
    steps: tuple[Callable[[Any], Any], ...]  # the upcasters, in order
    first: _Entry | None  # typed steps: the old version's entry (None: dict steps)
    classes: tuple[type, ...]  # typed steps: the class each step returns
    finite: tuple[Check | None, ...] = ()  # typed steps: the check of each class


class Registry:
    """Maps (event type, schema version) to a typed class and decodes strictly.

    Parameters
    ----------
    unknown_fields:
        ``"reject"`` (default): a payload field the class does not declare is a
        ``SchemaError``. ``"keep"``: the event decodes, and the extra fields are returned
        by :meth:`decode_verbose` and counted in :attr:`unknown_field_counts`.
    duplicate_keys:
        ``"reject"`` (default): a repeated key is a ``DecodeError`` (Go and JavaScript both
        silently keep the last value), and so are two keys of a typed map (``dict[int,
        ...]``) or two elements of a ``set``/``frozenset`` field that decode to one value
        (``"1"`` and ``"01"``; ``[3, 3]``), which a consumer of the JSON keeps apart.
        ``"last-wins"``: accept, as msgspec does.
    max_payload_bytes:
        Larger payloads are refused before parsing (default 16 MiB).
    """

    def __init__(self, *, unknown_fields: UnknownFieldPolicy = "reject",
                 duplicate_keys: DuplicateKeyPolicy = "reject",
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        if unknown_fields not in ("reject", "keep"):
            raise UsageError(f"unknown_fields must be 'reject' or 'keep', not {unknown_fields!r}")
        if duplicate_keys not in ("reject", "last-wins"):
            raise UsageError("duplicate_keys must be 'reject' or 'last-wins', "
                             f"not {duplicate_keys!r}")
        if not _is_int(max_payload_bytes) or max_payload_bytes < 1:
            raise UsageError("max_payload_bytes must be an int >= 1, "
                             f"not {max_payload_bytes!r}")
        self.unknown_fields = unknown_fields
        self.duplicate_keys = duplicate_keys
        self.max_payload_bytes = max_payload_bytes
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._current: dict[tuple[str, int], _Entry] = {}  # latest version of each type
        self._latest: dict[str, int] = {}
        self._by_class: dict[type, _Entry] = {}
        # (type, from version) -> (to version, upcaster, typed)
        self._upcasters: dict[tuple[str, int], tuple[int, Callable[[Any], Any], bool]] = {}
        self._plans: dict[tuple[str, int], _Plan | None] = {}
        self._fast: dict[str, FastEntry] | None = None
        # what users of the registry work out from it once (rehydration's fold plans);
        # emptied whenever a registration changes what decode() does
        self._derived: dict[Any, Any] = {}
        self.unknown_field_counts: Counter[tuple[str, int, str]] = Counter()
        self._encoder = _number_encoder  # Decimal as a JSON number, with its exact digits

    # -- registration ---------------------------------------------------------------------

    @overload
    def register(self, cls: type[T], *, name: str | None = ..., version: int = ...) -> type[T]:
        ...

    @overload
    def register(self, cls: str | None = ..., *, name: str | None = ...,
                 version: int = ...) -> Callable[[type[T]], type[T]]: ...

    def register(self, cls: Any = None, *, name: str | None = None, version: int = 1) -> Any:
        """Register a class for an event type and schema version.

        Use as ``registry.register(Cls, name="T", version=2)`` or as a decorator,
        ``@registry.register("T", version=2)``. ``name`` defaults to the class name.
        Registering a class again under the same name and version changes nothing.
        """
        if isinstance(cls, str) or cls is None:
            if isinstance(cls, str) and name is not None:
                raise UsageError(f"register({cls!r}, name={name!r}): give the type name once")
            type_name = cls if isinstance(cls, str) else name
            _check_name(type_name, "register")
            _check_version(version, type_name, "register")

            def decorator(klass: type[T]) -> type[T]:
                self._add(klass, type_name or _class_name(klass), version)
                return klass

            return decorator
        _check_name(name, "register")
        _check_version(version, name, "register")
        self._add(cls, name or _class_name(cls), version)
        return cls

    def _add(self, cls: type, name: str, version: int) -> None:
        if not (isinstance(cls, type) and (issubclass(cls, msgspec.Struct)
                                           or dataclasses.is_dataclass(cls))):
            raise UsageError(f"{cls!r} is not a msgspec.Struct or a dataclass")
        key = (name, version)
        if key in self._entries:
            taken = self._entries[key].cls
            if taken is cls:
                return  # the same registration again
            raise UsageError(f"{name} v{version} is already registered to "
                             f"{_qualified(taken)}; {_qualified(cls)} cannot take its place "
                             "(each event type and schema version has one class)")
        if cls in self._by_class:
            other = self._by_class[cls]
            raise UsageError(f"{cls.__qualname__} is already registered as "
                             f"{other.name} v{other.version}")
        try:  # first: msgspec says what it cannot decode (before any walk of the type)
            plain: msgspec.json.Decoder[Any] = msgspec.json.Decoder(cls, dec_hook=dec_hook)
        except TypeError as e:
            raise UsageError(f"cannot decode into {cls.__qualname__}: {e}") from e
        _refuse_lossy_types(cls, name)
        finite = finite_parts(cls)  # a Decimal field refuses "NaN" and "Infinity"
        decoder = plain if finite is None else FiniteDecoder(plain, finite)
        shape = _shape_of(cls)
        check_unknown = not _forbids_everywhere(shape)
        # the fast duplicate check needs every key to be a field msgspec decoded
        entry = _Entry(cls=cls, name=name, version=version, decoder=decoder, shape=shape,
                       check_unknown=check_unknown,
                       key_count=None if check_unknown else key_count(cls),
                       collapsible=_can_collapse(msgspec.inspect.type_info(cls)),
                       finite=None if finite is None else check_of(finite))
        self._entries[key] = entry
        self._by_class[cls] = entry
        self._latest[name] = max(version, self._latest.get(name, 0))
        self._current = {(n, v): e for (n, v), e in self._entries.items()
                         if self._latest[n] == v}
        self._plans.clear()
        self._fast = None
        self._derived.clear()

    def upcaster(self, event_type: str, from_version: int, to_version: int | None = None,
                 *, typed: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`add_upcaster`."""
        _check_upcaster(event_type, from_version, to_version)

        def decorator(fn: F) -> F:
            self.add_upcaster(event_type, from_version, fn, to_version, typed=typed)
            return fn

        return decorator

    def add_upcaster(self, event_type: str, from_version: int, fn: Callable[[Any], Any],
                     to_version: int | None = None, *, typed: bool = False) -> None:
        """``fn`` lifts ``event_type`` from ``from_version`` to ``to_version`` (default
        ``from_version + 1``; a later version, never an earlier one, so a chain of
        upcasters cannot loop).

        By default ``fn(payload: dict) -> dict`` works on the payload decoded losslessly,
        and its result is decoded strictly into the later version's class. With
        ``typed=True``, ``fn(event) -> event`` takes the old payload decoded (strictly)
        into the class registered for ``from_version`` and returns an instance of the class
        registered for ``to_version``: an old event decodes in about half the time (no
        second parse), and a type checker can read the upcaster. Its result must be an
        instance of that class, and is used as it is, except that a NaN or infinite
        ``Decimal`` in it is an :class:`UpcastError` naming the field, as it would be in a
        payload: msgspec checks no constraint (``Meta``) of a Struct built in code, so
        build it from the old event's validated fields. A chain may mix both kinds (each
        typed step gets its class's event, each dict step a dict); only chains of one kind
        take the hot path.
        """
        _check_upcaster(event_type, from_version, to_version)
        if not callable(fn):
            what = "an event of that version" if typed else "the payload dict"
            raise UsageError(f"the upcaster for {event_type} v{from_version} must be a "
                             f"function of {what}, not {type(fn).__name__}")
        target = from_version + 1 if to_version is None else to_version
        key = (event_type, from_version)
        if key in self._upcasters:
            raise UsageError(f"an upcaster for {event_type} v{from_version} already exists")
        self._upcasters[key] = (target, fn, bool(typed))
        self._plans.clear()
        self._fast = None
        self._derived.clear()

    # -- lookup ---------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self._latest
        return key in self._entries

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def class_for(self, event_type: str, version: int | None = None) -> type:
        """The class registered for ``event_type`` at ``version`` (default: latest)."""
        if version is not None:
            _check_version(version, event_type, "class_for")
        if event_type not in self._latest:
            raise UnknownEventType(f"no class registered for event type {event_type!r}",
                                   event_type=event_type)
        v = self._latest[event_type] if version is None else version
        entry = self._entries.get((event_type, v))
        if entry is None:
            raise UnknownSchemaVersion(f"{event_type} has no class for schema version {v}",
                                       event_type=event_type, schema_version=v)
        return entry.cls

    def knows(self, event_type: str, schema_version: int) -> bool:
        """Whether ``event_type`` at ``schema_version`` has a class or an upcaster (decoding
        it cannot raise :class:`~evtools.errors.UnknownEventType` or
        :class:`~evtools.errors.UnknownSchemaVersion`)."""
        try:
            target = self._latest.get(event_type)
            if target is None or schema_version > target:
                return False
        except TypeError as e:  # a caller's mistake? (error path only)
            misuse = _misused_payload(event_type, schema_version, b"", None, "knows")
            if misuse is None:
                raise
            raise misuse from e
        if schema_version == target:
            return True
        key = (event_type, schema_version)
        return key in self._upcasters or key in self._entries

    def latest_version(self, event_type: str) -> int:
        if event_type not in self._latest:
            raise UnknownEventType(f"no class registered for event type {event_type!r}",
                                   event_type=event_type)
        return self._latest[event_type]

    def type_of(self, event: Any) -> tuple[str, int]:
        """``(type name, schema version)`` of a typed event or class."""
        cls = event if isinstance(event, type) else type(event)
        entry = self._by_class.get(cls)
        if entry is None:
            raise UsageError(f"{cls.__qualname__} is not registered")
        return entry.name, entry.version

    # -- decoding -------------------------------------------------------------------------

    def decode(self, raw: RawEvent) -> Any:
        """The typed event for ``raw``, or an :class:`~evtools.errors.InputError`."""
        try:
            data = raw.data
            key = (raw.type, raw.schema_version)
            entry = self._current.get(key)
            if (entry is None or entry.check_unknown or raw.content_type != JSON_CONTENT_TYPE
                    or len(data) > self.max_payload_bytes):
                if entry is None and raw.content_type == JSON_CONTENT_TYPE \
                        and len(data) <= self.max_payload_bytes:
                    plan = self._plans[key] if key in self._plans else self._plan(key)
                    if plan is not None:
                        event = self._decode_upcast(plan, data)
                        if event is not None:
                            return event
                return self._decode(raw.type, raw.schema_version, data, raw)[0]
            # hot path: current version, plain JSON, msgspec itself rejects unknown fields
            try:
                event = entry.decoder.decode(data)
            except msgspec.ValidationError as e:
                if self.unknown_fields == "keep" and "unknown field" in str(e):
                    return self._decode_keeping(entry, data, raw, None)[0]
                raise self._error(e, data, raw, None, entry.name, entry.version) from e
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
                raise self._error(e, data, raw, None, entry.name, entry.version) from e
            if self.duplicate_keys == "reject" and not entry.surely_unique(event, data):
                try:  # the typed decode skips nothing here, so the payload is valid JSON
                    # keys as written, decoded once for both checks where both run
                    written = lossless.decode(data) if entry.collapsible else None
                    duplicate = has_duplicate_key(data, written)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
                    raise self._error(e, data, raw, None, entry.name, entry.version) from e
                if duplicate:
                    self._duplicate(data, entry.name, entry.version, raw, None)
                if written is not None:
                    self._merged(entry, event, written, raw, None)
            return event
        except (AttributeError, TypeError) as e:  # a caller's mistake? (error path only)
            misuse = _misused_event(raw, "decode")
            if misuse is None:
                raise
            raise misuse from e

    def _fast_decoders(self) -> dict[str, FastEntry]:
        """``{type name: (latest version, decode, {older version: FastUpcast})}`` for the
        types :meth:`decode`'s hot paths take whole (msgspec itself rejects their unknown
        fields): what the C fold of ``evtools._speedups`` decodes without calling
        :meth:`decode`, as :meth:`decode` and :meth:`_decode_upcast` do. Anything else
        there (another version, content type or size, an error, a key it cannot prove
        unique) goes through :meth:`decode`."""
        fast = self._fast
        if fast is None:
            fast = {}
            for entry in self._current.values():
                if entry.check_unknown or entry.collapsible:  # decode() checks them
                    continue
                older = {v for (n, v) in [*self._entries, *self._upcasters]
                         if n == entry.name and v < entry.version}
                upcasts: dict[int, FastUpcast] = {}
                for version in sorted(older):
                    plan = self._plans[(entry.name, version)] \
                        if (entry.name, version) in self._plans \
                        else self._plan((entry.name, version))
                    if plan is not None and plan.entry is entry and not (
                            plan.first is not None and plan.first.collapsible):
                        upcasts[version] = (
                            None if plan.first is None else plan.first.decoder.decode,
                            plan.steps, plan.classes)
                fast[entry.name] = (entry.version, entry.decoder.decode, upcasts)
            self._fast = fast
        return fast

    def _plan(self, key: tuple[str, int]) -> _Plan | None:
        """How the hot path lifts ``key`` to the latest version: the target entry, and
        either the upcasters of a chain of dict steps (``first`` None) or, for a chain of
        typed steps, the entry that decodes the old payload and the class each step must
        return. ``None`` (the slow path decodes and explains) when the chain is incomplete,
        mixes the two kinds, or passes a class that does not reject unknown fields."""
        event_type, version = key
        plan: _Plan | None = None
        target = self._latest.get(event_type)
        if target is not None and version < target:
            fns: list[Callable[[Any], Any]] = []
            classes: list[type] = []
            checks: list[Check | None] = []
            kinds: set[bool] = set()
            current = version  # every step goes to a later version: the loop ends
            while current < target and (event_type, current) in self._upcasters:
                nxt, fn, typed = self._upcasters[(event_type, current)]
                fns.append(fn)
                kinds.add(typed)
                step_entry = self._entries.get((event_type, nxt))
                classes.append(step_entry.cls if step_entry is not None else type(None))
                checks.append(step_entry.finite if step_entry is not None else None)
                current = nxt
            entry = self._entries.get((event_type, target))
            first = self._entries.get(key)
            if current == target and entry is not None and not entry.check_unknown \
                    and len(kinds) == 1:
                if kinds == {False}:
                    plan = _Plan(entry, tuple(fns), None, ())
                elif first is not None and not first.check_unknown \
                        and type(None) not in classes:
                    plan = _Plan(entry, tuple(fns), first, tuple(classes), tuple(checks))
        self._plans[key] = plan
        return plan

    def _decode_upcast(self, plan: _Plan, data: bytes) -> Any:
        """The upcast hot path: the event, or ``None`` when anything is unusual (the slow
        path then runs every step again and reports the problem with its context)."""
        try:
            if plan.first is not None:  # typed steps: the old class, then each upcaster
                event = plan.first.decoder.decode(data)
                if self.duplicate_keys == "reject" and not plan.first.surely_unique(
                        event, data) and (has_duplicate_key(data) or (
                            plan.first.collapsible
                            and _merged_key(event, lossless.decode(data), "") is not None)):
                    return None
                for fn, cls, finite in zip(plan.steps, plan.classes, plan.finite, strict=True):
                    event = fn(event)
                    if type(event) is not cls or (finite is not None and not finite(event)):
                        return None
                return event
            payload = lossless.decode(data)
            if type(payload) is not dict or (self.duplicate_keys == "reject"
                                             and has_duplicate_key(data, payload)):
                return None
            for fn in plan.steps:
                payload = fn(payload)
                if type(payload) is not dict:
                    return None
            return plan.entry.decoder.decode(_number_encoder.encode(payload))
        except Exception:  # the slow path raises the error with its context
            return None

    def decode_verbose(self, raw: RawEvent) -> Decoded:
        """Like :meth:`decode`, also returning unknown fields kept under ``"keep"``."""
        try:
            event, unknown = self._decode(raw.type, raw.schema_version, raw.data, raw)
        except (AttributeError, TypeError) as e:  # a caller's mistake? (error path only)
            misuse = _misused_event(raw, "decode_verbose")
            if misuse is None:
                raise
            raise misuse from e
        return Decoded(event, unknown)

    def decode_payload(self, event_type: str, schema_version: int, data: bytes,
                       context: Context | None = None) -> Any:
        """Decode a bare payload for ``event_type`` at ``schema_version``."""
        try:
            return self._decode(event_type, schema_version, data, None, context)[0]
        except (AttributeError, TypeError) as e:  # a caller's mistake? (error path only)
            misuse = _misused_payload(event_type, schema_version, data, context)
            if misuse is None:
                raise
            raise misuse from e

    def _decode(self, event_type: str, schema_version: int, data: bytes,
                raw: RawEvent | None, context: Context | None = None
                ) -> tuple[Any, dict[str, Any]]:
        entry = self._entries.get((event_type, schema_version))
        if (entry is not None and self._latest[event_type] == schema_version
                and (raw is None or raw.content_type == JSON_CONTENT_TYPE)
                and len(data) <= self.max_payload_bytes):
            return self._decode_entry(entry, data, raw, context)  # hot path: plain JSON
        return self._decode_slow(event_type, schema_version, data, raw, context)

    def _decode_entry(self, entry: _Entry, data: bytes, raw: RawEvent | None,
                      context: Context | None) -> tuple[Any, dict[str, Any]]:
        """``data`` decoded into ``entry``'s class, every check of its version run."""
        try:
            event = entry.decoder.decode(data)
        except msgspec.ValidationError as e:
            if self.unknown_fields == "keep" and "unknown field" in str(e):
                return self._decode_keeping(entry, data, raw, context)
            raise self._error(e, data, raw, context, entry.name, entry.version) from e
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            raise self._error(e, data, raw, context, entry.name, entry.version) from e
        return self._post_checks(entry, event, data, raw, context)

    def _post_checks(self, entry: _Entry, event: Any, data: bytes, raw: RawEvent | None,
                     context: Context | None) -> tuple[Any, dict[str, Any]]:
        untyped: Any = None
        check_keys = self.duplicate_keys == "reject" and not entry.surely_unique(event, data)
        if entry.check_unknown or check_keys:
            try:  # typed decoding skips what it does not need: check the whole payload
                untyped = lossless.decode(data)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
                raise self._error(e, data, raw, context, entry.name, entry.version) from e
        if check_keys and has_duplicate_key(data, untyped):
            self._duplicate(data, entry.name, entry.version, raw, context)
        if check_keys and entry.collapsible:
            self._merged(entry, event, untyped, raw, context)
        unknown: dict[str, Any] = {}
        if entry.check_unknown:
            entry.shape.collect_unknown(untyped, "", unknown)
            if unknown:
                self._unknown_found(entry, unknown, raw, context)
        return event, unknown

    def _decode_keeping(self, entry: _Entry, data: bytes, raw: RawEvent | None,
                        context: Context | None) -> tuple[Any, dict[str, Any]]:
        """``keep`` policy on a class that forbids unknown fields: take them out, decode
        the rest, and report what was taken out."""
        try:
            payload = lossless.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            raise self._error(e, data, raw, context, entry.name, entry.version) from e
        unknown: dict[str, Any] = {}
        entry.shape.collect_unknown(payload, "", unknown)
        for pointer in sorted(unknown, key=len, reverse=True):
            _remove(payload, pointer)
        stripped = _number_encoder.encode(payload)
        try:
            event = entry.decoder.decode(stripped)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            raise self._error(e, stripped, raw, context, entry.name, entry.version) from e
        if self.duplicate_keys == "reject" and has_duplicate_key(data):
            self._duplicate(data, entry.name, entry.version, raw, context)
        if self.duplicate_keys == "reject" and entry.collapsible:
            self._merged(entry, event, payload, raw, context)
        self._unknown_found(entry, unknown, raw, context)
        return event, unknown

    def _unknown_found(self, entry: _Entry, unknown: dict[str, Any], raw: RawEvent | None,
                       context: Context | None) -> None:
        if self.unknown_fields == "reject":
            pointer = next(iter(unknown))
            name = unescape_pointer_token(pointer.rsplit("/", 1)[-1])
            raise SchemaError(f"unknown field {name!r} "
                              f"(not declared by {entry.cls.__qualname__})",
                              self._where(raw, context, entry.name, entry.version, pointer))
        for pointer in unknown:
            self.unknown_field_counts[(entry.name, entry.version, pointer)] += 1

    def _decode_slow(self, event_type: str, schema_version: int, data: bytes,
                     raw: RawEvent | None, context: Context | None
                     ) -> tuple[Any, dict[str, Any]]:
        def where() -> Context:  # built only when there is an error to report
            return self._where(raw, context, event_type, schema_version, None)

        if raw is not None and not raw.is_json:
            raise DecodeError(f"content type {raw.content_type!r} is not JSON", where())
        if len(data) > self.max_payload_bytes:
            raise DecodeError(f"payload of {len(data):,} bytes exceeds the limit of "
                              f"{self.max_payload_bytes:,} bytes", where())
        if event_type not in self._latest:
            raise UnknownEventType(f"no class registered for event type {event_type!r}", where())
        target = self._latest[event_type]
        if schema_version > target or (
                schema_version != target and (event_type, schema_version) not in self._upcasters
                and (event_type, schema_version) not in self._entries):
            known = sorted(v for (n, v) in self._entries if n == event_type)
            raise UnknownSchemaVersion(
                f"{event_type} has no class or upcaster for schema version {schema_version} "
                f"(registered: {', '.join(f'v{v}' for v in known)})", where())
        entry = self._entries[(event_type, target)]
        if schema_version == target:
            return self._decode_entry(entry, data, raw, context)
        lifted, unknown = self._upcast(event_type, schema_version, target, data, where, raw,
                                       context)
        if isinstance(lifted, bytes):  # the last step was a dict one: its payload
            event, more = self._decode_lifted(entry, lifted, raw, context, where,
                                              schema_version)
            return event, {**unknown, **more}
        return lifted, unknown  # the last step was typed: the event itself

    def _decode_lifted(self, entry: _Entry, data: bytes, raw: RawEvent | None,
                       context: Context | None, where: Callable[[], Context],
                       from_version: int) -> tuple[Any, dict[str, Any]]:
        """``data``, written from a dict step's output, decoded into ``entry``'s class under
        the unknown-field policy; what the class rejects is an :class:`UpcastError` naming
        the step from ``from_version`` (the stored version, also in its context)."""
        try:
            event = entry.decoder.decode(data)
        except msgspec.ValidationError as e:
            if self.unknown_fields == "keep" and "unknown field" in str(e):
                return self._decode_keeping(entry, data, raw, context)
            err = self._error(e, data, raw, context, entry.name, from_version)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            err = self._error(e, data, raw, context, entry.name, from_version)
        else:
            unknown: dict[str, Any] = {}
            if entry.check_unknown:  # the checks of the stored bytes ran in _upcast
                entry.shape.collect_unknown(lossless.decode(data), "", unknown)
                if unknown:
                    self._unknown_found(entry, unknown, raw, context)
            return event, unknown
        raise UpcastError(f"upcast {entry.name} v{from_version} -> v{entry.version} produced "
                          f"a payload {entry.cls.__qualname__} rejects: {err.message}",
                          Context(path=err.context.path).merge(where())) from err

    def _upcast(self, event_type: str, version: int, target: int, data: bytes,
                where: Callable[[], Context], raw: RawEvent | None = None,
                context: Context | None = None) -> tuple[Any, dict[str, Any]]:
        """Lift ``data`` from ``version`` to ``target`` through the upcasters: the payload
        bytes of the latest version, or the typed event when the last step is typed; and
        the unknown fields kept (``unknown_fields="keep"``) by decodes on the way."""
        steps: list[tuple[int, int, Callable[[Any], Any], bool]] = []
        seen = [version]
        current = version
        while current != target:
            step = self._upcasters.get((event_type, current))
            if step is None:
                chain = " -> ".join(f"v{v}" for v in seen)
                raise UpcastError(f"no upcaster for {event_type} from v{current} "
                                  f"(chain so far {chain}, target v{target})", where())
            nxt, fn, typed = step
            if nxt > target:  # (an upcaster never goes back: add_upcaster refuses it)
                chain = " -> ".join(f"v{v}" for v in [*seen, nxt])
                raise UpcastError(f"upcaster chain for {event_type} {chain} goes past v{target}, "
                                  "the latest version registered", where())
            steps.append((current, nxt, fn, typed))
            seen.append(nxt)
            current = nxt
        value: Any
        unknown: dict[str, Any] = {}
        if steps[0][3]:  # a typed first step: the old payload is an event of its version
            value, unknown = self._decode_entry(
                self._typed_entry(event_type, version, where, "takes"), data, raw, context)
        else:
            try:
                value = lossless.decode(data)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
                raise DecodeError(_not_json(e, data),
                                  where()) from e
            if self.duplicate_keys == "reject" and has_duplicate_key(data, value):
                self._duplicate(data, event_type, version, None, where())
            if not isinstance(value, dict):
                raise SchemaError(f"payload is a JSON {_json_type(value)}, not an object",
                                  where().merge(Context(path="")))
        for current, nxt, fn, typed in steps:
            if typed and type(value) is dict:  # a dict step before: its payload decoded
                value, more = self._decode_lifted(
                    self._typed_entry(event_type, current, where, "takes"),
                    _number_encoder.encode(value), raw, context, where, version)
                unknown.update(more)
            elif not typed and type(value) is not dict:  # a typed step before: its event
                value = lossless.decode(_number_encoder.encode(value))
            try:
                value = fn(value)
            except InputError as e:
                raise e.with_context(where()) from None
            except Exception as e:
                raise UpcastError(f"upcaster {event_type} v{current} -> v{nxt} failed: "
                                  f"{type(e).__name__}: {e}", where()) from e
            if typed:
                returned = self._typed_entry(event_type, nxt, where, "returns")
                cls = returned.cls
                if type(value) is not cls:
                    raise UpcastError(f"the typed upcaster {event_type} v{current} -> v{nxt} "
                                      f"returned {type(value).__qualname__}, not "
                                      f"{cls.__qualname__} (the class of v{nxt})", where())
                if returned.finite is not None:
                    self._check_finite(returned, value, raw, context, where, current)
            elif not isinstance(value, dict):
                raise UpcastError(f"upcaster {event_type} v{current} -> v{nxt} returned "
                                  f"{type(value).__name__}, not a dict", where())
        if type(value) is not dict:
            return value, unknown
        try:
            return _number_encoder.encode(value), unknown
        except (TypeError, ValueError) as e:
            raise UpcastError(f"upcaster output for {event_type} v{target} cannot be encoded "
                              f"as JSON: {e}", where()) from e

    def _check_finite(self, entry: _Entry, event: Any, raw: RawEvent | None,
                      context: Context | None, where: Callable[[], Context],
                      from_version: int) -> None:
        """What the typed upcaster from ``from_version`` returned holds no NaN or infinite
        ``Decimal``: its class would refuse one in a payload, so an upcaster cannot bring
        one in (an :class:`UpcastError` naming the field)."""
        try:
            if entry.finite is not None and entry.finite(event):
                return
        except Exception:  # the walk below says what is wrong
            pass
        try:
            refuse(event)
        except msgspec.ValidationError as e:
            err = self._error(e, b"", raw, context, entry.name, entry.version)
            name = entry.cls.__qualname__
            raise UpcastError(f"the typed upcaster {entry.name} v{from_version} -> "
                              f"v{entry.version} returned a {name} holding what {name} "
                              f"rejects in a payload: {err.message}",
                              Context(path=err.context.path).merge(where())) from None

    def _typed_entry(self, event_type: str, version: int, where: Callable[[], Context],
                     role: Literal["takes", "returns"]) -> _Entry:
        """The class of ``version`` that a typed upcaster takes or returns."""
        entry = self._entries.get((event_type, version))
        if entry is None:
            verb = "from" if role == "takes" else "to"
            raise UpcastError(f"the typed upcaster {verb} {event_type} v{version} {role} an "
                              f"event of that version, and no class is registered for it "
                              f"(register one, or give a dict upcaster)", where())
        return entry

    # -- encoding -------------------------------------------------------------------------

    def encode(self, event: Any) -> bytes:
        """The JSON payload of a typed event: timestamps keep their text, ``Decimal`` values are
        JSON numbers written with their exact digits (``512.74``, never ``"512.74"``), and
        :class:`~evtools.scalars.DecimalText` values strings (``"512.74"``), as the schemas
        inferred from stored events declare them."""
        try:
            return self._encoder.encode(event)
        except (TypeError, ValueError) as e:
            raise UsageError(f"cannot encode {type(event).__qualname__}: {e}") from e

    def to_raw(self, event: Any, *, stream: str, version: int, **fields: Any) -> RawEvent:
        """Wrap a typed event into a :class:`RawEvent` with its registered type and version.

        ``fields`` are those of :meth:`RawEvent.new` that the event does not decide:
        ``metadata``, ``recorded_at``, ``id``, ``position`` and ``content_type``. Without
        ``recorded_at`` the event has no time, and a store appends it so.
        """
        unexpected = sorted(fields.keys() - _TO_RAW_FIELDS)
        if unexpected:
            raise UsageError(f"to_raw takes no {', '.join(map(repr, unexpected))} (it takes "
                             f"{', '.join(sorted(_TO_RAW_FIELDS))}; the type and schema "
                             "version come from the registry)")
        name, schema_version = self.type_of(event)
        return RawEvent.new(stream, version, name, self.encode(event),
                            schema_version=schema_version, **fields)

    # -- errors ---------------------------------------------------------------------------

    def _duplicate(self, data: bytes, event_type: str, schema_version: int,
                   raw: RawEvent | None, context: Context | None) -> None:
        pointer, key = find_duplicate_key(data) or ("", "?")
        raise DecodeError(f"duplicate key {key!r} (Go and JavaScript silently keep the last "
                          "value)", self._where(raw, context, event_type, schema_version,
                                                pointer))

    def _merged(self, entry: _Entry, event: Any, untyped: Any, raw: RawEvent | None,
                 context: Context | None) -> None:
        """Raise when two keys of a map, written differently, decoded to one key."""
        found = _merged_key(event, untyped, "")
        if found is None:
            return
        pointer, written = found
        where = self._where(raw, context, entry.name, entry.version, pointer)
        if isinstance(written, tuple):  # elements of a set
            raise DecodeError(f"repeated element: {' and '.join(written)} are one element of "
                              "this set once decoded (Go and JavaScript keep both)", where)
        raise DecodeError(f"duplicate key: {' and '.join(map(repr, written))} are one key "
                          "of this map once decoded (Go and JavaScript silently keep the "
                          "last value)", where)

    @staticmethod
    def _where(raw: RawEvent | None, context: Context | None, event_type: str,
               schema_version: int, path: str | None) -> Context:
        base = raw.context if raw is not None else Context(event_type=event_type,
                                                          schema_version=schema_version)
        return Context(path=path).merge(base).merge(context)

    def _error(self, e: BaseException, data: bytes, raw: RawEvent | None,
               context: Context | None, event_type: str, schema_version: int) -> InputError:
        if isinstance(e, msgspec.ValidationError):
            text = str(e)
            return SchemaError(_fix_message(strip_msgspec_path(text)),
                               self._where(raw, context, event_type, schema_version,
                                           msgspec_path_to_pointer(text)))
        return DecodeError(_not_json(e, data),
                           self._where(raw, context, event_type, schema_version, None))


_TO_RAW_FIELDS = frozenset({"metadata", "recorded_at", "id", "position", "content_type"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _class_name(cls: Any) -> str:
    """The default type name of ``cls`` (``""`` for what is not a class: refused later)."""
    return cls.__name__ if isinstance(cls, type) else ""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_name(name: object, what: str) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise UsageError(f"{what}: the event type name must be a non-empty str, "
                         f"not {name!r}")


def _check_version(version: object, name: object, what: str) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"{what}: schema versions are ints from 1, not {version!r}"
                         + (f" (for {name})" if isinstance(name, str) else ""))


def _check_upcaster(event_type: object, from_version: object, to_version: object) -> None:
    if not isinstance(event_type, str) or not event_type:
        raise UsageError(f"upcaster: the event type must be a non-empty str, "
                         f"not {event_type!r}")
    _check_version(from_version, event_type, "upcaster from_version")
    if to_version is not None:
        _check_version(to_version, event_type, "upcaster to_version")
        if isinstance(to_version, int) and isinstance(from_version, int) \
                and to_version <= from_version:
            raise UsageError(f"an upcaster lifts a payload to a later version: {event_type} "
                             f"v{from_version} -> v{to_version} goes back")


def _misused_event(raw: Any, method: str) -> UsageError | None:
    """Why ``raw`` cannot be decoded when the caller gave something unusable, else
    ``None`` (error path only)."""
    if not isinstance(raw, RawEvent):
        return UsageError(f"Registry.{method} takes a RawEvent, not {type(raw).__name__} "
                          "(decode_payload(event_type, schema_version, data) decodes a bare "
                          "payload)")
    try:
        raw.check()
    except UsageError as e:
        return UsageError(f"{e.message}; build events with RawEvent.new, which checks "
                          "their fields (RawEvent(...) does not)", e.context)
    return None


def _misused_payload(event_type: Any, schema_version: Any, data: Any, context: Any,
                     method: str = "decode_payload") -> UsageError | None:
    """Why these arguments cannot be decoded when the caller gave something unusable,
    else ``None`` (error path only)."""
    if not isinstance(event_type, str):
        return UsageError(f"Registry.{method}: event_type must be a str, "
                          f"not {type(event_type).__name__}")
    if not _is_int(schema_version):
        return UsageError(f"Registry.{method}: schema_version must be an int, not "
                          f"{schema_version!r}", event_type=event_type)
    if not isinstance(data, bytes):
        return UsageError(f"Registry.{method}: data must be bytes, not {type(data).__name__}",
                          event_type=event_type, schema_version=schema_version)
    if context is not None and not isinstance(context, Context):
        return UsageError(f"Registry.{method}: context must be a Context or None, not "
                          f"{type(context).__name__}")
    return None


def _remove(doc: Any, pointer: str) -> None:
    tokens = [unescape_pointer_token(t) for t in pointer.split("/")[1:]]
    for token in tokens[:-1]:
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    del doc[tokens[-1]]


_BAD_CHARACTER = re.compile(r"invalid character \(byte (\d+)\)")


def _not_json(e: BaseException, data: bytes) -> str:
    if isinstance(e, RecursionError):  # valid JSON, maybe: deeper than the reader goes
        return too_deep("payload")
    return f"payload is not valid JSON: {_describe(e, data)}"


def _describe(e: BaseException, data: bytes) -> str:
    """The parser's complaint about ``data``, in words that locate it (error path only)."""
    if is_invalid_utf8(e):
        # msgspec counts from the start of the string token, or (0.23) not at all: find
        # the payload's offset
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as found:
            return (f"invalid UTF-8 (byte 0x{found.object[found.start]:02x} at offset "
                    f"{found.start})")
        if isinstance(e, UnicodeDecodeError):
            return f"invalid UTF-8 (byte 0x{e.object[e.start]:02x})"
        return "invalid UTF-8"
    text = str(e)
    bad = _BAD_CHARACTER.search(text)  # msgspec's offset: of the token, after any minus
    if bad and bytes(data).startswith((b"NaN", b"Infinity"), int(bad.group(1))):
        return text + " (NaN and Infinity are not JSON)"
    return text


def _fix_message(text: str) -> str:
    if text.startswith("Number out of range"):
        return "number out of range for its field (e.g. 1e400 does not fit a float64)"
    return text


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# -- declared shape of a class, to find unknown fields msgspec ignores ------------------------

class _Shape:
    """The field names a class declares, recursively, for finding unknown fields."""

    __slots__ = ("children", "element", "forbids", "names", "tag_field", "variants")

    def __init__(self) -> None:
        self.names: frozenset[str] | None = None  # object with declared names
        self.forbids = False  # msgspec already rejects unknown fields here
        self.children: dict[str, _Shape] = {}
        self.element: _Shape | None = None  # list/dict element shape
        # a union of tagged structs: the member's shape, by the value of its tag field
        self.tag_field: str | None = None
        self.variants: dict[Any, _Shape] = {}

    @property
    def walks(self) -> bool:
        """Whether a value of this shape can hold an object (something to look into)."""
        return self.names is not None or self.element is not None or bool(self.variants)

    def collect_unknown(self, value: Any, pointer: str, out: dict[str, Any]) -> None:
        if self.variants and isinstance(value, dict):
            tag = value.get(self.tag_field)  # a tag is a str or an int; anything else, or
            member = self.variants.get(tag) if type(tag) in (str, int) else None
            if member is not None:  # an unknown tag, is msgspec's error to report
                member.collect_unknown(value, pointer, out)
        elif self.names is not None and isinstance(value, dict):
            for key, item in value.items():
                token = pointer + "/" + key.replace("~", "~0").replace("/", "~1")
                if key not in self.names:
                    out[token] = item
                elif key in self.children:
                    self.children[key].collect_unknown(item, token, out)
        elif self.element is not None:
            if isinstance(value, list):
                for i, item in enumerate(value):
                    self.element.collect_unknown(item, f"{pointer}/{i}", out)
            elif isinstance(value, dict):
                for key, item in value.items():
                    self.element.collect_unknown(item, pointer + "/" + key, out)


def _shape_of(tp: Any, _seen: dict[Any, _Shape] | None = None) -> _Shape:
    seen = {} if _seen is None else _seen
    info = msgspec.inspect.type_info(tp)
    return _shape_from_info(info, seen)


def _shape_from_info(info: msgspec.inspect.Type, seen: dict[Any, _Shape]) -> _Shape:
    shape = _Shape()
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        if info.cls in seen:
            return seen[info.cls]
        seen[info.cls] = shape
        shape.forbids = bool(getattr(info, "forbid_unknown_fields", False))
        tag = info.tag_field if isinstance(info, msgspec.inspect.StructType) else None
        shape.names = frozenset([*(f.encode_name for f in info.fields),
                                 *(() if tag is None else (tag,))])
        for f in info.fields:
            child = _shape_from_info(f.type, seen)
            if child.walks:
                shape.children[f.encode_name] = child
    elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType
                    | msgspec.inspect.FrozenSetType | msgspec.inspect.VarTupleType):
        child = _shape_from_info(info.item_type, seen)
        shape.element = child if child.walks else None
    elif isinstance(info, msgspec.inspect.DictType):
        child = _shape_from_info(info.value_type, seen)
        shape.element = child if child.walks else None
    elif isinstance(info, msgspec.inspect.UnionType):
        # msgspec allows one object-like and one array-like member beside scalars: the
        # value's JSON type says which applies, so their shapes merge without conflict;
        # several structs are tagged, and the tag says which
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        if len(structs) > 1:
            shape.tag_field = structs[0].tag_field
            shape.variants = {t.tag: _shape_from_info(t, seen) for t in structs}
        for member in info.types:
            sub = _shape_from_info(member, seen)
            if sub.names is not None:
                if shape.names is not None or shape.variants:
                    continue
                shape.names, shape.forbids, shape.children = sub.names, sub.forbids, \
                    sub.children
            elif sub.element is not None and shape.element is None:
                shape.element = sub.element
    elif isinstance(info, msgspec.inspect.Metadata):
        return _shape_from_info(info.type, seen)
    return shape


def _forbids_everywhere(shape: _Shape, _seen: set[int] | None = None) -> bool:
    seen = set() if _seen is None else _seen
    if id(shape) in seen:
        return True
    seen.add(id(shape))
    if shape.names is not None and not shape.forbids:
        return False
    if shape.element is not None and not _forbids_everywhere(shape.element, seen):
        return False
    return all(_forbids_everywhere(c, seen)
               for c in [*shape.children.values(), *shape.variants.values()])


def _can_collapse(info: msgspec.inspect.Type) -> bool:
    """Whether a value of this type can hold a map whose keys are not plain strings, or a
    set: two keys or elements written apart there may decode to one."""
    for t in reached(info):
        if isinstance(t, msgspec.inspect.SetType | msgspec.inspect.FrozenSetType):
            return True
        if isinstance(t, msgspec.inspect.DictType):
            key = t.key_type
            while isinstance(key, msgspec.inspect.Metadata):
                key = key.type
            if not isinstance(key, msgspec.inspect.StrType):
                return True
    return False


def _merged_key(typed: Any, untyped: Any, pointer: str
                ) -> tuple[str, list[str] | tuple[str, ...]] | None:
    """Where a map of ``typed`` (a decoded event) holds fewer keys than the same map of
    ``untyped`` (the payload decoded losslessly, keys as written), or a set fewer elements
    than the array written: (its JSON Pointer, the keys written that became one: a list;
    or the elements, as JSON text: a tuple), else ``None``."""
    if isinstance(typed, dict):
        if not isinstance(untyped, dict):
            return None
        if len(typed) != len(untyped):
            seen: dict[Any, str] = {}
            for written, key in zip(untyped, _keys_of(typed, untyped), strict=False):
                if key in seen:
                    return pointer, [seen[key], written]
                seen[key] = written
            return pointer, list(untyped)
        for value, written in zip(typed.values(), untyped, strict=True):
            hit = _merged_key(value, untyped[written],
                              f"{pointer}/{escape_pointer_token(written)}")
            if hit is not None:
                return hit
        return None
    if isinstance(typed, msgspec.Struct):
        if not isinstance(untyped, dict):
            return None
        names = typed.__struct_encode_fields__
        for attr, name in zip(typed.__struct_fields__, names, strict=True):
            if name in untyped:
                hit = _merged_key(getattr(typed, attr), untyped[name],
                                  f"{pointer}/{escape_pointer_token(name)}")
                if hit is not None:
                    return hit
        return None
    if dataclasses.is_dataclass(typed) and not isinstance(typed, type):
        if not isinstance(untyped, dict):
            return None
        for f in dataclasses.fields(typed):
            if f.name in untyped:
                hit = _merged_key(getattr(typed, f.name), untyped[f.name],
                                  f"{pointer}/{escape_pointer_token(f.name)}")
                if hit is not None:
                    return hit
        return None
    if isinstance(typed, set | frozenset) and isinstance(untyped, list):
        if len(typed) != len(untyped):
            texts = [_number_encoder.encode(w).decode() for w in untyped]
            seen_at: dict[Any, str] = {}
            for text, element in zip(texts, _elements_of(typed, untyped), strict=True):
                if element in seen_at:
                    return pointer, (seen_at[element], text)
                seen_at[element] = text
            return pointer, tuple(texts)
        return None  # (elements are hashable scalars or frozen structs: nothing inside)
    if isinstance(typed, list | tuple) and isinstance(untyped, list):
        for i, (value, written) in enumerate(zip(typed, untyped, strict=False)):
            hit = _merged_key(value, written, f"{pointer}/{i}")
            if hit is not None:
                return hit
    return None


def _elements_of(typed: set[Any] | frozenset[Any], untyped: list[Any]) -> list[Any]:
    """The element each written element of ``untyped`` became (error path): decoded one
    by one with the type of ``typed``'s elements."""
    kind = type(next(iter(typed)))
    one = msgspec.json.Decoder(kind, dec_hook=dec_hook)
    out: list[Any] = []
    for written in untyped:
        try:
            out.append(one.decode(_number_encoder.encode(written)))
        except msgspec.MsgspecError:
            out.append(written)
    return out


def _keys_of(typed: dict[Any, Any], untyped: dict[str, Any]) -> list[Any]:
    """The typed key each written key of ``untyped`` became (error path): decoded one by
    one with the type of ``typed``'s keys."""
    kind = type(next(iter(typed))) if typed else str
    one = msgspec.json.Decoder(types.GenericAlias(dict, (kind, int)), dec_hook=dec_hook)
    out: list[Any] = []
    for written in untyped:
        try:
            out.append(next(iter(one.decode(msgspec.json.encode({written: 0})))))
        except msgspec.MsgspecError:
            out.append(written)
    return out


def _refuse_lossy_types(cls: type, name: str) -> None:
    """Refuse up front what would lose data silently: ``datetime``/``time`` fields (they
    round nanoseconds) and unions of structs where a member ignores unknown fields."""
    def walk(info: msgspec.inspect.Type, path: str, seen: set[Any]) -> None:
        if isinstance(info, msgspec.inspect.DateTimeType | msgspec.inspect.TimeType):
            raise UsageError(
                f"{name}: field {path or '/'} is a datetime/time, which drops nanoseconds "
                "and accepts timestamps without offset; declare it as evtools.Timestamp")
        if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for f in info.fields:
                walk(f.type, f"{path}/{f.encode_name}", seen)
        for attr in ("item_type", "value_type", "type"):
            sub = getattr(info, attr, None)
            if isinstance(sub, msgspec.inspect.Type):
                walk(sub, f"{path}/*" if attr != "type" else path, seen)
        if isinstance(info, msgspec.inspect.UnionType):
            members = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
            lax = [t.cls.__qualname__ for t in members if not t.forbid_unknown_fields]
            if len(members) > 1 and lax:
                raise UsageError(
                    f"{name}: field {path or '/'} is a union of structs, and {', '.join(lax)} "
                    f"{'accepts' if len(lax) == 1 else 'accept'} unknown fields, which a union "
                    "cannot report; declare it with "
                    "forbid_unknown_fields=True")
            for t in info.types:
                walk(t, path, seen)

    walk(msgspec.inspect.type_info(cls), "", set())

