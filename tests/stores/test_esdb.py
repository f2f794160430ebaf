"""EsdbStore: mapping and error translation with esdbclient's own classes; the contract
against a fake server made of them (``_FakeServer``), and against a live server when
``EVTOOLS_ESDB_URI`` is set (see README: docker run ...)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.errors import (
    ConcurrencyError,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from evtools.events import RawEvent
from evtools.stores import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EsdbStore,
    EventStore,
    NewEvent,
    open_store,
)
from evtools.stores.esdb import (
    esdb_id,
    esdb_type,
    from_recorded_event,
    split_type,
    to_esdb_event,
    to_stream_state,
    translate_error,
)

from .conftest import free_port
from .contract import StoreContract
from .strategies import new_events

esdbclient = pytest.importorskip("esdbclient")
exceptions = pytest.importorskip("esdbclient.exceptions")
esdb_client = pytest.importorskip("esdbclient.client")
esdb_common = pytest.importorskip("esdbclient.common")
esdb_streams = pytest.importorskip("esdbclient.streams")
grpc = pytest.importorskip("grpc")

pytestmark = pytest.mark.timeout(120)

LIVE_URI = os.environ.get("EVTOOLS_ESDB_URI")


def recorded(new: Any, stream: str = "order-1", position: int = 3,
             commit: int = 1234) -> Any:
    """What the server hands back for ``new`` (an esdbclient NewEvent)."""
    return esdbclient.RecordedEvent(
        type=new.type, data=new.data, metadata=new.metadata, content_type=new.content_type,
        id=new.id, stream_name=stream, stream_position=position, commit_position=commit,
        prepare_position=commit, recorded_at=datetime(2024, 5, 1, tzinfo=UTC))


# -- mapping -------------------------------------------------------------------------------


def test_recorded_event_to_raw_event() -> None:
    rid = uuid.uuid4()
    rec = esdbclient.RecordedEvent(
        type="OrderPlaced@v3", data=b' {"a": 1}', metadata=b'{"m": 1}',
        content_type="application/json", id=rid, stream_name="order-1", stream_position=7,
        commit_position=90210, prepare_position=90210,
        recorded_at=datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert from_recorded_event(rec) == RawEvent(
        stream="order-1", version=7, type="OrderPlaced", data=b' {"a": 1}',
        metadata=b'{"m": 1}', id=str(rid), recorded_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
        position=90210, content_type="application/json", schema_version=3)


def test_new_event_from_raw_event() -> None:
    raw = RawEvent.new("s", 0, "ItemAdded", b"\x00\x01", schema_version=2,
                       content_type="application/octet-stream", metadata=b"m")
    new = to_esdb_event(raw)
    assert isinstance(new, esdbclient.NewEvent)
    assert (new.type, new.data, new.metadata, new.content_type, str(new.id)) == (
        "ItemAdded@v2", b"\x00\x01", b"m", "application/octet-stream", raw.id)
    assert to_esdb_event(RawEvent.new("s", 0, "T", b"{}",
                                      content_type="application/cloudevents+json")
                         ).content_type == "application/json"


def test_ids_that_are_not_uuids_map_deterministically() -> None:
    assert esdb_id("order-1-created") == esdb_id("order-1-created")
    assert esdb_id("order-1-created") != esdb_id("order-2-created")
    u = uuid.uuid4()
    assert esdb_id(str(u)) == u


_CANONICAL = "a1b2c3d4-0000-4000-8000-00000000000a"
_OTHER_FORMS = [_CANONICAL.upper(), _CANONICAL.replace("-", ""), "{" + _CANONICAL + "}",
                "urn:uuid:" + _CANONICAL]


@pytest.mark.parametrize("event_id", _OTHER_FORMS)
def test_only_a_canonical_uuid_is_the_id_itself(event_id: str) -> None:
    """uuid.UUID() takes upper case, braces, urn:uuid: and bare hex digits: they had
    mapped to the canonical form's UUID (two ids, one EventStoreDB id) and read back as
    it."""
    assert esdb_id(_CANONICAL) == uuid.UUID(_CANONICAL)
    assert esdb_id(event_id) != uuid.UUID(_CANONICAL)
    assert esdb_id(event_id) == uuid.uuid5(uuid.NAMESPACE_URL, "evtools:" + event_id)
    assert len({esdb_id(i) for i in [_CANONICAL, *_OTHER_FORMS]}) == 5


@pytest.mark.parametrize("event_id", [*_OTHER_FORMS, "order-1-created", "é", "x" * 300])
@pytest.mark.parametrize("metadata", [b"", b'{"m": 1}', b"\xff\x00",
                                      b'{"$evtools":{"id":"forged"}}'])
def test_an_id_that_is_not_a_canonical_uuid_comes_back_as_it_was(event_id: str,
                                                                  metadata: bytes) -> None:
    raw = RawEvent.new("s", 0, "T", b"{}", metadata=metadata, id=event_id)
    new = to_esdb_event(raw)
    assert new.id == esdb_id(event_id)  # what the server keeps: a UUID
    back = from_recorded_event(recorded(new, stream="s", position=0))
    assert (back.id, back.metadata) == (event_id, metadata)


@pytest.mark.parametrize("metadata", [b"", b'{"m": 1}', b"\xff", b'{"$evtools":{}}'])
def test_a_canonical_id_keeps_the_metadata_as_it_is(metadata: bytes) -> None:
    new = to_esdb_event(RawEvent.new("s", 0, "T", b"{}", metadata=metadata, id=_CANONICAL))
    assert new.id == uuid.UUID(_CANONICAL)
    if not metadata.startswith(b'{"$evtools":'):  # else wrapped, so as not to be mistaken
        assert new.metadata == metadata
    back = from_recorded_event(recorded(new))
    assert (back.id, back.metadata) == (_CANONICAL, metadata)


def test_metadata_another_client_wrote_like_the_wrapper_is_read_as_it_is() -> None:
    rec = recorded(esdbclient.NewEvent(type="T", data=b"{}", id=uuid.UUID(_CANONICAL),
                                       metadata=b'{"$evtools": "not ours"}'))
    assert from_recorded_event(rec).metadata == b'{"$evtools": "not ours"}'
    assert from_recorded_event(rec).id == _CANONICAL


@given(new_events(binary_content_types=False))
def test_any_id_round_trips(event: NewEvent) -> None:
    raw = RawEvent(stream="s", version=3, type=event.type, data=event.data,
                   metadata=event.metadata, id=event.id, content_type=event.content_type,
                   schema_version=event.schema_version)
    back = from_recorded_event(recorded(to_esdb_event(raw), stream="s", position=3))
    assert (back.id, back.metadata, back.type, back.schema_version) == (
        raw.id, raw.metadata, raw.type, raw.schema_version)


# schema versions are 1 to 2**63-1 (appends refuse others: "Foo@v0" is a type name)
@given(st.text(), st.integers(min_value=1, max_value=2**63 - 1))
def test_schema_version_in_the_type_round_trips(event_type: str, version: int) -> None:
    assert split_type(esdb_type(event_type, version)) == (event_type, version)


@pytest.mark.parametrize("stored", [
    "Foo@v0", "Foo@v00", "Foo@v9223372036854775808", "Foo@v99999999999999999999",
    "Foo@v" + "9" * 5000,  # int() refuses more than 4300 digits: not a raw ValueError
])
def test_a_suffix_that_is_no_schema_version_is_part_of_the_type(stored: str) -> None:
    """"Foo@v0" had read as schema version 0 (which RawEvent.check refuses), a suffix
    beyond int64 as a schema version no store keeps."""
    assert split_type(stored) == (stored, 1)
    for version in (1, 2):  # such a type name round-trips
        assert split_type(esdb_type(stored, version)) == (stored, version)
    rec = recorded(to_esdb_event(RawEvent.new("s", 0, stored, b"{}")))
    assert from_recorded_event(rec).check().type == stored


def test_the_largest_schema_version_is_one() -> None:
    assert split_type("Foo@v9223372036854775807") == ("Foo", 2**63 - 1)
    assert split_type("Foo@v007") == ("Foo", 7)


def test_version_one_leaves_the_type_alone() -> None:
    assert esdb_type("OrderPlaced", 1) == "OrderPlaced"
    assert split_type("OrderPlaced") == ("OrderPlaced", 1)
    assert esdb_type("Legacy@v2", 1) == "Legacy@v2@v1"


@given(new_events(binary_content_types=False, uuid_ids=True))
def test_raw_to_new_to_recorded_to_raw_keeps_what_esdb_keeps(event: NewEvent) -> None:
    raw = RawEvent(stream="s", version=3, type=event.type, data=event.data,
                   metadata=event.metadata, id=event.id, content_type=event.content_type,
                   schema_version=event.schema_version)
    back = from_recorded_event(recorded(to_esdb_event(raw), stream="s", position=3))
    assert (back.stream, back.version, back.type, back.data, back.metadata, back.id,
            back.schema_version, back.content_type) == (
        raw.stream, raw.version, raw.type, raw.data, raw.metadata, raw.id,
        raw.schema_version, raw.content_type)


def test_expected_versions_map_to_stream_states() -> None:
    assert to_stream_state(NO_STREAM) is esdbclient.StreamState.NO_STREAM
    assert to_stream_state(ANY) is esdbclient.StreamState.ANY
    assert to_stream_state(STREAM_EXISTS) is esdbclient.StreamState.EXISTS
    assert to_stream_state(5) == 5


# -- errors --------------------------------------------------------------------------------


class _RpcError:
    """The gRPC error esdbclient wraps (``GrpcError(e)``): its ``str`` is a multi-line
    repr, its status is in ``code()`` and ``details()``."""

    def __init__(self, code: Any, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> Any:
        return self._code

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return (f"<_MultiThreadedRendezvous of RPC that terminated with:\n\tstatus = "
                f"{self._code}\n\tdetails = \"{self._details}\"\n>")


@pytest.mark.parametrize("error, kind, fragment", [
    (exceptions.WrongCurrentVersion("Stream position of last event is 4 not 2"),
     ConcurrencyError, "actual version 4"),
    (exceptions.WrongCurrentVersion("Stream 'order-1' does not exist"),
     ConcurrencyError, "actual no stream"),
    (exceptions.NotFound(), StreamNotFound, "does not exist"),
    (exceptions.StreamIsDeleted(), StreamNotFound, "was deleted"),
    (exceptions.ServiceUnavailable("failed to connect to all addresses\nmore detail"),
     StoreUnavailable, "server unavailable"),
    (exceptions.GrpcDeadlineExceeded("deadline"), StoreUnavailable, "unavailable"),
    (exceptions.DeadlineExceeded(), StoreUnavailable, "unavailable"),
    (exceptions.DiscoveryFailed("no node"), StoreUnavailable, "unavailable"),
    (exceptions.NodeIsNotLeader(), StoreUnavailable, "unavailable"),
    (exceptions.AccessDeniedError(), StoreError, "access denied"),
    (exceptions.InternalError("boom"), StoreError, "boom"),
    # reads that the server refuses come back as a bare GrpcError around the gRPC error
    (exceptions.GrpcError(_RpcError(grpc.StatusCode.PERMISSION_DENIED, "Access Denied")),
     StoreError, "access denied (PERMISSION_DENIED: Access Denied)"),
    (exceptions.GrpcDeadlineExceeded(_RpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                               "Deadline Exceeded")),
     StoreUnavailable, "no answer in time (GrpcDeadlineExceeded: DEADLINE_EXCEEDED: "
                       "Deadline Exceeded)"),
    (exceptions.ExceptionThrownByHandler(_RpcError(grpc.StatusCode.UNKNOWN,
                                                   "Exception was thrown by handler.")),
     StoreError, "UNKNOWN: Exception was thrown by handler."),
])
def test_client_errors_translate(error: Exception, kind: type, fragment: str) -> None:
    got = translate_error(error, "esdb://db:2113", "append", stream="order-1", expected=2)
    assert type(got) is kind
    text = str(got)
    assert fragment in text and "\n" not in text and "esdb://db:2113" in text
    assert "<_MultiThreadedRendezvous" not in text
    assert got.context.stream == "order-1"
    if isinstance(got, ConcurrencyError):
        assert got.expected == 2


class _FailingClient:
    """Stands in for the client's network calls; raises the client's own exceptions."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error
        return fail


