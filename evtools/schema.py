"""Schemas: typed event classes generated from JSON Schema, schemas inferred from stores,
and drift between stored events and the registered classes.

Three verbs, each a pure function over values (the store is opened only by
:func:`infer_source` and the CLI handlers)::

    source = codegen([Path("data/schemas/OrderPlaced.v2.json")])   # Python source text
    schemas = infer(store.read_all())                                # {(type, version): schema}
    report = check(store.read_all(), registry)                       # DriftReport

The schema convention
---------------------
A JSON Schema (draft 2020-12 or draft-07) describes one event type at one schema version.
Which type and version is read from the schema itself:

``x-evtools-event``
    the event type name as stored (``RawEvent.type``); defaults to ``title``.
``x-evtools-version``
    the schema version (``RawEvent.schema_version``), an integer >= 1; defaults to the
    number in a ``/v<N>`` or ``.v<N>`` part of ``$id`` (``.../OrderPlaced/v2``,
    ``OrderPlaced.v2.json``), else 1.
``x-evtools-class``
    the Python class name; defaults to ``title`` (or the event type). When two schemas in
    one run would give the same class name, each gets a ``V<version>`` suffix.

A file is either one event schema (its root carries ``x-evtools-event`` or a ``title`` and
``properties``), or a bundle whose ``$defs`` (``definitions`` in draft-07) hold several:
in a bundle, the ``$defs`` entries that carry ``x-evtools-event`` are events and the others
are shared definitions. ``$ref`` may point inside the file, to another input file by its
``$id``, or to a file by relative path. :func:`infer` writes schemas in this convention.

Codegen: which types, and which tool writes them
------------------------------------------------
Classes are written by datamodel-code-generator (``msgspec.Struct`` output); evtools
prepares the schema it reads and finishes the module it writes, and does only what the
generator does not:

=============================================  ============================================
schema                                         Python type
=============================================  ============================================
``integer`` + ``format: int64``, or bounds     ``evtools.scalars.Int64`` (narrower bounds:
exactly the int64 range                        ``Annotated[int, Meta(ge=..., le=...)]``)
``integer`` + ``format: uint64``               ``evtools.scalars.UInt64``
``number`` + ``format: decimal``               ``decimal.Decimal`` (read from the number's
                                               own text, never through float)
``string`` + ``format: decimal``               ``evtools.scalars.DecimalText`` (a string
                                               read and written back digit for digit)
``string`` + ``format: date-time``             ``evtools.scalars.Timestamp`` (keeps offset,
                                               nanoseconds and text)
``string`` + ``format: uuid``                  ``uuid.UUID``
``enum``                                       an ``enum.Enum`` subclass (decoded by value)
object with ``properties``                     a ``msgspec.Struct``; ``additionalProperties:
                                               false`` adds ``forbid_unknown_fields=True``
required property                              a field without default
optional property                              ``T | None = None`` (``optional="none"``, the
                                               default: absent is written back as
                                               ``null``) or ``T | UnsetType = UNSET``
                                               (``optional="unset"``: absent stays absent,
                                               ``null`` is refused); the schema's
                                               ``default`` when it has one, of the field's
                                               type (``Decimal("1.10")``, its own text)
several types (``type`` list, ``anyOf``)       a union; msgspec takes a custom type only
                                               beside None and one str-like type, so in a
                                               union formats fall back: ``int`` with the
                                               int64 bounds (or ``ge=0``), ``str``, and
                                               ``float`` for a decimal number beside a
                                               string
non-ASCII property key                         an ASCII field name with the key as its
                                               wire name (Python reads ``µ`` as ``μ``)
=============================================  ============================================

The generator gets these through its own extension points: format types through the
``customTypePath`` keyword, optional fields through ``nullable`` with ``strict_nullable``,
``forbid_unknown_fields`` through ``extra_template_data``. Nested objects and enums are
lifted into named ``$defs`` first, so class names are chosen here (``title``, the ``$defs``
key, or parent + property name) rather than numbered by the generator, and identical
definitions repeated across files (a ``Line`` in v1 and v2) become one class. The module
header, the import block (sorted the way ruff sorts it) and the registration calls at the
end are written here. Re-running on the same schemas (with the same generator version)
gives the same bytes: the header names the command and the files by relative path, and no
time.

Inference: what counts as proof
-------------------------------
Payloads are parsed with integers exact and every other number as a ``Decimal`` of its own
text. Over all events of one type and schema version (not a sample):

* ``int64``: every value is an integer, all fit int64, and some exceed 2^53 in magnitude
  (below that, float64 is exact and the field is a plain ``integer``); ``uint64`` when some
  exceed int64 but none is negative and all fit uint64.
* ``decimal`` (number): float64 changes at least one value's text: its value (more
  significant digits than float64 keeps, e.g. ``0.10000000000000000001``) or its scale
  (``19.90`` prints back as ``19.9``: money written with a fixed number of decimals).
  ``decimal`` (string): every value is a decimal numeral, at least one with a point.
  Integers beside other numbers without that proof: ``type: ["integer", "number"]``
  (``int | float``), so that ``1`` is not given back as ``1.0``.
* ``date-time``: every value is an RFC 3339 timestamp with a UTC offset.
* ``uuid``: every value is a UUID in lowercase 8-4-4-4-12 form (``uuid.UUID`` writes an
  uppercase one back in lowercase: those stay strings).
* ``enum``: at most ``enum_max_distinct`` (10) distinct strings over at least
  ``enum_min_values`` (20) values.
* ``required``: present (possibly ``null``) in every event; ``null`` seen: the type admits it.
* a map (``additionalProperties: <schema of every value>``, a ``dict[str, T]``), not a
  record: every object at the path is keyed by IDs (digits, or UUIDs; ``{}`` is an empty
  map) and at least three distinct keys are seen, so a key not seen yet (a new SKU) is not
  drift. Objects there that also have other keys keep it a map, of all their values (a
  map's keys are not kept as a record's fields, whichever came first).
* a value of several JSON types: ``anyOf`` one schema per type when one of them has a
  format, so that each format stays with its type (``"5.10"`` or ``7``: a decimal string
  or an integer).

The counts behind each decision are kept in the schema under ``x-evtools-evidence``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import itertools
import json
import keyword
import logging
import os
import re
import sys
import traceback
import types
import unicodedata
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import msgspec

from ._files import write_stdout, writing
from ._json import (
    escape_pointer_token,
    exact_decimal,
    find_duplicate_key,
    has_duplicate_key,
    is_invalid_utf8,
    lossless,
    strip_msgspec_path,
    unescape_pointer_token,
)
from ._types import reached
from .dialects.python import may_nest, nesting_depth
from .errors import (
    Context,
    DecodeError,
    EvtoolsError,
    InputError,
    MissingDependency,
    SchemaError,
    UnknownEventType,
    UnknownSchemaVersion,
    UpcastError,
    UsageError,
)
from .events import RawEvent
from .registry import Registry
from .scalars import DECIMAL_NUMERAL, DecimalText, Int64, Timestamp, UInt64, dec_hook

__all__ = [
    "DriftProblem",
    "DriftReport",
    "SchemaInference",
    "check",
    "cmd_codegen",
    "cmd_schema_check",
    "cmd_schema_infer",
    "codegen",
    "infer",
    "infer_source",
    "load_registry",
    "register_cli",
]

log = logging.getLogger(__name__)

SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"
EVIDENCE = "x-evtools-evidence"
OptionalStyle = Literal["none", "unset"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
FLOAT64_EXACT_INT = 2**53


DCG_MIN_VERSION = (0, 89)  # the options and output codegen relies on (tested with 0.89)


def _import_dcg() -> Any:
    try:
        import datamodel_code_generator
    except ImportError as e:
        raise MissingDependency("datamodel-code-generator", "schema") from e
    version = importlib.metadata.version("datamodel-code-generator")
    numbers = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if numbers < DCG_MIN_VERSION:
        raise UsageError(f"evtools codegen needs datamodel-code-generator >= "
                         f"{'.'.join(map(str, DCG_MIN_VERSION))}, found {version}: "
                         "pip install -U 'evtools[schema]'")
    return datamodel_code_generator


def _import_jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError as e:
        raise MissingDependency("jsonschema", "schema") from e
    return jsonschema


# =========================================================================================
# codegen
# =========================================================================================

_FORMAT_TYPES = {
    "date-time": "evtools.scalars.Timestamp",
    "uuid": "uuid.UUID",
    "decimal": "decimal.Decimal",
}
_INT_FORMATS = {"int64": (INT64_MIN, INT64_MAX), "uint64": (0, UINT64_MAX)}
_STRING_CONSTRAINTS = ("pattern", "minLength", "maxLength", "contentEncoding",
                       "contentMediaType")
_NUMBER_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                       "multipleOf")
# names the generated module imports or defines: neither a class nor the registry may
# take them
_RESERVED = frozenset({
    "Annotated", "Any", "Decimal", "DecimalText", "Enum", "Int64", "IntEnum", "Literal",
    "Meta", "Registry", "StrEnum", "Struct", "Timestamp", "TypeAlias", "UInt64", "UNSET",
    "UUID", "UnsetType", "Model", "None", "True", "False", "date", "datetime", "field",
    "time", "timedelta",
})
# ``v<N>`` as a part of the last path segment of ``$id`` (``v2``, ``OrderPlaced.v2.json``)
_VERSION_IN_ID = re.compile(r"(?:^|(?<=\.))v(\d+)(?=$|\.)")


@dataclasses.dataclass(slots=True)
class _Source:
    path: Path
    label: str  # relative path, posix, as the header and errors show it
    doc: dict[str, Any]


@dataclasses.dataclass(slots=True)
class _Root:
    source: _Source
    pointer: str
    schema: dict[str, Any]
    event_type: str
    version: int
    class_name: str = ""


def codegen(schemas: Sequence[Path | str], *, registry_name: str = "registry",
            root: Path | str | None = None, output: Path | str | None = None,
            optional: OptionalStyle = "none") -> str:
    """Python source of typed msgspec Structs for the event schemas in ``schemas``,
    registered in a module-level ``Registry`` named ``registry_name``.

    ``root`` (default: the working directory) is what the header's paths are relative
    to; ``output`` is only named in the header's regenerate command. ``optional`` chooses
    how optional properties are typed (see the module docstring). Raises
    :class:`~evtools.errors.UsageError` for a missing file or bad argument,
    :class:`~evtools.errors.DecodeError` for a file that is not JSON, and
    :class:`~evtools.errors.SchemaError` (with file and JSON path) for a schema that
    cannot be turned into classes.
    """
    if not schemas:
        raise UsageError("codegen needs at least one schema file")
    if not registry_name.isidentifier() or keyword.iskeyword(registry_name):
        raise UsageError(f"registry name {registry_name!r} is not a Python identifier")
    if registry_name in _RESERVED:
        raise UsageError(f"registry name {registry_name!r} is a name the generated module "
                         "imports or defines: choose another")
    if optional not in ("none", "unset"):
        raise UsageError(f"optional must be 'none' or 'unset', not {optional!r}")
    base = Path(root) if root is not None else Path.cwd()
    # sorted, so that the output does not depend on the order of the arguments
    unique = {Path(p).resolve(): Path(p) for p in schemas}
    try:
        sources = sorted((_load_schema_file(p, base) for p in unique.values()),
                         key=lambda s: s.label)
        roots = _find_roots(sources)
        _name_roots(roots, registry_name)
        bundler = _Bundler(sources, base, optional, reserved=_RESERVED | {registry_name})
        for r in roots:
            bundler.add_root(r)
        generated = _run_generator(bundler)
        source = _finish_module(generated, roots, [*sources, *bundler.referenced], bundler,
                                registry_name, base, output, optional, len(sources))
        _validate_generated(source, sources, bundler)
    except RecursionError as e:  # each file is shallow enough: $refs between them are not
        labels = ", ".join(sorted(_relative(p, base) for p in unique.values()))
        raise SchemaError(f"schemas nested too deeply for codegen (through $ref): "
                          f"{labels}", file=labels) from e
    return source


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def _load_schema_file(path: Path, base: Path) -> _Source:
    label = _relative(path, base)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"schema file not found: {label}", file=label) from None
    except IsADirectoryError:
        raise UsageError(f"{label} is a folder: pass the schema files in it (e.g. "
                         f"{label}/*.json)", file=label) from None
    except OSError as e:
        raise UsageError(f"cannot read schema file {label}: {e}", file=label) from e
    if may_nest(text, _MAX_SCHEMA_DEPTH + 1):
        depth = _bracket_depth(text)
        if depth > _MAX_SCHEMA_DEPTH:
            raise SchemaError(f"schema nested {depth} levels, deeper than codegen reads "
                              f"({_MAX_SCHEMA_DEPTH})", file=label, path="")
    try:
        doc = json.loads(text, parse_float=_JsonFloat)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DecodeError(f"schema is not valid JSON: {e}", file=label) from e
    if not isinstance(doc, dict):
        raise SchemaError("a JSON Schema file must hold an object", file=label, path="")
    _check_metaschema(doc, label)
    return _Source(path=path, label=label, doc=doc)


#: Schema files nested deeper are refused (JSON levels; an inferred schema takes two per
#: level of its payload): json.loads, the metaschema check and the generator all recurse,
#: and a RecursionError would name neither the file nor the reason.
_MAX_SCHEMA_DEPTH = 128
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _bracket_depth(text: bytes) -> int:
    """How deeply the JSON document ``text`` nests, counted on its bytes (strings left
    out), so that a document too deep to parse is measured without parsing it."""
    brackets = re.sub(rb"[^\[\]{}]+", b"", _JSON_STRING.sub(b"", text))
    opening = brackets.translate(None, b"]}")
    if len(opening) <= 1:
        return len(opening)
    steps = (1 if c in b"[{" else -1 for c in brackets)
    return max(itertools.accumulate(steps))


class _JsonFloat(float):
    """A JSON number with a fraction or exponent, as a float that keeps its text: a
    ``format: decimal`` default (``1.10``) is written as ``Decimal("1.10")``."""

    text: str

    def __new__(cls, text: str) -> _JsonFloat:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _check_metaschema(doc: dict[str, Any], label: str) -> None:
    """Only draft 2020-12 (the default) and draft-07 are read; the schema must be valid."""
    dialect = doc.get("$schema", SCHEMA_2020_12)
    if not isinstance(dialect, str) or not any(
            d in dialect for d in ("draft/2020-12", "draft-07", "draft/2019-09")):
        raise SchemaError(f"unsupported $schema {dialect!r}: use draft 2020-12 or draft-07",
                          file=label, path="/$schema")
    jsonschema = _import_jsonschema()
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft202012Validator)
    try:
        error = jsonschema.exceptions.best_match(cls(cls.META_SCHEMA).iter_errors(doc))
    except RecursionError as e:  # called from deep in a caller's stack
        raise SchemaError(f"schema nested {nesting_depth(doc)} levels, too deep to check "
                          "against its metaschema here", file=label, path="") from e
    if error is not None:
        pointer = "".join("/" + escape_pointer_token(str(p)) for p in error.absolute_path)
        raise SchemaError(f"not a valid JSON Schema: {error.message}", file=label,
                          path=pointer)


def _find_roots(sources: Sequence[_Source]) -> list[_Root]:
    roots: list[_Root] = []
    for src in sources:
        doc = src.doc
        found: list[_Root] = []
        for defs_key in ("$defs", "definitions"):
            defs = doc.get(defs_key)
            if isinstance(defs, dict):
                for name, sub in defs.items():
                    if isinstance(sub, dict) and "x-evtools-event" in sub:
                        pointer = f"/{defs_key}/{escape_pointer_token(name)}"
                        found.append(_root_of(src, pointer, sub))
        is_event = "x-evtools-event" in doc or (not found and "title" in doc
                                                and "properties" in doc)
        if is_event:
            found.insert(0, _root_of(src, "", doc))
        if not found and not any(isinstance(doc.get(k), dict)
                                 for k in ("$defs", "definitions")):
            raise SchemaError("no event schema found: give the root a title and properties, "
                              "or mark event schemas with x-evtools-event", file=src.label,
                              path="")
        roots.extend(found)  # a file of shared definitions only adds none
    if not roots:
        raise SchemaError("no event schema found in "
                          + ", ".join(s.label for s in sources)
                          + ": give a root a title and properties, or mark event schemas "
                            "with x-evtools-event")
    seen: dict[tuple[str, int], _Root] = {}
    for r in roots:
        key = (r.event_type, r.version)
        if key in seen:
            other = seen[key]
            raise UsageError(f"{r.event_type} v{r.version} is defined twice: in "
                             f"{other.source.label}#{other.pointer} and "
                             f"{r.source.label}#{r.pointer}", file=r.source.label)
        seen[key] = r
    return roots


def _root_of(src: _Source, pointer: str, schema: dict[str, Any]) -> _Root:
    where = Context(file=src.label, path=pointer)
    event_type = schema.get("x-evtools-event", schema.get("title"))
    if not isinstance(event_type, str) or not event_type:
        raise SchemaError("event schema has no x-evtools-event or title", where)
    version = schema.get("x-evtools-version")
    if version is None:
        version = _version_in_id(schema.get("$id")) or 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(f"x-evtools-version must be an integer >= 1, not {version!r}",
                          where.merge(Context(path=f"{pointer}/x-evtools-version")))
    if schema.get("type", "object") != "object" or not isinstance(
            schema.get("properties", {}), dict):
        raise SchemaError(f"event schema for {event_type} must be an object schema", where)
    return _Root(source=src, pointer=pointer, schema=schema, event_type=event_type,
                 version=version)


def _version_in_id(schema_id: Any) -> int | None:
    """The version the last path segment of ``$id`` names: ``.../v1/orders/OrderPlaced.v3.json``
    is version 3 (the ``v1`` before it versions the API, not the event)."""
    if not isinstance(schema_id, str):
        return None
    segment = schema_id.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    found = _VERSION_IN_ID.findall(segment)
    return int(found[-1]) if found else None


def _pascal(text: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", text)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not name:
        return "Model"
    return "T" + name if name[0].isdigit() else name


def _name_roots(roots: list[_Root], registry_name: str) -> None:
    """Give each root its class name: ``x-evtools-class``, else its title or event type in
    PascalCase. Event types that spell one name (``a.b``, ``a_b``, ``a/b``; ``list`` and
    ``List``) each add a short hash of the type, as :meth:`SchemaInference.file_names`
    does; versions of one type add ``V<version>``."""
    bases: list[str] = []
    explicit_names: list[bool] = []
    for r in roots:
        explicit = r.schema.get("x-evtools-class")
        if explicit is not None and (not isinstance(explicit, str)
                                     or not explicit.isidentifier()):
            raise SchemaError(f"x-evtools-class {explicit!r} is not a Python identifier",
                              file=r.source.label, path=f"{r.pointer}/x-evtools-class")
        title = r.schema.get("title")
        bases.append(explicit or _pascal(title if isinstance(title, str) else r.event_type))
        explicit_names.append(explicit is not None)
    types_of: defaultdict[str, set[str]] = defaultdict(set)
    for r, base in zip(roots, bases, strict=True):
        types_of[base].add(r.event_type)
    names = [base if explicit or len(types_of[base]) == 1 else base + _type_digest(r.event_type)
             for r, base, explicit in zip(roots, bases, explicit_names, strict=True)]
    counts = Counter(names)
    taken: dict[str, _Root] = {}
    for r, name, explicit in zip(roots, names, explicit_names, strict=True):
        if counts[name] > 1:
            name = f"{name}V{r.version}"
        if name in _RESERVED or name == registry_name:
            name += "Event"
        if name in taken and not explicit:  # ``Struct`` became ``StructEvent``, a type too
            name += _type_digest(r.event_type)
        if name in taken:
            raise SchemaError(f"class name {name} is given to two event schemas; "
                              "set x-evtools-class on one", file=r.source.label,
                              path=r.pointer)
        r.class_name = name
        taken[name] = r


def _type_digest(event_type: str) -> str:
    return hashlib.sha256(event_type.encode()).hexdigest()[:8]


class _Bundler:
    """Builds the one flat document the generator reads: every object and enum a named
    ``$defs`` entry, refs rewritten to it, formats mapped, optional fields marked."""

    def __init__(self, sources: Sequence[_Source], base: Path, optional: OptionalStyle,
                 reserved: frozenset[str]) -> None:
        self.sources = list(sources)
        self.base = base
        self.optional = optional
        self.defs: dict[str, dict[str, Any]] = {}
        self.forbid: set[str] = set()
        # per class: {key: ASCII field name} for keys Python would not keep as written
        self.field_names: dict[str, dict[str, str]] = {}
        # per class: {key: (type path, argument)} for defaults of a format's type
        self.defaults: dict[str, dict[str, tuple[str, str]]] = {}
        self.taken: set[str] = set(reserved)
        self._by_origin: dict[tuple[str, str], str] = {}
        self._by_content: dict[tuple[str, str], str] = {}
        self._by_id: dict[str, _Source] = {}
        self._by_path: dict[Path, _Source] = {}
        self._inlining: list[tuple[str, str]] = []
        self.referenced: list[_Source] = []  # files read because a $ref points there
        for src in self.sources:
            self._by_path[src.path.resolve()] = src
            sid = src.doc.get("$id")
            if isinstance(sid, str):
                self._by_id[sid.split("#", 1)[0]] = src

    # -- roots and named definitions -------------------------------------------------------

    def add_root(self, root: _Root) -> None:
        name = root.class_name
        self.taken.add(name)
        self._by_origin[(str(root.source.path), root.pointer)] = name
        self.defs[name] = {}  # reserve the position: roots first, in input order
        self.defs[name] = self._object(root.schema, root.source, root.pointer, name)

    def _define(self, schema: dict[str, Any], src: _Source, pointer: str,
                candidate: str) -> str:
        """A named definition for an object or enum schema (deduplicated by content)."""
        origin = (str(src.path), pointer)
        if origin in self._by_origin:
            return self._by_origin[origin]
        name = self._free_name(candidate)
        self.taken.add(name)
        self._by_origin[origin] = name
        self.defs[name] = {}
        body = (self._object(schema, src, pointer, name) if "properties" in schema
                else self._enum(schema, src, pointer))
        text = json.dumps(body, sort_keys=True, default=str)
        key = (candidate, text)
        recursive = f'"#/$defs/{name}"' in text
        if key in self._by_content and not recursive:
            existing = self._by_content[key]
            del self.defs[name]
            self.taken.discard(name)
            self.forbid.discard(name)
            self.field_names.pop(name, None)
            self.defaults.pop(name, None)
            self._by_origin[origin] = existing
            self._replace_ref(name, existing)
            return existing
        self._by_content.setdefault(key, name)
        self.defs[name] = body
        return name

    def _replace_ref(self, old: str, new: str) -> None:
        target, replacement = f"#/$defs/{old}", f"#/$defs/{new}"

        def fix(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("$ref") == target:
                    node["$ref"] = replacement
                for v in node.values():
                    fix(v)
            elif isinstance(node, list):
                for v in node:
                    fix(v)

        fix(self.defs)

    def _free_name(self, candidate: str) -> str:
        name = candidate if candidate not in _RESERVED else candidate + "Type"
        if name not in self.taken:
            return name
        n = 2
        while f"{name}{n}" in self.taken:
            n += 1
        return f"{name}{n}"

    # -- schema walking --------------------------------------------------------------------

    def _object(self, schema: dict[str, Any], src: _Source, pointer: str,
                name: str) -> dict[str, Any]:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError("properties must be an object", file=src.label,
                              path=f"{pointer}/properties")
        required = [r for r in schema.get("required", []) if r in props]
        out_props: dict[str, Any] = {}
        out_required: list[str] = []
        renamed = _ascii_field_names(props, self.taken)
        if renamed:
            self.field_names[name] = renamed
        for key, sub in props.items():
            sub_ptr = f"{pointer}/properties/{escape_pointer_token(key)}"
            prop = self._schema(sub, src, sub_ptr, name + _pascal(key))
            if key in required:
                prop.pop("default", None)  # required on the wire: a default would loosen it
                out_required.append(key)
            elif "default" in prop:
                out_required.append(key)  # the generator writes the default as is
                typed = _typed_default(prop, Context(file=src.label, path=sub_ptr))
                if typed is not None:
                    self.defaults.setdefault(name, {})[key] = typed
            elif self.optional == "none":
                prop["nullable"] = True
            out_props[key] = prop
        out: dict[str, Any] = {"type": "object", "properties": out_props}
        if out_required:
            out["required"] = out_required
        if schema.get("description"):
            out["description"] = schema["description"]
        closed = (schema.get("additionalProperties") is False
                  or schema.get("unevaluatedProperties") is False)
        if closed:
            out["additionalProperties"] = False
            self.forbid.add(name)
        elif isinstance(schema.get("additionalProperties"), dict):
            log.warning("%s#%s: additionalProperties with a schema beside properties is not "
                        "kept by a Struct; undeclared fields are ignored", src.label, pointer)
        return out

    def _enum(self, schema: dict[str, Any], src: _Source, pointer: str) -> dict[str, Any]:
        out = {k: v for k, v in schema.items() if k in ("enum", "type", "description")}
        values = out.get("enum", [])
        if all(isinstance(v, str) for v in values) and not all(v.isascii() for v in values):
            # members named as Python reads them would collide (``ﬁ`` is ``fi``): ASCII
            names = _ascii_names(dict.fromkeys(values), {"mro"})
            out["x-enum-varnames"] = [names[v] for v in values]
        return out

    def _schema(self, schema: Any, src: _Source, pointer: str, hint: str) -> dict[str, Any]:
        """The normalized form of a subschema, to place inline."""
        if schema is True or schema == {}:
            return {}
        if not isinstance(schema, dict):
            raise SchemaError("false schemas are not supported in event schemas",
                              file=src.label, path=pointer)
        if "$ref" in schema:
            return self._ref(schema, src, pointer, hint)
        schema = {k: v for k, v in schema.items() if not str(k).startswith("x-evtools-")}
        types_ = schema.get("type")
        if isinstance(types_, list) and len([t for t in types_ if t != "null"]) > 1:
            return self._schema(_split_types(schema), src, pointer, hint)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum and "properties" not in schema:
            values = [v for v in enum if v is not None]
            enum_schema = {**schema, "enum": values}
            if "type" in schema:
                enum_schema["type"] = _drop_null(schema["type"])
            named = self._define(enum_schema, src, pointer, _title_name(schema) or hint)
            out: dict[str, Any] = {"$ref": f"#/$defs/{named}"}
            if len(values) != len(enum) or _has_null(schema.get("type")):
                out = _or_null(out)
            _copy_annotations(schema, out)
            return out
        if "properties" in schema:
            named = self._define(schema, src, pointer, _title_name(schema) or hint)
            out = {"$ref": f"#/$defs/{named}"}
            if _has_null(schema.get("type")):
                out = _or_null(out)
            _copy_annotations(schema, out)
            return out
        out = dict(schema)
        for key in ("title", "$id", "$schema", "$defs", "definitions", "$comment",
                    "examples", "description"):  # field docs would become Meta noise
            out.pop(key, None)
        if isinstance(schema.get("items"), dict | bool):
            out["items"] = self._schema(schema["items"], src, f"{pointer}/items",
                                        hint + "Item")
        if isinstance(schema.get("prefixItems"), list):
            out["prefixItems"] = [self._schema(s, src, f"{pointer}/prefixItems/{i}",
                                               f"{hint}Item{i + 1}")
                                  for i, s in enumerate(schema["prefixItems"])]
        if isinstance(schema.get("additionalProperties"), dict):
            out["additionalProperties"] = self._schema(
                schema["additionalProperties"], src, f"{pointer}/additionalProperties",
                hint + "Value")
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                members = schema[key]
                n_named = sum(1 for m in members if isinstance(m, dict) and (
                    "properties" in m or "enum" in m or "items" in m))
                out[key] = [self._schema(m, src, f"{pointer}/{key}/{i}",
                                         hint if n_named <= 1 else f"{hint}Option{i + 1}")
                            for i, m in enumerate(members)]
                self._decodable_union(out[key], src, f"{pointer}/{key}")
        if isinstance(schema.get("allOf"), list):
            out["allOf"] = [self._schema(s, src, f"{pointer}/allOf/{i}", f"{hint}Part{i + 1}")
                            for i, s in enumerate(schema["allOf"])]
        return _map_format(out, src, pointer)

    def _decodable_union(self, members: list[dict[str, Any]], src: _Source,
                         pointer: str) -> None:
        """msgspec decodes a custom type (Int64, UInt64, DecimalText, Timestamp) only alone or
        beside None, and a union with at most one str-like type (str, an enum of strings,
        UUID, Decimal): inside a union, members fall back to the plain types msgspec takes
        there, so that the classes always load and decode."""
        leaves = [leaf for m in members for leaf in _union_leaves(m)
                  if leaf.get("type") != "null"]
        if len(leaves) < 2:
            return
        where = f"{src.label}#{pointer}"
        for leaf in leaves:
            custom = leaf.get("customTypePath")
            if custom == "evtools.scalars.Int64":
                continue  # Annotated[int, Meta(...)], which msgspec takes in a union
            if custom == "evtools.scalars.UInt64":
                log.warning("%s: a uint64 beside other types is an int: msgspec decodes "
                            "UInt64 only alone or beside None", where)
            elif custom == "evtools.scalars.Timestamp":
                log.warning("%s: a date-time beside other types stays a str: msgspec cannot "
                            "decode Timestamp in a union", where)
            elif custom != "evtools.scalars.DecimalText":  # a decimal string: a str, as sent
                continue
            del leaf["customTypePath"]
        str_like = [leaf for leaf in leaves if self._str_like(leaf)]
        if len(str_like) > 1:
            for leaf in str_like:
                custom = leaf.get("customTypePath")
                if custom == "decimal.Decimal":
                    log.warning("%s: a decimal number beside a string is a float: msgspec "
                                "takes one str-like type (Decimal is one) in a union", where)
                if custom in ("decimal.Decimal", "uuid.UUID"):  # a UUID: a str
                    del leaf["customTypePath"]

    def _str_like(self, leaf: dict[str, Any]) -> bool:
        """Whether msgspec counts the type ``leaf`` maps to as str-like in a union."""
        if _drop_null(leaf.get("type")) == "string" \
                or leaf.get("customTypePath") == "decimal.Decimal":
            return True
        ref = leaf.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = self.defs.get(ref[len("#/$defs/"):], {})
            return any(isinstance(v, str) for v in target.get("enum", ()))
        return False

    def _ref(self, schema: dict[str, Any], src: _Source, pointer: str,
             hint: str) -> dict[str, Any]:
        ref = schema["$ref"]
        target_src, target_ptr, target = self._resolve(ref, src, pointer)
        siblings = {k: v for k, v in schema.items()
                    if k != "$ref" and not str(k).startswith("x-evtools-")}
        candidate = _title_name(target) or _pascal(target_ptr.rsplit("/", 1)[-1]
                                                   if target_ptr else
                                                   target_src.path.stem.split(".")[0])
        if isinstance(target, dict) and ("properties" in target or (
                isinstance(target.get("enum"), list) and target["enum"])):
            if "properties" in target:
                named = self._define(target, target_src, target_ptr, candidate)
                out: dict[str, Any] = {"$ref": f"#/$defs/{named}"}
                if _has_null(target.get("type")):
                    out = _or_null(out)
            else:
                out = self._schema(target, target_src, target_ptr, candidate)
            _copy_annotations(siblings, out)
            if "default" in siblings:
                out["default"] = siblings["default"]
            return out
        # a scalar or container definition: inline it, siblings win
        origin = (str(target_src.path), target_ptr)
        if origin in self._inlining:
            raise SchemaError(f"$ref cycle through {ref!r} without an object in between",
                              file=src.label, path=pointer)
        self._inlining.append(origin)
        try:
            inlined = self._schema(target, target_src, target_ptr, hint)
        finally:
            self._inlining.pop()
        rest = self._schema(siblings, src, pointer, hint) if siblings else {}
        return {**inlined, **rest}

    def _resolve(self, ref: Any, src: _Source, pointer: str) -> tuple[_Source, str, Any]:
        where = Context(file=src.label, path=f"{pointer}/$ref")
        if not isinstance(ref, str):
            raise SchemaError("$ref must be a string", where)
        location, _, fragment = ref.partition("#")
        target_src = src
        if location:
            sid = src.doc.get("$id")
            absolute = location
            if isinstance(sid, str) and "://" in sid and "://" not in location:
                absolute = sid.rsplit("/", 1)[0] + "/" + location
            if absolute in self._by_id:
                target_src = self._by_id[absolute]
            elif location in self._by_id:
                target_src = self._by_id[location]
            elif "://" in location:
                raise SchemaError(f"remote $ref {ref!r} is not fetched: pass that schema "
                                  "file as an input too", where)
            else:
                path = (src.path.parent / location).resolve()
                if path not in self._by_path:
                    loaded = _load_schema_file(path, self.base)
                    self._by_path[path] = loaded
                    self.referenced.append(loaded)
                target_src = self._by_path[path]
        target: Any = target_src.doc
        for token in fragment.split("/")[1:] if fragment else []:
            token = unescape_pointer_token(token)
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise SchemaError(f"$ref {ref!r} points to nothing", where)
        return target_src, fragment, target


_TYPE_KEYWORDS = {
    "string": ("format", "enum", "pattern", "minLength", "maxLength"),
    "integer": ("format", *_NUMBER_CONSTRAINTS),
    "number": ("format", *_NUMBER_CONSTRAINTS),
    "array": ("items", "prefixItems", "minItems", "maxItems", "uniqueItems"),
    "object": ("properties", "required", "additionalProperties", "unevaluatedProperties",
               "title", "description"),
    "boolean": (),
}


def _split_types(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"type": ["object", "string"], ...}`` -> ``anyOf`` of one schema per type, each
    with the keywords that apply to it, so that each part maps (and is named) alone."""
    parts: list[dict[str, Any]] = []
    for t in schema["type"]:
        if t == "null":
            continue
        part: dict[str, Any] = {"type": t}
        for key in _TYPE_KEYWORDS.get(t, ()):
            if key in schema:
                part[key] = schema[key]
        fmt = part.get("format")
        if fmt is not None and not _format_applies(t, fmt):
            del part["format"]
        if "enum" in part:
            kind = {"string": str, "integer": int, "number": int | float | Decimal}
            part["enum"] = [v for v in part["enum"] if isinstance(v, kind.get(t, str))
                            and not isinstance(v, bool)]
            if not part["enum"]:
                del part["enum"]
        parts.append(part)
    if "null" in schema["type"]:
        parts.append({"type": "null"})
    out: dict[str, Any] = {"anyOf": parts}
    if "default" in schema:
        out["default"] = schema["default"]
    return out


