"""What every dialect is: the same verbs for each modelled consumer.

A dialect answers two questions about one real consumer of JSON events:

* ``decode(data)``: what does the consumer hold in memory after reading these bytes?
  The answer is plain Python values that model the consumer's own (Go's float64 is a
  Python ``float``, a JS object is a ``dict`` in V8's key order, a pandas cell comes back
  as the value pandas holds). Python compares ``int``/``float``/``Decimal`` exactly, so
  comparing this with the exact value (the ``python`` dialect) shows any loss.
* ``roundtrip(data)``: what bytes does the consumer write back out?

A document the consumer refuses raises :class:`~evtools.errors.ConsumerRejected` with the
consumer's own error text. Columnar consumers (pandas, polars, torch) see a batch at a
time, so every dialect also has ``decode_batch`` / ``roundtrip_batch``, which return a
list with one entry per document: a value, or the ``ConsumerRejected`` for that document.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ConsumerRejected

__all__ = ["ColumnarDialect", "Dialect"]


class Dialect(ABC):
    """Base class of every dialect. Subclasses set ``name`` and implement ``decode`` and
    ``encode``; columnar dialects override the batch verbs instead."""

    name: ClassVar[str]
    #: True when the consumer only makes sense on a batch (a DataFrame, a tensor).
    columnar: ClassVar[bool] = False

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """What the consumer holds in memory after reading ``data``."""

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """What the consumer writes for a value it holds (the inverse half of roundtrip)."""

    def roundtrip(self, data: bytes) -> bytes:
        """``data`` read by the consumer and written back out."""
        return self.encode(self.decode(data))

    def decode_batch(self, docs: Sequence[bytes]) -> list[Any]:
        """One entry per document: the decoded value or its ``ConsumerRejected``."""
        out: list[Any] = []
        for doc in docs:
            try:
                out.append(self.decode(doc))
            except ConsumerRejected as e:
                out.append(e)
        return out

    def roundtrip_batch(self, docs: Sequence[bytes]) -> list[bytes | ConsumerRejected]:
        out: list[bytes | ConsumerRejected] = []
        for doc in docs:
            try:
                out.append(self.roundtrip(doc))
            except ConsumerRejected as e:
                out.append(e)
        return out

    def decode_and_roundtrip_batch(
            self, docs: Sequence[bytes]) -> list[tuple[Any, bytes] | ConsumerRejected]:
        """Per document, ``(value held, bytes written)`` or its ``ConsumerRejected``: what
        the audit needs, with each document parsed once."""
        out: list[tuple[Any, bytes] | ConsumerRejected] = []
        for value in self.decode_batch(docs):
            if isinstance(value, ConsumerRejected):
                out.append(value)
                continue
            try:
                out.append((value, self.encode(value)))
            except ConsumerRejected as e:
                out.append(e)
        return out

    def reject(self, reason: str) -> ConsumerRejected:
        """The error to raise for a document this consumer refuses."""
        return ConsumerRejected(reason, dialect=self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ColumnarDialect(Dialect):
    """A consumer that only makes sense on a batch (a DataFrame, a tensor).

    Subclasses implement :meth:`decode_and_roundtrip_batch` (one library run per batch);
    every other verb is derived from it, a single document being a batch of one.
    """

    columnar: ClassVar[bool] = True

    @abstractmethod
    def decode_and_roundtrip_batch(
            self, docs: Sequence[bytes]) -> list[tuple[Any, bytes] | ConsumerRejected]:
        """Per document: (the value held, the bytes written back), or the rejection."""

    def _one(self, data: bytes) -> tuple[Any, bytes]:
        outcome = self.decode_and_roundtrip_batch([data])[0]
        if isinstance(outcome, ConsumerRejected):
            raise outcome
        return outcome

    def decode(self, data: bytes) -> Any:
        """What the consumer holds for this document, loaded as a batch of one."""
        return self._one(data)[0]

    def roundtrip(self, data: bytes) -> bytes:
        return self._one(data)[1]

    def decode_batch(self, docs: Sequence[bytes]) -> list[Any]:
        return [o if isinstance(o, ConsumerRejected) else o[0]
                for o in self.decode_and_roundtrip_batch(docs)]

    def roundtrip_batch(self, docs: Sequence[bytes]) -> list[bytes | ConsumerRejected]:
        return [o if isinstance(o, ConsumerRejected) else o[1]
                for o in self.decode_and_roundtrip_batch(docs)]
