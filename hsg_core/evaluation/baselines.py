"""Baseline hierarchies cut at matched region counts.

"Matched" means: for each image and each HSG level, the baseline is cut (or run) to give about
the number of regions that HSG's level has on that image, so that covering compares partitions of
the same granularity. Every baseline answers `cut(n) -> [H, W] int32` with at most n regions:

* ``kmeans``: k-means with k = n on (Lab colour, position) per pixel; a region is a cluster
  (not necessarily connected, like HSG's own groups);
* ``slic``, ``felzenszwalb``: scikit-image superpixels (`hsg_core.overseg.superpixels`), re-run
  with a finer setting while they give clearly fewer than n regions, merged down to <= n;
* ``gradient_ucm``: the weight-free watershed hierarchy (by dynamics, the ordering of HSG's own
  prior) on a Lab gradient (higra), cut at the finest level with <= n regions
  (`hsg_core.overseg.ucm`); ``gradient_ucm_area``: the same hierarchy ordered by area;
* ``hed_ucm``: HSG's oversegmentation prior on its own, the same hierarchy on HED edges. Not
  weight-free: HED was trained on BSDS500 (train + val) with human boundaries. It tells what
  the learned grouping adds to (or takes from) the contours it starts from;
* ``gpb_ucm``: the gPb-owt-ucm maps shipped with BSDS500 val, cut at the lowest threshold that
  leaves <= n regions.

UCM cuts are nested across n; SLIC, Felzenszwalb and k-means make a new partition per n.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.cluster.vq import kmeans2, vq
from skimage import color, measure

from ..overseg.hed import hed_edges, load_hed
from ..overseg.superpixels import (
    contiguous,
    felzenszwalb_superpixels,
    merge_smallest,
    slic_superpixels,
)
from ..overseg.ucm import UCMHierarchy, gradient_edges
from .datasets import BSDSDataset, Dataset, DatasetError, Sample

KMEANS_FIT_PIXELS = 20_000  # k-means centroids are fitted on a random pixel sample of this size
POSITION_WEIGHT = 0.5  # weight of (y, x) / longer side against Lab / 100 in the k-means features


class Baseline:
    """A hierarchy of one image, cut on demand; each count is computed once."""

    def __init__(self, cutter: Callable[[int], np.ndarray], shape: tuple[int, int]) -> None:
        self._cutter, self.shape = cutter, shape
        self._cuts: dict[int, np.ndarray] = {}

    def cut(self, num_regions: int) -> np.ndarray:
        """[H, W] int32 region ids 0..N-1 with N <= max(num_regions, 1)."""
        if num_regions <= 1:
            return np.zeros(self.shape, dtype=np.int32)
        if num_regions not in self._cuts:
            self._cuts[num_regions] = contiguous(self._cutter(num_regions))
        return self._cuts[num_regions]


def kmeans_features(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 -> [H*W, 5] float64: Lab / 100 and POSITION_WEIGHT * (y, x) / longer side."""
    h, w = image.shape[:2]
    lab = color.rgb2lab(image).reshape(-1, 3) / 100.0
    yy, xx = np.mgrid[0:h, 0:w]
    position = np.stack([yy.ravel(), xx.ravel()], 1) * (POSITION_WEIGHT / max(h, w))
    return np.concatenate([lab, position], 1)


def kmeans_regions(
    features: np.ndarray, shape: tuple[int, int], num_regions: int, seed: int = 0
) -> np.ndarray:
    """k-means (k-means++ start, fitted on a pixel sample) of [H*W, F] features -> [H, W] cluster ids."""
    rng = np.random.default_rng(seed)
    sample = features
    if features.shape[0] > KMEANS_FIT_PIXELS:
        sample = features[rng.choice(features.shape[0], KMEANS_FIT_PIXELS, replace=False)]
    centroids, _ = kmeans2(sample, min(num_regions, sample.shape[0]), iter=10, minit="++", seed=rng)
    labels, _ = vq(features, centroids)
    return labels.reshape(shape)


def ucm2_cut(ucm2: np.ndarray, num_regions: int) -> np.ndarray:
    """Regions of a BSDS ultrametric contour map at the lowest threshold giving <= num_regions.

    Args:
        ucm2: [2H+1, 2W+1] float contour strengths on the doubled (Khalimsky) grid.
    Returns:
        [H, W] int32 region ids; regions at threshold t are the 4-connected components of
        ``ucm2 <= t``, read at the pixel cells ``[1::2, 1::2]``.
    """
    thresholds = np.unique(ucm2)
    low, high = 0, thresholds.size - 1  # the top threshold always leaves one region
    best = None
    while low <= high:  # region count falls as the threshold rises: binary search
        mid = (low + high) // 2
        regions = measure.label(ucm2 <= thresholds[mid], connectivity=1)[1::2, 1::2]
        if np.unique(regions).size <= num_regions:
            best, high = regions, mid - 1
        else:
            low = mid + 1
    return contiguous(best)


