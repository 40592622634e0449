"""`SegmentIndex`: opening a committed index and searching it."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .checks import (
    check_faiss,
    check_vectors,
    file_sha256,
    hash_in_background,
    lower_thread_priority,
)
from .errors import IndexFormatError
from .factory import to_gpus
from .filters import IdFilter
from .ids import image_level_range, level_range, region_ids, split_ids
from .io import (
    DATA_FILES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    check_checkpoint,
    check_data_root,
    data_file,
    job_lock,
    manifest_header,
    open_parquet,
    read_columns,
    read_faiss,
    read_manifest,
    read_row_group_column,
    read_table,
    read_vectors,
    verify_data_file,
    write_json,
)
from .ranking import Ranker, read_rows
from .rle import decode_region

LOG = logging.getLogger(__name__)
ONE_PER_IMAGE_FACTOR = 4  # over-fetch per round when collapsing to one hit per image
_NUMERIC_COLUMNS = ("level", "region", "parent", "area", "x0", "y0", "x1", "y1", "height", "width")
_BLAS_THRESHOLD = 20  # faiss defaults to a slow path for query batches below 128000 vectors
_DICTIONARY_COLUMNS = ("image", "image_hash")  # read as indices + one dictionary, never as strings
_OPEN_COLUMNS = ["id", *_DICTIONARY_COLUMNS, *_NUMERIC_COLUMNS]  # every column but "rle"
RLE_CACHE_GROUPS = 8  # row groups of RLE codes kept decoded (2^12 rows each, see index.io)
# a verified open of an index whose data files hold more bytes than this returns before the
# sha256 and norm checks end; they finish in a background thread, and searches refuse the index
# from the moment one fails (`SegmentIndex.wait_verified`, `hsg index verify` wait for them)
BACKGROUND_VERIFY_BYTES = 2 << 30


@dataclass(frozen=True)
class Hit:
    """One search result: a region and where it lives.

    Attributes:
        id: region id (see `index.ids`).
        score: inner product with the query (cosine similarity, 1 = same direction).
        image: image path relative to the index's data root.
        image_hash: sha256 of the image file.
        level, region, parent: hierarchy level, region id in that level, region id of its parent.
        area: pixels of the region.
        box: (x0, y0, x1, y1), x1/y1 exclusive.
        image_size: (H, W) of the image.
    """

    id: int
    score: float
    image: str
    image_hash: str
    level: int
    region: int
    parent: int
    area: int
    box: tuple[int, int, int, int]
    image_size: tuple[int, int]


class SegmentIndex:
    """A committed segment index, opened read-only. Use `SegmentIndex.open`."""

    def __init__(
        self,
        path: Path,
        manifest: dict,
        index: faiss.Index,
        metadata: LazyMetadata,
        vectors: np.ndarray,
        gpu_index: faiss.Index | None,
        mmap: bool,
        checks: Future | None = None,
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.data_root = Path(manifest["data_root"])
        self.dim = int(manifest["dim"])
        self.num_levels = int(manifest["num_levels"])
        self._gpu, self._mmap = gpu_index is not None, mmap or isinstance(vectors, np.memmap)
        self._meta, self._vectors, self._frame, self._checks = metadata, vectors, None, checks
        self._ids = metadata.ids
        self._ranker = Ranker(index, gpu_index, self._ids, vectors, bool(manifest["rerank"]))
        self._cols = metadata.numeric
        self._image_code, self._image_names = metadata.image_codes()
        self._code_of = {name: code for code, name in enumerate(self._image_names)}
        first_rows = np.unique(self._image_code, return_index=True)[1]
        codes = self._image_code[first_rows].tolist()
        slots = split_ids(self._ids[first_rows])[1].tolist()
        self._image_hashes = [""] * len(self._image_names)
        self._image_of_hash: dict[str, str] = {}  # file sha256 -> image (the lowest ids' first)
        for _, code, digest in sorted(zip(first_rows, codes, metadata.first_hashes(first_rows))):
            self._image_hashes[code] = digest
            self._image_of_hash.setdefault(digest, self._image_names[code])
        self._slots = {self._image_names[code]: slot for code, slot in zip(codes, slots)}

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        checkpoint_hash: str | None = None,
        data_root: Path | None = None,
        mmap: bool = False,
        use_gpu: bool | None = None,
        verify: bool = True,
    ) -> SegmentIndex:
        """Opens the index in folder `path` (or its manifest.json).

        Always checked: the manifest, the size of each data file, row counts, dimensions, that
        the faiss ids are exactly the metadata ids, and (unless memory-mapped without `verify`)
        that every stored vector, in the vector file and in the faiss codes, is a finite unit
        vector. With `verify` (the default) also the sha256 of each data file against the
        manifest, hashed in background threads while the files are read. Past
        `BACKGROUND_VERIFY_BYTES` of data files the sha256 and vector-norm checks end after open
        returns, in low-priority threads; searches and masks refuse the index once one fails
        (`wait_verified`, `verification`). `verify=False` skips them; `hsg index verify` waits
        for them all.

        Read at open: the faiss index, the id, numeric and image columns of the metadata (RLE
        masks are read by row group when a mask is asked for). Compressed indexes (manifest
        "rerank", chosen past ~10^6 regions) memory-map their faiss codes and the vectors they
        re-rank with, so neither is read at open (`benchmarks/results/index_scale_1e7.json`);
        others load both unless `mmap`.

        Args:
            path: index folder.
            checkpoint_hash: when given, refuse an index built with another checkpoint.
            data_root: when given, refuse an index of another data folder.
            mmap: memory-map the faiss codes and the vectors instead of loading them.
            use_gpu: None = copy the index to the GPUs when faiss has any; True = require GPUs;
                False = CPU only.
            verify: check checksums, norms and finiteness (see above).

        Raises:
            IndexFormatError: missing/corrupt manifest, unknown format version, missing,
                truncated, damaged or inconsistent data files (the message names the file).
            CheckpointMismatchError: built with another checkpoint.
            DataRootMismatchError: built over another data folder than `data_root`.
        """
        folder = Path(path).parent if Path(path).name == MANIFEST_NAME else Path(path)
        manifest = read_manifest(folder)
        check_checkpoint(manifest["checkpoint_hash"], checkpoint_hash, folder / MANIFEST_NAME)
        if data_root is not None:
            check_data_root(manifest["data_root"], data_root, folder / MANIFEST_NAME)
        files = {kind: data_file(folder, manifest, kind) for kind in DATA_FILES}
        hashed = manifest["format_version"] >= 2 and verify
        late = (
            verify and sum(e["bytes"] for e in manifest["files"].values()) > BACKGROUND_VERIFY_BYTES
        )
        digests = hash_in_background(files, low_priority=late) if hashed else {}
        if verify and not hashed:
            LOG.warning(
                "%s: format %d records no checksums; `hsg index verify --upgrade %s` adds them",
                folder / MANIFEST_NAME,
                manifest["format_version"],
                folder,
            )
        lossy = bool(manifest["rerank"])  # large and re-ranked from the vectors: map both
        index = read_faiss(files["index"], mmap or lossy)
        metadata = LazyMetadata(files["metadata"])
        vectors = read_vectors(files["vectors"], mmap or lossy)
        _check_consistent(files, manifest, index, metadata, vectors)
        ids = metadata.ids
        norms = verify or not (mmap or lossy)  # in memory ~0.05 s per 10^6 x 128 floats
        checks = None
        if late:
            checks = _in_background(files, manifest, digests, ids, norms)
        else:
            _finish_checks(files, manifest, digests, vectors, ids, norms)
        check_faiss(index, ids, files["index"], norms=norms)
        faiss.cvar.distance_compute_blas_threshold = _BLAS_THRESHOLD
        return cls(
            folder, manifest, index, metadata, vectors, to_gpus(index, use_gpu), mmap, checks
        )

    def wait_verified(self, timeout: float | None = None) -> None:
        """Waits for the checks a verified open of a large index left running in the background
        (see `BACKGROUND_VERIFY_BYTES`); returns at once when none are.

        Raises:
            IndexFormatError: a check failed (the index also refuses every search from then on).
            TimeoutError: still running after `timeout` seconds.
        """
        if self._checks is not None:
            self._checks.result(timeout)

    @property
    def verification(self) -> str:
        """ "done" (checked at open, or in the background and passed), "running" or "failed"."""
        if self._checks is None or (self._checks.done() and self._checks.exception() is None):
            return "done"
        return "running" if not self._checks.done() else "failed"

    def __len__(self) -> int:
        return int(self._ids.size)

    def info(self) -> dict:
        """Counts per level, images, size on disk, checkpoint hash, dim, factory, format version."""
        m = self.manifest
        size = (
            sum(e["bytes"] for e in m["files"].values())
            + (self.path / MANIFEST_NAME).stat().st_size
        )
        return {
            "path": str(self.path),
            "data_root": str(self.data_root),
            "format_version": m["format_version"],
            "generation": m["generation"],
            "checkpoint_hash": m["checkpoint_hash"],
            "dim": self.dim,
            "num_levels": self.num_levels,
            "factory": m["factory"],
            "nprobe": m["nprobe"],
            "images": m["counts"]["images"],
            "regions": len(self),
            "per_level": m["counts"]["per_level"],
            "skipped": m["counts"]["skipped"],
            "size_bytes": size,
            "gpu": self._gpu,
            "mmap": self._mmap,
            "created": m["created"],
            "updated": m["updated"],
        }

    def images(self) -> list[str]:
        """Relative paths of the indexed images, sorted."""
        return sorted(self._slots)

    def image_with_hash(self, image_hash: str) -> str:
        """The indexed image whose file has this sha256 (its relative path), or "" (no decoding)."""
        return self._image_of_hash.get(image_hash, "")

    @property
    def metadata(self) -> pd.DataFrame:
        """One row per region, sorted by id (columns: see `index.records.METADATA_SCHEMA`)."""
        if self._frame is None:
            self._frame = self._meta.table().to_pandas()
        return self._frame

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        levels: Sequence[int] | None = None,
        exclude_image: str | None = None,
        one_per_image: bool = False,
    ) -> list[Hit]:
        """Regions most similar to `vector`, best first.

        Args:
            vector: [D] query embedding (normalised here).
            k: number of hits wanted (fewer only if fewer regions pass the filters).
            levels: levels to search; None = all.
            exclude_image: drop every region of this image (ignored if it is not indexed).
            one_per_image: keep only the best region of each image.
        """
        query = self._query(vector)
        return self._search(query, k, self._filter(levels, exclude_image, None), one_per_image)

    def search_region(
        self,
        image: str,
        level: int,
        region: int,
        k: int = 10,
        *,
        levels: Sequence[int] | None = None,
        exclude_self: bool = True,
        exclude_image: bool = False,
        one_per_image: bool = False,
    ) -> list[Hit]:
        """Regions most similar to an indexed region.

        Args:
            image, level, region: the query region.
            k: number of hits wanted.
            levels: levels to search; None = the query region's own level.
            exclude_self: drop the query region itself.
            exclude_image: drop every region of the query's image.
            one_per_image: keep only the best region of each image.
        """
        region_id = self._region_id(image, level, region)
        query = self._query(read_rows(self._vectors, self._rows([region_id]))[0])
        id_filter = self._filter(
            [level] if levels is None else levels,
            image if exclude_image else None,
            region_id if exclude_self else None,
        )
        return self._search(query, k, id_filter, one_per_image)

    def search_across_levels(
        self, vectors_by_level: dict[int, np.ndarray], k: int = 10, **kwargs: Any
    ) -> dict[int, list[Hit]]:
        """Per level, the hits of that level's vector among regions of that same level.

        For a clicked pixel, pass the embedding of the region containing it at every level.
        `kwargs` go to `search` (exclude_image, one_per_image).
        """
        if "levels" in kwargs:
            raise TypeError(
                "search_across_levels searches each vector at its own level; do not pass levels"
            )
        return {
            int(level): self.search(vec, k, levels=[int(level)], **kwargs)
            for level, vec in sorted(vectors_by_level.items())
        }

    def region_vector(self, image: str, level: int, region: int) -> np.ndarray:
        """[D] float32 stored vector of an indexed region."""
        return read_rows(self._vectors, self._rows([self._region_id(image, level, region)]))[0]

    def region_mask(self, hit_or_id: Hit | int) -> np.ndarray:
        """[H, W] bool mask of a region, decoded from its stored RLE."""
        row = self._rows([hit_or_id.id if isinstance(hit_or_id, Hit) else hit_or_id])[0]
        box = tuple(int(self._cols[name][row]) for name in ("x0", "y0", "x1", "y1"))
        size = (int(self._cols["height"][row]), int(self._cols["width"][row]))
        self._refuse_if_damaged()
        try:
            return decode_region(self._meta.rle(int(row)), box, size)
        except ValueError as err:
            raise IndexFormatError(f"{self.path}: region id {int(self._ids[row])}: {err}") from err

    def regions_at(self, image: str, x: int, y: int) -> dict[int, int]:
        """Region containing pixel (column x, row y) of an indexed image, at every level."""
        rows = np.flatnonzero(self._image_code == self._code_of[self._check_image(image)])
        cols = self._cols
        inside = (
            (cols["x0"][rows] <= x)
            & (x < cols["x1"][rows])
            & (cols["y0"][rows] <= y)
            & (y < cols["y1"][rows])
        )
        chain: dict[int, int] = {}
        for row in rows[inside]:
            level = int(cols["level"][row])
            if level not in chain and self.region_mask(int(self._ids[row]))[y, x]:
                chain[level] = int(cols["region"][row])
        return dict(sorted(chain.items()))

    def region_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Id, level and image name ([n] arrays) of metadata `rows` (row order = id order), read
        from the columns kept at open: nothing is decoded (unlike `metadata`)."""
        rows = np.asarray(rows, dtype=np.int64)
        names = np.asarray(self._image_names, dtype=object)
        return {
            "id": self._ids[rows],
            "level": self._cols["level"][rows],
            "image": names[self._image_code[rows]],
        }

    def has_ids(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """[n] bool: which of `ids` are region ids of this index."""
        return self._lookup(ids)[1]

    def hits_of(self, ids: Sequence[int] | np.ndarray, scores: Sequence[float]) -> list[Hit]:
        """The regions `ids` (of this index) with the given `scores` as `Hit`s, in that order."""
        return self._hits(np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64))

    def vectors(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Stored vectors: all of them ([N, D] in metadata row order, read-only when memory-mapped),
        or those of `ids`."""
        if ids is None:
            return self._vectors
        return read_rows(self._vectors, self._rows(np.atleast_1d(ids)))

    # ---- internals -------------------------------------------------------------------------

    def _query(self, vector: np.ndarray) -> np.ndarray:
        """[1, D] float32 unit query."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(
                f"query has {query.shape[1]} values, the index holds {self.dim}-d vectors"
            )
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm <= 1e-12:
            raise ValueError("query vector is zero or not finite")
        return np.ascontiguousarray(query / norm)

    def _refuse_if_damaged(self) -> None:
        """Raises the failure of the background checks, once they have failed."""
        if self._checks is not None and self._checks.done() and self._checks.exception():
            raise self._checks.exception()

    def _check_image(self, image: str) -> str:
        if image not in self._slots:
            raise ValueError(f"{image}: not in the index at {self.path}")
        return image

    def _region_id(self, image: str, level: int, region: int) -> int:
        slot = self._slots[self._check_image(image)]
        region_id = int(region_ids(level, slot, np.array([region]))[0])
        self._rows([region_id], f"{image}: no region {region} at level {level}")
        return region_id

    def _lookup(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([N] int64 metadata row of each of `ids`, valid where found; [N] bool found)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._ids.size == 0:
            return np.zeros(ids.shape, dtype=np.int64), np.zeros(ids.shape, dtype=bool)
        rows = np.minimum(np.searchsorted(self._ids, ids), self._ids.size - 1)
        return rows, self._ids[rows] == ids

    def _rows(self, ids: Sequence[int] | np.ndarray, message: str | None = None) -> np.ndarray:
        """Metadata rows of `ids` ([N] int64)."""
        rows, found = self._lookup(ids)
        if not found.all():
            bad = int(np.asarray(ids, dtype=np.int64)[~found][0])
            raise ValueError(message or f"unknown region id {bad} in {self.path}")
        return rows

    def _filter(
        self, levels: Sequence[int] | None, exclude_image: str | None, exclude_id: int | None
    ) -> IdFilter:
        include = None
        if levels is not None:
            wanted = sorted({int(level) for level in levels})
            if any(not 0 <= level < self.num_levels for level in wanted):
                raise ValueError(f"levels {wanted} outside [0, {self.num_levels})")
            include = [level_range(level) for level in wanted]
        exclude = [] if exclude_id is None else [(int(exclude_id), int(exclude_id) + 1)]
        if exclude_image is not None and exclude_image in self._slots:
            slot = self._slots[exclude_image]
            exclude += [image_level_range(level, slot) for level in range(self.num_levels)]
        return IdFilter(include, exclude)

    def _search(
        self, query: np.ndarray, k: int, id_filter: IdFilter, one_per_image: bool
    ) -> list[Hit]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self._refuse_if_damaged()
        eligible = id_filter.count(self._ids)
        if not one_per_image:
            return self._hits(*self._ranker.top(query, k, id_filter))
        fetch = min(k * ONE_PER_IMAGE_FACTOR, eligible)
        while True:
            ids, scores = self._ranker.top(query, fetch, id_filter)
            codes = self._image_code[self._rows(ids)]
            best = np.sort(np.unique(codes, return_index=True)[1])[:k]
            if best.size >= k or fetch >= eligible:
                return self._hits(ids[best], scores[best])
            fetch = min(fetch * ONE_PER_IMAGE_FACTOR, eligible)

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
        rows = self._rows(ids)
        c = {name: values[rows].tolist() for name, values in self._cols.items()}
        codes = self._image_code[rows].tolist()
        return [
            Hit(
                id=int(ids[i]),
                score=float(scores[i]),
                image=self._image_names[codes[i]],
                image_hash=self._image_hashes[codes[i]],
                level=c["level"][i],
                region=c["region"][i],
                parent=c["parent"][i],
                area=c["area"][i],
                box=(c["x0"][i], c["y0"][i], c["x1"][i], c["y1"][i]),
                image_size=(c["height"][i], c["width"][i]),
            )
            for i in range(len(rows))
        ]


def _check_consistent(
    files: dict[str, Path],
    manifest: dict,
    index: faiss.Index,
    metadata: LazyMetadata,
    vectors: np.ndarray,
) -> None:
    """Row counts, dimensions and id order agree between the three data files and the manifest."""
    regions = manifest["counts"]["regions"]
    for kind, count in (
        ("index", index.ntotal),
        ("metadata", len(metadata)),
        ("vectors", vectors.shape[0]),
    ):
        if count != regions:
            raise IndexFormatError(
                f"{files[kind]}: holds {count} regions, the manifest says {regions}"
            )
    for kind, dim in (("index", index.d), ("vectors", vectors.shape[1])):
        if dim != manifest["dim"]:
            raise IndexFormatError(
                f"{files[kind]}: {dim}-d vectors, the manifest says {manifest['dim']}"
            )
    ids = metadata.ids
    if ids.size > 1 and not (np.diff(ids) > 0).all():
        raise IndexFormatError(f"{files['metadata']}: region ids are not strictly increasing")


class LazyMetadata:
    """The metadata Parquet of a generation, opened without decoding its RLE masks.

    At open only the id, numeric and (dictionary-encoded) image columns are read; the RLE column
    is read one row group at a time when a mask is asked for, and the last `RLE_CACHE_GROUPS`
    groups are kept. Thread-safe (the explorer serves clicks from several threads).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: pq.ParquetFile = open_parquet(self.path, _DICTIONARY_COLUMNS)
        columns = read_columns(self._file, self.path, _OPEN_COLUMNS)
        self.ids: np.ndarray = columns.column("id").to_numpy()
        self.numeric: dict[str, np.ndarray] = {
            name: columns.column(name).to_numpy() for name in _NUMERIC_COLUMNS
        }
        self._images, self._hashes = (columns.column(n).chunk(0) for n in _DICTIONARY_COLUMNS)
        meta = self._file.metadata
        sizes = [meta.row_group(group).num_rows for group in range(meta.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._groups: OrderedDict[int, pa.Array] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._file.metadata.num_rows)

    def image_codes(self) -> tuple[np.ndarray, list[str]]:
        """([N] image code per row, image name per code)."""
        return self._images.indices.to_numpy(), self._images.dictionary.to_pylist()

    def first_hashes(self, rows: np.ndarray) -> list[str]:
        """Image hash of each of `rows`."""
        codes = self._hashes.indices.to_numpy()[np.asarray(rows, dtype=np.int64)]
        return self._hashes.dictionary.take(pa.array(codes)).to_pylist()

    def rle(self, row: int) -> bytes:
        """The RLE code of one row, read with its row group (cached)."""
        group = int(np.searchsorted(self._starts, row, side="right")) - 1
        with self._lock:
            codes = self._groups.pop(group, None)
            if codes is None:
                codes = read_row_group_column(self._file, self.path, group, "rle")
            self._groups[group] = codes
            while len(self._groups) > RLE_CACHE_GROUPS:
                self._groups.popitem(last=False)
        return codes[row - int(self._starts[group])].as_py()

    def table(self) -> pa.Table:
        """Every column of every row (decoded: for `SegmentIndex.metadata` only)."""
        return read_table(self.path, memory_map=True)


def _finish_checks(
    files: dict[str, Path],
    manifest: dict,
    digests: dict[str, Future],
    vectors: np.ndarray | None,
    ids: np.ndarray,
    norms: bool,
) -> None:
    """Compares the sha256 digests with the manifest, then (with `norms`) checks the stored
    vectors; memory-mapped vectors (or None) are read through a mapping of their own, dropped
    afterwards, so the check leaves the store's mapping untouched (and its RSS low)."""
    for kind, digest in digests.items():
        verify_data_file(files[kind], manifest, kind, digest.result())
    if norms:
        if vectors is None or isinstance(vectors, np.memmap):
            vectors = read_vectors(files["vectors"], mmap=True)
        check_vectors(vectors, files["vectors"], ids)


def _in_background(
    files: dict[str, Path], manifest: dict, digests: dict[str, Future], ids: np.ndarray, norms: bool
) -> Future:
    """Runs `_finish_checks` (on memory-mapped vectors) in a worker thread that yields the CPU to
    searches (`lower_thread_priority`)."""

    def run() -> None:
        lower_thread_priority()
        _finish_checks(files, manifest, digests, None, ids, norms)

    pool = ThreadPoolExecutor(1, "index-verify")
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def verify_index(path: Path, *, upgrade: bool = False) -> dict:
    """Opens an index with every check (`SegmentIndex.open(verify=True)`) and reports the result.

    Args:
        path: index folder.
        upgrade: for a format-1 index (sizes only), record the sha256 of its data files in the
            manifest once every other check has passed (format 2 from then on).

    Returns:
        ``{"path", "format_version", "regions", "checksums", "status": "ok"}``; ``checksums``
        is "verified", "recorded" (upgraded) or "none recorded (format 1)".

    Raises:
        IndexFormatError: the first problem found (one line naming the file).
        IndexBusyError: `upgrade` while a job holds the folder.
    """
    index = SegmentIndex.open(path, use_gpu=False, verify=True)
    index.wait_verified()
    folder, manifest = index.path, index.manifest
    checksums = "verified"
    if manifest["format_version"] < FORMAT_VERSION:
        checksums = "none recorded (format 1); --upgrade records them"
        if upgrade:
            with job_lock(folder):
                if read_manifest(folder)["job_id"] != manifest["job_id"]:
                    raise IndexFormatError(
                        f"{folder}: the index changed while it was verified; retry"
                    )
                files = {kind: dict(entry) for kind, entry in manifest["files"].items()}
                for entry in files.values():
                    entry["sha256"] = file_sha256(folder / entry["name"])
                write_json(
                    folder / MANIFEST_NAME, {**manifest, **manifest_header(), "files": files}
                )
            checksums = "recorded"
    return {
        "path": str(folder),
        "format_version": read_manifest(folder)["format_version"],
        "regions": len(index),
        "checksums": checksums,
        "status": "ok",
    }
