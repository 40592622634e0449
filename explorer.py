"""The explorer without its UI, one session at a time: session state, select at (x, y), retrieval,
hits in context, renders. What sessions share and how they start (folders, the `Explorer`, index
jobs, opening an image) is in `explorer_service.py`; figures and downloads in `explorer_output.py`.

Typed against `HSGPredictor` and `SegmentIndex`; bad input raises `ValueError` (or `OSError`) with a
one-line message. Never imports gradio: `app.py` lays these functions out in Blocks and wires them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from hsg_core.images import load_image
from hsg_core.types import Prediction
from hsg_core.viz import (
    hierarchy_colours,
    highlight,
    outline_width,
    outlined_crop,
    overlay_regions,
)
from hsg_files import escape_controls, is_inside

if TYPE_CHECKING:
    from hsg_core.predictor import HSGPredictor
    from index import Hit, SegmentIndex


@dataclass
class Session:
    """What one browser tab has: its image, its hierarchy, its selection (deep-copyable)."""

    image: np.ndarray | None = None
    prediction: Prediction | None = None
    source: str = ""  # relative path in the index, when the image came from it
    selected: tuple[int, int] | None = None  # (level, region)
    pixel: tuple[int, int] | None = (
        None  # (x, y) clicked inside the selected region, None when picked by id
    )
    hits: list = field(default_factory=list)  # the Hits shown in the gallery, in order
    index_path: str = (
        ""  # the index this tab searches: one it built in the Index tab, or "" (the startup index)
    )
    image_hash: str = ""  # sha256 of the opened file's bytes ("" for an array)
    # "find more like this" (`more_like_hit`): the hits are this indexed region's, and `rerun`
    # repeats that search; None = the query is the selected region of the open image
    query_hit: Hit | None = None
    context: Hit | None = None  # the hit opened in context (`open_hit`); the query stays as it is


def one_line(err: BaseException) -> str:
    """An error's message on one line, control characters escaped (`hsg_files.escape_controls`: a
    file name cannot forge a line or send terminal escapes), or its type's name when it has none."""
    return escape_controls(str(err).strip()) or type(err).__name__


def require_inside(path: Path, roots: list[Path]) -> Path:
    """`path` when its real location (links resolved) lies inside one of `roots`.

    Raises:
        ValueError: it leads elsewhere (a link out of a data root, placed after the listing).
    """
    if not any(is_inside(path, root) for root in roots):
        raise ValueError(f"{Path(path).name}: not opened, it leads outside the data folder")
    return Path(path)


def require_image(session: Session, action: str) -> Prediction:
    """The session's prediction; a ValueError telling what to do when no image is open yet."""
    if session.prediction is None:
        raise ValueError(f"{action}: load an image first (upload one, or pick an example)")
    return session.prediction


# ----------------------------------------------------------------------------- open an image
def set_image(predictor: HSGPredictor, image: np.ndarray, source: str = "") -> Session:
    """Run the model once on a new image; slider moves and clicks then only index this."""
    image = predictor.fit_input(image, "uploaded image")  # checked, in the predictor's input frame
    return Session(image=image, prediction=predictor.predict(image), source=source)


def indexed_name(index: SegmentIndex | None, image_hash: str) -> str:
    """The indexed image whose file has these bytes (its relative path), or ""."""
    if index is None or not image_hash:
        return ""
    return index.image_with_hash(image_hash)


# ----------------------------------------------------------------------------- renders
def clamp_level(session: Session, level: int) -> int:
    """`level` limited to the levels of the session's hierarchy."""
    return int(min(max(int(level), 0), session.prediction.num_levels - 1))


def level_colours(prediction: Prediction) -> list[np.ndarray]:
    """Per level (finest first), [N_l, 3] uint8 RGB of each region: a shade of its parent's colour
    (`hsg_core.viz.hierarchy_colours`), the one colour rule of overlays, strip and sunburst."""
    return hierarchy_colours([level.parents for level in prediction.levels])


