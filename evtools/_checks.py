"""Arguments checked at the door: a bad one is a :class:`~evtools.errors.UsageError` naming
it, before any work starts."""

from __future__ import annotations

import math
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


def seconds(value: Any, name: str, *, above_zero: bool = False) -> float:
    """``value`` as a finite number of seconds (0 or more; ``above_zero``: more than 0), or
    a :class:`UsageError` naming ``name``: NaN or infinity would never be reached, and a
    loop timed by it would not end."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0 or (above_zero and value == 0):
        raise UsageError(f"{name} must be a finite number of seconds "
                         f"{'above 0' if above_zero else '0 or more'}, got {value!r}")
    return float(value)
