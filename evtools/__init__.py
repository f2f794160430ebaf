"""evtools: reproduce, audit and fix the state untyped event consumers silently lose.

The names a notebook needs are here; everything else is importable from its module.
Names load on first use, so ``import evtools`` stays light: it never imports torch,
memray, nats, esdbclient, matplotlib or papermill.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "EvtoolsError": "errors",
    "InputError": "errors",
    "RehydrationError": "errors",
    "ConcurrencyError": "errors",
    # the event core
    "RawEvent": "events",
    "to_cloudevent": "events",
    "from_cloudevent": "events",
    "Timestamp": "scalars",
    "DecimalText": "scalars",
    "Int64": "scalars",
    "UInt64": "scalars",
    "Registry": "registry",
    # dialects and the audit
    "get_dialect": "dialects",
    "DIALECTS": "dialects",
    "audit": "fidelity",
    "state_diff": "fidelity",
    "read_source": "fidelity",
    # aggregates and rehydration
    "Aggregate": "aggregate",
    "handles": "aggregate",
    "invariant": "aggregate",
    "rehydrate": "rehydration",
    "naive_rehydrate": "rehydration",
    "take_snapshot": "rehydration",
    # workloads and stores
    "generate": "datagen",
    "FaultRates": "datagen",
    "open_store": "stores",
    # whether the C speed-ups (evtools/_speedups.c) were built and are in use
    "SPEEDUPS": "_accel",
}

__all__ = [
    "DIALECTS",
    "SPEEDUPS",
    "Aggregate",
    "ConcurrencyError",
    "DecimalText",
    "EvtoolsError",
    "FaultRates",
    "InputError",
    "Int64",
    "RawEvent",
    "Registry",
    "RehydrationError",
    "Timestamp",
    "UInt64",
    "__version__",
    "audit",
    "from_cloudevent",
    "generate",
    "get_dialect",
    "handles",
    "invariant",
    "naive_rehydrate",
    "open_store",
    "read_source",
    "rehydrate",
    "state_diff",
    "take_snapshot",
    "to_cloudevent",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evtools' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # next time, no __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._accel import SPEEDUPS
    from .aggregate import Aggregate, handles, invariant
    from .datagen import FaultRates, generate
    from .dialects import DIALECTS, get_dialect
    from .errors import ConcurrencyError, EvtoolsError, InputError, RehydrationError
    from .events import RawEvent, from_cloudevent, to_cloudevent
    from .fidelity import audit, read_source, state_diff
    from .registry import Registry
    from .rehydration import naive_rehydrate, rehydrate, take_snapshot
    from .scalars import DecimalText, Int64, Timestamp, UInt64
    from .stores import open_store
