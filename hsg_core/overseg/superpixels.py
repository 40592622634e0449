"""Superpixel alternatives (scikit-image): SLIC and Felzenszwalb, capped at N regions.

Neither is nested across region counts (unlike a UCM cut): each count is a new partition.
"""

from __future__ import annotations

import numpy as np
from skimage import segmentation


def contiguous(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 0..N-1 (int32)."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


def merge_smallest(labels: np.ndarray, max_regions: int) -> np.ndarray:
    """Merge the smallest region into its most-bordering neighbour until <= max_regions remain."""
    labels = contiguous(labels)
    while labels.max() + 1 > max_regions:
        sizes = np.bincount(labels.ravel())
        small = int(np.argmin(sizes))
        mask = labels == small
        ring = np.zeros_like(mask)
        ring[1:] |= mask[:-1]
        ring[:-1] |= mask[1:]
        ring[:, 1:] |= mask[:, :-1]
        ring[:, :-1] |= mask[:, 1:]
        neighbours = labels[ring & ~mask]
        target = (
            int(np.bincount(neighbours).argmax()) if neighbours.size else (small + 1) % sizes.size
        )
        labels = contiguous(np.where(mask, target, labels))
    return labels


def slic_superpixels(image: np.ndarray, max_regions: int, compactness: float = 10.0) -> np.ndarray:
    """SLIC with about `max_regions` segments, then merged down to at most that many. [H, W] int32."""
    labels = segmentation.slic(
        image,
        n_segments=max_regions,
        compactness=compactness,
        start_label=0,
        enforce_connectivity=True,
    )
    return merge_smallest(labels, max_regions)


def felzenszwalb_superpixels(
    image: np.ndarray, max_regions: int, scale: float = 200.0
) -> np.ndarray:
    """Felzenszwalb graph segmentation; the scale doubles until <= 4 * max_regions, then merging."""
    labels = segmentation.felzenszwalb(
        image, scale=scale, sigma=0.8, min_size=max(20, image.size // 3 // 2000)
    )
    while labels.max() + 1 > 4 * max_regions and scale < 1e6:
        scale *= 2
        labels = segmentation.felzenszwalb(image, scale=scale, sigma=0.8, min_size=20)
    return merge_smallest(labels, max_regions)
