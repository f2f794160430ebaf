"""NatsStore against real nats-server processes (JetStream) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
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
    EnvelopeError,
    StoreError,
    StoreUnavailable,
    UsageError,
)
from evtools.events import RawEvent
from evtools.stores import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    EventStore,
    NatsStore,
    NewEvent,
    SqliteStore,
    copy,
    open_store,
)
from evtools.stores.nats import parse_nats_url, stream_from_token, subject_token

from .conftest import NatsServer, free_port, nats_cluster
from .contract import StoreContract

pytestmark = pytest.mark.timeout(120)
network = pytest.mark.network


def _tag() -> str:
    return uuid.uuid4().hex[:10]


@network
class TestNatsStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_server: NatsServer) -> None:
        self.server = nats_server

    def make_store(self, tmp_path: Path) -> EventStore:
        tag = _tag()
        return NatsStore(self.server.url, f"T{tag}", prefix=f"ev{tag}", timeout=5,
                         retry_for=5)


@pytest.fixture
def store(nats_server: NatsServer) -> Iterator[NatsStore]:
    tag = _tag()
    with NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}", timeout=5,
                   retry_for=5) as s:
        yield s


def _raw(url: str, coro: Any) -> Any:
    """Run ``coro(js, nc)`` with a plain nats-py connection (to look under the store)."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await coro(nc.jetstream(), nc)
        finally:
            await nc.close()

    return asyncio.run(main())


# -- subject layout (no server) ------------------------------------------------------------


@pytest.mark.parametrize("name, token", [
    ("order-1", "order-1"),
    ("order.1/a b", "order%2E1%2Fa%20b"),
    ("é", "%C3%A9"),
    ("a*>", "a%2A%3E"),
    ("50%", "50%25"),
])
def test_subject_tokens(name: str, token: str) -> None:
    assert subject_token(name) == token
    assert stream_from_token(token) == name


@given(st.text(min_size=1))
def test_subject_tokens_round_trip_and_are_single_tokens(name: str) -> None:
    token = subject_token(name)
    assert token and all(c.isascii() and c.isprintable() and c not in " .*>" for c in token)
    assert stream_from_token(token) == name


def test_nats_urls() -> None:
    assert parse_nats_url("nats://127.0.0.1:4222/ORDERS?prefix=ev&replicas=3") == (
        ["nats://127.0.0.1:4222"], "ORDERS", {"prefix": "ev", "replicas": "3"})
    assert parse_nats_url("nats://a:1,b:2") == (["nats://a:1", "nats://b:2"], "EVENTS", {})
    with pytest.raises(UsageError):
        open_store("nats://127.0.0.1:1/X?colour=blue")


@network
@pytest.mark.timeout(30)  # nats-py would retry a first connection forever: it must not
def test_connection_refused_is_one_clear_line() -> None:
    with pytest.raises(StoreUnavailable) as info:
        NatsStore(f"nats://127.0.0.1:{free_port()}", timeout=1)
    text = str(info.value)
    assert "\n" not in text and "cannot connect to NATS at nats://127.0.0.1:" in text
    assert info.value.__cause__ is not None


@network
@pytest.mark.timeout(30)
def test_credentials_in_the_url_stay_out_of_messages(nats_server: NatsServer) -> None:
    with pytest.raises(StoreUnavailable) as info:
        NatsStore(f"nats://bob:secret@127.0.0.1:{free_port()}", timeout=1)
    assert "secret" not in str(info.value) and "nats://bob:***@127.0.0.1:" in str(info.value)
    tag = _tag()  # a server without authentication lets any user in
    with NatsStore(nats_server.url.replace("://", "://tok3n@"), f"T{tag}",
                   prefix=f"ev{tag}") as store:
        assert "tok3n" not in store.url and "tok3n" not in repr(store)
        assert store.url.startswith("nats://***@127.0.0.1:")


# -- what is on the wire -------------------------------------------------------------------


