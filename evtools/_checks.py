"""Arguments checked at the door: a bad one is a :class:`~evtools.errors.UsageError` naming
it, before any work starts."""

from __future__ import annotations

import operator
from typing import Any

from .errors import UsageError


def count(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (a numpy integer too) in ``minimum..maximum``, or a
    :class:`UsageError` naming ``name``: a bool or a float is not a count."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        wanted = (f"an int >= {minimum}" if maximum is None
                  else f"an int in {minimum}..{maximum:,}")
        raise UsageError(f"{name} must be {wanted}, got {value!r}")
    return number
