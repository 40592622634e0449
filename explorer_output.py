"""What the explorer shows and hands out for a session: figures (hierarchy sunburst, embedding map)
and downloads (label maps + hierarchy zip, region mask, cut-out, hits CSV). No gradio.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from explorer import Session, require_image
from hsg_core.viz import palette

if TYPE_CHECKING:
    from index import SegmentIndex

CACHE_TTL_S = 3600  # downloads are deleted after this long


# ----------------------------------------------------------------------------- figures
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
    fig.add_trace(
        go.Sunburst(
            ids=ids,
            parents=parents,
            values=values,
            labels=labels,
            branchvalues="total",
            marker={"colors": colours},
            maxdepth=3,
        )
    )
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, height=360)
    return fig


def fit_projection(vectors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
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

    project: Callable[[np.ndarray], np.ndarray]  # [n, D] or [D] vectors -> [n, 2]
    xy: np.ndarray  # [S, 2] the sample's coordinates
    levels: np.ndarray  # [S]
    images: np.ndarray  # [S] source paths (hover text)


_REGION_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> RegionMap


def region_map(index: SegmentIndex, max_points: int = 4000) -> RegionMap:
    """The index's RegionMap (the SVD/UMAP fit runs on the first click only, not on every click)."""
    cached = _REGION_MAPS.get(index)
    if cached is None:
        meta = index.metadata
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(len(meta), size=min(max_points, len(meta)), replace=False))
        vectors = index.vectors(meta["id"].to_numpy()[rows])
        project = fit_projection(vectors)
        cached = RegionMap(
            project,
            project(vectors),
            meta["level"].to_numpy()[rows],
            meta["image"].to_numpy()[rows],
        )
        _REGION_MAPS[index] = cached
    return cached


def embedding_figure(index: SegmentIndex | None, session: Session) -> go.Figure:
    """Map of indexed regions (PCA, or UMAP when installed), the query and its hits highlighted."""
    fig = go.Figure()
    if index is None or len(index) == 0 or session.selected is None:
        return fig
    regions = region_map(index)
    fig.add_trace(
        go.Scattergl(
            x=regions.xy[:, 0],
            y=regions.xy[:, 1],
            mode="markers",
            name="indexed regions",
            marker={"size": 4, "color": regions.levels, "opacity": 0.4},
            text=regions.images,
        )
    )
    if session.hits:
        hxy = regions.project(index.vectors(np.array([h.id for h in session.hits])))
        fig.add_trace(
            go.Scatter(
                x=hxy[:, 0],
                y=hxy[:, 1],
                mode="markers",
                name="hits",
                marker={"size": 10, "symbol": "circle-open", "color": "orange"},
            )
        )
    level, region = session.selected
    q = regions.project(session.prediction.levels[level].embeddings[region])
    fig.add_trace(
        go.Scatter(
            x=q[:, 0],
            y=q[:, 1],
            mode="markers",
            name="query",
            marker={"size": 14, "symbol": "star", "color": "red"},
        )
    )
    fig.update_layout(
        margin={"l": 0, "r": 0, "t": 20, "b": 0}, height=360, legend={"orientation": "h"}
    )
    return fig


def export_folder() -> Path:
    """A fresh folder for one download under the temp dir's hsg-exports/ (those older than
    CACHE_TTL_S are deleted first: bounded disk use, they were served long ago)."""
    exports = Path(tempfile.gettempdir()) / "hsg-exports"
    exports.mkdir(exist_ok=True)
    for old in exports.iterdir():
        if old.stat().st_mtime < time.time() - CACHE_TTL_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="export-", dir=exports))


def export_zip(session: Session) -> str:
    """Label PNG per level (uint16) + hierarchy JSON, zipped in a fresh temp folder; its path.

    Raises:
        ValueError: no image is open (says what to do).
    """
    pred = require_image(session, "export")
    folder = export_folder()
    path = folder / "hierarchy.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for lv, level in enumerate(pred.levels):
            png = folder / f"level{lv}_labels.png"
            Image.fromarray(level.label_map.astype(np.uint16)).save(png)
            zf.write(png, png.name)
        zf.writestr("hierarchy.json", pred.to_json())
    return str(path)


def selected_mask(session: Session, action: str) -> tuple[np.ndarray, str]:
    """[H, W] bool mask of the selected region and its name 'L<level>_region<id>'.

    Raises:
        ValueError: no image, or no region selected (says what to do).
    """
    pred = require_image(session, action)
    if session.selected is None:
        raise ValueError(
            f"{action}: select a region first (click the image, or pick one from the list)"
        )
    level, region = session.selected
    return pred.levels[level].label_map == region, f"L{level}_region{region}"


def export_mask(session: Session) -> str:
    """The selected region as a PNG mask (255 inside, 0 outside) at the image's size; its path."""
    mask, name = selected_mask(session, "download the mask")
    path = export_folder() / f"{name}_mask.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return str(path)


def export_cutout(session: Session) -> str:
    """The selected region cut out: an RGBA PNG of its bounding box, transparent outside it; its path."""
    mask, name = selected_mask(session, "download the cut-out")
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rgba = np.dstack([session.image[box], mask[box].astype(np.uint8) * 255])
    path = export_folder() / f"{name}_cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return str(path)


HIT_COLUMNS = ["rank", "image", "level", "region", "score", "x0", "y0", "x1", "y1"]


def export_hits_csv(session: Session) -> str:
    """The hits in the gallery, in order, as CSV (`HIT_COLUMNS`; box x1/y1 exclusive); its path."""
    import csv

    require_image(session, "download the hits")
    if not session.hits:
        raise ValueError(
            "download the hits: select a region first, its similar regions are what is saved"
        )
    path = export_folder() / "hits.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HIT_COLUMNS)
        for rank, hit in enumerate(session.hits, 1):
            writer.writerow(
                [
                    rank,
                    spreadsheet_safe(hit.image),
                    hit.level,
                    hit.region,
                    f"{hit.score:.6f}",
                    *hit.box,
                ]
            )
    return str(path)


def spreadsheet_safe(text: str) -> str:
    """`text` with a leading apostrophe when a spreadsheet would read it as a formula (a file named
    `=HYPERLINK(...).jpg` stays a name: OWASP's CSV-injection rule for = + - @ tab and CR)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