@network
def test_messages_carry_cloudevents_headers(store: NatsStore, nats_server: NatsServer) -> None:
    event = NewEvent("Order Placed ü", b' {"a": 1} ', b'{"by": "me"}', id="id-1",
                     schema_version=4)
    store.append("order 1", [event], NO_STREAM)

    async def get(js: Any, nc: Any) -> Any:
        return await js.get_last_msg(store.stream, f"{store.prefix}.order%201")

    msg = _raw(nats_server.url, get)
    h = msg.headers
    assert msg.data == b' {"a": 1} '
    assert h["Nats-Msg-Id"] == "id-1" and h["ce-id"] == "id-1"
    assert h["ce-specversion"] == "1.0" and h["ce-type"] == "Order%20Placed%20%C3%BC"
    assert h["ce-source"] == "/streams/order%201" and h["ce-time"].endswith("Z")
    assert h["content-type"] == "application/json"
    assert (h["ce-evversion"], h["ce-evschemaversion"]) == ("0", "4")
    assert h["ce-evmetadata"] == "{%22by%22:%20%22me%22}"


@network
def test_a_resent_event_id_is_stored_once(store: NatsStore) -> None:
    first = NewEvent("A", b"{}", id=str(uuid.uuid4()))
    assert store.append("s", [first]) == 0
    assert store.append("s", [first]) == 0  # de-duplicated: the stored version comes back
    batch = [NewEvent("B", b"{}", id=str(uuid.uuid4())) for _ in range(3)]
    assert store.append("s", batch) == 3
    assert store.append("s", batch) == 3
    assert [e.type for e in store.read_stream("s")] == ["A", "B", "B", "B"]


@network
def test_batches_longer_than_one_atomic_batch(store: NatsStore) -> None:
    assert store.append("long", [NewEvent("E", b"%d" % i) for i in range(2500)]) == 2499
    assert [e.data for e in store.read_stream("long", 998, limit=4)] == [
        b"998", b"999", b"1000", b"1001"]


@network
def test_read_stream_from_a_version_among_interleaved_streams(store: NatsStore) -> None:
    for i in range(60):
        store.append(f"s{i % 3}", [NewEvent("E", b"%d" % (i * 10 + k)) for k in range(i % 4 + 1)])
    for s in ("s0", "s1", "s2"):
        everything = list(store.read_stream(s))
        assert [e.version for e in everything] == list(range(len(everything)))
        for start in (1, 2, 7, len(everything) // 2, len(everything) - 1):
            assert list(store.read_stream(s, start)) == everything[start:]


@network
def test_two_clients_at_the_same_expected_version_one_wins(nats_server: NatsServer) -> None:
    tag = _tag()
    stores = [NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}") for _ in range(4)]
    try:
        stores[0].append("acct", [NewEvent("Opened", b"{}")], NO_STREAM)
        barrier = threading.Barrier(len(stores))
        outcomes: list[Any] = [None] * len(stores)

        def race(i: int) -> None:
            barrier.wait(timeout=10)
            try:
                outcomes[i] = stores[i].append("acct", [NewEvent("Dep", b"{}")], 0)
            except ConcurrencyError as e:
                outcomes[i] = e

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(map(str, outcomes)).count("1") == 1
        losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert len(losers) == 3 and all(o.actual == 1 and o.expected == 0 for o in losers)
    finally:
        for s in stores:
            s.close()


@network
def test_opening_rules(nats_server: NatsServer) -> None:
    tag = _tag()
    with pytest.raises(StoreUnavailable, match="does not exist"):
        NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}", create=False)
    with NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}") as s:
        s.append("x", [NewEvent("A", b"{}")])
    with pytest.raises(UsageError, match="binds"):
        NatsStore(nats_server.url, f"T{tag}", prefix="elsewhere")
    url = f"{nats_server.url}/T{tag}?prefix=ev{tag}"
    with open_store(url, mode="r") as s:
        assert s.read_only and s.stream_version("x") == 0
        with pytest.raises(UsageError, match="read-only"):
            s.append("x", [NewEvent("A", b"{}")])
    with pytest.raises(UsageError):
        NatsStore(nats_server.url, "bad.name")


