"""hits_gallery.py: the hits travel inlined in the search's reply."""

import base64
import io

import numpy as np
from PIL import Image

from hits_gallery import TILE_SIDE, gallery_captions, gallery_payload, tile_url


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_tiles_are_inlined_jpegs_no_longer_than_the_tile_side():
    wide = np.full((300, 900, 3), 200, np.uint8)
    assert decode(tile_url(wide)).size == (TILE_SIDE, round(300 * TILE_SIDE / 900))
    small = np.zeros((40, 30, 3), np.uint8)
    assert decode(tile_url(small)).size == (30, 40)  # never enlarged


def test_payload_keeps_order_and_captions_and_changes_token():
    items = [(np.full((20, 20, 3), v, np.uint8), f"L0 · 0.{v} · img{v}.png") for v in (10, 90)]
    first, second = gallery_payload(items), gallery_payload(items)
    assert gallery_captions(first) == ["L0 · 0.10 · img10.png", "L0 · 0.90 · img90.png"]
    assert second["token"] != first["token"]  # the page redraws even for equal hits
    colours = [np.asarray(decode(t["src"]))[10, 10, 0] for t in first["tiles"]]
    assert abs(int(colours[0]) - 10) <= 3 and abs(int(colours[1]) - 90) <= 3
    assert gallery_captions(gallery_payload([])) == [] == gallery_captions(None)
