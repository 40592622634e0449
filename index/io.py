"""Files of an index folder: atomic writes, the manifest, and reads that fail with clear errors.

An index folder holds one committed *generation* of three data files plus ``manifest.json``::

    index-g0002.faiss      the faiss index (ids: see index.ids)
    metadata-g0002.parquet one row per region, sorted by id (schema: index.records)
    vectors-g0002.npy      [N, D] float32 vectors in the same row order
    manifest.json          format version, checkpoint hash, counts, names, sizes and sha256 of the above

Each file is written to a unique temporary name (`hsg_files.atomic_write_path`), fsynced and renamed; the manifest is renamed last and
is the commit point, so a crash leaves either the previous generation or the new one in force.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hsg_files import atomic_write_path, folder_lock, is_temp_part

from .checks import check_sha256, file_sha256
from .errors import CheckpointMismatchError, DataRootMismatchError, IndexBusyError, IndexFormatError

FORMAT_NAME = "hsg-segment-index"
FORMAT_VERSION = 2  # 2: a sha256 per data file in the manifest
READABLE_VERSIONS = (1, 2)  # 1: sizes only (opens, unverified; `hsg index verify --upgrade`)
MANIFEST_NAME = "manifest.json"
DATA_FILES = ("index", "metadata", "vectors")
_SUFFIXES = {"index": ".faiss", "metadata": ".parquet", "vectors": ".npy"}
# rows per Parquet row group of a generation's metadata: a mask is read with its group's RLE
# column, not the whole file. 2^12 rather than 2^14: the 8 masks of a click at 10^6 regions took
# 3.2 vs 7.1 ms p50 (7.4 vs 19 ms p95). Files written before this used pyarrow's default (2^20
# rows) and open the same way, with slower mask reads past 10^6 rows.
METADATA_ROW_GROUP = 1 << 12
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


@contextlib.contextmanager
def job_lock(out_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Holds the index folder for one build, update or merge (see `hsg_files.folder_lock`).

    Ranks of one sharded job take it shared (they write distinct shards); everything else takes
    it exclusively, so a second writer fails at once instead of doing the work twice.

    Raises:
        IndexBusyError: another job holds `out_dir`.
    """
    busy = (
        f"{out_dir}: another build, update or merge is running on this index folder; "
        "wait for it to finish (or stop it) and retry"
    )
    with folder_lock(out_dir, busy, shared=shared, error=IndexBusyError):
        yield


def write_json(path: Path, payload: dict) -> int:
    """Atomic JSON write."""
    text = json.dumps(payload, indent=1, sort_keys=True)
    return atomic_write_path(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_table(path: Path, table: pa.Table, compression: str = "zstd") -> int:
    """Atomic Parquet write (with a CRC per data page, checked on read)."""
    return atomic_write_path(path, lambda tmp: _write_parquet(table, tmp, compression))


def _write_parquet(
    table: pa.Table, path: Path, compression: str, row_group_size: int | None = None
) -> None:
    pq.write_table(
        table,
        path,
        compression=compression,
        write_page_checksum=True,
        row_group_size=row_group_size,
    )


def _write_npy(vectors: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))


def write_npy_header(handle: BinaryIO, rows: int, dim: int) -> None:
    """The header `np.save` writes for [rows, dim] float32; the rows follow as raw bytes."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(handle, {**header, "shape": (rows, dim)})


def metadata_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer with the options of a generation's metadata file (zstd, page CRCs); write
    it tables of `METADATA_ROW_GROUP` rows (the last one shorter) to get the file
    `write_data_file` writes for the same rows."""
    return pq.ParquetWriter(path, schema, compression="zstd", write_page_checksum=True)


def write_data_file(path: Path, kind: str, content: Any) -> dict:
    """Atomic write of one data file of a generation, hashed before it is renamed into place.

    Args:
        path: final path.
        kind: "index" (a faiss index), "metadata" (a table) or "vectors" ([N, D] float32).
        content: what to write.

    Returns:
        Its manifest entry: ``{"name", "bytes", "sha256"}``.
    """
    writers: dict[str, Callable[[Path], None]] = {
        "index": lambda tmp: faiss.write_index(content, str(tmp)),
        "metadata": lambda tmp: _write_parquet(content, tmp, "zstd", METADATA_ROW_GROUP),
        "vectors": lambda tmp: _write_npy(content, tmp),
    }
    return _write_hashed(path, writers[kind])


def move_data_file(source: Path, path: Path) -> dict:
    """Moves a data file written elsewhere on the same file system into place (atomically, as
    `write_data_file`); returns its manifest entry."""
    return _write_hashed(path, lambda tmp: os.replace(source, tmp))


