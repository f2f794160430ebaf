"""SqliteStore: the contract, plus real processes racing and being killed mid-append."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtools.errors import (
    ConcurrencyError,
    InputError,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from evtools.events import RawEvent
from evtools.stores import NO_STREAM, EventStore, NewEvent, SqliteStore, open_store

from .contract import StoreContract
from .strategies import store_pages

pytestmark = pytest.mark.timeout(120)


class TestSqliteStore(StoreContract):
    def make_store(self, tmp_path: Path) -> EventStore:
        return SqliteStore(tmp_path / f"events-{os.urandom(4).hex()}.db", page_size=100)


class TestSqliteInMemory(StoreContract):
    def make_store(self, tmp_path: Path) -> EventStore:
        return SqliteStore(":memory:")


def _run_python(code: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)  # type: ignore[call-overload]


def test_two_processes_at_the_same_expected_version_exactly_one_wins(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    with SqliteStore(db) as store:
        store.append("account-1", [NewEvent("Opened", b"{}")], NO_STREAM)
    go = tmp_path / "go"
    code = f"""
        import sys, time
        from pathlib import Path
        from evtools.errors import ConcurrencyError
        from evtools.stores import NewEvent, SqliteStore
        name = sys.argv[1]
        store = SqliteStore({str(db)!r})
        print("ready", flush=True)
        while not Path({str(go)!r}).exists():
            time.sleep(0.001)
        try:
            v = store.append("account-1", [NewEvent("Deposited", b"{{}}", id=name)], 0)
            print("won", v, flush=True)
        except ConcurrencyError as e:
            print("lost", e.expected, e.actual, e.context.stream, flush=True)
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), f"writer-{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
    outcomes = [out.strip() for out, _ in results]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sorted(o.split()[0] for o in outcomes) == ["lost", "lost", "lost", "won"]
    assert [o for o in outcomes if o.startswith("won")] == ["won 1"]
    assert all(o == "lost 0 1 account-1" for o in outcomes if o.startswith("lost"))
    with SqliteStore(db, mode="r") as store:
        events = list(store.read_stream("account-1"))
        assert [e.version for e in events] == [0, 1]
        winner = outcomes.index("won 1")
        assert events[1].id == f"writer-{winner}"


def test_sigkill_in_the_middle_of_a_batch_leaves_no_partial_batch(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    with SqliteStore(db) as store:
        store.append("before", [NewEvent("Kept", b'{"n": 0}')])
    code = f"""
        import time
        from collections.abc import Sequence
        from evtools.stores import NewEvent, SqliteStore

        class Slow(Sequence):
            # 20,000 events; at the 15,000th the writer says so and hangs
            def __len__(self):
                return 20_000
            def __getitem__(self, i):
                if i >= len(self):
                    raise IndexError(i)
                if i == 15_000:
                    print("mid-batch", flush=True)
                    time.sleep(600)
                return NewEvent("Partial", b'{{"i": %d, "pad": "%s"}}' % (i, b"x" * 200))

        store = SqliteStore({str(db)!r})
        # a tiny page cache makes the uncommitted rows spill into the WAL file, so the
        # kill happens with part of the batch on disk (private access: test only)
        store._connection().execute("PRAGMA cache_size = 50")
        store.append("big", Slow())
        print("finished", flush=True)
    """
    proc = _run_python(code)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "mid-batch"
        # 15,000 rows of ~230 bytes are already in the (uncommitted) transaction
        wal = Path(str(db) + "-wal")
        assert wal.exists() and wal.stat().st_size > 1_000_000
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with SqliteStore(db) as store:
        assert store.stream_version("big") is None
        assert [e.stream for e in store.read_all()] == ["before"]
        assert store.append("big", [NewEvent("After", b"{}")], NO_STREAM) == 0
        assert [(e.stream, e.position) for e in store.read_all()] == [("before", 1), ("big", 2)]


def test_waiting_for_a_held_lock_too_long_is_a_concurrency_error(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    with SqliteStore(db) as store:
        store.append("s", [NewEvent("A", b"{}")])
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with SqliteStore(db, timeout=0.2) as store, pytest.raises(ConcurrencyError) as info:
            store.append("s", [NewEvent("B", b"{}")], 0)
        assert info.value.context.stream == "s"
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_schema_and_pragmas(tmp_path: Path) -> None:
    db = tmp_path / "schema.db"
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    indexes = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index'").fetchall()
    assert len(indexes) == 1  # the UNIQUE (stream, version) one; position is the rowid
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE stream = ? AND version >= ? "
        "ORDER BY version LIMIT 10", ("s", 0)))
    assert "USING INDEX" in plan and "TEMP B-TREE" not in plan
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE position >= ? ORDER BY position "
        "LIMIT 10", (0,)))
    assert "INTEGER PRIMARY KEY" in plan and "TEMP B-TREE" not in plan
    conn.close()


