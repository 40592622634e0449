"""Atomic file writes for `hsg_core`: the project's one helper, `hsg_files`, re-exported.

A reader (or a process restarted after SIGKILL) sees the old file or the new one, never a
partial file. Every file the project writes for keeps (checkpoints, caches, weights, reports,
PNGs, logs, index files) goes through `hsg_files.atomic_write`; `index/io.py` imports the same
module (it never imports `hsg_core`).
"""
from __future__ import annotations

from hsg_files import (
    FILE_MODE,
    atomic_write,
    atomic_write_path,
    atomic_write_text,
    fsync_dir,
    remove_stale_parts,
)

__all__ = ["FILE_MODE", "atomic_write", "atomic_write_path", "atomic_write_text", "fsync_dir",
           "remove_stale_parts"]