#: the format types whose defaults codegen writes itself (the generator writes the JSON
#: value: a float for ``Decimal``, a str for ``Timestamp``)
_DEFAULT_TYPES: dict[str, Any] = {
    "decimal.Decimal": Decimal, "uuid.UUID": uuid.UUID,
    "evtools.scalars.DecimalText": DecimalText, "evtools.scalars.Timestamp": Timestamp,
    "evtools.scalars.UInt64": UInt64, "evtools.scalars.Int64": Int64,
}


def _typed_default(prop: dict[str, Any], where: Context) -> tuple[str, str] | None:
    """``(type path, argument)`` of the default of a format field, to be written as
    ``Decimal("1.10")`` (from the number's own text), ``Timestamp("...")``, ``UUID("...")``;
    ``None`` when the generator's plain value is of the field's type. A default that is no
    value of the field's type is refused."""
    leaves = [leaf for leaf in _union_leaves(prop) if leaf.get("type") != "null"]
    if not any(leaf.get("customTypePath") in _DEFAULT_TYPES for leaf in leaves):
        return None
    value = prop["default"]
    if value is None:
        return None  # null: the field's type admits it, or the generator's check says not
    kind = "number" if isinstance(value, float) else _kind_of(value)
    match = next((leaf for leaf in leaves if leaf.get("type") == kind
                  or (kind == "integer" and leaf.get("type") == "number")), None)
    if match is None and kind == "string":  # a Decimal field reads a decimal string too
        match = next((leaf for leaf in leaves
                      if leaf.get("customTypePath") == "decimal.Decimal"), None)
    shown = value.text if isinstance(value, _JsonFloat) else json.dumps(value)
    if match is None:
        raise SchemaError(f"default {shown} is not a value of the field's type", where)
    custom = match.get("customTypePath")
    if custom not in _DEFAULT_TYPES:
        return None
    arg: Any = value
    if isinstance(value, float):
        arg = value.text if isinstance(value, _JsonFloat) else repr(value)
    elif custom == "decimal.Decimal":
        arg = str(value)
    try:
        if custom != "decimal.Decimal":
            msgspec.convert(arg, _DEFAULT_TYPES[custom], dec_hook=dec_hook)
        elif not exact_decimal(arg).is_finite():
            raise ValueError("no amount is NaN or Infinity")
    except (msgspec.ValidationError, ValueError, TypeError, ArithmeticError) as e:
        name = custom.rsplit(".", 1)[-1]
        raise SchemaError(f"default {shown} is not a {name}: {strip_msgspec_path(str(e))}",
                          where) from e
    if custom == "evtools.scalars.Int64":
        return None  # an int is an Int64
    return custom, json.dumps(arg) if isinstance(arg, str) else str(arg)


