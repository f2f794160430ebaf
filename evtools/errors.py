"""The evtools exception tree.

Every error evtools raises on purpose is an :class:`EvtoolsError`; anything else is a bug.
Errors about a particular record carry a :class:`Context` (file, stream, version, event
type, schema version, JSON path) so that a reader knows which record to open, and keep
the original driver or parser error as ``__cause__``::

    EvtoolsError
    ├── UsageError                 bad arguments or configuration (CLI exit code 2)
    ├── MissingDependency          an optional extra is not installed; says what to install
    ├── InputError                 a record or document that cannot be used as it is
    │   ├── DecodeError            not acceptable JSON: malformed, invalid UTF-8, NaN/Infinity,
    │   │                          number out of range, too deep, too large, duplicate key
    │   ├── SchemaError            valid JSON that does not fit its declared class: wrong
    │   │                          type, missing or unknown field, enum value, out of range
    │   ├── UnknownEventType       no class registered for the event type
    │   ├── UnknownSchemaVersion   the type is known, this schema version is not
    │   ├── UpcastError            upcaster chain missing a step, cyclic, or producing a
    │   │                          payload its target class rejects
    │   ├── EnvelopeError          a CloudEvents envelope or export line that is not valid
    │   └── ConsumerRejected       the consumer a dialect models rejects this document
    │                              (``.reason`` holds that consumer's own error text)
    ├── RehydrationError           a violation found while rebuilding an aggregate
    ├── FrozenAggregateError       an attempt to mutate a rebuilt (frozen) aggregate
    ├── StoreError                 a store failed; the driver error is the cause
    │   ├── ConcurrencyError       expected version did not match (another writer won)
    │   ├── StreamNotFound         reading a stream that does not exist
    │   └── StoreUnavailable       cannot reach or open the store
    ├── DialectError               a dialect could not be run (not a rejection: those are results)
    └── ProfilingError             a profiler could not run (e.g. no ptrace permission)

The CLI turns any ``EvtoolsError`` into one line on stderr and exit code 2 (1 is kept for
"the check found problems").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "ConcurrencyError",
    "ConsumerRejected",
    "Context",
    "DecodeError",
    "DialectError",
    "EnvelopeError",
    "EvtoolsError",
    "FrozenAggregateError",
    "InputError",
    "MissingDependency",
    "ProfilingError",
    "RehydrationError",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "StreamNotFound",
    "UnknownEventType",
    "UnknownSchemaVersion",
    "UpcastError",
    "UsageError",
]


@dataclass(frozen=True, slots=True)
class Context:
    """Where an error happened. Every field is optional; unknown parts are ``None``."""

    file: str | None = None
    stream: str | None = None
    version: int | None = None
    event_type: str | None = None
    schema_version: int | None = None
    path: str | None = None  # JSON Pointer (RFC 6901), e.g. "/items/0/price"
    line: int | None = None  # 1-based line in a JSONL file

    def merge(self, other: Context | None) -> Context:
        """Fill the fields this context lacks from ``other``."""
        if other is None:
            return self
        updates = {
            f.name: getattr(other, f.name)
            for f in fields(self)
            if getattr(self, f.name) is None and getattr(other, f.name) is not None
        }
        return replace(self, **updates) if updates else self

    def describe(self, said: str = "") -> str:
        """The location in words; parts already in ``said`` (the message) are left out."""
        parts = []
        if self.file is not None:
            parts.append(f"file {_one_line(self.file)}"
                         + (f":{self.line}" if self.line is not None else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.stream is not None:
            parts.append(f"stream {self.stream!r}")
        if self.version is not None:
            parts.append(f"version {self.version}")
        if self.event_type is not None:
            schema = f" v{self.schema_version}" if self.schema_version is not None else ""
            parts.append(f"type {_one_line(self.event_type)}{schema}")
        if self.path is not None:
            parts.append(f"at {_one_line(self.path) or '/'}")
        # "version 1" is not said by "version 12"
        return ", ".join(p for p in parts if not re.search(re.escape(p) + r"(?!\w)", said))


def _one_line(text: Any) -> str:
    """``text`` as it is when it prints on one line, else quoted with its escapes (a type
    or a key with a line break in it must not break an error's one line)."""
    text = str(text)
    return text if text.isprintable() else repr(text)


class EvtoolsError(Exception):
    """Root of every error evtools raises on purpose."""

    def __init__(self, message: str, context: Context | None = None, **where: Any) -> None:
        self.message = message
        self.context = (context or Context()).merge(Context(**where) if where else None)
        super().__init__(message)

    def with_context(self, context: Context | None = None, **where: Any) -> EvtoolsError:
        """Add location details this error does not have yet; returns ``self``."""
        extra = (context or Context()).merge(Context(**where) if where else None)
        self.context = self.context.merge(extra)
        return self

    def __str__(self) -> str:
        where = self.context.describe(self.message)
        return f"{self.message} ({where})" if where else self.message


class UsageError(EvtoolsError):
    """Bad arguments or configuration."""


class MissingDependency(EvtoolsError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        if extra == "torch":  # the bare name (and so the extra) pulls gigabytes of CUDA
            how = ("install it first, alone: pip install torch==2.13.0 (a CPU build where "
                   "pip offers one; see the README), then pip install 'evtools[torch]'")
        else:
            how = f"install it with: pip install 'evtools[{extra}]'"
        super().__init__(f"{module} is not installed; {how}")
        self.module = module
        self.extra = extra


class InputError(EvtoolsError):
    """A record or document that cannot be used as it is."""


class DecodeError(InputError):
    """Not acceptable JSON."""


class SchemaError(InputError):
    """Valid JSON that does not fit its declared class."""


class UnknownEventType(InputError):
    """No class is registered for this event type."""


class UnknownSchemaVersion(InputError):
    """The event type is known but this schema version is not."""


class UpcastError(InputError):
    """An upcaster chain is incomplete, cyclic, or produced a payload its class rejects."""


class EnvelopeError(InputError):
    """A CloudEvents envelope or export record that is not valid."""


class ConsumerRejected(InputError):
    """The consumer a dialect models rejects this document.

    ``reason`` is the text that consumer itself prints (Go's or V8's error message), so a
    dialect's verdict can be compared with the real program's byte for byte.
    """

    def __init__(self, reason: str, dialect: str = "", context: Context | None = None,
                 **where: Any) -> None:
        super().__init__(f"{dialect} rejects the document: {reason}" if dialect else reason,
                         context, **where)
        self.reason = reason
        self.dialect = dialect


class RehydrationError(EvtoolsError):
    """A violation found while rebuilding an aggregate (``strict`` policy)."""

    def __init__(self, message: str, violation: Any = None, context: Context | None = None,
                 **where: Any) -> None:
        super().__init__(message, context, **where)
        self.violation = violation


class FrozenAggregateError(EvtoolsError, AttributeError):
    """An attempt to mutate a frozen aggregate."""


class StoreError(EvtoolsError):
    """A store failed; the driver error is the ``__cause__``."""


class ConcurrencyError(StoreError):
    """The expected version did not match: another writer appended first."""

    def __init__(self, message: str, expected: Any = None, actual: int | None = None,
                 context: Context | None = None, **where: Any) -> None:
        super().__init__(message, context, **where)
        self.expected = expected
        self.actual = actual


class StreamNotFound(StoreError):
    """The stream does not exist."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened."""


class DialectError(EvtoolsError):
    """A dialect could not be run."""


class ProfilingError(EvtoolsError):
    """A profiler could not run."""
