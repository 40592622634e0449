"""What the explorer shows and hands out for a session: figures (hierarchy sunburst, parts-to-whole
strip) and downloads (the hierarchy in `hsg segment`'s format, region mask, cut-out, hits as CSV
and as a zip of crops). No gradio.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from explorer import Session, level_colours, require_image
from hits_gallery import TILE_SIDE
from hsg_core.export import png_bytes, segmentation_zip
from hsg_core.images import downscale_to
from hsg_core.viz import crop_box, highlight, outline_width

if TYPE_CHECKING:
    from index import SegmentIndex

CACHE_TTL_S = 3600  # downloads are deleted after this long
SWEEP_EVERY_S = 60  # export_folder looks for such folders at most this often
_LAST_SWEEP: dict[str, float] = {}  # exports folder -> time of its last sweep


# ----------------------------------------------------------------------------- figures
def hierarchy_figure(session: Session) -> go.Figure:
    """Sunburst of the hierarchy: coarsest level inside, segments outside; sized by area."""
    fig = go.Figure()
    pred = session.prediction
    if pred is None:
        return fig
    ids, parents, values, labels, colours = [], [], [], [], []
    top = pred.num_levels - 1
    tables = level_colours(pred)
    for lv in range(top, -1, -1):
        level, colour = pred.levels[lv], tables[lv]
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


@dataclass(frozen=True)
class StripPanel:
    """One level of the parts-to-whole strip.

    Attributes:
        level, region: the region containing the selected pixel at this level.
        area: its pixels; share: its fraction of the image (0..1).
        box: (x0, y0, x1, y1) of the crop in image pixels, x1/y1 exclusive.
        crop: [h, w, 3] uint8, the image in `box`, the region outlined in its level colour.
        caption: 'L<level> · region <id> · <area> px (<share> %)'.
    """

    level: int
    region: int
    area: int
    share: float
    box: tuple[int, int, int, int]
    crop: np.ndarray
    caption: str


def parts_strip(session: Session) -> list[StripPanel]:
    """The parts-to-whole chain of the selection: a panel per level, finest first (level 0 .. top).

    Each panel crops the region containing the selected pixel (`Session.pixel`) at that level with
    the tiles' margin (`hsg_core.viz.crop_box`), outlines it in its `level_colours` colour and dims
    the rest, so the panels grow as regions merge. [] when no image is open or nothing is selected.
    """
    pred = session.prediction
    if pred is None or session.selected is None or session.pixel is None:
        return []
    colours, total = level_colours(pred), pred.image_size[0] * pred.image_size[1]
    panels = []
    for lv, region in enumerate(pred.chain_at(*session.pixel)):
        level = pred.levels[lv]
        x0, y0, x1, y1 = box = crop_box(tuple(level.boxes[region]), pred.image_size)
        crop = highlight(
            session.image[y0:y1, x0:x1],
            level.label_map[y0:y1, x0:x1] == region,
            dim=0.35,
            colour=tuple(int(c) for c in colours[lv][region]),
            width=outline_width((y1 - y0, x1 - x0)),
        )
        area = int(level.areas[region])
        caption = f"L{lv} · region {region} · {area:,} px ({100 * area / total:.1f} %)"
        panels.append(StripPanel(lv, int(region), area, area / total, box, crop, caption))
    return panels


def export_folder() -> Path:
    """A fresh folder for one download or one gallery under the temp dir's hsg-exports/ (folders
    older than CACHE_TTL_S are deleted first, at most once per SWEEP_EVERY_S: every click writes
    here, and listing the folder on each one would grow with the sessions of the last hour)."""
    exports = Path(tempfile.gettempdir()) / "hsg-exports"
    exports.mkdir(exist_ok=True)
    now = time.time()
    if now - _LAST_SWEEP.get(str(exports), 0.0) >= SWEEP_EVERY_S:
        _LAST_SWEEP[str(exports)] = now
        remove_stale(exports, now - CACHE_TTL_S)
    return Path(tempfile.mkdtemp(prefix="export-", dir=exports))


def remove_stale(exports: Path, before: float) -> None:
    """Delete the folders in `exports` last changed before `before` (a Unix time)."""
    for old in exports.iterdir():
        try:
            stale = old.stat().st_mtime < before
        except FileNotFoundError:  # another session removed it meanwhile
            continue
        if stale:
            shutil.rmtree(old, ignore_errors=True)


def image_file(
    image: np.ndarray | None, folder: Path | None = None, max_side: int = 0, name: str = "image"
) -> str | None:
    """[h, w, 3] uint8 `image` written as `name`.jpg (quality 88; longer side cut to `max_side` when
    > 0, `downscale_to`) into `folder` (a fresh `export_folder` by default); its path, or None.

    The UI returns images to gradio as files: gradio copies a file into its cache through a temp
    file and a rename, while an array it encodes and writes in place, so two sessions showing the
    same tile at once could be sent a half-written file.
    """
    if image is None:
        return None
    path = (folder or export_folder()) / f"{name}.jpg"
    picture = downscale_to(np.ascontiguousarray(image[..., :3]), max_side)
    Image.fromarray(picture).save(path, format="JPEG", quality=88)
    return str(path)


def gallery_files(items: list[tuple[np.ndarray, str]]) -> list[tuple[str, str]]:
    """Gallery items (image, caption) with each image as a file (`image_file`, at most TILE_SIDE),
    in one folder."""
    if not items:
        return []
    folder = export_folder()
    return [
        (image_file(image, folder, TILE_SIDE, f"tile{i:02d}"), caption)
        for i, (image, caption) in enumerate(items)
    ]


def export_stem(session: Session) -> str:
    """File-name prefix of the open image's exports: its indexed name's stem, or 'image'."""
    stem = Path(session.source).stem if session.source else "image"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"


def export_zip(session: Session) -> str:
    """The open image's hierarchy in `hsg segment`'s format (`hsg_core.export`: per level label
    and colour PNGs, the hierarchy JSON), zipped in a fresh temp folder; its path.

    Raises:
        ValueError: no image is open (says what to do).
    """
    pred = require_image(session, "export")
    stem = export_stem(session)
    return str(segmentation_zip(pred, session.image, stem, export_folder() / f"{stem}_hsg.zip"))


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


def require_hits(session: Session, action: str) -> list:
    """The gallery's hits; a ValueError saying what to do when there are none."""
    require_image(session, action)
    if not session.hits:
        raise ValueError(f"{action}: select a region first, its similar regions are what is saved")
    return session.hits