def _union_leaves(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of a union, nested ``anyOf`` (``T or null``) flattened."""
    if isinstance(schema.get("anyOf"), list) and "type" not in schema and "$ref" not in schema:
        return [leaf for m in schema["anyOf"] if isinstance(m, dict)
                for leaf in _union_leaves(m)]
    return [schema]


def _ascii_field_names(props: Mapping[str, Any], taken: Iterable[str]) -> dict[str, str]:
    """An ASCII Python name for each key that is not ASCII, unique in its class.

    Python reads identifiers NFKC-normalised: a field written ``latency_µs`` (U+00B5) is
    ``latency_μs`` (U+03BC) to msgspec, and ``ﬁ`` is ``fi``, so the class would neither
    decode the key nor keep two such keys apart. These fields get an ASCII name and keep
    the key as their wire name (``field(name=...)``).
    """
    odd = [key for key in props if not key.isascii()]
    if not odd:
        return {}
    used = set(taken)
    for key in props:
        if key.isascii():  # the names the generator may give the other keys
            used.update((key, re.sub(r"\W", "_", key), key + "_"))
    return _ascii_names(odd, used)


def _ascii_names(keys: Iterable[str], used: set[str]) -> dict[str, str]:
    """:func:`_ascii_name` of each key, numbered apart from each other and from ``used``."""
    names: dict[str, str] = {}
    for key in keys:
        name = _ascii_name(key)
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}_{n}", n + 1
        used.add(candidate)
        names[key] = candidate
    return names


def _ascii_name(key: str) -> str:
    """``café`` -> ``cafe``, ``ﬁ`` -> ``fi``, ``latency_µs`` -> ``latency_u00b5_s``."""
    parts = []
    for ch in key:
        plain = "".join(c for c in unicodedata.normalize("NFKD", ch)
                        if not unicodedata.combining(c))
        parts.append(plain if plain.isascii() else f"_u{ord(ch):04x}_")
    name = re.sub(r"[^0-9A-Za-z]+", "_", "".join(parts)).strip("_") or "field"
    if name[0].isdigit():
        name = "field_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _format_applies(type_: str, fmt: Any) -> bool:
    integer = isinstance(fmt, str) and re.fullmatch(r"u?int\d+", fmt) is not None
    if type_ == "integer":
        return integer
    if type_ == "number":
        return fmt in ("decimal", "float", "double") or integer
    return type_ == "string" and not integer and fmt not in ("float", "double")


def _title_name(schema: Any) -> str:
    if isinstance(schema, dict) and isinstance(schema.get("title"), str):
        return _pascal(schema["title"])
    return ""


def _has_null(type_: Any) -> bool:
    return type_ == "null" or (isinstance(type_, list) and "null" in type_)


def _drop_null(type_: Any) -> Any:
    if isinstance(type_, list):
        rest = [t for t in type_ if t != "null"]
        return rest[0] if len(rest) == 1 else rest
    return type_


def _copy_annotations(source: Mapping[str, Any], out: dict[str, Any]) -> None:
    if "default" in source:
        out["default"] = source["default"]


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (the generator keeps ``nullable`` only on properties)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _map_format(schema: dict[str, Any], src: _Source, pointer: str) -> dict[str, Any]:
    """Point the generator at the exact Python type of a format (``customTypePath``)."""
    type_ = schema.get("type")
    base = _drop_null(type_)
    fmt = schema.get("format")
    if base == "integer":
        lo, hi = _INT_FORMATS.get(fmt, (None, None)) if isinstance(fmt, str) else (None, None)
        lo = _max_opt(lo, _int_bound(schema.get("minimum"), True),
                      _int_bound(schema.get("exclusiveMinimum"), True, 1))
        hi = _min_opt(hi, _int_bound(schema.get("maximum"), False),
                      _int_bound(schema.get("exclusiveMaximum"), False, -1))
        custom = {(INT64_MIN, INT64_MAX): "evtools.scalars.Int64",
                  (0, UINT64_MAX): "evtools.scalars.UInt64"}.get((lo, hi))  # type: ignore[arg-type]
        if custom is not None or fmt in _INT_FORMATS:
            for key in (*_NUMBER_CONSTRAINTS[:4], "format"):
                schema.pop(key, None)
            if custom is not None:
                schema["customTypePath"] = custom
            else:
                if lo is not None:
                    schema["minimum"] = lo
                if hi is not None:
                    schema["maximum"] = hi
    elif fmt in _FORMAT_TYPES and base in (("number", "string") if fmt == "decimal"
                                           else ("string",)):
        dropped = [k for k in (*_STRING_CONSTRAINTS, *_NUMBER_CONSTRAINTS) if k in schema]
        if dropped:
            log.warning("%s#%s: %s is not checked on a %s field (msgspec cannot constrain "
                        "%s)", src.label, pointer, ", ".join(dropped), fmt,
                        _FORMAT_TYPES[fmt].rsplit(".", 1)[-1])
        for key in (*dropped, "format"):
            schema.pop(key, None)
        schema["customTypePath"] = (
            "evtools.scalars.DecimalText" if fmt == "decimal" and base == "string"
            else _FORMAT_TYPES[fmt])  # money sent as text is written back as text
    else:
        return schema
    if _has_null(type_):
        schema["type"] = base
        default = schema.pop("default", _NO_DEFAULT)
        schema = _or_null(schema)
        if default is not _NO_DEFAULT:
            schema["default"] = default
    return schema


_NO_DEFAULT = object()


def _int_bound(value: Any, lower: bool, shift: int = 0) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        value = Decimal(value)
        exact = int(value.to_integral_value(rounding="ROUND_CEILING" if lower
                                            else "ROUND_FLOOR"))
        return exact + shift if exact == value or not shift else exact
    return value + shift


def _max_opt(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min_opt(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _run_generator(bundler: _Bundler) -> str:
    dcg = _import_dcg()
    from datamodel_code_generator.format import Formatter

    document = {"$schema": SCHEMA_2020_12, "$defs": bundler.defs}
    template_data: defaultdict[str, dict[str, Any]] = defaultdict(dict)
    for name in sorted(bundler.forbid):
        template_data[f"#/$defs/{name}"] = {"base_class_kwargs":
                                            {"forbid_unknown_fields": True}}
    aliases = {f"{name}.{key}": field_name
               for name, renamed in sorted(bundler.field_names.items())
               for key, field_name in renamed.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = dcg.generate(
                document,
                input_file_type=dcg.InputFileType.JsonSchema,
                output_model_type=dcg.DataModelType.MsgspecStruct,
                target_python_version=dcg.PythonVersion.PY_311,
                formatters=[Formatter.BUILTIN],
                builtin_format_line_length=100,
                disable_timestamp=True,
                use_annotated=True,
                use_union_operator=True,
                use_standard_collections=True,
                use_double_quotes=True,
                use_schema_description=True,
                skip_root_model=True,
                strict_nullable=True,
                set_default_enum_member=True,
                apply_default_values_for_required_fields=True,
                extra_template_data=template_data,
                aliases=aliases or None,
            )
        except EvtoolsError:
            raise
        except Exception as e:
            raise SchemaError(f"datamodel-code-generator failed: {type(e).__name__}: {e}") \
                from e
    for w in caught:
        if bundler.defaults and "emitted as serialized data instead of Decimal" in str(
                w.message):
            continue  # a Decimal default: _write_defaults writes it from its own text
        if not issubclass(w.category, DeprecationWarning | FutureWarning):
            log.warning("datamodel-code-generator: %s", w.message)
    if not isinstance(result, str):
        raise SchemaError("datamodel-code-generator wrote several modules, expected one")
    return result


# -- the module around the generated classes ------------------------------------------------

def _finish_module(generated: str, roots: Sequence[_Root], sources: Sequence[_Source],
                   bundler: _Bundler, registry_name: str, base: Path,
                   output: Path | str | None, optional: OptionalStyle, n_inputs: int) -> str:
    tree = ast.parse(generated)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    for r in roots:
        if r.class_name not in classes:
            raise SchemaError(f"datamodel-code-generator did not write class {r.class_name} "
                              f"(for {r.event_type} v{r.version})", file=r.source.label,
                              path=r.pointer)
    if registry_name in classes:
        raise UsageError(f"registry name {registry_name!r} is also a generated class name")
    local = _imported_names(tree)
    if registry_name in local.values():
        raise UsageError(f"registry name {registry_name!r} is a name the generated module "
                         "imports: choose another")
    if bundler.defaults:
        generated = _write_defaults(generated, tree, bundler, local)
        tree = ast.parse(generated)
    imports: dict[str, set[str]] = defaultdict(set)
    plain: set[str] = set()
    last_import = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module != "__future__":
                for alias in node.names:
                    imports[node.module].add(_alias_text(alias))
            last_import = node.end_lineno or node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                plain.add(_alias_text(alias))
            last_import = node.end_lineno or node.lineno
        elif not isinstance(node, ast.Expr):
            break
    imports["evtools.registry"].add("Registry")
    body = "\n".join(generated.splitlines()[last_import:]).strip("\n")
    lines = [*_header(sources, registry_name, base, output, optional, n_inputs), "",
             "from __future__ import annotations", "", _import_block(imports, plain), "",
             f"{registry_name} = Registry()", "", "", body, "", ""]
    for r in sorted(roots, key=lambda r: (r.event_type, r.version)):
        lines.append(f"{registry_name}.register({r.class_name}, "
                     f"name={json.dumps(r.event_type)}, version={r.version})")
    return "\n".join(lines) + "\n"


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """``{"module.name": local name}`` of the generated module's ``from`` imports."""
    return {f"{node.module}.{alias.name}": alias.asname or alias.name
            for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names}


def _write_defaults(generated: str, tree: ast.Module, bundler: _Bundler,
                    local: Mapping[str, str]) -> str:
    """The generated source with each format field's default written as a value of its type
    (``Decimal("1.10")`` where the generator wrote ``1.1``)."""
    data = generated.encode()
    starts = [0, *itertools.accumulate(len(line) for line in data.splitlines(keepends=True))]
    edits: list[tuple[int, int, bytes]] = []
    bodies = {n.name: n.body for n in tree.body if isinstance(n, ast.ClassDef)}
    for class_name, defaults in bundler.defaults.items():
        found: set[str] = set()
        for stmt in bodies.get(class_name, []):
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name) \
                    or stmt.value is None:
                continue
            wire, node = stmt.target.id, stmt.value
            if isinstance(node, ast.Call):  # field(name="key", default=...)
                kw = {k.arg: k.value for k in node.keywords if k.arg}
                key = kw.get("name")
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    wire = key.value
                node = kw.get("default", node)
            if wire not in defaults or node.end_lineno is None \
                    or node.end_col_offset is None:
                continue
            type_path, arg = defaults[wire]
            name = local.get(type_path)
            if name is None:
                break
            found.add(wire)
            edits.append((starts[node.lineno - 1] + node.col_offset,
                          starts[node.end_lineno - 1] + node.end_col_offset,
                          f"{name}({arg})".encode()))
        missing = sorted(defaults.keys() - found)
        if missing:
            raise SchemaError(f"could not write the default of {class_name}.{missing[0]} as "
                              f"a {defaults[missing[0]][0].rsplit('.', 1)[-1]}")
    for start, end, text in sorted(edits, reverse=True):
        data = data[:start] + text + data[end:]
    return data.decode()


