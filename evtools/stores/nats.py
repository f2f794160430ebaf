"""``NatsStore``: events in a NATS JetStream stream (nats-py; the ``nats`` extra).

Layout
------
One JetStream stream (``stream=``, ``EVENTS`` by default) holds every event stream; each
event stream is one subject ``<prefix>.<token>`` (``prefix`` defaults to ``events``, so
the JetStream stream binds ``events.>``). ``token`` is the stream name escaped into a
single subject token: the UTF-8 bytes ``A-Z a-z 0-9 - _`` stay as they are, every other
byte becomes ``%XX`` (upper-case hex), e.g. ``order-1`` -> ``events.order-1``,
``order.1/a b`` -> ``events.order%2E1%2Fa%20b``. The escaping is reversible, so
``list_streams`` recovers the names from the subjects.

A message is one event: the payload is ``data``; headers carry the CloudEvents
attributes in binary mode (``ce-specversion``, ``ce-id``, ``ce-source``, ``ce-type``,
``ce-time``, ``content-type``) and the evtools extensions ``ce-evversion``,
``ce-evschemaversion`` and ``ce-evmetadata`` (omitted when empty); the stream name is
the subject's token, unescaped.
Header values are percent-encoded as the CloudEvents HTTP binding prescribes (space,
``"``, ``%`` and everything outside printable ASCII), so any type name or metadata bytes
survive. ``Nats-Msg-Id`` is the event id: JetStream drops a re-sent event inside the
duplicate window (2 minutes by default), which makes retries safe. The global position is
the JetStream sequence. A copied event without a time (``recorded_at`` ``None``) has no
``ce-time`` and reads back without one. A message that lacks ``ce-evversion`` or whose
``ce-time`` has no UTC offset is not an evtools event: reading it, or appending after it,
raises :class:`~evtools.errors.EnvelopeError`.

Event ids
---------
Because JetStream keeps one message per id within its duplicate window, ids must be
unique: an event with an empty id (a copied ``RawEvent`` that has none) and a batch that
repeats an id are :class:`~evtools.errors.UsageError` before anything is sent. When
JetStream reports an id of a batch as already stored, the append is a success only where
it is a retry of an append that is stored: every event of the batch is stored with its id,
the same event (type, data, metadata, schema version, content type; the time where the
producer gave one), one after the other in this stream, where the expected version puts
them (a retry with ``ANY`` is recognised wherever the batch is; with ``NO_STREAM`` or an
exact version only at its place). Anything else (the id used by another event, or by the
same event at a place the expected version does not allow) is a
:class:`~evtools.errors.StoreError` saying which id is used by which event, and that
nothing of the batch was stored: append never reports an event it did not store. It is
not a :class:`~evtools.errors.ConcurrencyError`, as asking again with the same ids would
fail again. Outside the window JetStream stores a re-sent id again.

Appends
-------
Optimistic concurrency uses ``Nats-Expected-Last-Subject-Sequence``: the store learns
the subject's last sequence and version from its last message (one leader request,
``STREAM.MSG.GET`` ``last_by_subj``, or what its own previous append returned) and the
server rejects the append if another writer got there first. A batch of several events
is one atomic batch publish (``Nats-Batch-Id``; nats-server 2.12 or later with
``allow_atomic`` on the stream, which the store sets when it creates the stream): all or
nothing. JetStream caps an atomic batch at 1,000 messages; a longer append is written as
consecutive atomic batches, each checked against the end of the previous one, so a crash
can leave a prefix of it (made of whole 1,000-event batches), and so can another writer
in between: then a :class:`~evtools.errors.StoreError` says which versions are stored.
On a stream without ``allow_atomic`` events are published one by one, each checked
against the previous one.
Before anything is sent, an event whose message (data and headers) exceeds the server's
``max_payload``, or a stream name whose subject would not fit a NATS protocol line, is a
:class:`~evtools.errors.UsageError`: the server would answer with ``-ERR`` and nats-py
would close the connection. Should the server close it anyway, the next call connects
again.
A JetStream stream with ``no_ack`` is refused for appends (the server never answers
them); a stream at its limits (``discard: new``) fails an append with a StoreError.

Timeouts, lost connections and leader elections are retried for ``retry_for`` seconds
with the same message ids; an append whose acknowledgement was lost is recognised (its
last event is the subject's last message, or JetStream reports the ids as duplicates)
instead of being written twice.

Reads
-----
``read_stream`` and ``read_all`` first ask the stream leader where the end is (the
subject's last message, or the stream's last sequence), then read up to that end in
batches (``batch_size`` messages, at most 8 MiB or one message) through an ephemeral pull
consumer (ack none, in memory, filtered to the subject; deleted at the end, or expiring
after a minute when an iterator is abandoned). A consumer behind the leader is asked
again until it has caught up; a request that fails is asked again of a new consumer from
the first event not read.
``read_stream(from_version=n)`` finds the first sequence by a binary search over
sequences (about log2 of the stream length requests), never by reading the stream from
its start. ``stream_version`` reads only the subject's last message.

The store API is synchronous; nats-py runs on an asyncio loop in one background thread
per store. Do not call a store from inside that loop (e.g. from a nats callback).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qs, quote, quote_from_bytes, unquote, unquote_to_bytes

import msgspec

from .._checks import count, seconds
from ..errors import (
    ConcurrencyError,
    Context,
    EnvelopeError,
    MissingDependency,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    UsageError,
)
from ..events import JSON_CONTENT_TYPE, RawEvent
from .base import (
    ANY,
    INT64_MAX,
    NO_STREAM,
    STREAM_EXISTS,
    AppendEvent,
    EventStore,
    ExpectedVersion,
    NewEvent,
    PreparedEvent,
    check_expected,
    check_limit,
    check_start,
    check_text,
    describe_version,
    first_version,
    prepare_events,
    redact_url,
    validate_append,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["NatsStore", "message_headers", "stream_from_token", "subject_token"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATOMIC_BATCH = 1000
# messages of the JetStream stream looked back over for the events of a re-sent append
_LOOK_BACK = 10 * MAX_ATOMIC_BATCH
# the server's protocol line (max_control_line, 4 KiB) holds "HPUB", the subject, the
# reply inbox and two sizes; past it the server closes the connection
MAX_SUBJECT_BYTES = 3840
# headers added at publish time beyond those of message_headers(e, stream, 0): a longer
# ce-evversion, Nats-Expected-Last-Subject-Sequence, Nats-Batch-Id/-Sequence/-Commit
_PUBLISH_HEADER_ROOM = 256
_CONSUMER_IDLE = 60.0  # seconds before an abandoned read's consumer expires
# bytes a read fetches per request (or one message of the server's max_payload, with its
# subject and headers): a whole batch of big events at once had outgrown the server's
# buffer for the client (max_pending, 64 MiB), which then dropped the connection
PAGE_BYTES = 8 * 2**20
_MESSAGE_ROOM = 8192
WRONG_LAST_SEQUENCE = 10071
NO_MESSAGE_FOUND = 10037
BATCH_DUPLICATE_ID = 10201
STORE_FAILED = 10077  # a 503, but also what a stream at its limits (discard new) answers

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+\Z")
# a non-zero digit beyond the sixth of a fraction (what datetime cannot keep)
_sub_microsecond = re.compile(r"[.,][0-9]{6}0*[1-9]").search
_TOKEN_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                              b"0123456789-_")
# CloudEvents HTTP binding: percent-encode space, '"', '%' and non-printable / non-ASCII
_HEADER_SAFE = "!#$&'()*+,-./:;<=>?@[\\]^_`{|}~"
_PLAIN_HEADER = re.compile(r"[!#-$&-~]*\Z")
_PLAIN_HEADER_BYTES = re.compile(rb"[!#-$&-~]*\Z")


def _short(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep]}..."


def _header_size(headers: dict[str, str]) -> int:
    """Bytes of the header block nats-py sends for ``headers``."""
    return 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())


def _nats() -> Any:
    try:
        import nats
        import nats.errors
        import nats.js.errors
    except ImportError as e:
        raise MissingDependency("nats-py", "nats") from e
    return nats


def subject_token(stream: str) -> str:
    """The single subject token for ``stream`` (see the module docstring)."""
    if _SAFE_TOKEN.match(stream):
        return stream
    return "".join(chr(b) if b in _TOKEN_SAFE_BYTES else f"%{b:02X}"
                   for b in stream.encode("utf-8"))


def stream_from_token(token: str) -> str | None:
    """The stream name ``token`` encodes, or ``None`` if it is not a valid escape."""
    if "%" not in token:
        return token if _SAFE_TOKEN.match(token) else None
    try:
        return unquote_to_bytes(token).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _header(value: str) -> str:
    if _PLAIN_HEADER.match(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


def _header_bytes(value: bytes) -> str:
    if _PLAIN_HEADER_BYTES.match(value):
        return value.decode("ascii")
    return quote_from_bytes(value, safe=_HEADER_SAFE)


def _unheader(value: str) -> str:
    return unquote(value, errors="strict") if "%" in value else value


def _unheader_bytes(value: str) -> bytes:
    return unquote_to_bytes(value) if "%" in value else value.encode("utf-8")


def _format_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _same_event(stored: RawEvent, event: PreparedEvent, time_given: bool) -> bool:
    """Whether ``stored`` is ``event`` (its time compared where the producer gave one)."""
    return (stored.type == event.type and stored.data == event.data
            and stored.metadata == event.metadata
            and stored.schema_version == event.schema_version
            and stored.content_type == event.content_type
            and (not time_given or stored.recorded_at == event.recorded_at))


def _at_its_place(first: int, expected: ExpectedVersion) -> bool:
    """Whether a batch stored from version ``first`` on fits ``expected`` (a retry)."""
    if expected is NO_STREAM:
        return first == 0
    if expected is STREAM_EXISTS:
        return first > 0
    if isinstance(expected, int):
        return first == expected + 1
    return True  # ANY


def message_headers(e: PreparedEvent, stream: str, version: int) -> dict[str, str]:
    """The headers of the message for event ``e`` at ``version`` of ``stream``."""
    headers = {
        "Nats-Msg-Id": _header(e.id),
        "ce-specversion": "1.0",
        "ce-id": _header(e.id),
        "ce-source": _header(f"/streams/{stream}"),
        "ce-type": _header(e.type),
        "content-type": _header(e.content_type),
        "ce-evversion": str(version),
        "ce-evschemaversion": str(e.schema_version),
    }
    if e.recorded_at is not None:  # a copied event may have no time: none is invented
        headers["ce-time"] = _format_time(e.recorded_at)
    if e.metadata:
        headers["ce-evmetadata"] = _header_bytes(e.metadata)
    return headers


def _parse_header_block(block: bytes) -> dict[str, str]:
    """``NATS/1.0\\r\\nName: value\\r\\n...`` (a stored message's headers) to a dict."""
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("ascii", "replace")] = value.strip().decode(
                "utf-8", "replace")
    return headers


