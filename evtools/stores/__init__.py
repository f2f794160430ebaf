"""Event stores: the same verbs over memory, SQLite, files, NATS JetStream, EventStoreDB.

>>> from evtools.stores import open_store, NewEvent, NO_STREAM
>>> with open_store("memory:") as store:
...     store.append("order-1", [NewEvent("OrderPlaced", b'{"id": 1}')], NO_STREAM)
0

The protocol and its promises are in :mod:`evtools.stores.base`; each store's layout in
its module. Importing this package imports neither nats-py nor esdbclient: those load
when a NATS or EventStoreDB store is opened.
"""

from __future__ import annotations

from ._open import SUPPORTED, copy, open_store, store_files
from .base import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendEvent,
    EventStore,
    Expected,
    ExpectedVersion,
    NewEvent,
)
from .esdb import EsdbStore
from .files import JsonlStore, ParquetStore
from .memory import MemoryStore
from .nats import NatsStore
from .sqlite import SqliteStore

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "SUPPORTED",
    "AppendEvent",
    "EsdbStore",
    "EventStore",
    "Expected",
    "ExpectedVersion",
    "JsonlStore",
    "MemoryStore",
    "NatsStore",
    "NewEvent",
    "ParquetStore",
    "SqliteStore",
    "copy",
    "open_store",
    "store_files",
]
