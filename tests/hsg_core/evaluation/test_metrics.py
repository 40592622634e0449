import itertools

import numpy as np
import pytest

from hsg_core.evaluation.metrics import (
    confusion_matrix,
    contingency,
    covering_counts,
    hungarian_assignment,
    hungarian_scores,
    nf_covering,
    region_confusion,
    segmentation_covering,
    segmentation_scores,
)

# Ground truth: two regions of 3 pixels (ids 5 and 7); prediction: regions 0 (2 px) and 1 (4 px).
GT = np.array([[5, 5, 5], [7, 7, 7]])
PRED = np.array([[0, 0, 1], [1, 1, 1]])


def test_contingency_counts_pairs():
    assert contingency(PRED, GT).tolist() == [[2, 1], [0, 3]]
    valid = np.array([[True, False, True], [True, True, True]])
    assert contingency(PRED, GT, valid).tolist() == [[1, 1], [0, 3]]


def test_covering_by_hand():
    # IoU(5, 0) = 2 / (3 + 2 - 2) = 2/3 beats IoU(5, 1) = 1/6; IoU(7, 1) = 3 / (3 + 4 - 3) = 3/4.
    assert segmentation_covering(PRED, GT) == pytest.approx((3 * 2 / 3 + 3 * 3 / 4) / 6)
    assert covering_counts(PRED, GT) == pytest.approx((3 * 2 / 3 + 3 * 3 / 4, 6))


def test_covering_perfect_and_constant():
    relabelled = np.where(GT == 5, 40, 3)  # same partition, other ids
    assert segmentation_covering(relabelled, GT) == 1.0
    # One predicted region: IoU(R, all) = |R| / N, so C = Σ |R|^2 / N^2 = (9 + 9) / 36.
    assert segmentation_covering(np.zeros_like(GT), GT) == pytest.approx(0.5)


def test_nf_covering_is_unweighted_and_skips_background():
    assert nf_covering(PRED, GT) == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert nf_covering(PRED, GT, background=(5,)) == pytest.approx(3 / 4)
    assert np.isnan(nf_covering(PRED, GT, background=(5, 7)))
    # Unweighted: a tiny region counts as much as a big one. gt: 1 px region + 5 px region.
    gt = np.array([[1, 2, 2], [2, 2, 2]])
    assert nf_covering(np.zeros_like(gt), gt) == pytest.approx((1 / 6 + 5 / 6) / 2)
    assert segmentation_covering(np.zeros_like(gt), gt) == pytest.approx((1 + 25) / 36)


def test_nf_covering_void_pixels_leave_predicted_regions():
    gt = np.array([[1, 1, 255], [2, 2, 255]])
    valid = gt != 255
    # Predicted region 0 = left four pixels + the two void ones: over valid pixels IoU(1, 0) = 2/4.
    assert nf_covering(np.zeros_like(gt), gt, valid) == pytest.approx(0.5)


def test_confusion_ignores_void_and_counts_unmatched_predictions():
    gt = np.array([[0, 0, 1, 1, 255]])
    pred = np.array([[0, 1, 1, -1, 0]])
    conf = confusion_matrix(pred, gt, 2)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 1]]
    scores = segmentation_scores(conf)
    # IoU_0 = 1 / (2 + 1 - 1) = 1/2; IoU_1 = 1 / (2 + 2 - 1) = 1/3; accuracy = 2 / 4.
    assert scores.miou == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)
    assert scores.pixel_accuracy == pytest.approx(50.0)


def test_semantic_scores_perfect_and_constant():
    gt = np.array([[0, 0, 0, 1], [2, 2, 0, 255]])
    perfect = segmentation_scores(confusion_matrix(gt, gt, 3))
    assert perfect.miou == 100.0 and perfect.pixel_accuracy == 100.0
    constant = segmentation_scores(confusion_matrix(np.zeros_like(gt), gt, 3))
    # 7 valid pixels, 4 of class 0: IoU_0 = 4/7, IoU_1 = IoU_2 = 0.
    assert constant.pixel_accuracy == pytest.approx(100 * 4 / 7)
    assert constant.miou == pytest.approx(100 * 4 / 7 / 3)


def test_absent_class_is_left_out_of_the_mean():
    gt = np.array([[0, 1]])
    scores = segmentation_scores(confusion_matrix(gt, gt, 3))
    assert scores.miou == 100.0 and np.isnan(scores.class_iou[2])


def test_region_confusion_equals_pixel_confusion():
    rng = np.random.default_rng(0)
    regions = rng.integers(0, 6, (20, 30))
    gt = rng.integers(0, 4, (20, 30))
    gt[0] = 255
    region_class = np.array([2, 0, -1, 3, 1, 1])
    counts = np.stack([np.bincount(gt[(regions == r) & (gt < 4)], minlength=4) for r in range(6)])
    assert np.array_equal(
        region_confusion(counts, region_class), confusion_matrix(region_class[regions], gt, 4)
    )


def brute_force_best(table: np.ndarray) -> int:
    k, c = table.shape
    if k >= c:
        return max(
            sum(table[cl, j] for j, cl in enumerate(p)) for p in itertools.permutations(range(k), c)
        )
    return max(
        sum(table[i, cl] for i, cl in enumerate(p)) for p in itertools.permutations(range(c), k)
    )


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_hungarian_matches_brute_force(shape):
    table = np.random.default_rng(sum(shape)).integers(0, 50, shape)
    assignment = hungarian_assignment(table)
    matched = assignment[assignment >= 0]
    assert len(set(matched.tolist())) == matched.size  # one-to-one
    assert sum(table[k, c] for k, c in enumerate(assignment) if c >= 0) == brute_force_best(table)


def test_hungarian_recovers_permuted_clusters():
    gt = np.random.default_rng(1).integers(0, 4, (10, 10))
    clusters = np.array([2, 3, 0, 1])[gt]  # cluster ids are a permutation of the classes
    table = np.stack([np.bincount(gt[clusters == k], minlength=4) for k in range(4)])
    scores = hungarian_scores(table)
    assert scores.miou == 100.0 and scores.pixel_accuracy == 100.0
