"""Files of an index folder: atomic writes, the manifest, and reads that fail with clear errors.

An index folder holds one committed *generation* of three data files plus ``manifest.json``::

    index-g0002.faiss      the faiss index (ids: see index.ids)
    metadata-g0002.parquet one row per region, sorted by id (schema: index.records)
    vectors-g0002.npy      [N, D] float32 vectors in the same row order
    manifest.json          format version, checkpoint hash, counts, names and sizes of the above

Each file is written to a temporary name, fsynced and renamed; the manifest is renamed last and
is the commit point, so a crash leaves either the previous generation or the new one in force.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CheckpointMismatchError, IndexFormatError

FORMAT_NAME = "hsg-segment-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_FILES = ("index", "metadata", "vectors")
_SUFFIXES = {"index": ".faiss", "metadata": ".parquet", "vectors": ".npy"}
_REQUIRED = (
    "generation",
    "checkpoint_hash",
    "data_root",
    "dim",
    "num_levels",
    "factory",
    "counts",
    "files",
    "skipped",
    "next_slot",
    "job_id",
)


def fsync_dir(folder: Path) -> None:
    """Makes renames inside `folder` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: Path, write: Callable[[Path], None]) -> int:
    """Writes `path` through a temporary file in the same folder, fsync, then rename.

    Args:
        path: final file path.
        write: called with the temporary path; must create that file.

    Returns:
        Size of the written file in bytes.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return size


def write_json(path: Path, payload: dict) -> int:
    """Atomic JSON write."""
    text = json.dumps(payload, indent=1, sort_keys=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_table(path: Path, table: pa.Table, compression: str = "zstd") -> int:
    """Atomic Parquet write."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression=compression))


def write_vectors(path: Path, vectors: np.ndarray) -> int:
    """Atomic .npy write of [N, D] float32 vectors."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))

    return atomic_write(path, write)


def write_faiss(path: Path, index: faiss.Index) -> int:
    """Atomic write of a CPU faiss index."""
    return atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))


def read_json(path: Path, what: str) -> dict:
    """Reads a JSON object, naming `path` and `what` it should be in any error."""
    if not path.is_file():
        raise IndexFormatError(f"{path}: {what} is missing")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexFormatError(f"{path}: {what} is unreadable or not valid JSON ({err})") from err
    if not isinstance(payload, dict):
        raise IndexFormatError(f"{path}: {what} is not a JSON object")
    return payload


def generation_names(generation: int) -> dict[str, str]:
    """File names of the data files of one generation, by kind."""
    return {kind: f"{kind}-g{generation:04d}{_SUFFIXES[kind]}" for kind in DATA_FILES}


def read_manifest(index_dir: Path) -> dict:
    """Reads and checks ``manifest.json`` of an index folder.

    Raises:
        IndexFormatError: missing, corrupt, another format, or an unknown format version.
    """
    path = Path(index_dir) / MANIFEST_NAME
    if not path.is_file():
        raise IndexFormatError(
            f"{path}: manifest is missing; {index_dir} is not a finished segment index "
            "(rerun the build to resume it)"
        )
    manifest = read_json(path, "index manifest")
    if manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(
            f"{path}: not a segment index manifest (format={manifest.get('format')!r})"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: unknown format version {manifest.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing or any(kind not in manifest["files"] for kind in DATA_FILES):
        raise IndexFormatError(f"{path}: manifest lacks {missing or 'file entries'}")
    return manifest


def check_checkpoint(recorded: str, wanted: str | None, path: Path) -> None:
    """Refuses an index or pending build made with another checkpoint."""
    if wanted is not None and recorded != wanted:
        raise CheckpointMismatchError(
            f"{path}: built with checkpoint {recorded}, not with the given "
            f"checkpoint {wanted}; rebuild the index for this checkpoint"
        )


def data_file(index_dir: Path, manifest: dict, kind: str) -> Path:
    """Path of a data file named in the manifest, checked to exist with the recorded size."""
    entry = manifest["files"][kind]
    path = Path(index_dir) / entry["name"]
    if not path.is_file():
        raise IndexFormatError(f"{path}: {kind} file listed in the manifest is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise IndexFormatError(
            f"{path}: {kind} file is truncated or altered "
            f"({size} bytes, the manifest says {entry['bytes']})"
        )
    return path


def read_faiss(path: Path, mmap: bool) -> faiss.Index:
    """Reads a faiss index, memory-mapping its codes when `mmap` (CPU only)."""
    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as err:
        raise IndexFormatError(
            f"{path}: corrupt faiss index ({str(err).splitlines()[0][-200:]})"
        ) from err


def read_table(path: Path, memory_map: bool = False) -> pa.Table:
    """Reads a Parquet file, naming it in any error."""
    try:
        return pq.read_table(path, memory_map=memory_map)
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err


def read_vectors(path: Path, mmap: bool) -> np.ndarray:
    """Reads the [N, D] float32 vector file (memory-mapped read-only when `mmap`)."""
    try:
        vectors = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise IndexFormatError(f"{path}: corrupt vector file ({err})") from err
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise IndexFormatError(
            f"{path}: expected [N, D] float32 vectors, got {vectors.dtype}{vectors.shape}"
        )
    return vectors


def remove_unreferenced(index_dir: Path, keep: set[str]) -> None:
    """Deletes data files of other generations and leftover temporary files."""
    for path in Path(index_dir).iterdir():
        is_data = any(
            path.name.startswith(f"{kind}-g") and path.name.endswith(_SUFFIXES[kind])
            for kind in DATA_FILES
        )
        is_temp = path.name.startswith(".") and ".tmp-" in path.name
        if (is_data or is_temp) and path.name not in keep and path.is_file():
            path.unlink()


def manifest_header() -> dict[str, Any]:
    """The fixed format fields every manifest starts with."""
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
