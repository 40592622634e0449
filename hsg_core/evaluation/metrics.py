"""Segmentation metrics on label maps (numpy only).

Two families:

* Region overlap, for hierarchies without class names: Arbeláez segmentation covering and the
  unweighted NFCovering. Both come from one contingency table n(R, R') of ground-truth regions R
  and predicted regions R' (``np.bincount`` over paired labels), with
  IoU(R, R') = n / (|R| + |R'| - n).
* Semantic, for class-labelled ground truth: a confusion matrix, mIoU and pixel accuracy (both in
  percent), and STEGO-style Hungarian matching of predicted clusters to classes.

Label maps are [H, W] integer arrays; the ids need not be contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def contingency(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Overlap counts of ground-truth and predicted regions over the valid pixels.

    Args:
        pred: [H, W] int predicted region ids.
        gt: [H, W] int ground-truth region ids.
        valid: [H, W] bool pixels to count (default all).
    Returns:
        [G, P] int64, n(R, R') for the G distinct gt ids and P distinct predicted ids present among
        the valid pixels, both in increasing id order.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    pred, gt = pred.ravel(), gt.ravel()
    if valid is not None:
        pred, gt = pred[valid.ravel()], gt[valid.ravel()]
    gt_ids, gt_index = np.unique(gt, return_inverse=True)
    pred_ids, pred_index = np.unique(pred, return_inverse=True)
    size = gt_ids.size * pred_ids.size
    table = np.bincount(gt_index.ravel() * pred_ids.size + pred_index.ravel(), minlength=size)
    return table.reshape(gt_ids.size, pred_ids.size)


def overlap_iou(table: np.ndarray) -> np.ndarray:
    """[G, P] counts -> [G, P] IoU = n / (|R| + |R'| - n), region sizes from the table's margins."""
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    return table / np.maximum(union, 1)


def covering_counts(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None
) -> tuple[float, int]:
    """The two sums of Arbeláez covering: (Σ_{R∈gt} |R|·max_{R'} IoU(R, R'), N valid pixels).

    Kept apart so that images and annotators can be pooled as the BSDS benchmark does
    (Σ covered / Σ N); `segmentation_covering` is their ratio for one pair of maps.
    """
    table = contingency(pred, gt, valid)
    if table.size == 0:
        return 0.0, 0
    sizes = table.sum(1)
    return float((sizes * overlap_iou(table).max(1)).sum()), int(sizes.sum())


def segmentation_covering(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None
) -> float:
    """C(S' -> S) = (1/N) Σ_{R∈S} |R|·max_{R'∈S'} IoU(R, R') in [0, 1]; NaN without valid pixels."""
    covered, pixels = covering_counts(pred, gt, valid)
    return covered / pixels if pixels else float("nan")


def nf_covering(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None = None,
    background: tuple[int, ...] = (),
) -> float:
    """NFCovering(S' -> S_fg) = (1/|S_fg|) Σ_{R∈S_fg} max_{R'∈S'} IoU(R, R'), unweighted.

    Computed over the valid pixels (void excluded everywhere, so predicted region sizes count only
    valid pixels). S_fg = the ground-truth regions whose id is not in `background`; background
    pixels still belong to the predicted regions they fall in, so merging an object with the
    background is penalised. For BSDS every human region is foreground (`background=()`).

    Returns:
        A value in [0, 1]; NaN when the image has no foreground region.
    """
    table = contingency(pred, gt, valid)
    gt_ids = np.unique(gt if valid is None else gt[valid])
    foreground = ~np.isin(gt_ids, background)
    if not foreground.any():
        return float("nan")
    return float(overlap_iou(table)[foreground].max(1).mean())


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel confusion counts of classes.

    Pixels whose ground truth lies outside [0, C) (void, e.g. 255) are ignored. A predicted label
    outside [0, C) (an unmatched cluster) is a miss, counted in the extra last column.

    Args:
        pred: [H, W] int predicted class ids.
        gt: [H, W] int ground-truth class ids.
    Returns:
        [C, C + 1] int64, rows = ground-truth class, columns = predicted class, column C = none.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    keep = (gt >= 0) & (gt < num_classes)
    gt, pred = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    counts = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def region_confusion(class_counts: np.ndarray, region_class: np.ndarray) -> np.ndarray:
    """Confusion matrix when every pixel of a region gets the region's class.

    Args:
        class_counts: [N, C] int, valid pixels of each ground-truth class in each region.
        region_class: [N] int class given to each region; outside [0, C) means none (a miss).
    Returns:
        [C, C + 1] int64, as `confusion_matrix` on the painted label map.
    """
    num_classes = class_counts.shape[1]
    columns = np.where(
        (region_class >= 0) & (region_class < num_classes), region_class, num_classes
    )
    confusion = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(confusion.T, columns, class_counts.astype(np.int64))
    return confusion


@dataclass
class SegmentationScores:
    """Scores of a confusion matrix, in percent.

    Attributes:
        miou: mean IoU over the classes that occur in the ground truth or the prediction.
        pixel_accuracy: correctly labelled valid pixels / valid pixels.
        class_iou: [C] per-class IoU (NaN for classes that occur nowhere).
    """

    miou: float
    pixel_accuracy: float
    class_iou: np.ndarray

    def as_dict(self) -> dict:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "class_iou": [None if np.isnan(v) else float(v) for v in self.class_iou],
        }


def segmentation_scores(confusion: np.ndarray) -> SegmentationScores:
    """[C, C + 1] confusion -> mIoU and pixel accuracy (percent).

    IoU_c = TP / (TP + FP + FN). Unlike the original benchmark, a class absent from both the
    ground truth and the prediction is left out of the mean instead of counting as 0.
    """
    num_classes = confusion.shape[0]
    true_pos = np.diag(confusion[:, :num_classes]).astype(np.float64)
    union = confusion.sum(1) + confusion[:, :num_classes].sum(0) - true_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        class_iou = np.where(union > 0, 100.0 * true_pos / union, np.nan)
    total = confusion.sum()
    accuracy = 100.0 * true_pos.sum() / total if total else float("nan")
    miou = float(np.nanmean(class_iou)) if np.isfinite(class_iou).any() else float("nan")
    return SegmentationScores(miou=miou, pixel_accuracy=float(accuracy), class_iou=class_iou)


def hungarian_assignment(cluster_class: np.ndarray) -> np.ndarray:
    """One-to-one matching of clusters to classes maximising the matched pixels (STEGO protocol).

    Args:
        cluster_class: [K, C] int, pixels of ground-truth class c in predicted cluster k,
            accumulated over the whole dataset.
    Returns:
        [K] int64 class of each cluster; -1 for clusters left unmatched when K > C.
    """
    clusters, classes = linear_sum_assignment(cluster_class, maximize=True)
    assignment = np.full(cluster_class.shape[0], -1, dtype=np.int64)
    assignment[clusters] = classes
    return assignment


def hungarian_scores(cluster_class: np.ndarray) -> SegmentationScores:
    """mIoU and pixel accuracy after Hungarian matching of a [K, C] cluster-class table."""
    return segmentation_scores(region_confusion(cluster_class, hungarian_assignment(cluster_class)))
