"""HSG Explorer: a Gradio front end over an `HSGPredictor` and a `SegmentIndex`.

`python app.py` opens the embedded default (assets/: demo photos + the demo checkpoint; the
demo index is built into the cache on first launch). Handlers are plain functions over
`Prediction` and `SegmentIndex`, testable without a browser; `build_demo` only lays out and wires.
Per-user state lives in `gr.State` (a `Session`); model calls are queued one at a time.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from hsg_files import atomic_write  # noqa: E402
from hsg_core.images import check_rgb, load_image  # noqa: E402
from hsg_core.types import Prediction  # noqa: E402
from hsg_core.viz import highlight, outlined_crop, overlay_regions, palette  # noqa: E402
from hsg_files import escape_controls, is_inside  # noqa: E402

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "checkpoint" / "hsg_demo.pt"
DEFAULT_IMAGES = ASSETS / "demo_images"
MAX_EXAMPLES = 48  # example thumbnails shown from the data folder
MAX_SIDE = 1024  # uploads are downscaled to this longer side before the model sees them
MAX_UPLOAD = "25mb"  # gradio refuses larger uploads
MAX_SESSIONS = 64  # sessions whose state (image + hierarchy, up to ~20 MB) is kept; least recent dropped
SESSION_TTL_S = 3600  # a session's state is dropped this long after its last change
CACHE_TTL_S = 3600  # uploaded files in gradio's cache and export zips are deleted after this long
CACHE_SWEEP_S = 600  # gradio looks for cache files older than CACHE_TTL_S this often (delete_cache)
UPLOAD_ENV = "HSG_UPLOAD_MB_PER_HOUR"  # bytes all clients together may upload per hour (see UploadBudget)
UPLOAD_MB_PER_HOUR = 1024  # its default: with the TTL, gradio's upload folder holds ~1.4 GB at most
MAX_QUEUE = 32  # requests waiting for a worker; more are refused at once ("queue full"), not held in memory
AUTH_ENV = "HSG_AUTH"  # "user:password": require this login (or give --auth-file)
MAX_BUILT_INDEXES = 4  # indexes built in the Index tab kept open (least recently searched closed; reopened on use)


@dataclass
class Session:
    """What one browser tab has: its image, its hierarchy, its selection (deep-copyable)."""

    image: np.ndarray | None = None
    prediction: Prediction | None = None
    source: str = ""  # relative path in the index, when the image came from it
    selected: tuple[int, int] | None = None  # (level, region)
    hits: list = field(default_factory=list)  # the Hits shown in the gallery, in order
    index_path: str = ""  # the index this tab searches: one it built in the Index tab, or "" (the startup index)


# ----------------------------------------------------------------------------- handlers
def one_line(err: BaseException) -> str:
    """An error's message on one line, control characters escaped (`hsg_files.escape_controls`: a
    file name cannot forge a line or send terminal escapes), or its type's name when it has none."""
    return escape_controls(str(err).strip()) or type(err).__name__


def private_dirs() -> list[str]:
    """Server folders whose paths web users are not shown: gradio's upload cache, the hsg cache
    (indexes, overseg maps, weights) and the temp folder of export zips."""
    from gradio.utils import get_upload_folder

    from hsg_core.weights import cache_dir

    folders = [get_upload_folder(), str(cache_dir()), str(Path(tempfile.gettempdir()) / "hsg-exports")]
    return sorted({os.path.realpath(f) for f in folders} | set(folders), key=len, reverse=True)


def public_message(err: BaseException) -> str:
    """`one_line(err)` for a web user: a path inside a `private_dirs` folder is shown by its file name."""
    message = one_line(err)
    for folder in private_dirs():
        message = re.sub(re.escape(folder.rstrip(os.sep)) + r"/(?:[^/\s:]*/)*", "", message)
    return message


