"""The int64 id of every indexed region, and the id ranges the search filters use.

Layout (bit 63 is the sign and stays 0)::

    id = level << 48 | slot << 16 | region

* ``level``  (15 bits): hierarchy level, 0 is the finest.
* ``slot``   (32 bits): number of the image in the index. A fresh build numbers images in
  sorted path order; an update keeps the slots of unchanged images and gives new or changed
  images fresh slots above every slot used so far (slots are never reused).
* ``region`` (16 bits): region id inside that image and level.

Why: all regions of one level form one contiguous id range, and all regions of one image at
one level form another. Level filters and image exclusions are then a handful of
``faiss.IDSelectorRange`` objects (O(1) memory, O(1) per test) instead of id sets that grow
with the index, and an id can be decoded without any lookup.
"""

from __future__ import annotations

import numpy as np

LEVEL_SHIFT = 48
SLOT_SHIFT = 16
MAX_LEVELS = 1 << (63 - LEVEL_SHIFT)
MAX_SLOTS = 1 << (LEVEL_SHIFT - SLOT_SHIFT)
MAX_REGIONS = 1 << SLOT_SHIFT

IdRange = tuple[int, int]  # half-open [low, high)


def region_ids(level: int, slot: int, regions: np.ndarray) -> np.ndarray:
    """Ids of regions of one image at one level.

    Args:
        level: hierarchy level, 0 <= level < MAX_LEVELS.
        slot: image slot, 0 <= slot < MAX_SLOTS.
        regions: [N] region ids, each in [0, MAX_REGIONS).

    Returns:
        [N] int64 ids.
    """
    if not 0 <= level < MAX_LEVELS:
        raise ValueError(f"level {level} outside [0, {MAX_LEVELS})")
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"image slot {slot} outside [0, {MAX_SLOTS})")
    regions = np.asarray(regions, dtype=np.int64)
    if regions.size and (regions.min() < 0 or regions.max() >= MAX_REGIONS):
        raise ValueError(
            f"region ids must lie in [0, {MAX_REGIONS}), got {regions.min()}..{regions.max()}"
        )
    return (np.int64(level) << LEVEL_SHIFT) | (np.int64(slot) << SLOT_SHIFT) | regions


def split_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `region_ids`: [N] ids -> ([N] level, [N] slot, [N] region), all int64."""
    ids = np.asarray(ids, dtype=np.int64)
    level = ids >> LEVEL_SHIFT
    slot = (ids >> SLOT_SHIFT) & (MAX_SLOTS - 1)
    region = ids & (MAX_REGIONS - 1)
    return level, slot, region


def level_range(level: int) -> IdRange:
    """Id range holding every region of `level`."""
    return int(level) << LEVEL_SHIFT, (int(level) + 1) << LEVEL_SHIFT


def image_level_range(level: int, slot: int) -> IdRange:
    """Id range holding every region of image `slot` at `level`."""
    low = (int(level) << LEVEL_SHIFT) | (int(slot) << SLOT_SHIFT)
    return low, low + MAX_REGIONS


def merge_ranges(ranges: list[IdRange]) -> list[IdRange]:
    """Sorts ranges and fuses overlapping or touching ones."""
    merged: list[IdRange] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def intersect_ranges(first: list[IdRange], second: list[IdRange]) -> list[IdRange]:
    """Pairwise intersections of two range lists (each list assumed non-overlapping)."""
    out = []
    for low_a, high_a in first:
        for low_b, high_b in second:
            low, high = max(low_a, low_b), min(high_a, high_b)
            if low < high:
                out.append((low, high))
    return out


def count_in_ranges(sorted_ids: np.ndarray, ranges: list[IdRange]) -> int:
    """How many of `sorted_ids` ([N] int64, ascending) fall in the (disjoint) `ranges`."""
    if not ranges:
        return 0
    bounds = np.asarray(ranges, dtype=np.int64)
    starts = np.searchsorted(sorted_ids, bounds[:, 0], side="left")
    stops = np.searchsorted(sorted_ids, bounds[:, 1], side="left")
    return int((stops - starts).sum())