def _alias_text(alias: ast.alias) -> str:
    return f"{alias.name} as {alias.asname}" if alias.asname else alias.name


def _header(sources: Sequence[_Source], registry_name: str, base: Path,
            output: Path | str | None, optional: OptionalStyle, n_inputs: int) -> list[str]:
    command = ["evtools codegen", *(s.label for s in sources[:n_inputs])]
    if output is not None:
        command.append(f"-o {_relative(Path(output), base)}")
    if registry_name != "registry":
        command.append(f"--registry-name {registry_name}")
    if optional != "none":
        command.append(f"--optional {optional}")
    lines = ["# Generated by evtools codegen (datamodel-code-generator, msgspec.Struct output)",
             "# from JSON Schema. Do not edit: change the schemas and run again:", "#",
             f"#   {command[0]} \\"]
    for i, part in enumerate(command[1:], 1):
        lines.append(f"#       {part}" + (" \\" if i < len(command) - 1 else ""))
    if len(sources) > n_inputs:
        lines.append("#")
        lines.append("# Also read, through $ref:")
        lines.extend(f"#   {s.label}" for s in sources[n_inputs:])
    lines += ["#",
              f"# Each event class is registered in `{registry_name}` under the type and schema "
              "version",
              "# its schema declares (x-evtools-event, x-evtools-version). Decoding lifts "
              "every event",
              "# to the latest version of its type: an older version needs an upcaster "
              "(add_upcaster).",
              "# ruff: noqa: I001, RUF100 - evtools is first party in its own repository, third "
              "party in yours"]
    return lines


def _import_section(module: str) -> int:
    top = module.split(".")[0]
    if top == "evtools":
        return 2
    return 0 if top in sys.stdlib_module_names else 1


def _member_key(name: str) -> tuple[int, str]:
    bare = name.split(" as ")[0]
    if bare.isupper() and len(bare) > 1:
        return (0, bare)
    return (1, bare) if bare[:1].isupper() else (2, bare)


def _import_block(imports: Mapping[str, set[str]], plain: set[str]) -> str:
    """The import block as ruff's isort rules order it (stdlib, third party, evtools)."""
    sections: list[list[str]] = [[], [], []]
    for name in sorted(plain, key=lambda n: (n.lower(), n)):
        sections[_import_section(name)].append(f"import {name}")
    for module in sorted(imports, key=lambda m: (m.lower(), m)):
        names = sorted(imports[module], key=_member_key)
        line = f"from {module} import {', '.join(names)}"
        if len(line) > 100:
            line = f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"
        sections[_import_section(module)].append(line)
    return "\n\n".join("\n".join(s) for s in sections if s)


def _validate_generated(source: str, sources: Sequence[_Source], bundler: _Bundler) -> None:
    """Import the module once so that a class msgspec or the registry refuses is reported
    now, with its name, rather than when someone imports the file; then check that each
    class reads the keys its schema names, and that its defaults are of its types."""
    name = "_evtools_codegen_check"
    module = types.ModuleType(name)
    sys.modules[name] = module
    files = ", ".join(s.label for s in sources)
    try:
        exec(compile(source, "<codegen>", "exec"), module.__dict__)
        for class_name, body in bundler.defs.items():
            cls = module.__dict__.get(class_name)
            if isinstance(cls, type) and issubclass(cls, msgspec.Struct) \
                    and "properties" in body:
                _check_fields(cls, body["properties"], files)
    except SchemaError:
        raise
    except Exception as e:
        line = ""
        for frame in traceback.extract_tb(e.__traceback__):
            if frame.filename == "<codegen>" and frame.lineno is not None:
                line = source.splitlines()[frame.lineno - 1].strip()
        text = e.message if isinstance(e, EvtoolsError) else f"{type(e).__name__}: {e}"
        raise SchemaError(f"the generated module does not load ({line}): {text}",
                          file=files) from e
    finally:
        del sys.modules[name]


