"""The batch verb shared by the DataFrame dialects (pandas, polars)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from ..errors import ConsumerRejected, DecodeError
from ._base import ColumnarDialect
from .python import as_json_line, batch_error, load_record, may_nest, nesting_depth

__all__ = ["FrameDialect"]


class FrameDialect(ColumnarDialect):
    """A DataFrame library loading a batch of documents, either as decoded records or (in
    ``lines_mode``) as JSON lines it parses itself, and writing the frame back.

    A document that is not JSON is rejected on its own; when the library raises for the
    batch, that error is the verdict for every document of the batch, as it is for a user.
    """

    #: the mode in which the library reads JSON lines itself
    lines_mode: ClassVar[str]
    #: documents nested deeper are refused before the library sees them (None: no limit),
    #: where the library's memory would take the process down first
    max_depth: ClassVar[int | None] = None
    mode: str

    @abstractmethod
    def _run(self, lines: list[bytes], records: list[Any], n: int) -> list[tuple[Any, bytes]]:
        """Load the batch (``lines`` or ``records``, ``n`` documents) and write it back:
        per document, (what the library holds, the bytes it writes)."""

    def decode_and_roundtrip_batch(
            self, docs: Sequence[bytes]) -> list[tuple[Any, bytes] | ConsumerRejected]:
        out: list[tuple[Any, bytes] | ConsumerRejected | None] = [None] * len(docs)
        keep: list[int] = []
        records: list[Any] = []
        lines: list[bytes] = []
        for i, doc in enumerate(docs):
            try:
                if self.mode == self.lines_mode:
                    line = as_json_line(doc)
                    self._refuse_deep(doc, None)
                    lines.append(line)
                else:
                    record = load_record(doc, self.name)
                    self._refuse_deep(doc, record)
                    records.append(record)
            except DecodeError as e:
                out[i] = self.reject(e.message)
            else:
                keep.append(i)
        if keep:
            try:
                results = self._run(lines, records, len(keep))
            except Exception as e:  # libraries raise many types; each is this batch's verdict
                reason = batch_error(e, len(keep))
                for i in keep:
                    out[i] = self.reject(reason)
            else:
                for i, result in zip(keep, results, strict=True):
                    out[i] = result
        return [o for o in out if o is not None]

    def _refuse_deep_value(self, value: Any) -> None:
        """:meth:`_refuse_deep` for a value to encode (a :class:`ConsumerRejected`)."""
        limit = self.max_depth
        depth = nesting_depth(value) if limit is not None else 0
        if limit is not None and depth > limit:
            raise self.reject(f"nested {depth} levels: evtools does not hand {self.name} "
                              f"values nested deeper than {limit} levels (see decode)")

    def _refuse_deep(self, doc: bytes, record: Any) -> None:
        """A :class:`DecodeError` for ``doc`` (decoded: ``record``, or None) when it nests
        deeper than :attr:`max_depth`; a document with fewer brackets is not looked at."""
        limit = self.max_depth
        if limit is None or not may_nest(doc, limit + 1):
            return
        if record is None:
            try:
                record = msgspec.json.decode(doc)
            except RecursionError:
                record = None  # deeper than msgspec goes: deeper than the limit too
            except msgspec.DecodeError:
                return  # not JSON: the library gives its own verdict
        depth = nesting_depth(record) if record is not None else None
        if depth is None or depth > limit:
            raise DecodeError(
                f"nested {'more than ' + str(limit) if depth is None else depth} levels: "
                f"evtools does not hand {self.name} documents nested deeper than {limit} "
                f"levels, as the memory it takes grows with the cube of the depth (about "
                f"1 GB at 400 levels, 7 GB at 800) and would take the process down")
