"""Giving class names to unsupervised regions: kNN-prototype label transfer and dataset clustering.

* kNN label transfer (the paper's protocol, spec §5): a memory of region prototypes from a
  labelled split, each labelled by the majority ground-truth label of its pixels (void included,
  as the original; void-majority prototypes are dropped). Each test region takes the majority
  label of its k = 20 nearest prototypes by cosine (ties -> lowest class id).
* Clustering for Hungarian matching (STEGO protocol): the test regions' embeddings are grouped
  into K = C clusters shared across the dataset (spherical k-means weighted by each region's
  valid pixels), then matched one-to-one to classes (`metrics.hungarian_assignment`).

The memory prototypes are the regions of a Prediction level (level 0 = k-means ∩ oversegments,
computed at the predictor's working resolution); the original used k-means clusters alone, at a
512-pixel longer side. Hungarian matching uses K = C clusters, so on a dataset where only some
classes occur, clusters matched to absent classes count as errors (real VOC/COCO splits have all).

Both work per region: a level of a Prediction paints each region with one label, so per-region
class counts give the exact pixel confusion matrix without keeping label maps in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Level
from .metrics import SegmentationScores, hungarian_scores, region_confusion, segmentation_scores


@dataclass
class RegionClasses:
    """The regions of one level of one image and the ground-truth classes under them.

    Attributes:
        embeddings: [N, D] float32 unit region embeddings.
        counts: [N, C + 1] int64 pixels of class c in region n; column C counts void pixels
            (ground truth outside [0, C)).
    """

    embeddings: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_level(cls, level: Level, gt: np.ndarray, num_classes: int) -> RegionClasses:
        if level.label_map.shape != gt.shape:
            raise ValueError(
                f"level map {level.label_map.shape} and ground truth {gt.shape} differ in size"
            )
        column = np.where((gt >= 0) & (gt < num_classes), gt, num_classes).astype(np.int64)
        size = level.num_regions * (num_classes + 1)
        counts = np.bincount(
            level.label_map.astype(np.int64).ravel() * (num_classes + 1) + column.ravel(),
            minlength=size,
        )
        return cls(
            level.embeddings.astype(np.float32), counts.reshape(level.num_regions, num_classes + 1)
        )


def stack_regions(regions: list[RegionClasses]) -> RegionClasses:
    """Concatenate the regions of several images: [sum N, D] and [sum N, C + 1]."""
    return RegionClasses(
        np.concatenate([r.embeddings for r in regions]), np.concatenate([r.counts for r in regions])
    )


class PrototypeMemory:
    """Labelled region prototypes. embeddings: [M, D] unit; labels: [M] class ids in [0, C)."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        self.embeddings, self.labels, self.num_classes = (
            embeddings,
            labels.astype(np.int64),
            num_classes,
        )

    @classmethod
    def from_regions(cls, regions: list[RegionClasses]) -> PrototypeMemory:
        """Label each region by its majority ground-truth label; drop void-majority regions."""
        pooled = stack_regions(regions)
        num_classes = pooled.counts.shape[1] - 1
        majority = pooled.counts.argmax(1)
        keep = majority < num_classes
        return cls(pooled.embeddings[keep], majority[keep], num_classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def vote(self, queries: np.ndarray, k: int = 20, chunk: int = 1024) -> np.ndarray:
        """[S, D] unit queries -> [S] majority class of the k most cosine-similar prototypes.

        An empty memory gives -1 (no class) for every query.
        """
        if len(self) == 0:
            return np.full(queries.shape[0], -1, dtype=np.int64)
        k = min(k, len(self))
        out = np.empty(queries.shape[0], dtype=np.int64)
        for start in range(0, queries.shape[0], chunk):
            sims = queries[start : start + chunk] @ self.embeddings.T  # [s, M]
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [s, k]
            votes = (self.labels[nearest][..., None] == np.arange(self.num_classes)).sum(
                1
            )  # [s, C]
            out[start : start + chunk] = votes.argmax(1)
        return out


def knn_transfer_scores(
    memory: PrototypeMemory, regions: list[RegionClasses], k: int = 20
) -> SegmentationScores:
    """mIoU / pixel accuracy (percent) of labelling every test region by kNN vote over `memory`."""
    pooled = stack_regions(regions)
    classes = memory.vote(pooled.embeddings, k)
    return segmentation_scores(region_confusion(pooled.counts[:, :-1], classes))


def kmeans_plus_plus(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to k seeds [k', D] drawn with probability ∝ weight * (cosine distance to nearest seed)^2."""
    seeds = [int(rng.choice(points.shape[0], p=weights / weights.sum()))]
    distance = 1.0 - points @ points[seeds[0]]
    for _ in range(1, k):
        chance = weights * np.where(distance > 1e-6, distance, 0.0) ** 2
        if chance.sum() <= 0:  # fewer distinct points than k
            break
        seeds.append(int(rng.choice(points.shape[0], p=chance / chance.sum())))
        distance = np.minimum(distance, 1.0 - points @ points[seeds[-1]])
    return points[seeds]


def weighted_spherical_kmeans(
    points: np.ndarray, weights: np.ndarray, k: int, iterations: int = 50, seed: int = 0
) -> np.ndarray:
    """Cluster unit vectors by cosine, each weighted (e.g. by pixel count).

    Args:
        points: [N, D] unit rows.
        weights: [N] non-negative; zero-weight points are assigned but never move a centroid.
    Returns:
        [N] int64 cluster ids in [0, k).
    """
    if points.shape[0] == 0 or weights.sum() <= 0:
        return np.zeros(points.shape[0], dtype=np.int64)
    centroids = kmeans_plus_plus(points, weights.astype(np.float64), k, np.random.default_rng(seed))
    assignment = np.full(points.shape[0], -1, dtype=np.int64)
    for _ in range(iterations):
        new = (points @ centroids.T).argmax(1)
        if np.array_equal(new, assignment):
            break
        assignment = new
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, assignment, points * weights[:, None])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids)
    return assignment


def hungarian_cluster_scores(
    regions: list[RegionClasses], num_clusters: int | None = None, seed: int = 0
) -> SegmentationScores:
    """Cluster the test regions into K (default C) dataset-wide clusters, Hungarian-match, score."""
    pooled = stack_regions(regions)
    class_counts = pooled.counts[:, :-1]
    num_clusters = num_clusters or class_counts.shape[1]
    clusters = weighted_spherical_kmeans(
        pooled.embeddings.astype(np.float64), class_counts.sum(1), num_clusters, seed=seed
    )
    cluster_class = np.zeros((num_clusters, class_counts.shape[1]), dtype=np.int64)
    np.add.at(cluster_class, clusters, class_counts)
    return hungarian_scores(cluster_class)
