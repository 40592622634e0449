"""index/dataset.py: which files of a data folder are listed (and so indexed)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from index import SegmentIndex, build_index
from index.dataset import IMAGE_SUFFIXES, list_images
from index.synthetic import SyntheticExtractor
from tests.conftest import root_with_links_out


def test_links_that_lead_out_of_the_root_are_neither_listed_nor_indexed(
    tmp_path, checkpoint, caplog
):
    root, outside = root_with_links_out(tmp_path)
    assert list_images(root) == ["alias.png", "real.png", "sub/deep.png"]
    assert {"notes.jpg", "photo.jpg", "elsewhere"} <= {
        r.getMessage().split(":")[0] for r in caplog.records
    }
    extract = SyntheticExtractor()
    opened = []
    build_index(
        root,
        tmp_path / "index",
        lambda paths: opened.extend(paths) or extract(paths),
        checkpoint_hash=checkpoint,
        progress=lambda done, total: None,
    )
    assert sorted(SegmentIndex.open(tmp_path / "index").images()) == [
        "alias.png",
        "real.png",
        "sub/deep.png",
    ]
    assert all(str(outside) not in str(path.resolve()) for path in opened)


def test_gif_and_avif_are_indexed_like_every_suffix_of_the_one_list(tmp_path):
    for name, fmt in (("a.gif", "GIF"), ("b.AVIF", "AVIF"), ("c.Jpeg", "JPEG")):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / name, format=fmt)
    (tmp_path / "d.ppm").write_bytes(b"P6 1 1 255 abc")  # a format outside the list: skipped by all
    assert list_images(tmp_path) == ["a.gif", "b.AVIF", "c.Jpeg"]
    import hsg_files

    assert IMAGE_SUFFIXES is hsg_files.IMAGE_SUFFIXES
