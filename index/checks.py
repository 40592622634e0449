"""Content checks of index data: checksums, ids, vector norms and finiteness.

Run at commit (before a generation is written) and at open (before a generation is searched), so
damage to a shard, a data file or the faiss codes is refused with one line naming the file,
instead of changing search results silently.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from hsg_files import file_sha256

from .errors import IndexFormatError
from .factory import ivf_of

NORM_TOLERANCE = 1e-3  # stored vectors are unit vectors (float32 rounding is ~1e-7)
_BLOCK = 1 << 22  # bytes hashed per read
_ROWS = 1 << 16  # vectors checked per chunk (bounded temporary memory)


def bytes_sha256(data: bytes | memoryview) -> str:
    """sha256 hex digest of bytes in memory."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(path: Path, actual: str, recorded: str, what: str, advice: str) -> None:
    """Refuses a file whose content hash differs from the recorded one.

    Raises:
        IndexFormatError: one line naming `path`, ending with `advice`.
    """
    if actual != recorded:
        raise IndexFormatError(
            f"{path}: {what} is damaged: its content does not match the recorded checksum "
            f"(sha256 {actual[:12]}..., recorded {recorded[:12]}...); {advice}"
        )


def lower_thread_priority() -> None:
    """Lets the calling thread run only when the process's other threads leave a core idle
    (Linux: nice 19 for this thread alone; elsewhere nothing changes)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def _quiet_sha256(path: Path) -> str:
    lower_thread_priority()
    return file_sha256(path)


def hash_in_background(
    paths: dict[str, Path], workers: int = 2, low_priority: bool = False
) -> dict[str, Future]:
    """Starts hashing `paths` (by kind) in worker threads; returns a future digest per kind.
    With `low_priority` the threads yield the CPU to searches (`lower_thread_priority`)."""
    pool = ThreadPoolExecutor(max(1, min(workers, len(paths))), "index-sha256")
    work = _quiet_sha256 if low_priority else file_sha256
    futures = {kind: pool.submit(work, path) for kind, path in paths.items()}
    pool.shutdown(wait=False)
    return futures


def check_vectors(vectors: np.ndarray, path: Path, ids: np.ndarray | None = None) -> None:
    """Refuses vectors that are not finite or not of unit norm (within `NORM_TOLERANCE`).

    Args:
        vectors: [N, D] float32 (may be memory-mapped; read in chunks, ~0.05 s per 10^6 x 128).
        path: file the vectors come from, named in the error.
        ids: [N] region ids of the rows, named in the error when given.

    Raises:
        IndexFormatError: one line naming `path`, the first bad row (and its region id) and its norm.
    """
    for start in range(0, vectors.shape[0], _ROWS):
        chunk = np.asarray(vectors[start : start + _ROWS], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            squared = np.einsum("ij,ij->i", chunk, chunk)
            bad = ~(np.abs(squared - 1.0) <= 2 * NORM_TOLERANCE)  # NaN compares False: bad
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            which = f"region id {int(ids[row])}" if ids is not None else f"row {row}"
            values = np.asarray(vectors[row], dtype=np.float64)
            state = (
                f"norm {np.linalg.norm(values):.6g}"
                if np.isfinite(values).all()
                else "values that are not finite"
            )
            raise IndexFormatError(
                f"{path}: {which} has {state}; stored vectors must be finite unit vectors"
            )


def faiss_ids(index: faiss.Index) -> np.ndarray:
    """[N] int64 ids held by a Flat (IndexIDMap) or IVF index, in storage order."""
    blocks = [ids for ids, _ in _faiss_blocks(index, codes=False)]
    return np.concatenate(blocks).astype(np.int64, copy=False) if blocks else np.zeros(0, np.int64)


def _faiss_blocks(
    index: faiss.Index, codes: bool
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(ids [n], float32 vectors [n, D] or None) per storage block: the whole Flat index, or each
    non-empty IVF list. Vectors only for Flat and IVF-Flat codes (others are lossy: None)."""
    ivf = ivf_of(index)
    if ivf is None:
        ids = faiss.vector_to_array(index.id_map)
        inner = faiss.downcast_index(index.index) if codes else None
        flat = None
        if isinstance(inner, faiss.IndexFlat) and inner.ntotal:
            flat = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(-1, inner.d)
        yield ids, flat
        return
    lists = ivf.invlists
    plain = codes and isinstance(ivf, faiss.IndexIVFFlat)
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(lists.get_ids(number), size)
        vectors = None
        if plain:
            raw = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size)
            vectors = raw.view(np.float32).reshape(size, ivf.d)
        yield ids, vectors


def check_faiss(index: faiss.Index, sorted_ids: np.ndarray, path: Path, norms: bool = True) -> None:
    """Refuses a faiss index whose ids are not exactly the metadata ids, or (with `norms`) whose
    stored vectors (Flat and IVF-Flat codes) are not finite unit vectors.

    Args:
        index: CPU faiss index.
        sorted_ids: [N] int64 metadata ids, ascending.
        path: the faiss file, named in the error.
        norms: also check the stored vectors.
    """
    held = faiss_ids(index)
    order = np.argsort(held, kind="stable")
    if held.size != sorted_ids.size or not np.array_equal(held[order], sorted_ids):
        missing = np.setdiff1d(sorted_ids, held)
        extra = np.setdiff1d(held, sorted_ids)
        detail = (
            f"id {int(extra[0])} is not in the metadata"
            if extra.size
            else f"metadata id {int(missing[0])} is missing"
            if missing.size
            else "an id is held twice"
        )
        raise IndexFormatError(f"{path}: the faiss ids differ from the metadata ids ({detail})")
    if norms:
        for ids, vectors in _faiss_blocks(index, codes=True):
            if vectors is not None:
                check_vectors(vectors, path, ids)
