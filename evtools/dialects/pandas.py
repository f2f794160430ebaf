"""The ``pandas`` dialect: a batch of events loaded into a DataFrame and written back.

What it models, by running the installed pandas (nothing here hard-codes what pandas does,
so the audit tells the truth for the user's version). Three ways users load events:

``mode="records"`` (default)
    each document through ``json.loads`` (the stdlib: floats become binary, ``NaN`` is
    accepted, a repeated key keeps its last value), then ``pd.json_normalize(records)``.
    Nested objects become columns (joined with a private separator, so that keys
    containing ``.`` stay unambiguous); arrays stay Python objects in their cell.
``mode="dataframe"``
    the same records through ``pd.DataFrame(records)``: nested objects stay in their cell.
``mode="read_json"``
    the documents as JSON lines through ``pd.read_json(..., lines=True)``, which parses
    with pandas' own reader and guesses types: dates from column names (``*_at``,
    ``date``, ``modified``...), numeric strings to numbers, integral floats to ints.

Then back, the way users write events out: ``df.to_json(orient="records", lines=True)``
(its defaults: 10 significant digits for floats, ``/`` escaped, non-ASCII as ``\\uHHHH``,
datetimes as epoch milliseconds, NaN as ``null``). Column names are split back into nested
paths so the audit can compare path by path. ``decode`` gives the values pandas holds
(``df.to_dict("records")``: ``NaN`` for a missing number, ``Timestamp`` for a parsed date),
un-flattened the same way.

Every row carries every column of its batch: a field a document did not have comes back
as ``NaN``/``null`` (the audit does not count such additions). A cell that is missing
(``NaN``/``None``) under a name that is also the prefix of a present nested column is left
out when un-flattening, since one path cannot hold both.

Rejections: a document that ``json.loads`` refuses, or that is not a JSON object, is
rejected on its own. When pandas itself raises for a batch (``read_json`` on an integer
beyond uint64: ``Value is too big!``), the whole batch is lost, as it is for the user:
every document of it is rejected with pandas' error text.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from ..errors import DecodeError, MissingDependency, UsageError
from ._frames import FrameDialect
from .python import dumps, loads

__all__ = ["PandasDialect"]

Mode = Literal["records", "dataframe", "read_json"]
_MODES: tuple[str, ...] = ("records", "dataframe", "read_json")
#: joins nested keys in ``records`` mode; a control character no real key contains
SEP = "\x1f"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - pandas is a core dependency
        raise MissingDependency("pandas", "all") from e
    return pandas


class PandasDialect(FrameDialect):
    """pandas loading a batch of events and writing it back (see the module docstring)."""

    name: ClassVar[str] = "pandas"
    lines_mode: ClassVar[str] = "read_json"

    def __init__(self, mode: Mode = "records") -> None:
        if mode not in _MODES:
            raise UsageError(f"unknown pandas mode {mode!r}; choose from {', '.join(_MODES)}")
        self.mode: Mode = mode
        self._pd = _pandas()

    def __repr__(self) -> str:
        return f"<PandasDialect 'pandas' mode={self.mode!r} pandas={self._pd.__version__}>"

    # -- the verbs -------------------------------------------------------------------------


    def encode(self, value: Any) -> bytes:
        """What ``to_json`` writes for one record (a one-row frame, nested keys joined)."""
        pd = self._pd
        if self.mode == "records" and isinstance(value, dict):
            frame = pd.json_normalize([value], sep=SEP)
        else:
            frame = pd.DataFrame([value])
        return self._write(frame, 1)[0]





    # -- the library -----------------------------------------------------------------------

    def _run(self, lines: list[bytes], records: list[Any], n: int) -> list[tuple[Any, bytes]]:
        with warnings.catch_warnings():  # pandas' notices of future defaults, not results
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return self._load_and_write(lines, records, n)

    def _load_and_write(self, lines: list[bytes], records: list[Any],
                        n: int) -> list[tuple[Any, bytes]]:
        pd = self._pd
        if self.mode == "read_json":
            frame = pd.read_json(io.BytesIO(b"\n".join(lines)), lines=True)
        elif self.mode == "records":
            frame = pd.json_normalize(records, sep=SEP)
        else:
            frame = pd.DataFrame(records)
        if len(frame) != n:
            raise ValueError(f"pandas made {len(frame)} rows of {n} documents")
        held = [_unflatten(row, _is_missing_cell) if self.mode == "records" else row
                for row in frame.to_dict("records")]
        return list(zip(held, self._write(frame, n), strict=True))

    def _write(self, frame: Any, rows: int) -> list[bytes]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            text = frame.to_json(orient="records", lines=True)
        if rows and not len(frame.columns):
            # every document was {} or held only empty objects: pandas writes one empty
            # line for the whole frame, whatever its rows, and those events vanish
            return [b""] * rows
        lines = text.rstrip("\n").split("\n") if rows else []
        if len(lines) != rows:
            raise ValueError(f"to_json wrote {len(lines)} lines for {rows} rows")
        if self.mode != "records":
            return [line.encode("utf-8") for line in lines]
        out = []
        for line in lines:
            try:
                record = loads(line, strict=False, allow_nonfinite=True, check_duplicates=False)
            except DecodeError as e:  # pragma: no cover - to_json writes JSON
                raise ValueError(f"to_json wrote something that is not JSON: {e}") from e
            out.append(dumps(_unflatten(record, _is_null)))
        return out



def _is_null(value: Any) -> bool:
    return value is None


def _is_missing_cell(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is float:
        return math.isnan(value)
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | dict) else False
    except (TypeError, ValueError):
        return False


def _unflatten(row: dict[str, Any], missing: Callable[[Any], bool]) -> dict[str, Any]:
    """``{"a<SEP>b": 1}`` -> ``{"a": {"b": 1}}``. Where one path would have to hold both a
    value and an object (columns ``a`` and ``a<SEP>b`` from different documents), the
    missing cell gives way: it is the batch's filler, not this document's field."""
    if not any(SEP in k for k in row):
        return row
    out: dict[str, Any] = {}
    for key, value in row.items():
        parts = key.split(SEP)
        node = out
        for part in parts[:-1]:
            child = node.get(part, _ABSENT)
            if child is _ABSENT:
                child = node[part] = {}
            elif not isinstance(child, dict):
                if missing(value) or not missing(child):
                    break
                child = node[part] = {}
            node = child
        else:
            last = parts[-1]
            if isinstance(node.get(last), dict) and missing(value):
                continue
            node[last] = value
    return out


_ABSENT = object()