@pytest.mark.parametrize("error, kind", [
    (exceptions.ServiceUnavailable("down"), StoreUnavailable),
    (exceptions.AccessDeniedError(), StoreError),
])
def test_the_store_translates_at_its_boundary(error: Exception, kind: type) -> None:
    store = EsdbStore("esdb://127.0.0.1:1?tls=false")
    store._client = _FailingClient(error)  # no server needed: the client raises
    for call in (lambda: store.append("s", [NewEvent("T", b"{}")]),
                 lambda: store.stream_version("s"),
                 lambda: list(store.read_all()),
                 lambda: list(store.list_streams())):
        with pytest.raises(kind) as info:
            call()
        assert info.value.__cause__ is error
    store._client = None


def test_not_found_means_no_stream() -> None:
    store = EsdbStore("esdb://127.0.0.1:1?tls=false")
    store._client = _FailingClient(exceptions.NotFound())
    assert store.stream_version("s") is None
    with pytest.raises(StreamNotFound):
        store.read_stream("s")
    store._client = None


def test_the_password_in_the_url_stays_out_of_messages() -> None:
    store = EsdbStore("esdb://admin:changeit@127.0.0.1:1?tls=false")
    assert store.url == "esdb://admin:***@127.0.0.1:1?tls=false"
    assert "changeit" not in repr(store)
    store._client = _FailingClient(exceptions.ServiceUnavailable("down"))
    with pytest.raises(StoreUnavailable) as info:
        store.stream_version("s")
    assert "changeit" not in str(info.value) and "esdb://admin:***@127.0.0.1:1" in str(info.value)
    store._client = None
    for bad in ("esdb://admin:changeit@127.0.0.1:1?tls=maybe",
                "esdb://admin:changeit@127.0.0.1:1?TlsCaFile=/no/such/ca.pem"):
        with pytest.raises(UsageError) as refused:
            EsdbStore(bad)
        assert "changeit" not in str(refused.value) and "admin:***@" in str(refused.value)
    assert "/no/such/ca.pem" in str(refused.value)  # a file the URI names: a usage error


