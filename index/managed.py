"""Open an index, or build or update it: the one helper the app, the CLI, benchmarks and evaluation share.

    index = open_or_build(data_root, index_dir, extract, checkpoint_hash=..., managed=True)
    info = build_or_update(data_root, index_dir, extract, checkpoint_hash=...)   # resumable
    index = open_relocated(index_dir, data_root, checkpoint_hash=...)           # a shipped index

`extract` is the model as a callable (see `index.extraction.Extractor`); nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .build import build_index, clear_index, update_index
from .dataset import file_digest, list_images
from .errors import DataRootMismatchError, IndexFormatError
from .extraction import Extractor
from .io import MANIFEST_NAME
from .store import SegmentIndex

LOG = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def managed_index_dir(
    index_root: Path, folder: Path, checkpoint_hash: str, *, built: bool = False
) -> Path:
    """Cache folder of an index managed for `folder` and a checkpoint.

    Named after the folder's real path (hashed) as well as its name, so two folders never share an
    index; indexes built from the explorer's Index tab (`built`) live under `built/`, apart from the
    startup index, so a web user's build can never rewrite it.
    """
    real = os.path.realpath(folder)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:12]
    name = f"{Path(real).name}-{digest}-{checkpoint_hash[:12]}"
    return Path(index_root) / "built" / name if built else Path(index_root) / name


def build_or_update(
    data_root: Path,
    index_dir: Path,
    extract: Extractor,
    *,
    checkpoint_hash: str,
    update: bool = True,
    **options,
) -> dict:
    """Update the index in `index_dir` when one is there (and `update`), else build it; resumable.

    `options` go to `build_index`/`update_index` (batch_size, progress, should_stop, factory).
    Returns the job's summary (its "status" is "complete" when the index is ready).
    """
    run = update_index if update and (Path(index_dir) / MANIFEST_NAME).exists() else build_index
    return run(
        Path(data_root), Path(index_dir), extract, checkpoint_hash=checkpoint_hash, **options
    )


def open_or_build(
    data_root: Path | None,
    index_dir: Path,
    extract: Extractor,
    *,
    checkpoint_hash: str,
    managed: bool = False,
    progress: Progress | None = None,
    batch_size: int = 4,
    note: Callable[[str], None] = LOG.info,
) -> SegmentIndex:
    """Open the index at `index_dir` when it matches the checkpoint and `data_root`; else build it.

    A damaged or mismatched index is rebuilt only when it is `managed` (a cache folder named by
    `managed_index_dir`); one the user gave is refused with its error and left untouched.

    Args:
        data_root: the image folder; None accepts the index's own folder (then it must exist).
        progress: (done, total) callback of a build; None shows a terminal bar.
        note: told, in one line, what is happening (opening, rebuilding, building).

    Raises:
        IndexFormatError: an index that is not `managed` does not open (the message says why).
        FileNotFoundError: no index there and no `data_root` to build one from.
    """
    if (Path(index_dir) / MANIFEST_NAME).exists():
        try:
            note(f"opening the index {index_dir}")
            return SegmentIndex.open(
                index_dir, checkpoint_hash=checkpoint_hash, data_root=data_root
            )
        except IndexFormatError as err:
            if not managed:
                raise
            note(f"rebuilding the index ({str(err).strip()})")
            clear_index(Path(index_dir))
    if data_root is None:
        raise FileNotFoundError(f"{index_dir}: no index there; give --data to build one")
    note(f"indexing {data_root} into {index_dir}")
    build_index(
        Path(data_root),
        Path(index_dir),
        extract,
        checkpoint_hash=checkpoint_hash,
        batch_size=batch_size,
        progress=progress,
    )
    return SegmentIndex.open(index_dir, checkpoint_hash=checkpoint_hash, data_root=data_root)


def open_relocated(index_dir: Path, data_root: Path, *, checkpoint_hash: str) -> SegmentIndex:
    """Open an index that was built over another copy of `data_root` (one shipped with the code).

    Accepted when it was built with the checkpoint and `data_root` holds exactly its images with the
    same bytes (sha256); the opened index then reads its images from `data_root`.

    Raises:
        IndexFormatError: damaged, or built with another checkpoint.
        DataRootMismatchError: `data_root` does not hold the indexed images unchanged.
    """
    index = SegmentIndex.open(index_dir, checkpoint_hash=checkpoint_hash)
    frame = index.metadata.drop_duplicates("image")
    recorded = dict(zip(frame["image"], frame["image_hash"]))
    present = list_images(Path(data_root))
    if sorted(recorded) != present or any(
        file_digest(Path(data_root) / n) != h for n, h in recorded.items()
    ):
        raise DataRootMismatchError(
            f"{index_dir}: does not index the images of {data_root} as they are now"
        )
    index.data_root = Path(data_root)
    return index
