"""Colour overlays, region boundaries and outlined crops (numpy only)."""

from __future__ import annotations

import numpy as np


def palette(num: int, seed: int = 7) -> np.ndarray:
    """[num, 3] uint8 distinct-ish colours (golden-ratio hues, fixed saturation/value)."""
    hues = (np.arange(num) * 0.6180339887 + (seed % 10) / 10.0) % 1.0
    sat, val = 0.65, 0.95
    i = np.floor(hues * 6).astype(int) % 6
    f = hues * 6 - np.floor(hues * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    table = np.stack(
        [
            np.choose(i, [val, q, p, p, t, val]),
            np.choose(i, [t, val, val, q, p, p]),
            np.choose(i, [p, p, t, val, val, q]),
        ],
        axis=1,
    )
    return (table * 255).astype(np.uint8)


def boundaries(label_map: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose right or lower neighbour has another label (plus the mirror side)."""
    edge = np.zeros(label_map.shape, dtype=bool)
    horizontal = label_map[:, 1:] != label_map[:, :-1]
    vertical = label_map[1:] != label_map[:-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:] |= vertical
    edge[:-1] |= vertical
    return edge


def overlay_regions(
    image: np.ndarray,
    label_map: np.ndarray,
    *,
    alpha: float = 0.45,
    draw_boundaries: bool = True,
    fill: bool = True,
    boundary_colour: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Blend a colour per region over `image` [H, W, 3] uint8 and draw region boundaries."""
    out = image.astype(np.float32)
    if fill:
        colours = palette(int(label_map.max()) + 1)[label_map].astype(np.float32)
        out = (1 - alpha) * out + alpha * colours
    if draw_boundaries:
        out[boundaries(label_map)] = boundary_colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def highlight(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    dim: float = 0.55,
    colour: tuple[int, int, int] = (255, 215, 0),
) -> np.ndarray:
    """Dim everything outside `mask` [H, W] bool and outline the mask in `colour`."""
    out = image.astype(np.float32)
    out[~mask] *= 1 - dim
    out[boundaries(mask) & mask] = colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def outlined_crop(
    image: np.ndarray,
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    *,
    margin: float = 0.15,
    colour: tuple[int, int, int] = (255, 215, 0),
) -> np.ndarray:
    """Crop around `box` (x0, y0, x1, y1) with a margin, the region outlined."""
    h, w = mask.shape
    x0, y0, x1, y1 = box
    mx, my = int((x1 - x0) * margin) + 2, int((y1 - y0) * margin) + 2
    xa, ya, xb, yb = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    return highlight(image[ya:yb, xa:xb], mask[ya:yb, xa:xb], dim=0.35, colour=colour)