def test_a_closed_store_says_so() -> None:
    store = EsdbStore("esdb://127.0.0.1:1?tls=false")
    store.close()
    store.close()
    for call in (lambda: store.append("s", [NewEvent("T", b"{}")]),
                 lambda: store.stream_version("s"),
                 lambda: list(store.read_stream("s")),
                 lambda: list(store.read_all()),
                 lambda: list(store.list_streams())):
        with pytest.raises(UsageError, match="closed"):
            call()


@pytest.mark.parametrize("call, refused", [
    (lambda s: s.append("order-\ud800", [NewEvent("T", b"{}")]), "lone surrogate"),
    (lambda s: s.append("order-1", [NewEvent("T", b"{}"), NewEvent("T\ud800", b"{}")]),
     "lone surrogate"),
    (lambda s: s.append("order-1", [NewEvent("T", b"{}", id="id-\udc00")]), "lone surrogate"),
    (lambda s: s.stream_version("order-\ud800"), "lone surrogate"),
    (lambda s: s.read_stream("order-\ud800"), "lone surrogate"),
    # names the reads would leave out
    (lambda s: s.append("$projections-x", [NewEvent("T", b"{}")]), "starting with '\\$'"),
    (lambda s: s.append("order-1", [NewEvent("T", b"{}"), NewEvent("$metadata", b"{}")]),
     "starting with '\\$'"),
])
def test_text_no_read_would_give_back_is_a_usage_error_before_the_server_is_asked(
        call: Any, refused: str) -> None:
    store = EsdbStore("esdb://127.0.0.1:1?tls=false")
    store._client = _FailingClient(AssertionError("the server must not be asked"))
    with pytest.raises(UsageError, match=refused) as info:
        call(store)
    assert info.value.context.stream is not None
    store._client = None