def render(
    session: Session, level: int, opacity: float = 0.45, boundaries_only: bool = False
) -> np.ndarray | None:
    """The image with the regions of `level` overlaid in `level_colours` (and the selected region
    highlighted)."""
    if session.prediction is None:
        return None
    level = clamp_level(session, level)
    labels = session.prediction.levels[level].label_map
    colours = level_colours(session.prediction)[level]
    out = overlay_regions(
        session.image, labels, alpha=opacity, fill=not boundaries_only, colours=colours
    )
    if session.selected is not None:
        sel_level, region = session.selected
        chain = session.prediction.ancestors(sel_level, region)
        if level >= sel_level:
            out = highlight(out, labels == chain[level - sel_level], dim=0.35)
    return out


def chain_rows(session: Session, x: int, y: int) -> list[list]:
    """One row per level for the regions containing pixel (x, y): level, region, area, share, parent."""
    pred = session.prediction
    total = pred.image_size[0] * pred.image_size[1]
    rows = []
    for lv, region in enumerate(pred.chain_at(x, y)):
        level = pred.levels[lv]
        rows.append(
            [
                lv,
                region,
                int(level.areas[region]),
                f"{100 * level.areas[region] / total:.1f}%",
                int(level.parents[region]),
            ]
        )
    return rows


# ----------------------------------------------------------------------------- retrieval
def query_hits(
    index: SegmentIndex | None,
    session: Session,
    level: int,
    region: int,
    *,
    k: int,
    every_level: bool,
    one_per_image: bool,
) -> dict[int, list[Hit]]:
    """Hits for the region (same level) or for its chain (every level), excluding the query image
    (`Session.source`: the indexed file it was opened from, or one with the same bytes)."""
    if index is None:
        return {}
    pred = session.prediction
    exclude = session.source or None
    chain = pred.ancestors(level, region) if every_level else [region]
    vectors = {
        level + i: pred.levels[level + i].embeddings[r]
        for i, r in enumerate(chain)
        if level + i < index.num_levels
    }
    return index.search_across_levels(
        vectors, k=k, exclude_image=exclude, one_per_image=one_per_image
    )


@dataclass(frozen=True)
class HitTile:
    """One hit as a gallery tile.

    Attributes:
        crop: [h, w, 3] uint8, the hit's region with a margin (`hsg_core.viz.crop_box`: each side
            out by 15 % of the region's box plus 2 px, clipped to the image), region outlined.
        caption: 'L<level> · <score> · <image>' shown under the tile.
        title: the image's full relative path, control characters escaped (a hover title).
        hit: the hit itself.
    """

    crop: np.ndarray
    caption: str
    title: str
    hit: Hit


def hit_image(index: SegmentIndex, hit: Hit) -> np.ndarray:
    """[H, W, 3] uint8: the hit's image read from the index's data root, at the size its regions
    were indexed at (`Hit.image_size`), so the stored masks fit it.

    Raises:
        ValueError: the file leads outside the data root, is gone, or cannot be read (names it).
    """
    path = require_inside(index.data_root / hit.image, [index.data_root])
    if not path.exists():
        raise ValueError(
            f"{escape_controls(hit.image)}: not in the data folder any more (moved or deleted "
            "since it was indexed): update the index"
        )
    height, width = hit.image_size
    image = load_image(path, max_side=max(height, width))
    if image.shape[:2] != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height)))
    return image


def hit_tile(index: SegmentIndex, hit: Hit, image: np.ndarray | None = None) -> HitTile:
    """The gallery tile of `hit`; `image`: its `hit_image` when already read (several hits of one
    image read it once)."""
    image = hit_image(index, hit) if image is None else image
    crop = outlined_crop(image, index.region_mask(hit), hit.box)
    caption = f"L{hit.level} · {hit.score:.3f} · {hit.image}"
    return HitTile(crop, caption, escape_controls(hit.image), hit)


