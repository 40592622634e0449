"""Segment index: FAISS search over the regions of every hierarchy level of every image.

Imports numpy, faiss, pandas, pyarrow and tqdm only (never torch, gradio or hsg_core): the
model reaches the builder as a callable that maps image paths to predictions.

    build_index(data_root, out_dir, extract, checkpoint_hash=...)   # resumable, shardable
    update_index(...)                                               # new/changed/deleted files
    merge_shards(out_dir)                                           # after a multi-rank build
    index = SegmentIndex.open(out_dir, checkpoint_hash=...)
    index.search(vector, k=20, levels=[1], one_per_image=True)
"""

from .build import build_index, merge_shards, update_index
from .errors import CheckpointMismatchError, IndexFormatError, InvalidPredictionError
from .extraction import Extractor
from .factory import FLAT_MAX_VECTORS, choose_factory
from .store import Hit, SegmentIndex

__all__ = [
    "SegmentIndex",
    "Hit",
    "build_index",
    "update_index",
    "merge_shards",
    "Extractor",
    "IndexFormatError",
    "CheckpointMismatchError",
    "InvalidPredictionError",
    "choose_factory",
    "FLAT_MAX_VECTORS",
]
