"""Top-k search of one faiss index under an id filter: the engine behind `SegmentIndex.search`."""

from __future__ import annotations

import mmap
import os

import faiss
import numpy as np

from .factory import ivf_of, search_parameters
from .filters import CompiledSelector, IdFilter

RERANK_FACTOR = 4  # candidates fetched per wanted hit when codes are lossy (PQ/SQ)
_GPU_MAX_K = 2048  # faiss GPU search limit on k
MAX_PROBE_SCALE = 2.0  # at most 2x the lists for a filtered search (see `Ranker.top`)


def read_rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[M, D] float32 copy of `rows` of `vectors`.

    Rows of a memory-mapped vector file are read with `os.pread`, not through the mapping:
    faulting scattered rows in maps the neighbouring cached pages too, and 50 clicks' re-ranking
    made a whole 146 MB vector file resident (RSS); pread leaves the mapping untouched.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if not (isinstance(vectors, np.memmap) and isinstance(vectors.base, mmap.mmap)):
        return np.asarray(vectors[rows], dtype=np.float32)
    width = vectors.shape[1] * vectors.dtype.itemsize
    out = np.empty((rows.size, vectors.shape[1]), vectors.dtype)
    buffer = out.reshape(-1).view(np.uint8)
    with open(vectors.filename, "rb", buffering=0) as handle:
        for number, row in enumerate(rows.tolist()):
            if not 0 <= row < vectors.shape[0]:
                raise IndexError(f"row {row} outside [0, {vectors.shape[0]})")
            data = os.pread(handle.fileno(), width, int(vectors.offset) + row * width)
            buffer[number * width : (number + 1) * width] = np.frombuffer(data, np.uint8)
    return out.astype(np.float32, copy=False)


class Ranker:
    """Filtered top-k search over a CPU index (and its optional GPU copy).

    Args:
        index: CPU faiss index (Flat or IVF, see `index.factory`).
        gpu_index: copy of `index` on GPUs, or None.
        sorted_ids: [N] int64 ids of the indexed vectors, ascending.
        vectors: [N, D] float32 stored vectors, rows aligned with `sorted_ids` (used to re-rank).
        rerank: True when the index holds lossy codes and scores must be recomputed exactly.
    """

    def __init__(
        self,
        index: faiss.Index,
        gpu_index: faiss.Index | None,
        sorted_ids: np.ndarray,
        vectors: np.ndarray,
        rerank: bool,
    ) -> None:
        self._index, self._gpu_index = index, gpu_index
        self._ivf = ivf_of(index)
        self._ids, self._vectors, self._rerank = sorted_ids, vectors, rerank

    def top(
        self, query: np.ndarray, fetch: int, id_filter: IdFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `fetch` (ids [M], scores [M]) passing `id_filter`, best first (M < fetch only
        when fewer vectors pass).

        Args:
            query: [1, D] float32 unit vector.
            fetch: number of results wanted.
            id_filter: ids allowed.

        IVF: nprobe is divided by the fraction of vectors passing the filter, at most
        `MAX_PROBE_SCALE` times (a level holding 5 % of the regions gets 2x the lists, not 20x:
        uncapped, coarse levels probed every list; on 10^6 synthetic regions, IVF1024,SQ8, a
        one-per-image k=8 search took 12 ms p50 uncapped, 4 ms capped at 1; recall@10 was 1.0
        uncapped and capped at 1, 2, 4 or 8),
        then doubled until `fetch` hits come back or every list is probed. Lossy codes: RERANK_FACTOR x more candidates are fetched and rescored
        with the stored vectors.
        """
        eligible = id_filter.count(self._ids)
        fetch = min(fetch, eligible)
        if fetch <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        candidates = min(fetch * RERANK_FACTOR, eligible) if self._rerank else fetch
        compiled = CompiledSelector(id_filter)
        nprobe = None
        if self._ivf is not None:
            scale = self._ids.size / eligible
            scale = scale if MAX_PROBE_SCALE is None else min(scale, MAX_PROBE_SCALE)
            scaled = np.ceil(self._ivf.nprobe * scale)
            nprobe = int(min(self._ivf.nlist, scaled))
        while True:
            scores, ids = self._search_once(query, candidates, compiled, nprobe)
            found = ids >= 0
            if found.sum() >= fetch or self._ivf is None or nprobe >= self._ivf.nlist:
                break
            nprobe = min(self._ivf.nlist, nprobe * 2)
        ids, scores = ids[found], scores[found]
        if self._rerank:
            rows = np.searchsorted(self._ids, ids)
            scores = np.asarray(read_rows(self._vectors, rows) @ query[0], dtype=np.float32)
            order = np.argsort(-scores, kind="stable")[:fetch]
            ids, scores = ids[order], scores[order]
        return ids, scores

    def _search_once(
        self, query: np.ndarray, k: int, compiled: CompiledSelector, nprobe: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One faiss search: [k] scores and [k] ids (-1 = none).

        faiss GPU indexes do not apply id selectors (faiss issue #3924), so filtered searches
        always run on the CPU index; the GPU copy serves unfiltered ones.
        """
        if self._gpu_index is not None and compiled.selector is None and k <= _GPU_MAX_K:
            scores, ids = self._gpu_index.search(query, k)
        else:
            params = search_parameters(self._index, compiled.selector, nprobe)
            scores, ids = self._index.search(query, k, params=params)
        return scores[0], ids[0]
