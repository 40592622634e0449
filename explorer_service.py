"""What every explorer session shares, and how sessions start: the allowed data folders, the
`Explorer` (model, startup index, indexes built in the Index tab), index jobs, opening an image or an
upload into a new `Session`, and the startup of the whole explorer.

Gradio-free, as `explorer.py` (the per-session operations: select, search, render), which it builds
on; `app.py` wires both into Blocks.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer import Session, indexed_name, one_line, require_inside, set_image
from hsg_files import file_sha256, is_inside
from serve_options import DEFAULT_IMAGES, NOTE, SHIPPED_INDEX

if TYPE_CHECKING:
    from hsg_core.predictor import HSGPredictor
    from index import SegmentIndex

MAX_EXAMPLES = 48  # example thumbnails shown from the data folder
MAX_BUILT_INDEXES = (
    4  # indexes built in the Index tab kept open (least recently searched closed; reopened on use)
)


# ----------------------------------------------------------------------------- folders
def resolve_folder(text: str, roots: list[Path]) -> Path:
    """A folder typed in the UI, accepted only inside one of the allowed data roots.

    Raises:
        ValueError: empty, outside every root, or not a folder.
    """
    if not text.strip():
        raise ValueError("give a folder")
    path = Path(text).expanduser().resolve()
    if not any(is_inside(path, root) for root in roots):
        raise ValueError(
            f"{text}: outside the allowed data roots ({', '.join(str(r) for r in roots)})"
        )
    if not path.is_dir():
        raise ValueError(f"{text}: not a folder")
    return path


def example_images(data: Path) -> list[Path]:
    """The first `MAX_EXAMPLES` images of the data folder (`list_images`: never a link out of it)."""
    from hsg_core.images import list_images

    return list_images(data)[:MAX_EXAMPLES]


# ----------------------------------------------------------------------------- what sessions share
class IndexJob:
    """The index build of one session, cancellable from the UI (a plain class: gradio deep-copies
    State values per session and serialises dataclasses, neither of which an Event survives)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __deepcopy__(self, memo: dict) -> IndexJob:
        return IndexJob()


@dataclass
class Explorer:
    """What every session shares: the model, the startup index, and the indexes built in the Index tab
    (each session searches its own choice, `Session.index_path`; see `index_of`)."""

    predictor: HSGPredictor
    index: SegmentIndex | None
    examples: list[Path]
    data_roots: list[Path]
    index_root: Path
    built: dict = field(default_factory=dict)  # path -> SegmentIndex, least recently searched first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def index_of(self, session: Session) -> SegmentIndex | None:
        """The index `session` searches: the startup index, or the one it built (reopened when closed)."""
        if not session.index_path:
            return self.index
        with self.lock:
            index = self.built.pop(session.index_path, None)
        if index is None:
            from index import SegmentIndex

            index = SegmentIndex.open(
                session.index_path, checkpoint_hash=self.predictor.checkpoint_hash
            )
        return self.keep_built(Path(session.index_path), index)

    def keep_built(self, path: Path, index: SegmentIndex) -> SegmentIndex:
        """Keep `index` (built at `path`) open as the most recently used; close the oldest beyond
        MAX_BUILT_INDEXES. Returns `index`."""
        with self.lock:
            self.built.pop(str(path), None)
            self.built[str(path)] = index
            while len(self.built) > MAX_BUILT_INDEXES:
                self.built.pop(next(iter(self.built)))
        return index


def index_extractor(predictor: HSGPredictor) -> Callable:
    """The predictor as the index builder's extractor, in its input frame (as uploads are read)."""
    from hsg_core.predictor import make_extractor

    return make_extractor(predictor)


def open_upload(app: Explorer, image: str | Path | np.ndarray, index_path: str = "") -> Session:
    """A new upload: a file path, read by the project's loader (`load_image`: a decompression bomb is
    refused from its header, one line), or an RGB array. A file whose bytes are indexed is excluded
    from its own hits."""
    image_hash = ""
    if not isinstance(image, np.ndarray):
        image_hash = file_sha256(Path(image))
        image = app.predictor.read_image(image)
    session = set_image(app.predictor, image)
    session.index_path, session.image_hash = index_path, image_hash
    session.source = indexed_name(app.index_of(session), image_hash)
    return session


