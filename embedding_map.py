"""The explorer's embedding map: a sample of the index's regions drawn, hovered and lassoed in the
page.

Once per index the server sends one payload (`map_payload`): the sample's region ids, their 2-D
positions (`explorer_output.region_map`'s projection, normalised to [0, 1]), levels and image names.
Per click it sends only the marks (`map_marks`): where the query lands and which regions are hits.
The page draws every point on one 2-D canvas (no WebGL), shows the image and level of the point
under the mouse, toggles levels from the legend, and tells the server two things: a click on a point
(event `click`, data {id, token}) and a lasso or shift-box selection (event `select`, data
{ids, token}). `clicked_id`, `selected_ids`, `hit_for_id` and `lasso_gallery` turn those into hits.

This module is gradio-free: the payloads, the event data checks and the component's HTML/CSS/JS as
strings that `app.py` hands to `gr.HTML`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer import hit_tiles
from index import Hit

if TYPE_CHECKING:
    from explorer import Session
    from index import SegmentIndex

MAX_POINTS = 4000  # regions drawn on the map (a fixed random sample beyond that)
MAX_SELECTION = 100_000  # ids accepted from one selection event
DECIMALS = 5  # of the normalised coordinates sent (1e-5 of the map: far below a pixel)
# one colour per level (Okabe-Ito, then two more): the legend's and the points'
LEVEL_COLOURS = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
    "#999999",
    "#7f3c8d",
)


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
    rows: np.ndarray  # [S] the sample's metadata rows (`sample_rows`)


_REGION_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> RegionMap


def region_map(index: SegmentIndex, max_points: int = 4000) -> RegionMap:
    """The index's RegionMap (the SVD/UMAP fit runs on the first click only, not on every click)."""
    cached = _REGION_MAPS.get(index)
    if cached is None:
        rows = sample_rows(len(index), max_points)
        vectors = index.vectors(index.region_rows(rows)["id"])
        project = fit_projection(vectors)
        cached = RegionMap(project, project(vectors), rows)
        _REGION_MAPS[index] = cached
    return cached


def level_colour(level: int) -> str:
    """'#rrggbb' of a level's points (the palette repeats after `len(LEVEL_COLOURS)` levels)."""
    return LEVEL_COLOURS[int(level) % len(LEVEL_COLOURS)]


@dataclass(frozen=True)
class MapLayout:
    """A sample of an index's regions placed on the map, computed once per index and sample size.

    Attributes:
        token: '<index_token>/<S>', the index and the sample (the page resets when it changes).
        ids: [S] int64 region ids of the sample, in metadata (= id) order.
        xy: [S, 2] float64 positions normalised to [0, 1] (x right, y up).
        levels: [S] int levels; image_codes: [S] int positions in `images`.
        images: the sample's image names (relative paths), each once.
        lo, span: [2] the projection's lower corner and extent (xy = (projected - lo) / span).
        total: regions in the index.
        project: [n, D] or [D] vectors -> [n, 2] raw positions (the fitted `region_map` projection).
    """

    token: str
    ids: np.ndarray
    xy: np.ndarray
    levels: np.ndarray
    image_codes: np.ndarray
    images: list[str]
    lo: np.ndarray
    span: np.ndarray
    total: int
    project: Callable[[np.ndarray], np.ndarray]


_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index -> {max_points: layout}


def index_token(index: SegmentIndex) -> str:
    """16 hex digits naming an index folder and its generation: which index (and which state of
    it) a map shows, without sending the server's path to the page."""
    name = f"{Path(index.path).resolve()}@{index.manifest.get('generation', 0)}"
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def sample_rows(count: int, max_points: int) -> np.ndarray:
    """[min(count, max_points)] sorted metadata rows: the map's fixed random sample (seed 0)."""
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(count, size=min(max_points, count), replace=False))


def sample_positions(index: SegmentIndex, rows: np.ndarray, regions: RegionMap) -> np.ndarray:
    """[S, 2] projected positions of the regions at metadata `rows`: those of `regions` (the index's
    `region_map`) when it sampled the same rows, else its projection applied to their vectors."""
    if np.array_equal(regions.rows, rows):
        return np.asarray(regions.xy, np.float64)
    return np.asarray(regions.project(index.vectors(index.region_rows(rows)["id"])), np.float64)