@network
def test_a_foreign_message_is_an_envelope_error(store: NatsStore,
                                                nats_server: NatsServer) -> None:
    async def put(js: Any, nc: Any) -> Any:
        return await js.publish(f"{store.prefix}.foreign", b"hello")

    _raw(nats_server.url, put)
    with pytest.raises(EnvelopeError, match="not an evtools event"):
        list(store.read_all())
    # the last message of the subject says no version: neither -1 nor a new version 0
    with pytest.raises(EnvelopeError, match="not an evtools event"):
        store.stream_version("foreign")
    with pytest.raises(EnvelopeError, match="not an evtools event"):
        store.append("foreign", [NewEvent("T", b"{}")])

    async def count(js: Any, nc: Any) -> Any:
        return (await js.stream_info(store.stream)).state.messages

    assert _raw(nats_server.url, count) == 1


@network
def test_a_time_without_offset_is_an_envelope_error_and_offsets_read_as_utc(
        store: NatsStore, nats_server: NatsServer) -> None:
    def headers(time: str) -> dict[str, str]:
        return {"ce-evversion": "0", "ce-type": "T", "ce-id": "x", "ce-time": time}

    async def put(js: Any, nc: Any) -> Any:
        await js.publish(f"{store.prefix}.naive", b"{}",
                         headers=headers("2024-05-01T12:00:00.5"))
        await js.publish(f"{store.prefix}.offset", b"{}",
                         headers=headers("2024-05-01T14:00:00.5+02:00"))

    async def put_v0(js: Any, nc: Any) -> Any:
        await js.publish(f"{store.prefix}.v0", b"{}", headers={
            **headers("2024-05-01T12:00:00Z"), "ce-evschemaversion": "0"})

    _raw(nats_server.url, put)
    _raw(nats_server.url, put_v0)
    with pytest.raises(EnvelopeError, match="no UTC offset") as info:
        list(store.read_stream("naive"))
    assert info.value.context.stream == "naive"  # the stream's name, not the subject
    with pytest.raises(EnvelopeError, match="ce-evschemaversion 0 is below 1"):
        store.last_event("v0")  # what appends refuse, reads do not take either
    got = next(store.read_stream("offset")).recorded_at
    assert got == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert got is not None and got.tzinfo is UTC


@network
@pytest.mark.parametrize("header, value, refused", [
    ("ce-time", "2024-05-01T12:00:00.123456789Z", "digits beyond the microsecond"),
    ("ce-time", "0001-01-01T00:00:00+01:00", "outside the years 1-9999"),
    ("ce-evschemaversion", str(2**63), "above 2\\*\\*63-1"),
])
def test_a_header_no_event_can_hold_is_an_envelope_error(
        store: NatsStore, nats_server: NatsServer, header: str, value: str,
        refused: str) -> None:
    """Another tool's message: nanoseconds had been dropped silently, year 1 in +01:00 a raw
    OverflowError, a schema version beyond int64 read as it is."""
    async def put(js: Any, nc: Any) -> Any:
        await js.publish(f"{store.prefix}.odd", b"{}", headers={
            "ce-evversion": "0", "ce-type": "T", "ce-id": "x",
            "ce-time": "2024-05-01T12:00:00Z", header: value})

    _raw(nats_server.url, put)
    with pytest.raises(EnvelopeError, match=refused) as info:
        list(store.read_stream("odd"))
    assert info.value.context.stream == "odd"


