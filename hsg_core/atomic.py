"""Atomic file writes: a temp file in the target's folder, fsync, rename, fsync the folder.

A reader (or a process restarted after SIGKILL) sees the old file or the new one, never a
partial file. Every file the project writes for keeps (checkpoints, caches, weights, reports,
PNGs, logs) goes through `atomic_write`. (`index/io.py` has its own: `index` never imports
`hsg_core`.)
"""
from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads.
FILE_MODE = 0o666 & ~_read_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_stale_parts(path: str | os.PathLike) -> None:
    """Delete temp files of `path` left by a writer killed mid-write (one writer per path)."""
    path = Path(path)
    for stale in path.parent.glob(glob.escape(path.name) + ".*.part"):
        stale.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(fh)` on a temp file beside `path`, then fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; a written file gets the usual umask-based mode
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
