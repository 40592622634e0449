"""The explorer's gallery of hits, drawn by the page from one message.

A click's results travel as one payload (`gallery_payload`): every tile a small JPEG inlined as a
data: URL with its caption, so the hits appear with the search's reply, with no image files to cache
on the server and no further requests to fetch them. A tile's click triggers `click` with its index
(the UI opens that hit in context). Gradio-free: the payload and the component's HTML/CSS/JS.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

from hsg_core.images import downscale_to
from segment_canvas import data_url

TILE_SIDE = 256  # tiles are sent at most this long (shown ~150 px wide; 2x for dense screens)
TILE_QUALITY = 85
_TOKENS = itertools.count(1)


def tile_url(image: np.ndarray, max_side: int = TILE_SIDE) -> str:
    """[h, w, 3] uint8 -> JPEG data: URL, longer side cut to `max_side` (`downscale_to`)."""
    tile = downscale_to(np.ascontiguousarray(image[..., :3]), max_side)
    return data_url(Image.fromarray(tile), "JPEG", quality=TILE_QUALITY)


def gallery_payload(items: list[tuple[np.ndarray, str]]) -> dict:
    """The gallery's value for (tile image [h, w, 3] uint8, caption) items, in order:
    {"token": changes with every payload, "tiles": [{"src": data: URL, "caption": str}]}."""
    tiles = [{"src": tile_url(image), "caption": str(caption)} for image, caption in items]
    return {"token": next(_TOKENS), "tiles": tiles}


def gallery_captions(value: dict | None) -> list[str]:
    """The captions of a gallery value, in order ([] for none)."""
    return [tile["caption"] for tile in (value or {}).get("tiles", [])]


GALLERY_HTML = """
<div class="hsg-hits">
  <div class="label">Similar regions (click one to see it in its image)</div>
  <div class="grid"></div>
  <div class="empty">Click a region of the image to find similar ones.</div>
</div>
"""

GALLERY_CSS = """
.hsg-hits { display: flex; flex-direction: column; gap: 6px; min-height: 360px; }
.hsg-hits .label { font-size: 0.85em; opacity: 0.8; }
.hsg-hits .grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 8px; }
.hsg-hits .tile { display: flex; flex-direction: column; padding: 0; border: 1px solid #ddd;
  border-radius: 6px; overflow: hidden; background: #fff; cursor: pointer; text-align: left; }
.hsg-hits .tile:hover { border-color: #f97316; }
.hsg-hits .tile img { width: 100%; aspect-ratio: 1 / 1; object-fit: cover; display: block; }
.hsg-hits .tile span { font-size: 0.75em; padding: 2px 4px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.hsg-hits .empty { font-size: 0.9em; opacity: 0.7; }
"""

# Tiles are rebuilt from `props.value` whenever it changes; a tile's title is its whole caption (the
# full file name on hover); `element.dataset.drawMs` holds the last rebuild's duration.
GALLERY_JS = r"""
const root = element.querySelector('.hsg-hits');
function draw() {
  const started = performance.now();
  const grid = element.querySelector('.grid'), value = props.value || {}, tiles = value.tiles || [];
  grid.replaceChildren(...tiles.map((tile, index) => {
    const button = document.createElement('button');
    button.className = 'tile'; button.type = 'button'; button.title = tile.caption;
    button.dataset.index = String(index);
    const img = document.createElement('img'); img.src = tile.src; img.alt = tile.caption;
    const caption = document.createElement('span'); caption.textContent = tile.caption;
    button.append(img, caption);
    return button;
  }));
  element.querySelector('.empty').style.display = tiles.length ? 'none' : '';
  root.dataset.count = String(tiles.length);
  root.dataset.token = String(value.token || '');
  root.dataset.drawMs = (performance.now() - started).toFixed(2);
}
element.addEventListener('click', (event) => {
  const tile = event.target.closest && event.target.closest('.tile');
  if (tile) trigger('click', {index: Number(tile.dataset.index)});
});
watch('value', draw);
draw();
"""