def _check_fields(cls: type, properties: Mapping[str, Any], files: str) -> None:
    """The wire names of ``cls`` are its schema's keys, and each default is a value of its
    field's type (a generator that wrote ``ﬁ`` as a field would have made it ``fi``)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    wire = [f.encode_name for f in info.fields]
    if sorted(wire) != sorted(properties):
        missing = sorted(set(properties) - set(wire)) or sorted(properties)
        raise SchemaError(f"class {cls.__name__} does not read its schema's keys as written "
                          f"(missing {', '.join(map(repr, missing))}, has "
                          f"{', '.join(map(repr, wire))})", file=files)
    for f in info.fields:
        default = f.default
        if default is msgspec.NODEFAULT or default is msgspec.UNSET or default is None:
            continue
        expected: list[type] = []
        for t in _members(f.type):
            if isinstance(t, msgspec.inspect.CustomType):
                expected.append(t.cls)
            elif type(t) in _BUILTIN_OF:
                expected.append(_BUILTIN_OF[type(t)])
            elif not isinstance(t, msgspec.inspect.NoneType):
                break  # a union with a plain type: the generator's value is one of them
        else:
            if expected and not isinstance(default, tuple(expected)):
                raise SchemaError(f"default of {cls.__name__}.{f.name} is {default!r}, "
                                  f"not a {' or '.join(t.__name__ for t in expected)}",
                                  file=files)


# the format types a default must be an instance of
_BUILTIN_OF: dict[type, type] = {msgspec.inspect.DecimalType: Decimal,
                                 msgspec.inspect.UUIDType: uuid.UUID}


def _members(info: Any) -> list[Any]:
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        return [m for t in info.types for m in _members(t)]
    return [info]


# =========================================================================================
# infer
# =========================================================================================

# lowercase only: uuid.UUID writes an uppercase one back in lowercase (its text lost), so
# those stay strings; a map keeps its keys' text, so an uppercase one is an ID key still
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_KEY = re.compile(_UUID.pattern, re.IGNORECASE)
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
_ID_KEY = re.compile(r"-?[0-9]+")
#: distinct ID keys that make objects a map rather than a record with odd field names
_MAP_MIN_KEYS = 3
#: the counters of a _Node, summed when two are merged
_NODE_COUNTS = ("present", "nulls", "bools", "ints", "int_above_53", "numbers",
                "dec_value_loss", "dec_text_loss", "strings", "ts_offset", "ts_no_offset",
                "ts_subus", "uuids", "decimal_strings", "with_point", "objects", "map_objects",
                "arrays")
_MAX_TRACKED_SCALES = 16


def _is_id_key(key: str) -> bool:
    return bool(_ID_KEY.fullmatch(key) or _UUID_KEY.fullmatch(key))


class _Node:
    """What one JSON path held across all events of a type: counts by kind and proofs."""

    __slots__ = (
        "arrays",
        "bools",
        "dec_text_loss",
        "dec_value_loss",
        "decimal_strings",
        "distinct",
        "int_above_53",
        "int_max",
        "int_min",
        "ints",
        "item",
        "map_item",
        "map_keys",
        "map_objects",
        "map_only",
        "max_items",
        "max_sig_digits",
        "nulls",
        "numbers",
        "objects",
        "present",
        "props",
        "scales",
        "strings",
        "ts_no_offset",
        "ts_offset",
        "ts_subus",
        "uuids",
        "with_point",
    )

    def __init__(self) -> None:
        self.present = 0
        self.nulls = 0
        self.bools = 0
        self.ints = 0
        self.int_min: int | None = None
        self.int_max: int | None = None
        self.int_above_53 = 0
        self.numbers = 0  # non-integer tokens (read as Decimal)
        self.dec_value_loss = 0
        self.dec_text_loss = 0
        self.max_sig_digits = 0
        self.scales: set[int] | None = set()
        self.strings = 0
        self.ts_offset = 0
        self.ts_no_offset = 0
        self.ts_subus = 0
        self.uuids = 0
        self.decimal_strings = 0
        self.with_point = 0
        self.distinct: dict[str, int] | None = {}
        self.objects = 0
        self.props: dict[str, _Node] = {}
        # objects whose keys are all IDs (digits or UUIDs), or none: maybe a map, not a
        # record
        self.map_objects = 0
        self.map_keys: set[str] = set()  # the first _MAP_MIN_KEYS distinct keys
        self.map_item: _Node | None = None  # every value of those objects
        # a map seen (every object so far keyed by IDs, _MAP_MIN_KEYS distinct): props is
        # no longer kept (a key per SKU), map_item holds every value of every object
        self.map_only = False
        self.arrays = 0
        self.max_items = 0
        self.item: _Node | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _InferOptions:
    enum_max_distinct: int
    enum_min_values: int
    closed: bool



#: Payloads nested deeper are not inferred from (counted unreadable, with the reason): the
#: walk recurses, and their JSON Schema (two levels a level) outgrows what json writes.
_MAX_DEPTH = 256

class _Unreadable(ValueError):
    """A payload inference cannot read; ``reason`` is what is counted of it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Inferrer:
    def __init__(self, options: _InferOptions) -> None:
        self.options = options
        self.roots: dict[tuple[str, int], _Node] = {}
        self.events: Counter[tuple[str, int]] = Counter()
        self.invalid: Counter[tuple[str, int]] = Counter()
        self.invalid_examples: dict[tuple[str, int], str] = {}
        self.reasons: Counter[str] = Counter()  # why payloads were unreadable, all types

    def add(self, raw: RawEvent) -> None:
        key = (raw.type, raw.schema_version)
        self.events[key] += 1
        try:
            payload = self._payload(raw)
        except _Unreadable as e:
            self.invalid[key] += 1
            self.reasons[e.reason] += 1
            self.invalid_examples.setdefault(
                key, f"stream {raw.stream!r} version {raw.version}: {e}")
            return
        node = self.roots.get(key)
        if node is None:
            node = self.roots[key] = _Node()
        self._visit(node, payload)

    @staticmethod
    def _payload(raw: RawEvent) -> dict[str, Any]:
        """The payload as inference reads it, or :class:`_Unreadable` saying why not."""
        if not raw.is_json:
            raise _Unreadable("not JSON", f"content type {raw.content_type!r} is not JSON")
        try:
            payload = lossless.decode(raw.data)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:
            raise _Unreadable("invalid UTF-8" if is_invalid_utf8(e) else "not JSON",
                              str(e)) from e
        except RecursionError as e:
            raise _Unreadable("nested too deep", f"nested too deep to decode: {e}") from e
        if not isinstance(payload, dict):
            raise _Unreadable("not an object", "payload is not a JSON object")
        if may_nest(raw.data, _MAX_DEPTH + 1):
            depth = nesting_depth(payload)
            if depth > _MAX_DEPTH:
                raise _Unreadable("nested too deep",
                                  f"nested {depth} levels, deeper than inference goes "
                                  f"({_MAX_DEPTH}): its JSON Schema, two levels a level, "
                                  f"could not be written")
        if has_duplicate_key(raw.data, payload):  # decoding kept the last value alone
            pointer, name = find_duplicate_key(raw.data) or ("", "?")
            raise _Unreadable("with a key repeated",
                              f"duplicate key {name!r} in {pointer or '/'} (Go and "
                              "JavaScript silently keep the last value)")
        return payload

    def _visit(self, node: _Node, value: Any) -> None:
        node.present += 1
        if value is None:
            node.nulls += 1
        elif isinstance(value, bool):
            node.bools += 1
        elif isinstance(value, int):
            self._int(node, value)
        elif isinstance(value, Decimal):
            self._decimal(node, value)
        elif isinstance(value, str):
            self._string(node, value)
        elif isinstance(value, dict):
            node.objects += 1
            if all(map(_is_id_key, value)):  # {} too: an empty map is a map
                node.map_objects += 1  # also seen as a map's values
                keys = node.map_keys
                for key in itertools.islice(value, _MAP_MIN_KEYS):
                    if len(keys) >= _MAP_MIN_KEYS:
                        break
                    keys.add(key)
                if value:
                    if node.map_item is None:
                        node.map_item = _Node()
                    for item in value.values():
                        self._visit(node.map_item, item)
                if node.map_only:
                    return
                if len(keys) >= _MAP_MIN_KEYS:  # a key per SKU: no longer kept as a record's
                    if node.map_objects != node.objects:  # records first: their values too
                        merged = self._values_of(node)
                        for item in value.values():
                            self._visit(merged, item)
                        node.map_item = merged
                    node.map_only = True
                    node.props = {}
                    return
            elif node.map_only:  # a map, now with other keys too: a map of all values
                assert node.map_item is not None
                for item in value.values():
                    self._visit(node.map_item, item)
                return
            for key, item in value.items():
                child = node.props.get(key)
                if child is None:
                    child = node.props[key] = _Node()
                self._visit(child, item)
        elif isinstance(value, list):
            node.arrays += 1
            node.max_items = max(node.max_items, len(value))
            if value and node.item is None:
                node.item = _Node()
            for item in value:
                assert node.item is not None
                self._visit(node.item, item)

    @staticmethod
    def _int(node: _Node, value: int) -> None:
        node.ints += 1
        node.int_min = value if node.int_min is None else min(node.int_min, value)
        node.int_max = value if node.int_max is None else max(node.int_max, value)
        if abs(value) > FLOAT64_EXACT_INT:
            node.int_above_53 += 1

    @staticmethod
    def _decimal(node: _Node, value: Decimal) -> None:
        node.numbers += 1
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)  # JSON has no NaN or Infinity
        node.max_sig_digits = max(node.max_sig_digits, len(digits))
        if node.scales is not None:
            node.scales.add(max(0, -exponent))
            if len(node.scales) > _MAX_TRACKED_SCALES:
                node.scales = None
        try:
            shortest = Decimal(repr(float(value)))
        except OverflowError:
            node.dec_value_loss += 1
            return
        if not shortest.is_finite() or shortest != value:
            node.dec_value_loss += 1
        else:
            back = shortest.as_tuple().exponent
            assert isinstance(back, int)
            if exponent < 0 and exponent < back:
                node.dec_text_loss += 1  # 19.90 prints back as 19.9

    def _string(self, node: _Node, value: str) -> None:
        node.strings += 1
        try:
            Timestamp(value)
            node.ts_offset += 1
            frac = re.search(r"\.(\d+)", value)
            if frac and len(frac.group(1)) > 6:
                node.ts_subus += 1
        except ValueError:
            if _NO_OFFSET.fullmatch(value):
                node.ts_no_offset += 1
        if _UUID.fullmatch(value):
            node.uuids += 1
        if DECIMAL_NUMERAL.fullmatch(value):  # what DecimalText reads: codegen maps to it
            node.decimal_strings += 1
            if "." in value:
                node.with_point += 1
        if node.distinct is not None:
            node.distinct[value] = node.distinct.get(value, 0) + 1
            if len(node.distinct) > self.options.enum_max_distinct:
                node.distinct = None

    # -- schema writing --------------------------------------------------------------------

    def schemas(self) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for key in sorted(self.roots):
            event_type, version = key
            node = self.roots[key]
            body = self._schema(node)
            schema: dict[str, Any] = {
                "$schema": SCHEMA_2020_12,
                "title": event_type,
                "x-evtools-event": event_type,
                "x-evtools-version": version,
                **body,
            }
            schema[EVIDENCE] = {"events": self.events[key], "decoded": node.present,
                                "invalid": self.invalid[key]}
            out[key] = schema
        return out

    def _schema(self, node: _Node) -> dict[str, Any]:
        # (JSON type, the keywords that describe its values)
        parts: list[tuple[str, dict[str, Any]]] = []
        evidence: dict[str, Any] = {"values": node.present}
        if node.nulls:
            evidence["null"] = node.nulls
        values = self._map_values(node) if node.objects else None
        if values is not None:
            # keyed by IDs (an order's lines by SKU): a map, open to keys not seen yet
            parts.append(("object", {"additionalProperties": self._schema(values)}))
            evidence["objects"] = node.objects
            evidence["map"] = f"every key an ID (digits or a UUID); at least " \
                              f"{len(node.map_keys)} distinct"
            if node.map_objects < node.objects:
                evidence["map"] += f"; {node.objects - node.map_objects} of {node.objects} " \
                                   "objects have other keys too: their values are the map's"
        elif node.objects:
            record: dict[str, Any] = {}
            props = {}
            required = []
            for key, child in node.props.items():
                props[key] = self._schema(child)
                if child.present == node.objects:
                    required.append(key)
            record["properties"] = props
            if required:
                record["required"] = required
            if self.options.closed:
                record["additionalProperties"] = False
            parts.append(("object", record))
            evidence["objects"] = node.objects
        if node.arrays:
            parts.append(("array", {"items": self._schema(node.item)
                                    if node.item is not None else {}}))
            evidence["arrays"] = node.arrays
            evidence["max_items"] = node.max_items
        if node.strings:
            parts.append(("string", {}))
            self._string_schema(node, parts[-1][1], evidence)
        if node.numbers:
            number: dict[str, Any] = {}
            self._number_schema(node, number, evidence)
            if node.ints and "format" not in number:
                # float64 holds these ints exactly, but a float field would give 1 back as
                # 1.0: the ints keep a type of their own (int | float)
                parts.append(("integer", {}))
            parts.append(("number", number))
        elif node.ints:
            parts.append(("integer", {}))
            self._integer_schema(node, parts[-1][1], evidence)
        if node.bools:
            parts.append(("boolean", {}))
            evidence["booleans"] = node.bools
        schema: dict[str, Any]
        if len(parts) > 1 and any("format" in keywords for _, keywords in parts):
            # a format describes one type (decimal: a string's or a number's): each its own
            schema = {"anyOf": [{"type": t, **keywords} for t, keywords in parts]}
            if node.nulls:
                schema["anyOf"].append({"type": "null"})
        else:
            types_ = [t for t, _ in parts] + (["null"] if node.nulls else [])
            schema = {k: v for _, keywords in parts for k, v in keywords.items()}
            if types_:
                schema = {"type": types_[0] if len(types_) == 1 else types_, **schema}
        schema[EVIDENCE] = evidence
        return schema

    def _map_values(self, node: _Node) -> _Node | None:
        """Every value of the objects at ``node`` when they make a map, else None.

        Objects keyed by IDs only, ``_MAP_MIN_KEYS`` distinct, make a map; objects there with
        other keys as well keep it one, of all their values (whichever came first: a map
        seen first no longer has its keys as a record's)."""
        if node.map_only:
            return node.map_item
        if len(node.map_keys) < _MAP_MIN_KEYS:
            return None
        if node.map_objects == node.objects:
            return node.map_item
        return self._values_of(node)

    def _merge(self, into: _Node, other: _Node) -> None:
        """Add to ``into`` (a node of its own, not a visited one) what ``other`` saw, as if
        it had visited those values too."""
        for name in _NODE_COUNTS:
            setattr(into, name, getattr(into, name) + getattr(other, name))
        into.int_min = _min_opt(into.int_min, other.int_min)
        into.int_max = _max_opt(into.int_max, other.int_max)
        into.max_sig_digits = max(into.max_sig_digits, other.max_sig_digits)
        into.max_items = max(into.max_items, other.max_items)
        if into.scales is not None:
            into.scales = None if other.scales is None else into.scales | other.scales
            if into.scales is not None and len(into.scales) > _MAX_TRACKED_SCALES:
                into.scales = None
        if into.distinct is not None:
            if other.distinct is None:
                into.distinct = None
            else:
                for text, count in other.distinct.items():
                    into.distinct[text] = into.distinct.get(text, 0) + count
                if len(into.distinct) > self.options.enum_max_distinct:
                    into.distinct = None
        for key in other.map_keys:
            if len(into.map_keys) >= _MAP_MIN_KEYS:
                break
            into.map_keys.add(key)
        if other.map_only and not into.map_only:
            into.map_item = self._values_of(into)
            into.props = {}
            into.map_only = True
        if into.map_only:
            values = other.map_item if other.map_only else self._values_of(other)
            if values is not None:
                self._merge(self._map_item(into), values)
        else:
            for key, child in other.props.items():
                self._merge(into.props.setdefault(key, _Node()), child)
            if other.map_item is not None:
                self._merge(self._map_item(into), other.map_item)
        if other.item is not None:
            if into.item is None:
                into.item = _Node()
            self._merge(into.item, other.item)

    def _values_of(self, node: _Node) -> _Node:
        """Every value of the objects at ``node`` (kept as a record's), in a node of its own."""
        values = _Node()
        for child in node.props.values():
            self._merge(values, child)
        return values

    @staticmethod
    def _map_item(node: _Node) -> _Node:
        if node.map_item is None:
            node.map_item = _Node()
        return node.map_item

    def _integer_schema(self, node: _Node, schema: dict[str, Any],
                        evidence: dict[str, Any]) -> None:
        lo, hi = node.int_min, node.int_max
        assert lo is not None and hi is not None
        evidence.update(integers=node.ints, above_2_53=node.int_above_53, min=str(lo),
                        max=str(hi))
        if node.int_above_53 and lo >= INT64_MIN and hi <= INT64_MAX:
            schema["format"] = "int64"
        elif node.int_above_53 and lo >= 0 and hi <= UINT64_MAX:
            schema["format"] = "uint64"

    def _number_schema(self, node: _Node, schema: dict[str, Any],
                       evidence: dict[str, Any]) -> None:
        int_loss = 0
        if node.ints:
            assert node.int_min is not None and node.int_max is not None
            int_loss = node.int_above_53
            evidence.update(integers=node.ints, above_2_53=node.int_above_53)
        evidence.update(non_integers=node.numbers, float64_value_loss=node.dec_value_loss,
                        float64_scale_loss=node.dec_text_loss,
                        max_significant_digits=node.max_sig_digits)
        if node.scales is not None:
            evidence["scales"] = sorted(node.scales)
        if node.dec_value_loss + node.dec_text_loss + int_loss:
            schema["format"] = "decimal"

    def _string_schema(self, node: _Node, schema: dict[str, Any],
                       evidence: dict[str, Any]) -> None:
        n = node.strings
        evidence["strings"] = n
        for label, count in (("rfc3339_with_offset", node.ts_offset),
                             ("rfc3339_without_offset", node.ts_no_offset),
                             ("sub_microsecond", node.ts_subus), ("uuid", node.uuids),
                             ("decimal_text", node.decimal_strings)):
            if count:
                evidence[label] = count
        if node.distinct is not None:
            evidence["distinct"] = len(node.distinct)
        opts = self.options
        if node.ts_offset == n:
            schema["format"] = "date-time"
        elif node.uuids == n:
            schema["format"] = "uuid"
        elif node.decimal_strings == n and node.with_point:
            schema["format"] = "decimal"
        elif (node.distinct is not None and len(node.distinct) <= opts.enum_max_distinct
              and n >= opts.enum_min_values and n + node.nulls == node.present):
            # (enum restricts the whole value: only for fields that hold strings or null)
            values: list[Any] = sorted(node.distinct)
            if node.nulls:
                values.append(None)
            schema["enum"] = values
            evidence["enum_rule"] = (f"<= {opts.enum_max_distinct} distinct over "
                                     f">= {opts.enum_min_values} values")


