"""The Index tab's policy, gradio-free: which folders one may index, how an index is described,
how long a running job has left.

`app.py` shows these; `explorer_service.index_folder` runs the job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hsg_files import escape_controls, is_image_name

UI_SHARD_IMAGES = 8  # images per committed shard in UI jobs: Cancel loses at most this much work
MAX_FOLDER_CHOICES = 200  # folders listed in the picker
MAX_FOLDER_DEPTH = 3  # below a data root


def count_images(folder: Path) -> int:
    """Images directly inside `folder` (not below; links are not followed)."""
    try:
        with os.scandir(folder) as entries:
            return sum(
                1 for e in entries if e.is_file(follow_symlinks=False) and is_image_name(e.name)
            )
    except OSError:
        return 0


def folder_choices(roots: list[Path], max_depth: int = MAX_FOLDER_DEPTH) -> list[tuple[str, str]]:
    """(label, path) of every folder under the allowed `roots` (the roots included, down to
    `max_depth`, never through a link) that holds images below it, with its image count; at most
    MAX_FOLDER_CHOICES, shallowest first. Labels: '<path> (<n> images)'."""
    found: list[tuple[int, str, int]] = []  # (depth, path, images below)
    for root in roots:
        below: dict[Path, int] = {}
        for current, dirs, _ in os.walk(root, followlinks=False):
            here = Path(current)
            depth = len(here.relative_to(root).parts)
            if depth >= max_depth:
                dirs.clear()
            dirs.sort()
            below[here] = count_images(here)
        for folder in sorted(below, key=lambda p: len(p.parts), reverse=True):
            if folder != root and folder.parent in below:
                below[folder.parent] += below[folder]
        found += [(len(p.relative_to(root).parts), str(p), n) for p, n in below.items() if n]
    found.sort(key=lambda item: (item[0], item[1]))
    return [
        (f"{escape_controls(path)} ({n:,} image{'s' * (n != 1)})", path)
        for _, path, n in found[:MAX_FOLDER_CHOICES]
    ]


def human_bytes(size: int) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as file managers show disk sizes)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def info_rows(info: dict) -> list[list[str]]:
    """An index's `info()` or a job's summary as (what, value) rows for people (no server paths
    beyond the data folder the user chose)."""
    if not info:
        return [["index", "none yet: pick a folder and press Build"]]
    status = info.get("status", "complete")
    if status != "complete":
        done, total = info.get("images_done", 0), info.get("images_total", 0)
        return [
            ["status", f"{status}: {done:,} of {total:,} images done"],
            ["next", "Update (or Build) continues from there; finished shards are kept"],
        ]
    per_level = " · ".join(f"L{i} {n:,}" for i, n in enumerate(info.get("per_level", [])))
    factory = info.get("factory", "")
    search = "exact (flat)" if factory == "Flat" else f"{factory}, nprobe {info.get('nprobe')}"
    rows = [
        ["status", "complete"],
        ["folder", escape_controls(str(info.get("data_root", "")))],
        ["images", f"{info.get('images', 0):,} ({info.get('skipped', 0):,} skipped)"],
        ["regions", f"{info.get('regions', 0):,} ({per_level})"],
        ["levels", str(info.get("num_levels", ""))],
        [
            "search",
            f"{search}; {info.get('dim')}-d vectors; GPU: {'yes' if info.get('gpu') else 'no'}",
        ],
        ["size on disk", human_bytes(int(info.get("size_bytes", 0)))],
        ["model", str(info.get("checkpoint_hash", ""))[:12]],
        ["built / updated", f"{info.get('created', '')} / {info.get('updated', '')}"],
        ["generation", f"{info.get('generation', '')} (1 = built, +1 per update)"],
    ]
    return rows


def format_duration(seconds: float) -> str:
    """75 -> '1 min 15 s'; 4000 -> '1 h 7 min'; under a minute in seconds."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@dataclass
class Eta:
    """Time left of a job from its rate in this run (images done before it started do not count).

    `update(done, total)` -> text such as '12 of 40 images, about 1 min 15 s left'.
    """

    clock: Callable[[], float] = time.monotonic
    start: tuple[float, int] | None = field(default=None)

    def update(self, done: int, total: int) -> str:
        now = self.clock()
        if self.start is None:
            self.start = (now, done)
        started_at, started_done = self.start
        text = f"{done:,} of {total:,} images"
        rate = (done - started_done) / max(now - started_at, 1e-9)
        if done > started_done and total > done:
            text += f", about {format_duration((total - done) / rate)} left"
        return text