@network
def test_an_event_too_big_for_the_server_is_refused_and_the_store_lives_on(
        store: NatsStore) -> None:
    small = NewEvent("T", b"{}")
    max_payload = store._nc.max_payload
    for batch in (
            # metadata travels percent-encoded in a header: three bytes for each
            [small, NewEvent("T", b"{}", metadata=b"\x00" * (max_payload // 3 + 1))],
            [small, NewEvent("T", b"x" * (max_payload - 100))],  # data + headers too big
            [NewEvent("T", b"x" * (max_payload + 1))]):
        with pytest.raises(UsageError, match="max_payload") as info:
            store.append("s", batch)
        assert info.value.context.stream == "s"
        assert f"event {len(batch) - 1} of the batch" in str(info.value)
        assert store.stream_version("s") is None  # nothing of the batch was written
    assert store.append("s", [small]) == 0


@network
def test_a_stream_name_too_long_for_a_subject_is_refused(store: NatsStore) -> None:
    name = "é" * 1500  # 9,000 bytes escaped: more than a NATS control line holds
    with pytest.raises(UsageError, match="too long") as info:
        store.append(name, [NewEvent("T", b"{}")])
    assert len(str(info.value)) < 400
    assert store.stream_version(name) is None
    assert store.append("after", [NewEvent("T", b"{}")]) == 0


@network
def test_a_connection_the_server_closed_is_opened_again(store: NatsStore) -> None:
    store.append("s", [NewEvent("T", b"{}")])
    nc = store._nc
    # nats-py checks the payload but not the headers against max_payload; the server
    # answers -ERR and nats-py closes the connection for good
    store._run(nc.publish(f"{store.prefix}.junk", b"",
                          headers={"pad": "x" * (nc.max_payload + 1)}), "test")
    deadline = time.monotonic() + 10
    while not nc.is_closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert nc.is_closed
    assert store.append("s", [NewEvent("T", b"{}")]) == 1
    assert store.stream_version("s") == 1


@network
@pytest.mark.parametrize("call", [
    lambda s: s.append("order-\ud800", [NewEvent("T", b"{}")]),
    lambda s: s.append("order-1", [NewEvent("T", b"{}"), NewEvent("T\ud800", b"{}")]),
    lambda s: s.append("order-1", [NewEvent("T", b"{}", id="id-\udc00")]),
    lambda s: s.append("order-1", [NewEvent("T", b"{}", content_type="a/\udc00")]),
    lambda s: s.stream_version("order-\ud800"),
    lambda s: s.read_stream("order-\ud800"),
])
def test_text_that_is_not_unicode_is_a_usage_error(store: NatsStore, call: Any) -> None:
    with pytest.raises(UsageError, match="lone surrogate") as info:
        call(store)
    assert info.value.context.stream is not None
    assert store.stream_version("order-1") is None


# -- a 3-node cluster loses its leader ------------------------------------------------------


def _stream_leader(servers: list[NatsServer], name: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for server in servers:
            if server.proc.poll() is not None:
                continue
            try:
                async def info(js: Any, nc: Any) -> Any:
                    return await js.stream_info(name)

                leader = _raw(server.url, info).cluster.leader
            except Exception:  # electing a leader: ask again
                continue
            if leader:
                return str(leader)
        time.sleep(0.2)
    raise TimeoutError("no stream leader")


@network
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_killing_the_leader_loses_no_acknowledged_append_and_duplicates_none(
        tmp_path: Path) -> None:
    with nats_cluster(tmp_path) as servers:
        store = NatsStore([s.url for s in servers], "ORDERS", replicas=3, timeout=2,
                          retry_for=30)
        acked: dict[str, tuple[str, int]] = {}
        failures: list[BaseException] = []
        stop = threading.Event()

        def appender(worker: int) -> None:
            i = 0
            while not stop.is_set():
                stream = f"w{worker}-s{i % 3}"
                batch = [NewEvent("E", b'{"i": %d}' % i, id=f"{worker}-{i}-{k}")
                         for k in range(1 + i % 3)]  # single events and atomic batches
                try:
                    last = store.append(stream, batch, ANY)
                except StoreError as error:
                    failures.append(error)
                else:
                    for k, event in enumerate(batch):
                        acked[event.id] = (stream, last - len(batch) + 1 + k)
                i += 1

        def wait_for(n: int, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while len(acked) < n and time.monotonic() < deadline:
                time.sleep(0.05)

        workers = [threading.Thread(target=appender, args=(w,)) for w in range(2)]
        try:
            for t in workers:
                t.start()
            wait_for(150, 20)
            leader = _stream_leader(servers, "ORDERS")
            victim = next(s for s in servers if s.name == leader)
            victim.kill()
            at_kill = len(acked)
            wait_for(at_kill + 200, 40)
        finally:
            stop.set()
            for t in workers:
                t.join(timeout=40)
        survivors = [s for s in servers if s is not victim]
        new_leader = _stream_leader(survivors, "ORDERS")
        assert new_leader != leader
        assert len(acked) > at_kill + 50, f"appends did not resume: {failures[-3:]}"

        events = list(store.read_all())
        ids = [e.id for e in events]
        assert len(ids) == len(set(ids)), "an event was stored twice"
        stored = {e.id: (e.stream, e.version) for e in events}
        lost = set(acked) - set(stored)
        assert not lost, f"{len(lost)} acknowledged events lost"
        assert all(stored[i] == acked[i] for i in acked)
        for name in {e.stream for e in events}:
            versions = [e.version for e in events if e.stream == name]
            assert versions == list(range(len(versions)))
        store.close()


@network
def test_a_second_stream_on_the_same_subjects_names_the_prefix_option(
        store: NatsStore, nats_server: NatsServer) -> None:
    store.append("order-1", [NewEvent("T", b"{}")])  # the stream exists on the server
    hint = r"subjects overlap.*pass another subject prefix \(\?prefix=NAME in the URL\)"
    with pytest.raises(StoreUnavailable, match=hint), NatsStore(
            nats_server.url, f"{store.stream}b", prefix=store.prefix, timeout=5,
            retry_for=1) as other:
        other.append("order-2", [NewEvent("T", b"{}")])


# -- reads that fail half way, and big events -----------------------------------------------


@network
def test_a_read_request_that_fails_half_way_skips_nothing(nats_server: NatsServer) -> None:
    """A batch whose messages were lost on the way (a dropped connection, a timeout) had
    been asked again of the same ack-none consumer, which had moved past them: the read
    went on after the lost events as if they were not there."""
    tag = _tag()
    with NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}", timeout=1, retry_for=10,
                   batch_size=4) as store:
        store.append("s", [NewEvent("E", b"%d" % i) for i in range(12)])
        nc = store._nc
        subscribe = nc.subscribe
        calls = 0

        async def lossy(subject: str, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:  # the first batch: only two of its four messages arrive
                cb, seen = kw["cb"], 0

                async def drop(msg: Any) -> None:
                    nonlocal seen
                    seen += 1
                    if seen <= 2:
                        await cb(msg)

                kw["cb"] = drop
            return await subscribe(subject, **kw)

        nc.subscribe = lossy  # type: ignore[method-assign]
        assert [e.data for e in store.read_stream("s")] == [b"%d" % i for i in range(12)]
        assert calls > 3


@network
@pytest.mark.slow
def test_a_stream_of_big_events_can_be_read(store: NatsStore,
                                            nats_server: NatsServer) -> None:
    """Reads asked for batch_size messages at once: 200 events near max_payload are more
    than the server buffers for one client (max_pending, 64 MiB), so it dropped the
    connection, and every read of the stream failed after retry_for."""
    size = store._nc.max_payload - 4096
    for first in range(0, 200, 25):
        store.append("big", [NewEvent("E", b"%06d" % (first + k) + b"x" * (size - 6))
                             for k in range(25)])
    versions = []
    for event in store.read_stream("big"):
        assert len(event.data) == size
        versions.append(event.version)
    assert versions == list(range(200))

    async def delete(js: Any, nc: Any) -> Any:
        return await js.delete_stream(store.stream)

    _raw(nats_server.url, delete)  # 200 MB on the session's server


# -- appends longer than one atomic batch ---------------------------------------------------


@network
@pytest.mark.parametrize("expected", [ANY, NO_STREAM])
def test_a_writer_between_the_atomic_batches_of_a_long_append_is_reported(
        store: NatsStore, nats_server: NatsServer, expected: Any) -> None:
    """Another writer between the 1,000-event batches of one append had made the store
    send the whole append again: ANY got "event ids of this batch are already stored",
    NO_STREAM a ConcurrencyError (which says nothing was written), with 1,000 stored."""
    publish_batch = store._publish_batch
    calls = 0

    async def then_another_writer(*args: Any) -> int:
        nonlocal calls
        seq = await publish_batch(*args)
        calls += 1
        if calls == 1:
            with NatsStore(nats_server.url, store.stream, prefix=store.prefix) as other:
                other.append("long", [NewEvent("Other", b"{}")])
        return seq

    store._publish_batch = then_another_writer  # type: ignore[method-assign]
    with pytest.raises(StoreError, match=r"first 1,000 events are stored \(versions "
                                         r"0\.\.999\), the other 500 are not") as info:
        store.append("long", [NewEvent("E", b"%d" % i) for i in range(1500)], expected)
    assert not isinstance(info.value, ConcurrencyError)
    assert (info.value.context.stream, info.value.context.version) == ("long", 999)
    assert [e.type for e in store.read_stream("long")] == ["E"] * 1000 + ["Other"]


@network
def test_a_lost_acknowledgement_inside_a_long_append_is_recognised(store: NatsStore) -> None:
    """The second of three atomic batches is stored but its acknowledgement is lost: the
    retry had started again from the first event (refused as duplicates: a StoreError)."""
    publish_batch = store._publish_batch
    calls = 0

    async def lose_the_second_ack(*args: Any) -> int:
        nonlocal calls
        seq = await publish_batch(*args)
        calls += 1
        if calls == 2:
            raise TimeoutError  # the acknowledgement did not come
        return seq

    store._publish_batch = lose_the_second_ack  # type: ignore[method-assign]
    events = [NewEvent("E", b"%d" % i) for i in range(2500)]
    assert store.append("long", events, NO_STREAM) == 2499
    assert [e.data for e in store.read_stream("long")] == [e.data for e in events]
    assert calls == 3


# -- streams configured by other tools, and options ------------------------------------------


@network
def test_a_full_stream_is_a_store_error_at_once(store: NatsStore,
                                                 nats_server: NatsServer) -> None:
    """A stream at its limits with discard new answers 503 "maximum messages exceeded":
    that had been retried for retry_for as if the server were away, then reported as
    StoreUnavailable (and a batch on a stream without allow_atomic as "already stored")."""
    store.append("s", [NewEvent("T", b"{}")])

    async def limit(js: Any, nc: Any) -> Any:
        config = (await js.stream_info(store.stream)).config
        config.max_msgs, config.discard = 1, "new"
        await js.update_stream(config)

    _raw(nats_server.url, limit)
    for batch in ([NewEvent("T", b"{}")], [NewEvent("T", b"{}") for _ in range(3)]):
        with pytest.raises(StoreError, match="maximum messages exceeded") as info:
            store.append("s", batch)
        assert not isinstance(info.value, StoreUnavailable)
        assert info.value.context.stream == "s" and "\n" not in str(info.value)
    assert store.stream_version("s") == 0


@network
def test_a_stream_without_acknowledgements_is_refused_for_appends(
        nats_server: NatsServer) -> None:
    """A stream made by another tool with no_ack: each append had waited for an answer
    that never comes, then failed with a timeout."""
    tag = _tag()

    async def make(js: Any, nc: Any) -> Any:
        await js.add_stream(name=f"T{tag}", subjects=[f"ev{tag}.>"], no_ack=True)

    _raw(nats_server.url, make)
    with pytest.raises(UsageError, match="no_ack"):
        NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}", timeout=1, retry_for=1)
    with NatsStore(nats_server.url, f"T{tag}", prefix=f"ev{tag}", mode="r") as reader:
        assert reader.stream_version("s") is None


@pytest.mark.parametrize("option", [
    {"timeout": float("inf")}, {"timeout": float("nan")}, {"timeout": 0}, {"timeout": -1},
    {"retry_for": float("nan")}, {"retry_for": -1}, {"duplicate_window": float("nan")},
    {"duplicate_window": -5}, {"replicas": 0}, {"batch_size": 0}, {"timeout": "5"},
    {"prefix": "a..b"}, {"prefix": ".a"},
])
def test_bad_options_are_usage_errors(option: dict[str, Any]) -> None:
    """timeout=inf had raised OverflowError; nan, 0 and negative timeouts had reported
    "connection refused" of a running server; a prefix with an empty token StoreUnavailable."""
    with pytest.raises(UsageError, match=next(iter(option))):
        NatsStore(f"nats://127.0.0.1:{free_port()}", **option)
    (name, value), = option.items()
    if not isinstance(value, str) or name == "prefix":  # a URL's "5" is a number
        with pytest.raises(UsageError):
            open_store(f"nats://127.0.0.1:{free_port()}/S?{name}={value}")


# -- event ids: JetStream keeps one message per id ------------------------------------------


@network
def test_another_event_reusing_an_id_is_refused_not_reported_as_stored(
        store: NatsStore) -> None:
    """JetStream drops a message whose id it has: the Withdrawn event had been dropped and
    append had returned 0, the version of the Deposited event that holds the id."""
    assert store.append("acct-1", [NewEvent("Deposited", b'{"amount":100}', id="evt-42")],
                        NO_STREAM) == 0
    with pytest.raises(StoreError, match=r"event id 'evt-42' \(event 0 of the batch\) is "
                                         r"already used by another event \(type 'Deposited'\) "
                                         r"at version 0 of this stream.*nothing of this "
                                         r"append was stored") as info:
        store.append("acct-1", [NewEvent("Withdrawn", b'{"amount":70}', id="evt-42")], 0)
    assert not isinstance(info.value, ConcurrencyError)  # asking again would fail again
    assert (info.value.context.stream, info.value.context.version) == ("acct-1", 1)
    assert "\n" not in str(info.value)
    assert [(e.type, e.id) for e in store.read_stream("acct-1")] == [("Deposited", "evt-42")]


@network
def test_a_retry_is_a_success_only_where_the_append_is_stored(store: NatsStore) -> None:
    a = NewEvent("A", b"{}", id="a-1")
    assert store.append("s", [a], NO_STREAM) == 0
    assert store.append("s", [a]) == 0  # a retry with ANY: the stored version
    # the same event, where the expected version asks for a new one
    for expected in (0, STREAM_EXISTS):
        with pytest.raises(StoreError, match=r"'a-1' .* already used by the same event "
                                             r"\(type 'A'\) at version 0 .* asks for a new "
                                             r"event"):
            store.append("s", [a], expected)
    # the time the producer gave is part of the event
    later = NewEvent("A", b"{}", id="a-1", recorded_at=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(StoreError, match="already used by another event"):
        store.append("s", [later])
    batch = [NewEvent("B", b"%d" % i, id=f"b-{i}") for i in range(3)]
    assert store.append("s", batch, 0) == 3
    assert store.append("s", batch) == 3
    # one event of a batch reusing an id: the whole batch is refused, naming it
    with pytest.raises(StoreError, match=r"'b-1' \(event 1 of the batch\) is already used "
                                         r"by another event \(type 'B'\) at version 2") as info:
        store.append("s", [NewEvent("C", b"{}", id="c-1"), NewEvent("C", b"{}", id="b-1")], 3)
    assert info.value.context.version == 5
    # an id another event stream holds
    with pytest.raises(StoreError, match=r"'a-1'\) is already used by another message of "
                                         r"JetStream stream"):
        store.append("t", [NewEvent("A", b"{}", id="a-1")])
    assert store.stream_version("t") is None
    assert [e.id for e in store.read_stream("s")] == ["a-1", "b-0", "b-1", "b-2"]


@network
def test_a_batch_repeating_an_id_is_refused_before_anything_is_sent(store: NatsStore) -> None:
    """The duplicate fault of generated data stores one event twice: copying it had said
    "event ids of this batch are already stored", which they were not."""
    batch = [NewEvent("A", b"{}", id="d-1"), NewEvent("B", b"{}", id="d-2"),
             NewEvent("A", b"{}", id="d-1")]
    with pytest.raises(UsageError, match=r"event id 'd-1' is repeated within the batch "
                                         r"\(events 0 and 2\)") as info:
        store.append("s", batch, NO_STREAM)
    assert (info.value.context.stream, info.value.context.version) == ("s", 2)
    assert store.stream_version("s") is None


@network
def test_a_copied_event_keeps_a_missing_time_and_needs_an_id(store: NatsStore,
                                                             nats_server: NatsServer) -> None:
    store.append("s", [RawEvent("elsewhere", 3, "T", b"{}", id="r-1")], NO_STREAM)
    got = next(store.read_stream("s"))
    assert (got.id, got.recorded_at) == ("r-1", None)

    async def headers(js: Any, nc: Any) -> Any:
        return (await js.get_last_msg(store.stream, f"{store.prefix}.s")).headers

    assert "ce-time" not in _raw(nats_server.url, headers)
    for call in (lambda: store.append("s", [RawEvent("x", 0, "T", b"{}")], 0),
                 lambda: store.check_appendable("s", RawEvent("x", 0, "T", b"{}"), 1)):
        with pytest.raises(UsageError, match="empty id") as info:
            call()
        assert (info.value.context.stream, info.value.context.version) == ("s", 1)
    assert store.stream_version("s") == 0
    assert store.append("s", [NewEvent("T", b"{}")]) == 1  # a new event gets an id
    last = store.last_event("s")
    assert last is not None and last.id and last.recorded_at is not None


# -- copy into NATS is checked before anything is written -----------------------------------


def _source(tmp_path: Path, *later: tuple[str, list[Any]]) -> SqliteStore:
    source = SqliteStore(tmp_path / f"src-{_tag()}.db")
    for i in range(3):
        source.append(f"good-{i}", [NewEvent("T", b"{}") for _ in range(4)])
    for stream, events in later:
        source.append(stream, events)
    return source


@network
def test_copy_into_nats_writes_nothing_when_an_event_does_not_fit(
        store: NatsStore, tmp_path: Path) -> None:
    """A 5,000-character stream name had stopped the copy after 12 of its events."""
    too_big = b"x" * (store._nc.max_payload + 1)
    for later, refused in [
            (("x" * 5000, [NewEvent("T", b"{}")]), "is too long: its subject is 5,0"),
            (("big", [NewEvent("T", b"{}"), NewEvent("T", too_big)]), "max_payload"),
            (("no-id", [RawEvent("x", 0, "T", b"{}")]), "empty id")]:
        with _source(tmp_path, later) as source, pytest.raises(UsageError) as info:
            copy(source, store)
        text = str(info.value)
        assert refused in text and "nothing was copied" in text, text
        assert text.startswith(f"copy {source.url} -> {store.url}: ")
        assert list(store.list_streams()) == []


@network
def test_copy_into_nats_refuses_a_source_that_holds_an_id_twice(store: NatsStore,
                                                                 tmp_path: Path) -> None:
    twice = [NewEvent("T", b"{}", id="dup-1"), NewEvent("T", b"{}", id="dup-1")]
    with _source(tmp_path, ("order-1", twice)) as source:
        with pytest.raises(StoreError, match=r"event id 'dup-1' is used by two events of "
                                             r"the source \(stream 'order-1' version 0 and "
                                             r"stream 'order-1' version 1: a duplicate "
                                             r"delivery, say\); JetStream keeps one message "
                                             r"per id .*nothing was copied") as info:
            copy(source, store)
        assert (info.value.context.stream, info.value.context.version) == ("order-1", 1)
        assert list(store.list_streams()) == []
        # without the check, the append says what is wrong (and the rest is not copied)
        with pytest.raises(UsageError, match="repeated within the batch"):
            copy(source, store, check_first=False)
