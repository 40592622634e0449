"""Segment index: FAISS search over the regions of every hierarchy level of every image.

Imports numpy, faiss, pandas, pyarrow, tqdm and the project's standard-library helper `hsg_files`
only (never torch, gradio or hsg_core): the model reaches the builder as a callable that maps image
paths to predictions.

    build_index(data_root, out_dir, extract, checkpoint_hash=...)   # resumable, shardable
    update_index(...)                                               # new/changed/deleted files
    merge_shards(out_dir)                                           # after a multi-rank build
    discard_pending(out_dir)                                        # drop an unfinished job
    index = SegmentIndex.open(out_dir, checkpoint_hash=...)          # verified: sha256, ids, norms
    verify_index(out_dir)                                           # the same, as a report
    index.search(vector, k=20, levels=[1], one_per_image=True)
"""

from .build import build_index, clear_index, discard_pending, merge_shards, update_index
from .errors import (
    CheckpointMismatchError,
    DataRootMismatchError,
    IndexBusyError,
    IndexFormatError,
    InvalidPredictionError,
)
from .extraction import Extractor
from .factory import FLAT_MAX_VECTORS, choose_factory
from .store import Hit, SegmentIndex, verify_index

__all__ = [
    "SegmentIndex",
    "verify_index",
    "Hit",
    "build_index",
    "update_index",
    "merge_shards",
    "discard_pending",
    "clear_index",
    "Extractor",
    "IndexFormatError",
    "CheckpointMismatchError",
    "DataRootMismatchError",
    "IndexBusyError",
    "InvalidPredictionError",
    "choose_factory",
    "FLAT_MAX_VECTORS",
]
