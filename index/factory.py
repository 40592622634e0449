"""Which faiss index to build, how to fill it, and how to search it with id filters.

Two families are supported, both on inner product over unit vectors (= cosine similarity):

* ``"Flat"``: exact search, ``IndexIDMap2(IndexFlatIP)``. Chosen automatically up to
  `FLAT_MAX_VECTORS` vectors.
* any faiss factory string whose index is an ``IndexIVF`` (``"IVF1024,Flat"``, ``"IVF4096,PQ32"``,
  ``"IVF1024,SQ8"``...). Chosen automatically past the threshold: ``IVF{nlist},Flat`` up to
  `COMPRESSED_MIN_VECTORS`, ``IVF{nlist},SQ8`` (8-bit scalar codes, a quarter of the float32
  size) past it. The coarse quantizer is trained with faiss k-means on a fixed random sample.
  Lossy codes (PQ, SQ) are re-ranked exactly by `SegmentIndex` from the stored float32 vectors,
  memory-mapped (only the candidates' rows are read).

Why SQ8 and not PQ, measured (benchmarks/results/index_scale.json, 10^6 clustered 128-d
regions, level-filtered k=10, nprobe 64 of 1024 lists, 4x candidates re-ranked exactly):
recall@10 against exact search is 0.9995 for IVF1024,SQ8 (as IVF-Flat) but 0.901 for
IVF1024,PQ32, below the 0.95 target; PQ32 codes are 3.4x smaller (41 vs 137 bytes per region)
and its commit took 3x longer (43 vs 15 s, PQ training).

Other index types (HNSW, refine wrappers, pre-transforms) are refused: they either lack
``remove_ids``/``add_with_ids`` or do not pass id selectors through.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

LOG = logging.getLogger(__name__)

FLAT_MAX_VECTORS = 200_000
COMPRESSED_MIN_VECTORS = 1_000_000  # more vectors than this: compressed codes (+ exact re-rank)
COMPRESSED_CODE = "SQ8"  # chosen over PQ32 by recall@10, see the module docstring
FLAT = "Flat"
ADD_CHUNK = 65_536  # vectors per add_with_ids call (the streamed commit adds in the same chunks)
_TRAIN_POINTS_PER_LIST = 40
_SAMPLE_SEED = 0
_PROBE_DIM = 64  # `check_factory` builds an empty index of this many dimensions
_DIM_DEPENDENT = "d % M == 0"  # faiss's message when a PQ does not divide the dimension


def choose_factory(num_vectors: int) -> str:
    """Default factory for `num_vectors`: exact up to `FLAT_MAX_VECTORS`, IVF-Flat up to
    `COMPRESSED_MIN_VECTORS` (1e6 -> "IVF1024,Flat"), IVF with compressed codes past it
    (1e7 -> "IVF4096,SQ8")."""
    if num_vectors <= FLAT_MAX_VECTORS:
        return FLAT
    code = "Flat" if num_vectors <= COMPRESSED_MIN_VECTORS else COMPRESSED_CODE
    return ivf_factory(num_vectors, code)


def ivf_factory(num_vectors: int, code: str = "Flat") -> str:
    """IVF factory with nlist = the power of two nearest to sqrt(num_vectors) (at least 16) and
    `code` as the vector encoding ("Flat", "SQ8", "PQ32"...)."""
    nlist = max(16, 1 << int(round(np.log2(np.sqrt(max(num_vectors, 1))))))
    return f"IVF{nlist},{code}"


def default_nprobe(nlist: int) -> int:
    """Lists probed per query: 1/16 of the lists, at least 16 (at most all of them).

    Measured on clustered 128-d data (benchmarks/bench_index.py): IVF1024 at nprobe 64 scans
    ~6 % of 10^6 vectors in a few ms; searches that come back short double it (see SegmentIndex).
    """
    return int(min(nlist, max(16, nlist // 16)))


def create_index(factory: str, dim: int) -> faiss.Index:
    """An empty index for `factory` (see module docstring).

    Raises:
        ValueError: the factory string is invalid or of an unsupported family.
    """
    if factory.strip() == FLAT:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ValueError(f"invalid faiss factory {factory!r}: {str(err).splitlines()[0]}") from err
    if not isinstance(index, faiss.IndexIVF):  # index_factory returns the most derived type
        raise ValueError(
            f"faiss factory {factory!r} gives {type(index).__name__}; "
            f"use {FLAT!r} or an 'IVF...' factory"
        )
    return index


def check_factory(factory: str | None) -> None:
    """Refuse, before any image is read, a factory string faiss cannot parse or of a refused family.

    Checked on an empty index of `_PROBE_DIM` dimensions: a limit that depends on the vectors'
    dimension (a PQ whose sub-quantizer count must divide it) is checked when the index is built.

    Raises:
        ValueError: the factory string is invalid or of an unsupported family (see `create_index`).
    """
    if factory is None:
        return
    try:
        create_index(factory, _PROBE_DIM)
    except ValueError as err:
        if _DIM_DEPENDENT not in str(err):
            raise


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The index itself when it is an IVF index (CPU), else None.

    faiss's Python layer returns the most derived type from `index_factory` and `read_index`;
    `downcast_index` is avoided on purpose: its proxy does not own the C++ object.
    """
    return index if isinstance(index, faiss.IndexIVF) else None


