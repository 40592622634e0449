"""Turns a finished pending job (all shards committed) into a new committed index generation."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .checks import check_faiss, check_vectors
from .errors import IndexFormatError
from .factory import add_vectors, build_faiss_index, choose_factory, ivf_of, needs_rerank
from .ids import LEVEL_SHIFT, SLOT_SHIFT
from .io import (
    DATA_FILES,
    MANIFEST_NAME,
    data_file,
    generation_names,
    manifest_header,
    read_faiss,
    read_manifest,
    read_table,
    read_vectors,
    remove_unreferenced,
    verify_data_file,
    write_data_file,
    write_json,
)
from .merge import streamed_commit
from .records import METADATA_SCHEMA, split_vectors
from .shards import Plan, committed_shards, pending_dir, read_shard, remove_pending, shard_path

LOG = logging.getLogger(__name__)


def commit_job(out_dir: Path, plan: Plan, factory: str | None) -> dict:
    """Assembles base generation + shards, writes the new generation, commits its manifest.

    When the new index is IVF, the generation is written streamed (`merge.streamed_commit`: one
    batch of rows and one block of IVF lists in memory at a time); a Flat index (the automatic
    choice up to `factory.FLAT_MAX_VECTORS` vectors, so small) is assembled in memory.

    Args:
        out_dir: index folder.
        plan: the pending plan, every shard of which must be committed.
        factory: faiss factory to use, or None (keep the base's, or choose by size).

    Returns:
        The new manifest.
    """
    missing = sorted(set(range(plan.num_shards)) - committed_shards(out_dir))
    if missing:
        names = ", ".join(f"shard_{i:05d}.parquet" for i in missing[:5])
        raise IndexFormatError(
            f"{pending_dir(out_dir)}: {len(missing)} shard(s) not committed yet ({names}"
            f"{', ...' if len(missing) > 5 else ''}); finish every rank first"
        )
    streamed = streamed_commit(out_dir, plan, factory)
    if streamed is not None:
        skipped = list(plan.carried_skipped) + streamed.skipped
        base = read_manifest(out_dir) if plan.base_generation is not None else None
        manifest = _manifest(base, plan, streamed.files, streamed.per_level, skipped)
        manifest.update(
            dim=streamed.dim,
            nprobe=streamed.nprobe,
            rerank=streamed.rerank,
            factory=streamed.factory,
            factory_auto=streamed.auto,
        )
        manifest["counts"]["images"] = streamed.images
        return _commit_manifest(out_dir, manifest)
    return _commit_in_memory(out_dir, plan, factory)


def _commit_in_memory(out_dir: Path, plan: Plan, factory: str | None) -> dict:
    """`commit_job` with every row of the base and the shards in memory at once."""
    table, vectors, records = _read_shards(out_dir, plan)
    base, base_ids = None, None
    if plan.base_generation is not None:
        base = read_manifest(out_dir)
        table, vectors, base_ids = _merge_with_base(out_dir, base, plan, table, vectors)
    skipped = list(plan.carried_skipped) + [r for r in records if r["status"] == "skipped"]
    if table.num_rows == 0:
        # a job that commits nothing would fail the same way on every rerun: drop it, so the
        # next build or update plans anew (from the folder as it is then)
        remove_pending(out_dir)
        first = f"; first error: {skipped[0]['image']}: {skipped[0]['error']}" if skipped else ""
        raise ValueError(
            f"{plan.data_root}: nothing to index ({len(skipped)} image(s) skipped{first}); "
            f"the pending {plan.kind} in {out_dir} was discarded (a rerun plans anew)"
        )
    order = np.argsort(table.column("id").to_numpy(), kind="stable")
    table, vectors = table.take(pa.array(order)), np.ascontiguousarray(vectors[order])
    ids = table.column("id").to_numpy()
    check_vectors(vectors, Path(out_dir), ids)  # a damaged base generation is refused here
    index, factory_used, auto = _faiss_index(out_dir, base, base_ids, ids, vectors, factory)
    check_faiss(index, ids, Path(out_dir))
    manifest = _write_generation(out_dir, base, plan, table, vectors, index, skipped)
    manifest.update(factory=factory_used, factory_auto=auto)
    return _commit_manifest(out_dir, manifest)


def _commit_manifest(out_dir: Path, manifest: dict) -> dict:
    """Writes the manifest (the commit point), then deletes what the generation replaced."""
    write_json(Path(out_dir) / MANIFEST_NAME, manifest)
    remove_unreferenced(out_dir, {entry["name"] for entry in manifest["files"].values()})
    remove_pending(out_dir)
    LOG.info(
        "index generation %d committed: %d regions of %d images",
        manifest["generation"],
        manifest["counts"]["regions"],
        manifest["counts"]["images"],
    )
    return manifest


def _read_shards(out_dir: Path, plan: Plan) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """All shard rows (vectors split off) and image records, in shard order."""
    tables, vectors, records = [METADATA_SCHEMA.empty_table()], [], []
    for shard in range(plan.num_shards):
        table, shard_records = read_shard(out_dir, shard, plan.checkpoint_hash)
        records.extend(shard_records)
        if table.num_rows:
            table, shard_vectors = split_vectors(table)
            check_vectors(shard_vectors, shard_path(out_dir, shard), table.column("id").to_numpy())
            tables.append(table.select(METADATA_SCHEMA.names))
            vectors.append(shard_vectors)
    dims = sorted({v.shape[1] for v in vectors})
    if len(dims) > 1:
        raise IndexFormatError(
            f"{pending_dir(out_dir)}: shards hold vectors of different sizes {dims}"
        )
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
    return pa.concat_tables(tables), stacked, records


def _merge_with_base(
    out_dir: Path, base: dict, plan: Plan, table: pa.Table, vectors: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """(base rows minus removed images plus the new rows, their vectors, [M] ids of the base)."""
    if base["generation"] != plan.base_generation:
        raise IndexFormatError(
            f"{pending_dir(out_dir)}: pending update was planned on generation "
            f"{plan.base_generation}, the index is at {base['generation']}"
        )
    base_table = read_table(_verified(out_dir, base, "metadata"))
    base_vectors = read_vectors(_verified(out_dir, base, "vectors"), mmap=False)
    if vectors.shape[0] and vectors.shape[1] != base_vectors.shape[1]:
        raise IndexFormatError(
            f"{pending_dir(out_dir)}: new vectors have size {vectors.shape[1]}, "
            f"the index has {base_vectors.shape[1]}"
        )
    keep = pc.invert(pc.is_in(base_table.column("image"), pa.array(plan.remove, pa.string())))
    keep_rows = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
    merged = pa.concat_tables([base_table.filter(keep), table])
    new_vectors = vectors if vectors.shape[0] else np.zeros((0, base_vectors.shape[1]), np.float32)
    merged_vectors = np.concatenate([base_vectors[keep_rows], new_vectors])
    return merged, merged_vectors, base_table.column("id").to_numpy()


def _faiss_index(
    out_dir: Path,
    base: dict | None,
    base_ids: np.ndarray | None,
    ids: np.ndarray,
    vectors: np.ndarray,
    factory: str | None,
) -> tuple[faiss.Index, str, bool]:
    """(index, factory string, chosen automatically?) for the final rows.

    When the factory stays that of the base index, the base index is updated in place:
    `remove_ids` for the rows that left, `add_with_ids` for the new ones. Otherwise (first build,
    another factory requested, or the automatic choice changed with the size) it is built anew.
    """
    auto = factory is None and (base is None or base["factory_auto"])
    chosen = choose_factory(ids.size) if auto else (factory or base["factory"])
    if base is None or chosen != base["factory"]:
        LOG.info("building faiss index %r over %d vectors", chosen, ids.size)
        return build_faiss_index(vectors, ids, chosen), chosen, auto
    index = read_faiss(_verified(out_dir, base, "index"), mmap=False)
    removed = np.setdiff1d(base_ids, ids)
    if removed.size:
        index.remove_ids(faiss.IDSelectorBatch(removed))
    added = ~np.isin(ids, base_ids)
    add_vectors(index, vectors[added], ids[added])
    if index.ntotal != ids.size:
        raise IndexFormatError(
            f"{out_dir}: the updated faiss index holds {index.ntotal} vectors, "
            f"the metadata {ids.size}"
        )
    return index, chosen, auto


def _write_generation(
    out_dir: Path,
    base: dict | None,
    plan: Plan,
    table: pa.Table,
    vectors: np.ndarray,
    index: faiss.Index,
    skipped: list[dict],
) -> dict:
    """Writes the data files of the next generation; returns its manifest (not written yet)."""
    generation = 1 if base is None else base["generation"] + 1
    names = generation_names(generation)
    content = {"vectors": vectors, "metadata": table, "index": index}
    files = {
        kind: write_data_file(Path(out_dir) / names[kind], kind, content[kind])
        for kind in DATA_FILES
    }
    per_level = np.bincount(table.column("level").to_numpy()).tolist()
    manifest = _manifest(base, plan, files, per_level, skipped)
    ivf = ivf_of(index)
    manifest.update(
        dim=int(vectors.shape[1]),
        nprobe=int(ivf.nprobe) if ivf is not None else None,
        rerank=needs_rerank(index),
    )
    manifest["counts"]["images"] = len(pc.unique(table.column("image")))
    return manifest


def _manifest(
    base: dict | None, plan: Plan, files: dict, per_level: list[int], skipped: list[dict]
) -> dict:
    """The manifest of the generation after `base` (None for a build) made of `files`; the caller
    adds "dim", "nprobe", "rerank", the factory and the image count."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        **manifest_header(),
        "generation": 1 if base is None else base["generation"] + 1,
        "job_id": plan.job_id,
        "checkpoint_hash": plan.checkpoint_hash,
        "data_root": plan.data_root,
        "num_levels": len(per_level),
        "metric": "inner_product",
        "id_layout": {"level_shift": LEVEL_SHIFT, "slot_shift": SLOT_SHIFT},
        "counts": {"regions": int(sum(per_level)), "per_level": per_level, "skipped": len(skipped)},
        "next_slot": plan.next_slot,
        "skipped": sorted(skipped, key=lambda r: r["image"]),
        "files": files,
        "created": base["created"] if base is not None else now,
        "updated": now,
    }


def _verified(out_dir: Path, manifest: dict, kind: str) -> Path:
    """A data file of the base generation, checked against its recorded size and sha256 (an update
    must not carry damage into a new generation under fresh checksums)."""
    path = data_file(out_dir, manifest, kind)
    verify_data_file(path, manifest, kind)
    return path
