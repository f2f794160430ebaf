"""open_store URLs, copy between stores, and what importing the package pulls in."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import evtools.stores
from evtools.errors import StoreError, UsageError
from evtools.stores import (
    ANY,
    AppendEvent,
    ExpectedVersion,
    JsonlStore,
    MemoryStore,
    NewEvent,
    ParquetStore,
    SqliteStore,
    copy,
    open_store,
)
from evtools.stores.base import PreparedEvent

from .contract import sample_appends

pytestmark = pytest.mark.timeout(60)


def test_unknown_schemes_list_the_supported_ones() -> None:
    for url in ("postgres://db/events", "events.csv", "kafka://x"):
        with pytest.raises(UsageError) as info:
            open_store(url)
        text = str(info.value)
        for form in ("memory:", "sqlite:///", "nats://", "esdb://", ".jsonl", ".parquet"):
            assert form in text


def test_unknown_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="colour"):
        open_store("memory:", colour="blue")


def test_importing_the_package_loads_no_driver() -> None:
    code = ("import sys, evtools.stores; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('nats', 'esdbclient', 'kurrentdbclient', 'grpc', 'pyarrow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_public_names() -> None:
    assert sorted(evtools.stores.__all__) == sorted([
        "ANY", "NO_STREAM", "STREAM_EXISTS", "SUPPORTED", "AppendEvent", "EsdbStore",
        "EventStore", "Expected", "ExpectedVersion", "JsonlStore", "MemoryStore",
        "NatsStore", "NewEvent", "ParquetStore", "SqliteStore", "copy", "open_store",
        "store_files"])


@pytest.mark.parametrize("url, files", [
    ("sqlite:///data/o.db", ["data/o.db", "data/o.db-wal", "data/o.db-shm",
                             "data/o.db-journal"]),
    ("o.sqlite3", ["o.sqlite3", "o.sqlite3-wal", "o.sqlite3-shm", "o.sqlite3-journal"]),
    ("x.JSONL", ["x.JSONL"]), ("x.ndjson", ["x.ndjson"]), ("x.parquet", ["x.parquet"]),
    ("sqlite:///:memory:", []), ("memory:", []), ("nats://h:4222/S", []),
    ("esdb://h:2113", []), ("notes.txt", []), ("sqlite:/bad", []), ("", []),
])
def test_store_files_are_where_open_store_would_put_the_store(url: str,
                                                              files: list[str]) -> None:
    assert evtools.stores.store_files(url) == [Path(f) for f in files]


def _fill(store: MemoryStore) -> None:
    for stream, events in sample_appends("copy"):
        store.append(stream, events)


def _fields(events: object) -> list[tuple[object, ...]]:
    return [(e.stream, e.version, e.type, e.data, e.metadata, e.id, e.schema_version,
             e.content_type, e.recorded_at) for e in events]  # type: ignore[attr-defined]


def test_copy_through_every_local_store_keeps_everything(tmp_path: Path) -> None:
    source = MemoryStore()
    _fill(source)
    want = _fields(source.read_all())
    chain = [SqliteStore(tmp_path / "a.db"), JsonlStore(tmp_path / "b.jsonl", "w"),
             MemoryStore()]
    current = source
    for dest in chain:
        seen: list[int] = []
        assert copy(current, dest, progress=seen.append, batch_size=1) == len(want)
        assert seen == list(range(1, len(want) + 1))
        assert _fields(dest.read_all()) == want
        current = dest  # type: ignore[assignment]
    with ParquetStore(tmp_path / "c.parquet", "w") as out:
        assert copy(current, out) == len(want)
    with open_store(str(tmp_path / "c.parquet")) as back:
        assert _fields(back.read_all()) == want
    for store in chain:
        store.close()


def test_copy_refuses_a_destination_that_has_the_stream() -> None:
    source, dest = MemoryStore(), MemoryStore()
    source.append("s", [NewEvent("A", b"{}")])
    dest.append("s", [NewEvent("B", b"{}")])
    with pytest.raises(StoreError, match="already exists") as info:
        copy(source, dest)
    assert info.value.context.stream == "s"


def test_copy_refuses_a_stream_that_does_not_start_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "partial.jsonl"
    path.write_text('{"stream": "s", "version": 3, "type": "T", "data": {}}\n')
    with JsonlStore(path) as source, pytest.raises(StoreError,
                                                      match="'s' starts at version 3, not 0"):
        copy(source, MemoryStore())


def test_copy_writes_nothing_when_the_source_has_a_gap_after_good_streams(
        tmp_path: Path) -> None:
    path = tmp_path / "gap.jsonl"
    path.write_text("".join(
        f'{{"stream": "{s}", "version": {v}, "type": "T", "data": {{}}}}\n'
        for s, v in [("a", 0), ("a", 1), ("b", 0), ("c", 0), ("c", 2)]))
    dest = MemoryStore()
    with JsonlStore(path) as source, \
            pytest.raises(StoreError, match=r"version 0 to 2.*nothing was copied") as info:
        copy(source, dest, batch_size=1)
    assert (info.value.context.stream, info.value.context.version) == ("c", 2)
    assert list(dest.read_all()) == []  # streams a and b were not written either
    with JsonlStore(path) as source, pytest.raises(StoreError, match="version 0 to 2"):
        copy(source, dest, batch_size=1, check_first=False)  # the old way: writes a, b
    assert [e.stream for e in dest.read_all()] == ["a", "a", "b"]


def test_copy_writes_nothing_when_a_later_stream_exists_in_the_destination() -> None:
    source, dest = MemoryStore(), MemoryStore()
    source.append("a", [NewEvent("A", b"{}")])
    source.append("z", [NewEvent("A", b"{}")])
    dest.append("z", [NewEvent("B", b"{}")])
    with pytest.raises(StoreError, match=r"'z' already exists.*nothing was copied"):
        copy(source, dest)
    assert dest.stream_version("a") is None


def _timeless(tmp_path: Path) -> JsonlStore:
    """A flat JSONL export of events without a time, one of them without an id."""
    path = tmp_path / "timeless.jsonl"
    path.write_text('{"stream": "s", "version": 0, "type": "T", "data": {}, "id": "e1"}\n'
                    '{"stream": "s", "version": 1, "type": "T", "data": {}, "id": ""}\n'
                    '{"stream": "t", "version": 0, "type": "U", "data": [], "id": "e2"}\n')
    return JsonlStore(path)


def test_copy_keeps_a_missing_time_and_an_empty_id(tmp_path: Path) -> None:
    """A source event without a time had been copied with the time of the copy and one
    without an id with a random UUID: two copies of one store differed."""
    with _timeless(tmp_path) as source:
        want = _fields(source.read_all())
        assert [(w[5], w[8]) for w in want] == [("e1", None), ("", None), ("e2", None)]
        copies = []
        for dest in (SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db"),
                     MemoryStore()):
            with dest:
                assert copy(source, dest) == 3
                copies.append(_fields(dest.read_all()))
        with ParquetStore(tmp_path / "c.parquet", "w") as out:
            copy(source, out)
        with open_store(str(tmp_path / "c.parquet")) as back:
            copies.append(_fields(back.read_all()))
        assert copies == [want] * 4


class _Picky(MemoryStore):
    """A destination that holds no stream named "big" (as NATS a name too long for a
    subject) and, with unique_ids, one event per id."""

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        prepared = super().check_appendable(stream, event, version)
        if stream == "big":
            raise UsageError(f"{self.url}: stream {stream!r} is too big for me",
                             stream=stream, version=version)
        return prepared

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        for i, event in enumerate(events):
            self.check_appendable(stream, event, i)
        return super().append(stream, events, expected_version)


class _Unique(MemoryStore):
    unique_ids = "I keep one event per id"


def test_copy_checks_every_event_against_the_destination_before_writing(
        tmp_path: Path) -> None:
    source = MemoryStore()
    source.append("a", [NewEvent("A", b"{}"), NewEvent("A", b"{}")])
    source.append("big", [NewEvent("A", b"{}")])
    source.append("z", [NewEvent("A", b"{}")])
    dest = _Picky()
    with pytest.raises(UsageError, match=r"^copy memory: -> memory:: stream 'big' is too big "
                                         r"for me \(nothing was copied\)") as info:
        copy(source, dest, batch_size=1)
    assert (info.value.context.stream, info.value.context.version) == ("big", 0)
    assert list(dest.read_all()) == []
    # what each store refuses of any event, before the first is written: SQLite's row size
    source = MemoryStore()
    source.append("a", [NewEvent("A", b"{}")])
    source.append("b", [NewEvent("A", b"{}"), NewEvent("B", b"x" * 5000)])
    with SqliteStore(tmp_path / "d.db") as dest:
        dest._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4000)
        with pytest.raises(UsageError, match=r"stream 'b': an event of .* larger than "
                                             r"SQLite's limit .*nothing was copied") as info:
            copy(source, dest)
        assert (info.value.context.stream, info.value.context.version) == ("b", 1)
        assert dest.stream_version("a") is None


def test_copy_into_a_store_that_keeps_one_event_per_id_refuses_a_repeated_id() -> None:
    source = MemoryStore()
    source.append("a", [NewEvent("A", b"{}", id="x1"), NewEvent("A", b"{}", id="x2")])
    source.append("b", [NewEvent("B", b"{}", id="x3"), NewEvent("B", b"{}", id="x2")])
    dest = _Unique()
    with pytest.raises(StoreError, match=r"event id 'x2' is used by two events of the source "
                                         r"\(stream 'a' version 1 and stream 'b' version 1: "
                                         r"a duplicate delivery, say\); I keep one event per "
                                         r"id.*nothing was copied") as info:
        copy(source, dest)
    assert (info.value.context.stream, info.value.context.version) == ("b", 1)
    assert list(dest.read_all()) == []
    assert copy(source, MemoryStore()) == 4  # a store that keeps any ids takes it


class _Lossy(MemoryStore):
    """A broken destination: acknowledges every event, keeps all but the last."""

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        last = super().append(stream, events[:-1] or events, expected_version)
        return last + (1 if len(events) > 1 else 0)


def test_copy_checks_the_count() -> None:
    source = MemoryStore()
    source.append("s", [NewEvent("A", b"{}"), NewEvent("B", b"{}")])
    with pytest.raises(StoreError, match="ends at version 0 in the destination, 1"):
        copy(source, _Lossy())


def test_create_opens_any_store_for_writing(tmp_path: Path) -> None:
    jsonl = str(tmp_path / "dest.jsonl")
    with open_store(jsonl, create=True) as dest:  # what `evtools copy` asks for
        assert not dest.read_only
        dest.append("s", [NewEvent("A", b"{}")])
    with open_store(jsonl, create=True) as dest:  # again: continues, never truncates
        assert dest.stream_version("s") == 0
    with open_store(str(tmp_path / "new.db"), create=True) as db:
        assert db.stream_version("s") is None
    with pytest.raises(StoreError, match="create=False"):
        open_store(f"sqlite:///{tmp_path / 'missing.db'}", create=False)
    with pytest.raises(UsageError):
        open_store(jsonl, mode="r", create=True)
    with open_store("memory:", create=True) as mem:
        assert isinstance(mem, MemoryStore)


@pytest.mark.parametrize("url, shown", [
    ("esdb://admin:changeit@localhost:2113?tls=false", "esdb://admin:***@localhost:2113?tls=false"),
    ("esdb://admin:p@ss@localhost:2113", "esdb://admin:***@localhost:2113"),  # "@" in it
    ("nats://tok3n@127.0.0.1:4222/S", "nats://***@127.0.0.1:4222/S"),
    ("nats://u:p%40w@[::1]:4222/S?prefix=a@b", "nats://u:***@[::1]:4222/S?prefix=a@b"),
    ("nats://h1:4222,u:pw@h2:4222/S", "nats://h1:***@h2:4222/S"),  # hidden all the same
    ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),  # an "@" in a path is no password
    ("esdb://localhost:2113#x@y", "esdb://localhost:2113#x@y"),
])
def test_redact_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    from evtools.stores.base import redact_url

    assert redact_url(url) == shown


@pytest.mark.parametrize("url", [
    "nats://u:s3cret@127.0.0.1:1/S?bogus=1", "nats://u:s3cret@127.0.0.1:1/S?replicas=x",
    "nats://u:s3cr@t@127.0.0.1:1/S?replicas=x", "esdb://u:s3cret@localhost:2113?tls=maybe",
])
def test_messages_about_a_store_url_never_show_its_password(url: str) -> None:
    with pytest.raises(UsageError) as info:
        open_store(url)
    assert "s3cr" not in str(info.value) and "***@" in str(info.value)



def test_sqlite_url_options_are_honoured_or_refused(tmp_path: Path) -> None:
    """``?mode=ro`` had been dropped without a word: the database opened for writing."""
    db = tmp_path / "opts.db"
    with open_store(f"sqlite:///{db}") as store:
        store.append("s", [NewEvent("A", b"{}")])
    for query in ("mode=r", "mode=ro"):
        with open_store(f"sqlite:///{db}?{query}") as store:
            assert store.read_only
            with pytest.raises(UsageError, match="read-only"):
                store.append("s", [NewEvent("B", b"{}")])
    with open_store(f"sqlite:///{db}?mode=a&timeout=0.5") as store:
        assert not store.read_only and store.append("s", [NewEvent("B", b"{}")], 0) == 1
    for query, fragment in (("colour=blue", "unknown SQLite option 'colour'"),
                            ("mode=x", "mode"), ("timeout=soon", "bad option value"),
                            ("mode=r&mode=a", "mode")):
        with pytest.raises(UsageError, match=fragment):
            open_store(f"sqlite:///{db}?{query}")
    with pytest.raises(UsageError, match=r"the URL says mode=r \(read-only\), and this "
                       r"command writes to it: remove the option, or change it"):
        open_store(f"sqlite:///{db}?mode=r", mode="a")
    with pytest.raises(UsageError, match=r"mode=ro \(read-only\), and this command may "
                                         r"create it"):
        open_store(f"sqlite:///{db}?mode=ro", create=True)
    with pytest.raises(UsageError, match=r"mode=rw \(read and write\), and this command "
                                         r"opens it read-only"):
        open_store(f"sqlite:///{db}?mode=rw", mode="r")
    with SqliteStore(db, mode="r") as store:
        assert store.stream_version("s") == 1


def test_a_mode_no_store_has_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="mode"):
        open_store("memory:", mode="x")
