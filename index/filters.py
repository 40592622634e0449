"""Id filters for searches, expressed as id ranges and compiled to faiss selectors.

A filter keeps the ids inside `include` (None = every id) and outside `exclude`. Both are
lists of half-open id ranges (see `index.ids`), so any mix of levels and excluded images is a
small tree of ``IDSelectorRange`` / ``IDSelectorOr`` / ``IDSelectorNot`` / ``IDSelectorAnd``,
applied by faiss while it scans (no post-filtering, so a filtered search is never starved).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from .ids import IdRange, count_in_ranges, intersect_ranges, merge_ranges


@dataclass
class IdFilter:
    """Ranges of ids a search may return.

    Attributes:
        include: ranges to keep; None keeps every id.
        exclude: ranges to drop (applied after `include`).
    """

    include: list[IdRange] | None = None
    exclude: list[IdRange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.include = None if self.include is None else merge_ranges(self.include)
        self.exclude = merge_ranges(self.exclude)

    @property
    def is_empty(self) -> bool:
        """True when nothing is filtered out."""
        return self.include is None and not self.exclude

    def count(self, sorted_ids: np.ndarray) -> int:
        """How many of `sorted_ids` ([N] int64 ascending) pass the filter."""
        if self.include is None:
            kept = int(sorted_ids.size)
            dropped = count_in_ranges(sorted_ids, self.exclude)
        else:
            kept = count_in_ranges(sorted_ids, self.include)
            dropped = count_in_ranges(
                sorted_ids, merge_ranges(intersect_ranges(self.include, self.exclude))
            )
        return kept - dropped

    def accepts(self, ids: np.ndarray) -> np.ndarray:
        """[N] bool: which ids pass (numpy reference, used to check GPU results and in tests)."""
        ids = np.asarray(ids, dtype=np.int64)
        keep = np.ones(ids.shape, bool) if self.include is None else _in_ranges(ids, self.include)
        return keep & ~_in_ranges(ids, self.exclude)


def _in_ranges(ids: np.ndarray, ranges: list[IdRange]) -> np.ndarray:
    inside = np.zeros(ids.shape, bool)
    for low, high in ranges:
        inside |= (ids >= low) & (ids < high)
    return inside


class CompiledSelector:
    """A faiss selector for an `IdFilter`, holding every sub-selector alive with it."""

    def __init__(self, id_filter: IdFilter) -> None:
        self._parts: list[faiss.IDSelector] = []
        selector = None
        if id_filter.include is not None:
            selector = self._union(id_filter.include)
        if id_filter.exclude:
            dropped = self._keep(faiss.IDSelectorNot(self._union(id_filter.exclude)))
            selector = (
                dropped if selector is None else self._keep(faiss.IDSelectorAnd(selector, dropped))
            )
        self.selector: faiss.IDSelector | None = selector

    def _keep(self, selector: faiss.IDSelector) -> faiss.IDSelector:
        self._parts.append(selector)
        return selector

    def _union(self, ranges: list[IdRange]) -> faiss.IDSelector:
        if not ranges:
            return self._keep(faiss.IDSelectorRange(0, 0))
        union = self._keep(faiss.IDSelectorRange(*ranges[0]))
        for low, high in ranges[1:]:
            union = self._keep(
                faiss.IDSelectorOr(union, self._keep(faiss.IDSelectorRange(low, high)))
            )
        return union
