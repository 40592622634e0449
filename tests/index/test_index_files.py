"""Missing, truncated, corrupt or mismatched index files give one-line errors naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from index import CheckpointMismatchError, IndexFormatError, SegmentIndex, build_index
from index.synthetic import SyntheticExtractor


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, make_images, checkpoint) -> Path:
    root = tmp_path_factory.mktemp("files")
    make_images(root / "data", [f"im{i}.png" for i in range(6)])
    build_index(
        root / "data",
        root / "index",
        SyntheticExtractor(),
        checkpoint_hash=checkpoint,
        progress=lambda done, total: None,
    )
    return root / "index"


@pytest.fixture
def index_dir(tmp_path, pristine) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(pristine, copy)
    return copy


def edit_manifest(index_dir: Path, **changes) -> None:
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_opens_when_intact(index_dir, checkpoint):
    assert len(SegmentIndex.open(index_dir, checkpoint_hash=checkpoint)) == 6 * 35
    assert len(SegmentIndex.open(index_dir / "manifest.json")) == 6 * 35


def test_missing_manifest(index_dir):
    (index_dir / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match=r"manifest.json: manifest is missing"):
        SegmentIndex.open(index_dir)


def test_corrupt_manifest(index_dir):
    (index_dir / "manifest.json").write_text("{not json")
    with pytest.raises(
        IndexFormatError, match=r"manifest.json: index manifest is unreadable or not valid JSON"
    ):
        SegmentIndex.open(index_dir)


def test_unknown_format_version(index_dir):
    edit_manifest(index_dir, format_version=99)
    with pytest.raises(IndexFormatError, match=r"manifest.json: unknown format version 99"):
        SegmentIndex.open(index_dir)


def test_wrong_checkpoint(index_dir, checkpoint):
    with pytest.raises(
        CheckpointMismatchError,
        match=rf"manifest.json: built with checkpoint {checkpoint}, "
        "not with the given checkpoint other",
    ):
        SegmentIndex.open(index_dir, checkpoint_hash="other")


@pytest.mark.parametrize(
    "name", ["index-g0001.faiss", "metadata-g0001.parquet", "vectors-g0001.npy"]
)
def test_truncated_data_file(index_dir, name):
    truncate(index_dir / name)
    with pytest.raises(IndexFormatError, match=rf"{name}: \w+ file is truncated or altered"):
        SegmentIndex.open(index_dir)


@pytest.mark.parametrize("name", ["index-g0001.faiss", "metadata-g0001.parquet"])
def test_missing_data_file(index_dir, name):
    (index_dir / name).unlink()
    with pytest.raises(
        IndexFormatError, match=rf"{name}: \w+ file listed in the manifest is missing"
    ):
        SegmentIndex.open(index_dir)


@pytest.mark.parametrize(
    "name, offset, message",
    [
        ("index-g0001.faiss", 0, "corrupt faiss index"),
        ("metadata-g0001.parquet", -4, "corrupt Parquet file"),
        ("vectors-g0001.npy", 0, "corrupt vector file"),
    ],
)
def test_corrupt_data_file_of_the_right_size(index_dir, name, offset, message):
    path = index_dir / name
    data = bytearray(path.read_bytes())
    data[offset : offset + 4 if offset != -4 else None] = b"XXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=rf"{name}: {message}"):
        SegmentIndex.open(index_dir)


def test_counts_disagree_with_the_manifest(index_dir):
    manifest = json.loads((index_dir / "manifest.json").read_text())
    manifest["counts"]["regions"] += 1
    (index_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        IndexFormatError, match=r"index-g0001.faiss: holds 210 regions, the manifest says 211"
    ):
        SegmentIndex.open(index_dir)