def infer(events: Iterable[RawEvent], *, enum_max_distinct: int = 10,
          enum_min_values: int = 20,
          closed: bool = True) -> dict[tuple[str, int], dict[str, Any]]:
    """One JSON Schema (draft 2020-12) per (event type, schema version) in ``events``.

    Each property carries the formats the data proves (see the module docstring) and the
    counts behind them under ``x-evtools-evidence``. ``closed`` writes
    ``additionalProperties: false`` (a field never seen is drift). Payloads that cannot be
    read (not a JSON object, not JSON or not UTF-8, a key repeated, nested deeper than
    inference goes) are counted (``invalid`` in the root evidence) and otherwise skipped.
    """
    return _run_inference(events, enum_max_distinct, enum_min_values, closed).schemas()


def _run_inference(events: Iterable[RawEvent], enum_max_distinct: int, enum_min_values: int,
                   closed: bool) -> _Inferrer:
    if enum_max_distinct < 1 or enum_min_values < 1:
        raise UsageError("enum_max_distinct and enum_min_values must be at least 1")
    inferrer = _Inferrer(_InferOptions(enum_max_distinct, enum_min_values, closed))
    for raw in events:
        inferrer.add(raw)
    return inferrer


@dataclasses.dataclass(frozen=True)
class SchemaInference:
    """What :func:`infer_source` found: the schemas and the counts behind them."""

    source: str
    schemas: dict[tuple[str, int], dict[str, Any]]
    events: dict[tuple[str, int], int]
    invalid: dict[tuple[str, int], int]
    invalid_examples: dict[tuple[str, int], str]

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @staticmethod
    def file_name(event_type: str, version: int) -> str:
        """``OrderPlaced.v2.json`` (characters unsafe in file names become ``_``)."""
        return f"{re.sub(r'[^0-9A-Za-z_-]', '_', event_type)}.v{version}.json"

    def file_names(self) -> dict[tuple[str, int], str]:
        """:meth:`file_name` of each schema, made unique: types that differ only in
        characters a file name cannot hold (``a.b``, ``a/b``, ``a_b``) each get a short hash
        of the type name (``a_b-1f0e3c2a.v1.json``) instead of overwriting one another."""
        names = {key: self.file_name(*key) for key in self.schemas}
        counts = Counter(names.values())
        for (event_type, version), name in names.items():
            if counts[name] > 1:
                names[(event_type, version)] = self.file_name(
                    f"{event_type}-{_type_digest(event_type)}", version)
        return names

    def write(self, out_dir: Path | str) -> list[Path]:
        """Write one ``<type>.v<version>.json`` per schema into ``out_dir``."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot write into {out}: {e.strerror or e}") from e
        written = []
        names = self.file_names()
        for key, schema in self.schemas.items():
            path = out / names[key]
            with writing(path) as fh:
                fh.write(dump_schema(schema))
            written.append(path)
        return written

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "events": self.total_events,
            "types": [{"event_type": t, "schema_version": v, "events": n,
                       "invalid": self.invalid.get((t, v), 0),
                       "invalid_example": self.invalid_examples.get((t, v))}
                      for (t, v), n in sorted(self.events.items())],
        }


def dump_schema(schema: Mapping[str, Any]) -> str:
    """A schema as the files in ``data/schemas`` are written: 2-space indent, UTF-8."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def infer_source(source: str, *, enum_max_distinct: int = 10, enum_min_values: int = 20,
                 closed: bool = True) -> SchemaInference:
    """:func:`infer` over every event of a store URL or export file (evtools' own
    snapshots left out: see :func:`~evtools.events.without_snapshots`)."""
    from .events import without_snapshots

    store = _open_source(source)
    try:
        inferrer = _run_inference(without_snapshots(store.read_all()), enum_max_distinct,
                                  enum_min_values, closed)
    finally:
        store.close()
    if not inferrer.events:
        raise InputError(f"{source} holds no events: nothing to infer a schema from")
    if not inferrer.roots:  # every payload unreadable: say why, with the first one
        key = min(inferrer.invalid_examples)
        reasons = inferrer.reasons
        found = "is a JSON object" if set(reasons) == {"not an object"} else (
            "can be read (" + ", ".join(f"{n} {reason}" for reason, n in
                                        sorted(reasons.items(), key=lambda r: -r[1])) + ")")
        raise InputError(f"{source}: no event payload {found}, nothing to infer a schema "
                         f"from; the first {key[0]} v{key[1]}: "
                         f"{inferrer.invalid_examples[key]}")
    return SchemaInference(source=source, schemas=inferrer.schemas(),
                           events=dict(inferrer.events), invalid=dict(inferrer.invalid),
                           invalid_examples=dict(inferrer.invalid_examples))


def _open_source(source: str) -> Any:
    """Read-only: a missing database or file is an error, never created empty."""
    from .stores import open_store

    return open_store(source, mode="r")


# =========================================================================================
# check
# =========================================================================================

DriftKind = Literal["missing", "unexpected", "wrong_type", "out_of_range", "invalid_value",
                    "unreachable", "unknown_type", "invalid_json"]
DRIFT_KINDS: tuple[str, ...] = ("missing", "unexpected", "wrong_type", "out_of_range",
                                "invalid_value", "unreachable", "unknown_type",
                                "invalid_json")


@dataclasses.dataclass(frozen=True, slots=True)
class DriftProblem:
    """One kind of problem at one field of one event type, with how often and an example.

    ``path`` is the field as a JSON Pointer with array indices and map keys as ``*``
    (``/lines/*/price``); ``example_path`` the exact pointer in the example event.
    """

    event_type: str
    schema_version: int
    path: str
    kind: str
    count: int
    example_stream: str
    example_version: int
    example_path: str
    detail: str


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """Whether the registered classes accept every stored event exactly, and if not,
    where not. ``events``/``accepted`` count per (type, schema version)."""

    events: dict[tuple[str, int], int]
    accepted: dict[tuple[str, int], int]
    problems: tuple[DriftProblem, ...]

    @property
    def has_drift(self) -> bool:
        return bool(self.problems)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def total_accepted(self) -> int:
        return sum(self.accepted.values())

    COLUMNS = ("event_type", "schema_version", "path", "kind", "count", "example_stream",
               "example_version", "example_path", "detail")

    def to_dict(self) -> dict[str, Any]:
        return {
            "has_drift": self.has_drift,
            "events": self.total_events,
            "accepted": self.total_accepted,
            "types": [{"event_type": t, "schema_version": v, "events": n,
                       "accepted": self.accepted.get((t, v), 0)}
                      for (t, v), n in sorted(self.events.items())],
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }

    def to_frame(self) -> Any:
        """The problems as a polars DataFrame, one row per (type, version, path, kind)."""
        import polars as pl

        schema = {"event_type": pl.String, "schema_version": pl.Int64, "path": pl.String,
                  "kind": pl.String, "count": pl.Int64, "example_stream": pl.String,
                  "example_version": pl.Int64, "example_path": pl.String,
                  "detail": pl.String}
        rows = [dataclasses.asdict(p) for p in self.problems]
        return pl.DataFrame(rows, schema=schema, orient="row") if rows \
            else pl.DataFrame(schema=schema)


@dataclasses.dataclass(slots=True)
class _Problem:
    kind: str
    pointer: str  # exact
    field: str  # indices and map keys as *
    detail: str


def check(events: Iterable[RawEvent], registry: Registry) -> DriftReport:
    """For every event: does its registered class accept it exactly?

    Each event is decoded by ``registry`` (upcasters included). When the registry refuses
    it, the payload is compared field by field with the class, so that every problem of
    the event is reported, not only the first: a missing field, an unexpected one, a wrong
    JSON type, a value out of range, an invalid value (enum, UUID, timestamp, pattern).
    Events no class or upcaster reaches, of unknown types, or not JSON are reported too.
    Fields the class does not declare are reported even where the registry keeps or
    ignores them. An event the class accepts but writes back otherwise is not exact either:
    a string ``"5.10"`` read into a ``Decimal`` field comes back as a number, ``3`` in a
    float field as ``3.0``, an uppercase UUID in lowercase (absent optional fields written
    back as ``null`` or their default are not counted).
    """
    if not isinstance(registry, Registry):
        hint = " (call it: check(events, order_registry()))" if callable(registry) else ""
        raise UsageError(f"check takes a Registry, not {type(registry).__name__}{hint}")
    counts: Counter[tuple[str, int, str, str]] = Counter()
    examples: dict[tuple[str, int, str, str], tuple[str, int, str, str]] = {}
    events_seen: Counter[tuple[str, int]] = Counter()
    accepted: Counter[tuple[str, int]] = Counter()
    classes = _Classes()
    for raw in events:
        type_key = (raw.type, raw.schema_version)
        events_seen[type_key] += 1
        problems = _problems_of(raw, registry, classes)
        if not problems:
            accepted[type_key] += 1
            continue
        for p in problems:
            key = (raw.type, raw.schema_version, p.field, p.kind)
            counts[key] += 1
            if key not in examples:
                examples[key] = (raw.stream, raw.version, p.pointer, p.detail)
    rows = []
    for key in sorted(counts, key=lambda k: (k[0], k[1], k[2], DRIFT_KINDS.index(k[3]))):
        stream, version, pointer, detail = examples[key]
        rows.append(DriftProblem(event_type=key[0], schema_version=key[1], path=key[2],
                                 kind=key[3], count=counts[key], example_stream=stream,
                                 example_version=version, example_path=pointer,
                                 detail=detail))
    return DriftReport(events=dict(events_seen), accepted=dict(accepted),
                       problems=tuple(rows))


