"""Augmented copies: the transform's coordinate mapping, warping, and the prepared work folder."""

import numpy as np
import pytest
from PIL import Image

from index.copies import CopyTransform, load_pairs, prepare_copies

# 8x10 original, mirrored, doubled to 16x20, crop x 4..18, y 2..14: the copy is 12x14
FLIP_SCALE_CROP = CopyTransform(
    source_size=(8, 10), flip=True, scaled_size=(16, 20), crop=(4, 2, 18, 14)
)


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_coordinates_by_hand_and_round_trip():
    t = FLIP_SCALE_CROP
    # (1.5, 3.5): mirrored x = 10 - 1.5 = 8.5; doubled (17, 7); minus the crop corner (13, 5)
    # (9.5, 0.5): mirrored 0.5; doubled (1, 1); cropped (-3, -1): outside the copy
    assert np.allclose(t.to_copy([[1.5, 3.5], [9.5, 0.5]]), [[13, 5], [-3, -1]])
    assert t.copy_size == (12, 14)
    points = np.random.default_rng(0).uniform(0, 8, (50, 2))
    assert np.allclose(t.to_original(t.to_copy(points)), points)


def test_warp_labels_takes_the_pixel_under_each_copy_pixel_centre():
    t = FLIP_SCALE_CROP
    ids = np.arange(80).reshape(8, 10)
    warped = t.warp_labels(ids)
    assert warped.shape == (12, 14)
    assert warped[5, 13] == ids[3, 1]  # the hand-computed point above lands in copy pixel (13, 5)
    rows, cols = np.divmod(warped, 10)
    centres = np.stack(np.meshgrid(np.arange(14) + 0.5, np.arange(12) + 0.5), axis=-1).reshape(
        -1, 2
    )
    source = t.to_original(centres)
    assert (np.floor(source[:, 0]) == cols.ravel()).all() and (
        np.floor(source[:, 1]) == rows.ravel()
    ).all()


def test_inside_copy_by_hand():
    inside = FLIP_SCALE_CROP.inside_copy()
    expected = np.zeros((8, 10), bool)
    expected[1:7, 1:8] = True  # rows 0 and 7, columns 0, 8 and 9 fall outside the crop
    assert (inside == expected).all()


def test_apply_moves_pixels_like_warp_labels():
    yy, xx = np.mgrid[0:40, 0:50]
    image = np.stack([xx * 5, yy * 6, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    t = CopyTransform(source_size=(40, 50), flip=True, scaled_size=(30, 38), crop=(5, 3, 33, 27))
    copy = t.apply(image).astype(float)
    index = t.warp_labels(np.arange(2000).reshape(40, 50))
    expected = image.reshape(-1, 3)[index].astype(float)
    assert copy.shape == (24, 28, 3) and np.abs(copy - expected).mean() < 6  # bilinear vs nearest
    assert np.abs(copy - expected[:, ::-1]).mean() > 30  # the flip is really there


def write_folder(folder, count, size=(24, 32)):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            folder / f"im{i}.png"
        )
    return folder


def test_prepare_copies_is_seeded_and_reused(tmp_path):
    data = write_folder(tmp_path / "data", 5)
    pairs = prepare_copies(data, tmp_path / "work", 3, 7, load_rgb)
    assert [p.copy for p in pairs] == [f"copies/{p.original[len('images/') :]}.png" for p in pairs]
    assert load_pairs(tmp_path / "work") == pairs
    for pair in pairs:
        assert load_rgb(tmp_path / "work" / pair.copy).shape[:2] == pair.transform.copy_size
        assert (
            load_rgb(tmp_path / "work" / pair.original) == load_rgb(data / pair.original[7:])
        ).all()
    stamp = (tmp_path / "work" / pairs[0].copy).stat().st_mtime_ns
    assert prepare_copies(data, tmp_path / "work", 3, 7, load_rgb) == pairs
    assert (tmp_path / "work" / pairs[0].copy).stat().st_mtime_ns == stamp  # reused, not rewritten
    other = prepare_copies(data, tmp_path / "work", 3, 8, load_rgb)
    assert [p.transform for p in other] != [p.transform for p in pairs]


def test_prepare_copies_refuses_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    data = write_folder(tmp_path / "data", 2)
    with pytest.raises(ValueError, match="empty: no image files"):
        prepare_copies(tmp_path / "empty", tmp_path / "work", 1, 0, load_rgb)
    with pytest.raises(ValueError, match=f"{data}: 2 image"):
        prepare_copies(data, tmp_path / "work", 3, 0, load_rgb)
    with pytest.raises(ValueError, match="inside the data folder"):
        prepare_copies(data, data / "work", 1, 0, load_rgb)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_copies(tmp_path / "nowhere", tmp_path / "work", 1, 0, load_rgb)
