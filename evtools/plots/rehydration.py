"""Plots of rehydration results: what the checks caught, where, and what naive consumers lose.

``violations_by_kind`` (violations caught per kind, optionally against the faults the
generator injected), ``violations_over_versions`` (at which version of their streams the
violations were caught) and ``naive_vs_typed`` (per state field, in how many orders each
naive dialect's value differs from the typed rebuild). The first two take ``by_fault=True``
to label each row ``fault → violation kind`` (``reorder → out_of_order``), in the order of
:class:`~evtools.datagen.FaultKind`, as :func:`~evtools.rehydration.compare_with_manifest`
lists them. Each takes the result (a
:class:`~evtools.rehydration.RehydrationResult`, a
:class:`~evtools.rehydration.StoreRehydration`, a list of
:class:`~evtools.rehydration.Violation`, a violations frame, or for ``naive_vs_typed`` a
:class:`~evtools.rehydration.NaiveComparison`) and ``ax=None``, and returns the Axes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..datagen import DETECTED_AS, FaultKind
from ..rehydration import NaiveComparison, Violation, ViolationKind
from ._style import axes, finish

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes

__all__ = ["naive_vs_typed", "violations_by_kind", "violations_over_versions"]

_CAUGHT = "#1f6fb2"
_INJECTED = "#b0b7bf"
_DIALECT_COLORS = {"go": "#00add8", "js": "#d4a017", "python": "#3776ab", "pandas": "#150458",
                   "polars": "#cd792c", "torch": "#ee4c2c"}
_LEGEND_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0),
                                   "fontsize": 8, "frameon": False}
_KIND_ORDER = {str(k): i for i, k in enumerate(ViolationKind)}
#: violation kind -> the fault caught as it, in FaultKind order (one fault per kind)
_FAULT_OF = {DETECTED_AS[f]: str(f) for f in FaultKind}
_FAULT_ORDER = {kind: i for i, kind in enumerate(_FAULT_OF)}


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "get_column")


def _violations(result: Any) -> list[tuple[str, str | None, int | None]]:
    """``(kind, stream, version)`` of each violation of ``result``."""
    if _is_frame(result):
        frame: pl.DataFrame = result
        if "kind" not in frame.columns:
            raise TypeError("a violations frame needs a 'kind' column "
                            f"(got {', '.join(frame.columns)})")
        kinds = frame.get_column("kind").to_list()
        streams = (frame.get_column("stream").to_list() if "stream" in frame.columns
                   else [None] * len(kinds))
        versions = (frame.get_column("version").to_list() if "version" in frame.columns
                    else [None] * len(kinds))
        return [(str(k), s, v) for k, s, v in zip(kinds, streams, versions, strict=True)]
    items: Iterable[Violation] = getattr(result, "violations", result)
    return [(str(v.kind), v.stream, v.version) for v in items]


def _injected_counts(injected: Any) -> dict[str, int]:
    """Faults per violation kind they should be caught as."""
    if isinstance(injected, Mapping):
        return {str(k): int(n) for k, n in injected.items()}
    faults = getattr(injected, "faults", injected)
    return dict(Counter(str(f.detected_as) for f in faults))


def _sorted_kinds(kinds: Iterable[str], by_fault: bool = False) -> list[str]:
    """Violation kinds in catalogue order, or (``by_fault``) in the order of the faults
    caught as them, kinds no fault is caught as after."""
    if by_fault:
        return sorted(set(kinds), key=lambda k: (_FAULT_ORDER.get(k, len(_FAULT_ORDER)),
                                                 _KIND_ORDER.get(k, len(_KIND_ORDER)), k))
    return sorted(set(kinds), key=lambda k: (_KIND_ORDER.get(k, len(_KIND_ORDER)), k))


def _row_labels(kinds: list[str], by_fault: bool) -> list[str]:
    """Each kind's tick label: the kind, or (``by_fault``) ``fault → kind`` where a fault is
    caught as it."""
    if not by_fault:
        return kinds
    return [f"{_FAULT_OF[k]} → {k}" if k in _FAULT_OF else k for k in kinds]


_BY_FAULT_YLABEL = "fault → violation kind (category)"
_BY_FAULT_FIGSIZE = (8.5, 4.0)  # room for the longer row labels


def violations_by_kind(result: Any, ax: Axes | None = None, *,
                       injected: Any = None, by_fault: bool = False) -> Axes:
    """Horizontal bars: violations caught per kind.

    ``result`` is a rehydration result, a list of violations, a violations frame, or the
    frame of :func:`~evtools.rehydration.compare_with_manifest` (which carries the injected
    counts itself). ``injected`` (a :class:`~evtools.datagen.Manifest`, its faults, or a
    mapping ``violation kind -> count``) adds a bar of the faults injected per kind.
    ``by_fault`` labels each row ``fault → violation kind`` and orders the rows as the
    faults (:class:`~evtools.datagen.FaultKind`), kinds no fault is caught as last."""
    planted: dict[str, int] | None
    if _is_frame(result) and {"detected_as", "caught", "injected"} <= set(result.columns):
        caught: dict[str, int] = {}
        from_frame: dict[str, int] = {}
        for row in result.iter_rows(named=True):
            kind = str(row["detected_as"])
            caught[kind] = caught.get(kind, 0) + int(row["caught"])
            from_frame[kind] = from_frame.get(kind, 0) + int(row["injected"])
        planted = from_frame if injected is None else _injected_counts(injected)
    else:
        caught = dict(Counter(kind for kind, _, _ in _violations(result)))
        planted = None if injected is None else _injected_counts(injected)
    ax = axes(ax, figsize=_BY_FAULT_FIGSIZE) if by_fault else axes(ax)
    kinds = _sorted_kinds([*caught, *(planted or {})], by_fault)
    positions = list(range(len(kinds)))
    caught_n = [caught.get(k, 0) for k in kinds]
    if planted is None:
        bars = ax.barh(positions, caught_n, height=0.6, color=_CAUGHT, label="caught")
        ax.bar_label(bars, padding=2, fontsize=8)
    else:
        planted_n = [planted.get(k, 0) for k in kinds]
        shown = ax.barh([p - 0.2 for p in positions], planted_n, height=0.4,
                        color=_INJECTED, label="injected (generator manifest)")
        ax.bar_label(shown, padding=2, fontsize=8)
        bars = ax.barh([p + 0.2 for p in positions], caught_n, height=0.4, color=_CAUGHT,
                       label="caught (rehydration, audit)")
        ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_yticks(positions, _row_labels(kinds, by_fault))
    ax.invert_yaxis()  # first kind on top
    ax.margins(x=0.12)
    total = sum(caught_n)
    if planted is None:
        title = "Violations caught per kind"
        caption = (f"Each bar counts the violations of one kind that rehydration reported "
                   f"({total} in all, {len(kinds)} kinds).")
    elif by_fault:
        title = "Faults injected vs violations caught, per fault"
        off = [k for k in kinds if caught.get(k, 0) != planted.get(k, 0)]
        verdict = ("caught equals injected for every fault" if not off
                   else "caught differs from injected for "
                   f"{', '.join(_row_labels(off, by_fault))}")
        caption = (f"Each row is a fault and the violation kind it must be caught as; grey "
                   f"bars count the faults the generator injected, blue bars the violations "
                   f"of that kind rehydration reported ({total} in all): {verdict}.")
    else:
        title = "Faults injected vs violations caught, per kind"
        off = [k for k in kinds if caught.get(k, 0) != planted.get(k, 0)]
        verdict = ("caught equals injected for every kind" if not off
                   else f"caught differs from injected for {', '.join(off)}")
        caption = (f"Grey bars count the faults the generator injected per violation kind "
                   f"they should be caught as, blue bars the violations rehydration "
                   f"reported ({total} in all): {verdict}.")
    return finish(ax, title=title, xlabel="violations (count)",
                  ylabel=_BY_FAULT_YLABEL if by_fault else "violation kind (category)",
                  caption=caption, legend=planted is not None, **_LEGEND_OUTSIDE)


def _size_key(top: int) -> list[int]:
    """The counts the size key shows: 1, about half the largest, and the largest."""
    return sorted({1, max(1, round(top / 2)), top})


def violations_over_versions(result: Any, ax: Axes | None = None, *,
                             max_area: float = 300.0, by_fault: bool = False) -> Axes:
    """Where in their streams violations were caught: one row per kind (y), the version of
    the stream (x), a dot wherever violations of that kind were caught at that version,
    its area proportional to how many (the largest dot is ``max_area`` points squared; a
    key beside the axes gives the area of 1, about half the largest and the largest count).
    Violations without a version are counted in the caption only. ``by_fault`` labels and
    orders the rows as :func:`violations_by_kind` does."""
    from matplotlib.lines import Line2D

    found = _violations(result)
    placed = [(k, v) for k, _, v in found if v is not None]
    ax = axes(ax, figsize=_BY_FAULT_FIGSIZE) if by_fault else axes(ax)
    kinds = _sorted_kinds((k for k, _ in placed), by_fault)
    per_kind = {k: Counter(v for kk, v in placed if kk == k) for k in kinds}
    top = max((n for c in per_kind.values() for n in c.values()), default=1)
    for row, kind in enumerate(kinds):
        versions = sorted(per_kind[kind])
        counts = [per_kind[kind][v] for v in versions]
        ax.scatter(versions, [row] * len(versions), s=[max_area * n / top for n in counts],
                   alpha=0.75, color=_CAUGHT, edgecolors="white", linewidths=0.5)
    ax.set_yticks(list(range(len(kinds))), _row_labels(kinds, by_fault))
    ax.invert_yaxis()
    if placed:
        ax.set_xlim(left=-0.7)
        ax.margins(y=0.08)
    unplaced = len(found) - len(placed)
    if placed:
        versions_all = sorted(v for _, v in placed)
        where = (f"versions {versions_all[0]} to {versions_all[-1]}, median "
                 f"{versions_all[len(versions_all) // 2]}; the largest dot stands for {top}")
    else:
        where = "none with a version"
    extra = f"; {unplaced} without a version are not drawn" if unplaced else ""
    caption = (f"Each dot marks a version at which violations of one kind were caught, its "
               f"area proportional to how many ({len(found)} violations, {where}{extra}).")
    finish(ax, title="Where in the streams the violations were caught",
           xlabel="event version in its stream (0-based)",
           ylabel=_BY_FAULT_YLABEL if by_fault else "violation kind (category)",
           caption=caption)
    if placed:  # the size key: a dot's area (points²) is max_area * count / top
        key = [Line2D([], [], ls="", marker="o", color=_CAUGHT, alpha=0.75,
                      markeredgecolor="white", markeredgewidth=0.5,
                      markersize=(max_area * n / top) ** 0.5,
                      label=f"{n} violation{'s' if n != 1 else ''}")
               for n in _size_key(top)]
        ax.legend(handles=key, title="at one version", labelspacing=1.2, borderpad=0.8,
                  title_fontsize=8, **_LEGEND_OUTSIDE)
    return ax


def _comparison(result: NaiveComparison | pl.DataFrame
                ) -> tuple[list[str], list[str], dict[str, list[int]], int | None]:
    """Fields, dialects, counts per dialect (in field order) and the number of orders."""
    if isinstance(result, NaiveComparison):
        fields = list(result.fields)
        counts = {d: [result.differing[d].get(f, 0) for f in fields] for d in result.dialects}
        return fields, list(result.dialects), counts, result.orders
    if _is_frame(result) and "field" in result.columns:
        dialects = [c for c in result.columns if c != "field"]
        fields = [str(f) for f in result.get_column("field").to_list()]
        counts = {d: [int(n or 0) for n in result.get_column(d).to_list()] for d in dialects}
        return fields, dialects, counts, None
    raise TypeError("naive_vs_typed takes a NaiveComparison or its to_frame(), "
                    f"not {type(result).__name__}")


def naive_vs_typed(result: NaiveComparison | pl.DataFrame, ax: Axes | None = None, *,
                   all_fields: bool = False) -> Axes:
    """Grouped horizontal bars: per state field, in how many orders each naive dialect's
    value differs from the typed rebuild (fields no dialect gets wrong are left out unless
    ``all_fields``)."""
    fields, dialects, counts, orders = _comparison(result)
    keep = [i for i, _ in enumerate(fields)
            if all_fields or any(counts[d][i] for d in dialects)]
    shown = [fields[i] for i in keep]
    ax = axes(ax)
    n = max(len(dialects), 1)
    height = 0.8 / n
    for j, dialect in enumerate(dialects):
        values = [counts[dialect][i] for i in keep]
        offsets = [p - 0.4 + height * (j + 0.5) for p in range(len(shown))]
        bars = ax.barh(offsets, values, height=height, label=dialect,
                       color=_DIALECT_COLORS.get(dialect))
        ax.bar_label(bars, padding=2, fontsize=7)
    ax.set_yticks(list(range(len(shown))), shown)
    ax.invert_yaxis()
    ax.margins(x=0.12)
    of = f" of {orders}" if orders is not None else ""
    lost = {d: sum(1 for i in keep if counts[d][i]) for d in dialects}
    parts = ", ".join(f"{d} {lost[d]}" for d in dialects)
    if not shown:
        ax.text(0.5, 0.5, "no field differs from the typed rebuild", transform=ax.transAxes,
                ha="center", va="center")
    caption = (f"Each bar counts the orders{of} whose final value of a state field, rebuilt "
               f"naively through one dialect, is not exactly the typed value; fields lost "
               f"per dialect: {parts or 'none'}.")
    return finish(ax, title="State fields naive consumers get wrong",
                  xlabel=f"orders where the field differs (count{of})",
                  ylabel="state field (top level)", caption=caption,
                  legend=bool(dialects), **_LEGEND_OUTSIDE)
