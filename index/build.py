"""Public build entry points: `build_index`, `update_index`, `merge_shards`.

All three go through one mechanism: a *plan* of images to extract (``pending/plan.json``),
committed *shards* of results, and a *commit* that writes a new index generation. See
`index.shards` for resumability and sharding, `index.io` for the files and their atomicity.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from .commit import commit_job
from .dataset import file_digest, list_images
from .extraction import Extractor, ProgressFn, run_shards
from .io import MANIFEST_NAME, check_checkpoint, data_file, read_manifest, read_table
from .shards import Plan, check_plan, read_plan, remove_pending, write_plan

LOG = logging.getLogger(__name__)


def build_index(
    data_root: Path,
    out_dir: Path,
    extract: Extractor,
    *,
    checkpoint_hash: str,
    batch_size: int = 8,
    factory: str | None = None,
    shard_images: int = 64,
    rank: int = 0,
    world_size: int = 1,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Indexes every region of every level of every image under `data_root`.

    Resumes a pending build of `out_dir` if there is one (same checkpoint and data folder).
    With ``world_size > 1`` this rank extracts its shards (``i % world_size == rank``) and
    returns without committing; `merge_shards` then commits. With one rank it commits itself.

    Args:
        data_root: folder searched recursively for images (see `index.dataset.IMAGE_SUFFIXES`).
        out_dir: index folder to create (or to resume).
        extract: batch of absolute paths -> per path a prediction, or the exception it raised.
        checkpoint_hash: identity of the model checkpoint, stored in and checked against the index.
        batch_size: images per `extract` call.
        factory: faiss factory string ("Flat", "IVF1024,Flat", ...); None chooses by size.
        shard_images: images per committed shard (the most work an interruption can lose).
        rank, world_size: this process's part of a sharded build (torchrun's RANK/WORLD_SIZE).
        progress: called with (images done, images total) of this rank; None shows a tqdm bar.
        should_stop: polled between batches; True stops cleanly (committed shards stay).

    Returns:
        The manifest with ``status="complete"`` once committed; otherwise a status dict
        (``status`` "stopped" or "shards_done", images done/total of this rank).

    Raises:
        FileExistsError: `out_dir` already holds a finished index (use `update_index`).
        CheckpointMismatchError: a pending build of `out_dir` used another checkpoint.
    """
    data_root, out_dir = _check_arguments(
        data_root, out_dir, checkpoint_hash, batch_size, shard_images, rank, world_size
    )
    plan = read_plan(out_dir)
    if plan is not None:
        check_plan(plan, out_dir, "build", checkpoint_hash, data_root)
        if _is_committed(out_dir, plan):
            remove_pending(out_dir)
            return _complete(out_dir)
        if plan.shard_images != shard_images:
            LOG.info("resuming with the plan's %d images per shard", plan.shard_images)
    else:
        if (out_dir / MANIFEST_NAME).exists():
            raise FileExistsError(
                f"{out_dir}: already holds a finished index; use update_index "
                "(`hsg index update`) or another output folder"
            )
        images = list_images(data_root)
        if not images:
            raise FileNotFoundError(f"{data_root}: no image files found")
        plan = Plan(
            kind="build",
            checkpoint_hash=checkpoint_hash,
            data_root=str(data_root),
            shard_images=shard_images,
            factory=factory,
            images=[[rel, slot] for slot, rel in enumerate(images)],
            next_slot=len(images),
        )
        write_plan(out_dir, plan)
        LOG.info("planned %d images in %d shards into %s", len(images), plan.num_shards, out_dir)
    return _run_plan(
        out_dir,
        plan,
        extract,
        batch_size=batch_size,
        factory=factory,
        rank=rank,
        world_size=world_size,
        progress=progress,
        should_stop=should_stop,
    )


