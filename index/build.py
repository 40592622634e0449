"""Public build entry points: `build_index`, `update_index`, `merge_shards`, `discard_pending`.

All three go through one mechanism: a *plan* of images to extract (``pending/plan.json``),
committed *shards* of results, and a *commit* that writes a new index generation. See
`index.shards` for resumability and sharding, `index.io` for the files and their atomicity.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .commit import commit_job
from .dataset import file_digest, list_images
from .errors import IndexFormatError
from .extraction import Extractor, ProgressFn, run_shards
from .io import MANIFEST_NAME, check_checkpoint, data_file, job_lock, read_manifest, read_table
from .shards import Plan, check_plan, pending_dir, read_plan, remove_pending, write_plan

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

    Resumes a pending build of `out_dir` if there is one (same checkpoint and data folder); when
    files were added or removed while it was paused, the finished build is then updated (one
    rank), so the result covers the folder as it is. A build that commits nothing (every image
    skipped) discards its pending job, so the next run plans anew. One job at a time holds
    `out_dir` (see `index.io.job_lock`; the ranks of one sharded job share it).
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
        IndexFormatError: another job is pending in `out_dir` (the message names the command
            that discards it).
        IndexBusyError: another build, update or merge is running on `out_dir`.
        ValueError: nothing could be indexed (the pending job is discarded).
    """
    data_root, out_dir = _check_arguments(
        data_root, out_dir, checkpoint_hash, batch_size, shard_images, rank, world_size
    )
    job = _Job(
        checkpoint_hash, batch_size, factory, shard_images, rank, world_size, progress, should_stop
    )
    with job_lock(out_dir, shared=world_size > 1):
        return _build(data_root, out_dir, extract, job)


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
    resumability and sharding as in `build_index` (every rank hashes every file to plan). A
    resumed update is followed by one more pass, which takes in files changed while it was paused.

    Raises:
        IndexFormatError: `out_dir` holds no valid index.
        CheckpointMismatchError: the index was built with another checkpoint.
        IndexBusyError: another build, update or merge is running on `out_dir`.
    """
    data_root, out_dir = _check_arguments(
        data_root, out_dir, checkpoint_hash, batch_size, shard_images, rank, world_size
    )
    job = _Job(
        checkpoint_hash, batch_size, factory, shard_images, rank, world_size, progress, should_stop
    )
    with job_lock(out_dir, shared=world_size > 1):
        return _update(data_root, out_dir, extract, job)


def merge_shards(out_dir: Path, *, factory: str | None = None) -> dict:
    """Commits a sharded build or update once every rank has finished its shards.

    Returns:
        The manifest with ``status="complete"``. If nothing is pending and the index is
        complete (e.g. a rerun after a successful merge), its manifest is returned as is.

    Raises:
        IndexFormatError: shards are missing, or `out_dir` holds neither a pending job nor an index.
        IndexBusyError: another build, update or merge is running on `out_dir`.
    """
    out_dir = Path(os.path.abspath(out_dir))
    if not out_dir.is_dir():
        read_manifest(out_dir)  # raises: names the missing manifest
    with job_lock(out_dir):
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


def discard_pending(out_dir: Path) -> dict | None:
    """Deletes the unfinished build or update of `out_dir` (``pending/``); the index in force stays.

    Returns:
        What was discarded (kind, data root, images planned, shards committed), or None when
        nothing was pending.

    Raises:
        IndexBusyError: a job is running on `out_dir`.
    """
    out_dir = Path(os.path.abspath(out_dir))
    if not pending_dir(out_dir).exists():
        return None
    with job_lock(out_dir):
        summary = {"out_dir": str(out_dir), "pending": str(pending_dir(out_dir))}
        try:
            plan = read_plan(out_dir)
        except IndexFormatError as err:  # an unreadable plan is discarded all the same
            summary["plan_error"] = str(err)
        else:
            if plan is not None:
                summary.update(kind=plan.kind, data_root=plan.data_root, images=len(plan.images))
        summary["shards"] = len(list(pending_dir(out_dir).glob("shard_*.parquet")))
        remove_pending(out_dir)
        LOG.info("discarded %s", summary["pending"])
        return summary


def clear_index(out_dir: Path) -> None:
    """Deletes everything in an index folder (every generation and any pending job); the folder stays.

    Raises:
        IndexBusyError: a job is running on `out_dir`.
    """
    out_dir = Path(os.path.abspath(out_dir))
    with job_lock(out_dir):
        for path in out_dir.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


@dataclass(frozen=True)
class _Job:
    """The arguments of a build or update other than its folders and its extractor."""

    checkpoint_hash: str
    batch_size: int
    factory: str | None
    shard_images: int
    rank: int
    world_size: int
    progress: ProgressFn | None
    should_stop: Callable[[], bool] | None


def _build(data_root: Path, out_dir: Path, extract: Extractor, job: _Job) -> dict:
    """`build_index` once `out_dir` is locked."""
    plan = read_plan(out_dir)
    resumed = plan is not None
    if plan is not None:
        check_plan(plan, out_dir, "build", job.checkpoint_hash, data_root)
        if _is_committed(out_dir, plan):
            remove_pending(out_dir)
            return _complete(out_dir)
        if plan.shard_images != job.shard_images:
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
            checkpoint_hash=job.checkpoint_hash,
            data_root=str(data_root),
            shard_images=job.shard_images,
            factory=job.factory,
            images=[[rel, slot] for slot, rel in enumerate(images)],
            next_slot=len(images),
        )
        write_plan(out_dir, plan)
        LOG.info("planned %d images in %d shards into %s", len(images), plan.num_shards, out_dir)
    result = _run_plan(out_dir, plan, extract, job)
    if resumed and result["status"] != "stopped" and _listing_changed(plan, data_root):
        if job.world_size > 1:
            LOG.warning(
                "%s: files were added or removed since this build was planned; run "
                "`hsg index update` after the merge to take them in",
                data_root,
            )
        else:
            LOG.warning(
                "%s: files were added or removed while the build was paused; updating %s",
                data_root,
                out_dir,
            )
            return _update(data_root, out_dir, extract, job)
    return result


def _update(data_root: Path, out_dir: Path, extract: Extractor, job: _Job) -> dict:
    """`update_index` once `out_dir` is locked."""
    manifest = read_manifest(out_dir)
    check_checkpoint(manifest["checkpoint_hash"], job.checkpoint_hash, out_dir / MANIFEST_NAME)
    plan = read_plan(out_dir)
    resumed = False
    if plan is not None:
        check_plan(plan, out_dir, "update", job.checkpoint_hash, data_root)
        if _is_committed(out_dir, plan):
            remove_pending(out_dir)
            plan = None
        else:
            resumed = True
    if plan is None:
        plan = _update_plan(
            out_dir, manifest, data_root, job.checkpoint_hash, job.shard_images, job.factory
        )
        if (
            not plan.images
            and not plan.remove
            and plan.data_root == manifest["data_root"]
            and job.factory in (None, manifest["factory"])
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
    result = _run_plan(out_dir, plan, extract, job)
    if resumed and result["status"] == "complete":
        # the folder may have changed while the update was paused: one more pass takes that in
        # (it finds nothing to do when nothing changed)
        return _update(data_root, out_dir, extract, job)
    return result


def _listing_changed(plan: Plan, data_root: Path) -> bool:
    """True when the images of `data_root` are no longer those `plan` was made for."""
    return {str(rel) for rel, _ in plan.images} != set(list_images(data_root))


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


def _run_plan(out_dir: Path, plan: Plan, extract: Extractor, job: _Job) -> dict:
    """Runs this rank's shards, then commits when this is the only rank."""
    finished, done, total = run_shards(
        out_dir,
        plan,
        plan.shards_of_rank(job.rank, job.world_size),
        extract,
        batch_size=job.batch_size,
        progress=job.progress,
        should_stop=job.should_stop,
    )
    status = {
        "out_dir": str(out_dir),
        "rank": job.rank,
        "world_size": job.world_size,
        "images_done": done,
        "images_total": total,
    }
    if not finished:
        return {**status, "status": "stopped"}
    if job.world_size > 1:
        LOG.info(
            "rank %d/%d: shards done; run merge_shards(%s) once every rank has finished",
            job.rank,
            job.world_size,
            out_dir,
        )
        return {**status, "status": "shards_done"}
    commit_job(out_dir, plan, job.factory or plan.factory)
    return _complete(out_dir)


def _is_committed(out_dir: Path, plan: Plan) -> bool:
    """True when the manifest in force was written by this plan's commit (crash before cleanup)."""
    if not (out_dir / MANIFEST_NAME).exists():
        return False
    return read_manifest(out_dir)["job_id"] == plan.job_id


def _complete(out_dir: Path) -> dict:
    return {**read_manifest(out_dir), "status": "complete", "out_dir": str(out_dir)}