class _Response:
    """A read response: an iterator and context manager, like esdbclient's. Once stopped
    (by its ``with`` or by the client's ``close``) it ends, as esdbclient's does: its
    cancelled call raises ``CancelledByClient``, which it turns into ``StopIteration``."""

    def __init__(self, events: Iterator[Any]) -> None:
        self._events = events
        self.stopped = False

    def __iter__(self) -> _Response:
        return self

    def __next__(self) -> Any:
        if self.stopped:
            raise StopIteration
        return next(self._events)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True


class _FakeServer:
    """Stands in for the client's network calls and answers as EventStoreDB does, with
    esdbclient's own types and messages: expected versions (``WrongCurrentVersion``),
    server-side read filters (the regex esdbclient builds, on the type or the stream
    name), ``NotFound`` raised on iteration, ``StreamState.NO_STREAM`` for a missing or
    deleted stream, positions that continue after a (soft) delete, and reads that page
    through the log as it grows (what is appended during a read can be read)."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.deleted_before: dict[str, int] = {}  # stream -> first version still visible
        self.lock = threading.RLock()
        self.responses: list[_Response] = []  # what close() stops, as the client does

    def _respond(self, events: Iterator[Any]) -> _Response:
        response = _Response(events)
        self.responses.append(response)
        return response

    def add(self, stream: str, version: int, type_: str, data: bytes = b"{}", *,
            metadata: bytes = b"", content_type: str = "application/json",
            event_id: uuid.UUID | None = None) -> Any:
        with self.lock:
            position = 1000 + 100 * len(self.log)
            event = esdbclient.RecordedEvent(
                type=type_, data=data, metadata=metadata, content_type=content_type,
                id=event_id or uuid.uuid4(), stream_name=stream, stream_position=version,
                commit_position=position, prepare_position=position,
                recorded_at=datetime.now(UTC))
            self.log.append(event)
            return event

    def _visible(self, stream: str) -> list[Any]:
        first = self.deleted_before.get(stream, 0)
        with self.lock:
            return [e for e in self.log
                    if e.stream_name == stream and e.stream_position >= first]

    def _page(self, keep: Any, limit: int) -> Iterator[Any]:
        """The events ``keep`` accepts, in log order, read as the log grows."""
        i = found = 0
        while found < limit:
            with self.lock:
                if i >= len(self.log):
                    return
                event = self.log[i]
            i += 1
            if keep(event):
                found += 1
                yield event

    def get_current_version(self, stream_name: str, *, timeout: float | None = None) -> Any:
        events = self._visible(stream_name)
        return events[-1].stream_position if events else esdbclient.StreamState.NO_STREAM

    def append_to_stream(self, stream_name: str, *, current_version: Any, events: Any,
                         timeout: float | None = None) -> int:
        state = esdbclient.StreamState
        events = list(events)
        # the request esdbclient would send (it refuses what protobuf cannot carry)
        esdb_streams.BaseStreamsService._construct_batch_append_req(
            stream_name, current_version, events, uuid.uuid4(), timeout)
        with self.lock:
            stored = [e for e in self.log if e.stream_name == stream_name]
            visible = self._visible(stream_name)
            last = visible[-1].stream_position if visible else None
            if current_version is not state.ANY and (
                    (current_version is state.NO_STREAM and last is not None)
                    or (current_version is not state.NO_STREAM and last != current_version
                        and (current_version is not state.EXISTS or last is None))):
                raise exceptions.WrongCurrentVersion(
                    f"Stream {stream_name!r} does not exist" if last is None else
                    f"Stream position of last event is {last} not {current_version}")
            next_version = stored[-1].stream_position + 1 if stored else 0
            for i, new in enumerate(events):
                self.add(stream_name, next_version + i, new.type, new.data,
                         metadata=new.metadata, content_type=new.content_type,
                         event_id=new.id)
            return int(self.log[-1].commit_position)

    def read_stream(self, stream_name: str, *, stream_position: int | None = None,
                    backwards: bool = False, limit: int = sys.maxsize,
                    timeout: float | None = None) -> _Response:
        esdb_streams.BaseStreamsService._construct_read_request(
            stream_name=stream_name, stream_position=stream_position, backwards=backwards,
            limit=limit)

        def events() -> Iterator[Any]:
            visible = self._visible(stream_name)
            if not visible:
                raise exceptions.NotFound(f"Stream {stream_name!r} not found")
            if backwards:
                yield from reversed(visible[-limit:])
                return
            first = max(self.deleted_before.get(stream_name, 0), stream_position or 0)
            yield from self._page(lambda e: e.stream_name == stream_name
                                  and e.stream_position >= first, limit)
        return self._respond(events())

    def read_all(self, *, commit_position: int | None = None, backwards: bool = False,
                 filter_exclude: Any = esdb_client.DEFAULT_EXCLUDE_FILTER,
                 filter_by_stream_name: bool = False, limit: int = sys.maxsize,
                 timeout: float | None = None) -> _Response:
        esdb_streams.BaseStreamsService._construct_read_request(
            commit_position=commit_position, backwards=backwards, filter_exclude=filter_exclude,
            filter_by_stream_name=filter_by_stream_name, limit=limit)
        regex = re.compile(esdb_common.construct_filter_exclude_regex(filter_exclude))

        def keep(e: Any) -> bool:
            return regex.match(e.stream_name if filter_by_stream_name else e.type) is not None

        if backwards:  # from the head (or commit_position) down
            with self.lock:
                kept = [e for e in reversed(self.log) if keep(e) and (
                    commit_position is None or e.commit_position <= commit_position)]
            return self._respond(iter(kept[:limit]))
        return self._respond(self._page(
            lambda e: (commit_position is None or e.commit_position >= commit_position)
            and keep(e), limit))

    def get_commit_position(self, *, filter_exclude: Any = esdb_client.DEFAULT_EXCLUDE_FILTER,
                            filter_by_stream_name: bool = False,
                            timeout: float | None = None) -> int:
        """As esdbclient's: the position of the last event the filter keeps, else 0."""
        with self.read_all(backwards=True, limit=1, filter_exclude=filter_exclude,
                           filter_by_stream_name=filter_by_stream_name) as last:
            return next((int(e.commit_position) for e in last), 0)

    def close(self) -> None:
        for response in self.responses:  # the connection stops its open reads
            response.__exit__()


