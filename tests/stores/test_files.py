"""JSONL and Parquet: export through the contract, import read-only, exact round trips."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtools.errors import EnvelopeError, StoreUnavailable, UsageError
from evtools.events import RawEvent, to_cloudevent
from evtools.stores import EventStore, JsonlStore, NewEvent, ParquetStore, open_store
from evtools.stores.files import embeddable

from .contract import ReadContract, StoreContract, expected_events
from .strategies import event_batches, json_payloads

pytestmark = pytest.mark.timeout(120)


def _fresh(tmp_path: Path, suffix: str) -> Path:
    n = len(list(tmp_path.iterdir()))
    return tmp_path / f"events-{n}{suffix}"


class TestJsonlExport(StoreContract):
    """A JSONL file open for export is a full store (reads scan the file)."""

    LARGE = 20_000  # reads parse every line: keep the laziness check quick

    def make_store(self, tmp_path: Path) -> EventStore:
        return JsonlStore(_fresh(tmp_path, ".jsonl"), "w")


class TestJsonlFlatExport(StoreContract):
    LARGE = 20_000  # as above

    def make_store(self, tmp_path: Path) -> EventStore:
        return JsonlStore(_fresh(tmp_path, ".jsonl"), "w", format="flat")


class TestJsonlImport(ReadContract):
    def populate(self, tmp_path: Path, appends: list[tuple[str, list[NewEvent]]]) -> EventStore:
        path = _fresh(tmp_path, ".jsonl")
        with JsonlStore(path, "w") as out:
            for stream, events in appends:
                out.append(stream, events)
        return JsonlStore(path)


class TestParquetImport(ReadContract):
    def populate(self, tmp_path: Path, appends: list[tuple[str, list[NewEvent]]]) -> EventStore:
        path = _fresh(tmp_path, ".parquet")
        with ParquetStore(path, "w", row_group_size=3) as out:
            for stream, events in appends:
                out.append(stream, events)
        return ParquetStore(path, batch_size=2)


# -- exact round trips --------------------------------------------------------------------


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(event_batches(), min_size=1, max_size=4),
       suffix=st.sampled_from([".jsonl", ".parquet"]),
       flat=st.booleans())
def test_export_import_keeps_every_byte(tmp_path: Path, batches: list[list[NewEvent]],
                                        suffix: str, flat: bool) -> None:
    path = _fresh(tmp_path, suffix)
    appends = [(f"s{i % 2}", batch) for i, batch in enumerate(batches)]
    options: dict[str, Any] = {"format": "flat"} if flat and suffix == ".jsonl" else {}
    with open_store(str(path), mode="w", **options) as out:
        for stream, batch in appends:
            out.append(stream, batch)
    with open_store(str(path)) as back:
        got = list(back.read_all())
    want = expected_events(appends)
    assert [(e.stream, e.version, e.type, e.data, e.metadata, e.id, e.recorded_at,
             e.content_type, e.schema_version) for e in got] == [
        (e.stream, e.version, e.type, e.data, e.metadata, e.id, e.recorded_at,
         e.content_type, e.schema_version) for e in want]
    assert [e.position for e in got] == list(range(1, len(want) + 1))


@given(payload=json_payloads())
def test_embeddable_means_to_cloudevent_keeps_the_bytes(payload: bytes) -> None:
    event = RawEvent.new("s", 0, "T", payload)
    line = to_cloudevent(event)
    assert b"\n" not in line
    back = json.loads(line)
    if embeddable(payload):
        assert "data" in back and to_cloudevent(event) == line
    else:
        assert base64.b64decode(back["data_base64"]) == payload
        assert back["datacontenttype"] == "application/json"


def test_payload_whitespace_survives_the_file(tmp_path: Path) -> None:
    odd = [b' {"a": 1} ', b'{"a":\n 1}', b"\t[1,2]\r\n", b'"x"', b"  ", b"not json"]
    path = tmp_path / "odd.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("s", [NewEvent("T", d, metadata=d) for d in odd])
    assert len(path.read_bytes().splitlines()) == len(odd)
    with JsonlStore(path) as back:
        assert [(e.data, e.metadata) for e in back.read_stream("s")] == [(d, d) for d in odd]


# -- the flat form and bad lines ----------------------------------------------------------


def test_flat_records_and_envelopes_mix(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    envelope = to_cloudevent(RawEvent.new("a", 0, "Opened", b'{"x": 1}', id="e-1"))
    path.write_bytes(b"\n".join([
        envelope,
        b"",
        b'{"stream": "a", "version": 1, "type": "Noted", "data": {"y" : [1, 2]},'
        b' "metadata": {"by": "me"}, "id": "e-2", "recorded_at": "2024-05-01T12:00:00.5Z",'
        b' "schema_version": 2}',
        b'{"stream": "b", "version": 0, "type": "Bin", "data_base64": "AP8=",'
        b' "content_type": "application/octet-stream", "position": 77}',
        b"   ",
    ]) + b"\n")
    with JsonlStore(path) as store:
        events = list(store.read_all())
        assert [(e.stream, e.version, e.type, e.position) for e in events] == [
            ("a", 0, "Opened", 1), ("a", 1, "Noted", 2), ("b", 0, "Bin", 77)]
        assert events[1].data == b'{"y" : [1, 2]}' and events[1].metadata == b'{"by": "me"}'
        assert events[1].schema_version == 2 and events[1].recorded_at is not None
        assert events[2].data == b"\x00\xff"
        assert store.stream_version("a") == 1
        assert list(store.list_streams()) == ["a", "b"]


@pytest.mark.parametrize("line, fragment", [
    (b"{not json", "not valid JSON"),
    (b'{"stream": "a", "type": "T", "data": {}}', "version"),
    (b'{"stream": "a", "version": 0, "type": "T", "dta": {}}', "dta"),
    (b'{"stream": "a", "version": -1, "type": "T"}', "version"),
    (b'{"stream": "a", "version": 0, "type": "T", "data_base64": "***"}', "base64"),
    (b'{"stream": "a", "version": 0, "type": "T", "recorded_at": "yesterday"}', "RFC 3339"),
    (b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "T"}', "evstream"),
    (b'{"specversion": "0.3", "id": "x", "source": "/s", "type": "T", "evstream": "a",'
     b' "evversion": 0}', "specversion"),
    (b"[1, 2]", "flat record"),
])
def test_a_bad_line_names_file_and_line(tmp_path: Path, line: bytes, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = b'{"stream": "a", "version": 0, "type": "T", "data": {}}'
    path.write_bytes(good + b"\n\n" + line + b"\n" + good + b"\n")
    with JsonlStore(path) as store, pytest.raises(EnvelopeError) as info:
        list(store.read_all())
    assert info.value.context.file == str(path)
    assert info.value.context.line == 3
    assert f"{path}:3" in str(info.value)
    assert fragment in str(info.value)


# -- modes ---------------------------------------------------------------------------------


def test_append_mode_continues_versions_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "cont.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}"), NewEvent("B", b"{}")])
    with path.open("ab") as f:  # someone left the last line unfinished
        f.write(b'{"stream": "t", "version": 0, "type": "X", "data": 1}')
    with JsonlStore(path, "a") as out:
        assert out.append("s", [NewEvent("C", b"{}")], 1) == 2
        assert out.append("t", [NewEvent("Y", b"{}")], 0) == 1
    with JsonlStore(path) as back:
        assert [(e.stream, e.version, e.position) for e in back.read_all()] == [
            ("s", 0, 1), ("s", 1, 2), ("t", 0, 3), ("s", 2, 4), ("t", 1, 5)]
        assert [e.type for e in back.read_stream("s", 1)] == ["B", "C"]
        assert [e.type for e in back.read_stream("t")] == ["X", "Y"]


def test_parquet_append_mode_rewrites_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "cont.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
    with ParquetStore(path, "a") as out:
        assert out.append("s", [NewEvent("B", b"{}")], 0) == 1
    with ParquetStore(path) as back:
        assert [(e.type, e.version, e.position) for e in back.read_all()] == [
            ("A", 0, 1), ("B", 1, 2)]
    assert not Path(str(path) + ".evtools-old").exists()


def test_parquet_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "cols.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b'{"a": 1}', b"m")])
    schema = pl.read_parquet_schema(path)
    assert list(schema) == ["stream", "version", "type", "data", "metadata", "id",
                            "recorded_at", "position", "content_type", "schema_version"]
    assert schema["data"] == pl.Binary and schema["metadata"] == pl.Binary
    assert schema["recorded_at"] == pl.Datetime("us", "UTC")


def test_parquet_written_by_others_without_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "minimal.parquet"
    pl.DataFrame({"stream": ["a", "a"], "version": [0, 1], "type": ["T", "U"],
                  "data": [b"{}", b"[]"]}).write_parquet(path)
    with ParquetStore(path) as store:
        events = list(store.read_all())
    assert [(e.version, e.position, e.metadata, e.schema_version) for e in events] == [
        (0, 1, b"", 1), (1, 2, b"", 1)]


def test_parquet_export_is_readable_once_closed(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path / "x.parquet", "w")
    store.append("s", [NewEvent("A", b"{}")])
    assert store.stream_version("s") == 0
    with pytest.raises(UsageError, match="close it"):
        store.read_all()
    store.close()


def test_read_only_files_refuse_appends(tmp_path: Path) -> None:
    path = tmp_path / "ro.jsonl"
    path.write_bytes(b"")
    with JsonlStore(path) as store, pytest.raises(UsageError, match="read-only"):
        store.append("s", [NewEvent("A", b"{}")])


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no such file"):
        JsonlStore(tmp_path / "nope.jsonl")
    with pytest.raises(StoreUnavailable, match="no such file"):
        open_store(str(tmp_path / "nope.parquet"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        JsonlStore(tmp_path / "no" / "dir.jsonl", "w")
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    with pytest.raises(StoreUnavailable):
        ParquetStore(tmp_path / "junk.parquet")


def test_open_store_picks_the_file_store(tmp_path: Path) -> None:
    for name, cls in (("a.jsonl", JsonlStore), ("b.ndjson", JsonlStore),
                      ("c.parquet", ParquetStore)):
        with open_store(str(tmp_path / name), mode="w") as store:
            assert isinstance(store, cls) and not store.read_only
    with pytest.raises(UsageError):
        open_store(str(tmp_path / "a.jsonl"), mode="x")


def test_jsonl_lines_are_cloudevents(tmp_path: Path) -> None:
    path = tmp_path / "ce.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("order-1", [NewEvent("OrderPlaced", b'{"a": 1}', b'{"m": 2}', id="i-1",
                                        schema_version=2)])
    doc = msgspec.json.decode(path.read_bytes())
    assert doc["specversion"] == "1.0" and doc["type"] == "OrderPlaced"
    assert (doc["evstream"], doc["evversion"], doc["evschemaversion"]) == ("order-1", 0, 2)
    assert doc["data"] == {"a": 1} and doc["evmetadata"] == {"m": 2}


def test_appending_to_an_export_with_foreign_positions_goes_after_them(tmp_path: Path) -> None:
    path = tmp_path / "positions.jsonl"
    path.write_text('{"stream": "a", "version": 0, "type": "T", "data": 1, "position": 40}\n'
                    '{"stream": "b", "version": 0, "type": "T", "data": 2, "position": 97}\n')
    with JsonlStore(path, "a") as out:
        out.append("a", [NewEvent("U", b"3")], 0)
    with JsonlStore(path) as back:
        assert [e.position for e in back.read_all()] == [40, 97, 98]
        assert [e.position for e in back.read_all(41)] == [97, 98]
