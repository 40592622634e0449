"""hsg_core/export.py: one format for `hsg segment` and the explorer's download."""

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from hsg_core.export import segmentation_files, segmentation_zip, write_segmentation
from hsg_core.viz import hierarchy_colours
from tests.fakes import GridPredictor


def segmented(height: int = 32, width: int = 48):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, GridPredictor().predict(image)


def test_files_hold_every_levels_labels_colours_and_the_hierarchy():
    image, pred = segmented()
    files = segmentation_files(pred, image, "cat")
    levels = range(pred.num_levels)
    assert sorted(files) == sorted(
        [f"cat_level{lv}_{kind}.png" for lv in levels for kind in ("color", "labels")]
        + ["cat_hierarchy.json"]
    )
    colours = hierarchy_colours([lv.parents for lv in pred.levels])
    for lv in levels:
        labels = np.asarray(Image.open(io.BytesIO(files[f"cat_level{lv}_labels.png"])))
        assert labels.dtype == np.uint16 and np.array_equal(labels, pred.levels[lv].label_map)
        colour = np.asarray(Image.open(io.BytesIO(files[f"cat_level{lv}_color.png"])))
        assert colour.shape == (32, 48, 3)
        # inside a region (away from boundaries) the overlay blends the region's colour
        y, x = 1, 1
        region = pred.levels[lv].label_map[y, x]
        want = 0.55 * image[y, x] + 0.45 * colours[lv][region]
        assert np.allclose(colour[y, x], want, atol=1.5)
    assert json.loads(files["cat_hierarchy.json"])["image_size"] == [32, 48]


def test_folder_and_zip_hold_the_same_bytes(tmp_path):
    image, pred = segmented()
    written = write_segmentation(pred, image, "cat", tmp_path / "out")
    path = segmentation_zip(pred, image, "cat", tmp_path / "cat.zip")
    with zipfile.ZipFile(path) as archive:
        assert {p.name: p.read_bytes() for p in written} == {
            name: archive.read(name) for name in archive.namelist()
        }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.zip", "out"]  # no temp files


def test_an_image_of_another_size_is_refused_by_name():
    image, pred = segmented()
    with pytest.raises(ValueError, match="cat: image is 40x32"):
        segmentation_files(pred, image[:, :40], "cat")
