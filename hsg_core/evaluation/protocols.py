"""Evaluation protocols: run a predictor over a dataset once and score every level.

* Hierarchy protocol (any dataset with ground-truth regions, e.g. BSDS500): per level, Arbeláez
  covering pooled over images and annotators (Σ covered / Σ pixels, as the BSDS benchmark), the
  dataset-best fixed level ("ODS-like") and the best level per image ("OIS-like"), NFCovering
  (mean over annotators, then over images that have foreground) and the mean region count; the
  same for each baseline cut at HSG's region count of that level and image.
* Labelled protocol (class masks): the hierarchy protocol on the test split, plus per level the
  kNN-prototype label transfer with a memory from a labelled split, and Hungarian matching of
  dataset-wide clusters (`transfer`).

A predictor is anything with ``predict(image [H, W, 3] uint8) -> Prediction``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ..types import Prediction
from .baselines import BaselineFactory, baseline_factories
from .curves import CurveEvaluation
from .datasets import BSDSDataset, Dataset, Sample
from .metrics import covering_counts, nf_covering
from .transfer import PrototypeMemory, RegionClasses, hungarian_cluster_scores, knn_transfer_scores

LOG = logging.getLogger(__name__)
HSG = "hsg"  # method name of the predictor in the reports
CURVE_BASELINES = (
    "hed_ucm",
    "gradient_ucm",
    "gradient_ucm_area",
    "gpb_ucm",
)  # hierarchies cut at any count


class Predictor(Protocol):
    def predict(self, image: np.ndarray) -> Prediction: ...


Cutter = Callable[[int], np.ndarray]  # n -> [H, W] the hierarchy's finest cut with <= n regions


def image_scores(
    label_map: np.ndarray,
    ground_truths: list[np.ndarray],
    void: int | None,
    background: tuple[int, ...],
) -> tuple[float, int, float]:
    """(covered, pixels, NFCovering) of one [H, W] map against every annotation of one image.

    covered and pixels are summed over annotators; NFCovering is their mean (NaN: no foreground).
    """
    covered, pixels, nfc = 0.0, 0, []
    for gt in ground_truths:
        valid = None if void is None else gt != void
        c, n = covering_counts(label_map, gt, valid)
        covered, pixels = covered + c, pixels + n
        nfc.append(nf_covering(label_map, gt, valid, background))
    finite = [v for v in nfc if np.isfinite(v)]
    return covered, pixels, float(np.mean(finite)) if finite else float("nan")


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


class LevelScores:
    """Covering and NFCovering of one method at each of L levels, image by image."""

    def __init__(self) -> None:
        self.covered: list[np.ndarray] = []  # per image [L]
        self.pixels: list[int] = []  # per image
        self.nfc: list[np.ndarray] = []  # per image [L]
        self.regions: list[np.ndarray] = []  # per image [L]

    def add(
        self,
        level_maps: Sequence[np.ndarray],
        ground_truths: list[np.ndarray],
        void: int | None,
        background: tuple[int, ...],
    ) -> None:
        scores = [image_scores(m, ground_truths, void, background) for m in level_maps]
        self.covered.append(np.array([s[0] for s in scores]))
        self.pixels.append(scores[0][1])
        self.nfc.append(np.array([s[2] for s in scores]))
        self.regions.append(np.array([np.unique(m).size for m in level_maps]))

    def extend(self, other: LevelScores) -> None:
        """Append the images another LevelScores holds (e.g. one scored in a worker process)."""
        for name in ("covered", "pixels", "nfc", "regions"):
            getattr(self, name).extend(getattr(other, name))

    def summary(self) -> dict:
        """Per-level means and the ODS-like / OIS-like covering (covering and NFCovering in [0, 1])."""
        covered, pixels = np.stack(self.covered), max(sum(self.pixels), 1)  # [I, L]
        nfc, regions = np.stack(self.nfc), np.stack(self.regions)
        per_level = covered.sum(0) / pixels
        nfc_images = np.isfinite(nfc).sum(0)
        nfc_level = np.where(nfc_images > 0, np.nansum(nfc, 0) / np.maximum(nfc_images, 1), np.nan)
        levels = [
            {
                "level": lv,
                "covering": float(per_level[lv]),
                "nf_covering": _nan_to_none(nfc_level[lv]),
                "mean_regions": float(regions[:, lv].mean()),
            }
            for lv in range(covered.shape[1])
        ]
        best_nfc = int(np.nanargmax(nfc_level)) if np.isfinite(nfc_level).any() else None
        return {
            "images": len(self.pixels),
            "levels": levels,
            "covering_ods": float(per_level.max()),
            "ods_level": int(per_level.argmax()),
            "covering_ois": float(covered.max(1).sum() / pixels),
            "nf_covering_best": None if best_nfc is None else float(nfc_level[best_nfc]),
            "nf_covering_best_level": best_nfc,
        }


class HierarchyEvaluation:
    """Scores HSG's levels and every baseline cut at the same region counts."""

    wants_cuts = True  # run_predictor passes the hierarchy's cutter when the predictor has one

    def __init__(
        self,
        baselines: dict[str, BaselineFactory],
        void: int | None,
        background: tuple[int, ...],
        curves: CurveEvaluation | None = None,
        ucm2: Callable[[Sample], np.ndarray] | None = None,
    ) -> None:
        """`curves`: also score every scale (ODS/OIS) of HSG and of the UCM baselines; `ucm2`: the
        sample's gPb-owt-ucm map, scored at its native thresholds too."""
        self.baselines, self.void, self.background = baselines, void, background
        self.curves, self.ucm2 = curves, ucm2
        self.scores = {name: LevelScores() for name in (HSG, *baselines)}
        self.seconds = {name: 0.0 for name in baselines}

    def score(self, name: str, sample: Sample, maps: Sequence[np.ndarray]) -> None:
        """Add one image's level maps to method `name`'s scores."""
        self.scores.setdefault(name, LevelScores()).add(
            maps, sample.ground_truths, self.void, self.background
        )

    def add(self, sample: Sample, prediction: Prediction, cut: Cutter | None = None) -> None:
        self.score(HSG, sample, [level.label_map for level in prediction.levels])
        counts = [level.num_regions for level in prediction.levels]
        if self.curves is not None and cut is not None:
            self.curves.add_counts(HSG, cut, sample.ground_truths)
        for name, make in self.baselines.items():
            start = time.perf_counter()
            baseline = make(sample)
            cuts = [baseline.cut(n) for n in counts]
            self.seconds[name] += time.perf_counter() - start
            self.score(name, sample, cuts)
            if self.curves is not None and name in CURVE_BASELINES:
                self.curves.add_counts(name, baseline.cut, sample.ground_truths)
        if self.curves is not None and self.ucm2 is not None:
            self.curves.add_thresholds(
                "gpb_ucm (thresholds)", self.ucm2(sample), sample.ground_truths
            )

    def summary(self) -> dict:
        return {name: scores.summary() for name, scores in self.scores.items()}


