from __future__ import annotations

import pytest

from evtools import errors
from evtools.errors import Context, EvtoolsError, InputError, SchemaError


def test_every_exported_error_is_an_evtools_error() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, EvtoolsError), name


def test_tree_in_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        if name != "Context":
            assert name in doc, f"{name} missing from the tree drawn in errors.__doc__"


def test_message_names_file_stream_version_type_and_path() -> None:
    err = SchemaError("Expected `int`, got `str`", file="events.jsonl", line=3,
                      stream="order-1", version=7, event_type="OrderPlaced",
                      schema_version=2, path="/items/0/qty")
    assert str(err) == ("Expected `int`, got `str` (file events.jsonl:3, stream 'order-1', "
                        "version 7, type OrderPlaced v2, at /items/0/qty)")


def test_with_context_fills_only_what_is_missing() -> None:
    err = SchemaError("bad", stream="a", path="/x")
    err.with_context(Context(stream="b", version=3, file="f.json"))
    assert err.context == Context(stream="a", version=3, file="f.json", path="/x")


def test_message_without_context_is_the_bare_message() -> None:
    assert str(EvtoolsError("plain")) == "plain"


def test_missing_dependency_says_what_to_install() -> None:
    err = errors.MissingDependency("torch", "torch")
    # torch alone and first: the bare name pulls gigabytes of CUDA packages
    assert "install it first, alone: pip install torch==2.13.0" in str(err)
    assert "pip install 'evtools[plots]'" in str(errors.MissingDependency("matplotlib", "plots"))


def test_frozen_aggregate_error_is_also_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        raise errors.FrozenAggregateError("frozen")


def test_a_location_the_message_names_is_not_said_twice() -> None:
    assert str(errors.StreamNotFound("stream 'o-1' does not exist", stream="o-1")) == \
        "stream 'o-1' does not exist"
    # "version 12" does not say "version 1"
    assert str(errors.InputError("bad at version 12", stream="s", version=1)) == \
        "bad at version 12 (stream 's', version 1)"
    assert str(errors.InputError("x", stream="s", version=3, path="/a")) == \
        "x (stream 's', version 3, at /a)"


def test_a_location_with_a_line_break_stays_on_one_line() -> None:
    # a type or key from hostile input is shown quoted, with its escapes
    e = InputError("bad", file="a\nb.jsonl", line=5, event_type="Order\nCreated",
                   path="/x\ny")
    assert "\n" not in str(e)
    assert "file 'a\\nb.jsonl':5" in str(e) and "type 'Order\\nCreated'" in str(e)
    assert str(InputError("bad", event_type="OrderCreated")) == "bad (type OrderCreated)"
