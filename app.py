"""HSG Explorer: the Gradio layout, its wiring and its launch options, over `explorer.py`.

`python app.py` opens the embedded default (assets/: demo photos, the demo checkpoint and the index
built with it). The logic lives in `explorer.py` (no gradio); the handlers here only translate
between components and those functions. Per-user state lives in `gr.State` (an `explorer.Session`);
model calls are queued one at a time.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from serve_options import AUTH_ENV, NOTE, announce_start, parse_args, read_logins

if __name__ == "__main__":
    parse_args()  # --help and a bad option answer here, before gradio and torch load
    announce_start()

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from embedding_map import (  # noqa: E402
    MAP_CSS,
    MAP_HTML,
    MAP_JS,
    clicked_id,
    hit_for_id,
    lasso_gallery,
    map_marks,
    map_payload,
    selected_ids,
)
from explorer import (  # noqa: E402
    Session,
    hit_at,
    level_colours,
    more_like_hit,
    one_line,
    open_hit,
    parse_choice,
    region_choices,
    render,
    rerun,
    select_at,
    select_region,
)
from explorer_output import (  # noqa: E402
    export_cutout,
    export_hits_csv,
    export_hits_zip,
    export_mask,
    export_zip,
    gallery_files,
    hierarchy_figure,
    image_file,
    parts_strip,
)
from explorer_service import (  # noqa: E402
    Explorer,
    IndexJob,
    index_folder,
    open_explorer,
    open_image,
    open_upload,
)
from hits_gallery import GALLERY_CSS, GALLERY_HTML, GALLERY_JS, gallery_payload  # noqa: E402
from index_tab import Eta, folder_choices, info_rows  # noqa: E402
from segment_canvas import CANVAS_CSS, CANVAS_HTML, CANVAS_JS, canvas_payload  # noqa: E402

MAX_UPLOAD = "25mb"  # gradio refuses larger uploads
SESSION_TTL_S = 3600  # a session's state is dropped this long after its last change
CACHE_TTL_S = 3600  # uploaded files in gradio's cache are deleted after this long
CACHE_SWEEP_S = 600  # gradio looks for cache files older than CACHE_TTL_S this often (delete_cache)
UPLOAD_ENV = (
    "HSG_UPLOAD_MB_PER_HOUR"  # bytes all clients together may upload per hour (see UploadBudget)
)
UPLOAD_MB_PER_HOUR = 1024  # its default: with the TTL, gradio's upload folder holds ~1.4 GB at most
MAX_QUEUE = (
    32  # requests waiting for a worker; more are refused at once ("queue full"), not held in memory
)


# a tile's caption is cut to its width: its whole text (the full file name) as the hover title
TILE_TITLES_JS = """() => {
  const mark = () => document.querySelectorAll('.gallery-item .thumbnail-item').forEach(tile => {
    const text = tile.querySelector('.caption-label')?.textContent || tile.querySelector('img')?.alt;
    if (text && tile.title !== text) tile.title = text;
  });
  new MutationObserver(mark).observe(document.body, {subtree: true, childList: true});
  mark();
}"""


# ----------------------------------------------------------------------------- errors
def private_dirs() -> list[str]:
    """Server folders whose paths web users are not shown: gradio's upload cache, the hsg cache
    (indexes, overseg maps, weights) and the temp folder of export zips."""
    from gradio.utils import get_upload_folder

    from hsg_core.weights import cache_dir

    folders = [
        get_upload_folder(),
        str(cache_dir()),
        str(Path(tempfile.gettempdir()) / "hsg-exports"),
    ]
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


def run_index_job(
    app: Explorer,
    folder_text: str,
    mode: str,
    job: IndexJob,
    session: Session | None = None,
    progress=gr.Progress(),
) -> tuple[list, IndexJob, Session]:
    """Build or update an index over a folder (`explorer_service.index_folder`) with a live progress bar and
    the time left; the finished index becomes the one `session` searches.
    Returns (info rows, job, session)."""
    eta = Eta()

    def report(done: int, total: int) -> None:
        progress(done / total if total else 0.0, desc=eta.update(done, total))

    info, session = index_folder(app, folder_text or "", mode, job, session or Session(), report)
    return info_rows(info), job, session


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


# ----------------------------------------------------------------------------- handlers
def canvas_value(session: Session, level: int) -> dict:
    """The segment canvas's payload for the session's image (`segment_canvas.canvas_payload`)."""
    pred = session.prediction
    colours = level_colours(pred)  # a child takes a shade of its parent's colour
    token = f"{session.image_hash or 'array'}-{time.monotonic_ns()}"
    return canvas_payload(session.image, pred, colours, token=token, level=level)


def opened(session: Session, level, opacity, boundaries_only) -> tuple:
    """The outputs of a newly opened image: session, canvas, level slider, strip, gallery, figures,
    region list, context panel."""
    top = session.prediction.num_levels - 1
    level = min(int(level), top)
    return (
        session,
        canvas_value(session, level),
        gr.update(maximum=top, value=level),
        [],
        None,
        hierarchy_figure(session),
        gr.HTML(marks=None),
        gr.update(choices=region_choices(session), value=None),
        gr.update(visible=False),  # no hit in context
    )


@user_errors
def _on_image(app: Explorer, image, level, opacity, boundaries_only, index_path: str = ""):
    """A new upload: `image` is the uploaded file's path (what `upload_path` gives) or an RGB array."""
    if image is None:
        return (
            Session(index_path=index_path),
            None,
            gr.update(maximum=1, value=0),
            [],
            None,
            go.Figure(),
            gr.HTML(marks=None),
            gr.update(choices=[], value=None),
            gr.update(visible=False),
        )
    return opened(open_upload(app, image, index_path), level, opacity, boundaries_only)