def open_image(
    app: Explorer, path: Path, roots: list[Path] | None = None, index_path: str = ""
) -> Session:
    """Open an image file; an image of the index is excluded from its own hits.

    roots: when given, the file must lie inside one of them (`require_inside`), links resolved.
    index_path: the index the session searches (`Session.index_path`), kept by the new session.
    """
    if roots is not None:
        require_inside(path, roots)
    source = ""
    index = app.index_of(Session(index_path=index_path))
    if index is not None and Path(path).resolve().is_relative_to(index.data_root.resolve()):
        source = Path(path).resolve().relative_to(index.data_root.resolve()).as_posix()
    new = set_image(app.predictor, app.predictor.read_image(path), source=source)
    new.index_path, new.image_hash = index_path, file_sha256(Path(path))
    return new


def index_folder(
    app: Explorer,
    folder_text: str,
    mode: str,
    job: IndexJob,
    session: Session,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict, Session]:
    """Build or update (`mode`) the index of a folder inside the allowed roots; resumable, cancellable.

    The finished index becomes the one `session` searches (other sessions keep theirs). Returns the
    job's summary (or the index's info when complete) and the session.
    """
    from index.managed import build_or_update, managed_index_dir
    from index_tab import UI_SHARD_IMAGES

    folder = resolve_folder(folder_text, app.data_roots)
    out = managed_index_dir(app.index_root, folder, app.predictor.checkpoint_hash, built=True)
    job.stop.clear()
    info = build_or_update(
        folder,
        out,
        index_extractor(app.predictor),
        checkpoint_hash=app.predictor.checkpoint_hash,
        update=mode == "update",
        batch_size=4,
        shard_images=UI_SHARD_IMAGES,  # Cancel keeps every finished shard of this many images
        progress=progress,
        should_stop=job.stop.is_set,
    )
    if info.get("status") != "complete":
        return info, session
    from index import SegmentIndex

    opened = SegmentIndex.open(out, checkpoint_hash=app.predictor.checkpoint_hash, data_root=folder)
    built = app.keep_built(out, opened)
    # hits of the previous index mean nothing in this one
    session.index_path, session.hits = str(out), []
    session.query_hit = session.context = None
    session.source = indexed_name(
        built, session.image_hash
    )  # the open image, if this index holds it
    return built.info(), session


# ----------------------------------------------------------------------------- startup
def say(message: str) -> None:
    """Tell the terminal what the explorer is doing while it starts."""
    print(f"{NOTE}{message}", file=sys.stderr, flush=True)


def startup_index(
    predictor: HSGPredictor,
    data: Path | None,
    index_dir: str | None,
    index_root: Path,
    note: Callable[[str], None] = say,
) -> SegmentIndex:
    """The index the explorer starts with: the one given (`index_dir`), the shipped demo index when it
    matches the checkpoint and the demo images, else one opened or built in the cache for `data`."""
    from index import IndexFormatError
    from index.managed import managed_index_dir, open_or_build, open_relocated

    extract, digest = index_extractor(predictor), predictor.checkpoint_hash
    if index_dir:
        return open_or_build(data, Path(index_dir), extract, checkpoint_hash=digest, note=note)
    if data == DEFAULT_IMAGES.resolve() and (SHIPPED_INDEX / "manifest.json").exists():
        try:
            note(f"opening the shipped demo index {SHIPPED_INDEX}")
            return open_relocated(SHIPPED_INDEX, data, checkpoint_hash=digest)
        except IndexFormatError as err:
            note(f"the shipped demo index does not fit ({one_line(err)}): using the cache")
    cached = managed_index_dir(index_root, data, digest)
    return open_or_build(data, cached, extract, checkpoint_hash=digest, managed=True, note=note)


def open_explorer(
    checkpoint: str,
    device: str,
    data: str | None,
    index_dir: str | None,
    extra_roots: list[str],
    note: Callable[[str], None] = say,
) -> Explorer:
    """Load the model, open (or build) the startup index, list the examples; `note` tells each step.

    data: image folder; None = the demo images, or with `index_dir` the folder that index covers.
    """
    from hsg_core.predictor import load_predictor
    from hsg_core.weights import cache_dir

    note(f"loading the model {checkpoint}")
    predictor = load_predictor(checkpoint, device)
    folder = Path(data).resolve() if data else None
    if folder is None and not index_dir:
        folder = DEFAULT_IMAGES.resolve()
    index_root = cache_dir() / "indexes"
    index = startup_index(predictor, folder, index_dir, index_root, note)
    folder = folder or index.data_root
    return Explorer(
        predictor, index, example_images(folder), [folder, *map(Path, extra_roots)], index_root
    )
