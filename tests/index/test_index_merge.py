"""Issue 14 item 3: the streamed (on-disk) merge of a sharded build or update writes the files (the
results, for an update keeping its quantizer) of the in-memory merge, leaves nothing half-written
when interrupted, and names the file of a mismatched shard or block of lists."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

import index.commit as commit_module
import index.factory as factory_module
import index.io as io_module
import index.merge as merge_module
from index import IndexFormatError, SegmentIndex, build_index, merge_shards, update_index
from index.synthetic import SyntheticExtractor, cluster_centers, clustered_unit_vectors

SHARD_IMAGES = 16  # 120 images: 8 shards
FAILING = ("im007.png", "im100.png")  # skipped images, recorded in the manifest


def failing_extractor():
    """The synthetic extractor, failing on the `FAILING` images."""
    inner = SyntheticExtractor()

    def extract(paths: list[Path]) -> list:
        return [ValueError("unreadable") if p.name in FAILING else inner.predict(p) for p in paths]

    return extract


def _build(data: Path, out: Path, checkpoint: str, ranks: int, extractors=None) -> dict:
    """A build by `ranks` ranks (one after the other), merged when there are several."""
    for rank in range(ranks):
        status = build_index(
            data,
            out,
            (extractors or {}).get(rank, SyntheticExtractor()),
            checkpoint_hash=checkpoint,
            shard_images=SHARD_IMAGES,
            rank=rank,
            world_size=ranks,
            progress=lambda done, total: None,
        )
    return status if ranks == 1 else merge_shards(out)


def _data_files(out: Path) -> dict[str, bytes]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {kind: (out / entry["name"]).read_bytes() for kind, entry in manifest["files"].items()}


@pytest.fixture
def ivf_settings(monkeypatch):
    """IVF past 100 vectors; small add chunks, blocks, batches and row groups, so that each comes
    in several, with boundaries that do not line up."""
    monkeypatch.setattr(factory_module, "FLAT_MAX_VECTORS", 100)
    monkeypatch.setattr(merge_module, "BATCH_ROWS", 170)  # 560-row shards: 4 batches each
    monkeypatch.setattr(factory_module, "ADD_CHUNK", 500)
    monkeypatch.setattr(merge_module, "BLOCK_BYTES", 1)  # one add chunk per block: 9 blocks
    monkeypatch.setattr(io_module, "METADATA_ROW_GROUP", 300)
    return monkeypatch


@pytest.fixture
def in_memory_merge(monkeypatch):
    """Makes every commit take the in-memory path (the merge before issue 14 item 3)."""

    def switch(on: bool) -> None:
        if on:
            monkeypatch.setattr(commit_module, "streamed_commit", lambda *args: None)
        else:
            monkeypatch.setattr(commit_module, "streamed_commit", merge_module.streamed_commit)

    return switch


@pytest.mark.parametrize(
    ("compressed_min", "factory"), [(1000, "IVF64,SQ8"), (10**6, "IVF64,Flat")]
)
def test_streamed_merge_writes_the_files_and_results_of_the_in_memory_merge(
    ivf_root, checkpoint, ivf_settings, in_memory_merge, compressed_min, factory
):
    ivf_settings.setattr(factory_module, "COMPRESSED_MIN_VECTORS", compressed_min)
    data = ivf_root / "data"
    failing = {0: failing_extractor(), 1: failing_extractor()}
    in_memory_merge(True)
    reference = _build(data, ivf_root / f"memory_{compressed_min}", checkpoint, 2, failing)
    in_memory_merge(False)
    streamed_calls = []
    original = merge_module.streamed_commit

    def spy(*args):
        streamed_calls.append(original(*args))
        return streamed_calls[-1]

    ivf_settings.setattr(commit_module, "streamed_commit", spy)
    merged = _build(data, ivf_root / f"streamed_{compressed_min}", checkpoint, 2, failing)
    assert streamed_calls and streamed_calls[0] is not None
    assert len(list((ivf_root / f"streamed_{compressed_min}").iterdir())) == 4  # nothing left
    assert merged["factory"] == reference["factory"] == factory
    assert [r["image"] for r in merged["skipped"]] == list(FAILING)
    for key in set(reference) - {"created", "updated", "out_dir"}:
        assert merged[key] == reference[key], key
    assert _data_files(Path(merged["out_dir"])) == _data_files(Path(reference["out_dir"]))
    _same_searches(Path(reference["out_dir"]), Path(merged["out_dir"]))


def _same_searches(first: Path, second: Path) -> None:
    """Both indexes (opened memory-mapped) give the same hits, ids and scores, to 30 queries."""
    opened = [SegmentIndex.open(path, mmap=True) for path in (first, second)]
    queries = clustered_unit_vectors(30, cluster_centers(16, 16), 0.5, np.random.default_rng(9))
    for number, query in enumerate(queries):
        levels = None if number % 4 == 3 else [number % 3]
        hits = [index.search(query, 10, levels=levels) for index in opened]
        assert hits[0] == hits[1] and len(hits[0]) == 10


@pytest.mark.parametrize("factory", [None, "IVF32,Flat"])
def test_streamed_update_equals_the_in_memory_update(
    ivf_root, tmp_path, checkpoint, ivf_settings, in_memory_merge, make_images, factory
):
    """Base: IVF64,SQ8. Kept factory: the base's quantizer, list entries in id order (the in-place
    update appends); another factory: trained anew, byte-identical files."""
    ivf_settings.setattr(factory_module, "COMPRESSED_MIN_VECTORS", 1000)
    data = tmp_path / "data"
    shutil.copytree(ivf_root / "data", data)
    outs = {mode: tmp_path / mode for mode in ("memory", "streamed")}
    for out in outs.values():
        _build(data, out, checkpoint, ranks=2)
    for name in ("im003.png", "im050.png", "im119.png"):
        (data / name).unlink()
    make_images(data, ["im010.png", "im011.png"], seed=7)  # changed content
    make_images(data, [f"new{i}.png" for i in range(5)], seed=8)
    results = {}
    for mode, out in outs.items():
        in_memory_merge(mode == "memory")
        for rank in range(2):
            update_index(
                data,
                out,
                SyntheticExtractor(),
                checkpoint_hash=checkpoint,
                factory=factory,
                shard_images=SHARD_IMAGES,
                rank=rank,
                world_size=2,
                progress=lambda done, total: None,
            )
        results[mode] = merge_shards(out)
    memory, streamed = results["memory"], results["streamed"]
    assert streamed["generation"] == 2 and streamed["factory"] == (factory or "IVF64,SQ8")
    for key in set(memory) - {"created", "updated", "out_dir", "files"}:
        assert streamed[key] == memory[key], key
    files = {mode: _data_files(out) for mode, out in outs.items()}
    assert files["memory"]["metadata"] == files["streamed"]["metadata"]
    assert files["memory"]["vectors"] == files["streamed"]["vectors"]
    if factory is not None:
        assert files["memory"]["index"] == files["streamed"]["index"]
    _same_searches(outs["memory"], outs["streamed"])
    assert sorted(p.name for p in outs["streamed"].iterdir()) == [
        "index-g0002.faiss",
        "manifest.json",
        "metadata-g0002.parquet",
        "vectors-g0002.npy",
    ]


def test_a_flat_build_keeps_the_in_memory_merge(tmp_path, make_images, checkpoint, monkeypatch):
    make_images(tmp_path / "data", [f"im{i}.png" for i in range(6)])
    calls = []
    original = merge_module.streamed_commit
    monkeypatch.setattr(commit_module, "streamed_commit", lambda *a: calls.append(original(*a)))
    manifest = _build(tmp_path / "data", tmp_path / "index", checkpoint, ranks=2)
    assert manifest["factory"] == "Flat" and calls == [None]
    assert len(SegmentIndex.open(tmp_path / "index")) == 6 * 35


@pytest.mark.parametrize("where", ["faiss_file", "moving_files"])
def test_an_interrupted_merge_leaves_no_half_written_index_and_a_rerun_finishes_it(
    ivf_root, checkpoint, ivf_settings, where
):
    data, out = ivf_root / "data", ivf_root / f"interrupted_{where}"
    reference = _build(data, ivf_root / f"uninterrupted_{where}", checkpoint, ranks=2)
    if where == "faiss_file":  # killed while the lists are copied: half a faiss file
        write_faiss_file = merge_module.write_faiss_file

        def interrupt(path, trained, blocks):
            write_faiss_file(path, trained, blocks)
            os.truncate(path, path.stat().st_size // 2)
            raise KeyboardInterrupt

        restore = (merge_module, "write_faiss_file", write_faiss_file)
        ivf_settings.setattr(merge_module, "write_faiss_file", interrupt)
    else:  # killed after the first data file was moved into place
        move_data_file = io_module.move_data_file
        moved = []

        def interrupt(source, path):
            if moved:
                raise KeyboardInterrupt
            moved.append(move_data_file(source, path))
            return moved[-1]

        restore = (io_module, "move_data_file", move_data_file)
        ivf_settings.setattr(io_module, "move_data_file", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _build(data, out, checkpoint, ranks=2)
    ivf_settings.setattr(*restore)
    names = sorted(p.name for p in out.rglob("*"))
    assert "manifest.json" not in names and not any(n.endswith(".part") for n in names)
    assert not (out / "pending" / "merge").exists()
    assert len(list((out / "pending").glob("shard_*.parquet"))) == 120 // SHARD_IMAGES + 1
    with pytest.raises(IndexFormatError, match="manifest is missing"):
        SegmentIndex.open(out)
    merged = merge_shards(out)
    assert merged["status"] == "complete" and not (out / "pending").exists()
    assert _data_files(out) == _data_files(Path(reference["out_dir"]))


def test_a_shard_of_another_vector_size_is_named(ivf_root, checkpoint, ivf_settings):
    narrow = SyntheticExtractor(centers=cluster_centers(16, 8))  # 8-d vectors on rank 1
    out = ivf_root / "mixed_sizes"
    with pytest.raises(IndexFormatError, match=r"shard_00001\.parquet: holds 8-d vectors"):
        _build(ivf_root / "data", out, checkpoint, ranks=2, extractors={1: narrow})
    assert not (out / "manifest.json").exists()


def test_shards_out_of_id_order_are_named(ivf_root, checkpoint, ivf_settings):
    """Shards 0 and 2 swapped (each with its checksum: both pass their sha256)."""
    out = ivf_root / "swapped"
    for rank in range(2):
        build_index(
            ivf_root / "data",
            out,
            SyntheticExtractor(),
            checkpoint_hash=checkpoint,
            shard_images=SHARD_IMAGES,
            rank=rank,
            world_size=2,
            progress=lambda done, total: None,
        )
    pending = out / "pending"
    for suffix in (".parquet", ".sha256"):
        first, third = pending / f"shard_00000{suffix}", pending / f"shard_00002{suffix}"
        swap = first.read_bytes()
        first.write_bytes(third.read_bytes())
        third.write_bytes(swap)
    with pytest.raises(IndexFormatError, match=r"shard_00001\.parquet: region ids out of order"):
        merge_shards(out)
    assert not (out / "manifest.json").exists() and not (pending / "merge").exists()


def test_a_block_of_lists_of_another_quantizer_is_named(tmp_path):
    rng = np.random.default_rng(0)
    vectors = clustered_unit_vectors(3000, cluster_centers(32, 16), 0.5, rng)
    ids = np.arange(vectors.shape[0], dtype=np.int64)
    trained = []
    for seed in (1, 2):
        ivf = factory_module.create_index("IVF16,Flat", 16)
        factory_module.train_on_sample(ivf, vectors[np.random.default_rng(seed).permutation(3000)])
        trained.append(ivf)
    blocks = merge_module.ListBlocks(trained[1], tmp_path)
    blocks.add(vectors, ids)
    blocks.close()
    with pytest.raises(
        IndexFormatError, match=r"lists_00000\.faiss: IVF lists not written against"
    ):
        merge_module.write_faiss_file(tmp_path / "merged.faiss", trained[0], blocks)
    merge_module.write_faiss_file(tmp_path / "merged.faiss", trained[1], blocks)
    in_memory = faiss.clone_index(trained[1])
    in_memory.add_with_ids(vectors, ids)
    faiss.write_index(in_memory, str(tmp_path / "in_memory.faiss"))
    assert (tmp_path / "merged.faiss").read_bytes() == (tmp_path / "in_memory.faiss").read_bytes()