def make_kmeans(image: np.ndarray) -> Baseline:
    features = kmeans_features(image)
    return Baseline(lambda n: kmeans_regions(features, image.shape[:2], n), image.shape[:2])


def slic_matched(image: np.ndarray, num_regions: int, tries: int = 4) -> np.ndarray:
    """SLIC asked for more segments until it gives >= num_regions, then merged down to num_regions.

    SLIC's `n_segments` is only a hint (it often returns fewer); this brings the count close to n.
    """
    labels = slic_superpixels(image, num_regions)
    asked = num_regions
    for _ in range(tries):
        found = int(labels.max()) + 1
        if found >= num_regions:
            break
        asked = int(np.ceil(asked * 1.2 * num_regions / found))
        labels = merge_smallest(slic_superpixels(image, asked), num_regions)
    return labels


def felzenszwalb_matched(image: np.ndarray, num_regions: int, tries: int = 4) -> np.ndarray:
    """Felzenszwalb with its scale divided by 4 while it gives < 90 % of num_regions (merged to <= n)."""
    scale = 200.0
    labels = felzenszwalb_superpixels(image, num_regions, scale)
    for _ in range(tries):
        if labels.max() + 1 >= 0.9 * num_regions:
            break
        scale /= 4
        labels = felzenszwalb_superpixels(image, num_regions, scale)
    return labels


def make_slic(image: np.ndarray) -> Baseline:
    return Baseline(lambda n: slic_matched(image, n), image.shape[:2])


def make_felzenszwalb(image: np.ndarray) -> Baseline:
    return Baseline(lambda n: felzenszwalb_matched(image, n), image.shape[:2])


def make_gradient_ucm(image: np.ndarray, ordering: str = "dynamics") -> Baseline:
    hierarchy = UCMHierarchy.from_edges(gradient_edges(image), ordering)
    return Baseline(hierarchy.cut, image.shape[:2])


def make_hed_ucm(image: np.ndarray) -> Baseline:
    hierarchy = UCMHierarchy.from_edges(hed_edges(image, load_hed()), "dynamics")
    return Baseline(hierarchy.cut, image.shape[:2])


def make_ucm2(ucm2: np.ndarray, shape: tuple[int, int]) -> Baseline:
    """A baseline from a precomputed [2H+1, 2W+1] ucm2 map of an [H, W] image."""
    if ucm2.shape != (2 * shape[0] + 1, 2 * shape[1] + 1):
        raise ValueError(f"ucm2 map {ucm2.shape} does not fit a {shape[1]}x{shape[0]} image")
    return Baseline(lambda n: ucm2_cut(ucm2, n), shape)


IMAGE_BASELINES: dict[str, Callable[[np.ndarray], Baseline]] = {
    "kmeans": make_kmeans,
    "slic": make_slic,
    "felzenszwalb": make_felzenszwalb,
    "gradient_ucm": make_gradient_ucm,
    "gradient_ucm_area": lambda image: make_gradient_ucm(image, "area"),
    "hed_ucm": make_hed_ucm,
}
BASELINE_NAMES = (*IMAGE_BASELINES, "gpb_ucm")
BaselineFactory = Callable[[Sample], Baseline]


def baseline_factories(names: list[str], dataset: Dataset) -> dict[str, BaselineFactory]:
    """Per name, a function from a sample to its baseline hierarchy.

    Raises:
        DatasetError: an unknown name, or ``gpb_ucm`` on a dataset without BSDS ucm2 maps.
    """
    factories: dict[str, BaselineFactory] = {}
    for name in names:
        if name in IMAGE_BASELINES:
            factories[name] = lambda sample, make=IMAGE_BASELINES[name]: make(sample.image)
        elif name == "gpb_ucm":
            if not isinstance(dataset, BSDSDataset):
                raise DatasetError(
                    "gpb_ucm needs the ucm2 maps of BSDS500 (val split); this is not BSDS500"
                )
            if not dataset.has_ucm2():
                raise DatasetError(
                    f"{dataset.root / 'ucm2' / dataset.split}: no such folder "
                    "(gpb_ucm needs BSDS500 ucm2 maps; only val ships them)"
                )
            for sample_id in dataset.ids:
                if not dataset.ucm2_path(sample_id).is_file():
                    raise DatasetError(
                        f"{dataset.ucm2_path(sample_id)}: no such ucm2 file (for gpb_ucm)"
                    )
            factories[name] = lambda sample: make_ucm2(
                dataset.ucm2(sample.id), sample.image.shape[:2]
            )
        else:
            raise DatasetError(f"unknown baseline {name!r}; baselines: {', '.join(BASELINE_NAMES)}")
    return factories
