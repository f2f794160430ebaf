"""Hypothesis profiles for the whole suite.

* ``evtools`` (loaded by default): no deadline. Hypothesis fails an example that takes
  longer than 200 ms, which on a shared, loaded CI machine is a timing assertion; the
  suite makes none. Each run still draws new random examples, and ``print_blob`` puts
  the line that replays a failure into its report.
* ``fuzz`` (``pytest --hypothesis-profile=fuzz``, or ``make fuzz``): 20x the examples of
  every property that does not fix its own count, with hypothesis' example database kept
  in ``.hypothesis/`` so a failure found once is tried first next time.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("evtools", deadline=None, print_blob=True)
settings.register_profile("fuzz", parent=settings.get_profile("evtools"), max_examples=2000)
settings.load_profile("evtools")
