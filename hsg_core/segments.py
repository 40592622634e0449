"""Segments: spherical k-means of pixel embeddings intersected with the oversegmentation.

Shapes: B crops, N = h*w pixels of a feature grid, D embedding dims, S segments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -1  # label of padded / unknown pixels


def location_features(height: int, width: int, device: torch.device) -> Tensor:
    """[2, h, w] (y, x) coordinates, each linspace(0, 1) - 0.5, as the original."""
    ys = torch.linspace(0, 1, height, device=device) - 0.5
    xs = torch.linspace(0, 1, width, device=device) - 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_y, grid_x])


GRID_RULES = (
    "equal",
    "original",
)  # k-means grid initialisation rules (config grouping.kmeans_init)


def grid_initial_labels(
    grid: tuple[int, int], size: tuple[int, int], device: torch.device
) -> Tensor:
    """[h*w] initial cluster ids: a gy x gx grid of equal rectangular cells, ids 0..gy*gx-1 row-major."""
    (gy, gx), (h, w) = grid, size
    rows = torch.div(torch.arange(h, device=device) * gy, h, rounding_mode="floor")
    cols = torch.div(torch.arange(w, device=device) * gx, w, rounding_mode="floor")
    return (rows[:, None] * gx + cols[None, :]).reshape(-1)


def original_grid_labels(
    grid: tuple[int, int], size: tuple[int, int], device: torch.device
) -> Tensor:
    """[h*w] initial cluster ids by the original's rule (spec §2, `initialize_cluster_labels`).

    Row r of h gets cell round(r (gy-1) / (h-1)), i.e. round(linspace(0, gy-1, h)) in float32 with
    torch's round-half-to-even; columns likewise. The first and last cells are about half as tall
    (wide) as the others: rows [5, 9, 9, 5] for h = 28, gy = 4. Cell (y, x) has id y + n_y x
    (column-major, n_y = the number of row cells), renumbered 0..n-1 in that order, so a grid finer
    than the image leaves no empty id.
    """
    (gy, gx), (h, w) = grid, size
    rows = torch.linspace(0, gy - 1, h, device=device).round().long()
    cols = torch.linspace(0, gx - 1, w, device=device).round().long()
    ids = rows[:, None] + (int(rows.max()) + 1) * cols[None, :]
    return torch.unique(ids.reshape(-1), return_inverse=True)[1]


def initial_clusters(
    grid: tuple[int, int], size: tuple[int, int], device: torch.device, rule: str = "equal"
) -> tuple[Tensor, int]:
    """Initial k-means labels [h*w] of a gy x gx grid on an h x w map, and the cluster count to use.

    rule "equal": equal cells, gy*gx clusters (ours); "original": `original_grid_labels`, as many
    clusters as cells occur (the original's count).
    """
    if rule == "equal":
        return grid_initial_labels(grid, size, device), grid[0] * grid[1]
    if rule == "original":
        labels = original_grid_labels(grid, size, device)
        return labels, int(labels.max()) + 1
    raise ValueError(f"unknown k-means grid rule {rule!r}; rules: {', '.join(GRID_RULES)}")


def spherical_kmeans(
    features: Tensor,
    labels: Tensor,
    num_clusters: int,
    iterations: int,
    valid: Tensor | None = None,
) -> Tensor:
    """Batched spherical k-means from given initial labels.

    Each iteration: M-step mu_k = normalize(sum_{z_i = k} x_i) (an empty cluster gets 0), then
    E-step z_i = argmax_k x_i . mu_k. Invalid pixels never move a centroid and get IGNORE.

    Args:
        features: [B, N, C] unit rows.
        labels: [B, N] or [N] initial cluster ids in 0..num_clusters-1.
        valid: [B, N] bool (default all).
    Returns:
        [B, N] int64 cluster ids (IGNORE where invalid).
    """
    b, n, _ = features.shape
    labels = labels.expand(b, n).clone() if labels.dim() == 1 else labels.clone()
    valid = torch.ones(b, n, dtype=torch.bool, device=features.device) if valid is None else valid
    weights = valid.to(features.dtype)
    for _ in range(iterations):
        one_hot = (
            F.one_hot(labels.clamp_min(0), num_clusters).to(features.dtype) * weights[..., None]
        )
        centroids = F.normalize(one_hot.transpose(1, 2) @ features, dim=-1)  # [B, K, C]
        labels = (features @ centroids.transpose(1, 2)).argmax(-1)
    return torch.where(valid, labels, torch.full_like(labels, IGNORE))


def majority_downsample(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Per output cell, the most frequent label of the input pixels it covers.

    Unlike nearest sampling (which keeps one pixel per cell and loses small regions), every
    pixel votes. A cell whose majority is IGNORE stays IGNORE.

    Args:
        labels: [B, H, W] int64, ids >= 0 or IGNORE.
        size: (h, w) of the feature grid.
    Returns:
        [B, h, w] int64.
    """
    num = int(labels.max().item()) + 2 if labels.numel() else 1
    shifted = labels + 1  # IGNORE -> 0
    votes = F.one_hot(shifted, num).permute(0, 3, 1, 2).float()  # [B, L, H, W]
    pooled = F.adaptive_avg_pool2d(votes, size)
    return pooled.argmax(1) - 1


def intersect_segments(clusters: Tensor, superpixels: Tensor) -> tuple[Tensor, Tensor]:
    """Segments = k-means clusters ∩ oversegments, numbered globally across the batch.

    Args:
        clusters: [B, N] cluster ids (IGNORE allowed).
        superpixels: [B, N] oversegment ids (IGNORE allowed).
    Returns:
        segment_ids [B, N] int64 in 0..S-1 (IGNORE where either input is IGNORE),
        segment_keys [S, 3] int64 rows (crop, cluster, superpixel), sorted.
    """
    b, n = clusters.shape
    valid = (clusters >= 0) & (superpixels >= 0)
    crop = torch.arange(b, device=clusters.device)[:, None].expand(b, n)
    keys = torch.stack([crop[valid], clusters[valid], superpixels[valid]], dim=1)
    unique_keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
    segment_ids = torch.full_like(clusters, IGNORE)
    segment_ids[valid] = inverse
    return segment_ids, unique_keys


def segment_means(
    embeddings: Tensor, segment_ids: Tensor, num_segments: int, normalize: bool = True
) -> Tensor:
    """Mean embedding of each segment (unit-normalised by default).

    Args:
        embeddings: [P, D]; segment_ids: [P] in 0..S-1 (no IGNORE).
    Returns:
        [S, D].
    """
    sums = embeddings.new_zeros(num_segments, embeddings.shape[1])
    sums = sums.index_add(0, segment_ids, embeddings)
    if normalize:
        return F.normalize(sums, dim=1)
    counts = torch.bincount(segment_ids, minlength=num_segments).clamp_min(1)
    return sums / counts[:, None].to(sums.dtype)