def tiles_of(index: SegmentIndex, hits: list[Hit]) -> list[HitTile]:
    """`hit_tile` of every hit, in order, each source image read once."""
    images: dict[str, np.ndarray] = {}
    for hit in hits:
        if hit.image not in images:
            images[hit.image] = hit_image(index, hit)
    return [hit_tile(index, hit, images[hit.image]) for hit in hits]


def hit_tiles(index: SegmentIndex, hits_by_level: dict[int, list[Hit]]) -> tuple[list, list]:
    """Gallery items (outlined crop of each hit's source image, caption) and the hits in order,
    level by level; `tiles_of` gives the same tiles with their hover titles."""
    order = [hit for _, hits in sorted(hits_by_level.items()) for hit in hits]
    return [(tile.crop, tile.caption) for tile in tiles_of(index, order)], order


def select_at(
    index: SegmentIndex | None,
    session: Session,
    x: int,
    y: int,
    level: int,
    *,
    k: int = 8,
    every_level: bool = False,
    one_per_image: bool = True,
) -> tuple[Session, list[list], list]:
    """A click at (x, y) on the overlay: select the region there, list its chain, query the index."""
    pred = require_image(session, "click")
    level = clamp_level(session, level)
    region = pred.segment_at(level, int(x), int(y))
    return select_region(
        index,
        session,
        level,
        region,
        pixel=(int(x), int(y)),
        k=k,
        every_level=every_level,
        one_per_image=one_per_image,
    )


def select_region(
    index: SegmentIndex | None,
    session: Session,
    level: int,
    region: int,
    *,
    pixel: tuple[int, int] | None = None,
    k: int = 8,
    every_level: bool = False,
    one_per_image: bool = True,
) -> tuple[Session, list[list], list]:
    """Select a region by (level, id) and query the index.

    pixel: the clicked (x, y), inside the region: the chain table describes it. None (the region was
    picked from the list) describes the region's first pixel in row-major order.
    Returns the session, the chain rows and the gallery items.
    """
    pred = require_image(session, "select a region")
    if not 0 <= level < pred.num_levels:
        raise ValueError(f"no level {level}: the hierarchy has levels 0..{pred.num_levels - 1}")
    count = pred.levels[level].num_regions
    if not 0 <= region < count:
        raise ValueError(f"level {level} has regions 0..{count - 1}, not {region}")
    if pixel is None or pred.segment_at(level, *pixel) != region:
        ys, xs = np.nonzero(pred.levels[level].label_map == region)
        pixel = (int(xs[0]), int(ys[0]))
    session.selected, session.pixel = (level, region), pixel
    session.query_hit = session.context = None
    hits = query_hits(
        index,
        session,
        level,
        region,
        k=int(k),
        every_level=every_level,
        one_per_image=one_per_image,
    )
    items, session.hits = hit_tiles(index, hits)
    return session, chain_rows(session, *pixel), items


def rerun(
    index: SegmentIndex | None, session: Session, k: int, every_level: bool, one_per_image: bool
) -> tuple[Session, list[list], list] | None:
    """The current search again with new settings (k, same/every level, one hit per image): the
    selected region is queried anew, its clicked pixel kept for the chain table.

    After "find more like this" (`Session.query_hit`) that search is the one re-run.
    Returns what `select_region` returns, or None when nothing is selected (nothing to re-run).
    """
    if session.query_hit is not None:
        session, items = more_like_hit(
            index,
            session,
            session.query_hit,
            k=int(k),
            every_level=every_level,
            one_per_image=one_per_image,
        )
        rows = chain_rows(session, *session.pixel) if session.pixel is not None else []
        return session, rows, items
    if session.prediction is None or session.selected is None:
        return None
    level, region = session.selected
    return select_region(
        index,
        session,
        level,
        region,
        pixel=session.pixel,
        k=int(k),
        every_level=every_level,
        one_per_image=one_per_image,
    )


