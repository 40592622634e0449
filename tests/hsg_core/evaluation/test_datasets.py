import numpy as np
import pytest
from PIL import Image

from hsg_core.evaluation.datasets import (
    BSDSDataset,
    DatasetError,
    masks_dataset,
    open_labelled,
    read_mask,
    voc_dataset,
)


def test_voc_split_reads_palette_masks(voc_root):
    dataset = voc_dataset(voc_root, "val")
    assert dataset.ids == [f"val_{i}" for i in range(4)] and dataset.num_classes == 21
    dataset.validate()
    sample = dataset.load("val_0")
    assert sample.image.shape == (40, 48, 3) and sample.image.dtype == np.uint8
    (gt,) = sample.ground_truths
    assert gt.shape == (40, 48) and set(np.unique(gt)) <= {0, 1, 2, 255}
    assert (gt[:2] == 255).all() and dataset.void == 255 and dataset.background == (0,)


def test_voc_without_split_uses_every_mask(voc_root):
    assert len(voc_dataset(voc_root)) == 10


def test_masks_layout_pairs_by_stem_and_infers_classes(masks_root):
    dataset = masks_dataset(masks_root)
    assert dataset.ids == ["s0", "s1", "s2", "s3"] and dataset.num_classes == 3
    samples = list(dataset)
    assert [s.id for s in samples] == dataset.ids
    assert all(s.image.shape[:2] == s.ground_truths[0].shape for s in samples)


def test_open_labelled_detects_layout(voc_root, masks_root, tmp_path):
    assert open_labelled(voc_root, "train").ids[0] == "train_0"
    assert open_labelled(masks_root).num_classes == 3
    with pytest.raises(DatasetError, match="neither a VOC-style folder"):
        open_labelled(tmp_path)


def test_limit_keeps_first_ids(masks_root):
    assert masks_dataset(masks_root).limit(2).ids == ["s0", "s1"]


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_mask_names_the_image_and_the_mask(masks_root):
    (masks_root / "masks" / "s2.png").unlink()
    with pytest.raises(DatasetError) as err:
        masks_dataset(masks_root)
    message = one_line(err)
    assert (
        str(masks_root / "images" / "s2.png") in message
        and "s2.png" in message.split("expected")[1]
    )


def test_size_mismatch_names_the_mask(masks_root):
    bad = masks_root / "masks" / "s1.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(bad)
    dataset = masks_dataset(masks_root)
    with pytest.raises(DatasetError) as err:
        dataset.validate()
    assert one_line(err).startswith(f"{bad}: mask is 12x10 but its image is 48x40")
    with pytest.raises(DatasetError, match="mask is 12x10"):
        dataset.load("s1")


def test_voc_missing_image_names_the_file(voc_root):
    (voc_root / "JPEGImages" / "val_3.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        voc_dataset(voc_root, "val")
    assert one_line(err).startswith(f"{voc_root / 'JPEGImages' / 'val_3.jpg'}: no such file")
    with pytest.raises(DatasetError, match="test.txt: no such list file"):
        voc_dataset(voc_root, "test")


def test_rgb_or_broken_mask_is_refused(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(DatasetError, match="rgb.png: a label mask must be single-channel"):
        read_mask(rgb)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png: not a readable PNG mask"):
        read_mask(broken)


def test_bsds_missing_folder_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="images/val: no such folder"):
        BSDSDataset(tmp_path, "val")


@pytest.mark.bsds
def test_bsds_reads_one_image_with_its_annotations(bsds_root):
    dataset = BSDSDataset(bsds_root, "val").limit(1)
    sample = dataset.load(dataset.ids[0])
    assert sample.image.dtype == np.uint8 and sorted(sample.image.shape[:2]) == [321, 481]
    assert len(sample.ground_truths) >= 3 and dataset.void is None and dataset.background == ()
    for gt in sample.ground_truths:
        assert gt.shape == sample.image.shape[:2] and gt.dtype == np.int32 and gt.min() >= 1
    h, w = sample.image.shape[:2]
    assert dataset.has_ucm2() and dataset.ucm2(sample.id).shape == (2 * h + 1, 2 * w + 1)


def test_a_mask_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """Issue 13 item 3: every path that reads an image holds the 10^8-pixel limit before decoding."""
    from PIL import ImageFile

    from tests.conftest import png_header_only

    decoded = []
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or 1 / 0
    )
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 10**8
    )  # as after any load_image: PIL only warns below 2x
    bomb = tmp_path / "mask.png"
    bomb.write_bytes(png_header_only(14000, 14000, colour_type=0))  # a grey mask
    with pytest.raises(DatasetError) as err:
        read_mask(bomb)
    assert one_line(err) == f"{bomb}: too large (more than 100,000,000 pixels); downscale it first"
    assert decoded == []
