"""Fixtures for the index tests: small image folders, a synthetic extractor, index readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index import SegmentIndex, build_index
from index.synthetic import SyntheticExtractor

CHECKPOINT = "ckpt-test-0001"


def write_images(folder: Path, names: list[str], seed: int = 0) -> None:
    """Creates files of random bytes (the synthetic extractor never decodes them)."""
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() + rng.bytes(64))


def index_content(out_dir: Path) -> tuple:
    """(metadata without ids, vectors, ids), all sorted by image, level, region."""
    index = SegmentIndex.open(out_dir)
    frame = index.metadata.sort_values(["image", "level", "region"]).reset_index(drop=True)
    vectors = index.vectors(frame["id"].to_numpy())
    return frame.drop(columns=["id"]), vectors, frame["id"].to_numpy()


@pytest.fixture(scope="session")
def checkpoint() -> str:
    return CHECKPOINT


@pytest.fixture(scope="session")
def make_images():
    """Callable: make_images(folder, names, seed=0) writes small random files."""
    return write_images


@pytest.fixture(scope="session")
def read_content():
    """Callable: read_content(out_dir) -> `index_content(out_dir)`."""
    return index_content


@pytest.fixture
def extractor():
    return SyntheticExtractor()


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> SegmentIndex:
    """40 images x (24 + 8 + 3) regions, 16-d clustered vectors, exact (Flat) index."""
    root = tmp_path_factory.mktemp("small")
    write_images(root / "data", [f"s{i:02d}/im{i:03d}.jpg" for i in range(40)])
    build_index(
        root / "data",
        root / "index",
        SyntheticExtractor(),
        checkpoint_hash=CHECKPOINT,
        shard_images=16,
        progress=lambda done, total: None,
    )
    return SegmentIndex.open(root / "index", checkpoint_hash=CHECKPOINT)


@pytest.fixture(scope="module")
def ivf_root(tmp_path_factory):
    """A folder of 120 images (120 x 35 = 4200 regions), for IVF indexes."""
    root = tmp_path_factory.mktemp("ivf")
    write_images(root / "data", [f"im{i:03d}.png" for i in range(120)], seed=4)
    return root
