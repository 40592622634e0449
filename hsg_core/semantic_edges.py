"""Semantic edge map: where a feature grid changes, as an [H, W] map in [0, 1] (torch).

The backbone's patch features are upsampled (bilinear) to a grid `SUBCELLS` times finer than the
patches and renormalised; at each point the change is ``1 - cos`` between the features `offset`
patches to the left and right (and above and below), the larger of the two directions, times
`scale`, clipped to 1; the map is then resized (bilinear) to the contour map's [H, W]. Comparing
points one patch apart measures the change across a patch, not the interpolation between two.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SUBCELLS = 4  # sub-grid points per patch side at which the change is measured


def _shift_change(feats: Tensor, step: int, dim: int) -> Tensor:
    """1 - cos between points `step` before and after each point along `dim` of [C, h, w]; edges 0."""
    size = feats.shape[dim]
    out = torch.zeros(feats.shape[1:], dtype=feats.dtype, device=feats.device)
    if size <= 2 * step:
        return out
    before, after = (
        feats.narrow(dim, 0, size - 2 * step),
        feats.narrow(dim, 2 * step, size - 2 * step),
    )
    out.narrow(dim - 1, step, size - 2 * step).copy_(1.0 - (before * after).sum(0))
    return out


def semantic_edges(
    features: Tensor,
    valid_size: tuple[int, int],
    out_size: tuple[int, int],
    offset: float = 1.0,
    scale: float = 2.0,
) -> np.ndarray:
    """Feature change of a patch grid, at the resolution of a contour map.

    Args:
        features: [C, h, w] patch features (any scale; each patch is normalised).
        valid_size: (rows, cols) of the grid that hold the image, in patches (fractions allowed:
            a ViT pads the input to whole patches; the padded part is cropped away).
        out_size: (H, W) of the map to return.
        offset: distance, in patches, between the compared points on each side.
        scale: multiplier before clipping to 1.
    Returns:
        [H, W] float32 in [0, 1].
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [C, h, w], got {tuple(features.shape)}")
    feats = F.normalize(features.float(), dim=0)[None]
    fine = (round(features.shape[1] * SUBCELLS), round(features.shape[2] * SUBCELLS))
    feats = F.normalize(
        F.interpolate(feats, size=fine, mode="bilinear", align_corners=False)[0], dim=0
    )
    rows, cols = max(1, round(valid_size[0] * SUBCELLS)), max(1, round(valid_size[1] * SUBCELLS))
    feats = feats[:, :rows, :cols]
    step = max(1, round(offset * SUBCELLS))
    change = torch.maximum(_shift_change(feats, step, 1), _shift_change(feats, step, 2))
    change = F.interpolate(change[None, None], size=out_size, mode="bilinear", align_corners=False)[
        0, 0
    ]
    return (change * scale).clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