def user_errors(handler):
    """Show bad input (a ValueError/OSError naming the file or value) as its one-line message in the UI."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (ValueError, OSError) as err:
            raise gr.Error(public_message(err)) from err

    return wrapped


def render(session: Session, level: int, opacity: float = 0.45, boundaries_only: bool = False) -> np.ndarray | None:
    """The image with the regions of `level` overlaid (and the selected region highlighted)."""
    if session.prediction is None:
        return None
    level = clamp_level(session, level)
    labels = session.prediction.levels[level].label_map
    out = overlay_regions(session.image, labels, alpha=opacity, fill=not boundaries_only)
    if session.selected is not None:
        sel_level, region = session.selected
        chain = session.prediction.ancestors(sel_level, region)
        if level >= sel_level:
            out = highlight(out, labels == chain[level - sel_level], dim=0.35)
    return out


def clamp_level(session: Session, level: int) -> int:
    return int(min(max(int(level), 0), session.prediction.num_levels - 1))


def set_image(predictor, image: np.ndarray, source: str = "") -> Session:
    """Run the model once on a new image; slider moves and clicks then only index this."""
    image = check_rgb(image, "uploaded image")
    from hsg_core.images import downscale_to

    image = downscale_to(image, MAX_SIDE)
    return Session(image=image, prediction=predictor.predict(image), source=source)


def chain_rows(session: Session, x: int, y: int) -> list[list]:
    """One row per level for the regions containing pixel (x, y): level, region, area, share, parent."""
    pred = session.prediction
    total = pred.image_size[0] * pred.image_size[1]
    rows = []
    for lv, region in enumerate(pred.chain_at(x, y)):
        level = pred.levels[lv]
        rows.append([lv, region, int(level.areas[region]), f"{100 * level.areas[region] / total:.1f}%",
                     int(level.parents[region])])
    return rows


def query_hits(index, session: Session, level: int, region: int, *, k: int, every_level: bool,
               one_per_image: bool) -> dict[int, list]:
    """Hits for the region (same level) or for its chain (every level), excluding the query image."""
    if index is None:
        return {}
    pred = session.prediction
    exclude = session.source or None
    if not every_level:
        vector = pred.levels[level].embeddings[region]
        return {level: index.search(vector, k=k, levels=[level], exclude_image=exclude, one_per_image=one_per_image)}
    chain = pred.ancestors(level, region)
    lowest = level
    vectors = {lowest + i: pred.levels[lowest + i].embeddings[r] for i, r in enumerate(chain)
               if lowest + i < index.num_levels}
    return {lv: index.search(v, k=k, levels=[lv], exclude_image=exclude, one_per_image=one_per_image)
            for lv, v in vectors.items()}


def hit_tiles(index, hits_by_level: dict[int, list]) -> tuple[list, list]:
    """Gallery items (outlined crop of each hit's source image, caption) and the hits in order."""
    items, order = [], []
    cache: dict[str, np.ndarray] = {}
    for level, hits in sorted(hits_by_level.items()):
        for hit in hits:
            if hit.image not in cache:
                cache[hit.image] = load_image(require_inside(index.data_root / hit.image, [index.data_root]))
            image = cache[hit.image]
            mask = index.region_mask(hit)
            if mask.shape != image.shape[:2]:
                image = np.asarray(Image.fromarray(image).resize(mask.shape[::-1]))
            items.append((outlined_crop(image, mask, hit.box), f"L{level} · {hit.score:.3f} · {hit.image}"))
            order.append(hit)
    return items, order


def click(index, session: Session, x: int, y: int, level: int, *, k: int = 8,
          every_level: bool = False, one_per_image: bool = True):
    """A click at (x, y) on the overlay: select the region, list its chain, query the index."""
    if session.prediction is None:
        raise gr.Error("load an image first")
    level = clamp_level(session, level)
    region = session.prediction.segment_at(level, int(x), int(y))
    return select_region(index, session, level, region, k=k, every_level=every_level, one_per_image=one_per_image)


def select_region(index, session: Session, level: int, region: int, *, k: int = 8, every_level: bool = False,
                  one_per_image: bool = True):
    """Select a region by (level, id) — from a click or from the hierarchy list — and query the index."""
    if not 0 <= level < session.prediction.num_levels:
        raise ValueError(f"no level {level}: the hierarchy has levels 0..{session.prediction.num_levels - 1}")
    count = session.prediction.levels[level].num_regions
    if not 0 <= region < count:
        raise ValueError(f"level {level} has regions 0..{count - 1}, not {region}")
    session.selected = (level, region)
    ys, xs = np.nonzero(session.prediction.levels[level].label_map == region)
    hits = query_hits(index, session, level, region, k=int(k), every_level=every_level, one_per_image=one_per_image)
    items, session.hits = hit_tiles(index, hits)
    return session, chain_rows(session, int(xs[0]), int(ys[0])), items


def region_choices(session: Session) -> list[str]:
    """Every region of the hierarchy as 'L<level>:<id> (<share>%)', coarsest first (the sunburst's nodes)."""
    pred = session.prediction
    if pred is None:
        return []
    total = pred.image_size[0] * pred.image_size[1]
    return [f"L{lv}:{r} ({100 * pred.levels[lv].areas[r] / total:.1f}%)"
            for lv in range(pred.num_levels - 1, -1, -1) for r in range(pred.levels[lv].num_regions)]


def hierarchy_figure(session: Session) -> go.Figure:
    """Sunburst of the hierarchy: coarsest level inside, segments outside; sized by area."""
    fig = go.Figure()
    pred = session.prediction
    if pred is None:
        return fig
    ids, parents, values, labels, colours = [], [], [], [], []
    top = pred.num_levels - 1
    for lv in range(top, -1, -1):
        level = pred.levels[lv]
        colour = palette(level.num_regions)
        for r in range(level.num_regions):
            ids.append(f"L{lv}-{r}")
            parents.append("" if lv == top else f"L{lv + 1}-{int(level.parents[r])}")
            values.append(int(level.areas[r]))
            labels.append(f"L{lv}:{r}")
            colours.append("rgb({},{},{})".format(*colour[r]))
    fig.add_trace(go.Sunburst(ids=ids, parents=parents, values=values, labels=labels, branchvalues="total",
                              marker={"colors": colours}, maxdepth=3))
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=360)
    return fig