def strip_items(session: Session) -> list[tuple]:
    """The parts-to-whole strip as gallery items: the selection's region at every level."""
    return gallery_files([(panel.crop, panel.caption) for panel in parts_strip(session)])


def event_data(evt: gr.EventData) -> dict:
    """What a gr.HTML component's `trigger(name, data)` sent ({} when nothing)."""
    return getattr(evt, "_data", None) or {}


def _search_at(app: Explorer, session: Session, x, y, level, k, mode, one_per_image) -> tuple:
    """Select the region at (x, y) of `level` and search the index: (session, gallery items)."""
    if x is None or y is None:
        raise ValueError("click: x and y must be pixel coordinates")
    index = app.index_of(session)
    session, _, items = select_at(
        index,
        session,
        int(x),
        int(y),
        int(level),
        k=int(k),
        every_level=mode == "every level",
        one_per_image=bool(one_per_image),
    )
    return session, gallery_payload(items)


def selection_views(app: Explorer, session: Session) -> tuple:
    """What follows a search, sent after the gallery: (parts-to-whole strip, embedding map)."""
    return strip_items(session), gr.HTML(marks=map_marks(app.index_of(session), session))


@user_errors
def _on_canvas_click(app: Explorer, session: Session, evt: gr.EventData, k, mode, one_per_image):
    """A click on the segment canvas: the page already shows the selection; this searches."""
    data = event_data(evt)
    return _search_at(
        app, session, data.get("x"), data.get("y"), data.get("level", 0), k, mode, one_per_image
    )


@user_errors
def _on_click(
    app: Explorer, session: Session, x, y, level, opacity, boundaries_only, k, mode, one_per_image
):
    """The `click_xy` API: a click at (x, y), with the overlay rendered on the server."""
    session, items = _search_at(app, session, x, y, level, k, mode, one_per_image)
    strip, figure = selection_views(app, session)
    rendered = image_file(render(session, level, opacity, boundaries_only))
    return session, rendered, strip, items, figure


