"""A pending build or update: its plan and its committed shards, under ``OUT/pending/``.

``plan.json`` fixes, once, which images are extracted and under which slots, cut into shards
of ``shard_images`` consecutive images; shard ``i`` is done by rank ``i % world_size``. A shard
is one Parquet file (``shard_00012.parquet``): region rows with a ``vector`` column, and in its
schema metadata the list of its images with their hash and status (``ok`` or ``skipped`` with
the error message). Its sha256 is written first (``shard_00012.sha256``), then the shard itself,
to a temporary name and renamed: the shard exists iff committed, and its bytes are checked
against that sha256 when the job is committed.
Reruns skip committed shards, so an interrupted job loses at most the shards in progress and
never duplicates one. Shard boundaries do not depend on the number of ranks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hsg_files import atomic_write_path, file_sha256

from .checks import bytes_sha256, check_sha256
from .errors import CheckpointMismatchError, IndexFormatError
from .io import check_checkpoint, read_json, write_json

PENDING_DIR = "pending"
PLAN_NAME = "plan.json"
_SHARD_KEY = b"hsg_shard"
_REEXTRACT = "delete it and rerun the job to extract its images again"
PLAN_FORMAT_VERSION = 1  # the plan's own version (the index manifest has FORMAT_VERSION)


@dataclass
class Plan:
    """What a pending job extracts and how its result is assembled.

    Attributes:
        kind: "build" (no base index) or "update" (applied to generation `base_generation`).
        checkpoint_hash: model checkpoint every shard must come from.
        data_root: absolute data folder.
        shard_images: images per shard.
        factory: faiss factory requested by the caller, or None for the automatic choice.
        images: [relative path, slot] of every image to extract, in shard order.
        remove: images of the base index to drop (deleted or changed files).
        carried_skipped: skipped records of the base kept as they are (same file, same hash).
        next_slot: first slot never used once this job is committed.
        base_generation: generation the update applies to (None for a build).
        job_id: unique id, copied into the manifest that commits the job.
    """

    kind: str
    checkpoint_hash: str
    data_root: str
    shard_images: int
    factory: str | None
    images: list[list]
    remove: list[str] = field(default_factory=list)
    carried_skipped: list[dict] = field(default_factory=list)
    next_slot: int = 0
    base_generation: int | None = None
    job_id: str = ""
    format_version: int = PLAN_FORMAT_VERSION

    def __post_init__(self) -> None:
        if (
            not self.job_id
        ):  # deterministic, so ranks that race to write the plan write the same file
            content = json.dumps({**asdict(self), "job_id": ""}, sort_keys=True)
            self.job_id = hashlib.sha256(content.encode()).hexdigest()[:16]

    @property
    def num_shards(self) -> int:
        return -(-len(self.images) // self.shard_images)

    def shard_items(self, shard: int) -> list[tuple[str, int]]:
        """(relative path, slot) of the images of one shard."""
        chunk = self.images[shard * self.shard_images : (shard + 1) * self.shard_images]
        return [(str(rel), int(slot)) for rel, slot in chunk]

    def shards_of_rank(self, rank: int, world_size: int) -> list[int]:
        return [i for i in range(self.num_shards) if i % world_size == rank]


def pending_dir(out_dir: Path) -> Path:
    return Path(out_dir) / PENDING_DIR


def discard_hint(out_dir: Path) -> str:
    """The command that deletes the pending job of `out_dir`, for error messages."""
    return f"`hsg index discard {out_dir}` deletes it (the index in force stays)"


def read_plan(out_dir: Path) -> Plan | None:
    """The pending plan of `out_dir`, or None when nothing is pending."""
    path = pending_dir(out_dir) / PLAN_NAME
    if not path.exists():
        return None
    try:
        payload = read_json(path, "pending build plan")
    except IndexFormatError as err:
        raise IndexFormatError(f"{err}; {discard_hint(out_dir)}") from err
    if payload.get("format_version") != PLAN_FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: unknown plan format version {payload.get('format_version')!r}; "
            f"{discard_hint(out_dir)}"
        )
    try:
        return Plan(**payload)
    except TypeError as err:
        raise IndexFormatError(f"{path}: malformed plan ({err}); {discard_hint(out_dir)}") from err


def write_plan(out_dir: Path, plan: Plan) -> None:
    """Writes the plan atomically (ranks that race write identical content)."""
    folder = pending_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / PLAN_NAME, asdict(plan))


def check_plan(plan: Plan, out_dir: Path, kind: str, checkpoint_hash: str, data_root: Path) -> None:
    """Refuses to resume a pending job made for another checkpoint, folder or kind of job.

    Each message names the pending plan, how to finish it, and the command that discards it.
    """
    path = pending_dir(out_dir) / PLAN_NAME
    if plan.checkpoint_hash != checkpoint_hash:
        raise CheckpointMismatchError(
            f"{path}: built with checkpoint {plan.checkpoint_hash}, not with the given "
            f"checkpoint {checkpoint_hash}; finish it with that checkpoint, or "
            f"{discard_hint(out_dir)}"
        )
    if Path(plan.data_root) != Path(data_root):
        raise IndexFormatError(
            f"{path}: a pending {plan.kind} indexes {plan.data_root}, not {data_root}; "
            f"finish it, or {discard_hint(out_dir)}"
        )
    if plan.kind != kind:
        raise IndexFormatError(
            f"{path}: an unfinished {plan.kind} is pending; rerun the {plan.kind} "
            f"to finish it first, or {discard_hint(out_dir)}"
        )


def shard_path(out_dir: Path, shard: int) -> Path:
    return pending_dir(out_dir) / f"shard_{shard:05d}.parquet"


def checksum_path(out_dir: Path, shard: int) -> Path:
    return pending_dir(out_dir) / f"shard_{shard:05d}.sha256"


def committed_shards(out_dir: Path) -> set[int]:
    """Numbers of the shards whose file and checksum exist (temporary files are ignored; a shard
    written before shards had checksums counts as not committed and is extracted again)."""
    return {
        int(p.stem.split("_")[1])
        for p in pending_dir(out_dir).glob("shard_*.parquet")
        if p.with_suffix(".sha256").is_file()
    }


def write_shard(
    out_dir: Path, shard: int, table: pa.Table, records: list[dict], checkpoint_hash: str
) -> None:
    """Commits one shard: region rows (with vectors) and the records of its images."""
    info = {"shard": shard, "checkpoint_hash": checkpoint_hash, "images": records}
    metadata = dict(table.schema.metadata or {})
    metadata[_SHARD_KEY] = json.dumps(info).encode()
    sink = pa.BufferOutputStream()
    # uncompressed: shards are temporary and mostly float vectors, which do not compress
    pq.write_table(
        table.replace_schema_metadata(metadata), sink, compression="none", write_page_checksum=True
    )
    data = sink.getvalue()
    atomic_write_path(
        checksum_path(out_dir, shard),
        lambda tmp: tmp.write_text(bytes_sha256(memoryview(data)) + "\n", encoding="ascii"),
    )
    atomic_write_path(shard_path(out_dir, shard), lambda tmp: tmp.write_bytes(memoryview(data)))


def read_shard(out_dir: Path, shard: int, checkpoint_hash: str) -> tuple[pa.Table, list[dict]]:
    """(region rows with vectors, image records) of a committed shard, checked against its sha256.

    Raises:
        IndexFormatError: the shard is damaged, unreadable or of another checkpoint (one line
            naming the shard file).
    """
    path = shard_path(out_dir, shard)
    try:
        recorded = checksum_path(out_dir, shard).read_text(encoding="ascii").strip()
        data = path.read_bytes()
    except (OSError, UnicodeDecodeError) as err:
        raise IndexFormatError(f"{path}: shard or its checksum is unreadable ({err})") from err
    check_sha256(path, bytes_sha256(data), recorded, "shard file", _REEXTRACT)
    try:
        table = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err
    images = _shard_images(table.schema.metadata, path, checkpoint_hash)
    return table.replace_schema_metadata(None), images


def open_shard(
    out_dir: Path, shard: int, checkpoint_hash: str
) -> tuple[pq.ParquetFile, list[dict]]:
    """A committed shard opened to be read in batches (`pq.ParquetFile.iter_batches`), and its
    image records, once its bytes (hashed in blocks, never held) match its sha256.

    Raises:
        IndexFormatError: as `read_shard`.
    """
    path = shard_path(out_dir, shard)
    try:
        recorded = checksum_path(out_dir, shard).read_text(encoding="ascii").strip()
        digest = file_sha256(path)
    except (OSError, UnicodeDecodeError) as err:
        raise IndexFormatError(f"{path}: shard or its checksum is unreadable ({err})") from err
    check_sha256(path, digest, recorded, "shard file", _REEXTRACT)
    try:
        parquet = pq.ParquetFile(path, buffer_size=1 << 20, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err
    return parquet, _shard_images(parquet.schema_arrow.metadata, path, checkpoint_hash)


def _shard_images(metadata: dict | None, path: Path, checkpoint_hash: str) -> list[dict]:
    """The image records in a shard's schema metadata, once its checkpoint is checked."""
    raw = (metadata or {}).get(_SHARD_KEY)
    if raw is None:
        raise IndexFormatError(f"{path}: not a shard file (no shard metadata)")
    info = json.loads(raw)
    check_checkpoint(info["checkpoint_hash"], checkpoint_hash, path)
    return info["images"]


def remove_pending(out_dir: Path) -> None:
    """Deletes the pending folder: shards first, the plan last (a crash in between is harmless)."""
    folder = pending_dir(out_dir)
    if not folder.exists():
        return
    for path in folder.iterdir():
        if path.name != PLAN_NAME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(folder)
