"""EsdbStore: mapping and error translation with esdbclient's own classes; the contract
against a live server when ``EVTOOLS_ESDB_URI`` is set (see README: docker run ...)."""

from __future__ import annotations

import os
import uuid
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


@given(st.text(), st.integers(min_value=0, max_value=10**9))
def test_schema_version_in_the_type_round_trips(event_type: str, version: int) -> None:
    assert split_type(esdb_type(event_type, version)) == (event_type, version)


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
])
def test_client_errors_translate(error: Exception, kind: type, fragment: str) -> None:
    got = translate_error(error, "esdb://db:2113", "append", stream="order-1", expected=2)
    assert type(got) is kind
    text = str(got)
    assert fragment in text and "\n" not in text and "esdb://db:2113" in text
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


@pytest.mark.network
def test_an_unreachable_server_is_one_clear_line() -> None:
    with (open_store(f"esdb://127.0.0.1:{free_port()}?tls=false", timeout=2) as store,
          pytest.raises(StoreUnavailable) as info):
        store.stream_version("s")
    assert "server unavailable" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, exceptions.ServiceUnavailable)


def test_urls() -> None:
    for url in ("esdb://localhost:2113?tls=false", "kurrentdb://localhost:2113?tls=false"):
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

    def content_type(self, content_type: str) -> str:
        ct = content_type.split(";", 1)[0].strip().lower()
        json = ct == "application/json" or ct.endswith("+json")
        return "application/json" if json else "application/octet-stream"

    def make_store(self, tmp_path: Path) -> EventStore:
        assert LIVE_URI is not None
        return EsdbStore(LIVE_URI)