def _stored_content_type(content_type: str) -> str:
    """What EventStoreDB hands back: it keeps only whether the content is JSON."""
    ct = content_type.split(";", 1)[0].strip().lower()
    json = ct == "application/json" or ct.endswith("+json")
    return "application/json" if json else "application/octet-stream"


def _store_on_a_fake_server(server: _FakeServer) -> EsdbStore:
    store = EsdbStore("esdb://127.0.0.1:1?tls=false")
    store._client.close()  # the real client never connected: it is not needed
    store._client = server
    return store


class TestEsdbOnAFakeServer(StoreContract):
    """The store contract against :class:`_FakeServer`: what the adapter does with what
    esdbclient hands it, where no EventStoreDB can run."""

    keeps_recorded_at = False
    keeps_any_id = False
    position_arithmetic = False
    reserved_type_prefix = "$"
    LARGE = 10_000

    def content_type(self, content_type: str) -> str:
        return _stored_content_type(content_type)

    def make_store(self, tmp_path: Path) -> EventStore:
        return _store_on_a_fake_server(_FakeServer())


@pytest.fixture
def fake() -> Iterator[tuple[EsdbStore, _FakeServer]]:
    server = _FakeServer()
    with _store_on_a_fake_server(server) as store:
        yield store, server


def test_read_all_keeps_user_events_and_leaves_out_system_streams(
        fake: tuple[EsdbStore, _FakeServer]) -> None:
    store, server = fake
    server.add("order-1", 0, "OrderPlaced")
    server.add("$projections-totals-result", 0, "Result")  # a system stream, plain type
    server.add("order-1", 1, "PersistentConfig1")  # a user type esdbclient's filter drops
    server.add("$ce-order", 0, "$>")
    server.add("$$order-1", 0, "$metadata")
    server.add("order-2", 0, "Noted")
    server.add("order-2", 2**63 - 1, "$streamDeleted")  # a tombstone's marker
    assert [(e.stream, e.version, e.type) for e in store.read_all()] == [
        ("order-1", 0, "OrderPlaced"), ("order-1", 1, "PersistentConfig1"),
        ("order-2", 0, "Noted")]
    assert [e.type for e in store.read_all(limit=2)] == ["OrderPlaced", "PersistentConfig1"]
    assert list(store.list_streams()) == ["order-1", "order-2"]