def map_layout(index: SegmentIndex, max_points: int = MAX_POINTS) -> MapLayout:
    """The index's `MapLayout` for `max_points` (cached per index: the projection runs once).

    Raises:
        ValueError: max_points < 1, the index is empty, or a region id is too large to travel as a
            JSON number (ids hold the level in bits 48+: levels up to 31 fit).
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    cached = _LAYOUTS.setdefault(index, {})
    if max_points in cached:
        return cached[max_points]
    if len(index) == 0:
        raise ValueError("the embedding map needs an index with regions; this one is empty")
    rows = sample_rows(len(index), max_points)
    sample = index.region_rows(rows)
    ids = sample["id"].astype(np.int64)
    if ids.size and int(ids.max()) >= 2**53:
        raise ValueError(f"region id {int(ids.max())} is beyond 2^53: the page cannot hold it")
    regions = region_map(index, max_points)
    raw = sample_positions(index, rows, regions)
    lo = raw.min(0)
    span = np.where(np.ptp(raw, 0) > 1e-12, np.ptp(raw, 0), 1.0)
    xy = np.where(np.ptp(raw, 0) > 1e-12, (raw - lo) / span, 0.5)
    images, codes = np.unique(sample["image"].astype(str), return_inverse=True)
    layout = MapLayout(
        token=f"{index_token(index)}/{len(ids)}",
        ids=ids,
        xy=xy,
        levels=sample["level"].astype(int),
        image_codes=codes.astype(int),
        images=images.tolist(),
        lo=lo,
        span=span,
        total=len(index),
        project=regions.project,
    )
    cached[max_points] = layout
    return layout


def empty_payload() -> dict:
    """The payload of a map with nothing to show (no index, or an empty one)."""
    return {
        "token": "",
        "ids": [],
        "x": [],
        "y": [],
        "level": [],
        "image": [],
        "images": [],
        "levels": [],
        "total": 0,
    }


def map_payload(index: SegmentIndex | None, max_points: int = MAX_POINTS) -> dict:
    """What the page needs to draw the map of an index (the `value` prop of the component).

    Returns:
        JSON-ready dict, S = min(len(index), max_points) points in id order:
        token (str: the index and sample; "" = nothing to show), ids ([S] int region ids),
        x, y ([S] floats in [0, 1], y up), level ([S] ints), image ([S] ints into images),
        images ([U] image names), levels ([{level, colour '#rrggbb', count}] per level present),
        total (regions in the index). `empty_payload()` when index is None or empty.
    """
    if index is None or len(index) == 0:
        return empty_payload()
    layout = map_layout(index, max_points)
    levels, counts = np.unique(layout.levels, return_counts=True)
    xy = np.round(layout.xy, DECIMALS)
    return {
        "token": layout.token,
        "ids": layout.ids.tolist(),
        "x": xy[:, 0].tolist(),
        "y": xy[:, 1].tolist(),
        "level": layout.levels.tolist(),
        "image": layout.image_codes.tolist(),
        "images": layout.images,
        "levels": [
            {"level": int(lv), "colour": level_colour(lv), "count": int(n)}
            for lv, n in zip(levels, counts)
        ],
        "total": layout.total,
    }


def project_onto(layout: MapLayout, vectors: np.ndarray) -> np.ndarray:
    """[n, D] (or [D]) vectors -> [n, 2] map positions, clipped to [0, 1] (drawn at the map's edge
    when they fall outside the sample's extent)."""
    raw = np.asarray(layout.project(np.atleast_2d(vectors)), np.float64)
    return np.clip((raw - layout.lo) / layout.span, 0.0, 1.0)


def query_vector(index: SegmentIndex, session: Session) -> np.ndarray | None:
    """[D] the session's current query: the hit of "find more like this" (`Session.query_hit`), else
    the selected region's embedding; None when there is none or it does not fit the index."""
    if session.query_hit is not None and index.has_ids([session.query_hit.id]).all():
        return index.vectors(np.array([session.query_hit.id]))[0]
    if session.prediction is None or session.selected is None:
        return None
    level, region = session.selected
    vector = np.asarray(session.prediction.levels[level].embeddings[region], np.float32)
    return vector if vector.shape == (index.dim,) else None


def map_marks(index: SegmentIndex | None, session: Session, max_points: int = MAX_POINTS) -> dict:
    """The per-click update of the map (the `marks` prop): where the query is, which ids are hits.

    Returns:
        JSON-ready dict: token (the payload's it belongs to; "" = no marks), query ([x, y] in
        [0, 1], or None), hits ([K] ids of `Session.hits` in this index, gallery order) and hit_xy
        ([K] [x, y]: drawn even when a hit is outside the map's sample).
    """
    if index is None or len(index) == 0:
        return {"token": "", "query": None, "hits": [], "hit_xy": []}
    layout = map_layout(index, max_points)
    query = query_vector(index, session)
    query_xy = None if query is None else project_onto(layout, query)[0]
    hit_ids = np.array([hit.id for hit in session.hits], np.int64)
    hit_ids = hit_ids[index.has_ids(hit_ids)] if hit_ids.size else hit_ids
    hit_xy = project_onto(layout, index.vectors(hit_ids)) if hit_ids.size else np.zeros((0, 2))
    return {
        "token": layout.token,
        "query": None if query_xy is None else np.round(query_xy, DECIMALS).tolist(),
        "hits": hit_ids.tolist(),
        "hit_xy": np.round(hit_xy, DECIMALS).tolist(),
    }


# ----------------------------------------------------------------------------- events
def parse_id(value: object) -> int:
    """A region id from event data: an int, or a string of decimal digits.

    Raises:
        ValueError: anything else (bool, float, negative, text).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    raise ValueError(f"{value!r} is not a region id")


def require_ids(index: SegmentIndex, values: Iterable[object]) -> np.ndarray:
    """[n] int64 region ids of the index from event data, duplicates dropped, order kept.

    Raises:
        ValueError: a value is not an id, an id is not in the index, or there are too many.
    """
    values = list(values)
    if len(values) > MAX_SELECTION:
        raise ValueError(f"{len(values)} ids selected: at most {MAX_SELECTION} are taken")
    ids = np.array(list(dict.fromkeys(parse_id(v) for v in values)), np.int64)
    found = index.has_ids(ids)
    if not found.all():
        raise ValueError(f"unknown region id {int(ids[~found][0])}: not in the index searched")
    return ids


def event_field(index: SegmentIndex | None, data: object, key: str) -> object:
    """`data[key]` of a map event, checked to come from this index's map.

    Raises:
        ValueError: no index, data is not a dict holding `key`, or its token names another index.
    """
    if index is None:
        raise ValueError("the embedding map: no index is open")
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"the embedding map sent no {key!r}")
    token = data.get("token")
    if token is not None and str(token).rsplit("/", 1)[0] != index_token(index):
        raise ValueError("the embedding map shows another index: reload the page")
    return data[key]


def clicked_id(index: SegmentIndex | None, data: object) -> int:
    """The region id of a map `click` event (`evt._data`: {id, token}).

    Raises:
        ValueError: not a click of this index's map, or not a region of it.
    """
    return int(require_ids(index, [event_field(index, data, "id")])[0])


def selected_ids(index: SegmentIndex | None, data: object) -> list[int]:
    """The region ids of a map `select` event (`evt._data`: {ids, token}), in the page's order.

    Raises:
        ValueError: not a selection of this index's map, or an id not in it.
    """
    values = event_field(index, data, "ids")
    if not isinstance(values, list):
        raise ValueError("the embedding map sent ids that are not a list")
    return require_ids(index, values).tolist()


def hits_for_ids(
    index: SegmentIndex,
    ids: Iterable[object],
    limit: int = 64,
    query: np.ndarray | None = None,
) -> list[Hit]:
    """The regions `ids` as hits, most similar to `query` first, at most `limit` of them.

    Args:
        ids: region ids of the index (ints or decimal strings; duplicates dropped).
        limit: hits returned (the best `limit` by score).
        query: [D] vector the scores are measured against (inner product with its unit vector);
            None = the mean of the selected vectors (the selection's most typical region first).
    Raises:
        ValueError: an id is not in the index, or limit < 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    ids = require_ids(index, ids)
    if ids.size == 0:
        return []
    vectors = np.asarray(index.vectors(ids), np.float64)
    direction = vectors.mean(0) if query is None else np.asarray(query, np.float64).reshape(-1)
    norm = float(np.linalg.norm(direction))
    scores = vectors @ direction / norm if norm > 1e-12 else np.zeros(len(ids))
    order = np.argsort(-scores, kind="stable")[:limit]
    return index.hits_of(ids[order], scores[order])


def hit_for_id(index: SegmentIndex | None, region_id: object) -> Hit:
    """The region `region_id` of the index as a `Hit` (score 1: it is its own query), e.g. to open
    a clicked point in context (`explorer.open_hit`).

    Raises:
        ValueError: no index, or the id is not in it.
    """
    if index is None:
        raise ValueError("the embedding map: no index is open")
    (hit,) = hits_for_ids(index, [region_id], limit=1)
    return hit


def lasso_gallery(
    index: SegmentIndex | None, session: Session, ids: Iterable[object], limit: int = 64
) -> tuple[Session, list]:
    """A selection on the map fills the gallery: the selected regions, most similar to the session's
    query (`query_vector`) first, else to the selection's mean; at most `limit`.

    Sets `Session.hits` (what the gallery shows, in order); the selection and query are kept.
    Returns the session and the gallery items ((crop, caption) as `explorer.hit_tiles`).
    Raises:
        ValueError: no index, an id not in it, or a hit's image gone from the data folder.
    """
    if index is None:
        raise ValueError("the embedding map: no index is open")
    hits = hits_for_ids(index, ids, limit, query_vector(index, session))
    items, session.hits = hit_tiles(index, {0: hits}) if hits else ([], [])
    return session, items


def ids_in_polygon(payload: dict, polygon: Sequence[tuple[float, float]]) -> list[int]:
    """The ids the page selects for a lasso `polygon` ([n, 2] map coordinates in [0, 1], y up):
    the payload's points inside it by the even-odd rule, in payload order (every level shown)."""
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = np.asarray(payload["x"], np.float64), np.asarray(payload["y"], np.float64)
    inside = np.zeros(x.shape, bool)
    for (xa, ya), (xb, yb) in zip(poly, np.roll(poly, 1, axis=0)):
        crosses = (ya > y) != (yb > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (xb - xa) * (y - ya) / (yb - ya) + xa
        inside ^= crosses & (x < at)
    return np.asarray(payload["ids"], np.int64)[inside].tolist()


# ----------------------------------------------------------------------------- the component
MAP_HTML = """
<div class="hsg-map" data-drawn="0" data-selection="" data-hovered="" data-clicked="">
  <div class="legend"></div>
  <div class="stage"><canvas class="plot"></canvas><div class="tip"></div></div>
  <div class="caption">No index to map yet.</div>
</div>
"""

MAP_CSS = """
.hsg-map { display: flex; flex-direction: column; gap: 4px; }
.hsg-map .legend { display: flex; flex-wrap: wrap; gap: 2px 12px; font-size: 0.85em;
  min-height: 1.4em; }
.hsg-map .legend .entry { display: inline-flex; align-items: center; gap: 5px; border: none;
  background: none; padding: 0 2px; color: inherit; font: inherit; cursor: pointer; }
.hsg-map .legend .entry.off { opacity: 0.35; text-decoration: line-through; }
.hsg-map .legend .mark { display: inline-flex; align-items: center; gap: 4px; padding: 0 2px; }
.hsg-map .legend .symbol { font-weight: bold; }
.hsg-map .legend .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; }
.hsg-map .stage { position: relative; border: 1px solid rgba(128, 128, 128, 0.35);
  border-radius: 4px; line-height: 0; }
.hsg-map canvas.plot { display: block; width: 100%; height: 360px; cursor: crosshair;
  touch-action: none; }
.hsg-map .tip { position: absolute; display: none; pointer-events: none; z-index: 5;
  background: rgba(20, 20, 20, 0.88); color: #fff; padding: 3px 7px; border-radius: 3px;
  font-size: 12px; line-height: 1.4; white-space: nowrap; }
.hsg-map .caption { font-size: 0.8em; opacity: 0.8; min-height: 1.3em; }
"""

# The page side. Dataset of `.hsg-map` (read by tests): token, drawn (points drawn), drawMs (last
# redraw), pad (px between the canvas edge and x|y = 0|1), hovered (id or ""), clicked (id),
# selection (ids of the last lasso/box, comma-separated), selected (their count), hidden (levels
# off), hits (hit rings drawn).
MAP_JS = r"""
const root = element.querySelector('.hsg-map');
const canvas = element.querySelector('canvas.plot');
const tip = element.querySelector('.tip');
const legend = element.querySelector('.legend');
const caption = element.querySelector('.caption');
const PAD = 12, NEAR = 7, DRAG = 4;
const S = {key: '', n: 0, ids: [], X: null, Y: null, L: null, byLevel: [], colour: new Map(),
  hidden: new Set(), selected: new Set(), hovered: -1, clicked: -1, marks: null, drag: null,
  W: 0, H: 0, queued: false};
root.dataset.pad = String(PAD);

const sx = (x) => PAD + x * (S.W - 2 * PAD);
const sy = (y) => PAD + (1 - y) * (S.H - 2 * PAD);
const shown = (i) => !S.hidden.has(S.L[i]);

function resize() {
  S.W = canvas.clientWidth; S.H = canvas.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(S.W * dpr)), h = Math.max(1, Math.round(S.H * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return dpr;
}
function drawPoints(ctx) {
  let drawn = 0;
  ctx.globalAlpha = 0.75;
  for (const [level, rows] of S.byLevel) {
    if (S.hidden.has(level)) continue;
    ctx.fillStyle = S.colour.get(level);
    ctx.beginPath();
    for (const i of rows) ctx.rect(sx(S.X[i]) - 2, sy(S.Y[i]) - 2, 4, 4);
    ctx.fill();
    drawn += rows.length;
  }
  ctx.globalAlpha = 1;
  return drawn;
}
function ring(ctx, x, y, r, colour, width) {
  ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.stroke();
}
function star(ctx, x, y, r) {
  ctx.beginPath();
  for (let k = 0; k < 10; k++) {
    const a = -Math.PI / 2 + k * Math.PI / 5, rk = k % 2 ? r * 0.45 : r;
    ctx.lineTo(x + rk * Math.cos(a), y + rk * Math.sin(a));
  }
  ctx.closePath(); ctx.fillStyle = '#e0201b'; ctx.fill();
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 1.5; ctx.stroke();
}
function drawMarks(ctx) {
  ctx.beginPath();
  for (const i of S.selected) if (shown(i)) ctx.rect(sx(S.X[i]) - 3.5, sy(S.Y[i]) - 3.5, 7, 7);
  ctx.strokeStyle = '#111'; ctx.lineWidth = 1.5; ctx.stroke();
  const m = S.marks;
  if (m) {
    for (const [x, y] of m.hit_xy) ring(ctx, sx(x), sy(y), 6, '#ff8c00', 2);
    if (m.query) star(ctx, sx(m.query[0]), sy(m.query[1]), 10);
  }
  const c = S.clicked;
  if (c >= 0 && shown(c)) ring(ctx, sx(S.X[c]), sy(S.Y[c]), 7, '#e0201b', 2);
  if (S.hovered >= 0) ring(ctx, sx(S.X[S.hovered]), sy(S.Y[S.hovered]), 5, '#111', 2);
}
function drawDrag(ctx) {
  const d = S.drag;
  if (!d || !d.moved) return;
  ctx.beginPath();
  if (d.box) {
    const [x0, y0] = d.start, [x1, y1] = d.path[d.path.length - 1];
    ctx.rect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  } else {
    for (const [x, y] of d.path) ctx.lineTo(x, y);
    ctx.closePath();
  }
  ctx.fillStyle = 'rgba(30, 120, 255, 0.12)'; ctx.fill();
  ctx.setLineDash([4, 3]); ctx.strokeStyle = 'rgba(30, 120, 255, 0.9)'; ctx.lineWidth = 1.5;
  ctx.stroke(); ctx.setLineDash([]);
}
function draw() {
  S.queued = false;
  const started = performance.now(), dpr = resize(), ctx = canvas.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let drawn = 0;
  if (S.n && S.W > 2 * PAD && S.H > 2 * PAD) {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawn = drawPoints(ctx); drawMarks(ctx); drawDrag(ctx);
  }
  root.dataset.drawn = String(drawn);
  root.dataset.drawMs = (performance.now() - started).toFixed(2);
}
function schedule() { if (!S.queued) { S.queued = true; requestAnimationFrame(draw); } }

function describe() {
  if (!S.n) { caption.textContent = 'No index to map yet.'; return; }
  const p = S.payload, sample = S.n < p.total ? `${S.n} of ${p.total}` : `all ${S.n}`;
  caption.textContent = `${sample} regions · click a point to open it · drag to lasso, ` +
    'shift-drag for a box · click a level to hide it';
}
function legendEntry(text, colour) {
  const b = document.createElement('button');
  b.type = 'button'; b.className = 'entry';
  const sw = document.createElement('span'); sw.className = 'swatch'; sw.style.background = colour;
  b.append(sw, document.createTextNode(text));
  legend.append(b);
  return b;
}
function legendMark(symbol, colour, text) {
  const m = document.createElement('span'), s = document.createElement('span');
  m.className = 'mark'; s.className = 'symbol'; s.style.color = colour; s.textContent = symbol;
  m.append(s, document.createTextNode(text));
  legend.append(m);
}
function buildLegend() {
  legend.replaceChildren();
  if (!S.n) return;
  for (const {level, colour, count} of S.payload.levels) {
    const b = legendEntry(`level ${level} (${count})`, colour);
    b.dataset.level = String(level);
    b.addEventListener('click', () => {
      if (S.hidden.has(level)) S.hidden.delete(level); else S.hidden.add(level);
      b.classList.toggle('off', S.hidden.has(level));
      root.dataset.hidden = [...S.hidden].sort((a, b) => a - b).join(',');
      if (S.hovered >= 0 && !shown(S.hovered)) hover(-1, 0, 0);
      draw();
    });
  }
  legendMark('★', '#e0201b', 'query'); legendMark('○', '#ff8c00', 'hits');
}
function load(payload) {
  const key = payload && payload.token ? payload.token + '#' + payload.ids.length : '';
  if (key === S.key) return;
  S.key = key; S.payload = payload; S.n = key ? payload.ids.length : 0;
  S.ids = key ? payload.ids : [];
  S.X = Float64Array.from(key ? payload.x : []); S.Y = Float64Array.from(key ? payload.y : []);
  S.L = Int32Array.from(key ? payload.level : []);
  const groups = new Map();
  for (let i = 0; i < S.n; i++) {
    if (!groups.has(S.L[i])) groups.set(S.L[i], []);
    groups.get(S.L[i]).push(i);
  }
  S.byLevel = [...groups].sort((a, b) => a[0] - b[0])
    .map(([lv, rows]) => [lv, Int32Array.from(rows)]);
  S.colour = new Map(key ? payload.levels.map(e => [e.level, e.colour]) : []);
  S.hidden.clear(); S.selected.clear(); S.hovered = -1; S.clicked = -1; S.drag = null;
  Object.assign(root.dataset, {token: key ? payload.token : '', selection: '', selected: '0',
    hovered: '', clicked: '', hidden: ''});
  tip.style.display = 'none';
  buildLegend(); describe(); syncMarks();
}
function syncMarks() {
  const m = props.marks;
  S.marks = m && S.n && m.token === S.payload.token ? m : null;
  root.dataset.hits = String(S.marks ? S.marks.hit_xy.length : 0);
  draw();
}

function local(e) {
  const r = canvas.getBoundingClientRect();
  return [e.clientX - r.left, e.clientY - r.top];
}
function nearest(x, y, radius) {
  let best = -1, bd = radius * radius;
  for (let i = 0; i < S.n; i++) {
    if (!shown(i)) continue;
    const dx = sx(S.X[i]) - x, dy = sy(S.Y[i]) - y, d = dx * dx + dy * dy;
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}
function hover(i, x, y) {
  if (i !== S.hovered) { S.hovered = i; schedule(); }
  root.dataset.hovered = i >= 0 ? String(S.ids[i]) : '';
  if (i < 0) { tip.style.display = 'none'; return; }
  tip.textContent = `${S.payload.images[S.payload.image[i]]} · level ${S.L[i]}`;
  tip.style.display = 'block';
  const left = x + 12 + tip.offsetWidth > S.W ? x - 12 - tip.offsetWidth : x + 12;
  tip.style.left = Math.max(0, left) + 'px';
  tip.style.top = Math.max(0, Math.min(y + 12, S.H - tip.offsetHeight)) + 'px';
}
function inPolygon(poly, x, y) {
  let c = false;
  for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
    const [xa, ya] = poly[a], [xb, yb] = poly[b];
    if ((ya > y) !== (yb > y) && x < (xb - xa) * (y - ya) / (yb - ya) + xa) c = !c;
  }
  return c;
}
function pointsIn(d) {
  const xs = d.path.map(p => p[0]), ys = d.path.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const out = [];
  for (let i = 0; i < S.n; i++) {
    if (!shown(i)) continue;
    const x = sx(S.X[i]), y = sy(S.Y[i]);
    if (x < x0 || x > x1 || y < y0 || y > y1) continue;
    if (d.box || inPolygon(d.path, x, y)) out.push(i);
  }
  return out;
}
function finish(d, x, y) {
  if (!d.moved) {
    const i = nearest(x, y, NEAR);
    if (i < 0) return;
    S.clicked = i; root.dataset.clicked = String(S.ids[i]);
    trigger('click', {id: S.ids[i], token: S.payload.token});
    return;
  }
  if (d.box) d.path = [d.start, [x, d.start[1]], [x, y], [d.start[0], y]];
  const rows = pointsIn(d), ids = rows.map(i => S.ids[i]);
  S.selected = new Set(rows);
  root.dataset.selection = ids.join(','); root.dataset.selected = String(ids.length);
  trigger('select', {ids, token: S.payload.token});
}

canvas.addEventListener('pointerdown', (e) => {
  if (!S.n || e.button !== 0) return;
  const p = local(e);
  S.drag = {start: p, path: [p], box: e.shiftKey, moved: false};
  canvas.setPointerCapture(e.pointerId);
  hover(-1, 0, 0);
});
canvas.addEventListener('pointermove', (e) => {
  if (!S.n) return;
  const [x, y] = local(e), d = S.drag;
  if (!d) { hover(nearest(x, y, NEAR), x, y); return; }
  if (Math.hypot(x - d.start[0], y - d.start[1]) > DRAG) d.moved = true;
  d.path.push([x, y]);
  if (d.moved) schedule();
});
canvas.addEventListener('pointerup', (e) => {
  const d = S.drag; if (!d) return;
  S.drag = null;
  const [x, y] = local(e);
  if (Math.hypot(x - d.start[0], y - d.start[1]) > DRAG) d.moved = true;
  d.path.push([x, y]);
  finish(d, x, y);
  draw();
});
canvas.addEventListener('pointercancel', () => { S.drag = null; draw(); });
canvas.addEventListener('pointerleave', () => { if (!S.drag) hover(-1, 0, 0); });
new ResizeObserver(() => schedule()).observe(canvas);

watch('value', () => load(props.value));
watch('marks', syncMarks);
load(props.value);
"""
