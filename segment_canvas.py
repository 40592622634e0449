"""The explorer's segment canvas: the page draws, hovers and selects regions itself.

Once per opened image the server sends one payload (`canvas_payload`): the photo, the level-0 label
map as a lossless PNG and, per level, the parent of every region and its colour. Every other level
follows from level 0 because the levels nest (`Prediction`: level l+1's map = parents_l[level l's
map]), so the browser derives every level's map with a lookup table and draws the overlay, the
hover highlight, the selection and level/opacity changes without a server round trip; only a click's
retrieval goes to the server (the component triggers `click` with the pixel and level).

This module is gradio-free: the payload (policy: encoding and colours) and the component's
HTML/CSS/JS as strings that `app.py` hands to `gr.HTML`.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from hsg_core.types import Prediction

MAX_LEVEL0_REGIONS = 1 << 16  # ids travel as two bytes (R = low, G = high) of an RGB PNG
PHOTO_QUALITY = 90  # JPEG quality of the photo under the overlay


def data_url(image: Image.Image, fmt: str, **save_args) -> str:
    """`image` encoded as a data: URL (`fmt` = "PNG" or "JPEG")."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_labels(label_map: np.ndarray) -> str:
    """[H, W] ids in 0..65535 as a PNG data URL: red = id % 256, green = id // 256, blue = 0."""
    if label_map.size and int(label_map.max()) >= MAX_LEVEL0_REGIONS:
        raise ValueError(f"label map has ids up to {int(label_map.max())}: at most 65535 are sent")
    ids = label_map.astype(np.uint32)
    rgb = np.stack([ids & 255, ids >> 8, np.zeros_like(ids)], axis=-1).astype(np.uint8)
    return data_url(Image.fromarray(rgb, "RGB"), "PNG", compress_level=6)


def decode_labels(url: str) -> np.ndarray:
    """Inverse of `encode_labels` (what the page computes): [H, W] int64 ids."""
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    return rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1].astype(np.int64)


def level_lookup(prediction: Prediction) -> list[np.ndarray]:
    """Per level l, [N_0] the level-l id of each level-0 region (what the page derives from parents)."""
    table = np.arange(len(prediction.levels[0].areas))
    tables = [table]
    for level in prediction.levels[:-1]:
        table = level.parents[table]
        tables.append(table)
    return tables


def canvas_payload(
    image: np.ndarray,
    prediction: Prediction,
    colours: list[np.ndarray],
    *,
    token: str,
    level: int = 0,
    selected: tuple[int, int] | None = None,
) -> dict:
    """What the page needs to draw every level of one image.

    Args:
        image: [H, W, 3] uint8, the photo the prediction was made on.
        prediction: its hierarchy (label maps [H, W] at the photo's size).
        colours: per level, [N_l, 3] uint8 region colours.
        token: changes with every opened image (the page resets its caches on a new token).
        level: the level to show first.
        selected: (level, region) to show selected, or None.
    Returns:
        JSON-ready dict: width, height, photo (JPEG data URL), labels (level-0 PNG data URL),
        parents (per level but the top, [N_l] ints), colours (per level, [N_l * 3] ints), areas
        (per level, [N_l] pixel counts), level, selected, token.
    """
    h, w = prediction.image_size
    if image.shape[:2] != (h, w):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, its hierarchy {w}x{h}")
    if len(colours) != prediction.num_levels:
        raise ValueError(f"{len(colours)} colour tables for {prediction.num_levels} levels")
    photo = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8), "RGB")
    return {
        "token": token,
        "width": int(w),
        "height": int(h),
        "photo": data_url(photo, "JPEG", quality=PHOTO_QUALITY),
        "labels": encode_labels(prediction.levels[0].label_map),
        "parents": [lv.parents.astype(int).tolist() for lv in prediction.levels[:-1]],
        "colours": [np.asarray(c, np.uint8).reshape(-1).astype(int).tolist() for c in colours],
        "areas": [lv.areas.astype(int).tolist() for lv in prediction.levels],
        "level": int(min(max(level, 0), prediction.num_levels - 1)),
        "selected": list(selected) if selected is not None else None,
    }


CANVAS_HTML = """
<div class="hsg-canvas" tabindex="0">
  <div class="stack">
    <canvas class="base"></canvas><canvas class="pick"></canvas><canvas class="hover"></canvas>
  </div>
  <div class="caption">Open an image: upload one or pick an example.</div>
</div>
"""

CANVAS_CSS = """
.hsg-canvas { display: flex; flex-direction: column; align-items: center; }
.hsg-canvas .stack { position: relative; display: inline-block; line-height: 0; }
.hsg-canvas canvas.base { max-width: 100%; max-height: 440px; }
.hsg-canvas canvas.pick, .hsg-canvas canvas.hover {
  position: absolute; left: 0; top: 0; width: 100%; height: 100%; cursor: crosshair; }
.hsg-canvas .caption { font-size: 0.85em; min-height: 1.4em; margin-top: 4px; opacity: 0.85; }
"""