def fit_projection(vectors: np.ndarray):
    """2-D map of [n, D] vectors: UMAP when the package is installed, else PCA (numpy SVD)."""
    try:
        import umap  # optional

        reducer = umap.UMAP(n_components=2, random_state=0).fit(vectors)
        return lambda v: reducer.transform(np.atleast_2d(v))
    except ImportError:
        mean = vectors.mean(0)
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        return lambda v: (np.atleast_2d(v) - mean) @ vt[:2].T


@dataclass
class RegionMap:
    """A fixed sample of an index's regions projected to 2-D, fitted once per index."""

    project: object  # [n, D] or [D] vectors -> [n, 2]
    xy: np.ndarray  # [S, 2] the sample's coordinates
    levels: np.ndarray  # [S]
    images: np.ndarray  # [S] source paths (hover text)


_REGION_MAPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # index -> RegionMap


def region_map(index, max_points: int = 4000) -> RegionMap:
    """The index's RegionMap (the SVD/UMAP fit runs on the first click only, not on every click)."""
    cached = _REGION_MAPS.get(index)
    if cached is None:
        meta = index.metadata
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(len(meta), size=min(max_points, len(meta)), replace=False))
        vectors = index.vectors(meta["id"].to_numpy()[rows])
        project = fit_projection(vectors)
        cached = RegionMap(project, project(vectors), meta["level"].to_numpy()[rows], meta["image"].to_numpy()[rows])
        _REGION_MAPS[index] = cached
    return cached


def embedding_figure(index, session: Session) -> go.Figure:
    """Map of indexed regions (PCA, or UMAP when installed), the query and its hits highlighted."""
    fig = go.Figure()
    if index is None or len(index) == 0 or session.selected is None:
        return fig
    regions = region_map(index)
    fig.add_trace(go.Scattergl(x=regions.xy[:, 0], y=regions.xy[:, 1], mode="markers", name="indexed regions",
                               marker={"size": 4, "color": regions.levels, "opacity": 0.4}, text=regions.images))
    if session.hits:
        hxy = regions.project(index.vectors(np.array([h.id for h in session.hits])))
        fig.add_trace(go.Scatter(x=hxy[:, 0], y=hxy[:, 1], mode="markers", name="hits",
                                 marker={"size": 10, "symbol": "circle-open", "color": "orange"}))
    level, region = session.selected
    q = regions.project(session.prediction.levels[level].embeddings[region])
    fig.add_trace(go.Scatter(x=q[:, 0], y=q[:, 1], mode="markers", name="query",
                             marker={"size": 14, "symbol": "star", "color": "red"}))
    fig.update_layout(margin={"l": 0, "r": 0, "t": 20, "b": 0}, height=360, legend={"orientation": "h"})
    return fig


def export_zip(session: Session) -> str | None:
    """Label PNG per level (uint16) + hierarchy JSON, zipped in a fresh temp folder."""
    if session.prediction is None:
        return None
    exports = Path(tempfile.gettempdir()) / "hsg-exports"
    exports.mkdir(exist_ok=True)
    for old in exports.iterdir():  # bounded disk use: earlier downloads were served long ago
        if old.stat().st_mtime < time.time() - CACHE_TTL_S:
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=exports))
    path = folder / "hierarchy.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for lv, level in enumerate(session.prediction.levels):
            png = folder / f"level{lv}_labels.png"
            Image.fromarray(level.label_map.astype(np.uint16)).save(png)
            zf.write(png, png.name)
        zf.writestr("hierarchy.json", session.prediction.to_json())
    return str(path)


def require_inside(path: Path, roots: list[Path]) -> Path:
    """`path` when its real location (links resolved) lies inside one of `roots`.

    Raises:
        ValueError: it leads elsewhere (a link out of a data root, placed after the listing).
    """
    if not any(is_inside(path, root) for root in roots):
        raise ValueError(f"{Path(path).name}: not opened, it leads outside the data folder")
    return Path(path)


def resolve_folder(text: str, roots: list[Path]) -> Path:
    """A folder typed in the UI, accepted only inside one of the allowed data roots."""
    if not text.strip():
        raise gr.Error("give a folder")
    path = Path(text).expanduser().resolve()
    if not any(path == root.resolve() or path.is_relative_to(root.resolve()) for root in roots):
        raise gr.Error(f"{text}: outside the allowed data roots ({', '.join(str(r) for r in roots)})")
    if not path.is_dir():
        raise gr.Error(f"{text}: not a folder")
    return path