class MethodScores:
    """Consumer that scores another predictor's levels as one more method (no baselines), and its
    every scale when the evaluation keeps curves and the predictor has a tree."""

    wants_cuts = True

    def __init__(self, evaluation: HierarchyEvaluation, name: str) -> None:
        self.evaluation, self.name = evaluation, name

    def add(self, sample: Sample, prediction: Prediction, cut: Cutter | None = None) -> None:
        self.evaluation.score(self.name, sample, [level.label_map for level in prediction.levels])
        if self.evaluation.curves is not None and cut is not None:
            self.evaluation.curves.add_counts(self.name, cut, sample.ground_truths)


class RegionCollector:
    """Per level, the regions of every image with their ground-truth class counts."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.levels: list[list[RegionClasses]] = []

    def add(self, sample: Sample, prediction: Prediction) -> None:
        if not self.levels:
            self.levels = [[] for _ in prediction.levels]
        for regions, level in zip(self.levels, prediction.levels, strict=True):
            regions.append(
                RegionClasses.from_level(level, sample.ground_truths[0], self.num_classes)
            )


def run_predictor(predictor: Predictor, dataset: Dataset, consumers: Sequence) -> float:
    """Predict every sample once and hand (sample, prediction) to each consumer; returns seconds in predict."""
    seconds = 0.0
    with_cuts = hasattr(predictor, "predict_tree") and any(
        getattr(c, "wants_cuts", False) for c in consumers
    )
    for index, sample in enumerate(dataset):
        start = time.perf_counter()
        cut = None
        if with_cuts:
            prediction, cut = predictor.predict_tree(sample.image)
        else:
            prediction = predictor.predict(sample.image)
        seconds += time.perf_counter() - start
        if tuple(prediction.image_size) != sample.image.shape[:2]:
            raise ValueError(
                f"{sample.id}: prediction is {prediction.image_size}, image is "
                f"{sample.image.shape[:2]}"
            )
        for consumer in consumers:
            if getattr(consumer, "wants_cuts", False):
                consumer.add(sample, prediction, cut)
            else:
                consumer.add(sample, prediction)
        LOG.info(
            "%s %d/%d: regions per level %s",
            sample.id,
            index + 1,
            len(dataset),
            [lv.num_regions for lv in prediction.levels],
        )
    return seconds


def evaluate_hierarchy(
    predictor: Predictor,
    dataset: Dataset,
    baselines: Sequence[str] = (),
    others: dict[str, Predictor] | None = None,
    curves: bool = False,
) -> dict:
    """The hierarchy protocol: {"covering": {method: summary}, "seconds": {method: s}}, and with
    `curves` {"curves": {method: ODS/OIS summary}} over every scale (`hsg_core.evaluation.curves`)
    of the predictor (when it has `predict_tree`) and of the UCM baselines.

    `others`: more predictors (e.g. other checkpoints), scored on the same images as methods
    "hsg:<name>"; the baselines stay matched to `predictor`'s region counts.
    """
    ucm2 = None
    if curves and "gpb_ucm" in baselines and isinstance(dataset, BSDSDataset):
        ucm2 = lambda sample: dataset.ucm2(sample.id)  # noqa: E731
    curve_evaluation = CurveEvaluation() if curves else None
    evaluation = HierarchyEvaluation(
        baseline_factories(list(baselines), dataset),
        dataset.void,
        dataset.background,
        curve_evaluation,
        ucm2,
    )
    seconds = {HSG: run_predictor(predictor, dataset, [evaluation])}
    for name, other in (others or {}).items():
        seconds[f"{HSG}:{name}"] = run_predictor(
            other, dataset, [MethodScores(evaluation, f"{HSG}:{name}")]
        )
    result = {"covering": evaluation.summary(), "seconds": {**seconds, **evaluation.seconds}}
    if curve_evaluation is not None:
        result["curves"] = curve_evaluation.summary()
    return result


def transfer_summary(
    memory: list[list[RegionClasses]], test: list[list[RegionClasses]], k: int
) -> list[dict]:
    """Per level: kNN label transfer and Hungarian-matched clusters (mIoU / accuracy in percent)."""
    rows = []
    for level, (memory_regions, test_regions) in enumerate(zip(memory, test, strict=True)):
        prototypes = PrototypeMemory.from_regions(memory_regions)
        knn = knn_transfer_scores(prototypes, test_regions, k)
        hungarian = hungarian_cluster_scores(test_regions)
        rows.append(
            {
                "level": level,
                "memory_prototypes": len(prototypes),
                "knn": knn.as_dict(),
                "hungarian": hungarian.as_dict(),
            }
        )
    return rows


def evaluate_labelled(
    predictor: Predictor, test: Dataset, memory: Dataset, k: int = 20, baselines: Sequence[str] = ()
) -> dict:
    """The labelled protocol: the hierarchy protocol on `test` plus label transfer and Hungarian."""
    if test.num_classes is None or memory.num_classes is None:
        raise ValueError("the labelled protocol needs class masks (num_classes) for both splits")
    num_classes = max(test.num_classes, memory.num_classes)
    memory_regions, test_regions = RegionCollector(num_classes), RegionCollector(num_classes)
    memory_seconds = run_predictor(predictor, memory, [memory_regions])
    evaluation = HierarchyEvaluation(
        baseline_factories(list(baselines), test), test.void, test.background
    )
    test_seconds = run_predictor(predictor, test, [evaluation, test_regions])
    return {
        "covering": evaluation.summary(),
        "num_classes": num_classes,
        "k": k,
        "label_transfer": transfer_summary(memory_regions.levels, test_regions.levels, k),
        "seconds": {HSG: test_seconds, f"{HSG}_memory": memory_seconds, **evaluation.seconds},
    }
