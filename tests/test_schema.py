"""evtools.schema: codegen from JSON Schema, inference from events, drift checks, CLI."""

from __future__ import annotations

import argparse
import enum
import json
import logging
import shutil
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtools import schema as S
from evtools.errors import DecodeError, MissingDependency, SchemaError, UsageError
from evtools.events import RawEvent
from evtools.registry import Registry
from evtools.scalars import DecimalText, Int64, Timestamp, UInt64, dec_hook, enc_hook

from .schema import strategies as ST

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "data" / "schemas"
GENERATED = REPO / "tests" / "schema" / "generated_orders.py"
DRAFT7 = "http://json-schema.org/draft-07/schema#"

pytest.importorskip("datamodel_code_generator")
jsonschema = pytest.importorskip("jsonschema")


# -- helpers ---------------------------------------------------------------------------------

def write(path: Path, schema: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")
    return path


_loaded = 0


def load(source: str) -> types.ModuleType:
    """Import generated source as a fresh module (msgspec resolves names through it)."""
    global _loaded
    _loaded += 1
    name = f"_generated_{_loaded}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def generate(tmp_path: Path, *schemas: dict[str, Any], **kwargs: Any) -> types.ModuleType:
    paths = [write(tmp_path / f"s{i}.json", s) for i, s in enumerate(schemas)]
    return load(S.codegen(paths, root=tmp_path, **kwargs))


def raw(type_: str, payload: Any, *, version: int = 1, stream: str = "s-1",
        position: int = 0) -> RawEvent:
    data = payload if isinstance(payload, bytes) else ST.encode(payload)
    return RawEvent(stream=stream, version=position, type=type_, data=data,
                    schema_version=version)


def field_types(cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.inspect.type_info(cls).fields}


ALL_FORMATS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "OrderPlaced",
    "x-evtools-event": "OrderPlaced",
    "x-evtools-version": 3,
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "total", "placed_at", "status", "lines", "ref", "tax"],
    "properties": {
        "order_id": {"type": "integer", "format": "int64"},
        "customer_id": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
        "bounded": {"type": "integer", "format": "int64", "minimum": 0},
        "total": {"type": "string", "format": "decimal"},
        "tax": {"type": "number", "format": "decimal"},
        "placed_at": {"type": "string", "format": "date-time"},
        "ref": {"type": "string", "format": "uuid"},
        "status": {"enum": ["new", "paid", "shipped"]},
        "note": {"type": "string", "default": "none"},
        "count": {"type": "integer", "default": 0},
        "ratio": {"type": "number"},
        "lines": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["sku"],
            "properties": {"sku": {"type": "integer", "format": "int64"},
                           "price": {"type": "number", "format": "decimal"}}}},
        "address": {"$ref": "#/$defs/Address"},
    },
    "$defs": {"Address": {"type": "object", "required": ["city"],
                          "properties": {"city": {"type": "string"}}}},
}

GOOD = (b'{"order_id": 9007199254740993, "total": "19.90", "tax": 0.10000000000000000001, '
        b'"placed_at": "2024-05-01T12:00:00.123456789+02:00", '
        b'"ref": "6940776c-b540-4ce4-8c5d-375a43bbba66", "status": "paid", '
        b'"lines": [{"sku": 9007199254740993, "price": 19.90}], "address": {"city": "Oslo"}}')


# -- codegen: types ----------------------------------------------------------------------------

def test_codegen_maps_every_format_to_an_exact_type(tmp_path: Path) -> None:
    module = generate(tmp_path, ALL_FORMATS)
    cls = module.OrderPlaced
    assert module.registry.class_for("OrderPlaced", 3) is cls
    info = {f.name: f for f in msgspec.inspect.type_info(cls).fields}
    assert info["order_id"].type == msgspec.inspect.type_info(Int64)
    assert info["customer_id"].type == msgspec.inspect.type_info(Int64 | None)
    assert info["bounded"].type == msgspec.inspect.UnionType(
        types=(msgspec.inspect.IntType(ge=0, le=2**63 - 1), msgspec.inspect.NoneType()))
    assert info["total"].type == msgspec.inspect.CustomType(DecimalText)  # sent as text
    assert isinstance(info["tax"].type, msgspec.inspect.DecimalType)  # sent as a number
    assert isinstance(info["placed_at"].type, msgspec.inspect.CustomType)
    assert info["placed_at"].type.cls is Timestamp
    assert isinstance(info["ref"].type, msgspec.inspect.UUIDType)
    assert issubclass(info["status"].type.cls, enum.Enum)
    assert [m.value for m in info["status"].type.cls] == ["new", "paid", "shipped"]
    # required vs optional, schema defaults
    assert {n for n, f in info.items() if f.required} == set(ALL_FORMATS["required"])
    assert info["note"].default == "none" and info["count"].default == 0
    assert info["ratio"].default is None
    # nested objects are Structs; additionalProperties: false forbids unknown fields
    line_cls = info["lines"].type.item_type.cls
    assert line_cls.__struct_config__.forbid_unknown_fields
    assert cls.__struct_config__.forbid_unknown_fields
    assert not module.Address.__struct_config__.forbid_unknown_fields

    event = module.registry.decode(raw("OrderPlaced", GOOD, version=3))
    assert event.order_id == 2**53 + 1 and event.lines[0].sku == 2**53 + 1
    assert str(event.total) == "19.90" and isinstance(event.total, Decimal)
    assert event.tax == Decimal("0.10000000000000000001")
    assert event.placed_at.nanosecond == 123_456_789
    assert str(event.placed_at) == "2024-05-01T12:00:00.123456789+02:00"
    assert event.ref == uuid.UUID("6940776c-b540-4ce4-8c5d-375a43bbba66")
    assert event.status.value == "paid"
    assert str(event.lines[0].price) == "19.90"
    assert event.note == "none" and event.ratio is None
    back = module.registry.encode(event)  # each decimal written back as it was sent
    assert b'"total":"19.90"' in back and b'"tax":0.10000000000000000001' in back
    assert b'"price":19.90' in back


@pytest.mark.parametrize(("patch", "path"), [
    ({"order_id": 2**63}, "/order_id"),
    ({"status": "lost"}, "/status"),
    ({"placed_at": "2024-05-01T12:00:00"}, "/placed_at"),
    ({"lines": [{"sku": 1, "colour": "red"}]}, "/lines/0"),
    ({"ref": "not-a-uuid"}, "/ref"),
    ({"bounded": -1}, "/bounded"),
])
def test_generated_classes_refuse_what_the_schema_refuses(tmp_path: Path, patch: dict[str, Any],
                                                          path: str) -> None:
    module = generate(tmp_path, ALL_FORMATS)
    payload = {**json.loads(GOOD), **patch}
    with pytest.raises(SchemaError) as e:
        module.registry.decode(raw("OrderPlaced", json.dumps(payload).encode(), version=3))
    assert (e.value.context.path or "").startswith(path)


def test_codegen_optional_unset_keeps_absent_fields_absent(tmp_path: Path) -> None:
    module = generate(tmp_path, ALL_FORMATS, optional="unset")
    info = {f.name: f for f in msgspec.inspect.type_info(module.OrderPlaced).fields}
    assert info["ratio"].default is msgspec.NODEFAULT and not info["ratio"].required
    event = module.registry.decode(raw("OrderPlaced", GOOD, version=3))
    assert event.ratio is msgspec.UNSET
    with pytest.raises(SchemaError):  # null is not a number: only "none" style admits it
        module.registry.decode(raw("OrderPlaced", GOOD[:-1] + b', "ratio": null}',
                                   version=3))


def test_codegen_draft07_definitions_and_version_from_id(tmp_path: Path) -> None:
    schema = {
        "$schema": DRAFT7,
        "$id": "https://example.com/events/Shipped/v4",
        "title": "Shipped",
        "type": "object",
        "required": ["carrier", "to"],
        "properties": {"carrier": {"$ref": "#/definitions/Carrier"},
                       "to": {"$ref": "#/definitions/Place"},
                       "from": {"$ref": "#/definitions/Place"}},
        "definitions": {"Carrier": {"type": "string", "enum": ["dhl", "la-poste"]},
                        "Place": {"type": "object", "additionalProperties": False,
                                  "required": ["city"],
                                  "properties": {"city": {"type": "string"}}}},
    }
    module = generate(tmp_path, schema)
    assert module.registry.class_for("Shipped", 4) is module.Shipped
    event = module.registry.decode(raw("Shipped", {"carrier": "la-poste", "to": {"city": "X"}},
                                       version=4))
    assert event.carrier is module.Carrier.la_poste
    assert type(event.to) is module.Place and event.from_ is None


