"""``MemoryStore``: events in process memory; a supported store, not a test mock.

Thread-safe (one lock around every change and every page of a read). Positions start at
1 and have no gaps. Reads hand out events page by page, never copying a whole stream, and
stop at the head as it was when the read was called: events appended while a reader
iterates are left for the next read (so reading a stream, or everything, and appending
to it ends), as in the SQLite and JSONL stores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from ..errors import StreamNotFound
from ..events import RawEvent
from .base import (
    ANY,
    AppendEvent,
    EventStore,
    ExpectedVersion,
    check_expected,
    check_limit,
    check_start,
    prepare_events,
    validate_append,
)

__all__ = ["MemoryStore"]

_PAGE = 1024


class MemoryStore(EventStore):
    """An in-process store. ``MemoryStore()`` or ``open_store("memory:")``."""

    def __init__(self, *, name: str = "memory:") -> None:
        self.url = name
        # what messages start with: "memory: stream 'x' ...", not "memory:: stream 'x' ..."
        self._where = name[:-1] if name.endswith(":") and len(name) > 1 else name
        self._lock = threading.Lock()
        self._streams: dict[str, list[RawEvent]] = {}
        self._all: list[RawEvent] = []

    def append(self, stream: str, events: Sequence[AppendEvent],
               expected_version: ExpectedVersion = ANY) -> int:
        expected = validate_append(self._where, stream, events, expected_version)
        with self._lock:
            current = self._streams.get(stream)
            actual = len(current) - 1 if current else None
            check_expected(self._where, stream, expected, actual)
            first = 0 if actual is None else actual + 1
            position = len(self._all) + 1
            # prepare everything before touching the lists: all or nothing
            new = [p.to_raw(stream, first + i, position + i)
                   for i, p in enumerate(prepare_events(self._where, stream, events, first))]
            if current is None:
                current = self._streams[stream] = []
            current.extend(new)
            self._all.extend(new)
            return first + len(new) - 1

    def _page(self, events: list[RawEvent], start: int, stop: int) -> list[RawEvent]:
        with self._lock:
            return events[start:min(stop, start + _PAGE)]

    def _iterate(self, events: list[RawEvent], start: int,
                 limit: int | None) -> Iterator[RawEvent]:
        # up to the events there at the call: what is appended while the iterator is open
        # is not read (reading a stream and appending to it ends), as in a JSONL file
        with self._lock:
            stop = len(events) if limit is None else min(len(events), start + limit)
        return self._pages(events, start, stop)

    def _pages(self, events: list[RawEvent], start: int, stop: int) -> Iterator[RawEvent]:
        while start < stop:
            page = self._page(events, start, stop)
            if not page:
                return
            yield from page
            start += len(page)

    def read_stream(self, stream: str, from_version: int = 0, *,
                    limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_version, "from_version", self._where, stream)
        limit = check_limit(limit, self._where)
        with self._lock:
            events = self._streams.get(stream)
        if events is None:
            raise StreamNotFound(f"{self._where}: stream {stream!r} does not exist",
                                 stream=stream)
        return self._iterate(events, from_version, limit)

    def read_all(self, from_position: int = 0, *,
                 limit: int | None = None) -> Iterator[RawEvent]:
        check_start(from_position, "from_position", self._where)
        limit = check_limit(limit, self._where)
        # positions are 1..n without gaps: position p sits at index p - 1
        return self._iterate(self._all, max(from_position - 1, 0), limit)

    def list_streams(self) -> Iterator[str]:
        with self._lock:
            names = list(self._streams)  # names only: one string per stream
        return iter(names)

    def stream_version(self, stream: str) -> int | None:
        with self._lock:
            events = self._streams.get(stream)
            return len(events) - 1 if events else None

    def last_event(self, stream: str) -> RawEvent | None:
        with self._lock:
            events = self._streams.get(stream)
            return events[-1] if events else None

    def close(self) -> None:
        """Nothing to release: the events stay readable until the store is dropped."""