# ----------------------------------------------------------------------------- hits in context
def hit_at(session: Session, position: int) -> Hit:
    """The hit at `position` (0-based) of the session's gallery (`Session.hits`).

    Raises:
        ValueError: no such tile (no search yet, or the gallery is shorter).
    """
    if not 0 <= int(position) < len(session.hits):
        raise ValueError(
            f"no hit {int(position) + 1}: the gallery shows {len(session.hits)}"
            + ("" if session.hits else " (select a region first)")
        )
    return session.hits[int(position)]


def open_hit(index: SegmentIndex | None, session: Session, hit: Hit) -> tuple[Session, np.ndarray]:
    """A hit in context: its whole image, read from the index's data root, with the matched region
    (its stored mask) outlined and the rest slightly dimmed.

    The query is kept: the session's image, selection and hits are untouched; `Session.context`
    records the hit shown. Returns the session and the [H, W, 3] uint8 image at `Hit.image_size`,
    outlined `outline_width` pixels wide (1 per 256 px of the longer side).

    Raises:
        ValueError: no index, or the hit's file is outside the data root, gone or unreadable
            (the message names it).
    """
    if index is None:
        raise ValueError("open a hit: no index is open")
    image = hit_image(index, hit)
    session.context = hit
    return session, highlight(
        image, index.region_mask(hit), dim=0.25, width=outline_width(image.shape)
    )


def hit_chain(index: SegmentIndex, hit: Hit) -> dict[int, int]:
    """{level: region} of the hit's region and the regions enclosing it in its image, from the
    hit's level up (read from the index: the hit's image need not be open)."""
    ys, xs = np.nonzero(index.region_mask(hit))
    chain = index.regions_at(hit.image, int(xs[0]), int(ys[0]))
    return {level: region for level, region in chain.items() if level >= hit.level}


def more_like_hit(
    index: SegmentIndex | None,
    session: Session,
    hit: Hit,
    *,
    k: int = 8,
    every_level: bool = False,
    one_per_image: bool = True,
) -> tuple[Session, list]:
    """Find more like this: the index searched with the hit's stored vector as the query.

    The options are a click's: `k` per level, the hit's level or its chain (`every_level`, as
    `hit_chain`), `one_per_image`; and as a click never returns the query's own image, the hit's
    image (the hit with it) is left out. The hits replace the gallery (`Session.hits`) and
    `Session.query_hit` records the query; the selection of the open image is kept.
    Returns the session and the gallery items (as `select_region`).
    """
    if index is None:
        raise ValueError("find more like this: no index is open")
    chain = hit_chain(index, hit) if every_level else {hit.level: hit.region}
    hits = {
        level: index.search_region(
            hit.image, level, region, int(k), exclude_image=True, one_per_image=one_per_image
        )
        for level, region in chain.items()
    }
    items, session.hits = hit_tiles(index, hits)
    session.query_hit = hit
    return session, items


def region_choices(session: Session) -> list[tuple[str, str]]:
    """Every region of the hierarchy as (label 'L<level>:<id> (<share>%)', value '<level>:<id>'),
    coarsest first (the sunburst's nodes)."""
    pred = session.prediction
    if pred is None:
        return []
    total = pred.image_size[0] * pred.image_size[1]
    return [
        (f"L{lv}:{r} ({100 * pred.levels[lv].areas[r] / total:.1f}%)", f"{lv}:{r}")
        for lv in range(pred.num_levels - 1, -1, -1)
        for r in range(pred.levels[lv].num_regions)
    ]


def parse_choice(value: str) -> tuple[int, int]:
    """(level, region) of a `region_choices` value '<level>:<id>'.

    Raises:
        ValueError: not of that form.
    """
    level, sep, region = str(value).partition(":")
    if not sep or not level.isdigit() or not region.isdigit():
        raise ValueError(f"{value!r}: expected <level>:<region>")
    return int(level), int(region)