class _Tail(msgspec.Struct, frozen=True):
    """The last message of a subject: its sequence, version and event id."""

    seq: int
    version: int
    id: str


class _Written:
    """How much of one append is stored: ``count`` events (whole atomic batches of a
    longer append), the last of them at ``tail``."""

    __slots__ = ("count", "tail")

    def __init__(self) -> None:
        self.count = 0
        self.tail: _Tail | None = None


class _Loop:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise UsageError("a NatsStore cannot be called from its own event loop "
                             "(e.g. inside a nats callback)")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout as e:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:.0f} s") from e

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(5)
        except Exception:  # a task that will not stop: stop the loop anyway
            log.debug("cancelling pending tasks failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def parse_nats_url(url: str) -> tuple[list[str], str, dict[str, str]]:
    """``nats://h1:4222,h2:4223/STREAM?prefix=events`` -> (servers, stream, options)."""
    if not url.startswith(("nats://", "tls://")):
        raise UsageError(f"not a NATS URL (nats://host:port/STREAM): {redact_url(url)!r}")
    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    hosts, _, stream = rest.partition("/")
    if not hosts:
        raise UsageError(f"NATS URL without a host: {redact_url(url)!r}")
    servers = [f"{scheme}://{h}" for h in hosts.split(",") if h]
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return servers, stream.strip("/") or "EVENTS", options


class _Reader:
    """Reads one subject filter from ``seq`` through ``up_to`` with an ephemeral pull
    consumer (ack none, in memory, expires when idle), a batch per request.

    A consumer that disappears (its server died) is re-created from the next sequence;
    a replica that is behind answers with fewer messages, and the caller asks again. A
    request that fails (a timeout, a lost connection) also starts a new consumer from the
    next sequence: with ack none the old one has moved past what it sent, and going on
    with it would skip those messages.
    """

    def __init__(self, store: NatsStore, subject: str, seq: int, up_to: int) -> None:
        self.store = store
        self.subject = subject
        self.seq = seq
        self.up_to = up_to
        self.name: str | None = None
        self.dropped: list[str] = []  # consumers given up after a failed request

    @property
    def done(self) -> bool:
        return self.seq > self.up_to

    async def _create(self) -> str:
        config = {"deliver_policy": "by_start_sequence", "opt_start_seq": self.seq,
                  "ack_policy": "none", "filter_subject": self.subject,
                  "replay_policy": "instant", "inactive_threshold": int(_CONSUMER_IDLE * 1e9),
                  "mem_storage": True, "num_replicas": 1}
        response = await self.store._api(f"CONSUMER.CREATE.{self.store.stream}",
                                         {"stream_name": self.store.stream, "config": config})
        return str(response["name"])

    async def next_batch(self, count: int) -> list[RawEvent]:
        """Up to ``count`` events; raises a transient error when none came (ask again)."""
        store = self.store
        if self.name is None:
            self.name = await self._create()
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[dict[str, str] | None] = loop.create_future()
        msgs: list[Msg] = []

        async def on_message(msg: Msg) -> None:
            if finished.done():
                return
            if msg.headers and "Status" in msg.headers and not msg.data:
                finished.set_result(msg.headers)  # 404 no messages, 408, 409, ...
                return
            msgs.append(msg)
            if len(msgs) >= count:
                finished.set_result(None)

        nc = store._nc
        max_bytes = max(PAGE_BYTES, nc.max_payload + _MESSAGE_ROOM)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_message,
                                 pending_bytes_limit=max(2 * max_bytes, 128 * 2**20))
        try:
            request = msgspec.json.encode({"batch": count, "max_bytes": max_bytes,
                                           "no_wait": True})
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{store.stream}.{self.name}", request,
                             reply=inbox)
            status = await asyncio.wait_for(finished, store._timeout)
        except BaseException:
            # what the consumer sent may be lost: go on from self.seq with a new one
            self.dropped.append(self.name)
            self.name = None
            raise
        finally:
            await sub.unsubscribe()
        events = []
        for msg in msgs:
            seq = _stream_sequence(msg.reply)
            if seq > self.up_to:
                self.seq = self.up_to + 1
                break
            events.append(store._event(msg.subject, seq, msg.headers, msg.data))
            self.seq = seq + 1
        if events or self.done:
            return events
        if status is not None and status.get("Status") not in ("404", "408"):
            # consumer gone (409) or the like: start a new one from here
            self.dropped.append(self.name)
            self.name = None
        raise store._errors.TimeoutError  # nothing yet: a lagging replica; ask again

    async def delete(self) -> None:
        names, self.dropped = self.dropped, []
        if self.name is not None:
            names.append(self.name)
            self.name = None
        for name in names:
            try:
                await self.store._api(f"CONSUMER.DELETE.{self.store.stream}.{name}")
            except Exception:  # it expires by itself after _CONSUMER_IDLE seconds
                log.debug("deleting consumer %s failed", name, exc_info=True)


