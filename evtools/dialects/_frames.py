"""The batch verb shared by the DataFrame dialects (pandas, polars)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ConsumerRejected, DecodeError
from ._base import ColumnarDialect
from .python import as_json_line, batch_error, load_record

__all__ = ["FrameDialect"]


class FrameDialect(ColumnarDialect):
    """A DataFrame library loading a batch of documents, either as decoded records or (in
    ``lines_mode``) as JSON lines it parses itself, and writing the frame back.

    A document that is not JSON is rejected on its own; when the library raises for the
    batch, that error is the verdict for every document of the batch, as it is for a user.
    """

    #: the mode in which the library reads JSON lines itself
    lines_mode: ClassVar[str]
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
                    lines.append(as_json_line(doc))
                else:
                    records.append(load_record(doc, self.name))
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
