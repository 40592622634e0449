"""On-disk cache of oversegmentations and edge maps, keyed by image content and method parameters.

The cache holds at most `max_bytes` ($HSG_OVERSEG_CACHE_MB megabytes, default 2048: about 7000 images
of ~300 KB). Each entry's modification time is its last use (set on every write and every hit); when
a write takes the cache over its cap, the least recently used entries are deleted until it holds 90%
of the cap. Several processes may share one cache: entries are written by rename, a reader that loses
an entry to another process's eviction just recomputes it, and nothing raises because a file vanished.
Each process rescans the folder when its own writes would take the total it last measured over the
cap, so with N writers the folder can exceed the cap by at most (N - 1) x 10% of it between scans.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from hsg_files import atomic_write

LOG = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when an algorithm changes its output
CACHE_MB_ENV = "HSG_OVERSEG_CACHE_MB"
DEFAULT_CACHE_MB = 2048
LOW_WATER = 0.9  # an eviction leaves the cache at this fraction of its cap


def cache_cap_bytes() -> int:
    """The cache's cap in bytes: $HSG_OVERSEG_CACHE_MB megabytes (a positive number), else 2048 MB."""
    raw = os.environ.get(CACHE_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_MB << 20
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = 0.0
    if not 0 < megabytes < float("inf"):
        raise ValueError(f"{CACHE_MB_ENV}={raw!r}: expected a positive number of megabytes")
    return int(megabytes * (1 << 20))


def _touch(path: Path) -> None:
    """Mark `path` as just used (nanosecond time: file systems stamp writes only to the clock tick)."""
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except (
        OSError
    ):  # evicted meanwhile by another process, or a read-only cache: only the order suffers
        pass


class OversegCache:
    def __init__(self, root: str | Path, max_bytes: int | None = None) -> None:
        """A cache in `root` holding at most `max_bytes` (default: `cache_cap_bytes()`)."""
        self.root = Path(root)
        self.max_bytes = cache_cap_bytes() if max_bytes is None else int(max_bytes)
        self._believed: int | None = (
            None  # bytes on disk at this process's last scan, plus its writes since
        )
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Pickled without its lock (DataLoader workers started by spawn get a copy)."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def key(self, image: np.ndarray, cfg, kind: str = "labels") -> str:
        """Content hash of the image with what the entry depends on: every parameter for label
        maps, the method alone for edge maps."""
        params = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "cache"}
        if not params.get("ucm_floor"):  # no floor: the keys written before the field existed
            params.pop("ucm_floor", None)
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
        except FileNotFoundError:  # evicted by another process since is_file()
            return None
        except (OSError, ValueError) as err:
            LOG.warning("%s: unreadable cache entry, recomputing (%s)", path, err)
            return None
        if array.shape != shape or (dtype is not None and array.dtype != dtype):
            LOG.warning("%s: cache entry of the wrong shape or type, recomputing", path)
            return None
        _touch(path)
        return array

    def _store(self, path: Path, array: np.ndarray) -> None:
        """Write `array` to `path` atomically as the most recently used entry, then keep the cap."""
        atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))
        _touch(path)
        try:
            size = path.stat().st_size
        except OSError:  # already evicted by another process
            size = 0
        with self._lock:
            if self._believed is None or self._believed + size > self.max_bytes:
                self._believed = self.evict()
            else:
                self._believed += size

    def _entries(self) -> list[tuple[int, int, str]]:
        """(last use in ns, size, path) of every entry; files vanishing during the scan are skipped."""
        entries = []
        try:
            folders = [e.path for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        for folder in folders:
            try:
                with os.scandir(folder) as listing:
                    listed = list(listing)
            except OSError:
                continue
            for entry in listed:
                try:
                    if entry.name.endswith(".npy") and entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
                except OSError:  # evicted meanwhile by another process
                    continue
        return entries

    def evict(self) -> int:
        """Delete least recently used entries until the cache holds at most 90% of its cap, if it holds more
        than the cap; returns the bytes left. Safe against other processes evicting at the same time."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return total
        target = int(self.max_bytes * LOW_WATER)
        for _, size, path in sorted(entries):
            if total <= target:
                break
            try:
                os.unlink(path)
            except (
                FileNotFoundError
            ):  # another process evicted it first: its bytes are gone all the same
                pass
            except OSError as err:
                LOG.warning("%s: cannot evict cache entry (%s)", path, err)
                continue
            total -= size
        return total

    def get_edges(self, image: np.ndarray, cfg) -> np.ndarray | None:
        """The cached [H, W] float32 edge map of `image`, or None."""
        edges = self._load(self.path(image, cfg, "edges"), image.shape[:2], np.float16)
        return None if edges is None else edges.astype(np.float32)

    def put_edges(self, image: np.ndarray, cfg, edges: np.ndarray) -> None:
        """Store an edge map (as float16: 2 bytes a pixel)."""
        self._store(self.path(image, cfg, "edges"), edges.astype(np.float16))

    def get(self, image: np.ndarray, cfg) -> np.ndarray | None:
        labels = self._load(self.path(image, cfg), image.shape[:2])
        return None if labels is None else labels.astype(np.int32)

    def put(self, image: np.ndarray, cfg, labels: np.ndarray) -> None:
        self._store(self.path(image, cfg), labels.astype(np.int32))
