"""Shared fixtures. Tests run on CPU unless TORCH_DEVICE says otherwise (as timm's suite).

Tests that need fetched pretrained weights use `fetched_weights`: it skips with the reason when
the weights are absent, unless HSG_REQUIRE_WEIGHTS=1 (CI sets it, after `hsg weights fetch`),
where a missing file fails the test instead of hiding it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BSDS_ROOT = REPO.parent / "shared" / "datasets" / "BSDS500"


@pytest.fixture
def fetched_weights():
    """Callable: fetched_weights("hed") -> Path of the cached weight file."""
    from hsg_core.weights import WeightsMissingError, weights_path

    def get(name: str) -> Path:
        try:
            return weights_path(name)
        except WeightsMissingError as err:
            if os.environ.get("HSG_REQUIRE_WEIGHTS") == "1":
                pytest.fail(str(err))
            pytest.skip(str(err))

    return get


@pytest.fixture
def bsds_root() -> Path:
    if not BSDS_ROOT.is_dir():
        pytest.skip(f"BSDS500 not found at {BSDS_ROOT}")
    return BSDS_ROOT


@pytest.fixture
def torch_device():
    import torch

    return torch.device(os.environ.get("TORCH_DEVICE", "cpu"))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def make_shapes_image(rng, height: int = 64, width: int = 80):
    """A synthetic photo-like image: a smooth background and a few coloured shapes, plus noise."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.float64)
    image[:] = rng.uniform(40, 200, 3) + 30 * (xx / width)[..., None]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(6, 20)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        else:
            inside = (abs(yy - cy) < r) & (abs(xx - cx) < r * 0.7)
        image[inside] = colour
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    """Folder of 6 generated images (two sizes, one in a subfolder); returns its path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        h, w = (64, 80) if i % 2 else (72, 60)
        target = root / ("sub" if i == 5 else "") / f"img{i}.png"
        Image.fromarray(make_shapes_image(rng, h, w)).save(target)
    return root
