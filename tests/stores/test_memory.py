"""MemoryStore: the whole contract, in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from evtools.stores import EventStore, MemoryStore, open_store

from .contract import StoreContract

pytestmark = pytest.mark.timeout(120)


class TestMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> EventStore:
        return MemoryStore()


def test_open_store_memory() -> None:
    store = open_store("memory:")
    assert isinstance(store, MemoryStore)
    assert store.url == "memory:"
