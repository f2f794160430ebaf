"""``open_store(url)`` and ``copy(source, dest)`` (re-exported by ``evtools.stores``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ..errors import ConcurrencyError, StoreError, StoreUnavailable, UsageError
from ..events import RawEvent
from .base import NO_STREAM, EventStore, redact_url

__all__ = ["SUPPORTED", "copy", "open_store", "store_files"]

log = logging.getLogger(__name__)

SUPPORTED = (
    "memory:",
    "sqlite:///path.db (also sqlite:////absolute/path.db, sqlite:///:memory:, path.db; "
    "options: ?mode=ro&timeout=5)",
    "nats://host:port/STREAM (options: ?prefix=events&replicas=1&create=true)",
    "esdb://host:2113?tls=false (also esdb+discover://, kurrentdb://)",
    "path.jsonl or path.parquet (files: mode='r' to import, 'w' or 'a' to export)",
)

_FILE_SUFFIXES = (".jsonl", ".ndjson", ".parquet")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_ESDB_SCHEMES = ("esdb://", "esdb+discover://", "kurrentdb://", "kurrentdb+discover://")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"option {name}={value!r} is not a boolean")


def _db_mode(mode: str | None, url: str) -> dict[str, Any]:
    if mode is None:
        return {}
    if mode == "w":
        raise UsageError(f"{url}: mode 'w' (truncate) is only for files; use 'a' to append "
                         f"to a database or 'r' to read it")
    return {"mode": mode}


def open_store(url: str, *, mode: str | None = None, create: bool | None = None,
               **options: Any) -> EventStore:
    """Open the store ``url`` names (the forms are in :data:`SUPPORTED`).

    ``mode``: ``"r"`` read-only, ``"a"`` read and append (the default for databases),
    ``"w"`` create or truncate (files only; files default to ``"r"``). ``create=True``
    asks for a writable store that is created when missing, whatever its kind: a file
    opens with ``"a"`` (a destination for ``copy``), a SQLite file or JetStream stream is
    created; ``create=False`` refuses to create a missing SQLite file or JetStream stream.
    ``options`` go to the store's constructor (e.g. ``timeout=``, ``prefix=`` for NATS,
    ``format="flat"`` for JSONL). Unknown schemes raise
    :class:`~evtools.errors.UsageError` listing the supported ones.
    """
    if create is not None and mode == "r":
        raise UsageError(f"{url}: create= and mode='r' contradict each other")
    if not isinstance(url, str) or not url:
        raise UsageError(f"a store URL is a non-empty string, got {url!r}")
    lowered = url.lower()
    shown = redact_url(url)  # what messages show: never a password in the URL
    try:
        if lowered in ("memory:", "memory://"):
            from .memory import MemoryStore

            if mode == "r":
                raise UsageError("memory: cannot be opened read-only (it starts empty)")
            if mode not in (None, "a", "w"):
                raise UsageError(f"{url}: mode must be 'a' or 'w', got {mode!r}")
            return MemoryStore(**options)
        if lowered.startswith("sqlite:"):
            from .sqlite import path_from_url

            path = path_from_url(url)
            mode = _sqlite_options(url.partition("?")[2], shown, mode, create, options)
            return _sqlite(path, url, mode, create, options)
        if lowered.startswith("nats://"):
            from .nats import NatsStore, parse_nats_url

            servers, stream, query = parse_nats_url(url)
            opts: dict[str, Any] = {}
            for key, value in query.items():
                if key in ("replicas", "batch_size"):
                    opts[key] = int(value)
                elif key in ("timeout", "retry_for", "duplicate_window"):
                    opts[key] = float(value)
                elif key == "create":
                    opts[key] = _bool(value, key)
                elif key == "prefix":
                    opts[key] = value
                else:
                    raise UsageError(f"{shown}: unknown NATS option {key!r} (prefix, replicas, "
                                     f"create, timeout, retry_for, batch_size, "
                                     f"duplicate_window)")
            opts.update(options)
            if create is not None:
                opts["create"] = create
            return NatsStore(servers, stream, **_db_mode(mode, shown), **opts)
        if lowered.startswith(_ESDB_SCHEMES):
            from .esdb import EsdbStore

            return EsdbStore(url, **_db_mode(mode, shown), **options)
        if "://" not in url:
            suffix = Path(url).suffix.lower()
            if suffix in _FILE_SUFFIXES:
                from .files import file_store_for

                if mode not in (None, "r", "w", "a"):
                    raise UsageError(f"{url}: mode must be 'r', 'w' or 'a', got {mode!r}")
                file_mode = mode or ("a" if create else "r")
                return file_store_for(url, file_mode, **options)  # type: ignore[arg-type]
            if suffix in _SQLITE_SUFFIXES:
                return _sqlite(url, url, mode, create, options)
    except TypeError as e:  # an option the store does not take
        raise UsageError(f"{shown}: {e}") from e
    except ValueError as e:  # a malformed number in the URL's options
        raise UsageError(f"{shown}: bad option value: {e}") from e
    raise UsageError(f"unsupported store {shown!r}; supported: " + "; ".join(SUPPORTED))


def store_files(url: str) -> list[Path]:
    """The files the store ``url`` lives in, as :func:`open_store` reads the URL: a SQLite
    database with the journal files SQLite keeps beside it, or an export file; none for a
    server, ``memory:``, ``:memory:`` or a URL :func:`open_store` does not take."""
    lowered = url.lower() if isinstance(url, str) else ""
    path: str | None = None
    if lowered.startswith("sqlite:"):
        from .sqlite import path_from_url

        try:
            path = path_from_url(url)
        except UsageError:  # open_store says what is wrong with it
            return []
    elif lowered and "://" not in url and not lowered.startswith("memory:"):
        suffix = Path(url).suffix.lower()
        if suffix in _FILE_SUFFIXES:
            return [Path(url)]
        if suffix in _SQLITE_SUFFIXES:
            path = url
    if path is None or path == ":memory:":
        return []
    base = Path(path)
    return [base, *(base.with_name(base.name + s) for s in ("-wal", "-shm", "-journal"))]


_SQLITE_MODES = {"r": "r", "ro": "r", "a": "a", "rw": "a", "rwc": "a"}


def _sqlite_options(query: str, shown: str, mode: str | None, create: bool | None,
                    options: dict[str, Any]) -> str | None:
    """Take the options of a SQLite URL's query (``mode=ro``, ``timeout=5``) into
    ``options``; return the mode. An option the store does not know is refused rather
    than dropped (``?mode=ro`` had opened the database for writing)."""
    url_mode: str | None = None
    written = ""  # the mode as the URL writes it
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "mode":
            if value not in _SQLITE_MODES or url_mode not in (None, _SQLITE_MODES[value]):
                raise UsageError(f"{shown}: option mode={value!r} is not one mode of r "
                                 f"(or ro) and a (or rw, rwc)")
            url_mode, written = _SQLITE_MODES[value], value
        elif key == "timeout":
            options.setdefault("timeout", float(value))
        else:
            raise UsageError(f"{shown}: unknown SQLite option {key!r} (mode, timeout)")
    if url_mode is None:
        return mode
    if (mode is not None and mode != url_mode) or (create is not None and url_mode == "r"):
        wanted = ("opens it read-only" if mode == "r" else "writes to it" if mode is not None
                  else "may create it")
        raise UsageError(f"{shown}: the URL says mode={written} ("
                         f"{'read-only' if url_mode == 'r' else 'read and write'}), and this "
                         f"command {wanted}: remove the option, or change it")
    return url_mode


def _sqlite(path: str, url: str, mode: str | None, create: bool | None,
            options: dict[str, Any]) -> EventStore:
    from .sqlite import SqliteStore

    if create is False and path != ":memory:" and not Path(path).is_file():
        raise StoreUnavailable(f"{url}: no such database file (create=False)", file=path)
    return SqliteStore(path, **_db_mode(mode, url), **options)


def copy(source: EventStore, dest: EventStore, *,
         progress: Callable[[int], None] | None = None, batch_size: int = 1000,
         check_first: bool = True) -> int:
    """Copy every event of ``source`` into ``dest`` in global order; return the count.

    Stream, version, type, data, metadata, id, schema version and content type are kept
    (and ``recorded_at`` where ``dest`` keeps producer times). An event without a time or
    with an empty id is copied as it is: events are appended as the ``RawEvent`` they are,
    whose absent values a store keeps (SQLite, memory, Parquet; JSONL and NATS a missing
    time) or refuses (NATS and EventStoreDB need an id), never invents, so that two copies
    of one store are the same. Versions are kept exactly:
    each stream must start at version 0 in ``source`` and must not exist in ``dest``
    (otherwise :class:`~evtools.errors.StoreError`). With ``check_first`` (the default)
    ``source`` is read once before anything is appended, so a gap in the source, a stream
    already in ``dest``, an event ``dest`` cannot hold (its
    :meth:`~evtools.stores.base.EventStore.check_appendable`: a name too long, an event too
    big, an id it needs and the event lacks: a :class:`~evtools.errors.UsageError`) or,
    for a ``dest`` that keeps one event per id (NATS, EventStoreDB: its ``unique_ids``), an
    id the source holds twice (a duplicate delivery, which ``dest`` would drop:
    :class:`~evtools.errors.StoreError`) leaves ``dest`` untouched rather than half written.
    The check keeps one integer per stream, and, for such a ``dest``, each event id once
    (memory grows with the number of events). Consecutive events of one stream go in one
    ``append`` of up to ``batch_size`` events. ``progress`` is called with the running
    count after each append. At the end every copied stream's version in ``dest`` is
    checked against ``source``; a mismatch raises ``StoreError``.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size!r}")
    if check_first:
        _check_copyable(source, dest)
    last: dict[str, int] = {}  # stream -> last version copied (one int per stream)
    run: list[RawEvent] = []
    copied = 0

    def flush() -> None:
        nonlocal copied
        if not run:
            return
        stream = run[0].stream
        first = run[0].version
        expected = NO_STREAM if first == 0 else first - 1
        try:
            new_last = dest.append(stream, run, expected)
        except ConcurrencyError as e:
            raise StoreError(f"copy {source.url} -> {dest.url}: stream {stream!r} already "
                             f"exists in the destination (at {e.actual}); copy into an "
                             f"empty store", stream=stream, version=first) from e
        if new_last != run[-1].version:
            raise StoreError(f"copy {source.url} -> {dest.url}: stream {stream!r} got version "
                             f"{new_last}, expected {run[-1].version}", stream=stream,
                             version=run[-1].version)
        copied += len(run)
        run.clear()
        if progress is not None:
            progress(copied)

    for event in source.read_all():
        last[event.stream] = _next_version(source, dest, last, event)
        if run and (run[0].stream != event.stream or len(run) >= batch_size):
            flush()
        run.append(event)
    flush()

    in_dest = 0
    for stream, version in last.items():
        got = dest.stream_version(stream)
        if got != version:
            raise StoreError(f"copy {source.url} -> {dest.url}: stream {stream!r} ends at "
                             f"version {got} in the destination, {version} in the source",
                             stream=stream, version=version)
        in_dest += got + 1
    if in_dest != copied:
        raise StoreError(f"copy {source.url} -> {dest.url}: copied {copied} events but the "
                         f"destination holds {in_dest} in those streams")
    log.info("copied %d events in %d streams from %s to %s", copied, len(last), source.url,
             dest.url)
    return copied


