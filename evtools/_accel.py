"""The optional C module ``evtools._speedups``, where it was built (private).

It holds the hot paths of typed rehydration (see ``evtools/_speedups.c``): the msgspec
``dec_hook`` that builds a :class:`~evtools.scalars.Timestamp` from plain RFC 3339 text,
the exact duplicate-key scan, and the common case of ``Rehydration.feed_all``. Each has a
Python twin that gives the same answers; ``pip install`` builds the module where a C
compiler is found and goes on without it elsewhere. :data:`SPEEDUPS` says which ran, and
benchmarks record it.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["SPEEDUPS", "speedups"]

speedups: ModuleType | None
try:
    from . import _speedups as speedups
except ImportError:  # built without a C compiler: the Python twins run
    speedups = None

#: Whether the C speed-ups are in use.
SPEEDUPS: bool = speedups is not None
