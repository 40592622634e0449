"""Issue 14 item 1: compressed codes past 10^6 vectors, memory-mapped re-ranking vectors, metadata
read lazily (masks by row group), old indexes still opening, checksums of large indexes verified
in the background."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import index.factory as factory_module
import index.io as io_module
import index.store as store_module
from index import IndexFormatError, SegmentIndex, build_index, verify_index
from index.checks import file_sha256
from index.factory import choose_factory
from index.rle import decode_region
from index.synthetic import SyntheticExtractor, cluster_centers, clustered_unit_vectors

EXACT_RECALL = 0.98  # stated recall@10 of the compressed index against exact search


def _build(data: Path, out: Path, checkpoint: str, **options) -> SegmentIndex:
    build_index(
        data,
        out,
        SyntheticExtractor(),
        checkpoint_hash=checkpoint,
        progress=lambda done, total: None,
        **options,
    )
    return SegmentIndex.open(out)


def _eager_rows(index: SegmentIndex) -> dict:
    """Every metadata row decoded at once (the pre-issue-14 path), by id."""
    table = pq.read_table(index.path / index.manifest["files"]["metadata"]["name"])
    return {row["id"]: row for row in table.to_pylist()}


def test_the_automatic_choice_compresses_past_a_million_vectors():
    assert choose_factory(200_000) == "Flat"
    assert choose_factory(1_000_000) == "IVF1024,Flat"
    assert choose_factory(1_000_001) == "IVF1024,SQ8"
    assert choose_factory(10_000_000) == "IVF4096,SQ8"


def test_compressed_index_top10_equals_exact_search_from_memory_mapped_vectors(
    ivf_root, checkpoint, monkeypatch
):
    """Thresholds lowered so the automatic choice is a compressed IVF over 4200 regions."""
    monkeypatch.setattr(factory_module, "FLAT_MAX_VECTORS", 100)
    monkeypatch.setattr(factory_module, "COMPRESSED_MIN_VECTORS", 1000)
    index = _build(ivf_root / "data", ivf_root / "auto_sq8", checkpoint)
    assert index.info()["factory"] == "IVF64,SQ8" and index.manifest["rerank"] is True
    assert isinstance(index.vectors(), np.memmap) and index.info()["mmap"] is True
    vectors = np.asarray(index.vectors(), dtype=np.float64)
    ids, levels = index.metadata["id"].to_numpy(), index.metadata["level"].to_numpy()
    found, count = 0, 0
    rng = np.random.default_rng(3)
    for number, query in enumerate(clustered_unit_vectors(40, cluster_centers(16, 16), 0.5, rng)):
        wanted = [number % 3]
        keep = np.isin(levels, wanted)
        scores = vectors @ query
        exact = ids[keep][np.argsort(-scores[keep], kind="stable")[:10]]
        hits = index.search(query, 10, levels=wanted)
        found += len({h.id for h in hits} & set(exact.tolist()))
        count += 10
        np.testing.assert_allclose(  # re-ranked: exact scores, best first
            [h.score for h in hits], scores[np.searchsorted(ids, [h.id for h in hits])], atol=1e-5
        )
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert found / count >= EXACT_RECALL


def test_lazy_metadata_returns_the_rows_and_masks_of_the_eager_path(
    tmp_path, make_images, checkpoint, monkeypatch
):
    monkeypatch.setattr(io_module, "METADATA_ROW_GROUP", 7)  # 210 rows in 30 row groups
    monkeypatch.setattr(store_module, "RLE_CACHE_GROUPS", 3)
    make_images(tmp_path / "data", [f"im{i}.png" for i in range(6)])
    index = _build(tmp_path / "data", tmp_path / "index", checkpoint)
    path = index.path / index.manifest["files"]["metadata"]["name"]
    assert pq.ParquetFile(path).metadata.num_row_groups == 30
    assert not index._meta._groups, "no RLE code may be decoded at open"
    eager = _eager_rows(index)
    for region_id, row in eager.items():
        box = (row["x0"], row["y0"], row["x1"], row["y1"])
        expected = decode_region(row["rle"], box, (row["height"], row["width"]))
        np.testing.assert_array_equal(index.region_mask(region_id), expected)
        assert len(index._meta._groups) <= 3
    hits = index.search(index.vectors()[5], 20)
    for hit in hits:
        row = eager[hit.id]
        assert (hit.image, hit.image_hash, hit.level, hit.region, hit.parent, hit.area) == (
            row["image"],
            row["image_hash"],
            row["level"],
            row["region"],
            row["parent"],
            row["area"],
        )
        assert hit.box == (row["x0"], row["y0"], row["x1"], row["y1"])
    frame = index.metadata
    assert frame["id"].tolist() == sorted(eager) and frame["rle"].tolist() == [
        eager[i]["rle"] for i in sorted(eager)
    ]


def test_an_index_written_before_row_groups_and_checksums_still_opens(
    tmp_path, make_images, checkpoint
):
    """Old generations: metadata in one row group (pyarrow's default), format 1 (no sha256)."""
    make_images(tmp_path / "data", [f"im{i}.png" for i in range(6)])
    new = _build(tmp_path / "data", tmp_path / "new", checkpoint)
    old_dir = tmp_path / "old"
    shutil.copytree(new.path, old_dir)
    manifest = json.loads((old_dir / "manifest.json").read_text())
    meta = old_dir / manifest["files"]["metadata"]["name"]
    pq.write_table(pq.read_table(meta), meta, compression="zstd")
    manifest["files"]["metadata"]["bytes"] = meta.stat().st_size
    for entry in manifest["files"].values():
        entry.pop("sha256", None)
    (old_dir / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    old = SegmentIndex.open(old_dir)
    assert old.info()["format_version"] == 1 and len(old) == len(new)
    query = new.vectors()[40]
    assert old.search(query, 15) == new.search(query, 15)
    for region_id in new.metadata["id"].to_numpy()[::17]:
        np.testing.assert_array_equal(
            old.region_mask(int(region_id)), new.region_mask(int(region_id))
        )
    assert verify_index(old_dir, upgrade=True)["checksums"] == "recorded"


def test_large_indexes_are_verified_in_the_background_and_refused_once_damage_is_found(
    tmp_path, make_images, checkpoint, monkeypatch
):
    make_images(tmp_path / "data", [f"im{i}.png" for i in range(6)])
    sound = _build(tmp_path / "data", tmp_path / "index", checkpoint)
    assert sound.verification == "done"
    monkeypatch.setattr(store_module, "BACKGROUND_VERIFY_BYTES", 0)  # every index is "large"
    opened = SegmentIndex.open(sound.path)
    opened.wait_verified(timeout=30)
    assert opened.verification == "done" and len(opened.search(sound.vectors()[3], 5)) == 5
    vectors = sound.path / sound.manifest["files"]["vectors"]["name"]
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x40  # the last vector: sizes, ids and faiss codes unchanged
    vectors.write_bytes(bytes(data))
    assert file_sha256(vectors) != sound.manifest["files"]["vectors"]["sha256"]
    damaged = SegmentIndex.open(sound.path)  # returns before the checks end
    with pytest.raises(IndexFormatError, match=r"vectors-g0001.npy: vectors file is damaged"):
        damaged.wait_verified(timeout=30)
    assert damaged.verification == "failed"
    with pytest.raises(IndexFormatError, match=r"vectors-g0001.npy"):
        damaged.search(sound.vectors()[3], 5)
    with pytest.raises(IndexFormatError, match=r"vectors-g0001.npy"):
        damaged.region_mask(int(sound.metadata["id"].iloc[0]))
    with pytest.raises(IndexFormatError, match=r"vectors-g0001.npy: vectors file is damaged"):
        verify_index(sound.path)  # `hsg index verify` waits for every check


def test_background_verification_threads_yield_the_cpu_to_searches():
    """Linux: the sha256 and norm threads of a large open run at nice 19, the caller's stay."""
    import os
    import threading

    from index.checks import lower_thread_priority

    seen: list[int] = []

    def worker() -> None:
        lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [19]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19


def test_rows_of_a_memory_mapped_vector_file_are_read_without_the_mapping(tmp_path):
    from index.io import read_vectors
    from index.ranking import read_rows

    stored = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", stored)
    mapped = read_vectors(tmp_path / "v.npy", mmap=True)
    rows = np.array([299, 0, 17, 17, 150])
    np.testing.assert_array_equal(read_rows(mapped, rows), stored[rows])
    np.testing.assert_array_equal(read_rows(stored, rows), stored[rows])  # in memory: indexing
    with pytest.raises(IndexError):
        read_rows(mapped, np.array([300]))
