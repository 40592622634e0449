"""Region features from pixel features: a grid upsampled to pixels, sums per region, sums up a chain.

Region embeddings are the unit mean of their pixels' unit embeddings; keeping per-region *sums*
lets every coarser level add its children's sums instead of revisiting the pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse


def grid_to_pixels(
    grid: torch.Tensor, valid: tuple[float, float], size: tuple[int, int]
) -> torch.Tensor:
    """Unit features of a [D, gh, gw] grid whose first `valid` (rows, cols) cells hold the image,
    resized bilinearly to [H, W] -> [D, H*W] float32 (channels first: summing by region reads it
    in memory order; a [H*W, D] copy cost more than the sums)."""
    padded = (round(size[0] * grid.shape[1] / valid[0]), round(size[1] * grid.shape[2] / valid[1]))
    up = F.interpolate(grid[None].float(), size=padded, mode="bilinear", align_corners=False)[0]
    up = F.normalize(up[:, : size[0], : size[1]], dim=0)
    return up.reshape(up.shape[0], -1).contiguous()


def region_sums(pixels: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """[D, N] pixel features and [H, W] labels 0..R-1 (N = H*W) -> [R, D] float64 per-region sums."""
    flat = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64).ravel()).to(pixels.device)
    sums = torch.zeros(
        pixels.shape[0], int(flat.max()) + 1, dtype=pixels.dtype, device=pixels.device
    )
    return sums.index_add_(1, flat, pixels.detach()).t().double().cpu().numpy()


def level_of_segments(segments: np.ndarray, level_map: np.ndarray) -> np.ndarray:
    """[S] the `level_map` region of each segment 0..S-1 of `segments` (maps nested, both [H, W])."""
    groups = np.zeros(int(segments.max()) + 1, dtype=np.int64)
    groups[segments.ravel()] = level_map.ravel()
    return groups


def chain_sums(segment_sums: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """[S, D] sums per segment and [S] region of each segment -> [N, D] sums per region."""
    out = np.zeros((int(chain.max()) + 1, segment_sums.shape[1]))
    np.add.at(out, chain, segment_sums)
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def patch_overlap(
    labels: np.ndarray, grid_shape: tuple[int, int], valid: tuple[float, float]
) -> sparse.csr_matrix:
    """[R, gh*gw] pixel counts of each region 0..R-1 of `labels` [H, W] in each cell of a patch grid
    whose first `valid` (rows, cols) cells cover the labels (a region's patches, area-weighted)."""
    h, w = labels.shape
    rows = np.minimum((np.arange(h) + 0.5) * valid[0] / h, grid_shape[0] - 1).astype(np.int64)
    cols = np.minimum((np.arange(w) + 0.5) * valid[1] / w, grid_shape[1] - 1).astype(np.int64)
    cells = (rows[:, None] * grid_shape[1] + cols[None, :]).ravel()
    flat = labels.ravel()
    return sparse.csr_matrix(
        (np.ones(flat.size), (flat, cells)),
        shape=(int(flat.max()) + 1, grid_shape[0] * grid_shape[1]),
    )