def test_appending_to_a_deleted_stream_returns_the_version_it_got(
        fake: tuple[EsdbStore, _FakeServer]) -> None:
    store, server = fake
    for version in range(5):
        server.add("order-1", version, "ItemAdded")
    server.deleted_before["order-1"] = 5  # deleted: reads and versions say "no stream"
    assert store.stream_version("order-1") is None
    # EventStoreDB numbers the next event after the deleted ones
    assert store.append("order-1", [NewEvent("Reopened", b"{}")], NO_STREAM) == 5
    assert store.stream_version("order-1") == 5
    assert [e.version for e in store.read_stream("order-1")] == [5]
    assert store.append("order-2", [NewEvent("T", b"{}")] * 3, NO_STREAM) == 2


def test_a_stream_whose_events_all_expired_is_a_store_error_not_an_index_error(
        fake: tuple[EsdbStore, _FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """esdbclient's get_current_version is ``list(read(backwards, limit=1))[0]``: a stream
    whose events have all expired ($maxAge, $maxCount) or been truncated ($tb) is found
    but reads nothing, and it raised a bare IndexError."""
    store, server = fake
    server.add("order-1", 0, "OrderPlaced")

    def reads_nothing(stream_name: str, **kw: Any) -> Any:
        raise IndexError("list index out of range")  # list(<empty read>)[0]

    monkeypatch.setattr(store._open(), "get_current_version", reads_nothing)
    with pytest.raises(StoreError, match=r"stream 'order-1' exists but holds no event left "
                                         r"to read \(all expired or truncated") as info:
        store.stream_version("order-1")
    assert info.value.context.stream == "order-1"


@pytest.mark.parametrize("expected", [2**63 - 1, 2**64 - 1, 2**64, 2**70])
def test_an_expected_version_no_stream_can_have_is_a_concurrency_error(
        fake: tuple[EsdbStore, _FakeServer], expected: int) -> None:
    # esdbclient's request has an unsigned 64-bit field: 2**64 was a raw ValueError
    store, server = fake
    server.add("order-1", 0, "OrderPlaced")
    with pytest.raises(ConcurrencyError) as info:
        store.append("order-1", [NewEvent("T", b"{}")], expected)
    assert (info.value.expected, info.value.actual) == (expected, 0)
    assert store.stream_version("order-1") == 0


def test_ids_through_the_store_come_back_and_an_empty_one_is_not_invented(
        fake: tuple[EsdbStore, _FakeServer]) -> None:
    store, server = fake
    ids = ["order-1-created", _CANONICAL.upper(), _CANONICAL]
    store.append("order-1", [NewEvent("T", b"{}", b"m", id=i) for i in ids], NO_STREAM)
    assert [(e.id, e.metadata) for e in store.read_stream("order-1")] == [
        (i, b"m") for i in ids]
    assert [e.id for e in server.log] == [esdb_id(i) for i in ids]  # what the server keeps
    assert [e.id for e in store.read_all()] == ids
    last = store.last_event("order-1")
    assert last is not None and last.id == _CANONICAL
    # a stored event (RawEvent, as copy hands it over) without an id: not invented
    with pytest.raises(UsageError, match="empty id") as info:
        store.append("order-2", [RawEvent("x", 0, "T", b"{}")], NO_STREAM)
    assert (info.value.context.stream, info.value.context.version) == ("order-2", 0)
    with pytest.raises(UsageError, match="empty id"):
        store.check_appendable("order-2", RawEvent("x", 0, "T", b"{}"), 0)
    assert store.stream_version("order-2") is None
    assert store.append("order-2", [NewEvent("T", b"{}")], NO_STREAM) == 0  # a new one: id
    assert _canonical(next(store.read_stream("order-2")).id)


def _canonical(text: str) -> bool:
    return str(uuid.UUID(text)) == text


@pytest.mark.parametrize("position", [2**63, 2**64, 2**70])
def test_read_all_past_every_position_reads_nothing(
        fake: tuple[EsdbStore, _FakeServer], position: int) -> None:
    store, server = fake  # as the memory store: 2**64 was a raw ValueError from esdbclient
    server.add("order-1", 0, "OrderPlaced")
    assert list(store.read_all(position)) == []
    assert list(store.read_all(position, limit=1)) == []


@pytest.mark.parametrize("read", [
    lambda s: s.read_all(),
    lambda s: s.read_stream("order-1"),
    lambda s: s.list_streams(),
])
def test_closing_the_store_during_a_read_is_not_the_end_of_the_data(
        fake: tuple[EsdbStore, _FakeServer], read: Any) -> None:
    store, server = fake
    for version in range(3):
        server.add("order-1", version, "ItemAdded")
    server.add("order-2", 0, "ItemAdded")
    events = read(store)
    next(events)
    store.close()  # the client stops its open reads: they would just end
    with pytest.raises(UsageError, match="closed"):
        list(events)


def test_a_password_holding_an_at_sign_is_refused_without_showing_it() -> None:
    # esdbclient takes the host from after the first "@": it would connect to the
    # password's tail and name it in every error
    with pytest.raises(UsageError) as info:
        EsdbStore("esdb://admin:se@cret@127.0.0.1:1?tls=false")
    text = str(info.value)
    assert "cret" not in text and "esdb://admin:***@127.0.0.1:1" in text and "'@'" in text


def test_an_option_the_client_does_not_take_is_a_usage_error() -> None:
    for make in (lambda: EsdbStore("esdb://127.0.0.1:1?tls=false", no_such_option=1),
                 lambda: open_store("esdb://127.0.0.1:1?tls=false", no_such_option=1)):
        with pytest.raises(UsageError, match="no_such_option"):
            make()


@contextlib.contextmanager
def _listener(answer: bytes | None) -> Iterator[int]:
    """A TCP port on 127.0.0.1 that answers every connection with ``answer`` and hangs up,
    or (``None``) accepts and says nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            accepted.append(conn)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        for conn in accepted:
            conn.close()
        thread.join(timeout=5)


@pytest.mark.network
def test_tls_against_a_plain_server_is_one_clear_line() -> None:
    with _listener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port, \
            EsdbStore(f"esdb://admin:changeit@127.0.0.1:{port}", timeout=2) as store, \
            pytest.raises(StoreUnavailable) as info:
        store.stream_version("s")
    text = str(info.value)
    assert "\n" not in text and "<_" not in text and "changeit" not in text
    assert "SSL" in text and "tls=false" in text
    assert isinstance(info.value.__cause__, exceptions.SSLError)


@pytest.mark.network
def test_a_server_that_does_not_answer_is_a_timeout() -> None:
    with _listener(None) as port, \
            EsdbStore(f"esdb://127.0.0.1:{port}?tls=false", timeout=0.5) as store, \
            pytest.raises(StoreUnavailable) as info:
        store.append("s", [NewEvent("T", b"{}")], NO_STREAM)
    text = str(info.value)
    assert "no answer in time" in text and "DEADLINE_EXCEEDED" in text and "<_" not in text
    assert info.value.context.stream == "s"


@pytest.mark.network
def test_an_unreachable_server_is_one_clear_line() -> None:
    with (open_store(f"esdb://127.0.0.1:{free_port()}?tls=false", timeout=2) as store,
          pytest.raises(StoreUnavailable) as info):
        store.stream_version("s")
    assert "server unavailable" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, exceptions.ServiceUnavailable)


def test_urls() -> None:
    for url in ("esdb://localhost:2113?tls=false", "kurrentdb://localhost:2113?tls=false",
                "KurrentDB://localhost:2113?tls=false", "ESDB://localhost:2113?tls=false"):
        store = open_store(url)  # single-node URLs connect on first use
        assert isinstance(store, EsdbStore) and store.url == url
        store.close()
    with pytest.raises(UsageError):
        EsdbStore("esdb://localhost:2113", mode="w")  # type: ignore[arg-type]


@pytest.mark.network
def test_discovery_failure_is_one_clear_line() -> None:
    url = f"esdb+discover://127.0.0.1:{free_port()}?tls=false&MaxDiscoverAttempts=1"
    with pytest.raises(StoreUnavailable) as info:
        open_store(url)  # cluster discovery happens when the client is made
    assert "server unavailable" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, exceptions.DiscoveryFailed)


# -- live contract -------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.skipif(LIVE_URI is None, reason="set EVTOOLS_ESDB_URI (e.g. "
                    "esdb://localhost:2113?tls=false) to run against a live EventStoreDB")
class TestEsdbLive(StoreContract):
    keeps_recorded_at = False
    keeps_any_id = False
    position_arithmetic = False
    reserved_type_prefix = "$"

    def content_type(self, content_type: str) -> str:
        return _stored_content_type(content_type)

    def make_store(self, tmp_path: Path) -> EventStore:
        assert LIVE_URI is not None
        return EsdbStore(LIVE_URI)