def _stream_sequence(reply: str) -> int:
    """The stream sequence in a JetStream ack subject (v1 and v2 forms)."""
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


class NatsStore(EventStore):
    """Events in a JetStream stream; see the module docstring for the layout.

    ``servers`` is one URL or several (a cluster); ``stream`` the JetStream stream name;
    ``prefix`` the subject prefix. With ``create=True`` a missing stream is created with
    ``replicas`` replicas and ``allow_atomic``. ``timeout`` bounds each
    request, ``retry_for`` the retries of one operation through disconnects and leader
    elections. ``batch_size`` is the number of messages a read fetches per request.
    Further keyword arguments go to ``nats.connect``.
    """

    unique_ids = ("JetStream keeps one message per id (Nats-Msg-Id, the event id) within "
                  "its duplicate window and drops the second")

    def __init__(self, servers: str | Sequence[str] = "nats://127.0.0.1:4222",
                 stream: str = "EVENTS", *, prefix: str = "events", create: bool = True,
                 replicas: int = 1, mode: Literal["r", "a"] = "a", timeout: float = 5.0,
                 retry_for: float = 15.0, batch_size: int = 1000,
                 duplicate_window: float = 120.0, **connect_options: Any) -> None:
        nats = _nats()
        if mode not in ("r", "a"):
            raise UsageError(f"NATS store mode must be 'r' or 'a', got {mode!r}")
        if not stream or any(c in stream for c in " .*>\t\r\n/\\"):
            raise UsageError(f"invalid JetStream stream name {stream!r}")
        if not prefix or any(c in prefix for c in " *>\t\r\n") or "" in prefix.split("."):
            raise UsageError(f"invalid subject prefix {prefix!r}")
        # inf had ended in an OverflowError, nan and 0 in "connection refused"
        seconds(timeout, "NATS store option timeout", above_zero=True)
        seconds(retry_for, "NATS store option retry_for")
        seconds(duplicate_window, "NATS store option duplicate_window")
        count(replicas, "NATS store option replicas")
        count(batch_size, "NATS store option batch_size")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.prefix = prefix
        self.url = f"{','.join(map(redact_url, self.servers))}/{stream}"
        self.read_only = mode == "r"
        self._timeout = timeout
        self._retry_for = retry_for
        self._batch = max(1, min(batch_size, 10_000))
        self._errors = nats.errors
        self._js_errors = nats.js.errors
        self._tails: dict[str, _Tail] = {}
        self._atomic = True
        self._duplicate_window = duplicate_window  # the stream's, once it is open
        self._warned_atomic = False
        self._closed = False
        self._connect_options = connect_options
        self._reconnecting = threading.Lock()
        self._loop = _Loop(f"evtools-nats-{stream}")
        try:
            self._nc: Client = self._run(self._connect(nats, connect_options),
                                         "connect", deadline=timeout * 2 + 5)
            self._run(self._setup(create, replicas, duplicate_window), "open stream")
        except BaseException:
            self._shutdown()
            raise

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], what: str, *,
             deadline: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise UsageError(f"{self.url}: the store is closed")
        budget = deadline if deadline is not None else self._retry_for + self._timeout + 5
        try:
            return self._loop.run(coro, budget)
        except TimeoutError as e:
            raise StoreUnavailable(f"{self.url}: {what} timed out after {budget:.0f} s") from e

    async def _connect(self, nats: Any, options: dict[str, Any]) -> Client:
        last_error: list[BaseException] = []

        async def on_error(e: Exception) -> None:
            last_error.append(e)
            log.debug("%s: nats client error: %s", self.url, e)

        async def on_disconnect() -> None:
            log.log(logging.DEBUG if self._closed else logging.INFO, "%s: disconnected",
                    self.url)

        async def on_reconnect() -> None:
            url = nc.connected_url
            log.info("%s: reconnected to %s", self.url, redact_url(url.geturl()) if url else "?")

        opts: dict[str, Any] = {"connect_timeout": self._timeout, "reconnect_time_wait": 0.25,
                                "max_reconnect_attempts": -1, "error_cb": on_error,
                                "disconnected_cb": on_disconnect,
                                "reconnected_cb": on_reconnect}
        opts.update(options)
        nc = nats.aio.client.Client()
        try:
            # nats-py retries the first connection forever when reconnects are unlimited
            await asyncio.wait_for(nc.connect(servers=self.servers, allow_reconnect=True,
                                              **opts), timeout=self._timeout)
        except Exception as e:
            try:
                await asyncio.wait_for(nc.close(), timeout=1)
            except Exception:  # closing a client that never connected
                log.debug("closing the failed client failed", exc_info=True)
            cause = last_error[-1] if last_error else e
            reason = str(cause) or type(cause).__name__
            if isinstance(cause, OSError | asyncio.TimeoutError | self._errors.NoServersError):
                reason = "connection refused or host unreachable"
            raise StoreUnavailable(f"cannot connect to NATS at "
                                   f"{', '.join(map(redact_url, self.servers))}: {reason}") from e
        return nc

    def _reconnect_if_closed(self) -> None:
        """nats-py closes its connection for good on any ``-ERR`` from the server (which
        also closes it): connect again, so that one bad message does not end the store."""
        nc = self._nc
        if self._closed or not nc.is_closed:
            return
        with self._reconnecting:
            if self._nc is not nc or self._closed:
                return
            log.warning("%s: the server closed the connection (%s); connecting again",
                        self.url, nc.last_error)
            self._nc = self._run(self._connect(_nats(), self._connect_options), "connect",
                                 deadline=self._timeout * 2 + 5)

    async def _api(self, subject: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request; JetStream errors come back as ``APIError``."""
        payload = msgspec.json.encode(request) if request is not None else b""
        msg = await self._nc.request(f"$JS.API.{subject}", payload, timeout=self._timeout)
        if msg.headers and msg.headers.get("Status") == "503":
            raise self._js_errors.ServiceUnavailableError(code=503,
                                                          description="no responders")
        response: dict[str, Any] = msgspec.json.decode(msg.data)
        if "error" in response:
            self._js_errors.APIError.from_error(response["error"])
        return response

    def _transient(self, e: BaseException) -> bool:
        errors, js = self._errors, self._js_errors
        if isinstance(e, js.APIError) and e.err_code == STORE_FAILED and any(
                w in (e.description or "") for w in ("exceed", "insufficient resources")):
            return False  # a full stream or disk: asking again for retry_for changes nothing
        if isinstance(e, js.ServiceUnavailableError | js.ServerError):
            return True
        if isinstance(e, js.APIError):
            # 10008 cluster not available, 10076 stream leader not elected, 503s
            return e.code == 503 or e.err_code in (10008, 10076, 10185)
        # not ConnectionClosedError: a closed client stays closed (the next call reconnects)
        return isinstance(e, errors.TimeoutError | errors.NoRespondersError
                          | errors.ConnectionReconnectingError
                          | errors.StaleConnectionError | errors.OutboundBufferLimitError
                          | js.NoStreamResponseError | asyncio.TimeoutError | OSError)

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return await attempt()
            except Exception as e:
                if not self._transient(e):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"{self.url}: {what} failed for {self._retry_for:.0f} s: "
                        f"{self._describe(e)}") from e
                log.debug("%s: %s: %s; retrying", self.url, what, self._describe(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _describe(e: BaseException) -> str:
        description = getattr(e, "description", None)
        return description or str(e) or type(e).__name__

    def _translate(self, e: Exception, what: str, stream: str | None = None) -> StoreError:
        js = self._js_errors
        if isinstance(e, js.APIError):
            return StoreError(f"{self.url}: {what}: JetStream error {e.err_code}: "
                              f"{e.description}", stream=stream)
        if isinstance(e, self._errors.ConnectionClosedError) and not self._closed:
            return StoreUnavailable(f"{self.url}: {what}: the connection was closed "
                                    f"({self._nc.last_error or 'by the server'}); the next "
                                    f"call connects again", stream=stream)
        if self._transient(e):
            return StoreUnavailable(f"{self.url}: {what}: {self._describe(e)}", stream=stream)
        return StoreError(f"{self.url}: {what}: {self._describe(e)}", stream=stream)

    def _call(self, make: Callable[[], Awaitable[T]], what: str,
              stream: str | None = None) -> T:
        self._reconnect_if_closed()

        async def attempt() -> T:
            try:
                return await self._retrying(what, make)
            except (StoreError, UsageError, EnvelopeError):
                raise
            except Exception as e:
                raise self._translate(e, what, stream) from e
        return self._run(attempt(), what)

    async def _setup(self, create: bool, replicas: int, duplicate_window: float) -> None:
        js = self._js_errors
        try:
            info = await self._api(f"STREAM.INFO.{self.stream}")
        except js.NotFoundError as e:
            if not create or self.read_only:
                raise StoreUnavailable(f"{self.url}: JetStream stream {self.stream!r} does "
                                       f"not exist") from e
            info = await self._create(replicas, duplicate_window)
        except (js.ServiceUnavailableError, self._errors.NoRespondersError) as e:
            raise StoreUnavailable(f"{self.url}: JetStream is not available (start "
                                   f"nats-server with -js)") from e
        except self._errors.TimeoutError as e:
            raise StoreUnavailable(f"{self.url}: JetStream did not answer within "
                                   f"{self._timeout:.0f} s") from e
        config = info.get("config", {})
        subjects = config.get("subjects") or []
        if f"{self.prefix}.>" not in subjects and ">" not in subjects:
            raise UsageError(f"{self.url}: JetStream stream {self.stream!r} binds {subjects}, "
                             f"not '{self.prefix}.>' (pass prefix=...)")
        if config.get("no_ack") and not self.read_only:
            raise UsageError(f"{self.url}: JetStream stream {self.stream!r} has no_ack: the "
                             f"server would not acknowledge appends (open it with mode='r', "
                             f"or turn no_ack off)")
        self._atomic = bool(config.get("allow_atomic"))
        window = config.get("duplicate_window")
        if isinstance(window, int):
            self._duplicate_window = window / 1e9

    async def _create(self, replicas: int, duplicate_window: float) -> dict[str, Any]:
        config = {"name": self.stream, "subjects": [f"{self.prefix}.>"],
                  "retention": "limits", "storage": "file", "num_replicas": replicas,
                  "discard": "old", "duplicate_window": int(duplicate_window * 1e9),
                  "allow_atomic": True}
        try:
            return await self._api(f"STREAM.CREATE.{self.stream}", config)
        except self._js_errors.APIError as e:
            if e.err_code == 10058:  # created meanwhile by someone else
                return await self._api(f"STREAM.INFO.{self.stream}")
            if "atomic" in (e.description or ""):
                log.warning("%s: server has no atomic batch publish (nats-server < 2.12); "
                            "multi-event appends are not atomic", self.url)
                del config["allow_atomic"]
                return await self._api(f"STREAM.CREATE.{self.stream}", config)
            hint = (f"; another stream holds the subjects {self.prefix}.>: pass another "
                    f"subject prefix (?prefix=NAME in the URL)"
                    if "overlap" in (e.description or "") else "")
            raise StoreUnavailable(f"{self.url}: cannot create JetStream stream "
                                   f"{self.stream!r}: {e.description}{hint}") from e

    def _subject(self, stream: str) -> str:
        check_text(stream, "stream name", self.url, stream)  # a subject is UTF-8
        return f"{self.prefix}.{subject_token(stream)}"

    def _check_subject(self, stream: str) -> str:
        """The subject of ``stream``, or the UsageError for a name too long for one."""
        subject = self._subject(stream)
        if len(subject) > MAX_SUBJECT_BYTES:
            raise UsageError(f"{self.url}: stream name {_short(stream)!r} is too long: its "
                             f"subject is {len(subject):,} bytes (escaped), at most "
                             f"{MAX_SUBJECT_BYTES:,} fit a NATS protocol line",
                             stream=_short(stream))
        return subject

    def _check_event(self, stream: str, which: str, event: PreparedEvent,
                     version: int | None) -> None:
        """Refuse an event this store cannot write: no id, or too big (``which`` names
        it in the message: "event 3 of the batch")."""
        if not event.id:
            raise UsageError(f"{self.url}: stream {_short(stream)!r} {which}: the event has "
                             f"an empty id; this store needs one (it is the message's "
                             f"Nats-Msg-Id, by which JetStream recognises a re-sent event), "
                             f"and does not invent one for a stored event being copied",
                             stream=_short(stream), version=version)
        self._check_size(stream, which, event, version)

    def check_appendable(self, stream: str, event: AppendEvent,
                         version: int | None = None) -> PreparedEvent:
        prepared = super().check_appendable(stream, event, version)
        self._check_subject(stream)
        self._check_event(stream, "event" if version is None else f"version {version}",
                          prepared, version)
        return prepared

    def _check_size(self, stream: str, which: str, event: PreparedEvent,
                    version: int | None = None) -> None:
        """Refuse an event the server would answer with ``-ERR`` (see the docstring)."""
        limit = self._nc.max_payload
        text = len(event.type) + 2 * len(event.id) + len(event.content_type) + len(stream)
        if len(event.data) + 3 * len(event.metadata) + 12 * text + 1024 <= limit:
            return  # surely fits: no need to build the headers twice
        size = (len(event.data) + _header_size(message_headers(event, stream, 0))
                + _PUBLISH_HEADER_ROOM)
        if size > limit:
            raise UsageError(f"{self.url}: stream {_short(stream)!r} {which}: its "
                             f"message takes up to {size:,} bytes (data "
                             f"{len(event.data):,}, the rest headers, metadata "
                             f"percent-encoded); the server's max_payload is {limit:,}",
                             stream=_short(stream), version=version)

    # -- messages <-> events ---------------------------------------------------------------

    def _event(self, subject: str, seq: int, headers: dict[str, str] | None,
               data: bytes) -> RawEvent:
        h = headers or {}
        try:
            version = int(h["ce-evversion"])
            event_type = _unheader(h["ce-type"])
            stream = stream_from_token(subject[len(self.prefix) + 1:])
            if stream is None:
                raise ValueError(f"subject {subject!r} does not name a stream")
            time_text = h.get("ce-time")
            when = datetime.fromisoformat(time_text) if time_text else None
            if when is not None and when.tzinfo is not UTC:
                offset = when.utcoffset()
                if offset is None:
                    raise ValueError(f"ce-time {time_text!r} has no UTC offset")
                when = when.astimezone(UTC)
            if time_text and _sub_microsecond(time_text):
                # (fromisoformat drops them)
                raise ValueError(f"ce-time {time_text!r} has digits beyond the microsecond, "
                                 f"which datetime cannot keep")
            metadata = h.get("ce-evmetadata")
            schema_version = int(h.get("ce-evschemaversion", "1"))
            if schema_version < 1:
                raise ValueError(f"ce-evschemaversion {schema_version} is below 1")
            if schema_version > INT64_MAX:
                raise ValueError(f"ce-evschemaversion {schema_version} is above 2**63-1")
            return RawEvent(
                stream, version, event_type, data,
                _unheader_bytes(metadata) if metadata else b"",
                _unheader(h.get("ce-id", "")),
                when,
                seq,
                _unheader(h.get("content-type", JSON_CONTENT_TYPE)),
                schema_version,
            )
        except OverflowError as e:  # 0001-01-01T00:00:00+01:00: before year 1 in UTC
            raise self._not_an_event(subject, seq, ValueError(
                f"ce-time {h.get('ce-time')!r} is outside the years 1-9999 in UTC")) from e
        except (KeyError, ValueError) as e:
            raise self._not_an_event(subject, seq, e) from e

    def _tail_of(self, subject: str, seq: int, headers: dict[str, str] | None) -> _Tail:
        h = headers or {}
        try:
            version = int(h["ce-evversion"])
        except (KeyError, ValueError) as e:
            raise self._not_an_event(subject, seq, e) from e
        return _Tail(seq, version, _unheader(h.get("ce-id", h.get("Nats-Msg-Id", ""))))

    def _not_an_event(self, subject: str, seq: int, e: Exception) -> EnvelopeError:
        """The error for a message whose headers are not an evtools event's (built on the
        error path only: reading a message does not pay for it)."""
        stream = stream_from_token(subject[len(self.prefix) + 1:]) \
            if subject.startswith(self.prefix + ".") else None
        where = Context(stream=stream or subject)
        if isinstance(e, KeyError):
            return EnvelopeError(f"{self.url}: message {seq} on {subject!r} has no "
                                 f"{e.args[0]} header: not an evtools event", where)
        return EnvelopeError(f"{self.url}: message {seq} on {subject!r} has a bad header: "
                             f"{e}", where)

    # -- leader reads ----------------------------------------------------------------------

    async def _get(self, request: dict[str, Any]) -> tuple[str, int, dict[str, str], bytes]:
        """``STREAM.MSG.GET`` on the leader: (subject, seq, headers, data)."""
        response = await self._api(f"STREAM.MSG.GET.{self.stream}", request)
        message = response["message"]
        headers = (_parse_header_block(base64.b64decode(message["hdrs"]))
                   if message.get("hdrs") else {})
        data = base64.b64decode(message["data"]) if message.get("data") else b""
        return message["subject"], int(message["seq"]), headers, data

    async def _last_message(self, subject: str
                            ) -> tuple[str, int, dict[str, str], bytes] | None:
        """The subject's last message (``_get``'s tuple), ``None`` when it has none."""
        try:
            return await self._get({"last_by_subj": subject})
        except self._js_errors.NotFoundError:
            return None
        except self._js_errors.APIError as e:
            if e.err_code == NO_MESSAGE_FOUND:
                return None
            raise

    async def _tail(self, subject: str) -> _Tail | None:
        last = await self._last_message(subject)
        if last is None:
            return None
        _, seq, headers, _ = last
        tail = self._tail_of(subject, seq, headers)
        self._remember(subject, tail)
        return tail

    def _remember(self, subject: str, tail: _Tail) -> None:
        if len(self._tails) > 10_000:
            self._tails.clear()
        self._tails[subject] = tail

    # -- append ----------------------------------------------------------------------------

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        expected = validate_append(self.url, stream, events, expected_version)
        self._refuse_write(stream)
        subject = self._check_subject(stream)
        first = first_version(expected)
        prepared = list(prepare_events(self.url, stream, events, first))
        seen: dict[str, int] = {}
        for i, event in enumerate(prepared):
            version = None if first is None else first + i
            self._check_event(stream, f"event {i} of the batch", event, version)
            earlier = seen.setdefault(event.id, i)
            if earlier != i:
                raise UsageError(
                    f"{self.url}: stream {_short(stream)!r}: event id {_short(event.id)!r} "
                    f"is repeated within the batch (events {earlier} and {i}): JetStream "
                    f"keeps one message per id (Nats-Msg-Id) and would drop the second; "
                    f"nothing was written", stream=_short(stream), version=version)
        # where the producer gave the time: a retry is the same event only with that time
        times_given = [not (isinstance(e, NewEvent) and e.recorded_at is None)
                       for e in events]
        self._reconnect_if_closed()
        return self._run(self._append(subject, stream, prepared, expected, times_given),
                         "append")

    async def _append(self, subject: str, stream: str, events: list[PreparedEvent],
                      expected: ExpectedVersion, times_given: list[bool]) -> int:
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        ambiguous = False  # an earlier attempt may have been stored, its ack lost
        use_cache = True
        written = _Written()
        while True:
            try:
                tail: _Tail | None
                if written.count:  # a long append failed after its first atomic batches
                    tail = await self._resume(subject, stream, events, written)
                    if written.count == len(events):
                        return tail.version
                    return await self._publish(subject, stream, events, tail, written)
                if ambiguous or not use_cache:
                    tail = await self._tail(subject)
                    if ambiguous and tail is not None and tail.id == events[-1].id:
                        found = await self._already_stored(subject, events, expected,
                                                           times_given)
                        if found is not None:
                            return found  # the lost acknowledgement was a success
                elif expected is NO_STREAM:
                    tail = None  # the server checks "no message on this subject"
                elif subject in self._tails and (expected is ANY
                                                 or self._tails[subject].version == expected):
                    tail = self._tails[subject]
                else:
                    tail = await self._tail(subject)
                check_expected(self.url, stream, expected,
                               None if tail is None else tail.version)
                return await self._publish(subject, stream, events, tail, written)
            except ConcurrencyError:
                if ambiguous:
                    found = await self._already_stored(subject, events, expected,
                                                       times_given)
                    if found is not None:
                        return found
                if ambiguous or not use_cache:
                    raise
                use_cache = False  # the cached tail may be stale: look again
                continue
            except (StoreError, UsageError, EnvelopeError):
                raise
            except Exception as e:
                if isinstance(e, self._js_errors.APIError):
                    if e.err_code == WRONG_LAST_SEQUENCE:
                        # another writer appended since we looked: look again (an exact
                        # expected version then fails the check; ANY tries again)
                        self._tails.pop(subject, None)
                        use_cache = False
                        if time.monotonic() < deadline:
                            continue
                        raise StoreUnavailable(
                            f"{self.url}: stream {stream!r}: other writers kept appending "
                            f"for {self._retry_for:.0f} s", stream=stream) from e
                    if e.err_code == BATCH_DUPLICATE_ID:
                        if not written.count:  # a retry of an append that is stored?
                            found = await self._already_stored(subject, events, expected,
                                                               times_given)
                            if found is not None:
                                return found
                        raise await self._id_in_use(subject, stream, events, expected,
                                                    times_given, written) from e
                if not self._transient(e):
                    raise self._translate(e, f"append to stream {stream!r}", stream) from e
                ambiguous = True
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"{self.url}: append to stream {stream!r} failed "
                                           f"for {self._retry_for:.0f} s: "
                                           f"{self._describe(e)}", stream=stream) from e
                log.debug("%s: append to %r: %s; retrying", self.url, stream,
                          self._describe(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _chunk(self) -> int:
        """Events per atomic publish."""
        return MAX_ATOMIC_BATCH if self._atomic else 1

    async def _publish(self, subject: str, stream: str, events: list[PreparedEvent],
                       tail: _Tail | None, written: _Written) -> int:
        """Publish ``events[written.count:]`` after ``tail``; ``written`` follows along."""
        seq = 0 if tail is None else tail.seq
        version = 0 if tail is None else tail.version + 1
        if len(events) > 1 and not self._atomic and not self._warned_atomic:
            self._warned_atomic = True
            log.warning("%s: stream has no allow_atomic; a batch is published event by event "
                        "(not atomic)", self.url)
        i = written.count
        while i < len(events):
            chunk = events[i:i + self._chunk()]
            if len(chunk) == 1:
                seq = await self._publish_one(subject, stream, chunk[0], version, seq)
            else:
                seq = await self._publish_batch(subject, stream, chunk, version, seq)
            version += len(chunk)
            i += len(chunk)
            written.count, written.tail = i, _Tail(seq, version - 1, chunk[-1].id)
            self._remember(subject, written.tail)
        return version - 1

    async def _resume(self, subject: str, stream: str, events: list[PreparedEvent],
                      written: _Written) -> _Tail:
        """Where an append goes on after an error once ``written.count`` of its events are
        stored: their end (the batch in flight counts when it was stored, its
        acknowledgement lost). Starting again from the first event
        had re-sent the stored ones (JetStream refused them as duplicates) or failed the
        expected version that the first batch had itself moved on."""
        if written.tail is None:  # nothing stored yet: not a resumption (not reached)
            raise StoreError(f"{self.url}: stream {stream!r}: nothing to resume")
        tail = await self._tail(subject)
        end = min(written.count + self._chunk(), len(events))
        if tail is not None and tail.seq > written.tail.seq and tail.id == events[end - 1].id:
            written.count, written.tail = end, tail
        if tail is None or tail.seq != written.tail.seq:
            first = written.tail.version - written.count + 1
            raise StoreError(
                f"{self.url}: stream {stream!r}: another writer appended while this append "
                f"of {len(events):,} events was written in consecutive batches of "
                f"{self._chunk():,}: its first {written.count:,} events are stored "
                f"(versions {first}..{written.tail.version}), the other "
                f"{len(events) - written.count:,} are not", stream=stream,
                version=written.tail.version)
        return written.tail

    async def _publish_one(self, subject: str, stream: str, event: PreparedEvent,
                           version: int, seq: int) -> int:
        headers = message_headers(event, stream, version)
        headers["Nats-Expected-Last-Subject-Sequence"] = str(seq)
        msg = await self._nc.request(subject, event.data, timeout=self._timeout,
                                     headers=headers)
        return self._ack(msg, duplicate_is_error=True)

    async def _publish_batch(self, subject: str, stream: str, events: list[PreparedEvent],
                             version: int, seq: int) -> int:
        batch_id = uuid.uuid4().hex
        last = len(events) - 1
        for i, event in enumerate(events):
            headers = message_headers(event, stream, version + i)
            headers["Nats-Batch-Id"] = batch_id
            headers["Nats-Batch-Sequence"] = str(i + 1)
            if i == 0:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(seq)
            if i < last:
                await self._nc.publish(subject, event.data, headers=headers)
            else:
                headers["Nats-Batch-Commit"] = "1"
                msg = await self._nc.request(subject, event.data, timeout=self._timeout,
                                             headers=headers)
        return self._ack(msg)

    def _ack(self, msg: Msg, duplicate_is_error: bool = False) -> int:
        if msg.headers and msg.headers.get("Status") == "503":
            raise self._errors.NoRespondersError
        response = msgspec.json.decode(msg.data)
        if "error" in response:
            self._js_errors.APIError.from_error(response["error"])
        if duplicate_is_error and response.get("duplicate"):
            # the id was stored before (a retry, or the caller re-sent the event): nothing
            # was written now; _append finds the stored event
            raise self._js_errors.APIError(code=400, err_code=BATCH_DUPLICATE_ID,
                                           description="duplicate message id")
        return int(response["seq"])

    async def _stored_with_ids(self, subject: str, ids: set[str]) -> dict[str, RawEvent]:
        """The last stored event of ``subject`` with each of ``ids`` that is there.

        Looks back from the subject's end over the last 10,000 messages of the JetStream
        stream: a re-sent batch is found near the end unless many appends followed it.
        """
        tail = await self._tail(subject)
        found: dict[str, RawEvent] = {}
        if tail is None:
            return found
        reader = _Reader(self, subject, max(1, tail.seq - _LOOK_BACK + 1), tail.seq)
        try:
            while not reader.done:
                for event in await reader.next_batch(self._batch):
                    if event.id in ids:
                        found[event.id] = event
        finally:
            await reader.delete()
        return found

    async def _already_stored(self, subject: str, events: list[PreparedEvent],
                              expected: ExpectedVersion, times_given: list[bool]
                              ) -> int | None:
        """The version of ``events[-1]`` where this append is stored already (a retry:
        every event there with its id, the same event, one after the other, where
        ``expected`` puts them); else ``None``."""
        stored = await self._stored_with_ids(subject, {e.id for e in events})
        if len(stored) != len(events):
            return None
        found = [stored[e.id] for e in events]
        first = found[0].version
        if any(s.version != first + i for i, s in enumerate(found)):
            return None
        if not _at_its_place(first, expected):
            return None
        if not all(map(_same_event, found, events, times_given)):
            return None
        return found[-1].version

    async def _id_in_use(self, subject: str, stream: str, events: list[PreparedEvent],
                         expected: ExpectedVersion, times_given: list[bool],
                         written: _Written) -> StoreError:
        """The error for a batch JetStream refused as holding an id it has stored: which
        id is used by which event, and what of the append is stored."""
        start = written.count
        chunk = events[start:start + self._chunk()]
        stored = await self._stored_with_ids(subject, {e.id for e in chunk})
        base = first_version(expected)
        version: int | None = None
        for i, event in enumerate(chunk, start):
            there = stored.get(event.id)
            if there is None:
                continue
            if base is not None:
                version = base + i
            same = _same_event(there, event, times_given[i])
            said = (f"event id {_short(event.id)!r} (event {i} of the batch) is already "
                    f"used by {'the same event' if same else 'another event'} (type "
                    f"{_short(there.type)!r}) at version {there.version} of this stream")
            if same:
                said += (f", and expected {describe_version(expected)} asks for a new "
                         f"event" + ("" if version is None else f" at version {version}"))
            break
        else:
            said = (f"an event id of the batch ({_short(chunk[0].id)!r}"
                    f"{' ...' if len(chunk) > 1 else ''}) is already used by another "
                    f"message of JetStream stream {self.stream!r} (in another event "
                    f"stream, or more than {_LOOK_BACK:,} messages back)")
        if start:
            first = written.tail.version - start + 1 if written.tail else 0
            kept = (f"the first {start:,} events of this append are stored (versions "
                    f"{first}..{first + start - 1}), the other {len(events) - start:,} "
                    f"are not")
        else:
            kept = "nothing of this append was stored"
        return StoreError(
            f"{self.url}: stream {_short(stream)!r}: {said}. JetStream keeps one message "
            f"per id (Nats-Msg-Id) within the stream's duplicate window "
            f"({self._duplicate_window:g} s) and dropped this one, so {kept}: give each "
            f"event an id of its own", stream=_short(stream), version=version)

    # -- reads -----------------------------------------------------------------------------

    def _batches(self, seq: int, subject: str, up_to: int,
                 limit: int | None) -> Iterator[RawEvent]:
        """Events on ``subject`` (a filter) from ``seq`` through ``up_to``, lazily."""
        reader = _Reader(self, subject, seq, up_to)
        left = limit
        finished = False
        try:
            while not reader.done and (left is None or left > 0):
                count = self._batch if left is None else min(self._batch, left)
                batch = self._call(lambda c=count: reader.next_batch(c),  # type: ignore[misc]
                                   f"read {subject}")
                yield from batch
                if left is not None:
                    left -= len(batch)
            finished = True
            self._run(reader.delete(), "delete consumer", deadline=self._timeout + 1)
        finally:
            if not finished and not self._closed and (reader.name or reader.dropped):
                # abandoned or failed: no waiting here (this may run while the iterator is
                # garbage-collected); the consumer expires after _CONSUMER_IDLE anyway
                asyncio.run_coroutine_threadsafe(reader.delete(), self._loop.loop)

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self.url, stream)
        limit = check_limit(limit, self.url)
        subject = self._subject(stream)
        tail = self._call(lambda: self._tail(subject), "read_stream", stream)
        if tail is None:
            raise StreamNotFound(f"{self.url}: stream {stream!r} does not exist",
                                 stream=stream)
        if from_version > tail.version or limit == 0:
            return iter(())
        if from_version == 0:
            start = 1
        elif from_version == tail.version:
            start = tail.seq
        else:
            start = self._call(lambda: self._seek(subject, from_version, tail.seq),
                               "read_stream", stream)
        return self._batches(start, subject, tail.seq, limit)

    async def _seek(self, subject: str, version: int, up_to: int) -> int:
        """The smallest sequence from which the subject's next message has ``version``."""
        lo, hi = 1, up_to
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                _, seq, headers, _ = await self._get({"seq": mid, "next_by_subj": subject})
            except self._js_errors.NotFoundError:
                return up_to
            found = self._tail_of(subject, seq, headers).version
            if found >= version:
                hi = mid
            else:
                lo = seq + 1
        return lo

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self.url)
        limit = check_limit(limit, self.url)
        info = self._call(lambda: self._api(f"STREAM.INFO.{self.stream}"), "read_all")
        last = int(info["state"]["last_seq"])
        if limit == 0:
            return iter(())
        return self._batches(max(from_position, 1), f"{self.prefix}.>", last, limit)

    def list_streams(self) -> Iterator[str]:
        return self._list_streams()

    def _list_streams(self) -> Iterator[str]:
        offset = 0
        cut = len(self.prefix) + 1
        while True:
            request = {"subjects_filter": f"{self.prefix}.>", "offset": offset}
            info = self._call(lambda r=request: self._api(  # type: ignore[misc]
                f"STREAM.INFO.{self.stream}", r), "list_streams")
            subjects = info.get("state", {}).get("subjects") or {}
            for subject in subjects:
                name = stream_from_token(subject[cut:])
                if name is None:
                    log.warning("%s: subject %r is not an escaped stream name; skipped",
                                self.url, subject)
                    continue
                yield name
            offset += len(subjects)
            total = int(info.get("total", 0))
            if not subjects or offset >= total:
                return

    def stream_version(self, stream: str) -> int | None:
        subject = self._subject(stream)
        tail = self._call(lambda: self._tail(subject), "stream_version", stream)
        return None if tail is None else tail.version

    def last_event(self, stream: str) -> RawEvent | None:
        subject = self._subject(stream)

        async def last() -> RawEvent | None:
            message = await self._last_message(subject)
            return None if message is None else self._event(*message)

        return self._call(last, "last_event", stream)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        nc = getattr(self, "_nc", None)
        if nc is not None and not self._loop.loop.is_closed():
            try:
                self._loop.run(nc.close(), self._timeout + 1)
            except Exception:  # closing: nothing useful to do with it
                log.debug("%s: closing the connection failed", self.url, exc_info=True)
        self._closed = True
        self._loop.stop()
