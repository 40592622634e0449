"""On-disk cache of oversegmentations, keyed by image content and method parameters."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

LOG = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when an algorithm changes its output


class OversegCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, image: np.ndarray, cfg, kind: str = "labels") -> str:
        """Content hash of the image with what the entry depends on: every parameter for label
        maps, the method alone for edge maps."""
        params = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache"}
        if kind == "edges":
            params = {"method": cfg.method, "kind": kind}
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes())
        digest.update(json.dumps([image.shape, params, CACHE_VERSION], sort_keys=True).encode())
        return digest.hexdigest()

    def path(self, image: np.ndarray, cfg, kind: str = "labels") -> Path:
        key = self.key(image, cfg, kind)
        return self.root / key[:2] / f"{key}.npy"

    def _load(self, path: Path, shape: tuple[int, ...], dtype=None) -> np.ndarray | None:
        """The array at `path` if it is readable, of `shape` (and `dtype`); None otherwise."""
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            LOG.warning("%s: unreadable cache entry, recomputing (%s)", path, err)
            return None
        if array.shape != shape or (dtype is not None and array.dtype != dtype):
            LOG.warning("%s: cache entry of the wrong shape or type, recomputing", path)
            return None
        return array

    def get_edges(self, image: np.ndarray, cfg) -> np.ndarray | None:
        """The cached [H, W] float32 edge map of `image`, or None."""
        edges = self._load(self.path(image, cfg, "edges"), image.shape[:2], np.float16)
        return None if edges is None else edges.astype(np.float32)

    def put_edges(self, image: np.ndarray, cfg, edges: np.ndarray) -> None:
        """Store an edge map (as float16: 2 bytes a pixel)."""
        path = self.path(image, cfg, "edges")
        atomic_write(path, lambda fh: np.save(fh, edges.astype(np.float16), allow_pickle=False))

    def get(self, image: np.ndarray, cfg) -> np.ndarray | None:
        labels = self._load(self.path(image, cfg), image.shape[:2])
        return None if labels is None else labels.astype(np.int32)

    def put(self, image: np.ndarray, cfg, labels: np.ndarray) -> None:
        path = self.path(image, cfg)
        atomic_write(path, lambda fh: np.save(fh, labels.astype(np.int32), allow_pickle=False))