def _write_hashed(path: Path, write: Callable[[Path], object]) -> dict:
    """`atomic_write_path` with the sha256 of the temp file taken before the rename."""
    digest: list[str] = []

    def write_then_hash(tmp: Path) -> None:
        write(tmp)
        digest.append(file_sha256(tmp))

    size = atomic_write_path(path, write_then_hash)
    return {"name": Path(path).name, "bytes": size, "sha256": digest[0]}


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
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise IndexFormatError(
            f"{path}: unknown format version {manifest.get('format_version')!r}; "
            f"this code reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing or any(kind not in manifest["files"] for kind in DATA_FILES):
        raise IndexFormatError(f"{path}: manifest lacks {missing or 'file entries'}")
    if manifest["format_version"] >= 2 and any(
        not isinstance(manifest["files"][kind].get("sha256"), str) for kind in DATA_FILES
    ):
        raise IndexFormatError(f"{path}: manifest lacks the sha256 of a data file")
    return manifest


def verify_data_file(path: Path, manifest: dict, kind: str, digest: str | None = None) -> None:
    """Compares a data file's sha256 with the manifest's (format 1 records none: nothing to do).

    Args:
        digest: the file's sha256 when already computed, else it is computed here.

    Raises:
        IndexFormatError: one line naming the damaged file.
    """
    recorded = manifest["files"][kind].get("sha256")
    if recorded is not None:
        check_sha256(
            path,
            digest or file_sha256(path),
            recorded,
            f"{kind} file",
            "restore it from a backup, or rebuild the index",
        )


def check_checkpoint(recorded: str, wanted: str | None, path: Path) -> None:
    """Refuses an index or pending build made with another checkpoint."""
    if wanted is not None and recorded != wanted:
        raise CheckpointMismatchError(
            f"{path}: built with checkpoint {recorded}, not with the given "
            f"checkpoint {wanted}; rebuild the index for this checkpoint"
        )


def check_data_root(recorded: str, wanted: Path, path: Path) -> None:
    """Refuses an index built over another data folder than `wanted` (links resolved)."""
    if os.path.realpath(recorded) != os.path.realpath(wanted):
        raise DataRootMismatchError(
            f"{path}: indexes the data folder {recorded}, not {wanted}; give the index of that "
            "folder, or build one"
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
        return pq.read_table(path, memory_map=memory_map, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err


def open_parquet(path: Path, dictionary: tuple[str, ...] = ()) -> pq.ParquetFile:
    """Opens a Parquet file memory-mapped without decoding any column (`dictionary` columns are
    then read dictionary-encoded), naming it in any error."""
    try:
        return pq.ParquetFile(
            path,
            memory_map=True,
            page_checksum_verification=True,
            read_dictionary=list(dictionary) or None,
        )
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err


def read_columns(parquet: pq.ParquetFile, path: Path, columns: list[str]) -> pa.Table:
    """Reads `columns` of an opened Parquet file (dictionary columns with one dictionary for all
    row groups, as one chunk), naming the file in any error."""
    try:
        table = parquet.read(columns=columns)
        for number, field in enumerate(table.schema):
            if pa.types.is_dictionary(field.type):
                unified = table.column(number).unify_dictionaries().combine_chunks()
                table = table.set_column(number, field.name, unified)
        return table
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err


def read_row_group_column(parquet: pq.ParquetFile, path: Path, group: int, column: str) -> pa.Array:
    """One column of one row group, naming the file in any error."""
    try:
        return parquet.read_row_group(group, columns=[column]).column(0).combine_chunks()
    except (OSError, pa.ArrowException) as err:
        raise IndexFormatError(f"{path}: corrupt Parquet file ({err})") from err


def read_row_group(
    parquet: pq.ParquetFile, path: Path, group: int, columns: list[str] | None
) -> pa.Table:
    """`columns` (None: all) of one row group, naming the file in any error."""
    try:
        return parquet.read_row_group(group, columns=columns)
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


def read_vector_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """[stop - start, D] float32 rows of a vector file, read with pread (no mapping stays resident).

    Raises:
        IndexFormatError: not an [N, D] float32 file, or rows outside it.
    """
    try:
        with open(path, "rb") as handle:
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }[np.lib.format.read_magic(handle)]
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
            if (
                len(shape) != 2
                or fortran
                or dtype != np.float32
                or not 0 <= start <= stop <= shape[0]
            ):
                raise ValueError(f"rows {start}:{stop} of {dtype}{shape}")
            width = shape[1] * 4
            data = os.pread(handle.fileno(), (stop - start) * width, offset + start * width)
    except (OSError, ValueError, KeyError) as err:
        raise IndexFormatError(f"{path}: corrupt vector file ({err})") from err
    if len(data) != (stop - start) * width:
        raise IndexFormatError(f"{path}: vector file is truncated")
    return np.frombuffer(data, np.float32).reshape(stop - start, shape[1]).copy()


def remove_unreferenced(index_dir: Path, keep: set[str]) -> None:
    """Deletes data files of other generations and leftover temporary files."""
    for path in Path(index_dir).iterdir():
        is_data = any(
            path.name.startswith(f"{kind}-g") and path.name.endswith(_SUFFIXES[kind])
            for kind in DATA_FILES
        )
        is_temp = is_temp_part(path.name) or (path.name.startswith(".") and ".tmp-" in path.name)
        if (is_data or is_temp) and path.name not in keep and path.is_file():
            path.unlink()


def manifest_header() -> dict[str, Any]:
    """The fixed format fields every manifest starts with."""
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
