"""ODS / OIS over every scale: by hand, on ucm2 thresholds, and through the hierarchy protocol."""

import numpy as np
import pytest

from hsg_core.evaluation.curves import CurveEvaluation, CurveScores, ucm2_threshold_cut
from hsg_core.evaluation.datasets import masks_dataset
from hsg_core.evaluation.protocols import evaluate_hierarchy

from .conftest import OraclePredictor, oracle_prediction

HALVES = np.array([[0, 0, 1, 1]] * 2)  # ground truth: two halves of 4 pixels
QUARTERS = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])


def test_ods_is_one_scale_for_all_images_and_ois_the_best_per_image():
    # image A is covered perfectly at 2 regions, image B at 4 regions
    scores = CurveScores([1, 2, 4], "regions")
    whole = np.zeros((2, 4), int)
    scores.add(lambda n: {1: whole, 2: HALVES, 4: QUARTERS}[n], [HALVES])
    scores.add(lambda n: {1: whole, 2: HALVES, 4: QUARTERS}[n], [QUARTERS])
    s = scores.summary()
    # by hand: A at 1/2/4 regions covers 4*.5+4*.5=4, 8, 4*.5*2=4; B covers 4*.25*... :
    # B (quarters, 2 px each) at 1: 4 * 2 * (2/8) = 2; at 2: 4 * 2 * (2/4) = 4; at 4: 8
    assert s["covering"] == pytest.approx([(4 + 2) / 16, (8 + 4) / 16, (4 + 8) / 16])
    assert s["ods"] == pytest.approx(12 / 16) and s["ods_at"] == 2  # the first of the tied best
    assert s["ois"] == pytest.approx(1.0) and s["images"] == 2 and s["unit"] == "regions"


def test_ucm2_threshold_cut_by_hand():
    ucm2 = np.zeros((5, 5))
    ucm2[2, :] = 0.3
    ucm2[:, 2] = 0.8
    assert np.unique(ucm2_threshold_cut(ucm2, 0.1)).size == 4
    assert ucm2_threshold_cut(ucm2, 0.5).tolist() == [[0, 1], [0, 1]]
    assert not ucm2_threshold_cut(ucm2, 0.9).any()
    curve = CurveEvaluation()
    curve.add_thresholds("gpb", ucm2, [np.array([[0, 1], [0, 1]])])
    s = curve.summary()["gpb"]
    assert s["unit"] == "threshold" and len(s["scale"]) == 99 and s["ods"] == 1.0
    assert 0.3 <= s["ods_at"] < 0.8


class TreeOracle(OraclePredictor):
    """The oracle's levels, and a cutter: the ground truth at >= its region count, one region below."""

    def predict_tree(self, image):
        gt = self.truth[self.key(image)]
        count = np.unique(gt).size
        return oracle_prediction(gt), lambda n: gt if n >= count else np.zeros_like(gt)


def test_protocol_scores_the_tree_and_ucm_baselines_at_every_scale(masks_root):
    dataset = masks_dataset(masks_root)
    result = evaluate_hierarchy(
        TreeOracle(dataset), dataset, baselines=["gradient_ucm", "slic"], curves=True
    )
    curves = result["curves"]
    assert set(curves) == {"hsg", "gradient_ucm"}  # SLIC is no hierarchy: no curve
    assert curves["hsg"]["ods"] == curves["hsg"]["ois"] == 1.0
    assert 0 < curves["gradient_ucm"]["ods"] <= curves["gradient_ucm"]["ois"] < 1
    plain = evaluate_hierarchy(
        OraclePredictor(dataset),
        dataset,
        baselines=["gradient_ucm"],
        curves=True,
        others={"tree": TreeOracle(dataset)},
    )
    assert set(plain["curves"]) == {
        "gradient_ucm",
        "hsg:tree",
    }  # a predictor without a tree has no curve
    assert plain["curves"]["hsg:tree"]["ois"] == 1.0
    assert "curves" not in evaluate_hierarchy(OraclePredictor(dataset), dataset)