def update_index(
    data_root: Path,
    out_dir: Path,
    extract: Extractor,
    *,
    checkpoint_hash: str,
    batch_size: int = 8,
    factory: str | None = None,
    shard_images: int = 64,
    rank: int = 0,
    world_size: int = 1,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Brings an index up to date with its data folder without re-extracting unchanged images.

    New files and files whose content hash changed are extracted (under fresh slots, hence new
    ids); deleted and changed files leave the index. The regions, vectors and metadata then
    equal those of a fresh build; ids of unchanged images stay as they were. Arguments,
    resumability and sharding as in `build_index` (every rank hashes every file to plan).

    Raises:
        IndexFormatError: `out_dir` holds no valid index.
        CheckpointMismatchError: the index was built with another checkpoint.
    """
    data_root, out_dir = _check_arguments(
        data_root, out_dir, checkpoint_hash, batch_size, shard_images, rank, world_size
    )
    manifest = read_manifest(out_dir)
    check_checkpoint(manifest["checkpoint_hash"], checkpoint_hash, out_dir / MANIFEST_NAME)
    plan = read_plan(out_dir)
    if plan is not None:
        check_plan(plan, out_dir, "update", checkpoint_hash, data_root)
        if _is_committed(out_dir, plan):
            remove_pending(out_dir)
            plan = None
    if plan is None:
        plan = _update_plan(out_dir, manifest, data_root, checkpoint_hash, shard_images, factory)
        if (
            not plan.images
            and not plan.remove
            and plan.data_root == manifest["data_root"]
            and factory in (None, manifest["factory"])
        ):
            LOG.info("%s is up to date with %s", out_dir, data_root)
            return _complete(out_dir)
        write_plan(out_dir, plan)
        LOG.info(
            "update of %s: %d image(s) to extract, %d to remove",
            out_dir,
            len(plan.images),
            len(plan.remove),
        )
    return _run_plan(
        out_dir,
        plan,
        extract,
        batch_size=batch_size,
        factory=factory,
        rank=rank,
        world_size=world_size,
        progress=progress,
        should_stop=should_stop,
    )


def merge_shards(out_dir: Path, *, factory: str | None = None) -> dict:
    """Commits a sharded build or update once every rank has finished its shards.

    Returns:
        The manifest with ``status="complete"``. If nothing is pending and the index is
        complete (e.g. a rerun after a successful merge), its manifest is returned as is.

    Raises:
        IndexFormatError: shards are missing, or `out_dir` holds neither a pending job nor an index.
    """
    out_dir = Path(os.path.abspath(out_dir))
    plan = read_plan(out_dir)
    if plan is None:
        read_manifest(out_dir)
        LOG.info("nothing pending in %s; the index is complete", out_dir)
        return _complete(out_dir)
    if _is_committed(out_dir, plan):
        remove_pending(out_dir)
        return _complete(out_dir)
    commit_job(out_dir, plan, factory or plan.factory)
    return _complete(out_dir)


def _check_arguments(
    data_root: Path,
    out_dir: Path,
    checkpoint_hash: str,
    batch_size: int,
    shard_images: int,
    rank: int,
    world_size: int,
) -> tuple[Path, Path]:
    """Validates the common arguments; returns absolute (data_root, out_dir), out_dir created."""
    data_root = Path(os.path.abspath(data_root))
    out_dir = Path(os.path.abspath(out_dir))
    if not data_root.is_dir():
        raise FileNotFoundError(f"{data_root}: data folder not found")
    if not isinstance(checkpoint_hash, str) or not checkpoint_hash:
        raise ValueError("checkpoint_hash must be a non-empty string")
    if batch_size < 1 or shard_images < 1:
        raise ValueError(
            f"batch_size ({batch_size}) and shard_images ({shard_images}) must be >= 1"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
    out_dir.mkdir(parents=True, exist_ok=True)
    return data_root, out_dir


def _update_plan(
    out_dir: Path,
    manifest: dict,
    data_root: Path,
    checkpoint_hash: str,
    shard_images: int,
    factory: str | None,
) -> Plan:
    """Compares the folder (by content hash) with the index: what to extract, what to drop."""
    table = read_table(data_file(out_dir, manifest, "metadata"), memory_map=True).select(
        ["image", "image_hash"]
    )
    indexed = dict(zip(table.column("image").to_pylist(), table.column("image_hash").to_pylist()))
    skipped = {record["image"]: record for record in manifest["skipped"]}
    extract, remove, carried = [], [], []
    current = list_images(data_root)
    for rel in current:
        digest = _digest_or_empty(data_root / rel)
        if rel in indexed and indexed[rel] == digest:
            continue
        if rel in skipped and skipped[rel]["hash"] == digest and digest:
            carried.append(skipped[rel])
            continue
        if rel in indexed:
            remove.append(rel)
        extract.append(rel)
    remove.extend(sorted(set(indexed) - set(current)))
    next_slot = manifest["next_slot"]
    return Plan(
        kind="update",
        checkpoint_hash=checkpoint_hash,
        data_root=str(data_root),
        shard_images=shard_images,
        factory=factory,
        images=[[rel, next_slot + i] for i, rel in enumerate(extract)],
        remove=sorted(remove),
        carried_skipped=carried,
        next_slot=next_slot + len(extract),
        base_generation=manifest["generation"],
    )


def _digest_or_empty(path: Path) -> str:
    try:
        return file_digest(path)
    except OSError:
        return ""  # unreadable: planned for extraction, where the error is recorded


def _run_plan(
    out_dir: Path,
    plan: Plan,
    extract: Extractor,
    *,
    batch_size: int,
    factory: str | None,
    rank: int,
    world_size: int,
    progress: ProgressFn | None,
    should_stop: Callable[[], bool] | None,
) -> dict:
    """Runs this rank's shards, then commits when this is the only rank."""
    finished, done, total = run_shards(
        out_dir,
        plan,
        plan.shards_of_rank(rank, world_size),
        extract,
        batch_size=batch_size,
        progress=progress,
        should_stop=should_stop,
    )
    status = {
        "out_dir": str(out_dir),
        "rank": rank,
        "world_size": world_size,
        "images_done": done,
        "images_total": total,
    }
    if not finished:
        return {**status, "status": "stopped"}
    if world_size > 1:
        LOG.info(
            "rank %d/%d: shards done; run merge_shards(%s) once every rank has finished",
            rank,
            world_size,
            out_dir,
        )
        return {**status, "status": "shards_done"}
    commit_job(out_dir, plan, factory or plan.factory)
    return _complete(out_dir)


def _is_committed(out_dir: Path, plan: Plan) -> bool:
    """True when the manifest in force was written by this plan's commit (crash before cleanup)."""
    if not (out_dir / MANIFEST_NAME).exists():
        return False
    return read_manifest(out_dir)["job_id"] == plan.job_id


def _complete(out_dir: Path) -> dict:
    return {**read_manifest(out_dir), "status": "complete", "out_dir": str(out_dir)}
