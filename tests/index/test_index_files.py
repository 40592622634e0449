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


def test_threads_writing_one_file_atomically_never_collide(tmp_path):
    """Issue 13 item 7: temp names were `.{name}.tmp-{pid}`, shared by the threads of a process."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from hsg_files import atomic_write_path as atomic_write

    target = tmp_path / "manifest.json"

    def writer(number: int) -> None:
        for round_ in range(10):
            payload = f"{number}:{round_}:".encode() + bytes(50_000)

            def write(tmp: Path, payload: bytes = payload) -> None:
                tmp.write_bytes(payload)
                time.sleep(0.002)  # another thread writes meanwhile

            assert atomic_write(target, write) == len(payload)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))  # re-raises the first failure of any thread
    number, round_, rest = target.read_bytes().split(b":", 2)
    assert round_ == b"9" and rest == bytes(50_000)  # one writer's last file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def silent_parquet_flip(path: Path) -> int:
    """Offset of a byte whose flip a plain Parquet reader accepts (the table still reads)."""
    import pyarrow.parquet as pq

    original = path.read_bytes()
    for offset in range(len(original) // 2, len(original)):
        flip_byte(path, offset)
        try:
            pq.read_table(path)
            return offset
        except Exception:  # noqa: BLE001 - this flip is loud; try the next byte
            pass
        finally:
            path.write_bytes(original)
    raise AssertionError("no silent flip found")


@pytest.mark.parametrize(
    "name", ["index-g0001.faiss", "metadata-g0001.parquet", "vectors-g0001.npy"]
)
def test_a_flipped_byte_in_a_data_file_is_one_line_naming_it(index_dir, name, run_hsg):
    """Issue 13 item 5: one inverted byte in the faiss file changed search results silently."""
    from tests.conftest import assert_one_line_error

    path = index_dir / name
    offset = (
        silent_parquet_flip(path) if name.endswith(".parquet") else path.stat().st_size * 3 // 4
    )
    flip_byte(path, offset)
    with pytest.raises(IndexFormatError, match=rf"{name}: "):
        SegmentIndex.open(index_dir)
    assert_one_line_error(*run_hsg("index", "verify", index_dir)[::2], str(path))


def test_faiss_ids_and_stored_vectors_are_checked_on_open_even_on_the_fast_path(index_dir):
    """Issue 13 item 5: the faiss id map was never compared with the metadata ids, nor norms re-checked
    (here the damage is given fresh checksums, as an index written by a faulty tool would have)."""
    import faiss
    import numpy as np

    from index.checks import file_sha256

    def rewrite(kind: str, name: str, write) -> None:
        write(index_dir / name)
        manifest = json.loads((index_dir / "manifest.json").read_text())
        entry = manifest["files"][kind]
        entry["bytes"], entry["sha256"] = (
            (index_dir / name).stat().st_size,
            file_sha256(index_dir / name),
        )
        (index_dir / "manifest.json").write_text(json.dumps(manifest))

    pristine_faiss = (index_dir / "index-g0001.faiss").read_bytes()
    index = faiss.read_index(str(index_dir / "index-g0001.faiss"))
    moved = faiss.vector_to_array(index.id_map)
    moved[0] += 1  # one region now answers under another id
    faiss.copy_array_to_vector(moved, index.id_map)
    rewrite("index", "index-g0001.faiss", lambda path: faiss.write_index(index, str(path)))
    for fast_path in ({}, {"verify": False}):
        with pytest.raises(IndexFormatError, match=r"index-g0001.faiss: the faiss ids differ"):
            SegmentIndex.open(index_dir, **fast_path)
    rewrite("index", "index-g0001.faiss", lambda path: path.write_bytes(pristine_faiss))
    vectors = np.load(index_dir / "vectors-g0001.npy")
    vectors[7, 3] = np.nan
    rewrite("vectors", "vectors-g0001.npy", lambda path: np.save(path, vectors))
    for fast_path in ({}, {"verify": False}):
        with pytest.raises(
            IndexFormatError,
            match=r"vectors-g0001.npy: region id \d+ has values that are not finite",
        ):
            SegmentIndex.open(index_dir, **fast_path)


def test_an_index_without_checksums_opens_and_verify_upgrade_records_them(index_dir, run_hsg):
    """Issue 13 item 5: indexes written before checksums (format 1) still open."""
    manifest = json.loads((index_dir / "manifest.json").read_text())
    for entry in manifest["files"].values():
        entry.pop("sha256", None)
    (index_dir / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    assert len(SegmentIndex.open(index_dir)) == 6 * 35
    code, printed, _ = run_hsg("index", "verify", index_dir, "--upgrade")
    assert code == 0 and json.loads(printed)["checksums"] == "recorded"
    assert json.loads((index_dir / "manifest.json").read_text())["format_version"] == 2
    flip_byte(index_dir / "index-g0001.faiss", 200)
    with pytest.raises(IndexFormatError, match=r"index-g0001.faiss: index file is damaged"):
        SegmentIndex.open(index_dir)


def test_an_index_opened_for_another_data_folder_is_refused(index_dir, pristine, tmp_path):
    """Issue 13 item 2: the recorded data root was never compared with the one asked for."""
    from index import DataRootMismatchError

    recorded = SegmentIndex.open(index_dir).data_root
    assert recorded == pristine.parent / "data"
    assert len(SegmentIndex.open(index_dir, data_root=recorded)) == 6 * 35
    with pytest.raises(
        DataRootMismatchError, match=rf"manifest.json: indexes the data folder {recorded}, not "
    ):
        SegmentIndex.open(index_dir, data_root=tmp_path / "elsewhere")
