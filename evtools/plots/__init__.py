"""Plots: matplotlib functions ``(result, ax=None, ...) -> Axes``, one module per area.

Every figure has a title, axis labels with units and a one-sentence caption saying what it
shows (:func:`~evtools.plots._style.finish`). Nothing here touches ``rcParams``; matplotlib
is imported only when a plot is drawn.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["fidelity", "inference", "profiling", "rehydration", "summary"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(name)