class _Classes:
    """What check needs of each registered class, worked out once per class rather than
    once per event: its msgspec type info, and whether it may write a value back otherwise
    than it was read."""

    # types that write back the token they read (Decimal, float, UUID, Any and the rest
    # may not: their values are compared after a write)
    _EXACT = (msgspec.inspect.NoneType, msgspec.inspect.BoolType, msgspec.inspect.IntType,
              msgspec.inspect.StrType, msgspec.inspect.EnumType, msgspec.inspect.LiteralType,
              msgspec.inspect.RawType)
    # types whose values hold others, which reached() walks into
    _HOLDERS = (msgspec.inspect.StructType, msgspec.inspect.DataclassType,
                msgspec.inspect.TypedDictType, msgspec.inspect.NamedTupleType,
                msgspec.inspect.ListType, msgspec.inspect.SetType,
                msgspec.inspect.FrozenSetType, msgspec.inspect.VarTupleType,
                msgspec.inspect.TupleType, msgspec.inspect.DictType, msgspec.inspect.UnionType)

    def __init__(self) -> None:
        self._info: dict[type, Any] = {}
        self._rewrites: dict[type, bool] = {}

    def info(self, cls: type) -> Any:
        info = self._info.get(cls)
        if info is None:
            info = self._info[cls] = msgspec.inspect.type_info(cls)
        return info

    def may_rewrite(self, cls: type) -> bool:
        found = self._rewrites.get(cls)
        if found is None:
            found = self._rewrites[cls] = any(map(self._rewrites_its, reached(self.info(cls))))
        return found

    @classmethod
    def _rewrites_its(cls, t: Any) -> bool:
        """Whether the values of ``t`` itself (not inside it) may be written back otherwise."""
        if isinstance(t, cls._EXACT + cls._HOLDERS):
            return False
        if isinstance(t, msgspec.inspect.CustomType):
            return t.cls not in (Timestamp, DecimalText, UInt64)
        return True


def _problems_of(raw: RawEvent, registry: Registry, classes: _Classes) -> list[_Problem]:
    try:
        decoded = registry.decode_verbose(raw)
    except UnknownEventType as e:
        return [_Problem("unknown_type", "", "", e.message)]
    except UnknownSchemaVersion as e:
        return [_Problem("unreachable", "", "", e.message)]
    except UpcastError as e:
        return _explain_upcast(raw, registry, e, classes)
    except DecodeError as e:
        path = e.context.path or ""
        return [_Problem("invalid_json", path, _field_of(path), e.message)]
    except SchemaError as e:
        return _explain(raw, registry, e, classes)
    except InputError as e:
        path = e.context.path or ""
        return [_Problem("invalid_value", path, _field_of(path), e.message)]
    found = [_Problem("unexpected", p, _field_of(p), "field not declared by "
                      f"{type(decoded.event).__qualname__} (kept)")
             for p in decoded.unknown]
    if found:
        return found
    if raw.schema_version == registry.latest_version(raw.type) \
            and classes.may_rewrite(type(decoded.event)):  # not an upcast one: its own class
        try:
            written = registry.encode(decoded.event)
        except UsageError as e:
            return [_Problem("invalid_value", "", "", e.message)]
        if written != raw.data:
            sent = lossless.decode(raw.data)
            if _token_encoder.encode(sent) != written:  # more than spacing differs
                _compare_written(sent, lossless.decode(written), "", found)
    return found


def _compare_written(sent: Any, written: Any, pointer: str, out: list[_Problem]) -> None:
    """Where ``written`` (the class's write-back) is not ``sent``: another JSON type, another
    string, another number or fewer decimals (``19.90`` as ``19.9``; ``1E+5`` as ``100000.0``
    is the same number). Fields absent from ``sent`` are not compared."""
    kind, kind_back = _kind_of(sent), _kind_of(written)
    if kind != kind_back:
        out.append(_Problem("wrong_type", pointer, _field_of(pointer),
                            f"{kind} {_token(sent)} is accepted but written back as "
                            f"{kind_back} {_token(written)}"))
    elif kind == "object":
        for key, value in sent.items():
            if key in written:
                _compare_written(value, written[key],
                                 f"{pointer}/{escape_pointer_token(key)}", out)
    elif kind == "array":
        for i, (value, back) in enumerate(zip(sent, written, strict=False)):
            _compare_written(value, back, f"{pointer}/{i}", out)
    elif kind == "string" and sent != written:
        out.append(_Problem("invalid_value", pointer, _field_of(pointer),
                            f"{_token(sent)} is written back as {_token(written)}"))
    elif kind in ("integer", "number") and (sent != written
                                            or _scale(sent) > _scale(written)):
        out.append(_Problem("out_of_range", pointer, _field_of(pointer),
                            f"{_token(sent)} is written back as {_token(written)}"))


def _scale(number: int | Decimal) -> int:
    if isinstance(number, int):
        return 0
    exponent = number.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_token_encoder = msgspec.json.Encoder(decimal_format="number")


def _token(value: Any) -> str:
    """``value`` as JSON text (a Decimal as the number it was read from)."""
    return _token_encoder.encode(value).decode()


_MISSING_STEP = re.compile(r"no upcaster for .* from v(\d+) ")


def _explain_upcast(raw: RawEvent, registry: Registry, error: UpcastError,
                    classes: _Classes) -> list[_Problem]:
    """An old event no upcaster chain turns into its current class: when the event does
    not even fit the class of its own version, those field problems say why; otherwise
    (or when no upcaster exists at all) it is ``unreachable``."""
    problems: list[_Problem] = []
    if (raw.type, raw.schema_version) in registry:
        own = registry.class_for(raw.type, raw.schema_version)
        _walk_payload(raw.data, classes.info(own), problems)
    missing_step = not error.message.startswith("upcast ")  # no upcaster, a cycle, a crash
    if problems and not missing_step:
        return problems
    path = error.context.path or ""
    message = error.message
    if not problems and (raw.type, raw.schema_version) in registry:
        message = (f"fits {own.__qualname__}, its class for v{raw.schema_version}, but decode "
                   f"lifts every event to v{registry.latest_version(raw.type)}: "
                   f"{error.message}")
        missing = _MISSING_STEP.match(error.message)  # not when one exists and fails
        if missing is not None:
            message += f" (registry.add_upcaster({raw.type!r}, {missing.group(1)}, fn) " \
                       "adds one)"
    return [*problems, _Problem("unreachable", path, _field_of(path), message)]


def _walk_payload(data: bytes, info: Any, problems: list[_Problem]) -> None:
    try:
        payload = lossless.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        problems.append(_Problem("invalid_json", "", "", f"payload is not valid JSON: {e}"))
        return
    _Walker(problems).walk(payload, info, "", "")


def _explain(raw: RawEvent, registry: Registry, error: SchemaError,
             classes: _Classes) -> list[_Problem]:
    """All problems of a payload its class refused (second pass, field by field)."""
    problems: list[_Problem] = []
    if (raw.type, raw.schema_version) in registry:
        _walk_payload(raw.data, classes.info(registry.class_for(raw.type, raw.schema_version)),
                      problems)
    if not problems:  # the registry saw something the walk does not model: trust it
        path = error.context.path or ""
        kind, field_name = _classify(error.message)
        if field_name is not None:
            path = f"{path}/{escape_pointer_token(field_name)}"
        problems.append(_Problem(kind, path, _field_of(path), error.message))
    return problems


def _field_of(pointer: str) -> str:
    """``/lines/3/price`` -> ``/lines/*/price`` (array indices; used when no type walk)."""
    return "/".join("*" if t.isdigit() else t for t in pointer.split("/"))


_MISSING = re.compile(r"missing required field `(.+)`")
_UNKNOWN = re.compile(r"unknown field `?'?([^`']+)`?'?")


def _classify(message: str) -> tuple[str, str | None]:
    m = _MISSING.search(message)
    if m:
        return "missing", m.group(1)
    if "unknown field" in message:
        return "unexpected", None
    if message.startswith("Expected `") and (">" in message or "<" in message
                                             or "length" in message):
        return "out_of_range", None
    if message.startswith("Expected `") or "got `" in message:
        return "wrong_type", None
    if "out of range" in message:
        return "out_of_range", None
    return "invalid_value", None


_FLOAT64_MAX = Decimal("1.7976931348623157e308")
_JSON_KIND = {type(None): "null", bool: "boolean", int: "integer", Decimal: "number",
              str: "string", dict: "object", list: "array"}


def _kind_of(value: Any) -> str:
    return _JSON_KIND.get(type(value), type(value).__name__)


class _Walker:
    """Compares an untyped payload (ints exact, other numbers Decimal) with a msgspec type,
    collecting every problem."""

    def __init__(self, out: list[_Problem]) -> None:
        self.out = out

    def add(self, kind: str, pointer: str, field: str, detail: str) -> None:
        self.out.append(_Problem(kind, pointer, field, detail))

    def walk(self, value: Any, info: Any, pointer: str, field: str) -> None:
        mi = msgspec.inspect
        if isinstance(info, mi.AnyType | mi.RawType):
            return
        if isinstance(info, mi.Metadata):
            self.walk(value, info.type, pointer, field)
        elif isinstance(info, mi.UnionType):
            self._union(value, info, pointer, field)
        elif isinstance(info, mi.StructType | mi.DataclassType | mi.TypedDictType):
            self._struct(value, info, pointer, field)
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            if not isinstance(value, list):
                self._wrong("array", value, pointer, field)
                return
            self._length(len(value), info, pointer, field, "items")
            for i, item in enumerate(value):
                self.walk(item, info.item_type, f"{pointer}/{i}", f"{field}/*")
        elif isinstance(info, mi.TupleType):
            if not isinstance(value, list):
                self._wrong("array", value, pointer, field)
            elif len(value) != len(info.item_types):
                self.add("out_of_range", pointer, field,
                         f"expected {len(info.item_types)} items, got {len(value)}")
            else:
                for i, (item, t) in enumerate(zip(value, info.item_types, strict=True)):
                    self.walk(item, t, f"{pointer}/{i}", f"{field}/{i}")
        elif isinstance(info, mi.DictType):
            if not isinstance(value, dict):
                self._wrong("object", value, pointer, field)
                return
            self._length(len(value), info, pointer, field, "keys")
            for key, item in value.items():
                self.walk(item, info.value_type, f"{pointer}/{escape_pointer_token(key)}",
                          f"{field}/*")
        else:
            self._scalar(value, info, pointer, field)

    def _wrong(self, expected: str, value: Any, pointer: str, field: str) -> None:
        self.add("wrong_type", pointer, field, f"expected {expected}, got {_kind_of(value)}")

    def _length(self, n: int, info: Any, pointer: str, field: str, what: str) -> None:
        lo, hi = getattr(info, "min_length", None), getattr(info, "max_length", None)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            self.add("out_of_range", pointer, field,
                     f"{n} {what}, expected {lo if lo is not None else 0}.."
                     f"{hi if hi is not None else ''}")

    def _struct(self, value: Any, info: Any, pointer: str, field: str) -> None:
        if not isinstance(value, dict):
            self._wrong("object", value, pointer, field)
            return
        declared = {}
        for f in info.fields:
            declared[f.encode_name] = f
        tag_field = getattr(info, "tag_field", None)
        for name, f in declared.items():
            token = f"/{escape_pointer_token(name)}"
            if name not in value:
                if f.required:
                    self.add("missing", pointer + token, field + token,
                             f"required field {name!r} is missing")
                continue
            self.walk(value[name], f.type, pointer + token, field + token)
        name_of = getattr(info.cls, "__qualname__", str(info.cls))
        for key in value:
            if key not in declared and key != tag_field:
                token = f"/{escape_pointer_token(key)}"
                self.add("unexpected", pointer + token, field + token,
                         f"field not declared by {name_of}")

    def _union(self, value: Any, info: Any, pointer: str, field: str) -> None:
        mi = msgspec.inspect
        if value is None:
            if not any(isinstance(t, mi.NoneType) for t in info.types):
                self._wrong(" or ".join(_expected_kind(t) for t in info.types), value,
                            pointer, field)
            return
        candidates = [t for t in info.types if not isinstance(t, mi.NoneType)
                      and _accepts_kind(t, value)]
        if not candidates:
            self._wrong(" or ".join(_expected_kind(t) for t in info.types), value, pointer,
                        field)
            return
        best: list[_Problem] | None = None
        for t in candidates:
            trial: list[_Problem] = []
            _Walker(trial).walk(value, t, pointer, field)
            if best is None or len(trial) < len(best):
                best = trial
            if not trial:
                break
        assert best is not None
        self.out.extend(best)

    def _scalar(self, value: Any, info: Any, pointer: str, field: str) -> None:
        mi = msgspec.inspect
        if isinstance(info, mi.NoneType):
            if value is not None:
                self._wrong("null", value, pointer, field)
        elif isinstance(info, mi.BoolType):
            if not isinstance(value, bool):
                self._wrong("boolean", value, pointer, field)
        elif isinstance(info, mi.IntType):
            if isinstance(value, bool) or not isinstance(value, int):
                self._wrong("integer", value, pointer, field)
            else:
                self._bounds(value, info, pointer, field)
        elif isinstance(info, mi.FloatType):
            if isinstance(value, bool) or not isinstance(value, int | Decimal):
                self._wrong("number", value, pointer, field)
            else:
                self._bounds(value, info, pointer, field)
        elif isinstance(info, mi.StrType):
            if not isinstance(value, str):
                self._wrong("string", value, pointer, field)
                return
            self._length(len(value), info, pointer, field, "characters")
            if info.pattern is not None and not re.search(info.pattern, value):
                self.add("invalid_value", pointer, field,
                         f"{value!r} does not match {info.pattern!r}")
        elif isinstance(info, mi.EnumType | mi.LiteralType):
            allowed = ([m.value for m in info.cls] if isinstance(info, mi.EnumType)
                       else list(info.values))
            if not any(type(a) is type(value) for a in allowed):
                self._wrong(" or ".join(sorted({_kind_of(a) for a in allowed})), value,
                            pointer, field)
            elif value not in allowed:
                self.add("invalid_value", pointer, field,
                         f"{value!r} is not one of {allowed!r}")
        else:
            self._converted(value, info, pointer, field)

    def _bounds(self, value: int | Decimal, info: Any, pointer: str, field: str) -> None:
        checks = [("ge", lambda b: value >= b, ">="), ("gt", lambda b: value > b, ">"),
                  ("le", lambda b: value <= b, "<="), ("lt", lambda b: value < b, "<")]
        for attr, ok, op in checks:
            bound = getattr(info, attr, None)
            if bound is not None and not ok(bound):
                self.add("out_of_range", pointer, field, f"{value} is not {op} {bound}")
                return
        if (isinstance(info, msgspec.inspect.FloatType) and isinstance(value, Decimal)
                and not -_FLOAT64_MAX <= value <= _FLOAT64_MAX):
            self.add("out_of_range", pointer, field, f"{value} does not fit a float64")
        multiple = getattr(info, "multiple_of", None)
        if multiple is not None and value % multiple:
            self.add("out_of_range", pointer, field, f"{value} is not a multiple of "
                                                     f"{multiple}")

    def _converted(self, value: Any, info: Any, pointer: str, field: str) -> None:
        """Decimal, UUID, Timestamp and other types: msgspec's own conversion decides."""
        mi = msgspec.inspect
        if isinstance(info, mi.DecimalType):
            if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
                self._wrong("number or string", value, pointer, field)
            elif isinstance(value, str) and not _is_decimal_text(value):
                self.add("invalid_value", pointer, field, f"{value!r} is not a decimal")
            return
        target = getattr(info, "cls", None)
        if isinstance(info, mi.UUIDType):
            target = uuid.UUID
        if target is None:
            return  # a type this walk does not model: the registry's error is used
        if _is_int_custom(info):  # UInt64: an integer in its range
            if isinstance(value, bool) or not isinstance(value, int):
                self._wrong("integer", value, pointer, field)
                return
            try:
                msgspec.convert(value, target, dec_hook=dec_hook)
            except (msgspec.ValidationError, ValueError, TypeError) as e:
                self.add("out_of_range", pointer, field,
                         f"{value}: {strip_msgspec_path(str(e))}")
            return
        if isinstance(info, mi.UUIDType | mi.CustomType | mi.DateType) \
                and not isinstance(value, str):
            self._wrong("string", value, pointer, field)
            return
        try:
            msgspec.convert(value, target, dec_hook=dec_hook)
        except (msgspec.ValidationError, ValueError, TypeError) as e:
            detail = strip_msgspec_path(str(e))
            self.add("invalid_value", pointer, field, f"{value!r}: {detail}")


