"""The walk shared by the state diffs (private).

Two states are walked side by side and every pair of leaves at the same JSON Pointer is
yielded; a field present on one side only comes with :data:`ABSENT` on the other. What
counts as a container, and how two leaves compare, is the caller's: the fidelity report
(``fidelity.state_diff``) and the rehydration comparison (``rehydration.diff_states``)
compare leaves differently on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ._json import escape_pointer_token

__all__ = ["ABSENT", "Children", "is_array", "leaf_pairs", "plain_children"]

#: ``children(value)``: ``(key, child)`` pairs of a container, or ``None`` for a leaf.
Children = Callable[[Any], Iterable[tuple[Any, Any]] | None]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def leaf_pairs(a: Any, b: Any, children: Children,
               path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(pointer, a_leaf, b_leaf)`` for every leaf position of ``a`` and ``b``.

    Where one side is a container and the other a leaf, or one an array and the other
    an object (``[]`` is not ``{}``, nor ``[x]`` ``{"0": x}``, though neither has a leaf
    that differs), the pair is yielded whole at that pointer. Keys of ``a`` come first,
    in its order, then keys only ``b`` has.
    """
    ka, kb = children(a), children(b)
    if ka is None or kb is None or is_array(a) != is_array(b):
        yield path, a, b
        return
    da, db = dict(ka), dict(kb)
    for key, value in da.items():
        sub = f"{path}/{escape_pointer_token(str(key))}"
        if key in db:
            yield from leaf_pairs(value, db[key], children, sub)
        else:
            yield sub, value, ABSENT
    for key, value in db.items():
        if key not in da:
            yield f"{path}/{escape_pointer_token(str(key))}", ABSENT, value


def is_array(value: Any) -> bool:
    """Whether ``value`` is a JSON array: a sequence that is not text or bytes (a list, a
    tuple), as opposed to an object (a mapping, a Struct, a dataclass) or a scalar."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def plain_children(value: Any) -> Iterable[tuple[Any, Any]] | None:
    """The :data:`Children` of plain values: a mapping's items, a list's indexed items."""
    if isinstance(value, Mapping):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return None
