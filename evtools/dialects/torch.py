"""The ``torch`` dialect: the view a feature pipeline takes of a batch of events.

What it models: each document through ``json.loads``; every numeric leaf (``int``,
``float``, ``bool``) gathered per JSON path (array indices as ``*``) across the batch into
one ``torch.tensor(values, dtype=...)``, as a pipeline builds a feature column; back to
Python with ``.tolist()``, and written out with ``json.dumps``. The installed torch does
the conversion, so what is lost is what that version loses; with the default ``float32``:
integers above 2**24 rounded, float64 precision gone (``0.1`` -> ``0.10000000149011612``),
overflow to ``inf`` (written ``Infinity``), booleans as ``1.0``/``0.0``.

``dtype=None`` lets torch infer the dtype per path from the whole batch instead (all
integers: ``int64``; integers and floats: the default float dtype; all booleans: ``bool``);
an integer beyond int64 then fails the tensor, and with it the batch.

Not features, so not in the record the pipeline holds: strings, ``null`` and empty
containers' absence of values. Objects keep their numeric fields (a string field is
dropped); arrays keep their length, a non-numeric element becoming ``None`` so that the
indices of the numeric ones stay where they were.

Rejections: a document ``json.loads`` refuses is rejected on its own, and so is one whose
features cannot be written as UTF-8 (a key holding a lone surrogate escape, ``"\\ud800"``)
or that nests deeper than the feature walk has room for (Python's recursion limit; from
Python 3.12 on, ``json.loads`` takes deeper documents than that);
when building a tensor raises, the batch is lost and every document of it is rejected with
torch's text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ConsumerRejected, MissingDependency, UsageError
from ._base import ColumnarDialect
from .python import batch_error, too_deep_to_walk

__all__ = ["TorchDialect"]

_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64")


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependency("torch", "torch") from e
    return torch


class TorchDialect(ColumnarDialect):
    """A feature pipeline's tensors built from a batch of events (see the module docstring).
    """

    name: ClassVar[str] = "torch"

    def __init__(self, dtype: str | None = "float32") -> None:
        if dtype is not None and dtype not in _DTYPES:
            raise UsageError(f"unsupported torch dtype {dtype!r}; choose from "
                             f"{', '.join(_DTYPES)} or None")
        self.dtype = dtype
        self._torch = _torch()
        self._dtype = getattr(self._torch, dtype) if dtype is not None else None

    def __repr__(self) -> str:
        return f"<TorchDialect 'torch' dtype={self.dtype!r} torch={self._torch.__version__}>"


    def encode(self, value: Any) -> bytes:
        """``json.dumps`` of the features (``Infinity``/``NaN`` as Python writes them)."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")



    def decode_and_roundtrip_batch(
            self, docs: Sequence[bytes]) -> list[tuple[Any, bytes] | ConsumerRejected]:
        """Per document: (the features held, what ``json.dumps`` writes), or the
        rejection."""
        out: list[tuple[Any, bytes] | ConsumerRejected | None] = [None] * len(docs)
        columns: dict[tuple[str, ...], list[Any]] = {}
        slots: dict[tuple[str, ...], list[tuple[Any, Any]]] = {}
        held: list[tuple[int, Any]] = []
        for i, doc in enumerate(docs):
            try:
                value = json.loads(doc)
            except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
                out[i] = self.reject(f"json.loads: {e}")
                continue
            too_deep = too_deep_to_walk(doc, value, "the feature walk")
            if too_deep:
                out[i] = self.reject(too_deep)
                continue
            box: list[Any] = [None]  # a holder, so that a top-level number has a slot too
            _gather(value, (), box, 0, columns, slots)
            held.append((i, box))
        try:
            for path, values in columns.items():
                converted = self._torch.tensor(values, dtype=self._dtype).tolist()
                for (container, key), v in zip(slots[path], converted, strict=True):
                    container[key] = v
        except Exception as e:  # torch raises several types; each is this batch's verdict
            reason = batch_error(e, len(held))
            for i, _ in held:
                out[i] = self.reject(reason)
        else:
            for i, box in held:
                try:
                    out[i] = (box[0], self.encode(box[0]))
                except UnicodeEncodeError as e:  # a lone surrogate escape in a kept key
                    out[i] = self.reject(f"json.dumps(...).encode('utf-8'): {e}")
        return [o for o in out if o is not None]


def _gather(value: Any, path: tuple[str, ...], container: Any, key: Any,
            columns: dict[tuple[str, ...], list[Any]],
            slots: dict[tuple[str, ...], list[tuple[Any, Any]]]) -> None:
    """Build the feature skeleton of ``value`` into ``container[key]`` and register each
    numeric leaf's slot under its path."""
    t = type(value)
    if t is dict:
        node: dict[str, Any] = {}
        container[key] = node
        for k, v in value.items():
            tv = type(v)
            if tv is dict or tv is list or tv is int or tv is float or tv is bool:
                _gather(v, (*path, k), node, k, columns, slots)
    elif t is list:
        items: list[Any] = [None] * len(value)
        container[key] = items
        for i, v in enumerate(value):
            _gather(v, (*path, "*"), items, i, columns, slots)
    elif t is int or t is float or t is bool:
        container[key] = value
        columns.setdefault(path, []).append(value)
        slots.setdefault(path, []).append((container, key))
    else:
        container[key] = None