# ----------------------------------------------------------------------------- index
def managed_index_dir(index_root: Path, folder: Path, checkpoint_hash: str, *, built: bool = False) -> Path:
    """Cache folder of an index the app manages for `folder` and a checkpoint.

    Named after the folder's real path (hashed) as well as its name, so two folders never share an index;
    indexes built from the Index tab (`built`) live under `built/`, apart from the startup index of `--data`,
    so a web user's build can never rewrite it.
    """
    real = os.path.realpath(folder)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:12]
    name = f"{Path(real).name}-{digest}-{checkpoint_hash[:12]}"
    return index_root / "built" / name if built else index_root / name


def ensure_index(predictor, data_root: Path | None, index_dir: Path, progress=None, *, managed: bool = False):
    """Open the index at `index_dir` when it matches the checkpoint and `data_root`; else build it (resumable).

    A damaged or mismatched index is rebuilt only when the app `managed` it (the cache folder named
    after the checkpoint and the folder); one the user gave is refused with its error and left untouched.
    `data_root` None (the operator gave an index and no data folder) accepts the index's own folder.
    """
    from hsg_core.predictor import make_extractor
    from index import IndexFormatError, SegmentIndex, build_index, clear_index

    opened = functools.partial(SegmentIndex.open, checkpoint_hash=predictor.checkpoint_hash, data_root=data_root)
    if (index_dir / "manifest.json").exists():
        try:
            return opened(index_dir)
        except IndexFormatError as err:
            if not managed:
                raise
            print(f"hsg: rebuilding the index ({one_line(err)})", file=sys.stderr)
            clear_index(index_dir)
    if data_root is None:
        raise FileNotFoundError(f"{index_dir}: no index there; give --data to build one")
    build_index(data_root, index_dir, make_extractor(predictor, MAX_SIDE), checkpoint_hash=predictor.checkpoint_hash,
                batch_size=4, progress=progress)
    return opened(index_dir)