def test_codegen_one_file_with_defs_holding_several_events(tmp_path: Path) -> None:
    bundle = {
        "$defs": {
            "Money": {"type": "object", "required": ["amount"],
                      "properties": {"amount": {"type": "number", "format": "decimal"}}},
            "Paid": {"x-evtools-event": "Paid", "x-evtools-version": 2, "type": "object",
                     "required": ["amount"],
                     "properties": {"amount": {"$ref": "#/$defs/Money"}}},
            "Refunded": {"x-evtools-event": "Refunded", "type": "object",
                         "properties": {"amount": {"$ref": "#/$defs/Money"},
                                        "reason": {"type": ["string", "null"]}}},
        },
    }
    module = generate(tmp_path, bundle)
    assert sorted(module.registry) == [("Paid", 2), ("Refunded", 1)]
    paid = module.registry.decode(raw("Paid", b'{"amount": {"amount": 1.10}}', version=2))
    assert str(paid.amount.amount) == "1.10"
    assert field_types(module.Paid)["amount"].cls is module.Money
    assert field_types(module.Refunded)["amount"].types[0].cls is module.Money


def test_codegen_names_versions_apart_and_shares_identical_definitions(tmp_path: Path) -> None:
    def version(v: int, extra: dict[str, Any]) -> dict[str, Any]:
        return {"title": "ItemAdded", "x-evtools-version": v, "type": "object",
                "required": ["line"],
                "properties": {"line": {"title": "Line", "type": "object",
                                        "properties": {"sku": {"type": "integer"}}},
                               **extra}}

    module = generate(tmp_path, version(1, {}), version(2, {"gift": {"type": "boolean"}}))
    assert module.registry.class_for("ItemAdded", 1) is module.ItemAddedV1
    assert module.registry.class_for("ItemAdded", 2) is module.ItemAddedV2
    assert field_types(module.ItemAddedV1)["line"].cls is module.Line
    assert field_types(module.ItemAddedV2)["line"].cls is module.Line


def test_codegen_mixed_types_nullable_and_keywords(tmp_path: Path) -> None:
    schema = {"title": "Mixed", "type": "object", "required": ["a", "b", "class"],
              "properties": {
                  "a": {"type": ["integer", "string", "null"], "format": "date-time"},
                  "b": {"type": ["object", "string"], "required": ["x"],
                        "properties": {"x": {"type": "integer", "format": "int64"}}},
                  "class": {"type": ["string", "null"], "format": "date-time"},
                  "ref-id": {"type": ["string", "null"], "format": "uuid"}}}
    module = generate(tmp_path, schema)
    ok = {"a": 1, "b": "text", "class": None, "ref-id": "6940776c-b540-4ce4-8c5d-375a43bbba66"}
    event = module.registry.decode(raw("Mixed", ok))
    assert event.a == 1 and event.b == "text" and event.class_ is None
    assert isinstance(event.ref_id, uuid.UUID)
    event = module.registry.decode(raw("Mixed", {"a": None, "b": {"x": 2**60},
                                                 "class": "2024-01-01T00:00:00Z"}))
    assert event.b.x == 2**60 and isinstance(event.class_, Timestamp)