@user_errors
def _on_settings(app: Explorer, session: Session, k, mode, one_per_image):
    """k, same/every level or one hit per image changed: the current search again (`explorer.rerun`);
    nothing changes when no region is selected."""
    index = app.index_of(session)
    result = rerun(index, session, int(k), mode == "every level", bool(one_per_image))
    if result is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    session, _, items = result
    return session, gr.skip(), gallery_payload(items), gr.HTML(marks=map_marks(index, session))


@user_errors
def _on_pick(
    app: Explorer, session: Session, choice, level, opacity, boundaries_only, k, mode, one_per_image
):
    """A region picked from the list (`region_choices` value): select it at its level."""
    if not choice:
        return session, gr.skip(), [], [], gr.HTML(marks=None), level
    lv, region = parse_choice(choice)
    index = app.index_of(session)
    session, _, items = select_region(
        index,
        session,
        lv,
        region,
        k=int(k),
        every_level=mode == "every level",
        one_per_image=bool(one_per_image),
    )
    return (
        session,
        gr.HTML(selection=[lv, region]),  # the canvas shows it; the level slider moves to lv
        strip_items(session),
        gallery_payload(items),
        gr.HTML(marks=map_marks(index, session)),
        lv,
    )


@user_errors
def open_path(
    app: Explorer,
    path: Path,
    level,
    opacity,
    boundaries_only,
    roots: list[Path] | None = None,
    index_path: str = "",
):
    """Open an image file (`explorer_service.open_image`: inside `roots` when given) in the explorer."""
    return opened(open_image(app, path, roots, index_path), level, opacity, boundaries_only)


def in_context(app: Explorer, session: Session, hit, caption: str) -> tuple:
    """`hit` opened in context (its whole image, the region outlined; the query kept):
    (session, context image, caption, the context panel shown)."""
    session, image = open_hit(app.index_of(session), session, hit)
    return (
        session,
        image_file(image),
        f"**{one_line(ValueError(hit.image))}** · {caption}",
        gr.update(visible=True),
    )


@user_errors
def _on_hit(app: Explorer, session: Session, position: int) -> tuple:
    """A clicked hit, in context."""
    hit = hit_at(session, position)
    return in_context(app, session, hit, f"level {hit.level} · score {hit.score:.3f}")


@user_errors
def _on_map_click(app: Explorer, session: Session, evt: gr.EventData) -> tuple:
    """A point of the embedding map clicked: that region in context, as a clicked hit."""
    index = app.index_of(session)
    hit = hit_for_id(index, clicked_id(index, event_data(evt)))
    return in_context(app, session, hit, f"level {hit.level}")


@user_errors
def _on_map_select(app: Explorer, session: Session, evt: gr.EventData) -> tuple:
    """Points lassoed on the map: they fill the gallery (ranked by similarity to the query)."""
    index = app.index_of(session)
    session, items = lasso_gallery(index, session, selected_ids(index, event_data(evt)))
    return session, gallery_payload(items), gr.HTML(marks=map_marks(index, session))


@user_errors
def _on_more_like_hit(app: Explorer, session: Session, k, mode, one_per_image) -> tuple:
    """ "Find more like this" from the hit shown in context: (session, gallery items)."""
    if session.context is None:
        raise ValueError("find more like this: click a hit first")
    index = app.index_of(session)
    session, items = more_like_hit(
        index,
        session,
        session.context,
        k=int(k),
        every_level=mode == "every level",
        one_per_image=bool(one_per_image),
    )
    return session, gallery_payload(items)


@user_errors
def _on_explore_hit(app: Explorer, session: Session, opacity, boundaries_only):
    """Open the hit shown in context in the explorer (a new query image), at the hit's level."""
    if session.context is None:
        raise ValueError("explore this image: click a hit first")
    hit, root = session.context, app.index_of(session).data_root
    return open_path(
        app,
        root / hit.image,
        hit.level,
        opacity,
        boundaries_only,
        roots=[root],
        index_path=session.index_path,
    )


