"""NatsStore against real nats-server processes (JetStream) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evtools.errors import ConcurrencyError, StoreError, StoreUnavailable, UsageError
from evtools.stores import ANY, NO_STREAM, EventStore, NatsStore, NewEvent, open_store
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
    from evtools.errors import EnvelopeError

    async def put(js: Any, nc: Any) -> Any:
        return await js.publish(f"{store.prefix}.foreign", b"hello")

    _raw(nats_server.url, put)
    with pytest.raises(EnvelopeError, match="not an evtools event"):
        list(store.read_all())


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
