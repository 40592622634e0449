"""Low-level oversegmentation prior: `oversegment(image, cfg)` -> [H, W] int32 ids 0..N-1, N <= max_regions.

Methods: hed_ucm (HED edges -> watershed UCM, the counterpart of SE-OWT-UCM), gradient_ucm
(weight-free Lab gradient -> UCM), slic, felzenszwalb. UCM orderings: `ucm.HIERARCHIES`.
"""
from __future__ import annotations

import numpy as np
import torch

from .cache import OversegCache
from .hed import hed_edges, load_hed
from .superpixels import felzenszwalb_superpixels, slic_superpixels
from .ucm import HIERARCHIES, UCMHierarchy, gradient_edges

METHODS = ("hed_ucm", "gradient_ucm", "slic", "felzenszwalb")


def _compute(image: np.ndarray, cfg, device: torch.device | None) -> np.ndarray:
    if cfg.method == "hed_ucm":
        edges = hed_edges(image, load_hed(device=str(device or "cpu")))
        return UCMHierarchy.from_edges(edges, cfg.ucm_ordering).cut(cfg.max_regions)
    if cfg.method == "gradient_ucm":
        return UCMHierarchy.from_edges(gradient_edges(image), cfg.ucm_ordering).cut(cfg.max_regions)
    if cfg.method == "slic":
        return slic_superpixels(image, cfg.max_regions, cfg.slic_compactness)
    return felzenszwalb_superpixels(image, cfg.max_regions, cfg.felzenszwalb_scale)


def oversegment(image: np.ndarray, cfg, *, cache: OversegCache | None = None,
                device: torch.device | None = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] int32 region ids 0..N-1 (all used), N <= cfg.max_regions."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown oversegmentation method {cfg.method!r}; methods: {', '.join(METHODS)}")
    if cfg.method.endswith("_ucm") and cfg.ucm_ordering not in HIERARCHIES:
        raise ValueError(f"unknown overseg.ucm_ordering {cfg.ucm_ordering!r}; orderings: {', '.join(HIERARCHIES)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"oversegment needs an HxWx3 uint8 image, got shape {image.shape} {image.dtype}")
    labels = cache.get(image, cfg) if cache is not None else None
    if labels is None:
        labels = _compute(image, cfg, device)
        if cache is not None:
            cache.put(image, cfg, labels)
    return labels


__all__ = ["oversegment", "OversegCache", "UCMHierarchy", "gradient_edges", "hed_edges", "load_hed",
           "slic_superpixels", "felzenszwalb_superpixels", "METHODS"]