# The page side. `window.hsgCanvas` is the API the level/opacity/boundary controls call (client-only
# events); `element.dataset.drawMs` holds the last redraw's duration (read by benchmarks/bench_app.py).
CANVAS_JS = r"""
const root = element.querySelector('.hsg-canvas');
const canvases = () => ({base: element.querySelector('canvas.base'),
  pick: element.querySelector('canvas.pick'), hover: element.querySelector('canvas.hover')});
const caption = () => element.querySelector('.caption');
const S = {token: null, level: 0, opacity: 0.45, boundaries: false, hovered: -1, selected: null,
  w: 0, h: 0, photo: null, label0: null, lookup: [], maps: [], members: [], baseCache: {},
  pickCache: {}};

function decodeImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = url; });
}
function pixelsOf(img) {
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d', {willReadFrequently: true}); ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, img.width, img.height).data;
}
function levelMap(level) {            // Int32Array [H*W] of level ids, derived from level 0
  if (S.maps[level]) return S.maps[level];
  const table = S.lookup[level], out = new Int32Array(S.label0.length);
  for (let i = 0; i < out.length; i++) out[i] = table[S.label0[i]];
  return (S.maps[level] = out);
}
function membersOf(level) {            // pixels of every region, grouped: {start, order}
  if (S.members[level]) return S.members[level];
  const map = levelMap(level), n = S.payload.colours[level].length / 3;
  const start = new Int32Array(n + 1);
  for (let i = 0; i < map.length; i++) start[map[i] + 1]++;
  for (let r = 0; r < n; r++) start[r + 1] += start[r];
  const fill = start.slice(0, n), order = new Int32Array(map.length);
  for (let i = 0; i < map.length; i++) order[fill[map[i]]++] = i;
  return (S.members[level] = {start, order});
}
function isEdge(map, i) {
  const x = i % S.w, v = map[i];
  return (x + 1 < S.w && map[i + 1] !== v) || (x > 0 && map[i - 1] !== v) ||
         (i + S.w < map.length && map[i + S.w] !== v) || (i >= S.w && map[i - S.w] !== v);
}
function baseImage(level) {            // the level's overlay, cached per (level, opacity, boundaries)
  const key = level + '|' + S.opacity + '|' + S.boundaries;
  let data = S.baseCache[key];
  if (!data) {
    const map = levelMap(level), colours = S.payload.colours[level];
    const a = S.boundaries ? 0 : S.opacity;
    data = new ImageData(S.w, S.h);
    const out = data.data, photo = S.photo;
    for (let i = 0; i < map.length; i++) {
      const p = 4 * i, c = 3 * map[i];
      if (isEdge(map, i)) { out[p] = 255; out[p + 1] = 255; out[p + 2] = 255; }
      else for (let k = 0; k < 3; k++) out[p + k] = (1 - a) * photo[p + k] + a * colours[c + k] + 0.5;
      out[p + 3] = 255;
    }
    S.baseCache[key] = data;
  }
  return data;
}
function drawBase() { canvases().base.getContext('2d').putImageData(baseImage(S.level), 0, 0); }
function warm(token) {                 // prepare every level while the user looks at the first one
  const levels = S.payload.colours.length;
  const step = (level) => {
    if (S.token !== token || level >= levels) return;
    baseImage(level); membersOf(level);
    setTimeout(() => step(level + 1), 0);
  };
  setTimeout(() => step(0), 50);
}
function selectedAt(level) {           // region id at `level` that shows the selection, or -1
  if (!S.selected) return -1;
  let [sl, region] = S.selected;
  if (level < sl) return -1;
  for (let l = sl; l < level; l++) region = S.payload.parents[l][region];
  return region;
}
function pickImage(level, region) {    // the selection layer: the rest dimmed, the region outlined
  const selection = String(S.selected), key = level + ':' + region;
  if (S.pickCache.selection !== selection) S.pickCache = {selection, images: {}};
  if (S.pickCache.images[key]) return S.pickCache.images[key];
  const map = levelMap(level), data = new ImageData(S.w, S.h), out = data.data;
  for (let i = 0; i < map.length; i++) {
    const p = 4 * i;
    if (map[i] !== region) { out[p + 3] = 140; }
    else if (isEdge(map, i)) { out[p] = 255; out[p + 1] = 215; out[p + 3] = 255; }
  }
  S.pickCache.images[key] = data;
  return data;
}
function drawPick() {
  const ctx = canvases().pick.getContext('2d');
  if (!S.selected) { ctx.clearRect(0, 0, S.w, S.h); return; }
  const level = Math.max(S.level, S.selected[0]);
  ctx.putImageData(pickImage(level, selectedAt(level)), 0, 0);
}
function drawHover(region) {
  const started = performance.now();
  S.hovered = region;
  const ctx = canvases().hover.getContext('2d');
  ctx.clearRect(0, 0, S.w, S.h);
  if (region >= 0) {
    const {start, order} = membersOf(S.level), map = levelMap(S.level);
    let x0 = S.w, y0 = S.h, x1 = 0, y1 = 0;
    for (let j = start[region]; j < start[region + 1]; j++) {
      const i = order[j], x = i % S.w, y = (i - x) / S.w;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const bw = x1 - x0 + 1, bh = y1 - y0 + 1, data = new ImageData(bw, bh), out = data.data;
    for (let j = start[region]; j < start[region + 1]; j++) {
      const i = order[j], x = i % S.w, y = (i - x) / S.w, p = 4 * ((y - y0) * bw + (x - x0));
      const edge = isEdge(map, i);
      out[p] = 255; out[p + 1] = 255; out[p + 2] = edge ? 0 : 255; out[p + 3] = edge ? 255 : 90;
    }
    ctx.putImageData(data, x0, y0);
    const area = S.payload.areas[S.level][region], share = 100 * area / (S.w * S.h);
    caption().textContent = `level ${S.level} · region ${region} · ${share.toFixed(1)} % of the image` +
      ' · click to find similar regions';
  } else {
    caption().textContent = `level ${S.level} of ${S.payload.colours.length - 1}: hover a region, click to search`;
  }
  root.dataset.hovered = String(region);
  root.dataset.drawMs = (performance.now() - started).toFixed(2);
}
function redraw() {
  const started = performance.now();
  drawBase(); drawPick(); drawHover(-1);
  root.dataset.level = String(S.level);
  root.dataset.drawMs = (performance.now() - started).toFixed(2);
}
function pixelAt(event) {
  const rect = canvases().hover.getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) * S.w / rect.width);
  const y = Math.floor((event.clientY - rect.top) * S.h / rect.height);
  return (x >= 0 && y >= 0 && x < S.w && y < S.h) ? [x, y] : null;
}
async function load(payload) {
  if (!payload || !payload.token) {
    S.token = null; root.dataset.token = '';
    for (const c of Object.values(canvases())) { c.width = 1; c.height = 1; }
    return;
  }
  if (payload.token !== S.token) {
    const [photo, labels] = await Promise.all([decodeImage(payload.photo), decodeImage(payload.labels)]);
    S.payload = payload; S.w = payload.width; S.h = payload.height;
    S.photo = pixelsOf(photo);
    const rgba = pixelsOf(labels), label0 = new Int32Array(S.w * S.h);
    for (let i = 0; i < label0.length; i++) label0[i] = rgba[4 * i] + 256 * rgba[4 * i + 1];
    S.label0 = label0; S.maps = []; S.members = []; S.baseCache = {}; S.pickCache = {};
    S.lookup = [Int32Array.from({length: payload.colours[0].length / 3}, (_, i) => i)];
    for (const parents of payload.parents) S.lookup.push(S.lookup[S.lookup.length - 1].map(r => parents[r]));
    for (const c of Object.values(canvases())) { c.width = S.w; c.height = S.h; }
    S.token = payload.token;
    S.level = payload.level; S.hovered = -1;
    warm(payload.token);
  }
  S.selected = payload.selected;
  redraw();
  root.dataset.token = payload.token;
}
function sync() { load(props.value).catch(err => { caption().textContent = 'could not draw: ' + err; }); }

const hover = canvases().hover;
hover.addEventListener('mousemove', (e) => {
  if (!S.token) return;
  const xy = pixelAt(e); const region = xy ? levelMap(S.level)[xy[1] * S.w + xy[0]] : -1;
  if (region !== S.hovered) drawHover(region);
});
hover.addEventListener('mouseleave', () => { if (S.token) drawHover(-1); });
hover.addEventListener('click', (e) => {
  if (!S.token) return;
  const xy = pixelAt(e); if (!xy) return;
  const region = levelMap(S.level)[xy[1] * S.w + xy[0]];
  S.selected = [S.level, region];
  root.dataset.selected = S.level + ':' + region;
  trigger('click', {x: xy[0], y: xy[1], level: S.level});  // the search first, then the drawing
  requestAnimationFrame(drawPick);
});
window.hsgCanvas = {
  setLevel(level) {
    if (!S.token) { S.level = Number(level); return; }
    const next = Math.max(0, Math.min(Number(level), S.payload.colours.length - 1));
    if (next !== S.level) { S.level = next; redraw(); }
  },
  setOpacity(opacity) { S.opacity = Number(opacity); S.baseCache = {}; if (S.token) redraw(); },
  setBoundaries(on) { S.boundaries = Boolean(on); S.baseCache = {}; if (S.token) redraw(); },
  state: () => ({token: S.token, level: S.level, selected: S.selected, hovered: S.hovered}),
};
function syncSelection() {             // the server selected a region (picked from the list)
  if (!S.token || props.selection === undefined) return;
  S.selected = props.selection; drawPick();
}
// the level control's own input events (a native listener: no wait for gradio's event dispatch);
// `props.level_control` is its CSS selector, e.g. '#level'
if (props.level_control) document.addEventListener('input', (event) => {
  const control = event.target.closest && event.target.closest(props.level_control);
  if (control && event.target.value !== '' && Number(event.target.value) !== S.level)
    window.hsgCanvas.setLevel(event.target.value);
}, true);
watch('value', sync);
watch('selection', syncSelection);
sync();
"""
