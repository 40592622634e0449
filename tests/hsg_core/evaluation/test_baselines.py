import numpy as np
import pytest

from hsg_core.evaluation.baselines import (
    IMAGE_BASELINES,
    baseline_factories,
    make_kmeans,
    make_ucm2,
    ucm2_cut,
)
from hsg_core.evaluation.datasets import BSDSDataset, DatasetError, Sample
from hsg_core.evaluation.metrics import segmentation_covering
from tests.conftest import make_shapes_image


@pytest.mark.parametrize("name", sorted(IMAGE_BASELINES))
def test_cuts_have_at_most_n_contiguous_regions(name):
    image = make_shapes_image(np.random.default_rng(3), 48, 64)
    baseline = IMAGE_BASELINES[name](image)
    for n in (24, 6, 2):
        labels = baseline.cut(n)
        assert labels.shape == (48, 64) and labels.dtype == np.int32
        assert (
            np.array_equal(np.unique(labels), np.arange(labels.max() + 1)) and labels.max() + 1 <= n
        )
    assert baseline.cut(24).max() + 1 >= 12  # about n, not far fewer
    assert not baseline.cut(1).any()
    assert baseline.cut(6) is baseline.cut(6)  # computed once per count


def test_kmeans_separates_two_flat_colours():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, 15:] = (250, 250, 250)
    labels = make_kmeans(image).cut(2)
    assert (
        segmentation_covering(labels, (np.arange(30) >= 15)[None].repeat(20, 0).astype(int)) == 1.0
    )


def khalimsky_ucm2() -> np.ndarray:
    """A 2x2 image: a vertical boundary of strength 0.8 and horizontal ones of 0.3 on each side."""
    ucm2 = np.zeros((5, 5))
    ucm2[2, :] = 0.3
    ucm2[:, 2] = 0.8
    return ucm2


def test_ucm2_cut_by_hand():
    ucm2 = khalimsky_ucm2()
    four = ucm2_cut(ucm2, 4)
    assert np.unique(four).size == 4
    assert ucm2_cut(ucm2, 3).tolist() == [[0, 1], [0, 1]]  # the 0.3 boundaries go first
    assert ucm2_cut(ucm2, 2).tolist() == [[0, 1], [0, 1]]
    assert not ucm2_cut(ucm2, 1).any()


def test_ucm2_shape_must_fit_the_image():
    make_ucm2(khalimsky_ucm2(), (2, 2))
    with pytest.raises(ValueError, match="does not fit a 3x2 image"):
        make_ucm2(khalimsky_ucm2(), (2, 3))


def test_factories_check_names(masks_root):
    from hsg_core.evaluation.datasets import masks_dataset

    dataset = masks_dataset(masks_root)
    sample = next(iter(dataset))
    assert baseline_factories(["slic"], dataset)["slic"](sample).cut(4).max() < 4
    with pytest.raises(DatasetError, match="unknown baseline 'watershed'"):
        baseline_factories(["watershed"], dataset)
    with pytest.raises(DatasetError, match="not BSDS500"):
        baseline_factories(["gpb_ucm"], dataset)


@pytest.mark.bsds
def test_gpb_ucm_cuts_are_nested_and_beat_one_region(bsds_root):
    dataset = BSDSDataset(bsds_root, "val").limit(1)
    sample: Sample = dataset.load(dataset.ids[0])
    baseline = baseline_factories(["gpb_ucm"], dataset)["gpb_ucm"](sample)
    fine, coarse = baseline.cut(30), baseline.cut(5)
    assert 5 < fine.max() + 1 <= 30 and coarse.max() + 1 <= 5
    pairs = np.unique(fine * 100 + coarse)
    assert np.unique(pairs // 100).size == pairs.size  # every fine region lies in one coarse region
    gt = sample.ground_truths[0]
    assert segmentation_covering(coarse, gt) > segmentation_covering(np.zeros_like(gt), gt)