def needs_rerank(index: faiss.Index) -> bool:
    """True when the index stores lossy codes, so scores must be recomputed exactly."""
    ivf = ivf_of(index)
    return ivf is not None and not isinstance(ivf, faiss.IndexIVFFlat)


def build_faiss_index(vectors: np.ndarray, ids: np.ndarray, factory: str) -> faiss.Index:
    """Creates, trains (IVF) and fills an index.

    Args:
        vectors: [N, D] float32 unit vectors.
        ids: [N] int64 ids.
        factory: see `create_index`.
    """
    index = create_index(factory, vectors.shape[1])
    ivf = ivf_of(index)
    if ivf is not None:
        train_ivf(ivf, vectors)
        ivf.nprobe = default_nprobe(ivf.nlist)
    add_vectors(index, vectors, ids)
    return index


def train_ivf(ivf: faiss.IndexIVF, vectors: np.ndarray) -> None:
    """Trains the coarse quantizer (and codes) with faiss k-means on the rows `training_rows`
    picks from `vectors` ([N, D] float32)."""
    rows = training_rows(vectors.shape[0], ivf.nlist)
    train_on_sample(ivf, np.ascontiguousarray(vectors[rows], dtype=np.float32))


def training_rows(num_vectors: int, nlist: int) -> np.ndarray:
    """[M] sorted int64 rows (of N in id order) that train `nlist` lists: a fixed random sample
    of `_TRAIN_POINTS_PER_LIST` per list (at least 10^4), the same for any way the rows are read.

    Raises:
        ValueError: fewer vectors than lists.
    """
    if num_vectors < nlist:
        raise ValueError(
            f"{num_vectors} vectors cannot train {nlist} IVF lists; "
            f"use fewer lists or the {FLAT!r} factory"
        )
    wanted = max(nlist * _TRAIN_POINTS_PER_LIST, 10_000)
    rng = np.random.default_rng(_SAMPLE_SEED)
    return np.sort(rng.choice(num_vectors, min(wanted, num_vectors), replace=False))


def train_on_sample(ivf: faiss.IndexIVF, sample: np.ndarray) -> None:
    """Trains `ivf` on `sample` ([M, D] float32, contiguous) with faiss k-means.

    Uses the GPUs for training when faiss has any; the trained index stays on the CPU.
    """
    LOG.info("training %d IVF lists on %d vectors", ivf.nlist, sample.shape[0])
    if faiss.get_num_gpus() > 0:
        clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(ivf.d))
        ivf.clustering_index = clustering_index
        ivf.train(sample)
        ivf.clustering_index = None
    else:
        ivf.train(sample)


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    """`add_with_ids` in chunks, so only one chunk is copied at a time."""
    for start in range(0, vectors.shape[0], ADD_CHUNK):
        chunk = np.ascontiguousarray(vectors[start : start + ADD_CHUNK], dtype=np.float32)
        index.add_with_ids(
            chunk, np.ascontiguousarray(ids[start : start + ADD_CHUNK], dtype=np.int64)
        )


def search_parameters(
    index: faiss.Index, selector: faiss.IDSelector | None, nprobe: int | None
) -> faiss.SearchParameters | None:
    """Search parameters carrying an id selector (and nprobe for IVF indexes)."""
    if ivf_of(index) is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=int(nprobe or 1))
    if selector is None:
        return None
    return faiss.SearchParameters(sel=selector)


def to_gpus(index: faiss.Index, use_gpu: bool | None) -> faiss.Index | None:
    """A copy of `index` on all GPUs, or None when running on CPU.

    Args:
        index: CPU index (Flat or IVF).
        use_gpu: None = use GPUs when faiss has any; True = require them; False = CPU only.

    Raises:
        ValueError: `use_gpu` is True but faiss sees no GPU.
    """
    num_gpus = faiss.get_num_gpus()
    if use_gpu is False or (use_gpu is None and num_gpus == 0):
        return None
    if num_gpus == 0:
        raise ValueError(
            "use_gpu=True, but faiss sees no GPU (install faiss-gpu on a CUDA machine)"
        )
    LOG.info("copying the index to %d GPU(s)", num_gpus)
    return faiss.index_cpu_to_all_gpus(index)
