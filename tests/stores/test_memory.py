"""MemoryStore: the whole contract, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from evtools.stores import EventStore, MemoryStore, NewEvent, memory, open_store

from .contract import StoreContract

pytestmark = pytest.mark.timeout(120)


class TestMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> EventStore:
        return MemoryStore()


def test_open_store_memory() -> None:
    store = open_store("memory:")
    assert isinstance(store, MemoryStore)
    assert store.url == "memory:"


def test_reads_stop_at_the_head_as_it_was_across_pages() -> None:
    """Reads hand out pages of 1024 events; what is appended while one iterates, past
    the page it is in, is left for the next read."""
    for read in ("read_stream", "read_all"):
        store = MemoryStore()
        store.append("s", [NewEvent("A", b"{}") for _ in range(1500)])
        it = store.read_stream("s") if read == "read_stream" else store.read_all()
        seen = [next(it) for _ in range(10)]
        store.append("s", [NewEvent("B", b"{}") for _ in range(1500)])
        seen += list(it)
        assert [e.type for e in seen] == ["A"] * 1500
        assert store.stream_version("s") == 2999


def test_the_module_docstring_says_what_reads_do() -> None:
    """It had said that a reader sees the events appended while it iterates: reads stop
    at the head as it was when they were called."""
    doc = memory.__doc__ or ""
    assert "sees events appended while it iterates" not in doc
    assert "stop at the head as it was when the read was called" in doc
