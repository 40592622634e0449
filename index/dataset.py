"""The image files of a data folder: discovery and content hashes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import hsg_files
from hsg_files import file_sha256 as file_digest  # noqa: F401  (index's name for it)

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = hsg_files.IMAGE_SUFFIXES  # one list for index builds, training and `hsg segment`


def list_images(data_root: Path) -> list[str]:
    """Image files under `data_root`, recursively, as sorted "/"-separated relative paths.

    Suffixes are matched case-insensitively (see `IMAGE_SUFFIXES`). Only regular files whose real
    path lies inside `data_root` are listed: a symbolic link inside the folder that points inside
    it is followed (each real folder once, so link loops end); one that leads out of it is
    skipped with a warning, so a link never puts a file from elsewhere in the index
    (`hsg_files.list_image_files`).

    Raises:
        FileNotFoundError: `data_root` is not a folder.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    return hsg_files.list_image_files(root, on_error=_log_walk_error, on_outside=_log_outside(root))


def _log_outside(root: Path) -> Callable[[str], None]:
    """Logs an entry skipped because it is a link that leads out of `root`."""

    def log(rel: str) -> None:
        LOG.warning("%s: skipped, a link that leads out of %s", rel, root)

    return log


def _log_walk_error(err: OSError) -> None:
    LOG.warning("cannot list %s: %s", err.filename, err.strerror)