def build_demo(app: Explorer) -> gr.Blocks:
    """The Blocks layout; every event calls one of the handlers above."""
    with gr.Blocks(title="HSG Explorer", delete_cache=(CACHE_SWEEP_S, CACHE_TTL_S)) as demo:
        session = gr.State(Session(), time_to_live=SESSION_TTL_S)
        job = gr.State(IndexJob())
        gr.Markdown(
            "# HSG Explorer\nUnsupervised hierarchical segmentation (HSG, CVPR 2022): slide from fine "
            "segments to whole regions, click a region to find similar ones in the index."
        )
        with gr.Tab("Explore"):
            # image | results side by side: at 1400x900 the gallery is in view next to the image clicked
            with gr.Row(equal_height=False):
                with gr.Column(scale=1):
                    view = gr.HTML(  # drawn, hovered and selected in the page (segment_canvas.py)
                        None,
                        html_template=CANVAS_HTML,
                        css_template=CANVAS_CSS,
                        js_on_load=CANVAS_JS,
                        selection=None,
                        level_control="#level",  # the slider below, followed without a round trip
                        elem_id="overlay",
                    )
                    level = gr.Slider(
                        0, 1, value=0, step=1, label="Level (0 = finest segments)", elem_id="level"
                    )
                    with gr.Row():
                        opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Opacity")
                        boundaries_only = gr.Checkbox(False, label="Boundaries only")
                    with gr.Accordion(
                        "Open an image (upload, paste or pick an example)", open=True
                    ):
                        upload = gr.Image(
                            label="Image (upload, paste or pick an example)",
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            height=240,
                            elem_id="upload",
                        )
                        upload.preprocess = (
                            upload_path  # the file goes to `load_image`, never decoded by gradio
                        )
                        examples = gr.Gallery(
                            [str(p) for p in app.examples],
                            label="Examples (from the index)",
                            columns=6,
                            height=200,
                            allow_preview=False,
                            elem_id="examples",
                        )
                with gr.Column(scale=1):
                    gallery = gr.HTML(  # the hits, inlined in the search's reply (hits_gallery.py)
                        None,
                        html_template=GALLERY_HTML,
                        css_template=GALLERY_CSS,
                        js_on_load=GALLERY_JS,
                        elem_id="hits",
                    )
                    with gr.Row():
                        k = gr.Slider(1, 32, value=8, step=1, label="Hits (k)", elem_id="k")
                        mode = gr.Radio(
                            ["same level", "every level"],
                            value="same level",
                            label="Retrieve at",
                            elem_id="mode",
                        )
                        one_per_image = gr.Checkbox(
                            True, label="One hit per image", elem_id="one_per_image"
                        )
                    with gr.Column(visible=False, elem_id="context_panel") as context_panel:
                        context = gr.Image(
                            label="Hit in context (the matched region outlined)",
                            interactive=False,
                            height=300,
                            elem_id="context",
                        )
                        context_caption = gr.Markdown(elem_id="context_caption")
                        with gr.Row():
                            more_btn = gr.Button("Find more like this", elem_id="more_like_this")
                            explore_btn = gr.Button("Explore this image", elem_id="explore_hit")
                    chain = gr.Gallery(  # the parts-to-whole strip
                        label="The selection at every level (parts to whole)",
                        columns=6,
                        height=170,
                        allow_preview=False,
                        elem_id="strip",
                    )
                    pick = gr.Dropdown(
                        [],
                        label="Or pick a region of the hierarchy (the sunburst's nodes)",
                        elem_id="pick",
                    )
            with gr.Row():
                tree_plot = gr.Plot(label="Hierarchy (sunburst)")
                with gr.Column():
                    gr.Markdown(
                        "**Embedding map** of the index's regions: click a point to see it in "
                        "context; drag a lasso (shift: a box) to fill the gallery; click a level "
                        "in the legend to hide it."
                    )
                    map_plot = gr.HTML(  # drawn in the page (embedding_map.py); value set on load
                        None,
                        html_template=MAP_HTML,
                        css_template=MAP_CSS,
                        js_on_load=MAP_JS,
                        marks=None,
                        elem_id="embedding-map",
                    )
            with gr.Row():
                export_btn = gr.Button("Hierarchy (labels, overlays, JSON)", elem_id="export")
                mask_btn, cutout_btn = (
                    gr.Button("Region mask (PNG)", elem_id="export_mask"),
                    gr.Button("Region cut-out (PNG)", elem_id="export_cutout"),
                )
                hits_btn = gr.Button("Hits (CSV)", elem_id="export_hits")
                crops_btn = gr.Button("Hits (zip of crops)", elem_id="export_crops")
                export_file = gr.File(label="Download", elem_id="download")
            with gr.Row(visible=False):  # the HTTP API's inputs and outputs (gradio_client)
                click_x, click_y = gr.Number(0, precision=0), gr.Number(0, precision=0)
                click_btn, render_btn = gr.Button("click"), gr.Button("render")
                rendered = gr.Image(label="overlay rendered on the server", format="png")
        with gr.Tab("Index"):
            folder = gr.Dropdown(  # folders under the allowed roots; a path may be typed too
                folder_choices(app.data_roots),
                value=None,
                allow_custom_value=True,
                label=f"Folder to index (inside: {', '.join(str(r) for r in app.data_roots)})",
                elem_id="folder",
            )
            with gr.Row():
                build_btn, update_btn, cancel_btn = (
                    gr.Button("Build"),
                    gr.Button("Update"),
                    gr.Button("Cancel"),
                )
            info = gr.Dataframe(
                info_rows(app.index.info() if app.index else {}),
                headers=["", "this session's index"],
                interactive=False,
                elem_id="index_info",
            )
        shown = [opacity, boundaries_only]
        image_outputs = [
            session,
            view,
            level,
            chain,
            gallery,
            tree_plot,
            map_plot,
            pick,
            context_panel,
        ]
        upload.change(
            lambda s, *a: _on_image(app, *a, index_path=s.index_path),
            [session, upload, level, *shown],
            image_outputs,
            concurrency_limit=1,
            api_name="load_image",
        )
        # level, opacity and boundaries are drawn by the page: no server call
        for control, method in ((level, "setLevel"), (opacity, "setOpacity")):
            control.change(None, control, None, js=f"(v) => {{ window.hsgCanvas?.{method}(v); }}")
        boundaries_only.change(
            None, boundaries_only, None, js="(v) => { window.hsgCanvas?.setBoundaries(v); }"
        )
        render_btn.click(
            lambda s, *a: image_file(render(s, *a)),
            [session, level, *shown],
            rendered,
            api_name="render",
        )
        click_inputs = [level, *shown, k, mode, one_per_image]

        def on_canvas_click(s, evt: gr.EventData, *rest):
            return (*_on_canvas_click(app, s, evt, *rest), gr.update(visible=False))

        view.click(  # the gallery first; the strip and the map follow
            on_canvas_click,
            [session, k, mode, one_per_image],
            [session, gallery, context_panel],
            trigger_mode="always_last",
            api_name=False,
            # outside gradio's queue: the search takes ~30 ms, the queue's join + event stream
            # added ~150 ms in the browser (click -> hits p50 548 -> 390 ms back to back)
            queue=False,
        ).success(lambda s: selection_views(app, s), [session], [chain, map_plot], api_name=False)
        for setting in (k, mode, one_per_image):  # a new setting re-runs the current search
            setting.change(
                lambda s, *a: _on_settings(app, s, *a),
                [session, k, mode, one_per_image],
                [session, chain, gallery, map_plot],
                trigger_mode="always_last",
                api_name=False,
            )

        pick.select(
            lambda s, *a: _on_pick(app, s, *a),
            [session, pick, *click_inputs],
            [session, view, chain, gallery, map_plot, level],
            api_name=False,
        )
        click_btn.click(
            lambda s, x, y, *rest: _on_click(app, s, x, y, *rest),
            [session, click_x, click_y, *click_inputs],
            [session, rendered, chain, gallery, map_plot],
            api_name="click_xy",
        )

        def on_example(s, evt: gr.SelectData, *rest):
            return open_path(
                app, app.examples[evt.index], *rest, roots=app.data_roots, index_path=s.index_path
            )

        examples.select(
            on_example, [session, level, *shown], image_outputs, concurrency_limit=1, api_name=False
        )

        def on_hit(s, evt: gr.EventData):
            return _on_hit(app, s, event_data(evt).get("index", -1))

        gallery.click(
            on_hit,
            [session],
            [session, context, context_caption, context_panel],
            trigger_mode="always_last",
            api_name=False,
        )

        def on_map_click(s, evt: gr.EventData):
            return _on_map_click(app, s, evt)

        def on_map_select(s, evt: gr.EventData):
            return _on_map_select(app, s, evt)

        map_plot.click(
            on_map_click,
            [session],
            [session, context, context_caption, context_panel],
            trigger_mode="always_last",
            api_name=False,
        )
        map_plot.select(
            on_map_select,
            [session],
            [session, gallery, map_plot],
            trigger_mode="always_last",
            api_name=False,
        )
        demo.load(  # folders added since the server started
            lambda: gr.update(choices=folder_choices(app.data_roots)),
            None,
            [folder],
            api_name=False,
        )

        def map_of_session(s):
            return gr.HTML(value=map_payload(app.index_of(s)), marks=None)

        demo.load(  # the map of the index this page searches (not in the page config: ~150 KB)
            map_of_session,
            [session],
            [map_plot],
            api_name=False,
        )
        more_btn.click(
            lambda s, *a: _on_more_like_hit(app, s, *a),
            [session, k, mode, one_per_image],
            [session, gallery],
            api_name="more_like_hit",
        )
        explore_btn.click(
            lambda s, *a: _on_explore_hit(app, s, *a),
            [session, *shown],
            image_outputs,
            concurrency_limit=1,
            api_name=False,
        )
        for button, export, name in (
            (export_btn, export_zip, "export"),
            (mask_btn, export_mask, "export_mask"),
            (cutout_btn, export_cutout, "export_cutout"),
            (hits_btn, export_hits_csv, "export_hits"),
            (crops_btn, lambda s: export_hits_zip(app.index_of(s), s), "export_crops"),
        ):
            button.click(user_errors(export), [session], export_file, api_name=name)
        # one index job at a time, Build and Update alike: a second one waits in the queue
        index_job = [
            folder,
            job,
            session,
        ]  # the finished index becomes the one this session searches
        for button, mode in ((build_btn, "build"), (update_btn, "update")):
            button.click(
                user_errors(lambda f, j, s, mode=mode: run_index_job(app, f, mode, j, s)),
                index_job,
                [info, job, session],
                concurrency_limit=1,
                concurrency_id="index_job",
                api_name=f"{mode}_index",
            ).success(map_of_session, [session], [map_plot], api_name=False)  # its new index
        cancel_btn.click(lambda j: (j.stop.set(), j)[1], [job], [job], queue=False, api_name=False)
    return demo


