"""What every benchmark records about the machine and the versions it ran with."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["machine", "versions"]


def machine() -> dict[str, Any]:
    """Platform, CPU model, CPUs available to this process and the load when it started."""
    from evtools._machine import cpu_model

    model = cpu_model()
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 0
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(), "cpu_model": model,
            "cpu_count": os.cpu_count(), "cpus_available": available,
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def versions(*packages: str) -> dict[str, str]:
    """Python and the installed version of each package ("not installed" when absent)."""
    out = {"python": platform.python_version(),
           "implementation": platform.python_implementation()}
    for name in ("evtools", "msgspec", "polars", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    from evtools._accel import SPEEDUPS

    out["evtools_speedups"] = "C (evtools._speedups)" if SPEEDUPS else "pure Python"
    return out
