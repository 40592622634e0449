"""The explorer benchmark's synthetic index: every region it references is an image file on disk
whose size matches the metadata, and whose pixels show the region's mask."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.bench_index import image_name
from benchmarks.explorer_index import explorer_index, templates
from index import SegmentIndex


def test_indexed_images_are_files_showing_their_region_masks(tmp_path):
    out, seconds = explorer_index(tmp_path, 400, "Flat", num_templates=2)
    index = SegmentIndex.open(out, use_gpu=False)
    assert seconds is not None and len(index) == 400
    assert index.images() == [image_name(s) for s in range(4)]
    meta = index.metadata
    for name, rows in meta.groupby("image"):
        with Image.open(index.data_root / name) as image:
            assert image.size == (rows["width"].iloc[0], rows["height"].iloc[0])
    painted = templates(2)[1][1]  # slot 1 shows template 1
    pixels = np.asarray(Image.open(index.data_root / image_name(1)).convert("RGB"))
    assert np.abs(pixels.astype(int) - painted).mean() < 6  # JPEG loss only
    regions = meta[meta["image"] == image_name(1)]
    for region_id, area, level in zip(regions["id"], regions["area"], regions["level"]):
        mask = index.region_mask(int(region_id))
        assert mask.shape == pixels.shape[:2] and mask.sum() == area
        if level == 0:
            assert len(np.unique(painted[mask], axis=0)) == 1


def test_a_complete_index_is_reused(tmp_path):
    out, _ = explorer_index(tmp_path, 200, "Flat", num_templates=2)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again, seconds = explorer_index(tmp_path, 200, "Flat", num_templates=2)
    assert (again, seconds) == (out, None) and (out / "manifest.json").stat().st_mtime_ns == stamp
