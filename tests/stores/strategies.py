"""Hypothesis strategies for store tests: events whose bytes try to break round trips."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from evtools.stores import NewEvent

JSON = "application/json"
OCTETS = "application/octet-stream"

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
_space = st.sampled_from(["", " ", "\t", "  ", "\n", "\r\n", " \n\t"])


@st.composite
def json_payloads(draw: st.DrawFn) -> bytes:
    """Valid JSON with odd whitespace inside and around it, sometimes non-ASCII raw."""
    value = draw(_json_values)
    indent = draw(st.sampled_from([None, 0, 1, "\t"]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    text = json.dumps(value, indent=indent, separators=separators,
                      ensure_ascii=draw(st.booleans()))
    return (draw(_space) + text + draw(_space)).encode()


payloads = st.one_of(
    json_payloads().map(lambda b: (b, JSON)),
    st.binary(max_size=64).map(lambda b: (b, OCTETS)),
    st.binary(max_size=32).map(lambda b: (b, JSON)),  # labelled JSON, is not: kept anyway
    json_payloads().map(lambda b: (b, "application/cloudevents+json")),
)
metadata = st.one_of(st.just(b""), json_payloads(), st.binary(max_size=24))
type_names = st.text(min_size=1, max_size=24).filter(lambda t: "\x00" not in t)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.just(UTC))


@st.composite
def new_events(draw: st.DrawFn, *, binary_content_types: bool = True,
               uuid_ids: bool = False) -> NewEvent:
    data, content_type = draw(payloads)
    if not binary_content_types and content_type not in (JSON, OCTETS):
        content_type = JSON
    if uuid_ids:
        event_id = str(uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))))
    else:
        event_id = draw(st.one_of(
            st.uuids().map(str),
            st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                    min_size=1, max_size=20)))
    return NewEvent(
        type=draw(type_names),
        data=data,
        metadata=draw(metadata),
        id=event_id,
        content_type=content_type,
        schema_version=draw(st.integers(min_value=1, max_value=10_000)),
        recorded_at=draw(times),
    )


def event_batches(**kw: bool) -> st.SearchStrategy[list[NewEvent]]:
    """A non-empty batch of events with distinct ids."""
    return st.lists(new_events(**kw), min_size=1, max_size=6, unique_by=lambda e: e.id)


# -- pages of rows of the SQLite store, as other tools may have written them -----------------

#: Cells another tool may have written into any column of the events table.
ODD_CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3),
    st.sampled_from([2**63, -(2**63) - 1, 2**70]), st.floats(allow_nan=False),
    st.text(max_size=8), st.binary(max_size=4),
    st.sampled_from(["2024-05-01", "2024-05-01T12", "2024-W18-3", "2024-05-01T12:00:00",
                     "2024-05-01T12:00:00Z", "2024-05-01T12:00:00+05:30",
                     "2024-05-01T12:00:00-0530", "2024-05-01T12:00:00.5-05:30",
                     "2024-05-01 12:00+00:00", "x-00:00", "+0:00"]))


@st.composite
def store_pages(draw: st.DrawFn, max_rows: int = 4
                ) -> tuple[list[tuple[Any, ...]], bool]:
    """``(rows, with_stream)``: a page of ``SqliteStore`` rows (the stream column first, or
    not) as read back, each a good row with a few cells replaced by odd ones, now and then
    a row of another width."""
    with_stream = draw(st.booleans())
    good = (["order-1"] if with_stream else []) + [
        3, "ItemAdded", b"{}", b"", "id-1", "2024-05-01T12:00:00+00:00", 17, None, 1]
    rows = []
    for _ in range(draw(st.integers(0, max_rows))):
        row = list(good)
        for i in draw(st.lists(st.integers(0, len(row) - 1), max_size=3)):
            row[i] = draw(ODD_CELLS)
        if draw(st.integers(0, 20)) == 0:
            row = row[:-1]
        rows.append(tuple(row))
    return rows, with_stream
