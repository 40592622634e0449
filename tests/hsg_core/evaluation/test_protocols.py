"""The protocols end to end on synthetic labelled sets, with an oracle predictor whose level 0 is
the ground truth (scores 1.0 / 100 %) and level 1 one region per image (scores the formula value)."""

import numpy as np
import pytest

from hsg_core.evaluation.datasets import masks_dataset, voc_dataset
from hsg_core.evaluation.protocols import evaluate_hierarchy, evaluate_labelled

from .conftest import NUM_CLASSES, OraclePredictor


def constant_covering(ground_truths: list[np.ndarray]) -> tuple[float, float]:
    """By hand for one region per image: IoU(R, all) = |R| / N over valid pixels, so
    covering = Σ_images Σ_R |R|^2 / N / Σ_images N, NFCovering = mean_images mean_{R fg} |R| / N."""
    covered, pixels, nfc = 0.0, 0, []
    for gt in ground_truths:
        sizes = np.bincount(gt[gt != 255])
        n = sizes.sum()
        covered, pixels = covered + (sizes.astype(float) ** 2).sum() / n, pixels + n
        nfc.append(np.mean([sizes[c] / n for c in range(1, sizes.size) if sizes[c]]))
    return covered / pixels, float(np.mean(nfc))


def test_hierarchy_protocol_oracle_and_constant(masks_root):
    dataset = masks_dataset(masks_root)
    result = evaluate_hierarchy(
        OraclePredictor(dataset), dataset, baselines=["slic", "gradient_ucm"]
    )
    hsg = result["covering"]["hsg"]
    assert hsg["levels"][0]["covering"] == 1.0 and hsg["levels"][0]["nf_covering"] == 1.0
    covering, nfc = constant_covering([s.ground_truths[0] for s in dataset])
    assert hsg["levels"][1]["covering"] == pytest.approx(covering)
    assert hsg["levels"][1]["nf_covering"] == pytest.approx(nfc)
    assert hsg["levels"][1]["mean_regions"] == 1.0
    assert hsg["covering_ods"] == hsg["covering_ois"] == 1.0 and hsg["ods_level"] == 0
    for name in ("slic", "gradient_ucm"):
        scores = result["covering"][name]
        assert scores["levels"][0]["mean_regions"] <= hsg["levels"][0]["mean_regions"]
        assert scores["levels"][1]["covering"] == pytest.approx(
            covering
        )  # one region, as HSG's level 1
        assert 0 < scores["levels"][0]["covering"] < 1 and result["seconds"][name] >= 0


def test_labelled_protocol_oracle_scores_100_and_constant_the_formula(voc_root):
    test, memory = (
        voc_dataset(voc_root, "val", NUM_CLASSES),
        voc_dataset(voc_root, "train", NUM_CLASSES),
    )
    result = evaluate_labelled(OraclePredictor(test, memory), test, memory, k=5)
    fine, whole = result["label_transfer"]
    assert fine["memory_prototypes"] == 6 * 3  # void regions are not prototypes
    for protocol in ("knn", "hungarian"):
        assert fine[protocol]["miou"] == 100.0 and fine[protocol]["pixel_accuracy"] == 100.0
    # One region per image: every memory image's majority is background, so everything becomes
    # class 0: accuracy = n0 / valid, IoU_0 = n0 / valid, IoU_1 = IoU_2 = 0.
    gts = np.concatenate([s.ground_truths[0].ravel() for s in test])
    background, valid = (gts == 0).sum(), (gts != 255).sum()
    for protocol in ("knn", "hungarian"):
        assert whole[protocol]["pixel_accuracy"] == pytest.approx(100 * background / valid)
        assert whole[protocol]["miou"] == pytest.approx(100 * background / valid / 3)
    assert result["covering"]["hsg"]["levels"][0]["nf_covering"] == 1.0


def test_level_scores_extend_equals_adding_every_image_to_one():
    from hsg_core.evaluation.protocols import LevelScores

    rng = np.random.default_rng(0)
    images = [
        ([rng.integers(0, 3, (6, 8)), rng.integers(0, 2, (6, 8))], [rng.integers(0, 4, (6, 8))])
        for _ in range(3)
    ]
    together, merged = LevelScores(), LevelScores()
    for maps, gts in images:
        together.add(maps, gts, None, ())
        one = LevelScores()
        one.add(maps, gts, None, ())
        merged.extend(one)
    assert merged.summary() == together.summary()
