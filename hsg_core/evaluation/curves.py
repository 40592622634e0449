"""Covering over every scale of a hierarchy: the classic ODS / OIS, beside the fixed-level table.

A hierarchy is scored at each point of a scale, and the BSDS summary is taken over the points:

* ODS (optimal dataset scale): the best single point for the whole data set, covering pooled over
  images and annotators (Σ covered / Σ pixels);
* OIS (optimal image scale): the best point chosen per image, pooled the same way.

Two scales: region counts (`CURVE_COUNTS`; any hierarchy that can be cut at n regions — HSG's
contour tree, the UCM baselines), and contour thresholds (`UCM_THRESHOLDS`, the benchmark's 99
thresholds, for the gPb-owt-ucm maps, whose native scale it is; Arbeláez et al. 2011 report
covering ODS 0.59 / OIS 0.65 on the BSDS500 test split). OIS does not depend on the scale's
parametrisation (it takes every cut of the image); ODS does, so the report names the scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from skimage import measure

from ..overseg.superpixels import contiguous
from .metrics import covering_counts

CURVE_COUNTS = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)
UCM_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.01, 0.99, 99), 2))


class CurveScores:
    """Covering of one method at every point of a scale, image by image."""

    def __init__(self, scale: Sequence[float], unit: str) -> None:
        self.scale, self.unit = list(scale), unit
        self.covered: list[np.ndarray] = []  # per image [P]
        self.pixels: list[int] = []

    def add(self, cut: Callable[[float], np.ndarray], ground_truths: list[np.ndarray]) -> None:
        """Score `cut(point)` [H, W] for every point of the scale against every annotation."""
        covered = np.zeros(len(self.scale))
        pixels = 0
        for i, point in enumerate(self.scale):
            label_map = cut(point)
            for gt in ground_truths:
                c, n = covering_counts(label_map, gt)
                covered[i] += c
                pixels += n if i == 0 else 0
        self.covered.append(covered)
        self.pixels.append(pixels)

    def summary(self) -> dict:
        covered, pixels = np.stack(self.covered), max(sum(self.pixels), 1)  # [I, P]
        curve = covered.sum(0) / pixels
        best = int(curve.argmax())
        return {
            "unit": self.unit,
            "scale": self.scale,
            "covering": [float(v) for v in curve],
            "ods": float(curve[best]),
            "ods_at": self.scale[best],
            "ois": float(covered.max(1).sum() / pixels),
            "images": len(self.pixels),
        }


def ucm2_threshold_cut(ucm2: np.ndarray, threshold: float) -> np.ndarray:
    """[H, W] regions of a [2H+1, 2W+1] ultrametric contour map at `threshold` (BSDS convention)."""
    return contiguous(measure.label(ucm2 <= threshold, connectivity=1)[1::2, 1::2])


class CurveEvaluation:
    """Curves of HSG's hierarchy and of baselines that can be cut at any region count."""

    def __init__(self, counts: Sequence[int] = CURVE_COUNTS) -> None:
        self.counts = list(counts)
        self.scores: dict[str, CurveScores] = {}

    def add_counts(
        self, name: str, cut: Callable[[int], np.ndarray], ground_truths: list[np.ndarray]
    ) -> None:
        """Score a hierarchy cut at each of `counts` regions (`cut(n)` -> [H, W] with <= n regions)."""
        self.scores.setdefault(name, CurveScores(self.counts, "regions")).add(cut, ground_truths)

    def add_thresholds(self, name: str, ucm2: np.ndarray, ground_truths: list[np.ndarray]) -> None:
        """Score a BSDS ucm2 map at its native thresholds."""
        scores = self.scores.setdefault(name, CurveScores(UCM_THRESHOLDS, "threshold"))
        scores.add(lambda t: ucm2_threshold_cut(ucm2, t), ground_truths)

    def summary(self) -> dict:
        return {name: scores.summary() for name, scores in self.scores.items()}
