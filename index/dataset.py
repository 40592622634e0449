"""The image files of a data folder: discovery and content hashes."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def list_images(data_root: Path) -> list[str]:
    """Image files under `data_root`, recursively, as sorted "/"-separated relative paths.

    Suffixes are matched case-insensitively (see `IMAGE_SUFFIXES`). Symbolic links to folders
    are followed, but each real folder is visited once, so link loops end.

    Raises:
        FileNotFoundError: `data_root` is not a folder.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    seen_dirs: set[tuple[int, int]] = set()
    found = []
    for folder, dirnames, filenames in os.walk(root, followlinks=True, onerror=_log_walk_error):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        rel_folder = Path(folder).relative_to(root)
        for name in filenames:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(
                os.path.join(folder, name)
            ):
                found.append((rel_folder / name).as_posix())
    return sorted(found)


def _log_walk_error(err: OSError) -> None:
    LOG.warning("cannot list %s: %s", err.filename, err.strerror)


def file_digest(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
