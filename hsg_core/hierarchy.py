"""Turn segments and their nested group chains into `Level`s of a `Prediction` (numpy).

Level 0 = segments; level l = the hard level-l groups, renumbered 0..N_l-1 (empty groups dropped).
Nesting is by construction: every level map is a lookup of the one segment map.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .types import Level, Prediction


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w] -> [H, W] by nearest pixel-centre sampling (never loses a region when upsampling)."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def segment_chains(segment_groups: list[np.ndarray]) -> list[np.ndarray]:
    """Per level (0 = segments), the contiguous region id of every segment.

    Args:
        segment_groups: for levels 1..L, [S] int hard group of each segment (nested).
    Returns:
        L + 1 arrays [S] int32; chains[0] = arange(S).
    """
    num_segments = segment_groups[0].shape[0] if segment_groups else 0
    chains = [np.arange(num_segments, dtype=np.int32)]
    for groups in segment_groups:
        _, inverse = np.unique(groups, return_inverse=True)
        chains.append(inverse.astype(np.int32).reshape(-1))
    return chains


def parents_of(child: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Parent id of every child region, from per-segment ids; raises if not nested."""
    num = int(child.max()) + 1 if child.size else 0
    parents = np.full(num, -1, dtype=np.int32)
    parents[child] = parent
    if not np.array_equal(parents[child], parent):
        raise ValueError("levels are not nested: a region has two parents")
    return parents


def region_boxes(label_map: np.ndarray, num: int) -> np.ndarray:
    """[N, 4] int32 (x0, y0, x1, y1), exclusive ends, of labels 0..N-1."""
    boxes = np.zeros((num, 4), dtype=np.int32)
    for i, sl in enumerate(ndimage.find_objects(label_map + 1, max_label=num)):
        if sl is not None:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return boxes


def build_prediction(
    segment_map: np.ndarray,
    segment_groups: list[np.ndarray],
    level_embeddings: list[np.ndarray],
    image_size: tuple[int, int],
    meta: dict | None = None,
) -> Prediction:
    """Assemble a Prediction.

    Args:
        segment_map: [h, w] int segment id per working-resolution pixel (0..S-1, all used).
        segment_groups: for levels 1..L, [S] nested hard groups.
        level_embeddings: for levels 0..L, [N_l, D] unit region embeddings, in the contiguous order
            of `segment_chains` (the caller computes them from pixel embeddings).
        image_size: (H, W) of the original image; label maps are resized to it.
    """
    chains = segment_chains(segment_groups)
    full = resize_nearest(segment_map, image_size)
    levels = []
    for lv, chain in enumerate(chains):
        label_map = chain[full]
        num = level_embeddings[lv].shape[0]
        parents = (
            parents_of(chain, chains[lv + 1])
            if lv + 1 < len(chains)
            else np.full(num, -1, np.int32)
        )
        levels.append(
            Level(
                label_map=label_map.astype(np.int32),
                embeddings=level_embeddings[lv].astype(np.float32),
                areas=np.bincount(label_map.ravel(), minlength=num).astype(np.int64),
                boxes=region_boxes(label_map, num),
                parents=parents,
            )
        )
    return Prediction(levels=levels, image_size=tuple(image_size), meta=meta or {})