# ----------------------------------------------------------------------------- entry point
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
    login = (
        ""
        if logins
        else f"; no login is required (give --auth-file FILE or set {AUTH_ENV}=user:password)"
    )
    return [
        f"hsg: warning: serving on {where}: anyone who reaches it can use the explorer and download "
        f"the data roots{login}"
    ]


def load_app(args: argparse.Namespace) -> Explorer:
    """`explorer_service.open_explorer` with the launch options, telling the terminal each step.

    Bad input (checkpoint, index, data folder) ends the program with one line naming the file."""
    from hsg_core.weights import WeightsMissingError
    from index import IndexFormatError

    try:
        return open_explorer(args.checkpoint, args.device, args.data, args.index, args.data_root)
    except (WeightsMissingError, IndexFormatError, ValueError, OSError) as err:
        raise SystemExit(f"hsg: error: {one_line(err)}") from None


class UploadBudget:
    """ASGI middleware: a token bucket on the bytes POSTed to gradio's upload routes, for all clients together.

    gradio bounds each file (`max_file_size`) and deletes old ones (`delete_cache`) but has no total: an
    unauthenticated client could write 62 MB/s into its upload folder. Here an upload is admitted only if
    its Content-Length fits the bucket (`burst` bytes, refilled at `bytes_per_hour`); others get HTTP 429
    at once, before any byte is read, and a body without a length gets 411. With files deleted after
    CACHE_TTL_S (looked for every CACHE_SWEEP_S), the folder holds at most
    burst + bytes_per_hour x (CACHE_TTL_S + CACHE_SWEEP_S) / 3600 of uploads."""

    ROUTES = (
        "/upload",
        "/process_recording",
    )  # gradio's routes that write a request's body to disk

    def __init__(
        self,
        app: Callable,
        bytes_per_hour: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/").endswith(self.ROUTES)
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not self.guards(scope):
            return await self.app(scope, receive, send)
        from starlette.responses import PlainTextResponse

        length = dict(scope["headers"]).get(b"content-length", b"")
        if not length.isdigit():
            return await PlainTextResponse("an upload needs a Content-Length", status_code=411)(
                scope, receive, send
            )
        if not self.admit(int(length)):
            return await PlainTextResponse(
                "the server takes no more uploads for now: try again in a few minutes",
                status_code=429,
                headers={"Retry-After": "60"},
            )(scope, receive, send)
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


def launch_options(
    args: argparse.Namespace, app: Explorer, auth: list[tuple[str, str]] | None = None
) -> dict:
    """Safe defaults (SECURITY.md): loopback unless --host, no share link unless --share, bounded
    uploads and session memory, files served only from the data roots, a login when `auth` is given."""
    return {
        "server_name": args.host,
        "server_port": args.port,
        "share": args.share,
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [str(p) for p in app.data_roots],
        "state_session_capacity": args.max_sessions,
        "show_error": False,
        "auth": auth,
        "app_kwargs": {"middleware": [upload_budget()]},
        "js": TILE_TITLES_JS,
    }


def launch(
    app: Explorer, args: argparse.Namespace, auth: list[tuple[str, str]] | None = None, **extra
) -> gr.Blocks:
    """Build the UI and serve it with `launch_options` (extra: other gradio launch arguments); at
    most `MAX_QUEUE` requests wait, later ones are refused at once."""
    demo = build_demo(app)
    demo.queue(default_concurrency_limit=4, max_size=MAX_QUEUE).launch(
        **launch_options(args, app, auth), **extra
    )
    return demo


def serve(args: argparse.Namespace) -> int:
    """Serve the explorer with `args` (`serve_options`) until stopped (0); bad input is one line on
    stderr and 2."""
    try:
        logins = read_logins(args.auth_file, os.environ.get(AUTH_ENV))
        upload_budget()  # a bad $HSG_UPLOAD_MB_PER_HOUR is one line, before the model loads
    except (ValueError, OSError) as err:
        print(f"hsg: error: {one_line(err)}", file=sys.stderr)
        return 2
    try:
        app = load_app(args)
    except (
        SystemExit
    ) as err:  # load_app's one-line refusal of a bad checkpoint, index or data folder
        print(err, file=sys.stderr)
        return 2
    for line in exposure_warnings(args.host, args.share, logins):
        print(line, file=sys.stderr)
    print(
        f"{NOTE}serving on http://{args.host}:{args.port} (Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    launch(app, args, auth=logins)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python app.py`: parse the options (`serve_options`) and `serve`."""
    return serve(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