class IndexJob:
    """The index build of one session, cancellable from the UI (a plain class: gradio deep-copies
    State values per session and serialises dataclasses, neither of which an Event survives)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __deepcopy__(self, memo) -> "IndexJob":
        return IndexJob()


def run_index_job(app: "Explorer", folder_text: str, mode: str, job: IndexJob, session: Session | None = None,
                  progress=gr.Progress()):
    """Build or update an index over a folder (inside the allowed roots) with a live progress bar.

    The finished index becomes the one `session` searches (other sessions keep theirs)."""
    from hsg_core.predictor import make_extractor
    from index import SegmentIndex, build_index, update_index

    folder = resolve_folder(folder_text, app.data_roots)
    out = managed_index_dir(app.index_root, folder, app.predictor.checkpoint_hash, built=True)
    job.stop.clear()
    run = build_index if mode == "build" or not (out / "manifest.json").exists() else update_index
    info = run(folder, out, make_extractor(app.predictor, MAX_SIDE), checkpoint_hash=app.predictor.checkpoint_hash,
               batch_size=4, progress=lambda done, total: progress((done, total), desc="indexing", unit="images"),
               should_stop=job.stop.is_set)
    session = session if session is not None else Session()
    if info.get("status") != "complete":
        return json.dumps(info, indent=1, default=str), job, session
    opened = SegmentIndex.open(out, checkpoint_hash=app.predictor.checkpoint_hash, data_root=folder)
    built = app.keep_built(out, opened)
    session.index_path, session.hits = str(out), []  # hits of the previous index mean nothing in this one
    return json.dumps(built.info(), indent=1, default=str), job, session


# ----------------------------------------------------------------------------- layout
def upload_path(payload) -> str | None:
    """The upload component's preprocess: the uploaded file's path in gradio's cache (gradio checked
    it is an upload), unopened.

    gr.Image's own decodes an upload (type="numpy"), or opens it (type="filepath") and decodes a
    data: URL: PIL then only warns below twice its pixel limit, and an error there reaches the user
    with no reason. Here the project's loader reads the file (`_on_image`), refusing a bomb from its
    header with one line. (Set on the instance: a gr.Image subclass makes gradio write a .pyi file
    beside this one.)
    """
    if payload is None:
        return None
    if payload.path is None:
        raise gr.Error("uploaded image: send the image as a file upload (a data: URL is not read)")
    return str(payload.path)


def atomic_gradio_cache_writes() -> None:
    """Make gradio write output images to its cache through a temp file and a rename.

    gradio names each output image after its content hash and writes it with a plain `write_bytes`:
    when two sessions produce the same image at once (the same example, the same hit crops), one
    truncates the file while it is being sent to the other, whose download then fails mid-body
    (found by tests/test_concurrency.py). A rename never exposes a partial file.
    """
    from gradio import processing_utils as utils

    def save_pil_to_cache(img, cache_dir, name: str = "image", format: str = "webp") -> str:
        data = utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        atomic_write(path, lambda fh: fh.write(data))
        return str(path)

    utils.save_pil_to_cache = save_pil_to_cache


@dataclass
class Explorer:
    """What every session shares: the model, the startup index, and the indexes built in the Index tab
    (each session searches its own choice, `Session.index_path`; see `index_of`)."""

    predictor: object
    index: object | None
    examples: list[Path]
    data_roots: list[Path]
    index_root: Path
    built: dict = field(default_factory=dict)  # path -> SegmentIndex, least recently searched first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def index_of(self, session: Session):
        """The index `session` searches: the startup index, or the one it built (reopened when closed)."""
        if not session.index_path:
            return self.index
        with self.lock:
            index = self.built.pop(session.index_path, None)
        if index is None:
            from index import SegmentIndex

            index = SegmentIndex.open(session.index_path, checkpoint_hash=self.predictor.checkpoint_hash)
        return self.keep_built(Path(session.index_path), index)

    def keep_built(self, path: Path, index):
        """Keep `index` (built at `path`) open as the most recently used; close the oldest beyond
        MAX_BUILT_INDEXES. Returns `index`."""
        with self.lock:
            self.built.pop(str(path), None)
            self.built[str(path)] = index
            while len(self.built) > MAX_BUILT_INDEXES:
                self.built.pop(next(iter(self.built)))
        return index


@user_errors
def _on_image(app: Explorer, image, level, opacity, boundaries_only, index_path: str = ""):
    """A new upload: `image` is the uploaded file's path (what `upload_path` gives), read by the
    project's loader (`load_image`: a decompression bomb is refused from its header, one line), or an
    RGB array (programmatic callers)."""
    if image is None:
        return Session(index_path=index_path), None, gr.update(maximum=1, value=0), [], [], go.Figure(), go.Figure()
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image, max_side=MAX_SIDE)
    session = set_image(app.predictor, image)
    session.index_path = index_path
    top = session.prediction.num_levels - 1
    level = min(int(level), top)
    return (session, render(session, level, opacity, boundaries_only), gr.update(maximum=top, value=level),
            [], [], hierarchy_figure(session), go.Figure())


@user_errors
def _on_click(app: Explorer, session: Session, x, y, level, opacity, boundaries_only, k, mode, one_per_image):
    if x is None or y is None:
        raise ValueError("click: x and y must be pixel coordinates")
    index = app.index_of(session)
    session, rows, items = click(index, session, int(x), int(y), int(level), k=int(k),
                                 every_level=mode == "every level", one_per_image=bool(one_per_image))
    return (session, render(session, level, opacity, boundaries_only), rows, items,
            embedding_figure(index, session))


@user_errors
def open_path(app: Explorer, path: Path, level, opacity, boundaries_only, roots: list[Path] | None = None,
              index_path: str = ""):
    """Open an image file in the explorer; an image of the index is excluded from its own hits.

    roots: when given, the file must lie inside one of them (`require_inside`), links resolved.
    index_path: the index the session searches (`Session.index_path`), kept by the new session."""
    if roots is not None:
        require_inside(path, roots)
    source = ""
    index = app.index_of(Session(index_path=index_path))
    if index is not None and Path(path).resolve().is_relative_to(index.data_root.resolve()):
        source = Path(path).resolve().relative_to(index.data_root.resolve()).as_posix()
    new = set_image(app.predictor, load_image(path, max_side=MAX_SIDE), source=source)
    new.index_path = index_path
    top = new.prediction.num_levels - 1
    level = min(int(level), top)
    return (new, render(new, level, opacity, boundaries_only), gr.update(maximum=top, value=level), [], [],
            hierarchy_figure(new), go.Figure())


def _on_hit(app: Explorer, session: Session, evt: gr.SelectData, level, opacity, boundaries_only):
    """Open a clicked hit's source image in the explorer, at the hit's level."""
    hit = session.hits[evt.index]
    root = app.index_of(session).data_root
    return open_path(app, root / hit.image, hit.level, opacity, boundaries_only, roots=[root],
                     index_path=session.index_path)


def build_demo(app: Explorer) -> gr.Blocks:
    """The Blocks layout; every event calls one of the handlers above."""
    atomic_gradio_cache_writes()
    with gr.Blocks(title="HSG Explorer", delete_cache=(CACHE_SWEEP_S, CACHE_TTL_S)) as demo:
        session = gr.State(Session(), time_to_live=SESSION_TTL_S)
        job = gr.State(IndexJob())
        gr.Markdown("# HSG Explorer\nUnsupervised hierarchical segmentation (HSG, CVPR 2022): slide from fine "
                    "segments to whole regions, click a region to find similar ones in the index.")
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.Image(label="Image (upload, paste or pick an example)", type="filepath",
                                      image_mode=None, sources=["upload", "clipboard"], height=300, elem_id="upload")
                    upload.preprocess = upload_path  # the file goes to `load_image`, never decoded by gradio
                    examples = gr.Gallery([str(p) for p in app.examples], label="Examples (from the index)",
                                          columns=4, height=260, allow_preview=False, elem_id="examples")
                with gr.Column(scale=2):
                    view = gr.Image(label="Hierarchy (click a region)", interactive=False, elem_id="overlay",
                                    height=480)
                    level = gr.Slider(0, 1, value=0, step=1, label="Level (0 = finest segments)", elem_id="level")
                    with gr.Row():
                        opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Opacity")
                        boundaries_only = gr.Checkbox(False, label="Boundaries only")
            with gr.Row():
                k = gr.Slider(1, 32, value=8, step=1, label="Hits (k)")
                mode = gr.Radio(["same level", "every level"], value="same level", label="Retrieve at")
                one_per_image = gr.Checkbox(True, label="One hit per image")
            pick = gr.Dropdown([], label="Or pick a region of the hierarchy (the sunburst's nodes)", elem_id="pick")
            chain = gr.Dataframe(headers=["level", "region", "area (px)", "share", "parent"], label="Enclosing regions",
                                 interactive=False)
            gallery = gr.Gallery(label="Similar regions (click one to open its image)", columns=8, height=320,
                                 elem_id="hits")
            with gr.Row():
                tree_plot = gr.Plot(label="Hierarchy (sunburst)")
                map_plot = gr.Plot(label="Embedding map (PCA)")
            with gr.Row():
                export_btn = gr.Button("Export label maps + hierarchy")
                export_file = gr.File(label="Download")
            with gr.Row(visible=False):
                click_x, click_y = gr.Number(0, precision=0), gr.Number(0, precision=0)
                click_btn = gr.Button("click")
        with gr.Tab("Index"):
            folder = gr.Textbox(label=f"Folder (inside: {', '.join(str(r) for r in app.data_roots)})")
            with gr.Row():
                build_btn, update_btn, cancel_btn = gr.Button("Build"), gr.Button("Update"), gr.Button("Cancel")
            info = gr.Code(value=json.dumps(app.index.info() if app.index else {}, indent=1, default=str),
                           language="json", label="Index info")
        shown = [opacity, boundaries_only]
        image_outputs = [session, view, level, chain, gallery, tree_plot, map_plot]
        upload.change(lambda s, *a: _on_image(app, *a, index_path=s.index_path), [session, upload, level, *shown],
                      image_outputs, concurrency_limit=1, api_name="load_image")
        for control in (level, opacity):
            control.release(lambda s, *a: render(s, *a), [session, level, *shown], view, api_name=False)
        level.change(lambda s, *a: render(s, *a), [session, level, *shown], view, api_name="render")
        boundaries_only.change(lambda s, *a: render(s, *a), [session, level, *shown], view, api_name=False)
        click_inputs = [level, *shown, k, mode, one_per_image]
        click_outputs = [session, view, chain, gallery, map_plot]

        def on_select(s, evt: gr.SelectData, *rest):
            return _on_click(app, s, evt.index[0], evt.index[1], *rest)

        view.select(on_select, [session, *click_inputs], click_outputs, api_name=False)

        @user_errors
        def on_pick(s, choice, level_now, *rest):
            if not choice or s.prediction is None:
                return s, render(s, level_now, *rest[:2]) if s.prediction else None, [], [], go.Figure(), level_now
            lv, region = (int(v) for v in choice.split(" ")[0][1:].split(":"))
            k_, mode_, one_ = rest[2:]
            index = app.index_of(s)
            s, rows, items = select_region(index, s, lv, region, k=int(k_), every_level=mode_ == "every level",
                                           one_per_image=bool(one_))
            return s, render(s, lv, *rest[:2]), rows, items, embedding_figure(index, s), lv

        pick.select(on_pick, [session, pick, *click_inputs], [*click_outputs, level], api_name=False)
        view.change(lambda s: gr.update(choices=region_choices(s), value=None) if s.selected is None else gr.update(),
                    [session], pick, api_name=False)
        click_btn.click(lambda s, x, y, *rest: _on_click(app, s, x, y, *rest),
                        [session, click_x, click_y, *click_inputs], click_outputs, api_name="click_xy")

        def on_example(s, evt: gr.SelectData, *rest):
            return open_path(app, app.examples[evt.index], *rest, roots=app.data_roots, index_path=s.index_path)

        examples.select(on_example, [session, level, *shown], image_outputs, concurrency_limit=1, api_name=False)

        def on_hit(s, evt: gr.SelectData, *rest):
            return _on_hit(app, s, evt, *rest)

        gallery.select(on_hit, [session, level, *shown], image_outputs, concurrency_limit=1, api_name=False)
        export_btn.click(export_zip, [session], export_file, api_name="export")
        # one index job at a time, Build and Update alike: a second one waits in the queue
        index_job = [folder, job, session]  # the finished index becomes the one this session searches
        build_btn.click(user_errors(lambda f, j, s: run_index_job(app, f, "build", j, s)), index_job,
                        [info, job, session], concurrency_limit=1, concurrency_id="index_job", api_name="build_index")
        update_btn.click(user_errors(lambda f, j, s: run_index_job(app, f, "update", j, s)), index_job,
                         [info, job, session], concurrency_limit=1, concurrency_id="index_job", api_name="update_index")
        cancel_btn.click(lambda j: (j.stop.set(), j)[1], [job], [job], queue=False, api_name=False)
    return demo


# ----------------------------------------------------------------------------- entry point
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="HSG Explorer (Gradio)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", default=None, help="image folder the index covers (and a data root; default: the "
                   "demo images, or with --index the folder that index covers)")
    p.add_argument("--index", default=None, help="index folder (default: built into the cache on first launch)")
    p.add_argument("--data-root", action="append", default=[], help="extra folder the Index tab may read")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="public gradio link (off by default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS, help="sessions whose state is kept in memory")
    p.add_argument("--auth-file", default=None,
                   help=f"require a login: a file of user:password lines (or set {AUTH_ENV}=user:password)")
    return p.parse_args(argv)


def parse_logins(lines: list[str], source: str) -> list[tuple[str, str]]:
    """(user, password) pairs from "user:password" lines; blank lines and # comments are skipped.

    Raises:
        ValueError: a line without a user or a password (named by number, never echoed).
    """
    logins = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, password = line.rstrip("\r\n").partition(":")
        if not user.strip() or not password:
            raise ValueError(f"{source} line {number}: expected user:password")
        logins.append((user.strip(), password))
    return logins


def read_logins(auth_file: str | None, env_value: str | None) -> list[tuple[str, str]] | None:
    """The logins the explorer requires (`--auth-file` lines, then `$HSG_AUTH`), or None for none.

    Raises:
        ValueError, OSError: an unreadable or malformed file, or a malformed `$HSG_AUTH`.
    """
    logins = []
    if auth_file:
        logins += parse_logins(Path(auth_file).read_text(encoding="utf-8").splitlines(), auth_file)
        if not logins:
            raise ValueError(f"{auth_file}: no user:password line")
    if env_value:
        logins += parse_logins([env_value], f"${AUTH_ENV}")
    return logins or None


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, share: bool, logins: list | None) -> list[str]:
    """One warning line when the explorer is reachable beyond this machine, saying if no login guards it."""
    if is_loopback(host) and not share:
        return []
    where = "a public share link" if share else f"{host}, beyond this machine"
    login = "" if logins else f"; no login is required (give --auth-file FILE or set {AUTH_ENV}=user:password)"
    return [f"hsg: warning: serving on {where}: anyone who reaches it can use the explorer and download "
            f"the data roots{login}"]


def load_app(args: argparse.Namespace) -> Explorer:
    """Predictor, index (built when missing, with a console progress bar) and examples.

    Bad input (checkpoint, index, data folder) ends the program with one line naming the file."""
    from hsg_core.weights import WeightsMissingError
    from index import IndexFormatError

    try:
        return _load_app(args)
    except (WeightsMissingError, IndexFormatError, ValueError, OSError) as err:
        raise SystemExit(f"hsg: error: {one_line(err)}") from None


def _load_app(args: argparse.Namespace) -> Explorer:
    from hsg_core.predictor import load_predictor
    from hsg_core.weights import cache_dir

    predictor = load_predictor(args.checkpoint, args.device)
    data = Path(args.data).resolve() if args.data else None  # no --data with --index: the index's own folder
    if data is None and not args.index:
        data = DEFAULT_IMAGES.resolve()
    index_root = cache_dir() / "indexes"
    index_dir = Path(args.index) if args.index else managed_index_dir(index_root, data, predictor.checkpoint_hash)
    index = ensure_index(predictor, data, index_dir, managed=args.index is None)
    data = data or index.data_root
    return Explorer(predictor, index, example_images(data), [data, *map(Path, args.data_root)], index_root)


def example_images(data: Path) -> list[Path]:
    """The first `MAX_EXAMPLES` images of the data folder (`list_images`: never a link out of it)."""
    from hsg_core.images import list_images

    return list_images(data)[:MAX_EXAMPLES]


class UploadBudget:
    """ASGI middleware: a token bucket on the bytes POSTed to gradio's upload routes, for all clients together.

    gradio bounds each file (`max_file_size`) and deletes old ones (`delete_cache`) but has no total: an
    unauthenticated client could write 62 MB/s into its upload folder. Here an upload is admitted only if
    its Content-Length fits the bucket (`burst` bytes, refilled at `bytes_per_hour`); others get HTTP 429
    at once, before any byte is read, and a body without a length gets 411. With files deleted after
    CACHE_TTL_S (looked for every CACHE_SWEEP_S), the folder holds at most
    burst + bytes_per_hour x (CACHE_TTL_S + CACHE_SWEEP_S) / 3600 of uploads."""

    ROUTES = ("/upload", "/process_recording")  # gradio's routes that write a request's body to disk

    def __init__(self, app: Callable, bytes_per_hour: int, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.rate, self.burst, self.clock = app, bytes_per_hour / 3600.0, burst, clock
        self.tokens, self.stamp = float(burst), clock()
        self._lock = threading.Lock()

    def admit(self, size: int) -> bool:
        """Take `size` bytes from the bucket if it holds them."""
        with self._lock:
            now = self.clock()
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if size > self.tokens:
                return False
            self.tokens -= size
            return True

    def guards(self, scope: dict) -> bool:
        """Whether the request is a POST to one of ROUTES."""
        return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith(self.ROUTES)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not self.guards(scope):
            return await self.app(scope, receive, send)
        from starlette.responses import PlainTextResponse

        length = dict(scope["headers"]).get(b"content-length", b"")
        if not length.isdigit():
            return await PlainTextResponse("an upload needs a Content-Length", status_code=411)(scope, receive, send)
        if not self.admit(int(length)):
            return await PlainTextResponse("the server takes no more uploads for now: try again in a few minutes",
                                           status_code=429, headers={"Retry-After": "60"})(scope, receive, send)
        return await self.app(scope, receive, send)


def upload_budget() -> Middleware:
    """`UploadBudget` as a FastAPI middleware (for gradio's `launch(app_kwargs=...)`): $HSG_UPLOAD_MB_PER_HOUR
    megabytes an hour (default UPLOAD_MB_PER_HOUR), after a burst of a quarter of that."""
    raw = os.environ.get(UPLOAD_ENV, "").strip() or str(UPLOAD_MB_PER_HOUR)
    try:
        per_hour = int(float(raw) * (1 << 20))
    except (ValueError, OverflowError):  # not a number, nan, inf
        per_hour = 0
    if per_hour <= 0:
        raise ValueError(f"{UPLOAD_ENV}={raw!r}: expected a positive number of megabytes")
    return Middleware(UploadBudget, bytes_per_hour=per_hour, burst=per_hour // 4)


def launch_options(args: argparse.Namespace, app: Explorer, auth: list[tuple[str, str]] | None = None) -> dict:
    """Safe defaults (SECURITY.md): loopback unless --host, no share link unless --share, bounded
    uploads and session memory, files served only from the data roots, a login when `auth` is given."""
    return {"server_name": args.host, "server_port": args.port, "share": args.share, "max_file_size": MAX_UPLOAD,
            "allowed_paths": [str(p) for p in app.data_roots], "state_session_capacity": args.max_sessions,
            "show_error": False, "auth": auth, "app_kwargs": {"middleware": [upload_budget()]}}


def launch(app: Explorer, args: argparse.Namespace, auth: list[tuple[str, str]] | None = None,
           **extra) -> gr.Blocks:
    """Build the UI and serve it with `launch_options` (extra: other gradio launch arguments); at
    most `MAX_QUEUE` requests wait, later ones are refused at once."""
    demo = build_demo(app)
    demo.queue(default_concurrency_limit=4, max_size=MAX_QUEUE).launch(**launch_options(args, app, auth), **extra)
    return demo


def main(argv: list[str] | None = None) -> int:
    """`python app.py` (and `hsg serve`): serve until stopped (0); bad input is one line on stderr and 2."""
    args = parse_args(argv)
    try:
        logins = read_logins(args.auth_file, os.environ.get(AUTH_ENV))
        upload_budget()  # a bad $HSG_UPLOAD_MB_PER_HOUR is one line, before the model loads
    except (ValueError, OSError) as err:
        print(f"hsg: error: {one_line(err)}", file=sys.stderr)
        return 2
    try:
        explorer = load_app(args)
    except SystemExit as err:  # load_app's one-line refusal of a bad checkpoint, index or data folder
        print(err, file=sys.stderr)
        return 2
    for line in exposure_warnings(args.host, args.share, logins):
        print(line, file=sys.stderr)
    launch(explorer, args, auth=logins)
    return 0


if __name__ == "__main__":
    sys.exit(main())
