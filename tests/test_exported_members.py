"""Lock the public facade: a change to ``evtools.__all__`` must be deliberate."""

from __future__ import annotations

import subprocess
import sys

import evtools

EXPECTED = [
    "Aggregate", "ConcurrencyError", "DIALECTS", "DecimalText", "EvtoolsError", "FaultRates",
    "InputError",
    "Int64", "RawEvent", "Registry", "RehydrationError", "SPEEDUPS", "Timestamp", "UInt64",
    "__version__", "audit", "from_cloudevent", "generate", "get_dialect", "handles",
    "invariant", "naive_rehydrate", "open_store", "read_source", "rehydrate", "state_diff",
    "take_snapshot", "to_cloudevent",
]


def test_all_is_locked() -> None:
    assert sorted(evtools.__all__) == sorted(EXPECTED)
    assert sorted(evtools._EXPORTS) == sorted(set(EXPECTED) - {"__version__"})


def test_every_exported_name_resolves() -> None:
    for name in evtools.__all__:
        assert getattr(evtools, name) is not None, name


def test_import_is_light() -> None:
    heavy = ["torch", "memray", "nats", "esdbclient", "matplotlib", "papermill", "pandas",
             "polars"]
    code = ("import sys, evtools, evtools.dialects, evtools.registry, evtools.events; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_functions_named_like_modules_stay_functions() -> None:
    # importing the module a facade name lives in must not shadow the name
    code = ("import evtools.rehydration, evtools; from evtools import rehydrate, "
            "naive_rehydrate; print(callable(rehydrate), type(rehydrate).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True function"
