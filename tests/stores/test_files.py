"""JSONL and Parquet: export through the contract, import read-only, exact round trips."""

from __future__ import annotations

import base64
import json
import os
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtools.errors import (
    ConcurrencyError,
    EnvelopeError,
    InputError,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from evtools.events import RawEvent, to_cloudevent
from evtools.stores import (
    NO_STREAM,
    EventStore,
    JsonlStore,
    NewEvent,
    ParquetStore,
    files,
    open_store,
)
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
    (b'{"stream": "a", "version": 0, "type": "T", "data": {"a": ' + b"[" * 5000 + b"]" * 5000
     + b"}}", "nested too deeply"),  # had been a RecursionError traceback
    (b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "T", "evstream": "a", '
     b'"evversion": 0, "data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
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


# -- bad values in a line: errors that name the file and line, never a bare ValueError -----


@pytest.mark.parametrize("line, fragment, path", [
    (b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "T", "evstream": "a",'
     b' "evversion": 0, "time": "2024-13-45T99:00:00Z"}', "month must be in 1..12", "/time"),
    (b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "T", "evstream": "a",'
     b' "evversion": 0, "time": "2024-01-01T00:00:00+24:00"}', "UTC offset out of range",
     "/time"),
    (b'{"stream": "a", "version": 0, "type": "T", "recorded_at": "2024-02-30T00:00:00Z"}',
     "'recorded_at' is not a valid date and time", "/recorded_at"),
    (b'{"stream": "", "version": 0, "type": "T"}', "'stream' is empty", "/stream"),
    (b'{"stream": "a", "version": 0, "type": "T", "schema_version": 0}',
     "'schema_version' must be >= 1", "/schema_version"),
])
def test_a_bad_value_names_file_line_and_member(tmp_path: Path, line: bytes, fragment: str,
                                                path: str) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n' + line + b"\n")
    with JsonlStore(file) as store, pytest.raises(EnvelopeError, match=fragment) as info:
        list(store.read_all())
    assert (info.value.context.file, info.value.context.line) == (str(file), 2)
    assert info.value.context.path == path


@pytest.mark.parametrize("line, member", [
    (b'{"specversion":"1.0","id":"x","source":"/s","type":"T","evstream":"order-1",'
     b'"evstream":"order-42","evversion":0,"data":{}}', "evstream"),
    (b'{"specversion":"1.0","id":"x","source":"/s","type":"T","evstream":"order-1",'
     b'"evversion":0,"evversion":1,"data":{}}', "evversion"),
    (b'{"stream": "order-1", "version": 0, "version": 1, "type": "T"}', "version"),
    (b'{"stream": "order-1", "stream": "order-42", "version": 0, "type": "T"}', "stream"),
])
def test_a_line_that_repeats_a_member_is_refused(tmp_path: Path, line: bytes,
                                                 member: str) -> None:
    file = tmp_path / "dup.jsonl"
    file.write_bytes(b'{"stream": "order-1", "version": 0, "type": "T"}\n\n' + line + b"\n")
    for read in (lambda s: s.read_all(), lambda s: s.read_stream("order-1"),
                 lambda s: s.list_streams()):
        with JsonlStore(file) as store, pytest.raises(EnvelopeError) as info:
            list(read(store))
        assert f"repeats the member {member!r}" in str(info.value)
        assert f"{file}:3" in str(info.value)
        assert info.value.context.path == f"/{member}"


def test_a_payload_that_repeats_a_key_is_handed_over_as_it_is(tmp_path: Path) -> None:
    file = tmp_path / "payload.jsonl"
    data = b'{"x": 1, "x": 2}'
    file.write_bytes(b'{"stream": "a", "version": 0, "type": "T", "data": ' + data + b"}\n"
                     + to_cloudevent(RawEvent.new("a", 1, "T", data, metadata=data)) + b"\n")
    with JsonlStore(file) as store:
        assert [(e.data, e.metadata) for e in store.read_stream("a")] == [
            (data, b""), (data, data)]


# -- the index: read_stream decodes that stream's lines only --------------------------------


def _interleaved(path: Path, streams: int, per_stream: int) -> None:
    with JsonlStore(path, "w") as out:
        for v in range(per_stream):
            for s in range(streams):
                out.append(f"s{s}", [NewEvent("E", b'{"v": %d}' % v)], v - 1 if v else NO_STREAM)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The lines the JSONL store decodes, as it decodes them."""
    lines: list[bytes] = []
    real = files.decode_line

    def counting(line: bytes, where: Any) -> RawEvent:
        lines.append(line)
        return real(line, where)

    monkeypatch.setattr(files, "decode_line", counting)
    return lines


def test_read_stream_decodes_only_that_streams_lines(tmp_path: Path,
                                                    decoded: list[bytes]) -> None:
    path = tmp_path / "interleaved.jsonl"
    _interleaved(path, streams=50, per_stream=4)
    decoded.clear()
    with JsonlStore(path) as store:
        assert len(list(store.list_streams())) == 50  # the index: one pass over every line
        assert len(decoded) == 200
        decoded.clear()
        got = list(store.read_stream("s7"))
        assert [(e.version, e.data, e.position) for e in got] == [
            (v, b'{"v": %d}' % v, 8 + 50 * v) for v in range(4)]
        assert len(decoded) == 4
        decoded.clear()
        assert [e.version for e in store.read_stream("s7", 2, limit=1)] == [2]
        assert len(decoded) <= 3
        decoded.clear()
        for s in range(50):  # every stream once: every line once more, not 50 times
            assert len(list(store.read_stream(f"s{s}"))) == 4
        assert len(decoded) == 200


def test_positions_come_from_record_numbers_through_the_index(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'\n{"stream": "a", "version": 0, "type": "T"}\n   \n'
                     b'{"stream": "b", "version": 0, "type": "T", "position": 70}\n'
                     b'{"stream": "a", "version": 1, "type": "T"}')  # no final line break
    with JsonlStore(path) as store:
        assert [e.position for e in store.read_stream("a")] == [1, 3]
        assert [e.position for e in store.read_stream("b")] == [70]
        assert [e.position for e in store.read_all()] == [1, 70, 3]


def test_a_file_changed_between_reads_is_indexed_again(tmp_path: Path) -> None:
    path = tmp_path / "grows.jsonl"
    path.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n')
    with JsonlStore(path) as store:
        assert store.stream_version("a") == 0
        with path.open("ab") as other:  # another writer
            other.write(b'{"stream": "b", "version": 0, "type": "T"}\n'
                        b'{"stream": "a", "version": 1, "type": "U"}\n')
        assert [e.type for e in store.read_stream("a")] == ["T", "U"]
        assert store.stream_version("a") == 1 and list(store.list_streams()) == ["a", "b"]
        # rewritten in place: other lines, other lengths
        path.write_bytes(b'{"stream": "b", "version": 0, "type": "X", "data": [1, 2, 3]}\n'
                         b'{"stream": "a", "version": 0, "type": "Y"}\n')
        assert [e.type for e in store.read_stream("a")] == ["Y"]
        assert [(e.type, e.position) for e in store.read_stream("b")] == [("X", 1)]


def test_a_file_rewritten_under_an_open_iterator_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "rewritten.jsonl"
    pad = b"x" * 20_000  # lines longer than a read buffer: every record is read from disk

    def line(stream: str, version: int) -> bytes:
        return b'{"stream": "%s", "version": %d, "type": "T", "data": "%s"}\n' % (
            stream.encode(), version, pad)

    path.write_bytes(line("a", 0) + line("b", 0) + line("a", 1))
    with JsonlStore(path) as store:
        events = store.read_stream("a")
        assert next(events).version == 0
        path.write_bytes(line("a", 0) + line("a", 1) + line("b", 0))  # same size, b moved
        with pytest.raises(StoreError, match="changed while stream 'a' was being read"):
            next(events)


def test_appends_by_another_writer_between_ours_keep_the_index_right(tmp_path: Path) -> None:
    path = tmp_path / "two-writers.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
        with path.open("ab") as other:
            other.write(b'{"stream": "t", "version": 0, "type": "X", "position": 2}\n')
        assert out.append("s", [NewEvent("B", b"{}"), NewEvent("C", b"{}")], 0) == 2
        assert [(e.type, e.position) for e in out.read_stream("s")] == [
            ("A", 1), ("B", 3), ("C", 4)]
        assert [e.type for e in out.read_stream("t")] == ["X"]
        assert [e.type for e in out.read_all()] == ["A", "X", "B", "C"]


def test_the_index_holds_offsets_not_events(tmp_path: Path) -> None:
    path = tmp_path / "index.jsonl"
    _interleaved(path, streams=3, per_stream=5)
    with JsonlStore(path) as store:
        assert store.stream_version("s0") == 4
        # private access, test only: per record, two integers in arrays; no events kept
        assert [type(a) for a in (store._offsets, store._next)] == [array, array]
        assert len(store._offsets) == len(store._next) == 15
        assert not [v for v in vars(store).values()
                    if isinstance(v, list | dict) and len(v) >= 15]


def test_a_file_grown_by_another_writer_is_indexed_from_where_it_was(
        tmp_path: Path, decoded: list[bytes]) -> None:
    path = tmp_path / "grows.jsonl"
    _interleaved(path, streams=20, per_stream=5)
    with JsonlStore(path) as store:
        assert store.stream_version("s3") == 4
        decoded.clear()
        with path.open("ab") as other:  # another writer appends two lines
            other.write(b'{"stream": "s3", "version": 5, "type": "T"}\n'
                        b'{"stream": "new", "version": 0, "type": "T"}\n')
        assert [e.version for e in store.read_stream("s3")] == [0, 1, 2, 3, 4, 5]
        assert len(decoded) == 2 + 6  # the two new lines indexed, the stream's six read
        assert [e.position for e in store.read_stream("new")] == [102]
        with pytest.raises(EnvelopeError, match=r"grows.jsonl:103"):  # line numbers go on
            with path.open("ab") as other:
                other.write(b'{"stream": "s3"}\n')
            store.stream_version("s3")


def test_a_same_size_rewrite_with_the_same_mtime_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "same.jsonl"
    path.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n')
    with JsonlStore(path) as store:
        assert [e.type for e in store.read_stream("a")] == ["T"]
        stat = path.stat()
        path.write_bytes(b'{"stream": "b", "version": 0, "type": "U"}\n')  # cp -p, say
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert list(store.list_streams()) == ["b"]  # the inode change time told


def test_after_the_file_changed_under_a_read_the_next_read_indexes_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "coarse.jsonl"
    path.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n'
                     b'{"stream": "b", "version": 0, "type": "T"}\n')
    # a file system whose times do not tell (coarse, or restored): the stat looks the same
    monkeypatch.setattr(JsonlStore, "_same_file", staticmethod(lambda a, b: True))
    with JsonlStore(path) as store:
        assert store.stream_version("b") == 0
        path.write_bytes(b'{"stream": "b", "version": 0, "type": "T"}\n'
                         b'{"stream": "a", "version": 0, "type": "T"}\n')
        with pytest.raises(StoreError, match="changed while stream 'b' was being read"):
            list(store.read_stream("b"))
        assert [e.position for e in store.read_stream("b")] == [1]  # indexed again


def test_two_writers_at_one_expected_version_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "race.jsonl"
    with JsonlStore(path, "w") as first:
        first.append("s", [NewEvent("A", b"{}")])
    with JsonlStore(path, "a") as one, JsonlStore(path, "a") as two:
        assert one.stream_version("s") == two.stream_version("s") == 0  # both indexed
        assert one.append("s", [NewEvent("B", b"{}")], 0) == 1
        with pytest.raises(ConcurrencyError) as info:  # two's index was behind: checked anew
            two.append("s", [NewEvent("C", b"{}")], 0)
        assert info.value.actual == 1
        assert two.append("other", [NewEvent("D", b"{}")]) == 0
    with JsonlStore(path) as store:
        events = list(store.read_all())
        assert [(e.stream, e.type, e.position) for e in events] == [
            ("s", "A", 1), ("s", "B", 2), ("other", "D", 3)]


def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"stream": "a", "version": 0, "type": "T"}\r\n'
                     b'{"stream": "a", "version": 1, "type": "U"}\r\n')
    with JsonlStore(path) as store:
        assert [(e.type, e.position) for e in store.read_all()] == [("T", 1), ("U", 2)]
        assert [e.type for e in store.read_stream("a")] == ["T", "U"]


def test_an_append_after_a_line_left_unfinished_since_the_open_starts_a_new_line(
        tmp_path: Path) -> None:
    """A writer killed just before its line break (or a tool that writes none) had the next
    append glued onto its line: both records lost in one line that is not JSON."""
    path = tmp_path / "unfinished.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
        with path.open("ab") as other:
            other.write(b'{"stream": "t", "version": 0, "type": "X"}')  # no line break
        assert out.stream_version("t") == 0  # indexed as it is
        assert out.append("s", [NewEvent("B", b"{}")], 0) == 1
        assert out.append("t", [NewEvent("Y", b"{}")], 0) == 1
        with path.open("ab") as other:  # not indexed before the append this time
            other.write(b'{"stream": "u", "version": 0, "type": "Z"}')
        assert out.append("s", [NewEvent("C", b"{}")], 1) == 2
        assert [e.type for e in out.read_stream("s")] == ["A", "B", "C"]
    with JsonlStore(path) as back:
        assert [(e.stream, e.type, e.position) for e in back.read_all()] == [
            ("s", "A", 1), ("t", "X", 2), ("s", "B", 3), ("t", "Y", 4), ("u", "Z", 5),
            ("s", "C", 6)]
        assert [e.type for e in back.read_stream("t")] == ["X", "Y"]


@pytest.mark.parametrize("lines, versions", [
    ([b'{"stream": "a", "version": 0, "type": "T"}',
      b'{"stream": "a", "version": 0, "type": "U"}'], [0, 0]),
    ([b'{"stream": "a", "version": 1, "type": "T"}',
      b'{"stream": "a", "version": 0, "type": "U"}'], [1, 0]),
    ([b'{"stream": "a", "version": 0, "type": "T"}',
      to_cloudevent(RawEvent.new("a", 0, "T", b"{}"))], [0, 0]),
])
def test_a_stream_whose_versions_repeat_or_go_back_is_read_as_the_file_holds_it(
        tmp_path: Path, lines: list[bytes], versions: list[int]) -> None:
    """An export of what a consumer was delivered keeps its faults (a duplicate, a
    reordering): the store hands them on, for the rehydration checks to report."""
    path = tmp_path / "versions.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with JsonlStore(path) as store:
        assert [e.version for e in store.read_all()] == versions
        assert [e.version for e in store.read_stream("a")] == versions
        assert store.stream_version("a") == max(versions)
    with JsonlStore(path, "a") as out:  # an append goes after the highest version
        assert out.append("a", [NewEvent("V", b"{}")]) == max(versions) + 1


def test_a_delivered_export_with_faults_is_rehydrated_and_its_faults_named(
        tmp_path: Path) -> None:
    """What the README's ``evtools generate --store delivered.jsonl --faults ...`` then
    ``evtools rehydrate delivered.jsonl --strict`` does: every fault a violation."""
    from evtools.datagen import FaultRates, export_jsonl, generate
    from evtools.orders import Order, order_registry
    from evtools.rehydration import rehydrate_store

    workload = generate(3000, seed=3, faults=FaultRates(reorder=0.01, duplicate=0.01))
    path = tmp_path / "delivered.jsonl"
    export_jsonl(workload, path)
    injected = workload.manifest.counts
    assert injected.keys() == {"reorder", "duplicate"}
    with JsonlStore(path) as store:
        result = rehydrate_store(store, order_registry(), Order, policy="audit")
    found: dict[str, int] = {}
    for v in result.violations:
        found[str(v.kind)] = found.get(str(v.kind), 0) + 1
    assert found == {"out_of_order": injected["reorder"], "duplicate": injected["duplicate"]}


def test_a_bad_line_found_while_indexing_new_lines_leaves_no_half_index(
        tmp_path: Path) -> None:
    path = tmp_path / "grown-bad.jsonl"
    path.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n')
    with JsonlStore(path) as store:
        assert store.stream_version("a") == 0
        with path.open("ab") as other:  # another writer: a good line, then a bad one
            other.write(b'{"stream": "a", "version": 1, "type": "T"}\n{"stream": "a"}\n')
        for _ in range(2):  # the same error each time, not one about the lines indexed
            with pytest.raises(EnvelopeError, match="flat record") as info:
                store.stream_version("a")
            assert info.value.context.line == 3
        with path.open("r+b") as f:  # the bad line mended
            f.truncate(len(path.read_bytes()) - len(b'{"stream": "a"}\n'))
        assert [e.version for e in store.read_stream("a")] == [0, 1]
        assert list(store._offsets) == [0, 43]  # private access, test only


# -- Parquet files other tools wrote: columns of other types, nulls, values out of range -----


def _parquet(tmp_path: Path, **columns: Any) -> Path:
    """A Parquet file of two events of stream "a" with ``columns`` replacing or adding
    columns (each a list or a polars Series of two values)."""
    path = _fresh(tmp_path, ".parquet")
    frame = {"stream": ["a", "a"], "version": [0, 1], "type": ["T", "U"],
             "data": [b"{}", b"[]"], **columns}
    pl.DataFrame(frame).write_parquet(path)
    return path


@pytest.mark.parametrize("columns, holds", [
    ({"version": ["0", "1"]}, "column version is String, not an integer type"),
    ({"version": [0.0, 1.0]}, "column version is Float64, not an integer type"),
    ({"position": ["5", "6"]}, "column position is String, not an integer type"),
    ({"schema_version": [1.0, 2.0]}, "column schema_version is Float64"),
    ({"data": [1, 2]}, "column data is Int64, not Binary"),
    ({"id": [5, 6]}, "column id is Int64, not String"),
    ({"recorded_at": ["2024-01-01T00:00:00Z"] * 2}, "column recorded_at is String"),
    ({"recorded_at": [datetime(2024, 1, 1)] * 2}, "without a time zone"),
])
def test_a_parquet_column_of_another_type_is_refused_naming_it(
        tmp_path: Path, columns: dict[str, Any], holds: str) -> None:
    """Columns of other types had been handed on as they were (a str version, a str
    payload), or failed with a bare TypeError, or a naive time was taken as UTC."""
    path = _parquet(tmp_path, **columns)
    with pytest.raises(StoreUnavailable, match=holds) as info:
        ParquetStore(path)
    assert info.value.context.file == str(path) and str(path) in str(info.value)
    with pytest.raises(StoreUnavailable, match=holds):
        ParquetStore(path, "a")
    assert pl.read_parquet(path).height == 2  # an append refused leaves the file as it was


@pytest.mark.parametrize("columns, row, version, holds", [
    ({"stream": [None, "a"]}, 1, 0, "column stream holds null"),
    ({"stream": ["a", ""]}, 2, 1, "column stream holds ''"),
    ({"version": [0, None]}, 2, None, "column version holds null"),
    ({"version": [0, -1]}, 2, None, "column version holds -1"),
    ({"type": [None, "U"]}, 1, 0, "column type holds null"),
    ({"data": pl.Series([b"{}", None], dtype=pl.Binary)}, 2, 1, "column data holds null"),
    ({"schema_version": [1, 0]}, 2, 1, "column schema_version holds 0"),
    ({"position": [4, -2]}, 2, 1, "column position holds -2"),
])
def test_a_parquet_row_with_a_bad_value_is_an_input_error_naming_it(
        tmp_path: Path, columns: dict[str, Any], row: int, version: int | None,
        holds: str) -> None:
    path = _parquet(tmp_path, **columns)
    with ParquetStore(path, batch_size=1) as store:
        reads: list[Any] = [lambda: list(store.read_all())]
        if "stream" not in columns:
            reads.append(lambda: list(store.read_stream("a")))
        if columns.keys() & {"stream", "version", "position"}:  # what the index reads
            reads += [lambda: list(store.list_streams()), lambda: store.stream_version("a")]
        for read in reads:
            with pytest.raises(InputError, match=holds) as info:
                read()
            assert f"Parquet {path}: row {row} is not a usable event" in str(info.value)
            ctx = info.value.context
            assert (ctx.file, ctx.version) == (str(path), version)
            assert ctx.stream == (None if "stream" in columns else "a")


def test_a_parquet_stream_whose_versions_repeat_or_go_back_is_read_as_it_is(
        tmp_path: Path) -> None:
    for versions in ([0, 0], [1, 0]):
        path = _parquet(tmp_path, version=versions)
        with ParquetStore(path, batch_size=1) as store:
            assert [e.version for e in store.read_all()] == versions
            assert [e.version for e in store.read_stream("a")] == versions


def test_parquet_columns_of_other_fitting_types_are_read_exactly(tmp_path: Path) -> None:
    """Another time zone is the same instant in UTC (its wall time had been relabelled
    UTC: an hour off in Paris); a payload stored as text is its UTF-8 bytes."""
    when = datetime(2024, 1, 1, tzinfo=UTC)
    path = _parquet(
        tmp_path, stream=pl.Series(["a", "a"], dtype=pl.Categorical),
        version=pl.Series([0, 1], dtype=pl.Int32), data=['{"v": "é"}', "[]"],
        recorded_at=pl.Series([when] * 2).dt.convert_time_zone("Europe/Paris"),
        schema_version=pl.Series([1, 2], dtype=pl.UInt8))
    with ParquetStore(path) as store:
        for events in (list(store.read_all()), list(store.read_stream("a"))):
            assert [(e.stream, e.version, e.data, e.recorded_at, e.schema_version)
                    for e in events] == [("a", 0, '{"v": "é"}'.encode(), when, 1),
                                         ("a", 1, b"[]", when, 2)]
            assert all(e.check() is e and e.recorded_at.tzinfo is UTC for e in events)


def test_parquet_append_mode_keeps_the_copy_an_interrupted_append_left(
        tmp_path: Path) -> None:
    """A process killed while rewriting a Parquet file for ``mode="a"`` leaves the file as
    it was in ``.evtools-old``; the next ``mode="a"`` had overwritten that only copy."""
    path = tmp_path / "killed.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
    old = Path(str(path) + ".evtools-old")
    old.write_bytes(path.read_bytes())  # what the killed rewrite left beside it
    path.write_bytes(b"PAR1 half a file")
    with pytest.raises(StoreUnavailable, match="evtools-old") as info:
        ParquetStore(path, "a")
    assert info.value.context.file == str(path)
    assert path.read_bytes() == b"PAR1 half a file"
    with ParquetStore(old) as kept:
        assert [e.type for e in kept.read_all()] == ["A"]


# -- JSONL appends are atomic: a write that fails midway, a writer killed midway -----------


def _whole_batch(tmp_path: Path, events: list[NewEvent], *, flat: bool = False) -> bytes:
    """The bytes a JsonlStore writes for one append of ``events`` to stream "big" of a file
    holding one event, as a file of its own shows them (marks included)."""
    scratch = _fresh(tmp_path, ".jsonl")
    with JsonlStore(scratch, "w", format="flat" if flat else "cloudevents") as out:
        out.append("pre", [NewEvent("P", b"{}")])
        size = scratch.stat().st_size
        out.append("big", events, NO_STREAM)
    return scratch.read_bytes()[size:]


def _before(path: Path) -> list[tuple[str, int, str]]:
    with JsonlStore(path) as back:
        return [(e.stream, e.version, e.type) for e in back.read_all()]


def _big(n: int, size: int = 1000) -> list[NewEvent]:
    return [NewEvent("Big", b'{"blob": "%s"}' % (b"x" * size), id=f"b-{i}") for i in range(n)]


def test_the_lines_of_an_append_are_marked_and_stay_cloudevents_and_flat_records(
        tmp_path: Path) -> None:
    """Every line of an append of several events says how many lines of the same append
    follow it (``evbatchrest``); an append of one event is not marked."""
    for flat in (False, True):
        lines = _whole_batch(tmp_path, _big(3, 2), flat=flat).splitlines()
        docs = [json.loads(line) for line in lines]
        assert [d.get("evbatchrest") for d in docs] == [2, 1, 0]
        if not flat:  # still CloudEvents: an extension attribute, other readers skip it
            assert all(d["specversion"] == "1.0" for d in docs)
            assert [e.id for e in (files.from_cloudevent(line) for line in lines)] == [
                "b-0", "b-1", "b-2"]
        one = _whole_batch(tmp_path, _big(1, 2), flat=flat)
        assert b"evbatchrest" not in one


class _FailingOut:
    """The store's file, whose writes fail (a full disk) once ``budget`` bytes are
    written: the bytes up to there reach the file, as a short write leaves them."""

    def __init__(self, real: Any, budget: int) -> None:
        self.real = real
        self.budget = budget

    def write(self, data: Any) -> int:
        if self.budget <= 0:
            raise OSError(28, "No space left on device")
        part = bytes(data)[:self.budget]
        self.budget -= len(part)
        self.real.write(part)
        self.real.flush()
        return len(part)

    def __getattr__(self, name: str) -> Any:  # fileno, seek, flush, close
        return getattr(self.real, name)


@pytest.mark.parametrize("cut", ["none", "inside the first line", "between lines",
                                 "inside the last line", "before the last line break"])
def test_a_write_that_fails_midway_leaves_the_file_as_it_was(tmp_path: Path,
                                                             cut: str) -> None:
    """A failed append had left part of its batch and a line cut off: every later read
    failed (``Input data was truncated``), or showed part of the batch."""
    path = tmp_path / "full.jsonl"
    events = _big(4, 500)
    batch = _whole_batch(tmp_path, events)
    first = batch.index(b"\n") + 1
    budget = {"none": 0, "inside the first line": 100, "between lines": first,
              "inside the last line": len(batch) - 50,
              "before the last line break": len(batch) - 1}[cut]
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
        before = path.read_bytes()
        real = out._out  # private access, test only
        out._out = _FailingOut(real, budget)  # type: ignore[assignment]
        with pytest.raises(StoreError, match="write failed") as info:
            out.append("big", events, NO_STREAM)
        assert info.value.context.file == str(path)
        assert path.read_bytes() == before  # nothing of the append
        assert out.stream_version("big") is None
        assert [e.stream for e in out.read_all()] == ["pre"]
        out._out = real  # type: ignore[assignment]
        assert out.append("big", events[:2], NO_STREAM) == 1  # the disk has room again
    assert _before(path) == [("pre", 0, "P"), ("big", 0, "Big"), ("big", 1, "Big")]


_CHILD = r'''
import os, resource, signal, sys
from evtools.stores import NO_STREAM, NewEvent, open_store
path, limit, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
# "error": the write fails (EFBIG) at the limit (Python ignores SIGXFSZ); "kill": SIGXFSZ's
# default action, the process is killed at the limit, in the middle of its write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if how == "error" else signal.SIG_DFL)
store = open_store(path, mode="a")
store.stream_version("pre")
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
events = [NewEvent("Big", b'{"blob": "%s"}' % (b"x" * 1000), id=f"b-{i}") for i in range(40)]
try:
    store.append("big", events, NO_STREAM)
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(3)
print("appended")
'''


def _run_child(path: Path, limit: int, how: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _CHILD, str(path), str(limit), how],
                          capture_output=True, text=True, timeout=60)


def test_a_file_size_limit_midway_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """RLIMIT_FSIZE (SIGXFSZ ignored): the append raises, and takes back what it wrote."""
    path = tmp_path / "limit.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    before = path.read_bytes()
    done = _run_child(path, len(before) + 20_000, "error")
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("StoreError") and "File too large" in done.stdout
    assert path.read_bytes() == before
    assert _before(path) == [("pre", 0, "P")]


@pytest.mark.parametrize("cut", [100, "between lines", 20_000])
def test_a_writer_killed_midway_leaves_a_file_read_as_before_that_takes_the_next_append(
        tmp_path: Path, cut: int | str) -> None:
    """A writer killed in the middle of an append (here by SIGXFSZ at a file size limit,
    at a byte chosen) had left part of the batch and a line cut off: every read, and
    the next append, failed; ``mode="a"`` even glued a line break onto the cut line."""
    path = tmp_path / "killed.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    before = path.read_bytes()
    if cut == "between lines":  # the first line whole, the others not there
        batch = _whole_batch(tmp_path, [NewEvent("Big", b'{"blob": "%s"}' % (b"x" * 1000),
                                                 id=f"b-{i}") for i in range(40)])
        cut = batch.index(b"\n") + 1
    assert isinstance(cut, int)
    done = _run_child(path, len(before) + cut, "kill")
    assert done.returncode == -25, (done.returncode, done.stdout, done.stderr)  # SIGXFSZ
    assert path.stat().st_size == len(before) + cut  # part of the append is in the file
    assert _before(path) == [("pre", 0, "P")]
    with JsonlStore(path) as back:
        assert back.stream_version("big") is None
        assert list(back.list_streams()) == ["pre"]
        with pytest.raises(StreamNotFound):
            back.read_stream("big")
    with JsonlStore(path, "a") as out:
        assert path.read_bytes()[:len(before)] == before
        assert path.stat().st_size == len(before) + cut  # opening writes nothing
        assert out.append("big", [NewEvent("B", b"{}")], NO_STREAM) == 0
    assert _before(path) == [("pre", 0, "P"), ("big", 0, "B")]
    assert path.read_bytes().startswith(before)  # what the killed writer left is gone
    assert path.read_bytes().count(b"\n") == 2


def test_a_writer_killed_by_sigkill_while_writing_a_big_append(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "sigkill.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    before = path.read_bytes()
    child = ("import sys\nfrom evtools.stores import NO_STREAM, NewEvent, open_store\n"
             "s = open_store(sys.argv[1], mode='a')\ns.stream_version('pre')\n"
             "print('ready', flush=True)\n"
             "blob = b'{\"blob\": \"' + b'x' * (1 << 20) + b'\"}'\n"
             "s.append('big', [NewEvent('Big', blob) for _ in range(96)], NO_STREAM)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while path.stat().st_size < len(before) + (8 << 20) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    got = _before(path)
    # all or nothing: the kill came (nearly always) before the write ended
    assert got in ([("pre", 0, "P")], [("pre", 0, "P")] + [("big", v, "Big") for v in range(96)])
    with JsonlStore(path, "a") as out:
        assert out.append("after", [NewEvent("A", b"{}")], NO_STREAM) == 0
    assert _before(path) == [*got, ("after", 0, "A")]


@pytest.fixture(params=["held", "looked ahead"])
def hold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers hold the lines of an append until its last (up to 1 MiB), or look for its
    last line ahead (a bigger append): both ways."""
    if request.param == "looked ahead":
        monkeypatch.setattr(files, "_HOLD", 1)


@pytest.mark.usefixtures("hold")
def test_an_append_that_did_not_finish_is_left_out_by_readers_and_removed_by_the_next(
        tmp_path: Path) -> None:
    path = tmp_path / "unfinished.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    before = path.read_bytes()
    batch = _whole_batch(tmp_path, _big(3, 10))
    lines = batch.splitlines(keepends=True)
    for left in (lines[0], lines[0] + lines[1], lines[0] + lines[1][:30], lines[0][:30],
                 b"\n".join(lines) [:-1][:len(lines[0]) + len(lines[1]) + 5]):
        path.write_bytes(before + left)
        assert _before(path) == [("pre", 0, "P")]
        with JsonlStore(path) as back:  # the index, and read_stream through it
            assert back.stream_version("big") is None
            assert [e.type for e in back.read_stream("pre")] == ["P"]
        with JsonlStore(path, "a") as out:
            assert path.read_bytes() == before + left  # opening wrote nothing
            assert out.stream_version("big") is None
            assert out.append("big", [NewEvent("B", b"{}")], NO_STREAM) == 0
            assert [(e.type, e.position) for e in out.read_all()] == [("P", 1), ("B", 2)]
        assert _before(path) == [("pre", 0, "P"), ("big", 0, "B")]
        assert b"Big" not in path.read_bytes()
    # the whole append is there once its last line is, the line break after it or not
    path.write_bytes(before + batch[:-1])
    assert _before(path) == [("pre", 0, "P")] + [("big", v, "Big") for v in range(3)]


@pytest.mark.usefixtures("hold")
def test_an_unfinished_append_inside_the_file_is_left_out_and_what_follows_read(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A writer that does not lock (or an older evtools) appended after an append that did
    not finish: that append's lines are left out (and logged), the lines after it read."""
    path = tmp_path / "inside.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    lines = _whole_batch(tmp_path, _big(3, 10)).splitlines(keepends=True)
    other = b'{"stream": "other", "version": 0, "type": "O"}\n'
    path.write_bytes(path.read_bytes() + lines[0] + lines[1] + other)
    with JsonlStore(path) as back:
        assert [(e.stream, e.position) for e in back.read_all()] == [("pre", 1), ("other", 2)]
        assert back.stream_version("big") is None
        assert [e.type for e in back.read_stream("other")] == ["O"]
    assert "did not finish" in caplog.text and "from line 2 on" in caplog.text
    with JsonlStore(path, "a") as out:  # inside the file: left there, read past
        assert out.append("big", [NewEvent("B", b"{}")], NO_STREAM) == 0
    assert [s for s, _, _ in _before(path)] == ["pre", "other", "big"]


@pytest.mark.usefixtures("hold")
def test_a_reader_sees_an_append_once_its_last_line_is_there(tmp_path: Path) -> None:
    """What a reader indexes while another process is in the middle of an append (its
    first lines written, not its last) is read once the append is whole."""
    path = tmp_path / "growing.jsonl"
    with JsonlStore(path, "w") as out:
        out.append("pre", [NewEvent("P", b"{}")])
    before = path.read_bytes()
    batch = _whole_batch(tmp_path, _big(3, 10))
    half = batch.index(b"\n", batch.index(b"\n") + 1) + 1  # two of the three lines
    path.write_bytes(before + batch[:half])
    with JsonlStore(path) as back:
        assert back.stream_version("big") is None
        assert back._indexed_to[0] == len(before)  # private access, test only
        with path.open("ab") as rest:
            rest.write(batch[half:])
        assert back.stream_version("big") == 2  # the new lines indexed from the old end
        assert [e.position for e in back.read_stream("big")] == [2, 3, 4]
        assert [e.version for e in back.read_all(2)] == [0, 1, 2]


@pytest.mark.parametrize("mark, fragment", [(-1, "not -1"), ('"2"', "not '2'"),
                                            (1.5, "not 1.5"), (2**63, "not 9223372036854775808")])
def test_a_batch_mark_that_is_not_a_count_names_file_and_line(tmp_path: Path, mark: Any,
                                                               fragment: str) -> None:
    path = tmp_path / "mark.jsonl"
    path.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n'
                     b'{"stream": "a", "version": 1, "type": "T", "evbatchrest": %s}\n'
                     b'{"stream": "a", "version": 2, "type": "T"}\n' % str(mark).encode())
    with JsonlStore(path) as store, pytest.raises(EnvelopeError, match=fragment) as info:
        list(store.read_all())
    assert (info.value.context.file, info.value.context.line) == (str(path), 2)
    assert "'evbatchrest' must be an int >= 0" in str(info.value)


@pytest.mark.usefixtures("hold")
def test_a_batch_mark_anywhere_in_the_line_counts(tmp_path: Path) -> None:
    """A tool that rewrites the lines (sorting keys, say) moves the mark: it still counts."""
    path = tmp_path / "sorted.jsonl"
    lines = [json.loads(line) for line in _whole_batch(tmp_path, _big(3, 10)).splitlines()]
    flat = [{"evbatchrest": 1, "stream": "f", "version": 0, "type": "T"},
            {"stream": "f", "version": 1, "type": "T", "evbatchrest": 0}]
    text = "\n".join(json.dumps(d, sort_keys=True) for d in lines + flat)
    path.write_text(text + "\n")
    assert _before(path) == [("big", v, "Big") for v in range(3)] + [("f", 0, "T"),
                                                                      ("f", 1, "T")]
    path.write_text("\n".join(json.dumps(d, sort_keys=True) for d in lines[:2]) + "\n")
    assert _before(path) == []


def test_a_last_line_cut_off_is_left_out_and_a_whole_one_without_line_break_read(
        tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    good = b'{"stream": "a", "version": 0, "type": "T"}\n'
    path.write_bytes(good + b'{"stream": "a", "version": 1, "ty')
    assert _before(path) == [("a", 0, "T")]
    with JsonlStore(path, "a") as out:
        assert out.append("a", [NewEvent("U", b"{}")], 0) == 1
    assert _before(path) == [("a", 0, "T"), ("a", 1, "U")]
    path.write_bytes(good + b'{"stream": "a", "version": 1, "type": "V"}')
    assert _before(path) == [("a", 0, "T"), ("a", 1, "V")]


# -- JSONL: a file replaced under an open export ------------------------------------------


def test_an_append_after_the_file_was_replaced_goes_to_the_new_file(tmp_path: Path) -> None:
    """Another tool wrote a new file and renamed it onto the path: the append had gone to
    the old file, unlinked, and the event was lost, the append reported a success."""
    path = tmp_path / "replaced.jsonl"
    with JsonlStore(path, "a") as out:
        assert out.append("s", [NewEvent("A", b"{}")], NO_STREAM) == 0
        new = tmp_path / "replaced.jsonl.tmp"
        new.write_bytes(b'{"stream": "s", "version": 0, "type": "X"}\n'
                        b'{"stream": "s", "version": 1, "type": "Y"}\n')
        os.replace(new, path)
        with pytest.raises(ConcurrencyError) as info:  # checked against the new file
            out.append("s", [NewEvent("B", b"{}")], 0)
        assert info.value.actual == 1
        assert out.append("s", [NewEvent("C", b"{}")], 1) == 2
        assert [e.type for e in out.read_stream("s")] == ["X", "Y", "C"]
    assert [t for _, _, t in _before(path)] == ["X", "Y", "C"]
    with JsonlStore(path, "a") as out:
        path.unlink()
        with pytest.raises(StoreError, match="removed") as removed:
            out.append("s", [NewEvent("D", b"{}")])
        assert removed.value.context.file == str(path)
    assert not path.exists()


# -- what a file store's writer refuses: what its readers would refuse ---------------------


def test_versions_and_positions_beyond_int64_are_refused_at_the_append(
        tmp_path: Path) -> None:
    """A stream at version 2**63-1 (a file of another tool): its next version had been
    written, and the file could no longer be read (JSONL), or lost at close (Parquet)."""
    top = 2**63 - 1
    jsonl = tmp_path / "top.jsonl"
    jsonl.write_bytes(b'{"stream": "s", "version": %d, "type": "T", "position": 4}\n'
                      b'{"stream": "t", "version": 0, "type": "T", "position": %d}\n'
                      % (top, top))
    before = jsonl.read_bytes()
    with JsonlStore(jsonl, "a") as out:
        for stream in ("s", "u"):
            with pytest.raises(UsageError, match="beyond 2\\*\\*63-1"):
                out.append(stream, [NewEvent("U", b"{}")])
    assert jsonl.read_bytes() == before
    parquet = tmp_path / "top.parquet"
    pl.DataFrame({"stream": ["s"], "version": [top], "type": ["T"],
                  "data": [b"{}"]}).write_parquet(parquet)
    with ParquetStore(parquet, "a") as out:
        with pytest.raises(UsageError, match="beyond 2\\*\\*63-1"):
            out.append("s", [NewEvent("U", b"{}")])
        out.append("t", [NewEvent("U", b"{}")])
        with pytest.raises(UsageError, match="2\\*\\*63-1"):  # had failed at close: all lost
            out.append("u", [NewEvent("U", b"{}", schema_version=2**63)])
    with ParquetStore(parquet) as back:
        assert [(e.stream, e.version) for e in back.read_all()] == [("s", top), ("t", 0)]


def test_a_time_with_nanoseconds_is_refused_and_a_timestamp_without_written_plain(
        tmp_path: Path) -> None:
    """``recorded_at=pandas.Timestamp(...123456789Z)`` had been written with its nine
    digits, which the JSONL reader refuses: the file could not be read any more."""
    import pandas as pd

    ns = pd.Timestamp("2024-01-01T00:00:00.123456789Z")
    us = pd.Timestamp("2024-01-01T00:00:00.123456Z")
    for suffix in (".jsonl", ".parquet"):
        path = _fresh(tmp_path, suffix)
        with open_store(str(path), mode="w") as out:
            with pytest.raises(UsageError, match="sub-microsecond") as info:
                out.append("s", [NewEvent("T", b"{}"), NewEvent("T", b"{}", recorded_at=ns)])
            assert (info.value.context.stream, info.value.context.version) == ("s", 1)
            out.append("s", [NewEvent("T", b"{}", recorded_at=us)])
            # the file store's own check, whatever the events' preparation lets through
            store: Any = out
            raw = RawEvent.new("s", 1, "T", b"{}", recorded_at=ns)
            with pytest.raises(UsageError, match="sub-microsecond"):
                store._writable("s", [raw])  # private access, test only
            plain = store._writable("s", [RawEvent.new("s", 1, "T", b"{}", recorded_at=us)])
            assert type(plain[0].recorded_at) is datetime and plain[0].recorded_at == us
        with open_store(str(path)) as back:
            got = [e.recorded_at for e in back.read_all()]
        assert got == [datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)]
        assert type(got[0]) is datetime


def test_a_cloudevents_line_needs_an_id_a_flat_record_keeps_an_empty_one(
        tmp_path: Path) -> None:
    """A copied ``RawEvent`` keeps its empty id: a CloudEvents envelope cannot hold one (its
    readers refuse it), so the JSONL store refuses it rather than invent one."""
    event = RawEvent("x", 0, "T", b"{}", id="", recorded_at=None)
    ce = JsonlStore(tmp_path / "ce.jsonl", "w")
    with pytest.raises(UsageError, match="empty id"):
        ce._fit("s", event, 0)  # private access, test only
    ce.close()
    flat = tmp_path / "flat.jsonl"
    with JsonlStore(flat, "w", format="flat") as out:
        assert out._fit("s", event, 0) is event


# -- the flat form: numbers beyond int64 ---------------------------------------------------


@pytest.mark.parametrize("member, value", [("version", 2**63), ("schema_version", 2**63),
                                           ("position", 2**63), ("version", 2**64)])
def test_a_flat_number_beyond_int64_names_file_line_and_member(tmp_path: Path, member: str,
                                                               value: int) -> None:
    """Read as it was (2**63 as a version), as CloudEvents envelopes are not."""
    file = tmp_path / "big.jsonl"
    rec = {"stream": "a", "version": 1, "type": "T", member: value}
    file.write_bytes(b'{"stream": "a", "version": 0, "type": "T"}\n'
                     + json.dumps(rec).encode() + b"\n")
    with JsonlStore(file) as store, pytest.raises(
            EnvelopeError, match=f"'{member}' must be .* <= 2\\*\\*63-1, not {value}") as info:
        list(store.read_all())
    assert (info.value.context.file, info.value.context.line) == (str(file), 2)
    assert info.value.context.path == f"/{member}"


# -- Parquet: values out of range in files of other tools; an export that fails ------------


@pytest.mark.parametrize("columns, row, holds", [
    ({"schema_version": pl.Series([2**64 - 1, 1], dtype=pl.UInt64)}, 1,
     "column schema_version holds 18446744073709551615"),
    ({"version": pl.Series([0, 2**63], dtype=pl.UInt64)}, 2,
     "column version holds 9223372036854775808"),
    ({"position": pl.Series([1, 2**63], dtype=pl.UInt64)}, 2,
     "column position holds 9223372036854775808"),
    ({"recorded_at": pl.Series([0, 253402300800000000]).cast(pl.Datetime("us", "UTC"))}, 2,
     "column recorded_at holds '\\+10000-01-01 .*years 1 to 9999"),
    ({"recorded_at": pl.Series([-62135596800001, 0]).cast(pl.Datetime("ms", "UTC"))}, 1,
     "years 1 to 9999"),
    ({"recorded_at": pl.Series([1704067200_123456789, 0]).cast(pl.Datetime("ns", "UTC"))}, 1,
     "holds '2024-01-01 00:00:00.123456789.*whole microseconds"),
])
def test_a_parquet_value_out_of_range_is_an_input_error_naming_the_row(
        tmp_path: Path, columns: dict[str, Any], row: int, holds: str) -> None:
    """Had been read as it was (a schema version of 2**64-1, a version of 2**63), or been a
    bare OverflowError (year 10000), or lost its nanoseconds silently."""
    path = _parquet(tmp_path, **columns)
    with ParquetStore(path, batch_size=1) as store:
        reads: list[Any] = [lambda: list(store.read_all()), lambda: list(store.read_stream("a"))]
        if columns.keys() & {"version", "position"}:  # what the index reads
            reads.append(lambda: store.stream_version("a"))
        for read in reads:
            with pytest.raises(InputError, match=holds) as info:
                read()
            assert f"Parquet {path}: row {row} is not a usable event" in str(info.value)
            assert info.value.context.file == str(path)


def test_parquet_nanoseconds_that_are_zeros_and_unsigned_values_in_range_are_read(
        tmp_path: Path) -> None:
    when = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    path = _parquet(tmp_path, recorded_at=pl.Series([when, when]).cast(pl.Datetime("ns", "UTC")),
                    position=pl.Series([7, 2**63 - 1], dtype=pl.UInt64),
                    version=pl.Series([0, 1], dtype=pl.UInt64))
    with ParquetStore(path) as store:
        assert [(e.recorded_at, e.position) for e in store.read_all()] == [
            (when, 7), (when, 2**63 - 1)]
        assert store.stream_version("a") == 1


def test_a_parquet_export_that_cannot_be_written_at_close_leaves_the_file_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at close had lost every buffered event (a bare TypeError), and left a
    file that could not be read in place of the one appended to."""
    path = tmp_path / "kept.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
    before = path.read_bytes()
    for mode in ("a", "w"):
        store = ParquetStore(path, mode)  # type: ignore[arg-type]
        store.append("t", [NewEvent("B", b"{}")])

        def broken(table: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(store._writer, "write_table", broken)  # private access, test only
        with pytest.raises(StoreError, match="No space left") as info:
            store.close()
        assert info.value.context.file == str(path) and str(path) in str(info.value)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.parquet"]  # no new file
        with ParquetStore(path) as back:
            assert [(e.stream, e.type) for e in back.read_all()] == [("s", "A")]
        store.close()  # closed: nothing more to do


def test_a_parquet_append_that_fills_a_row_group_and_fails_abandons_the_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
    before = path.read_bytes()
    store = ParquetStore(path, "a", row_group_size=2)

    def broken(table: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store._writer, "write_table", broken)  # private access, test only
    with pytest.raises(StoreError, match="export is abandoned"):
        store.append("t", [NewEvent("B", b"{}"), NewEvent("C", b"{}")])
    with pytest.raises(UsageError, match="closed"):
        store.append("t", [NewEvent("D", b"{}")])
    store.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.parquet"]


def test_a_parquet_export_replaces_the_file_only_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "swap.parquet"
    with ParquetStore(path, "w") as out:
        out.append("s", [NewEvent("A", b"{}")])
    with ParquetStore(path, "a") as out:
        out.append("s", [NewEvent("B", b"{}")], 0)
        with ParquetStore(path) as meanwhile:  # the file as it was, whole, until the close
            assert [e.type for e in meanwhile.read_all()] == ["A"]
    with ParquetStore(path) as back:
        assert [e.type for e in back.read_all()] == ["A", "B"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swap.parquet"]


@pytest.mark.parametrize("pad", [3000, 100])  # held lines only, and a held line cut by B's
def test_a_reader_never_hands_out_a_killed_append_rewritten_under_it(
        tmp_path: Path, pad: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers take no lock: writer A is killed inside an append; a reader holds its first
    lines; writer B (the retry) cuts A's tail away and appends a batch of the same line
    lengths in its place. The reader had handed out A's lines with B's last ones (events
    that never were in the file together); now it sees the change and says so."""
    path = tmp_path / "race.jsonl"

    def batch(tag: str, year: int) -> list[NewEvent]:
        return [NewEvent("T", b'{"k":%d,"p":"%s"}' % (k, b"x" * pad), id=f"{tag}-{k}",
                         recorded_at=datetime(year, 1, 1, tzinfo=UTC)) for k in range(5)]

    with JsonlStore(path, "w") as store:
        store.append("s", [NewEvent("T", b"{}", id="first")], NO_STREAM)
    base = path.read_bytes()
    with JsonlStore(path, "a") as store:
        store.append("t", batch("A", 2024), NO_STREAM)
    written = path.read_bytes()[len(base):]
    path.write_bytes(base + written[:int(len(written) * 0.9)])  # writer A killed
    split = files.split_mark
    fired: list[bool] = []

    def retry_meanwhile(line: bytes, *args: Any) -> Any:
        if not fired and b'"A-1"' in line:
            fired.append(True)
            with JsonlStore(path, "a") as writer:  # cleans A's tail up, appends B
                writer.append("t", batch("B", 2025), NO_STREAM)
        return split(line, *args)

    monkeypatch.setattr(files, "split_mark", retry_meanwhile)
    with pytest.raises(StoreError, match="changed while it was being read"):
        list(JsonlStore(path).read_all())
    monkeypatch.setattr(files, "split_mark", split)
    assert fired
    assert [e.id for e in JsonlStore(path).read_all()] == ["first"] + [
        f"B-{k}" for k in range(5)]  # read again: what the file holds
