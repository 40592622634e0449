"""HSG Explorer: a Gradio front end over an `HSGPredictor` and a `SegmentIndex`.

`python app.py` opens the embedded default (assets/: demo photos + the demo checkpoint; the
demo index is built into the cache on first launch). Handlers are plain functions over
`Prediction` and `SegmentIndex`, testable without a browser; `build_demo` only lays out and wires.
Per-user state lives in `gr.State` (a `Session`); model calls are queued one at a time.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from PIL import Image  # noqa: E402

from hsg_core.atomic import atomic_write  # noqa: E402
from hsg_core.images import check_rgb, load_image  # noqa: E402
from hsg_core.types import Prediction  # noqa: E402
from hsg_core.viz import highlight, outlined_crop, overlay_regions, palette  # noqa: E402

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "checkpoint" / "hsg_demo.pt"
DEFAULT_IMAGES = ASSETS / "demo_images"
MAX_EXAMPLES = 48  # example thumbnails shown from the data folder
MAX_SIDE = 1024  # uploads are downscaled to this longer side before the model sees them
MAX_UPLOAD = "25mb"  # gradio refuses larger uploads
MAX_SESSIONS = 64  # sessions whose state (image + hierarchy, up to ~20 MB) is kept; least recent dropped
SESSION_TTL_S = 3600  # a session's state is dropped this long after its last change
CACHE_TTL_S = 3600  # uploaded files in gradio's cache and export zips are deleted after this long


@dataclass
class Session:
    """What one browser tab has: its image, its hierarchy, its selection (deep-copyable)."""

    image: np.ndarray | None = None
    prediction: Prediction | None = None
    source: str = ""  # relative path in the index, when the image came from it
    selected: tuple[int, int] | None = None  # (level, region)
    hits: list = field(default_factory=list)  # the Hits shown in the gallery, in order


# ----------------------------------------------------------------------------- handlers
def one_line(err: BaseException) -> str:
    """An error's message on one line (or its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def user_errors(handler):
    """Show bad input (a ValueError/OSError naming the file or value) as its one-line message in the UI."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (ValueError, OSError) as err:
            raise gr.Error(one_line(err)) from err

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
                cache[hit.image] = load_image(index.data_root / hit.image)
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
def ensure_index(predictor, data_root: Path, index_dir: Path, progress=None, *, managed: bool = False):
    """Open the index at `index_dir` when it matches the checkpoint; else build it (resumable).

    A damaged or mismatched index is rebuilt only when the app `managed` it (the cache folder named
    after the checkpoint); one the user gave is refused with its error and left untouched.
    """
    from hsg_core.predictor import make_extractor
    from index import IndexFormatError, SegmentIndex, build_index

    if (index_dir / "manifest.json").exists():
        try:
            return SegmentIndex.open(index_dir, checkpoint_hash=predictor.checkpoint_hash)
        except IndexFormatError as err:
            if not managed:
                raise
            print(f"hsg: rebuilding the index ({err})", file=sys.stderr)
            shutil.rmtree(index_dir)
    build_index(data_root, index_dir, make_extractor(predictor, MAX_SIDE), checkpoint_hash=predictor.checkpoint_hash,
                batch_size=4, progress=progress)
    return SegmentIndex.open(index_dir, checkpoint_hash=predictor.checkpoint_hash)


class IndexJob:
    """The index build of one session, cancellable from the UI (a plain class: gradio deep-copies
    State values per session and serialises dataclasses, neither of which an Event survives)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __deepcopy__(self, memo) -> "IndexJob":
        return IndexJob()


def run_index_job(app: "Explorer", folder_text: str, mode: str, job: IndexJob, progress=gr.Progress()):
    """Build or update an index over a folder (inside the allowed roots) with a live progress bar."""
    from hsg_core.predictor import make_extractor
    from index import SegmentIndex, build_index, update_index

    folder = resolve_folder(folder_text, app.data_roots)
    out = app.index_root / f"{folder.name}-{app.predictor.checkpoint_hash[:12]}"
    job.stop.clear()
    run = build_index if mode == "build" or not (out / "manifest.json").exists() else update_index
    info = run(folder, out, make_extractor(app.predictor, MAX_SIDE), checkpoint_hash=app.predictor.checkpoint_hash,
               batch_size=4, progress=lambda done, total: progress((done, total), desc="indexing", unit="images"),
               should_stop=job.stop.is_set)
    if info.get("status") != "complete":
        return json.dumps(info, indent=1, default=str), job
    app.index = SegmentIndex.open(out, checkpoint_hash=app.predictor.checkpoint_hash)
    return json.dumps(app.index.info(), indent=1, default=str), job


# ----------------------------------------------------------------------------- layout
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
    """What every session shares (read-only for handlers, except the index swap after a build)."""

    predictor: object
    index: object | None
    examples: list[Path]
    data_roots: list[Path]
    index_root: Path


@user_errors
def _on_image(app: Explorer, image, level, opacity, boundaries_only):
    if image is None:
        return Session(), None, gr.update(maximum=1, value=0), [], [], go.Figure(), go.Figure()
    session = set_image(app.predictor, image)
    top = session.prediction.num_levels - 1
    level = min(int(level), top)
    return (session, render(session, level, opacity, boundaries_only), gr.update(maximum=top, value=level),
            [], [], hierarchy_figure(session), go.Figure())


@user_errors
def _on_click(app: Explorer, session: Session, x, y, level, opacity, boundaries_only, k, mode, one_per_image):
    if x is None or y is None:
        raise ValueError("click: x and y must be pixel coordinates")
    session, rows, items = click(app.index, session, int(x), int(y), int(level), k=int(k),
                                 every_level=mode == "every level", one_per_image=bool(one_per_image))
    return (session, render(session, level, opacity, boundaries_only), rows, items,
            embedding_figure(app.index, session))


