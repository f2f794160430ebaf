"""evtools._checks: counts checked at the door."""

from __future__ import annotations

import numpy as np
import pytest

from evtools._checks import count
from evtools.errors import UsageError


def test_a_count_is_an_int_in_range_and_nothing_else() -> None:
    assert count(3, "n") == 3 and count(np.int64(7), "n") == 7 and count(0, "n", 0) == 0
    assert type(count(np.int16(2), "n")) is int
    for bad in (True, 2.0, "3", None, 0, -1):
        with pytest.raises(UsageError, match=r"^n must be an int >= 1, got "):
            count(bad, "n")
    with pytest.raises(UsageError, match=r"rate must be an int in 1\.\.1,000,000, got 10000000"):
        count(10_000_000, "rate", 1, 1_000_000)


def test_seconds_are_finite_and_not_negative() -> None:
    from evtools._checks import seconds

    assert seconds(0, "t") == 0.0 and seconds(2, "t") == 2.0 and seconds(0.5, "t") == 0.5
    for bad in (float("nan"), float("inf"), -1, True, "5", None):
        with pytest.raises(UsageError, match=r"^t must be a finite number of seconds 0 or"):
            seconds(bad, "t")
    with pytest.raises(UsageError, match=r"^t must be a finite number of seconds above 0"):
        seconds(0, "t", above_zero=True)
