"""The ``polars`` dialect: a batch of events loaded into a polars DataFrame and written back.

What it models, by running the installed polars (nothing here hard-codes what polars does):

``mode="from_dicts"`` (default)
    each document through ``json.loads`` (floats become binary, ``NaN`` accepted, a
    repeated key keeps its last value), then ``pl.from_dicts(records)`` with polars' own
    schema inference (``infer_schema_length`` defaults to polars' default, 100 rows).
``mode="read_ndjson"``
    the documents as JSON lines through ``pl.read_ndjson``, polars' own parser, with the
    same default inference.

Back: ``df.to_dicts()`` is what polars holds (``decode``); ``df.write_ndjson()`` is what it
writes. Nested objects are ``Struct`` columns, so they come back nested as they went in.

What polars does with values that do not fit the schema it inferred from the first rows
is whatever the installed version does; on polars 2.1 (observed, not assumed): a float
after 100 integer rows is silently truncated to an integer, a key first seen after row
100 is silently dropped, a string after 100 integer rows raises for the whole batch, an
integer beyond int64 makes an ``Int128`` column (or raises after 100 int64 rows), and
``read_ndjson`` raises where ``from_dicts`` coerces. polars 2.2 is the same except that
``from_dicts`` raises for a key first seen after row 100 ("extra key in dict 100"),
losing the batch, where ``read_ndjson`` now drops it silently.

Rejections: a document ``json.loads`` refuses, or that is not a JSON object (polars takes
one object per row), is rejected on its own; so is one nested deeper than 256 levels, which
evtools does not hand polars (observed on polars 2.1: its memory grows with the cube of the
depth, about 1 GB at 400 levels and 7 GB at 800, and 1,000 levels, which ``json.loads``
accepts from Python 3.12 on, take the process down). When polars raises for a batch, the whole
batch is lost, as it is for the user who loaded it: every document of it is rejected with
polars' error text (bisecting to a culprit would change what polars infers from the
remaining rows, so it would no longer model the user's load).
"""

from __future__ import annotations

import io
from typing import Any, ClassVar, Literal

from ..errors import MissingDependency, UsageError
from ._frames import FrameDialect

__all__ = ["PolarsDialect"]

Mode = Literal["from_dicts", "read_ndjson"]
_MODES: tuple[str, ...] = ("from_dicts", "read_ndjson")


def _polars() -> Any:
    try:
        import polars
    except ImportError as e:  # pragma: no cover - polars is a core dependency
        raise MissingDependency("polars", "all") from e
    return polars


class PolarsDialect(FrameDialect):
    """polars loading a batch of events and writing it back (see the module docstring)."""

    name: ClassVar[str] = "polars"
    lines_mode: ClassVar[str] = "read_ndjson"
    max_depth: ClassVar[int | None] = 256

    def __init__(self, mode: Mode = "from_dicts", *,
                 infer_schema_length: int | Literal["default"] | None = "default") -> None:
        if mode not in _MODES:
            raise UsageError(f"unknown polars mode {mode!r}; choose from {', '.join(_MODES)}")
        self.mode: Mode = mode
        #: passed to polars as is ("default": polars' own default; None: every row)
        self.infer_schema_length = infer_schema_length
        self._pl = _polars()

    def __repr__(self) -> str:
        return f"<PolarsDialect 'polars' mode={self.mode!r} polars={self._pl.__version__}>"


    def encode(self, value: Any) -> bytes:
        """What ``write_ndjson`` writes for one record (a one-row frame)."""
        self._refuse_deep_value(value)
        frame = self._pl.from_dicts([value], **self._options())
        return self._write(frame, 1)[0]





    def _options(self) -> dict[str, Any]:
        if self.infer_schema_length == "default":
            return {}
        return {"infer_schema_length": self.infer_schema_length}

    def _run(self, lines: list[bytes], records: list[Any], n: int) -> list[tuple[Any, bytes]]:
        pl = self._pl
        if self.mode == "read_ndjson":
            frame = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), **self._options())
        else:
            frame = pl.from_dicts(records, **self._options())
        if frame.height != n:
            raise ValueError(f"polars made {frame.height} rows of {n} documents")
        return list(zip(frame.to_dicts(), self._write(frame, n), strict=True))

    def _write(self, frame: Any, rows: int) -> list[bytes]:
        text = frame.write_ndjson()
        lines = text.rstrip("\n").split("\n") if rows else []
        if len(lines) != rows:
            raise ValueError(f"write_ndjson wrote {len(lines)} lines for {rows} rows")
        return [line.encode("utf-8") for line in lines]