def _is_decimal_text(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def _is_int_custom(info: Any) -> bool:
    """A custom type that is an ``int`` on the wire (``UInt64``), not a string."""
    return isinstance(info, msgspec.inspect.CustomType) and isinstance(info.cls, type) \
        and issubclass(info.cls, int)


def _accepts_kind(info: Any, value: Any) -> bool:
    mi = msgspec.inspect
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.AnyType | mi.RawType):
        return True
    if isinstance(value, bool):
        return isinstance(info, mi.BoolType)
    if _is_int_custom(info):
        return isinstance(value, int)
    if isinstance(value, int):
        return isinstance(info, mi.IntType | mi.FloatType | mi.DecimalType) or (
            isinstance(info, mi.EnumType | mi.LiteralType) and _has_value_type(info, int))
    if isinstance(value, Decimal):
        return isinstance(info, mi.FloatType | mi.DecimalType)
    if isinstance(value, str):
        return isinstance(info, mi.StrType | mi.DecimalType | mi.UUIDType | mi.CustomType
                          | mi.DateType | mi.DateTimeType | mi.TimeType | mi.BytesType) or (
            isinstance(info, mi.EnumType | mi.LiteralType) and _has_value_type(info, str))
    if isinstance(value, dict):
        return isinstance(info, mi.StructType | mi.DataclassType | mi.TypedDictType
                          | mi.DictType)
    if isinstance(value, list):
        return isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType
                          | mi.TupleType)
    return False


def _has_value_type(info: Any, kind: type) -> bool:
    values = [m.value for m in info.cls] if isinstance(info, msgspec.inspect.EnumType) \
        else list(info.values)
    return any(type(v) is kind for v in values)


def _expected_kind(info: Any) -> str:
    mi = msgspec.inspect
    while isinstance(info, mi.Metadata):
        info = info.type
    if _is_int_custom(info):
        return "integer"
    table: list[tuple[Any, str]] = [
        (mi.NoneType, "null"), (mi.BoolType, "boolean"), (mi.IntType, "integer"),
        (mi.FloatType, "number"), (mi.StrType | mi.UUIDType | mi.DateType | mi.CustomType,
                                   "string"),
        (mi.DecimalType, "number or string"),
        (mi.StructType | mi.DataclassType | mi.TypedDictType | mi.DictType, "object"),
        (mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType | mi.TupleType,
         "array")]
    for cls, name in table:
        if isinstance(info, cls):
            return name
    return type(info).__name__


# =========================================================================================
# --registry module:attr
# =========================================================================================

def load_registry(spec: str) -> Registry:
    """The :class:`Registry` named by ``module:attr`` (or ``path/to/file.py:attr``).

    ``attr`` may also be a function taking no arguments that returns a Registry (such as
    ``evtools.orders:order_registry``). Anything else is a
    :class:`~evtools.errors.UsageError` that names what was found.
    """
    obj = load_object(spec, "--registry")
    if not isinstance(obj, Registry) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except EvtoolsError:
            raise
        except Exception as e:
            raise UsageError(f"{spec}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(obj, Registry):
        raise UsageError(f"{spec} is {_what(obj)}, not an evtools Registry")
    return obj


def load_aggregate(spec: str) -> type[Any]:
    """The :class:`~evtools.aggregate.Aggregate` subclass named by ``module:Class`` (or
    ``path/to/file.py:Class``); anything else is a :class:`~evtools.errors.UsageError`."""
    from .aggregate import Aggregate

    obj = load_object(spec, "--aggregate")
    if not (isinstance(obj, type) and issubclass(obj, Aggregate)):
        raise UsageError(f"{spec} is {_what(obj)}, not an evtools Aggregate subclass")
    return obj


def _what(obj: Any) -> str:
    return f"the class {obj.__qualname__}" if isinstance(obj, type) \
        else f"a {type(obj).__name__}"


def load_object(spec: str, option: str) -> Any:
    """The object ``module:attr`` (or ``path/to/file.py:attr``) names, for the command
    line's ``option``: a module of the current folder is found as ``python -m`` finds it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{option} must be module:attr, not {spec!r}")
    module: Any
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise UsageError(f"{option} module file not found: {module_name}",
                             file=module_name)
        # one module per file: --aggregate and --registry from one file share its classes
        mod_name = f"_evtools_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
        module = sys.modules.get(mod_name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(mod_name, path)
            if file_spec is None or file_spec.loader is None:
                raise UsageError(f"cannot import {module_name}", file=module_name)
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[mod_name] = module
            try:
                file_spec.loader.exec_module(module)
            except BaseException as e:
                del sys.modules[mod_name]
                if isinstance(e, EvtoolsError) or not isinstance(e, Exception):
                    raise
                raise UsageError(f"cannot import {module_name}: {type(e).__name__}: {e}",
                                 file=module_name) from e
    else:
        # the current folder first, as `python -m` has it: a console script's sys.path
        # lacks it, and codegen's output usually lands there
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UsageError(f"cannot import {option} module {module_name!r}: {e}") from e
        finally:
            if added:
                sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name} has no attribute {attr!r} (from {option} "
                             f"{spec})")
        obj = getattr(obj, part)
    return obj


# =========================================================================================
# CLI: the lead's build_parser calls register_cli(sub)
# =========================================================================================

def register_cli(subparsers: Any) -> None:
    """Add ``codegen`` and ``schema infer|check`` to an argparse subparsers object.

    Each sets ``func`` to a handler ``(args) -> int`` (0 ok, 1 drift with
    ``--fail-on-drift``); bad input raises an :class:`~evtools.errors.EvtoolsError`.
    """
    p = subparsers.add_parser("codegen", help="typed event classes from JSON Schema")
    p.add_argument("schemas", nargs="+", metavar="SCHEMA", help="JSON Schema files")
    p.add_argument("-o", "--out", help="write the module here (default: stdout)")
    p.add_argument("--registry-name", default="registry",
                   help="name of the module-level Registry (default: registry)")
    p.add_argument("--optional", choices=["none", "unset"], default="none",
                   help="optional fields as `T | None = None` (default: an absent field is "
                        "written back as null) or `T | UnsetType = UNSET` (absent stays "
                        "absent: events are written back exactly as read)")
    p.set_defaults(func=cmd_codegen)

    p = subparsers.add_parser("schema", help="infer schemas from a store; check drift")
    p.register("action", "parsers", type(subparsers))  # -v/-q after the sub-command too
    sub = p.add_subparsers(dest="schema_command", required=True, parser_class=type(p))
    s = sub.add_parser("infer", help="one JSON Schema per event type and version, with "
                                     "the evidence behind each format")
    s.add_argument("source", help="a store URL or export file")
    s.add_argument("--out", help="write <type>.v<version>.json files into this directory "
                                 "(default: print them as one JSON object)")
    s.add_argument("--enum-max-distinct", type=int, default=10,
                   help="at most this many distinct strings make an enum (default 10)")
    s.add_argument("--enum-min-values", type=int, default=20,
                   help="over at least this many values (default 20)")
    s.set_defaults(func=cmd_schema_infer)

    s = sub.add_parser("check", help="does each stored event fit its registered class?")
    s.add_argument("source", help="a store URL or export file")
    s.add_argument("--registry", required=True, metavar="MODULE:ATTR",
                   help="the Registry (or a function returning one) to check against")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--out", help="write the report to this file")
    s.add_argument("--fail-on-drift", action="store_true", help="exit 1 when drift is found")
    s.set_defaults(func=cmd_schema_check)


def _emit(text: str, out: str | None, stdout: Any = None) -> None:
    if out:
        with writing(out) as fh:
            fh.write(text)
    else:  # a reader that goes away (`| head`) leaves the exit status as it is
        write_stdout(text if text.endswith("\n") else text + "\n", stdout)


def cmd_codegen(args: argparse.Namespace) -> int:
    source = codegen([Path(s) for s in args.schemas], registry_name=args.registry_name,
                     output=args.out, optional=args.optional)
    _emit(source, args.out)
    return 0


def cmd_schema_infer(args: argparse.Namespace) -> int:
    result = infer_source(args.source, enum_max_distinct=args.enum_max_distinct,
                          enum_min_values=args.enum_min_values)
    if args.out:
        for path in result.write(args.out):
            log.info("wrote %s", path)
        summary = [f"{t} v{v}: {n} events" + (f" ({result.invalid[(t, v)]} unreadable, e.g. "
                                              f"{result.invalid_examples[(t, v)]})"
                                              if result.invalid.get((t, v)) else "")
                   for (t, v), n in sorted(result.events.items())]
        sys.stderr.write(f"inferred {len(result.schemas)} schemas from "
                         f"{result.total_events} events into {args.out}\n"
                         + "".join(f"  {line}\n" for line in summary))
    else:
        names = result.file_names()
        combined = {names[key]: s for key, s in result.schemas.items()}
        _emit(json.dumps(combined, indent=2, ensure_ascii=False), None)
    return 0


def cmd_schema_check(args: argparse.Namespace) -> int:
    from .events import without_snapshots

    registry = load_registry(args.registry)
    store = _open_source(args.source)
    try:
        report = check(without_snapshots(store.read_all()), registry)
    finally:
        store.close()
    if args.format == "json":
        _emit(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), args.out)
    elif args.format == "csv":
        buffer = io.StringIO()
        report.to_frame().write_csv(buffer)
        _emit(buffer.getvalue(), args.out)
    else:
        _emit(_table(report), args.out)
    return 1 if args.fail_on_drift and report.has_drift else 0


def _table(report: DriftReport) -> str:
    lines = [f"{report.total_events} events, {report.total_accepted} accepted exactly, "
             f"{report.total_events - report.total_accepted} with drift"]
    if not report.problems:
        return lines[0] + "\n"
    header = ("type", "path", "kind", "count", "example")
    rows = [(f"{p.event_type} v{p.schema_version}", p.path or "/", p.kind, str(p.count),
             f"{p.example_stream}@{p.example_version}: {p.detail}") for p in report.problems]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True))
                     + "  " + row[4])
    return "\n".join(lines) + "\n"
