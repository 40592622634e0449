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

    def key(self, image: np.ndarray, cfg) -> str:
        params = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache"}
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes())
        digest.update(json.dumps([image.shape, params, CACHE_VERSION], sort_keys=True).encode())
        return digest.hexdigest()

    def path(self, image: np.ndarray, cfg) -> Path:
        key = self.key(image, cfg)
        return self.root / key[:2] / f"{key}.npy"

    def get(self, image: np.ndarray, cfg) -> np.ndarray | None:
        path = self.path(image, cfg)
        if not path.is_file():
            return None
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            LOG.warning("%s: unreadable cache entry, recomputing (%s)", path, err)
            return None
        if labels.shape != image.shape[:2]:
            LOG.warning("%s: cache entry of the wrong shape, recomputing", path)
            return None
        return labels.astype(np.int32)

    def put(self, image: np.ndarray, cfg, labels: np.ndarray) -> None:
        path = self.path(image, cfg)
        atomic_write(path, lambda fh: np.save(fh, labels.astype(np.int32), allow_pickle=False))
