"""Synthetic labelled data for the evaluation tests, and an oracle predictor built from its masks.

Every sample is a 40x48 image with known class masks: 0 background, 1 a square, 2 a disc, and a
2-pixel void (255) frame, like VOC's void boundaries. Images are painted by class (plus noise).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hsg_core.hierarchy import build_prediction
from hsg_core.types import Prediction

NUM_CLASSES = 3
CLASS_COLOURS = np.array([(60, 120, 60), (200, 40, 40), (40, 40, 210)], dtype=np.float64)


def make_mask(rng: np.random.Generator, height: int = 40, width: int = 48) -> np.ndarray:
    """[H, W] uint8 class ids: a random square (1) and disc (2) on background (0), void frame."""
    mask = np.zeros((height, width), np.uint8)
    top, left = rng.integers(3, height // 2), rng.integers(3, width // 2)
    mask[top : top + 12, left : left + 12] = 1
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.integers(10, height - 10), rng.integers(10, width - 10)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 2
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 255, 255, 255, 255
    return mask


def paint(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] uint8 image coloured by class (void painted as background)."""
    image = CLASS_COLOURS[np.where(mask == 255, 0, mask)] + rng.normal(0, 3, mask.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def voc_palette() -> list[int]:
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)
    palette[255 * 3 :] = [224, 224, 192]
    return palette


def write_voc(root: Path, splits: dict[str, int], seed: int = 0) -> Path:
    """A VOC-style folder with `splits` = {name: count}; ids are "<name>_<i>"."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, count in splits.items():
        ids = [f"{split}_{i}" for i in range(count)]
        for sample_id in ids:
            mask = make_mask(rng)
            Image.fromarray(paint(mask, rng)).save(
                root / "JPEGImages" / f"{sample_id}.jpg", quality=95
            )
            png = Image.fromarray(mask)
            png.putpalette(voc_palette())  # L -> P, as VOC's palette PNGs
            png.save(root / "SegmentationClass" / f"{sample_id}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_masks(root: Path, count: int, seed: int = 1) -> Path:
    """An images/ + masks/ folder of `count` PNG pairs."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(count):
        mask = make_mask(rng)
        Image.fromarray(paint(mask, rng)).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


def oracle_prediction(gt: np.ndarray) -> Prediction:
    """Level 0 = the ground-truth regions, embedded as one-hot class (void its own direction);
    level 1 = the whole image as one region (a constant prediction)."""
    values, segment_map = np.unique(gt, return_inverse=True)
    segment_map = segment_map.reshape(gt.shape)
    dims = np.where(values < NUM_CLASSES, values, NUM_CLASSES)
    fine = np.eye(NUM_CLASSES + 2, dtype=np.float32)[dims]
    whole = np.eye(NUM_CLASSES + 2, dtype=np.float32)[[NUM_CLASSES + 1]]
    groups = [np.zeros(values.size, dtype=np.int64)]
    return build_prediction(segment_map, groups, [fine, whole], gt.shape, {"checkpoint": "oracle"})


class OraclePredictor:
    """Predicts from the ground truth of each image it was shown (looked up by pixel hash)."""

    checkpoint_hash = "oracle"

    def __init__(self, *datasets) -> None:
        self.truth = {self.key(s.image): s.ground_truths[0] for d in datasets for s in d}

    @staticmethod
    def key(image: np.ndarray) -> str:
        return hashlib.sha1(image.tobytes()).hexdigest()

    def predict(self, image: np.ndarray) -> Prediction:
        return oracle_prediction(self.truth[self.key(image)])


@pytest.fixture
def voc_root(tmp_path):
    return write_voc(tmp_path / "voc", {"train": 6, "val": 4})


@pytest.fixture
def masks_root(tmp_path):
    return write_masks(tmp_path / "masks_set", 4)
