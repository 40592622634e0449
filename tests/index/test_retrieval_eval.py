"""Retrieval evaluation on synthetic objects whose identity is known in originals and copies.

Every image is a 3x4 grid of 16-pixel cells (objects, level 0) grouped into rows (level 1). A
fake extractor segments an original by its grid and a copy by the grid warped with the copy's
transform, so the right answer of every query is known: with embeddings derived from object
identity the recall is 1; with random embeddings it stays near chance.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from index import SegmentIndex
from index.copies import CopyTransform, load_pairs
from index.retrieval_eval import RegionMaps, colour_histograms, copy_targets
from index.retrieval_report import run_retrieval
from index.synthetic import SyntheticLevel, SyntheticPrediction

GRID = np.repeat(np.repeat(np.arange(12).reshape(3, 4), 16, 0), 16, 1)  # [48, 64] object ids


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def unit_vector(key: str, dim: int = 16) -> np.ndarray:
    vector = np.random.default_rng(zlib.crc32(key.encode())).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def level(label_map: np.ndarray, keys: list[str], parents: np.ndarray) -> SyntheticLevel:
    boxes = []
    for region in range(len(keys)):
        ys, xs = np.nonzero(label_map == region)
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return SyntheticLevel(
        label_map.astype(np.int32),
        np.stack([unit_vector(k) for k in keys]),
        np.bincount(label_map.ravel()).astype(np.int64),
        np.array(boxes, np.int32),
        parents.astype(np.int32),
    )


class ObjectExtractor:
    """Segments by the grid (warped for copies); embeds each region by object identity or at random."""

    def __init__(self, work: Path, identity: bool):
        self.work, self.identity = work, identity
        self.copies = {p.copy: p for p in load_pairs(work)}

    def __call__(self, paths):
        return [self.predict(Path(path).relative_to(self.work).as_posix()) for path in paths]

    def predict(self, rel: str) -> SyntheticPrediction:
        pair = self.copies.get(rel)
        source = pair.original if pair else rel
        objects = pair.transform.warp_labels(GRID) if pair else GRID
        present, labels = np.unique(objects, return_inverse=True)  # cropping can remove objects
        labels = labels.reshape(objects.shape)
        rows, row_labels = np.unique(present // 4, return_inverse=True)
        name = source if self.identity else rel
        fine = level(labels, [f"{name}/0/{obj}" for obj in present], row_labels)
        coarse = level(
            row_labels[labels], [f"{name}/1/{row}" for row in rows], np.full(len(rows), -1)
        )
        return SyntheticPrediction([fine, coarse], objects.shape)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """10 grid images with random cell colours."""
    folder = tmp_path_factory.mktemp("retrieval") / "data"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(10):
        colours = rng.integers(0, 256, (12, 3), dtype=np.uint8)
        Image.fromarray(colours[GRID]).save(folder / f"grid{i}.png")
    return folder


def run(data, out, identity):
    return run_retrieval(
        data,
        out,
        lambda: (ObjectExtractor(out / "work", identity), "fake-ckpt"),
        load_rgb,
        copies=4,
        seed=1,
        hardware={"cores": 1},
    )


def test_identity_embeddings_find_every_target(data, tmp_path):
    report, json_path, md_path = run(data, tmp_path / "out", identity=True)
    results = json.loads(json_path.read_text())["results"]
    assert results["pairs_used"] == 4 and not results["pairs_skipped"]
    for row in results["levels"]:
        assert row["queries"] > 0 and row["mean_target_iou"] == 1.0
        assert row["hsg"] == {"recall@1": 1.0, "recall@10": 1.0}
        assert row["hsg_all_levels"]["recall@1"] == 1.0
    assert results["levels"][0]["queries"] >= 4 * 6  # at least half the cells stay in every copy
    assert "| all |" in md_path.read_text() and report["checkpoint_hash"] == "fake-ckpt"


def test_random_embeddings_stay_near_chance(data, tmp_path):
    results = run(data, tmp_path / "out", identity=False)[0]["results"]["all"]
    chance, count = results["chance"]["recall@10"], results["queries"]
    assert results["hsg"]["recall@10"] <= chance + 4 * np.sqrt(chance * (1 - chance) / count)


def test_region_maps_repaint_the_extracted_label_maps(data, tmp_path):
    run(data, tmp_path / "out", identity=True)
    index = SegmentIndex.open(tmp_path / "out" / "index")
    extractor = ObjectExtractor(tmp_path / "out" / "work", identity=True)
    maps = RegionMaps(index)
    for image in index.images():
        expected = [lv.label_map for lv in extractor.predict(image).levels]
        assert all((a == b).all() for a, b in zip(maps.label_maps(image), expected, strict=True))


def test_copy_targets_by_hand():
    original = np.zeros((20, 20), int)
    original[:, 10:] = 1  # right half: only 2 of its 10 columns stay inside the copy
    original[0, 19] = 2  # one pixel, 0.25% of the image: too small to be a query
    copy = np.zeros((20, 12), int)
    copy[:, :9] = 1
    keep_left_12 = CopyTransform(
        source_size=(20, 20), flip=False, scaled_size=(20, 20), crop=(0, 0, 12, 20)
    )
    regions, targets, ious = copy_targets(original, copy, keep_left_12)
    # the left half (columns 0-9) meets copy region 1 (columns 0-8) in 180 of 200 pixels
    assert regions.tolist() == [0] and targets.tolist() == [1] and np.allclose(ious, [0.9])


def test_colour_histograms_are_unit_and_colour_blind_to_position():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = (250, 0, 0)
    labels = np.array([[0, 1, 0, 1]] * 4)
    hist = colour_histograms(image, labels)
    assert hist.shape == (2, 64) and np.allclose(np.linalg.norm(hist, axis=1), 1)
    assert np.isclose(hist[0] @ hist[1], 1.0)  # same colour mix, different places