def _repeated_id(source: EventStore, dest: EventStore, event: RawEvent) -> StoreError:
    """The error for an id the source holds twice, naming both events."""
    first = next((e for e in source.read_all() if e.id == event.id), None)
    earlier = ("an earlier event" if first is None else
               f"stream {first.stream!r} version {first.version}")
    return StoreError(
        f"copy {source.url} -> {dest.url}: event id {event.id!r} is used by two events of "
        f"the source ({earlier} and stream {event.stream!r} version {event.version}: a "
        f"duplicate delivery, say); {dest.unique_ids}, so the copy could not hold both: "
        f"copy into a store that keeps them (SQLite, memory, files) (nothing was copied)",
        stream=event.stream, version=event.version)


def _next_version(source: EventStore, dest: EventStore, last: dict[str, int],
                  event: RawEvent, note: str = "") -> int:
    """``event``'s version when it follows the last one seen in its stream, else the
    ``StoreError`` saying that the versions cannot be kept."""
    previous = last.get(event.stream, -1)
    if event.version != previous + 1:
        what = (f"starts at version {event.version}, not 0" if previous < 0 else
                f"jumps from version {previous} to {event.version}")
        raise StoreError(f"copy {source.url} -> {dest.url}: stream {event.stream!r} {what}; "
                         f"a store numbers what it appends from 0 without gaps, so the "
                         f"versions cannot be kept{note}", stream=event.stream,
                         version=event.version)
    return event.version


def _check_copyable(source: EventStore, dest: EventStore) -> None:
    """Everything :func:`copy` refuses, found before it appends anything."""
    last: dict[str, int] = {}
    ids: set[str] | None = set() if dest.unique_ids else None
    for event in source.read_all():
        last[event.stream] = _next_version(source, dest, last, event,
                                           " (nothing was copied)")
        try:
            dest.check_appendable(event.stream, event, event.version)
        except UsageError as e:
            said = e.message.removeprefix(f"{dest.url}: ")
            raise UsageError(f"copy {source.url} -> {dest.url}: {said} (nothing was copied)",
                             e.context) from e
        if ids is not None:
            if event.id in ids:
                raise _repeated_id(source, dest, event)
            ids.add(event.id)
    for stream in last:
        there = dest.stream_version(stream)
        if there is not None:
            raise StoreError(f"copy {source.url} -> {dest.url}: stream {stream!r} already "
                             f"exists in the destination (at {there}); copy into an empty "
                             f"store (nothing was copied)", stream=stream)
