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
        return UCMHierarchy.from_edges(edges, cfg.ucm_ordering).cut(cfg.max_regions, cfg.ucm_floor)
    if cfg.method == "gradient_ucm":
        hierarchy = UCMHierarchy.from_edges(gradient_edges(image), cfg.ucm_ordering)
        return hierarchy.cut(cfg.max_regions, cfg.ucm_floor)
    if cfg.method == "slic":
        return slic_superpixels(image, cfg.max_regions, cfg.slic_compactness)
    return felzenszwalb_superpixels(image, cfg.max_regions, cfg.felzenszwalb_scale)


EDGE_METHODS = ("hed_ucm", "gradient_ucm")


def edge_map(
    image: np.ndarray, cfg, *, cache: OversegCache | None = None, device: torch.device | None = None
) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] float32 contour strength in [0, 1] of the UCM methods
    (HED probability for hed_ucm, the Lab gradient for gradient_ucm), cached by image content.

    Values are rounded to float16, the precision the cache stores, so a cached and a fresh map
    give the same hierarchy."""
    if cfg.method not in EDGE_METHODS:
        raise ValueError(
            f"overseg.method {cfg.method!r} has no edge map; the contour hierarchy needs one of "
            f"{', '.join(EDGE_METHODS)}"
        )
    edges = cache.get_edges(image, cfg) if cache is not None else None
    if edges is None:
        if cfg.method == "hed_ucm":
            edges = hed_edges(image, load_hed(device=str(device or "cpu")))
        else:
            edges = gradient_edges(image)
        edges = edges.astype(np.float16).astype(
            np.float32
        )  # what the cache keeps: same tree either way
        if cache is not None:
            cache.put_edges(image, cfg, edges)
    return edges


def oversegment(
    image: np.ndarray, cfg, *, cache: OversegCache | None = None, device: torch.device | None = None
) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] int32 region ids 0..N-1 (all used), N <= cfg.max_regions."""
    if cfg.method not in METHODS:
        raise ValueError(
            f"unknown oversegmentation method {cfg.method!r}; methods: {', '.join(METHODS)}"
        )
    if cfg.method.endswith("_ucm") and cfg.ucm_ordering not in HIERARCHIES:
        raise ValueError(
            f"unknown overseg.ucm_ordering {cfg.ucm_ordering!r}; orderings: {', '.join(HIERARCHIES)}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"oversegment needs an HxWx3 uint8 image, got shape {image.shape} {image.dtype}"
        )
    labels = cache.get(image, cfg) if cache is not None else None
    if labels is None:
        labels = _compute(image, cfg, device)
        if cache is not None:
            cache.put(image, cfg, labels)
    return labels


__all__ = [
    "oversegment",
    "edge_map",
    "EDGE_METHODS",
    "OversegCache",
    "UCMHierarchy",
    "gradient_edges",
    "hed_edges",
    "load_hed",
    "slic_superpixels",
    "felzenszwalb_superpixels",
    "METHODS",
]