def test_read_only_mode(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    with SqliteStore(db) as store:
        store.append("s", [NewEvent("A", b"{}")])
    with SqliteStore(db, mode="r") as store:
        assert store.stream_version("s") == 0
        with pytest.raises(UsageError):
            store.append("s", [NewEvent("B", b"{}")])
    with pytest.raises(StoreUnavailable):
        SqliteStore(tmp_path / "missing.db", mode="r")


def test_reading_leaves_no_files_and_writes_nothing(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "orders.db"
    with SqliteStore(db) as store:
        store.append("s", [NewEvent("A", b"{}")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.db"]
    before = db.read_bytes()
    with SqliteStore(db, mode="r") as store:
        assert [e.type for e in store.read_stream("s")] == ["A"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._connection().execute("DELETE FROM events")  # query_only, not just _refuse
    # a read-only connection would leave the WAL's -wal and -shm files behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.db"]
    assert db.read_bytes() == before
    # where the file may not be written, it is opened read-only (the files may stay then)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with SqliteStore(db, mode="r") as store:
        assert store.stream_version("s") == 0


def test_reading_leaves_a_crashed_writers_wal_as_it_is(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    with SqliteStore(db) as store:
        store.append("s", [NewEvent("A", b"{}")])
    crash = textwrap.dedent(f"""
        import os
        from evtools.stores import NewEvent, SqliteStore
        store = SqliteStore({str(db)!r})
        store.append("s", [NewEvent("B", b"{{}}")], 0)
        os._exit(0)  # no close: the WAL is never checkpointed
    """)
    subprocess.run([sys.executable, "-c", crash], check=True, timeout=60)
    wal = Path(f"{db}-wal")
    before = (db.read_bytes(), wal.read_bytes())
    assert before[1]  # the second event is only in the WAL
    with SqliteStore(db, mode="r") as store:
        assert [e.type for e in store.read_stream("s")] == ["A", "B"]
    assert (db.read_bytes(), wal.read_bytes()) == before  # nothing checkpointed by a reader


def test_not_an_event_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE events (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="not an evtools event database"):
        SqliteStore(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable) as info:
        SqliteStore(garbage)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        SqliteStore(tmp_path / "no" / "dir.db")


def test_closed_store_is_a_usage_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    store.close()
    store.close()
    with pytest.raises(UsageError, match="closed"):
        store.stream_version("s")


@pytest.mark.parametrize("url, path", [
    ("sqlite:///data/events.db", "data/events.db"),
    ("sqlite:////tmp/x/events.db", "/tmp/x/events.db"),
    ("sqlite:///:memory:", ":memory:"),
])
def test_sqlite_urls(url: str, path: str) -> None:
    from evtools.stores.sqlite import path_from_url

    assert path_from_url(url) == path


def test_open_store_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with open_store("sqlite:///data/events.db") as store:
        assert isinstance(store, SqliteStore)
        store.append("s", [NewEvent("A", b"{}")])
    with open_store("data/events.db", mode="r") as store:
        assert store.read_only and store.stream_version("s") == 0
    with open_store("sqlite:///:memory:") as store:
        assert store.stream_version("s") is None
    with pytest.raises(UsageError, match="only for files"):
        open_store("sqlite:///data/events.db", mode="w")


def test_reads_page_through_keyset_queries(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "p.db", page_size=7) as store:
        for i in range(5):
            store.append(f"s{i % 2}", [NewEvent("E", b"%d" % k) for k in range(11)])
        assert len(list(store.read_all())) == 55
        assert [e.version for e in store.read_stream("s0", 20)] == list(range(20, 33))
        assert len(list(store.read_all(10, limit=20))) == 20
        assert list(store.list_streams()) == ["s0", "s1"]


def test_many_streams_are_listed_page_by_page(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "l.db", page_size=3) as store:
        names = [f"s{i:02d}" for i in range(10)]
        for name in reversed(names):
            store.append(name, [NewEvent("E", b"{}")])
        assert list(store.list_streams()) == names


# -- rows other tools wrote: SQLite is typeless, a bad column is an InputError naming it ---


def _damaged(tmp_path: Path, assignment: str, position: int = 5) -> Path:
    """A database of three streams (positions 1-9) with one row changed behind the store."""
    db = tmp_path / f"damaged-{os.urandom(3).hex()}.db"
    with SqliteStore(db, page_size=4) as store:
        for v in range(3):
            for s in ("a", "b", "c"):
                store.append(s, [NewEvent("E", b'{"v": %d}' % v, b"{}", id=f"{s}{v}")])
    conn = sqlite3.connect(db)
    conn.execute(f"UPDATE events SET {assignment} WHERE position = ?", (position,))
    conn.commit()
    conn.close()
    return db  # position 5 is stream b, version 1


@pytest.mark.parametrize("assignment, column, holds", [
    ("recorded_at = 'not a time'", "recorded_at", "TEXT 'not a time'"),
    ("recorded_at = '2024-13-01T00:00:00+00:00'", "recorded_at", "TEXT '2024-13-01"),
    ("recorded_at = '2024-05-01T12:00:00'", "recorded_at", "TEXT '2024-05-01T12:00:00'"),
    ("recorded_at = 1714564800", "recorded_at", "TEXT '1714564800'"),  # TEXT affinity
    ("recorded_at = X'00'", "recorded_at", "BLOB b'\\x00'"),
    ("version = 'abc'", "version", "TEXT 'abc'"),
    ("version = 1.5", "version", "REAL 1.5"),
    ("version = -1", "version", "INTEGER -1"),
    ("schema_version = 'v2'", "schema_version", "TEXT 'v2'"),
    ("schema_version = 0", "schema_version", "INTEGER 0"),
    ("type = ''", "type", "TEXT ''"),
    ("type = X'54'", "type", "BLOB b'T'"),
    ("id = X'01'", "id", "BLOB b'\\x01'"),
    ("data = 5", "data", "INTEGER 5"),
    ("metadata = 2.5", "metadata", "REAL 2.5"),
    ("content_type = X'6a'", "content_type", "BLOB b'j'"),
])
def test_a_damaged_row_names_file_position_stream_version_and_column(
        tmp_path: Path, assignment: str, column: str, holds: str) -> None:
    db = _damaged(tmp_path, assignment)
    with SqliteStore(db, mode="r", page_size=4) as store:
        reads = [lambda: list(store.read_all()), lambda: list(store.read_stream("b")),
                 lambda: list(store.read_all(5, limit=1))]
        if holds != "INTEGER -1":  # reading from version 1 on does not reach version -1
            reads.append(lambda: list(store.read_stream("b", 1)))
        for read in reads:
            with pytest.raises(InputError) as info:
                read()
            text = str(info.value)
            assert f"sqlite:///{db}: the row at position 5 is not a usable event: " \
                   f"column {column} holds {holds}" in text, text
            ctx = info.value.context
            assert (ctx.file, ctx.stream) == (str(db), "b")
            assert ctx.version == (None if column == "version" else 1)
        # the rows before it are read; streams without it are whole
        assert [e.position for e in store.read_all(limit=4)] == [1, 2, 3, 4]
        assert [e.version for e in store.read_stream("a")] == [0, 1, 2]


@pytest.mark.parametrize("assignment", ["version = 'abc'", "version = 1.5"])
def test_a_damaged_version_is_an_input_error_for_stream_version_and_append(
        tmp_path: Path, assignment: str) -> None:
    db = _damaged(tmp_path, assignment, position=8)  # stream b's last version
    with SqliteStore(db) as store:
        with pytest.raises(InputError, match=r"position 8 .*column version holds") as info:
            store.stream_version("b")
        assert info.value.context.stream == "b"
        with pytest.raises(InputError, match="column version holds"):
            store.append("b", [NewEvent("E", b"{}")])
        assert store.stream_version("a") == 2  # other streams are unharmed


def test_a_damaged_stream_name_is_an_input_error_when_listed(tmp_path: Path) -> None:
    db = _damaged(tmp_path, "stream = X'62'")
    with SqliteStore(db, mode="r") as store, pytest.raises(
            InputError, match=r"position 5 .*column stream holds BLOB b'b'"):
        list(store.list_streams())
    db = _damaged(tmp_path, "stream = ''")
    with SqliteStore(db, mode="r") as store, pytest.raises(
            InputError, match="column stream holds TEXT ''"):
        list(store.read_all())


def test_payloads_stored_as_text_are_read_as_their_utf8_bytes(tmp_path: Path) -> None:
    db = _damaged(tmp_path, """data = '{"v": "é"}', metadata = '{}'""")
    with SqliteStore(db, mode="r", page_size=4) as store:
        for events in (list(store.read_all()), list(store.read_stream("b"))):
            moved = [e for e in events if e.position == 5]
            assert [(e.data, e.metadata) for e in moved] == [('{"v": "é"}'.encode(), b"{}")]
            assert all(type(e.data) is bytes and e.check() is e for e in events)
    # TEXT that is not UTF-8: its bytes as stored (the registry reports them, with context)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE events SET data = CAST(X'7bff7d' AS TEXT) WHERE position = 5")
    conn.commit()
    conn.close()
    with SqliteStore(db, mode="r", page_size=4) as store:
        for events in (list(store.read_all()), list(store.read_stream("b"))):
            assert [e.data for e in events if e.position == 5] == [b"{\xff}"]


def test_times_with_other_offset_forms_are_read(tmp_path: Path) -> None:
    db = _damaged(tmp_path, "recorded_at = '2024-05-01T12:00:00.5Z'")
    with SqliteStore(db, mode="r") as store:
        [event] = [e for e in store.read_all() if e.position == 5]
        assert event.recorded_at == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)


_COLUMNS = ["stream", "version", "type", "data", "metadata", "id", "recorded_at",
            "content_type", "schema_version"]
_VALUES = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False),
                    st.text(max_size=30), st.binary(max_size=8),
                    st.datetimes(timezones=st.none() | st.just(UTC)).map(str))


@settings(max_examples=150, deadline=None)
@given(column=st.sampled_from(_COLUMNS), value=_VALUES, page_size=st.sampled_from([1, 2, 50]))
def test_any_stored_value_reads_as_a_usable_event_or_an_input_error(
        column: str, value: object, page_size: int) -> None:
    store = SqliteStore(":memory:", page_size=page_size)
    try:
        for s in ("a", "b"):
            store.append(s, [NewEvent("E", b"{}"), NewEvent("F", b"[]")])
        try:  # private access, test only: write behind the store's back
            store._connection().execute(f"UPDATE events SET {column} = ? WHERE position = 3",
                                        (value,))
        except sqlite3.IntegrityError:  # NOT NULL or UNIQUE said no
            return
        for read in (store.read_all, lambda: store.read_stream("b"), store.list_streams,
                     lambda: iter([store.stream_version("b")])):
            try:
                for got in read():
                    if isinstance(got, RawEvent):
                        assert got.check() is got
            except InputError as e:
                assert e.context.file == ":memory:" and "position 3" in str(e)
    finally:
        store.close()


@settings(max_examples=400, deadline=None)
@given(store_pages())
def test_a_page_the_quick_look_passes_is_one_the_row_check_passes(
        page: tuple[list[tuple[Any, ...]], bool]) -> None:
    from evtools.stores import sqlite as module

    rows, with_stream = page
    try:
        events = module._to_events(rows) if with_stream \
            else module._to_stream_events("s", rows)
    except (TypeError, ValueError, IndexError):
        return  # the conversion refused the page: the row check decides
    for look in (module._rows_look_right, module._py_rows_look_right):
        if look(rows, with_stream):
            with SqliteStore(":memory:") as store:
                checked = [store._checked_event(*row) if with_stream
                           else store._checked_event("s", *row) for row in rows]
            assert checked == events


def test_a_stream_longer_than_a_page_is_read_up_to_its_head_at_the_call(
        tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "paged.db", page_size=2) as store:
        store.append("s", [NewEvent("E", b"{}") for _ in range(5)])
        read = []
        for event in store.read_stream("s"):
            read.append(event.version)
            store.append("s", [NewEvent("F", b"{}")])  # behind the iterator: not read
        assert read == [0, 1, 2, 3, 4]
        assert [e.version for e in store.read_stream("s", 3, limit=4)] == [3, 4, 5, 6]


def test_reading_all_over_many_pages_while_appending_ends(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "paged-all.db", page_size=2) as store:
        store.append("s", [NewEvent("E", b"{}") for _ in range(5)])
        read = []
        for event in store.read_all():
            read.append(event.position)
            store.append("copies", [NewEvent.from_raw(event)])  # behind the iterator
            assert len(read) < 50, "read_all goes on reading what is appended behind it"
        assert read == [1, 2, 3, 4, 5]
        assert [e.position for e in store.read_all(4, limit=4)] == [4, 5, 6, 7]


# -- times that are no full timestamp, or hold more than datetime keeps --------------------


@pytest.mark.parametrize("text, holds", [
    # fromisoformat reads a date alone as a naive midnight, ignoring the offset
    ("2024-01-01+00:00", "TEXT '2024-01-01+00:00'"),
    ("2024-05-01-05:00", "TEXT '2024-05-01-05:00'"),
    # and keeps six digits of nine
    ("2024-01-01T00:00:00.123456789+00:00", "TEXT '2024-01-01T00:00:00.123456789+00:00'"),
    ("2024-01-01T00:00:00.1234567Z", "TEXT '2024-01-01T00:00:00.1234567Z'"),
])
def test_a_time_that_is_no_full_timestamp_or_holds_nanoseconds_is_an_input_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, holds: str) -> None:
    from evtools.stores import sqlite as module

    db = _damaged(tmp_path, f"recorded_at = '{text}'")
    # the C look at a page (where it was built), then its Python twin
    for look in (module._rows_look_right, module._py_rows_look_right):
        monkeypatch.setattr(module, "_rows_look_right", look)
        with SqliteStore(db, mode="r", page_size=4) as store:
            for read in (lambda: list(store.read_all()), lambda: list(store.read_stream("b")),
                         lambda: list(store.read_stream("b", 1, limit=1))):
                with pytest.raises(InputError) as info:
                    read()
                said = str(info.value)
                assert f"the row at position 5 is not a usable event: column recorded_at " \
                       f"holds {holds}" in said, said
                assert (info.value.context.stream, info.value.context.version) == ("b", 1)


def test_the_quick_looks_pass_only_the_form_the_store_writes() -> None:
    from evtools.stores import sqlite as module

    row = ["s", 0, "T", b"{}", b"", "i", "", 1, None, 1]
    for text, passes in [("2024-05-01T12:00:00+00:00", True),
                         ("2024-05-01T12:00:00.123456-05:30", True),
                         ("2024-01-01+00:00", False), ("2024-05-01T12:00:00Z", False),
                         ("2024-01-01T00:00:00.123456789+00:00", False),
                         ("2024-01-01T00:00:00.12345678+00:00", False),  # 32 characters
                         ("2024-05-01 12:00:00+00:00", False),
                         ("2024-05-01T12:00:00.1234+00:00", False)]:
        row[6] = text
        for look in (module._rows_look_right, module._py_rows_look_right):
            assert look([tuple(row)], True) is passes, (look, text)


def test_trailing_zeros_beyond_the_microsecond_are_read(tmp_path: Path) -> None:
    db = _damaged(tmp_path, "recorded_at = '2024-05-01T12:00:00.123456000+00:00'")
    with SqliteStore(db, mode="r") as store:
        [event] = [e for e in store.read_all() if e.position == 5]
        assert event.recorded_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


# -- what no store could write or read back is refused at append -----------------------------


@pytest.mark.parametrize("event, refused", [
    (NewEvent("T", b"{}", schema_version=2**63), r"schema_version 9223372036854775808 is "
                                                  r"above 2\*\*63-1"),
    (NewEvent("T", b"{}", schema_version=2**64), "above 2"),
    (NewEvent("T", b"{}", recorded_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
     "outside the years 1-9999 once in UTC"),
    (NewEvent("T", b"{}", recorded_at=datetime(9999, 12, 31, 23, 59,
                                               tzinfo=timezone(timedelta(hours=-1)))),
     "outside the years 1-9999 once in UTC"),
    (NewEvent("T", b"{}", recorded_at="2024-01-01T00:00:00Z"),  # type: ignore[arg-type]
     "recorded_at must be a datetime or None, not str"),
])
def test_what_sqlite_cannot_keep_is_a_usage_error_naming_the_event(
        tmp_path: Path, event: NewEvent, refused: str) -> None:
    with SqliteStore(tmp_path / "r.db") as store:
        with pytest.raises(UsageError, match=refused) as info:
            store.append("s", [NewEvent("T", b"{}"), event], NO_STREAM)
        assert "\n" not in str(info.value)
        assert (info.value.context.stream, info.value.context.version) == ("s", 1)
        assert store.stream_version("s") is None
        with pytest.raises(UsageError, match=refused):
            store.check_appendable("s", event, 1)
        assert store.append("s", [NewEvent("T", b"{}", schema_version=2**63 - 1)]) == 0
        assert next(store.read_stream("s")).schema_version == 2**63 - 1


def test_a_time_with_nanoseconds_is_refused_and_one_without_is_a_plain_datetime(
        tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    with SqliteStore(tmp_path / "ns.db") as store:
        with pytest.raises(UsageError, match=r"sub-microsecond digits \(789 ns\)"):
            store.append("s", [NewEvent("T", b"{}", recorded_at=pd.Timestamp(
                "2024-01-01T00:00:00.123456789Z"))])
        assert store.stream_version("s") is None
        store.append("s", [NewEvent("T", b"{}", recorded_at=pd.Timestamp(
            "2024-01-01T02:00:00.123456+02:00"))])
        got = next(store.read_stream("s")).recorded_at
        assert type(got) is datetime
        assert got == datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def test_reading_from_beyond_every_version_or_position_reads_nothing(tmp_path: Path) -> None:
    """SQLite's INTEGER is 64-bit: binding 2**64 had been a raw OverflowError."""
    with SqliteStore(tmp_path / "far.db") as store:
        store.append("s", [NewEvent("T", b"{}")])
        for start in (2**63 - 1, 2**63, 2**64, 2**100):
            assert list(store.read_stream("s", start)) == []
            assert list(store.read_stream("s", start, limit=2**64)) == []
            assert list(store.read_all(start)) == []
            with pytest.raises(StreamNotFound):
                store.read_stream("missing", start)
        assert len(list(store.read_all(0, limit=2**64))) == 1


def test_an_event_larger_than_a_row_is_refused_naming_it(tmp_path: Path) -> None:
    """A payload over 2 GiB had been a raw OverflowError ("BLOB longer than INT_MAX
    bytes"), one over SQLite's limit a StoreError naming no event: the limit is lowered
    here instead of allocating gigabytes."""
    with SqliteStore(tmp_path / "big.db") as store:
        store._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4000)
        store.append("s", [NewEvent("T", b"x" * 3000)])
        for event in (NewEvent("T", b"x" * 4000), NewEvent("T", b"x" * 2000, b"y" * 2000),
                      NewEvent("T" * 4000, b"{}")):
            with pytest.raises(UsageError, match=r"larger than SQLite's limit for a row "
                                                 r"\(4,000 bytes") as info:
                store.append("s", [NewEvent("T", b"{}"), event], 0)
            assert (info.value.context.stream, info.value.context.version) == ("s", 2)
            with pytest.raises(UsageError, match="larger than SQLite's limit"):
                store.check_appendable("s", event, 2)
        assert store.stream_version("s") == 0


def test_what_sqlite_refuses_as_too_big_is_a_store_error_naming_the_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteStore(tmp_path / "big.db") as store:
        store._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4000)
        # should the size check miss one, SQLite's "string or blob too big"
        monkeypatch.setattr(SqliteStore, "_check_row_size", lambda *args: None)
        with pytest.raises(StoreError, match=r"larger than SQLite takes in a row \(string "
                                             r"or blob too big\)") as info:
            store.append("s", [NewEvent("T", b"x" * 5000)])
        assert not isinstance(info.value, ConcurrencyError)
        assert info.value.context.stream == "s"
        assert store.stream_version("s") is None
        # and the sqlite3 module's own refusal of a value over INT_MAX bytes
        error = store._write_failure(OverflowError("BLOB longer than INT_MAX bytes"), "s",
                                     NO_STREAM)
        assert type(error) is StoreError and error.context.stream == "s"
        assert "BLOB longer than INT_MAX bytes" in str(error)


def test_a_copied_event_without_time_or_id_is_kept_so(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        store.append("s", [RawEvent("elsewhere", 7, "T", b"{}"),
                           RawEvent("elsewhere", 8, "T", b"{}", id="e1")])
        assert [(e.id, e.recorded_at) for e in store.read_stream("s")] == [
            ("", None), ("e1", None)]
        # a new event is given both
        store.append("s", [NewEvent("T", b"{}")])
        last = store.last_event("s")
        assert last is not None and last.id and last.recorded_at is not None