@user_errors
def open_path(app: Explorer, path: Path, level, opacity, boundaries_only):
    """Open an image file in the explorer; an image of the index is excluded from its own hits."""
    source = ""
    if app.index is not None and Path(path).resolve().is_relative_to(app.index.data_root.resolve()):
        source = Path(path).resolve().relative_to(app.index.data_root.resolve()).as_posix()
    new = set_image(app.predictor, load_image(path, max_side=MAX_SIDE), source=source)
    top = new.prediction.num_levels - 1
    level = min(int(level), top)
    return (new, render(new, level, opacity, boundaries_only), gr.update(maximum=top, value=level), [], [],
            hierarchy_figure(new), go.Figure())


def _on_hit(app: Explorer, session: Session, evt: gr.SelectData, level, opacity, boundaries_only):
    """Open a clicked hit's source image in the explorer, at the hit's level."""
    hit = session.hits[evt.index]
    return open_path(app, app.index.data_root / hit.image, hit.level, opacity, boundaries_only)


def build_demo(app: Explorer) -> gr.Blocks:
    """The Blocks layout; every event calls one of the handlers above."""
    atomic_gradio_cache_writes()
    with gr.Blocks(title="HSG Explorer", delete_cache=(CACHE_TTL_S, CACHE_TTL_S)) as demo:
        session = gr.State(Session(), time_to_live=SESSION_TTL_S)
        job = gr.State(IndexJob())
        gr.Markdown("# HSG Explorer\nUnsupervised hierarchical segmentation (HSG, CVPR 2022): slide from fine "
                    "segments to whole regions, click a region to find similar ones in the index.")
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.Image(label="Image (upload, paste or pick an example)", type="numpy",
                                      sources=["upload", "clipboard"], height=300)
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
        upload.change(lambda *a: _on_image(app, *a), [upload, level, *shown], image_outputs,
                      concurrency_limit=1, api_name="load_image")
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
            s, rows, items = select_region(app.index, s, lv, region, k=int(k_), every_level=mode_ == "every level",
                                           one_per_image=bool(one_))
            return s, render(s, lv, *rest[:2]), rows, items, embedding_figure(app.index, s), lv

        pick.select(on_pick, [session, pick, *click_inputs], [*click_outputs, level], api_name=False)
        view.change(lambda s: gr.update(choices=region_choices(s), value=None) if s.selected is None else gr.update(),
                    [session], pick, api_name=False)
        click_btn.click(lambda s, x, y, *rest: _on_click(app, s, x, y, *rest),
                        [session, click_x, click_y, *click_inputs], click_outputs, api_name="click_xy")

        def on_example(evt: gr.SelectData, *rest):
            return open_path(app, app.examples[evt.index], *rest)

        examples.select(on_example, [level, *shown], image_outputs, concurrency_limit=1, api_name=False)

        def on_hit(s, evt: gr.SelectData, *rest):
            return _on_hit(app, s, evt, *rest)

        gallery.select(on_hit, [session, level, *shown], image_outputs, concurrency_limit=1, api_name=False)
        export_btn.click(export_zip, [session], export_file, api_name="export")
        build_btn.click(user_errors(lambda f, j: run_index_job(app, f, "build", j)), [folder, job], [info, job],
                        concurrency_limit=1, api_name="build_index")
        update_btn.click(user_errors(lambda f, j: run_index_job(app, f, "update", j)), [folder, job], [info, job],
                         concurrency_limit=1, api_name="update_index")
        cancel_btn.click(lambda j: (j.stop.set(), j)[1], [job], [job], queue=False, api_name=False)
    return demo


# ----------------------------------------------------------------------------- entry point
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="HSG Explorer (Gradio)")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", default=str(DEFAULT_IMAGES), help="image folder the index covers (and a data root)")
    p.add_argument("--index", default=None, help="index folder (default: built into the cache on first launch)")
    p.add_argument("--data-root", action="append", default=[], help="extra folder the Index tab may read")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="public gradio link (off by default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS, help="sessions whose state is kept in memory")
    return p.parse_args(argv)


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
    data = Path(args.data).resolve()
    index_root = cache_dir() / "indexes"
    index_dir = Path(args.index) if args.index else index_root / f"{data.name}-{predictor.checkpoint_hash[:12]}"
    index = ensure_index(predictor, data, index_dir, managed=args.index is None)
    from hsg_core.images import list_images

    return Explorer(predictor, index, list_images(data)[:MAX_EXAMPLES], [data, *map(Path, args.data_root)], index_root)


def launch_options(args: argparse.Namespace, app: Explorer) -> dict:
    """Safe defaults (SECURITY.md): loopback unless --host, no share link unless --share, bounded
    uploads and session memory, files served only from the data roots."""
    return {"server_name": args.host, "server_port": args.port, "share": args.share, "max_file_size": MAX_UPLOAD,
            "allowed_paths": [str(p) for p in app.data_roots], "state_session_capacity": args.max_sessions,
            "show_error": False}


def launch(app: Explorer, args: argparse.Namespace, **extra) -> gr.Blocks:
    """Build the UI and serve it with `launch_options` (extra: other gradio launch arguments)."""
    demo = build_demo(app)
    demo.queue(default_concurrency_limit=4).launch(**launch_options(args, app), **extra)
    return demo


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    launch(load_app(args), args)


if __name__ == "__main__":
    main()
