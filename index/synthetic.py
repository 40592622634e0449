"""Synthetic predictions and clustered embeddings, for benchmarks and tests of the index.

They follow the `Prediction` contract (nested label maps, unit embeddings, areas, boxes,
parents) using numpy only, so the index can be exercised without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SyntheticLevel:
    """`hsg_core.types.Level` fields: label_map [H, W], embeddings [N, D], areas, boxes, parents."""

    label_map: np.ndarray
    embeddings: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    parents: np.ndarray


@dataclass
class SyntheticPrediction:
    """Same fields as `hsg_core.types.Prediction` that the index reads."""

    levels: list[SyntheticLevel]
    image_size: tuple[int, int]


def cluster_centers(num_clusters: int, dim: int, seed: int = 0) -> np.ndarray:
    """[C, D] float32 random unit vectors."""
    centers = np.random.default_rng(seed).standard_normal((num_clusters, dim)).astype(np.float32)
    return centers / np.linalg.norm(centers, axis=1, keepdims=True)


def clustered_unit_vectors(
    num: int, centers: np.ndarray, spread: float, rng: np.random.Generator
) -> np.ndarray:
    """[num, D] float32 unit vectors scattered around random `centers` ([C, D]).

    `spread` is the noise norm relative to the (unit) centre.
    """
    dim = centers.shape[1]
    picks = rng.integers(0, centers.shape[0], num)
    noise = rng.standard_normal((num, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    vectors = centers[picks] + noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def synthetic_prediction(
    rng: np.random.Generator,
    *,
    image_size: tuple[int, int] = (48, 64),
    regions_per_level: Sequence[int] = (24, 8, 3),
    cell: int = 4,
    centers: np.ndarray | None = None,
    spread: float = 0.5,
    layout: str = "cells",
) -> SyntheticPrediction:
    """A random nested hierarchy of regions with clustered embeddings.

    Layouts: "cells" groups `cell` x `cell` pixel blocks at random into fragmented regions with
    holes (a hard case for masks), and coarser levels group lower regions at random;
    "voronoi" makes compact regions (nearest of random seeds), and coarser levels group
    neighbouring seeds, like a real segmentation.

    Args:
        rng: random generator (the result is a function of its state).
        image_size: (H, W).
        regions_per_level: region count per level, finest first, non-increasing.
        cell: block size in pixels of the "cells" layout.
        centers: [C, D] cluster centres of the embeddings (default: 16 centres in 16-d).
        spread: embedding noise around the centres.
        layout: "cells" or "voronoi".
    """
    centers = cluster_centers(16, 16) if centers is None else centers
    if layout == "cells":
        label_map, parent_maps = _cell_layout(rng, image_size, regions_per_level, cell)
    elif layout == "voronoi":
        label_map, parent_maps = _voronoi_layout(rng, image_size, regions_per_level)
    else:
        raise ValueError(f"unknown layout {layout!r}: use 'cells' or 'voronoi'")
    levels = []
    for number, count in enumerate(regions_per_level):
        is_top = number + 1 == len(regions_per_level)
        parents = np.full(count, -1, np.int32) if is_top else parent_maps[number]
        areas, boxes = _areas_and_boxes(label_map, count)
        embeddings = clustered_unit_vectors(count, centers, spread, rng)
        levels.append(SyntheticLevel(label_map, embeddings, areas, boxes, parents))
        if not is_top:
            label_map = parents[label_map]
    return SyntheticPrediction(levels, (int(image_size[0]), int(image_size[1])))


def _cell_layout(
    rng: np.random.Generator, image_size: tuple[int, int], counts: Sequence[int], cell: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Level-0 label map [H, W] of randomly grouped pixel blocks, and random parents per level."""
    height, width = image_size
    grid = (-(-height // cell), -(-width // cell))
    if counts[0] > grid[0] * grid[1]:
        raise ValueError(f"{counts[0]} regions do not fit a {grid[0]}x{grid[1]} cell grid")
    cell_labels = _cover(rng, grid[0] * grid[1], counts[0]).reshape(grid)
    label_map = np.repeat(np.repeat(cell_labels, cell, 0), cell, 1)[:height, :width].astype(
        np.int32
    )
    return label_map, [_cover(rng, counts[i], counts[i + 1]) for i in range(len(counts) - 1)]


def _voronoi_layout(
    rng: np.random.Generator, image_size: tuple[int, int], counts: Sequence[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Level-0 Voronoi label map [H, W]; each coarser level groups seeds by nearest coarser seed."""
    height, width = image_size
    seeds = np.stack(np.divmod(rng.choice(height * width, counts[0], replace=False), width), axis=1)
    ys, xs = np.mgrid[:height, :width]
    pixels = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.float32)
    label_map = _nearest(pixels, seeds.astype(np.float32)).reshape(height, width).astype(np.int32)
    parent_maps, points = [], seeds.astype(np.float32)
    for coarse in counts[1:]:
        chosen = points[rng.choice(points.shape[0], coarse, replace=False)]
        parents = _nearest(points, chosen).astype(np.int32)  # a chosen seed is its own nearest
        parent_maps.append(parents)
        points = chosen
    return label_map, parent_maps


def _nearest(points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """[P] index of the nearest of `seeds` ([S, 2]) for each of `points` ([P, 2])."""
    distances = (points**2).sum(1, keepdims=True) - 2 * points @ seeds.T + (seeds**2).sum(1)
    return distances.argmin(axis=1)


def _cover(rng: np.random.Generator, items: int, groups: int) -> np.ndarray:
    """[items] int32 group of each item, every group used at least once."""
    labels = rng.integers(0, groups, items)
    labels[rng.permutation(items)[:groups]] = np.arange(groups)
    return labels.astype(np.int32)


def _areas_and_boxes(label_map: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """[N] int64 pixel counts and [N, 4] int32 boxes (x0, y0, x1, y1 exclusive) of labels 0..N-1."""
    flat = label_map.ravel()
    order = np.argsort(flat, kind="stable")
    areas = np.bincount(flat, minlength=count).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(areas)[:-1]])
    ys, xs = np.divmod(order, label_map.shape[1])
    boxes = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) + 1,
            np.maximum.reduceat(ys, starts) + 1,
        ],
        axis=1,
    )
    return areas, boxes.astype(np.int32)


class SyntheticExtractor:
    """An `Extractor` whose prediction for a file is a deterministic function of its bytes.

    Args:
        **options: passed to `synthetic_prediction`.
    """

    def __init__(self, **options) -> None:
        self.options = options
        self.calls = 0
        self.images_seen = 0

    def __call__(self, paths: list[Path]) -> list[SyntheticPrediction]:
        self.calls += 1
        self.images_seen += len(paths)
        return [self.predict(path) for path in paths]

    def predict(self, path: Path) -> SyntheticPrediction:
        seed = int.from_bytes(hashlib.sha256(Path(path).read_bytes()).digest()[:8], "little")
        return synthetic_prediction(np.random.default_rng(seed), **self.options)