def test_codegen_output_is_deterministic_relative_and_lint_clean(tmp_path: Path) -> None:
    a = write(tmp_path / "schemas" / "a.json", ALL_FORMATS)
    b = write(tmp_path / "schemas" / "b.json", {**ALL_FORMATS, "x-evtools-version": 4})
    first = S.codegen([a, b], root=tmp_path, output=tmp_path / "out" / "events.py")
    assert S.codegen([b, a, a], root=tmp_path, output=tmp_path / "out" / "events.py") == first
    assert first.startswith("# Generated by evtools codegen")
    header = first.split("from __future__")[0]
    assert "schemas/a.json" in header and "schemas/b.json" in header
    assert "-o out/events.py" in header
    assert str(tmp_path) not in first and "timestamp" not in header.lower()
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    out = tmp_path / "events.py"
    out.write_text(first, encoding="utf-8")
    result = subprocess.run([ruff, "check", "--no-cache", "--config",
                             str(REPO / "pyproject.toml"), str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_codegen_uint64(tmp_path: Path) -> None:
    schema = {"title": "Counter", "type": "object", "required": ["n"],
              "properties": {"n": {"type": "integer", "format": "uint64"}}}
    module = generate(tmp_path, schema)
    assert module.registry.decode(raw("Counter", {"n": 2**64 - 1})).n == 2**64 - 1
    with pytest.raises(SchemaError, match="uint64"):
        module.registry.decode(raw("Counter", {"n": 2**64}))


def test_codegen_maps_uint64_to_the_uint64_scalar(tmp_path: Path) -> None:
    bundler_schema = {"type": "integer", "format": "uint64"}
    S._map_format(bundler_schema, S._Source(tmp_path, "x.json", {}), "")
    assert bundler_schema == {"type": "integer", "customTypePath": "evtools.scalars.UInt64"}


def test_codegen_gives_keys_python_would_normalise_ascii_names(tmp_path: Path) -> None:
    """Python reads identifiers NFKC-normalised: a field written ``latency_µs`` (U+00B5) is
    ``latency_μs`` (U+03BC), ``ﬁ`` is ``fi`` and the Kelvin sign is ``K``, so the classes
    neither decoded those keys nor kept two of them apart (enum members likewise)."""
    keys = ["latency_\u00b5s", "fi", "\ufb01", "K", "\u212a", "caf\u00e9", "x\u00b2"]
    schema = {"title": "Req", "type": "object", "additionalProperties": False,
              "required": [*keys, "op"],
              "properties": {**{k: {"type": "integer"} for k in keys},
                             "op": {"enum": ["fi", "\ufb01", "A", "\uff21"]}}}
    module = generate(tmp_path, schema)
    fields = msgspec.inspect.type_info(module.Req).fields
    assert [f.encode_name for f in fields] == [*keys, "op"]
    assert all(f.name.isascii() for f in fields)
    assert len({f.name for f in fields}) == len(fields)
    payload = {**{k: i for i, k in enumerate(keys)}, "op": "\ufb01"}
    event = module.registry.decode(raw("Req", payload))
    assert event.op.value == "\ufb01"
    assert json.loads(module.registry.encode(event)) == payload
    assert [m.value for m in type(event.op)] == ["fi", "\ufb01", "A", "\uff21"]


def test_codegen_keeps_each_format_with_its_type_and_writes_decodable_unions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A field of several JSON types had shared one format: "x" beside 19.90 was typed
    DecimalText, and a custom type in a union made msgspec refuse the class (exit 2)."""
    sent = [b'{"a": "5.10", "b": 18446744073709551615, "d": 19.90, "e": 19.90, '
            b'"i": 9007199254740993}',
            b'{"a": 7, "b": "x", "d": "x", "e": true, "i": "n/a"}']
    events = [raw("Mixed", data, position=i) for i, data in enumerate(sent)]
    schema = S.infer(events)[("Mixed", 1)]
    props = schema["properties"]
    assert props["a"]["anyOf"] == [{"type": "string", "format": "decimal"}, {"type": "integer"}]
    assert props["b"]["anyOf"] == [{"type": "string"}, {"type": "integer", "format": "uint64"}]
    assert props["d"]["anyOf"] == [{"type": "string"}, {"type": "number", "format": "decimal"}]
    assert props["e"]["anyOf"] == [{"type": "number", "format": "decimal"}, {"type": "boolean"}]
    with caplog.at_level(logging.WARNING, logger="evtools.schema"):
        source = S.codegen([write(tmp_path / "Mixed.v1.json", schema)], root=tmp_path)
    module = load(source)
    assert "a uint64 beside other types is an int" in caplog.text  # said, not silent
    assert "TypeAlias" not in source  # Int64 stays Int64 in a union: no alias named i
    first, second = (module.registry.decode(e) for e in events)
    assert first.a == "5.10" and second.a == 7  # the text as sent, not a DecimalText
    assert first.b == 2**64 - 1 and second.b == "x" and second.d == "x"
    assert isinstance(first.e, Decimal) and str(first.e) == "19.90" and second.e is True
    assert json.loads(module.registry.encode(second)) == json.loads(sent[1])
    with pytest.raises(SchemaError):  # the int64 bounds hold in a union too
        module.registry.decode(raw("Mixed", {**json.loads(sent[0]), "i": 2**63}))
    hand = {"title": "Hand", "type": "object", "required": ["x", "u"], "properties": {
        "x": {"type": ["string", "number"], "format": "decimal"},
        "u": {"type": ["string", "integer"], "format": "uuid"},
        "n": {"type": ["integer", "string", "null"], "format": "int64"}}}
    registry = generate(tmp_path / "hand", hand).registry
    event = registry.decode(raw("Hand", {"x": "x", "u": 5, "n": "7"}))
    assert (event.x, event.u, event.n) == ("x", 5, "7")
    event = registry.decode(raw("Hand", {"x": 1.5, "u": str(uuid.UUID(int=1)), "n": 2**60}))
    assert event.x == 1.5 and event.u == uuid.UUID(int=1) and event.n == 2**60


def test_an_int64_in_a_union_stays_int64_beside_a_class_of_the_fields_name(
        tmp_path: Path) -> None:
    """A bound written inline made the generator add an alias named after the field
    (``Mix``), which took the name of the event class Mix."""
    header = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
    holder = {**header, "x-evtools-event": "H", "required": ["mix"],
              "properties": {"mix": {"type": ["integer", "string"], "format": "int64"}}}
    mix = {**header, "x-evtools-event": "Mix", "required": ["a"],
           "properties": {"a": {"type": "integer"}}}
    module = generate(tmp_path, holder, mix)
    assert module.Mix.__struct_fields__ == ("a",)
    assert module.registry.decode(raw("H", {"mix": "x"})).mix == "x"
    with pytest.raises(SchemaError):  # the int64 bounds hold in the union
        module.registry.decode(raw("H", {"mix": 2**63}))


def test_codegen_writes_format_defaults_as_values_of_the_field_type(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The generator wrote the JSON value: ``amt: Decimal = 1.1`` (a float, read through
    json.loads: the scale of 1.10 lost), ``at: Timestamp = "2024-..."`` (a str)."""
    path = tmp_path / "Ev.json"  # by hand: json.dumps would write 1.10 as 1.1
    path.write_text('{"title": "Ev", "type": "object", "additionalProperties": false, '
                    '"properties": {'
                    '"at": {"type": "string", "format": "date-time", '
                    '"default": "2024-01-01T00:00:00.5+02:00"}, '
                    '"amt": {"type": "number", "format": "decimal", "default": 1.10}, '
                    '"fee": {"type": "number", "format": "decimal", "default": 0.50}, '
                    '"maybe": {"type": ["number", "null"], "format": "decimal", '
                    '"default": 2.50}, '
                    '"txt": {"type": "string", "format": "decimal", "default": "1.10"}, '
                    '"id": {"type": "string", "format": "uuid", '
                    '"default": "6de2fb1f-a098-4691-8352-bc85e456559c"}, '
                    '"u": {"type": "integer", "format": "uint64", "default": 5}}}',
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="evtools.schema"):
        source = S.codegen([path], root=tmp_path)
    assert "emitted as serialized data" not in caplog.text  # two of them: rewritten, quiet
    assert 'amt: Decimal = Decimal("1.10")' in source
    event = load(source).Ev()
    assert str(event.at) == "2024-01-01T00:00:00.5+02:00" and isinstance(event.at, Timestamp)
    assert isinstance(event.amt, Decimal) and str(event.amt) == "1.10"
    assert str(event.fee) == "0.50"
    assert isinstance(event.maybe, Decimal) and str(event.maybe) == "2.50"
    assert type(event.txt) is DecimalText and str(event.txt) == "1.10"
    assert event.id == uuid.UUID("6de2fb1f-a098-4691-8352-bc85e456559c")
    assert type(event.u) is UInt64 and event.u == 5
    for bad, message in [({"type": "string", "format": "uuid", "default": "nope"}, "UUID"),
                         ({"type": "number", "format": "decimal", "default": "abc"}, "Decimal"),
                         ({"type": "string", "format": "date-time", "default": 5}, "type"),
                         ({"type": "integer", "format": "uint64", "default": -1}, "UInt64")]:
        schema = {"title": "Ev", "type": "object", "properties": {"f": bad}}
        with pytest.raises(SchemaError, match=f"default .* not a.*{message}") as e:
            S.codegen([write(tmp_path / "bad.json", schema)], root=tmp_path)
        assert (e.value.context.file, e.value.context.path) == ("bad.json", "/properties/f")


def test_codegen_names_types_that_spell_one_class_name_apart(tmp_path: Path) -> None:
    """``a.b``, ``a_b`` and ``a/b`` (or ``list`` and ``List``) gave one class name and
    codegen failed; ``StrEnum`` was not written (the generator imports it)."""
    event_types = ["a.b", "a_b", "a/b", "list", "List", "StrEnum", "Struct", "StructEvent"]
    paths = [write(tmp_path / f"s{i}.json", {"x-evtools-event": t, "type": "object",
                                               "properties": {"n": {"type": "integer"}}})
             for i, t in enumerate(event_types)]
    source = S.codegen(paths, root=tmp_path)
    assert S.codegen(paths[::-1], root=tmp_path) == source  # deterministic
    registry = load(source).registry
    classes = {t: registry.class_for(t, 1) for t in event_types}
    assert len(set(classes.values())) == len(event_types)
    assert classes["StrEnum"].__name__ == "StrEnumEvent"
    for t in event_types:
        assert type(registry.decode(raw(t, {"n": 1}))) is classes[t]


@pytest.mark.parametrize(("schema_id", "version"), [
    ("https://schemas.example.com/v1/orders/OrderPlaced.v3.json", 3),
    ("https://schemas.example.com/v2/orders/OrderPlaced.json", 1),
    ("https://example.com/events/OrderPlaced/v4", 4),
    ("https://example.com/events/OrderPlaced/v5/", 5),
    ("OrderPlaced.v6.json#", 6),
])
def test_codegen_reads_the_version_from_the_last_segment_of_id(
        tmp_path: Path, schema_id: str, version: int) -> None:
    schema = {"$id": schema_id, "title": "OrderPlaced", "type": "object",
              "properties": {"a": {"type": "integer"}}}
    assert ("OrderPlaced", version) in generate(tmp_path, schema).registry


# -- codegen: errors --------------------------------------------------------------------------

def test_codegen_errors_name_file_and_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found") as e:
        S.codegen([tmp_path / "nope.json"], root=tmp_path)
    assert e.value.context.file == "nope.json"
    (tmp_path / "schemas").mkdir()
    with pytest.raises(UsageError, match=r"schemas is a folder: pass the schema files in it "
                                         r"\(e\.g\. schemas/\*\.json\)"):
        S.codegen([tmp_path / "schemas"], root=tmp_path)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{", encoding="utf-8")
    with pytest.raises(DecodeError) as d:
        S.codegen([bad_json], root=tmp_path)
    assert d.value.context.file == "bad.json"
    invalid = write(tmp_path / "invalid.json",
                    {"title": "X", "properties": {"a": {"type": 5}}})
    with pytest.raises(SchemaError) as s:
        S.codegen([invalid], root=tmp_path)
    assert s.value.context.path == "/properties/a/type"
    dangling = write(tmp_path / "dangling.json",
                     {"title": "X", "properties": {"a": {"$ref": "#/$defs/Nope"}}})
    with pytest.raises(SchemaError, match="points to nothing") as s:
        S.codegen([dangling], root=tmp_path)
    assert s.value.context.path == "/properties/a/$ref"
    remote = write(tmp_path / "remote.json",
                   {"title": "X", "properties": {"a": {"$ref": "https://x.org/a.json"}}})
    with pytest.raises(SchemaError, match="remote"):
        S.codegen([remote], root=tmp_path)
    nothing = write(tmp_path / "nothing.json", {"type": "string"})
    with pytest.raises(SchemaError, match="no event schema"):
        S.codegen([nothing], root=tmp_path)
    twice = write(tmp_path / "twice.json", {"title": "A", "properties": {}})
    with pytest.raises(UsageError, match="defined twice"):
        S.codegen([twice, write(tmp_path / "twice2.json", {"title": "A", "properties": {}})],
                  root=tmp_path)
    with pytest.raises(SchemaError, match="x-evtools-version"):
        S.codegen([write(tmp_path / "v0.json", {"title": "A", "x-evtools-version": 0,
                                                "properties": {}})], root=tmp_path)
    with pytest.raises(UsageError, match="identifier"):
        S.codegen([twice], registry_name="not valid")
    with pytest.raises(SchemaError, match="unsupported"):
        S.codegen([write(tmp_path / "d4.json", {
            "$schema": "http://json-schema.org/draft-04/schema#", "title": "A",
            "properties": {}})], root=tmp_path)


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(S.importlib.metadata, "version", lambda name: "0.26.1")
        with pytest.raises(UsageError, match=r">= 0\.89, found 0\.26\.1"):
            S._import_dcg()
    monkeypatch.setitem(sys.modules, "datamodel_code_generator", None)
    with pytest.raises(MissingDependency) as e:
        S._import_dcg()
    assert e.value.extra == "schema" and "evtools[schema]" in str(e.value)
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(MissingDependency, match="jsonschema"):
        S._import_jsonschema()


def test_codegen_refuses_a_registry_name_the_module_imports_or_defines(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"title": "A", "properties": {"n": {"type": "integer"}}})
    for name in ("Struct", "UUID", "Timestamp", "StrEnum", "field", "Registry"):
        with pytest.raises(UsageError, match=f"registry name '{name}' is a name the "
                                             "generated module imports"):
            S.codegen([path], root=tmp_path, registry_name=name)


def test_codegen_refuses_a_schema_nested_too_deep_naming_file_and_depth(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Had been a RecursionError traceback: in json.loads (100k brackets), and in the
    metaschema check for the schema inferred from a payload nested 100 levels."""
    from evtools.cli import main

    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(SchemaError, match="schema nested 100000 levels, deeper than codegen "
                                          "reads") as e:
        S.codegen([deep], root=tmp_path)
    assert e.value.context.file == "deep.json"
    payload: dict[str, Any] = {"a": 1}
    for _ in range(99):
        payload = {"a": payload}
    inferred = write(tmp_path / "Deep.v1.json", S.infer([raw("Deep", payload)])[("Deep", 1)])
    with pytest.raises(SchemaError, match=r"schema nested \d+ levels") as e:
        S.codegen([inferred], root=tmp_path)
    assert e.value.context.file == "Deep.v1.json"
    assert main(["codegen", str(deep)]) == 2
    err = capsys.readouterr().err
    assert "deep.json" in err and "nested 100000 levels" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# -- round trip: data/schemas <-> evtools.orders <-> the generated workload -----------------------

@pytest.fixture(scope="module")
def workload() -> list[RawEvent]:
    from evtools.datagen import generate as generate_workload

    return list(generate_workload(3000, seed=11))


def plain(value: Any) -> Any:
    """A typed event as comparable data that keeps the exact types (Decimal text, ...)."""
    if isinstance(value, msgspec.Struct):
        return {f: plain(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, enum.Enum):
        return ("enum", value.value)
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, Timestamp):
        return ("timestamp", str(value))
    if isinstance(value, uuid.UUID):
        return ("uuid", str(value))
    if isinstance(value, list):
        return [plain(v) for v in value]
    assert value is None or type(value) in (int, str, bool), type(value)
    return value


def test_generated_order_classes_decode_the_workload_like_the_hand_written_ones(
        workload: list[RawEvent]) -> None:
    from evtools.orders import EVENT_TYPES, order_registry

    from .schema import generated_orders

    hand, generated = order_registry(), generated_orders.registry
    assert {(name, version) for name, version, _ in EVENT_TYPES} == set(generated)
    seen = set()
    for event in workload:
        key = (event.type, event.schema_version)
        seen.add(key)
        a = msgspec.json.decode(event.data, type=hand.class_for(*key), dec_hook=dec_hook)
        b = msgspec.json.decode(event.data, type=generated.class_for(*key), dec_hook=dec_hook)
        assert plain(a) == plain(b), event
        assert msgspec.json.encode(b, enc_hook=enc_hook) == msgspec.json.encode(
            a, enc_hook=enc_hook)
    assert seen == set(generated)  # every type and version was exercised


def test_generated_order_module_is_what_codegen_writes_today() -> None:
    paths = sorted(SCHEMAS.glob("*.json"))
    fresh = S.codegen(paths, root=REPO, output=GENERATED)
    assert fresh == GENERATED.read_text(encoding="utf-8"), (
        "tests/schema/generated_orders.py is stale (or datamodel-code-generator changed its "
        "output): regenerate it with the command in its header, from the repository root")


def test_curated_schemas_accept_every_workload_payload(workload: list[RawEvent]) -> None:
    from referencing import Registry as Refs
    from referencing import Resource
    from referencing.jsonschema import DRAFT202012

    docs = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    refs = Refs().with_resources(
        (name, Resource.from_contents(doc, default_specification=DRAFT202012))
        for name, doc in docs.items())
    validators = {}
    for doc in docs.values():
        if "x-evtools-event" in doc:
            cls = jsonschema.validators.validator_for(doc)
            validators[(doc["x-evtools-event"], doc["x-evtools-version"])] = cls(
                doc, registry=refs)
    for event in workload:
        validators[(event.type, event.schema_version)].validate(
            json.loads(event.data, parse_float=Decimal))


def test_infer_on_the_workload_proves_the_exact_formats(workload: list[RawEvent]) -> None:
    schemas = S.infer(workload)

    def prop(type_: str, version: int, *path: str) -> dict[str, Any]:
        node = schemas[(type_, version)]
        for key in path:
            node = node["properties"][key]
        return node

    for type_, version in schemas:
        assert prop(type_, version, "order_id")["format"] == "int64"
        assert prop(type_, version, "occurred_at")["format"] == "date-time"
    assert prop("OrderCreated", 1, "customer_id")["format"] == "int64"
    assert prop("ItemAdded", 2, "sku")["format"] == "int64"
    assert "format" not in prop("ItemAdded", 2, "quantity")  # small ints: float64 is exact
    assert prop("ItemAdded", 2, "unit_price", "amount")["format"] == "decimal"
    assert prop("ItemAdded", 1, "price")["format"] == "decimal"
    assert prop("PaymentAuthorized", 1, "amount")["format"] == "decimal"
    assert prop("PaymentAuthorized", 2, "payment_id")["format"] == "uuid"
    assert prop("OrderCreated", 1, "request_id")["format"] == "uuid"
    assert set(prop("ItemAdded", 2, "unit_price", "currency")["enum"]) <= {
        "EUR", "USD", "GBP", "JPY", "CHF"}
    assert set(prop("OrderShipped", 1, "carrier")["enum"]) <= {
        "dhl", "ups", "fedex", "usps", "la-poste"}
    assert "enum" in prop("OrderCancelled", 1, "reason")
    assert "enum" not in prop("OrderShipped", 1, "tracking_number")
    evidence = prop("ItemAdded", 2, "sku")[S.EVIDENCE]
    assert evidence["above_2_53"] > 0 and evidence["values"] == evidence["integers"]
    money = prop("ItemAdded", 2, "unit_price", "amount")[S.EVIDENCE]
    assert money["float64_scale_loss"] > 0 and money["scales"] == [2]


def test_infer_then_codegen_decodes_the_workload(tmp_path: Path,
                                                 workload: list[RawEvent]) -> None:
    inferred = S.SchemaInference("memory:", S.infer(workload), {}, {}, {})
    paths = inferred.write(tmp_path / "schemas")
    module = load(S.codegen(paths, root=tmp_path))
    for event in workload:
        cls = module.registry.class_for(event.type, event.schema_version)
        decoded = msgspec.json.decode(event.data, type=cls, dec_hook=dec_hook)
        assert ST.json_equal(msgspec.to_builtins(decoded, builtin_types=(Decimal,),
                                                 enc_hook=enc_hook),
                             json.loads(event.data, parse_float=Decimal))


# -- infer ------------------------------------------------------------------------------------

def test_objects_keyed_by_ids_are_maps_open_to_new_keys(tmp_path: Path) -> None:
    payloads: list[dict[str, Any]] = [
        {"id": i, "qty_by_sku": {str(1000 + i % 7): i, str(2**60 + i): 2},
         "by_ref": {str(uuid.UUID(int=i)): Decimal("1.50")}, "odd": {"7": 1}}
        for i in range(30)]
    schema = S.infer(ST.to_events(payloads))[("Thing", 1)]
    props = schema["properties"]
    assert "properties" not in props["qty_by_sku"]
    assert props["qty_by_sku"]["additionalProperties"]["type"] == "integer"
    assert props["by_ref"]["additionalProperties"]["format"] == "decimal"
    assert "properties" in props["odd"]  # one key seen: a record, as it was
    path = tmp_path / "Thing.v1.json"
    path.write_text(json.dumps(schema))
    module = load(S.codegen([path], root=tmp_path))
    cls = module.registry.class_for("Thing", 1)
    event = msgspec.json.encode({"id": 99, "qty_by_sku": {"5": 1}, "by_ref": {},
                                 "odd": {"7": 2}})  # a SKU never seen
    decoded = msgspec.json.decode(event, type=cls, dec_hook=dec_hook)
    assert decoded.qty_by_sku == {"5": 1}


def test_infer_reads_every_event_not_a_sample() -> None:
    payloads: list[dict[str, Any]] = [
        {"id": i, "amount": Decimal("10.5"), "at": "2024-01-01T00:00:00Z",
         "ref": str(uuid.UUID(int=i)), "status": ["new", "paid"][i % 2]}
        for i in range(150)]
    payloads[120]["id"] = 2**60  # after the first 100
    del payloads[130]["status"]
    payloads[140]["amount"] = Decimal("10.50")  # its text float64 would print as 10.5
    payloads[145]["at"] = "2024-01-01T00:00:00"  # no offset
    schema = S.infer(ST.to_events(payloads))[("Thing", 1)]
    props = schema["properties"]
    assert props["id"]["format"] == "int64"
    assert props["id"][S.EVIDENCE] == {"values": 150, "integers": 150, "above_2_53": 1,
                                       "min": "0", "max": str(2**60)}
    assert props["amount"]["format"] == "decimal"
    assert props["amount"][S.EVIDENCE]["float64_scale_loss"] == 1
    assert props["amount"][S.EVIDENCE]["scales"] == [1, 2]
    assert "format" not in props["at"]
    assert props["at"][S.EVIDENCE]["rfc3339_with_offset"] == 149
    assert props["at"][S.EVIDENCE]["rfc3339_without_offset"] == 1
    assert props["ref"]["format"] == "uuid"
    assert props["status"]["enum"] == ["new", "paid"]
    assert schema["required"] == ["id", "amount", "at", "ref"]
    assert props["status"][S.EVIDENCE]["values"] == 149
    assert schema["x-evtools-event"] == "Thing" and schema["x-evtools-version"] == 1
    assert schema["additionalProperties"] is False
    assert schema[S.EVIDENCE] == {"events": 150, "decoded": 150, "invalid": 0}


@pytest.mark.parametrize(("values", "fmt"), [
    ([1, 2**53], None),  # 2**53 itself is exact in float64
    ([1, -(2**53) - 1], "int64"),
    ([2**63 - 1], "int64"),
    ([2**63, 1], "uint64"),
    ([2**64], None),
    ([2**63, -1], None),
])
def test_infer_integer_formats(values: list[int], fmt: str | None) -> None:
    schema = S.infer(ST.to_events([{"n": v} for v in values]))[("Thing", 1)]
    assert schema["properties"]["n"].get("format") == fmt
    assert schema["properties"]["n"]["type"] == "integer"


@pytest.mark.parametrize(("texts", "fmt"), [
    (["0.1", "2.5"], None),  # float64 prints these back exactly
    (["19.90", "5.25"], "decimal"),  # money with cents: 19.90 -> 19.9
    (["0.10000000000000000001"], "decimal"),  # more digits than float64 keeps
    (["1", "2.5", "9007199254740993"], "decimal"),  # an int float64 rounds
    (["1e400"], "decimal"),  # overflows float64
    (["1E+5", "2.5"], None),  # notation differs, value and scale survive
])
def test_infer_decimal_only_when_float64_changes_the_text(texts: list[str],
                                                          fmt: str | None) -> None:
    events = [raw("Thing", f'{{"x": {t}}}'.encode()) for t in texts]
    prop = S.infer(events)[("Thing", 1)]["properties"]["x"]
    assert prop["type"] == "number" and prop.get("format") == fmt


def test_infer_string_formats_enums_and_nulls() -> None:
    payloads = [{"money": f"{i}.00", "id_text": str(i), "mixed": i if i % 2 else "x",
                 "maybe": "on" if i % 3 else None, "tags": ["a", "b"][: i % 3],
                 "nested": {"k": "v", "deep": {"at": "2024-01-01T00:00:00.1+05:45"}}}
                for i in range(30)]
    payloads[0]["nested"]["extra"] = True
    schema = S.infer(ST.to_events(payloads))[("Thing", 1)]
    props = schema["properties"]
    assert props["money"]["format"] == "decimal" and props["money"]["type"] == "string"
    assert "format" not in props["id_text"] and "enum" not in props["id_text"]
    assert props["mixed"]["type"] == ["string", "integer"]
    assert props["maybe"]["type"] == ["string", "null"]
    assert props["maybe"]["enum"] == ["on", None]
    assert props["tags"]["items"]["enum"] == ["a", "b"]
    nested = props["nested"]
    assert nested["required"] == ["k", "deep"]
    assert nested["properties"]["deep"]["properties"]["at"]["format"] == "date-time"
    assert nested["properties"]["extra"][S.EVIDENCE]["values"] == 1


def test_infer_enum_thresholds_are_configurable() -> None:
    events = ST.to_events([{"s": "a"}, {"s": "b"}, {"s": "a"}])
    assert "enum" not in S.infer(events)[("Thing", 1)]["properties"]["s"]
    assert S.infer(events, enum_min_values=3)[("Thing", 1)]["properties"]["s"]["enum"] == [
        "a", "b"]
    assert "enum" not in S.infer(events, enum_min_values=3, enum_max_distinct=1)[
        ("Thing", 1)]["properties"]["s"]
    with pytest.raises(UsageError):
        S.infer(events, enum_max_distinct=0)


def test_infer_counts_payloads_it_cannot_read_and_keeps_versions_apart() -> None:
    events = [raw("A", {"x": 1}), raw("A", b"[1]"), raw("A", b"{"), raw("A", {"y": 1},
                                                                              version=2)]
    schemas = S.infer(events)
    assert schemas[("A", 1)][S.EVIDENCE] == {"events": 3, "decoded": 1, "invalid": 2}
    assert list(schemas[("A", 2)]["properties"]) == ["y"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ST.payload_batches())
def test_property_inferred_schema_validates_and_codegen_decodes_its_inputs(
        tmp_path_factory: pytest.TempPathFactory, payloads: list[dict[str, Any]]) -> None:
    events = ST.to_events(payloads)
    schema = S.infer(events, enum_min_values=2)[("Thing", 1)]
    validator = jsonschema.Draft202012Validator(schema)
    for event in events:
        errors = list(validator.iter_errors(json.loads(event.data, parse_float=Decimal)))
        assert not errors, errors[0].message
    path = write(tmp_path_factory.mktemp("prop") / "Thing.v1.json", schema)
    module = load(S.codegen([path], root=path.parent))
    for event in events:
        decoded = module.registry.decode(event)
        assert ST.json_equal(msgspec.to_builtins(decoded, builtin_types=(Decimal,),
                                                 enc_hook=enc_hook),
                             json.loads(event.data, parse_float=Decimal)), event.data


_lossless = msgspec.json.Decoder(float_hook=Decimal)


def roundtrip(tmp_path: Path, payloads: list[dict[str, Any]]) -> list[Any]:
    """infer -> codegen -> decode each payload -> encode: the payloads read back."""
    events = ST.to_events(payloads)
    path = write(tmp_path / "Thing.v1.json", S.infer(events)[("Thing", 1)])
    registry = load(S.codegen([path], root=tmp_path)).registry
    return [_lossless.decode(registry.encode(registry.decode(e))) for e in events]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
                .map(lambda f: Decimal(repr(f))), min_size=1, max_size=6))
def test_property_ints_beside_floats_come_back_as_ints(
        tmp_path_factory: pytest.TempPathFactory, values: list[int | Decimal]) -> None:
    payloads = [{"x": v, "xs": [v, *values]} for v in values]
    back = roundtrip(tmp_path_factory.mktemp("intfloat"), payloads)
    for event, got in zip(ST.to_events(payloads), back, strict=True):
        sent = _lossless.decode(event.data)  # as stored: an integral Decimal is an int
        for a, b in zip([sent["x"], *sent["xs"]], [got["x"], *got["xs"]], strict=True):
            assert type(a) is type(b) and a == b, (a, b)


def test_an_int_beside_floats_is_int_or_float_not_float() -> None:
    events = ST.to_events([{"x": 1}, {"x": Decimal("1.5")}, {"x": Decimal("1E+2")}])
    prop = S.infer(events)[("Thing", 1)]["properties"]["x"]
    assert prop["type"] == ["integer", "number"] and "format" not in prop
    money = ST.to_events([{"x": 1}, {"x": Decimal("19.90")}])  # Decimal keeps 1 as 1
    assert S.infer(money)[("Thing", 1)]["properties"]["x"]["type"] == "number"


def test_an_empty_object_is_an_empty_map_not_a_record(tmp_path: Path) -> None:
    """One ``{}`` had turned map detection off: a class per SKU, a new SKU drift."""
    payloads: list[dict[str, Any]] = [
        {"lines": {"101": {"q": 1}, "102": {"q": 2}, "103": {"q": 3}}},
        {"lines": {"104": {"q": 1}}}, {"lines": {}}]
    schema = S.infer(ST.to_events(payloads))[("Thing", 1)]
    lines = schema["properties"]["lines"]
    assert "properties" not in lines and lines["additionalProperties"]["required"] == ["q"]
    module = load(S.codegen([write(tmp_path / "Thing.v1.json", schema)], root=tmp_path))
    assert module.registry.decode(raw("Thing", {"lines": {"999": {"q": 5}}})).lines[
        "999"].q == 5


def test_a_map_keeps_no_field_per_key_whichever_object_comes_first() -> None:
    """Every key of a map had been kept as a record's property too: 100k events of five
    random SKUs each took 13.5 s and 1.47 GB. Objects with other keys as well keep it a
    map, of all their values, in any order."""
    payloads: list[dict[str, Any]] = [
        {"lines": {str(10**9 + 7 * i + j): {"q": j} for j in range(5)}} for i in range(200)]
    inferrer = S._run_inference(ST.to_events(payloads), 10, 20, True)
    lines = inferrer.roots[("Thing", 1)].props["lines"]
    assert lines.map_only and lines.props == {} and len(lines.map_keys) == 3
    assert lines.map_item is not None and lines.map_item.present == 1000
    record_first = [{"lines": {"total": 5}}, *payloads]  # one record before the SKUs
    inferrer = S._run_inference(ST.to_events(record_first), 10, 20, True)
    lines = inferrer.roots[("Thing", 1)].props["lines"]
    assert lines.map_only and lines.props == {}
    assert lines.map_item is not None and lines.map_item.present == 1001
    mixed = [*payloads[:3], {"lines": {"total": 5}}]
    found = {json.dumps(S.infer(ST.to_events(order))[("Thing", 1)], sort_keys=True)
             for order in (mixed, mixed[::-1], [mixed[3], *mixed[:3]])}
    assert len(found) == 1
    values = json.loads(found.pop())["properties"]["lines"]["additionalProperties"]
    assert values["type"] == ["object", "integer"] and values["required"] == ["q"]


def test_infer_keeps_uppercase_uuids_strings() -> None:
    """uuid.UUID writes an uppercase UUID back in lowercase: its text would be lost."""
    ref = "6de2fb1f-a098-4691-8352-bc85e456559c"
    payloads = [{"upper": ref.upper(), "lower": ref,
                 "by_ref": {str(uuid.UUID(int=2**100 + i)).upper(): i for i in range(3)}}]
    props = S.infer(ST.to_events(payloads))[("Thing", 1)]["properties"]
    assert "format" not in props["upper"] and props["lower"]["format"] == "uuid"
    assert "additionalProperties" in props["by_ref"]  # keys keep their text: still IDs


def test_infer_counts_a_payload_that_repeats_a_key_unreadable() -> None:
    """It had silently taken the last value of ``{"order_id": 1, "order_id": 2}``."""
    events = [raw("A", b'{"order_id": 1, "order_id": 2}', stream="s-9"), raw("A", {"n": 3})]
    inferrer = S._run_inference(events, 10, 20, True)
    assert inferrer.invalid == {("A", 1): 1}
    assert "stream 's-9' version 0: duplicate key 'order_id' in /" in \
        inferrer.invalid_examples[("A", 1)]
    schema = S.infer(events)[("A", 1)]
    assert list(schema["properties"]) == ["n"]
    assert schema[S.EVIDENCE] == {"events": 2, "decoded": 1, "invalid": 1}


# -- check ------------------------------------------------------------------------------------

class Kind(enum.Enum):
    A = "a"
    B = "b"


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: Int64
    price: Decimal


class Placed(msgspec.Struct, forbid_unknown_fields=True):
    id: Int64
    kind: Kind
    at: Timestamp
    ref: uuid.UUID
    lines: list[Line]
    note: str | None = None


class PlacedV1(msgspec.Struct, forbid_unknown_fields=True):
    id: Int64
    kind: str


def make_registry(**kwargs: Any) -> Registry:
    registry = Registry(**kwargs)
    registry.register(PlacedV1, name="Placed", version=1)
    registry.register(Placed, name="Placed", version=2)

    @registry.upcaster("Placed", from_version=1)
    def to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "at": "2024-01-01T00:00:00Z",
                "ref": "6940776c-b540-4ce4-8c5d-375a43bbba66", "lines": []}

    return registry


OK = {"id": 1, "kind": "a", "at": "2024-01-01T00:00:00Z",
      "ref": "6940776c-b540-4ce4-8c5d-375a43bbba66", "lines": [{"sku": 1, "price": 1.5}]}


def kinds(report: S.DriftReport) -> dict[tuple[str, str], int]:
    return {(p.path, p.kind): p.count for p in report.problems}


def test_check_clean_events_have_no_drift() -> None:
    report = S.check([raw("Placed", OK, version=2), raw("Placed", {"id": 2, "kind": "a"})],
                     make_registry())
    assert not report.has_drift
    assert report.total_events == report.total_accepted == 2
    assert report.to_frame().height == 0
    assert report.to_dict()["types"] == [{"event_type": "Placed", "schema_version": 1,
                                          "events": 1, "accepted": 1},
                                         {"event_type": "Placed", "schema_version": 2,
                                          "events": 1, "accepted": 1}]


def test_check_reports_every_problem_of_an_event_not_only_the_first() -> None:
    bad = {**OK, "id": "1", "kind": "c", "at": "2024-01-01T00:00:00", "ref": "nope",
           "colour": "red", "lines": [{"sku": 2**63, "price": "x"}, {"price": 1}]}
    del bad["ref"]
    report = S.check([raw("Placed", bad, version=2, stream="order-9", position=4)],
                     make_registry())
    assert kinds(report) == {
        ("/id", "wrong_type"): 1,
        ("/kind", "invalid_value"): 1,
        ("/at", "invalid_value"): 1,
        ("/ref", "missing"): 1,
        ("/lines/*/sku", "out_of_range"): 1,
        ("/lines/*/price", "invalid_value"): 1,
        ("/lines/*/sku", "missing"): 1,
        ("/colour", "unexpected"): 1,
    }
    problem = next(p for p in report.problems if p.kind == "missing" and p.path == "/lines/*/sku")
    assert (problem.example_stream, problem.example_version) == ("order-9", 4)
    assert problem.example_path == "/lines/1/sku"
    assert report.total_accepted == 0 and report.has_drift


def test_check_holds_a_decimal_sent_as_text_to_text() -> None:
    class Paid(msgspec.Struct, forbid_unknown_fields=True):
        amount: DecimalText

    registry = Registry()
    registry.register(Paid, name="Paid")
    events = [raw("Paid", {"amount": "5.10"}), raw("Paid", {"amount": 5.1}),
              raw("Paid", {"amount": "1e3"})]
    report = S.check(events, registry)
    assert kinds(report) == {("/amount", "wrong_type"): 1, ("/amount", "invalid_value"): 1}
    assert report.total_accepted == 1


def test_check_counts_per_field_and_keeps_the_first_example() -> None:
    events = [raw("Placed", {**OK, "note": 5}, version=2, stream=f"s-{i}", position=i)
              for i in range(3)]
    events.append(raw("Placed", {**OK, "lines": [{"sku": 1, "price": 1, "x": 1}]}, version=2))
    report = S.check(events, make_registry())
    assert kinds(report) == {("/note", "wrong_type"): 3, ("/lines/*/x", "unexpected"): 1}
    note = report.problems[0] if report.problems[0].path == "/note" else report.problems[1]
    assert note.example_stream == "s-0" and "expected string or null" in note.detail
    frame = report.to_frame()
    assert frame.columns == list(S.DriftReport.COLUMNS)
    assert frame["count"].sum() == 4
    assert report.to_dict()["problems"][0]["kind"] in S.DRIFT_KINDS


class Wide(msgspec.Struct, forbid_unknown_fields=True):
    id: Int64
    u: UInt64
    maybe: UInt64 | None = None


def test_check_uint64_fields_are_integers_not_strings() -> None:
    """A valid UInt64 beside a refused field is no drift; a bad one is named as such."""
    registry = Registry()
    registry.register(Wide, name="Wide")
    events = [raw("Wide", {"id": 2**63, "u": 2**64 - 1, "maybe": 2**63}),
              raw("Wide", {"id": 1, "u": -1, "maybe": "7"}),
              raw("Wide", {"id": 1, "u": 2**64, "maybe": True})]
    report = S.check(events, registry)
    assert kinds(report) == {("/id", "out_of_range"): 1, ("/u", "out_of_range"): 2,
                             ("/maybe", "wrong_type"): 2}
    maybe = next(p for p in report.problems if p.path == "/maybe")
    assert "expected integer or null, got string" in maybe.detail
    assert not S.check([raw("Wide", {"id": 1, "u": 2**64 - 1})], registry).has_drift


def test_check_unknown_fields_under_a_keep_registry_are_drift_too() -> None:
    report = S.check([raw("Placed", {**OK, "extra": [1]}, version=2)],
                     make_registry(unknown_fields="keep"))
    assert kinds(report) == {("/extra", "unexpected"): 1}


def test_check_events_no_class_or_upcaster_reaches() -> None:
    registry = make_registry()
    events = [
        raw("Placed", OK, version=3),  # no such version
        raw("Placed", {"id": 1, "kind": 5}),  # v1 that does not fit v1: field problems
        raw("Gone", {"id": 1}),
        raw("Placed", b'{"id": 1,', version=2),
    ]
    no_upcaster = Registry()
    no_upcaster.register(PlacedV1, name="Placed", version=1)
    no_upcaster.register(Placed, name="Placed", version=2)
    report = S.check(events, registry)
    assert kinds(report) == {("", "unreachable"): 1, ("/kind", "wrong_type"): 1,
                             ("", "unknown_type"): 1, ("", "invalid_json"): 1}
    fits = S.check([raw("Placed", {"id": 1, "kind": "a"})], no_upcaster)
    assert kinds(fits) == {("", "unreachable"): 1}
    [problem] = fits.problems  # says what to do about it
    assert problem.detail.startswith("fits PlacedV1, its class for v1, but decode lifts every "
                                     "event to v2: ")
    assert "registry.add_upcaster('Placed', 1, fn) adds one" in problem.detail
    wrong = Registry()  # an upcaster exists but returns the wrong class: no such hint
    wrong.register(PlacedV1, name="Placed", version=1)
    wrong.register(Placed, name="Placed", version=2)
    wrong.add_upcaster("Placed", 1, lambda e: e, typed=True)
    [problem] = S.check([raw("Placed", {"id": 1, "kind": "a"})], wrong).problems
    assert "returned PlacedV1, not Placed" in problem.detail
    assert "adds one" not in problem.detail


def test_check_takes_a_registry_not_its_factory() -> None:
    with pytest.raises(UsageError, match=r"call it: check\(events, order_registry\(\)\)"):
        S.check([], make_registry)  # type: ignore[arg-type]


def test_console_script_imports_the_registry_module_from_the_current_folder(
        tmp_path: Path) -> None:
    """codegen writes events.py here; `evtools schema check --registry events:registry`
    (the console script, whose sys.path lacks the current folder) must find it."""
    (tmp_path / "my_events.py").write_text(
        "from evtools.orders import order_registry\nregistry = order_registry()\n")
    (tmp_path / "one.jsonl").write_bytes(
        b'{"stream": "order-1", "version": 0, "type": "OrderDelivered", '
        b'"data": {"order_id": 1, "occurred_at": "2026-01-01T00:00:00Z"}}\n')
    script = Path(sys.executable).with_name("evtools")
    if not script.is_file():
        pytest.skip(f"no evtools console script beside {sys.executable}")
    done = subprocess.run([str(script), "schema", "check", "one.jsonl", "--registry",
                           "my_events:registry"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert "cannot import --registry module" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr


def test_check_upcast_output_the_class_refuses_is_unreachable() -> None:
    registry = Registry()
    registry.register(PlacedV1, name="Placed", version=1)
    registry.register(Placed, name="Placed", version=2)
    registry.add_upcaster("Placed", 1, lambda p: {**p, "kind": "zzz"})
    report = S.check([raw("Placed", {"id": 1, "kind": "a"})], registry)
    [problem] = report.problems
    assert (problem.kind, problem.path) == ("unreachable", "/kind")
    assert "produced a payload Placed rejects: Invalid enum value 'zzz'" in problem.detail


class Loose(msgspec.Struct, forbid_unknown_fields=True):
    amount: Decimal
    ratio: float
    ref: uuid.UUID
    note: str | None = None


def test_check_reports_values_its_class_writes_back_otherwise() -> None:
    """"Accepted exactly" had been said of values the class rewrites: "5.10" into a Decimal
    comes back as a number, 3 in a float field as 3.0, an uppercase UUID in lowercase."""
    registry = Registry()
    registry.register(Loose, name="Loose")
    ref = "6de2fb1f-a098-4691-8352-bc85e456559c"
    exact = [{"amount": Decimal("5.10"), "ratio": Decimal("0.5"), "ref": ref},
             {"amount": Decimal("1E+2"), "ratio": Decimal("1E+5"), "ref": ref, "note": None},
             {"amount": 1, "ratio": Decimal("2.5"), "ref": ref}]  # absent note: no drift
    assert not S.check([raw("Loose", p) for p in exact], registry).has_drift
    rewritten = [{"amount": "5.10", "ratio": 3, "ref": ref.upper()},
                 {"amount": 1, "ratio": Decimal("19.90"), "ref": ref}]
    report = S.check([raw("Loose", p, stream=f"s-{i}") for i, p in enumerate(rewritten)],
                     registry)
    assert report.total_accepted == 0
    assert kinds(report) == {("/amount", "wrong_type"): 1, ("/ratio", "wrong_type"): 1,
                             ("/ratio", "out_of_range"): 1, ("/ref", "invalid_value"): 1}
    details = {(p.path, p.kind): p.detail for p in report.problems}
    assert details[("/amount", "wrong_type")] == \
        'string "5.10" is accepted but written back as number 5.10'
    assert details[("/ratio", "wrong_type")] == \
        "integer 3 is accepted but written back as number 3.0"
    assert details[("/ratio", "out_of_range")] == "19.90 is written back as 19.9"
    assert details[("/ref", "invalid_value")] == f'"{ref.upper()}" is written back as "{ref}"'
    assert "0 accepted exactly, 2 with drift" in S._table(report)


def test_check_works_out_each_class_once_not_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = make_registry()
    calls: list[Any] = []
    type_info = msgspec.inspect.type_info

    def counting(t: Any) -> Any:
        calls.append(t)
        return type_info(t)

    monkeypatch.setattr(msgspec.inspect, "type_info", counting)
    events = [raw("Placed", {**OK, "id": "x"}, version=2, position=i) for i in range(50)]
    report = S.check(events, registry)
    assert kinds(report) == {("/id", "wrong_type"): 50}
    assert calls.count(Placed) == 1


# -- --registry module:attr ---------------------------------------------------------------------

def test_load_registry_from_module_function_and_file(tmp_path: Path) -> None:
    assert isinstance(S.load_registry("evtools.orders:order_registry"), Registry)
    registry = S.load_registry(f"{GENERATED}:registry")
    assert ("ItemAdded", 2) in registry
    with pytest.raises(UsageError, match="module:attr"):
        S.load_registry("evtools.orders")
    with pytest.raises(UsageError, match="cannot import"):
        S.load_registry("evtools.nope:registry")
    with pytest.raises(UsageError, match="no attribute"):
        S.load_registry("evtools.orders:nope")
    with pytest.raises(UsageError, match="is the class Currency, not an evtools Registry"):
        S.load_registry("evtools.orders:Currency")
    with pytest.raises(UsageError, match="is a str"):
        S.load_registry("evtools.orders:__name__")
    with pytest.raises(UsageError, match="not found"):
        S.load_registry(f"{tmp_path}/missing.py:registry")


# -- CLI handlers -----------------------------------------------------------------------------

@pytest.fixture
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evtools")
    S.register_cli(p.add_subparsers(dest="command", required=True))
    return p


def run(parser: argparse.ArgumentParser, *argv: str) -> int:
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def export(tmp_path: Path) -> Iterator[Path]:
    from evtools.datagen import export_jsonl
    from evtools.datagen import generate as generate_workload

    path = tmp_path / "events.jsonl"
    export_jsonl(generate_workload(400, seed=5), path)
    yield path


def test_cli_codegen_writes_the_module(parser: argparse.ArgumentParser, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    schema = write(tmp_path / "a.json", ALL_FORMATS)
    out = tmp_path / "gen" / "events.py"
    assert run(parser, "codegen", str(schema), "-o", str(out), "--registry-name", "events") == 0
    assert "events = Registry()" in out.read_text()
    assert run(parser, "codegen", str(schema), "--optional", "unset") == 0
    assert "UnsetType" in capsys.readouterr().out


def test_cli_schema_infer_writes_one_file_per_type_and_version(
        parser: argparse.ArgumentParser, tmp_path: Path, export: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inferred"
    assert run(parser, "schema", "infer", str(export), "--out", str(out)) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "ItemAdded.v1.json" in names and "ItemAdded.v2.json" in names
    assert json.loads((out / "ItemAdded.v2.json").read_text())["properties"]["sku"][
        "format"] == "int64"
    assert "inferred" in capsys.readouterr().err
    assert run(parser, "schema", "infer", str(export), "--enum-min-values", "1") == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == set(names)


def test_cli_schema_infer_refuses_a_source_with_nothing_to_infer_from(
        parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    from evtools.errors import InputError
    from evtools.events import to_cloudevent

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jsonl holds no events"):
        run(parser, "schema", "infer", str(empty), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    unreadable = tmp_path / "arrays.jsonl"
    unreadable.write_bytes(to_cloudevent(raw("Thing", b"[1]", stream="t-7", position=3))
                           + b"\n")
    with pytest.raises(InputError, match=r"no event payload is a JSON object.*Thing v1: "
                                         r"stream 't-7' version 3"):
        run(parser, "schema", "infer", str(unreadable))


def test_cli_schema_infer_keeps_types_whose_file_names_clash_apart(
        parser: argparse.ArgumentParser, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.events import to_cloudevent

    export = tmp_path / "clash.jsonl"
    export.write_bytes(b"".join(to_cloudevent(raw(t, {t: 1})) + b"\n"
                                for t in ("com.shop.Paid", "com_shop_Paid", "Other")))
    out = tmp_path / "inferred"
    assert run(parser, "schema", "infer", str(export), "--out", str(out)) == 0
    events = sorted(json.loads(p.read_text())["x-evtools-event"] for p in out.iterdir())
    assert events == ["Other", "com.shop.Paid", "com_shop_Paid"]
    assert (out / "Other.v1.json").exists()
    capsys.readouterr()
    assert run(parser, "schema", "infer", str(export)) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_cli_schema_check_exit_codes(parser: argparse.ArgumentParser, tmp_path: Path,
                                     export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evtools.datagen import write_workload
    from evtools.stores import open_store

    spec = "evtools.orders:order_registry"
    assert run(parser, "schema", "check", str(export), "--registry", spec,
               "--fail-on-drift") == 0
    assert "0 with drift" in capsys.readouterr().out
    drifted = f"sqlite:///{tmp_path / 'drifted.db'}"
    with open_store(drifted) as store:
        write_workload(store, 400, seed=5, faults="corrupt=0.05,unknown_type=0.02")
    assert run(parser, "schema", "check", str(drifted), "--registry", spec) == 0
    assert "unknown_type" in capsys.readouterr().out
    assert run(parser, "schema", "check", str(drifted), "--registry", spec,
               "--fail-on-drift", "--format", "json") == 1
    assert json.loads(capsys.readouterr().out)["has_drift"] is True
    out = tmp_path / "report.csv"
    assert run(parser, "schema", "check", str(drifted), "--registry", spec, "--format", "csv",
               "--out", str(out)) == 0
    assert out.read_text().startswith("event_type,schema_version,path,kind,count")
    with pytest.raises(UsageError, match="not an evtools Registry"):
        run(parser, "schema", "check", str(export), "--registry", "evtools.orders:EVENT_TYPES")


def test_files_that_cannot_be_written_are_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=f"cannot write {blocker}/x.py"):
        S._emit("text", str(blocker / "x.py"))
    result = S.SchemaInference(source="s", schemas={}, events={}, invalid={},
                               invalid_examples={})
    with pytest.raises(UsageError, match=f"cannot write into {blocker}/schemas"):
        result.write(blocker / "schemas")


def test_a_payload_too_deep_to_infer_from_is_counted_unreadable_with_its_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A payload nested hundreds of levels had ended `schema infer` in a RecursionError
    (its schema, two levels a level, outgrew json.dumps; on 3.12+ the walk itself)."""
    from evtools.cli import main

    deep = b'{"a":' * 600 + b"1" + b"}" * 600
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"stream": "s", "version": 0, "type": "T", "data": {"a": 1}}\n'
                     b'{"stream": "s", "version": 1, "type": "T", "data": ' + deep + b"}\n")
    result = S.infer_source(str(path))
    assert result.invalid == {("T", 1): 1}
    assert "nested 600 levels, deeper than inference goes (256)" in \
        result.invalid_examples[("T", 1)]
    assert result.schemas[("T", 1)]["properties"]["a"]["type"] == "integer"
    assert main(["schema", "infer", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "1 unreadable, e.g. stream 's' version 1: nested 600 levels" in \
        capsys.readouterr().err


def test_cli_schema_infer_says_why_no_payload_could_be_read(
        parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    """It had said "no event payload is a JSON object" of objects nested too deep or with
    a key repeated."""
    from evtools.errors import InputError

    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    path = tmp_path / "unreadable.jsonl"
    path.write_bytes(b"".join(b'{"stream": "s", "version": %d, "type": "T", "data": %s}\n'
                              % (i, data) for i, data in
                              enumerate([deep, deep, b'{"a": 1, "a": 2}'])))
    with pytest.raises(InputError, match=r"no event payload can be read \(2 nested too deep, "
                                         r"1 with a key repeated\).*T v1: stream 's' "
                                         r"version 0: nested 300 levels"):
        run(parser, "schema", "infer", str(path))


def test_cli_codegen_optional_help_says_what_each_style_writes_back(
        parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser.parse_args(["codegen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "an absent field is written back as null" in text
    assert "absent stays absent: events are written back exactly as read" in text