def hits_csv_text(hits: list) -> str:
    """`hits` in order as CSV text (`HIT_COLUMNS`; box x1/y1 exclusive; names spreadsheet-safe)."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HIT_COLUMNS)
    for rank, hit in enumerate(hits, 1):
        writer.writerow(
            [rank, spreadsheet_safe(hit.image), hit.level, hit.region, f"{hit.score:.6f}", *hit.box]
        )
    return buffer.getvalue()


def export_hits_csv(session: Session) -> str:
    """The hits in the gallery, in order, as CSV (`hits_csv_text`); its path."""
    hits = require_hits(session, "download the hits")
    path = export_folder() / "hits.csv"
    path.write_text(hits_csv_text(hits), encoding="utf-8", newline="")
    return str(path)


def export_hits_zip(index: SegmentIndex | None, session: Session) -> str:
    """The hits' tiles (each region outlined in its image with a margin, as in the gallery) as
    PNGs named '<rank>_L<level>_<image stem>_r<region>.png', with hits.csv; zipped, its path."""
    from explorer import tiles_of

    hits = require_hits(session, "download the hit crops")
    if index is None:
        raise ValueError("download the hit crops: no index is open")
    path = export_folder() / "hits.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("hits.csv", hits_csv_text(hits))
        for rank, tile in enumerate(tiles_of(index, hits), 1):
            hit = tile.hit
            name = f"{rank:02d}_L{hit.level}_{Path(hit.image).stem}_r{hit.region}.png"
            archive.writestr(name, png_bytes(tile.crop))
    return str(path)


def spreadsheet_safe(text: str) -> str:
    """`text` with a leading apostrophe when a spreadsheet would read it as a formula (a file named
    `=HYPERLINK(...).jpg` stays a name: OWASP's CSV-injection rule for = + - @ tab and CR)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
