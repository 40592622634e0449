"""Colour overlays, hierarchy colours, region boundaries and outlined crops (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GOLDEN = 0.6180339887  # hue step between successive colours: never repeats, stays spread out
TOP_SATURATION, TOP_VALUE = 0.7, 0.92  # colours of the coarsest level's regions
TOP_HUE_OFFSET = 0.7  # hue where the coarsest level's first hue interval starts
MAX_CHILD_SPAN = 1 / 3  # the children of one region share at most this much of the hue wheel
CHILD_SATURATION = (0.3, 0.95)  # children's saturations wrap around inside this range
CHILD_VALUE = (0.5, 1.0)  # children's values (lightness) wrap around inside this range
R2 = (0.7548776662, 0.5698402910)  # 2-D low-discrepancy steps: siblings' (saturation, value)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """[N, 3] (hue, saturation, value) in [0, 1] -> [N, 3] uint8 RGB."""
    hue, sat, val = (hsv[:, i] for i in range(3))
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    table = np.stack(
        [
            np.choose(i, [val, q, p, p, t, val]),
            np.choose(i, [t, val, val, q, p, p]),
            np.choose(i, [p, p, t, val, val, q]),
        ],
        axis=1,
    )
    return np.round(table * 255).astype(np.uint8)


def palette(num: int, seed: int = 7) -> np.ndarray:
    """[num, 3] uint8 distinct-ish colours (golden-ratio hues, fixed saturation/value), for labels
    without a hierarchy; a hierarchy's levels take `hierarchy_colours`."""
    hues = (np.arange(num) * GOLDEN + (seed % 10) / 10.0) % 1.0
    return hsv_to_rgb(np.stack([hues, np.full(num, 0.65), np.full(num, 0.95)], axis=1))


def sibling_ranks(parents: np.ndarray) -> np.ndarray:
    """[N] int: the rank of each region among the regions of its parent, in id order (0 = first)."""
    order = np.argsort(parents, kind="stable")
    ordered = parents[order]
    ranks = np.empty(len(parents), dtype=np.int64)
    ranks[order] = np.arange(len(parents)) - np.searchsorted(ordered, ordered, side="left")
    return ranks


def child_shades(parent_hsv: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """[N, 2] (saturation, value) of children from their parents' [N, 3] HSV and sibling ranks [N].

    Rank 0 keeps its parent's (an only child looks like its parent: nothing merged there); rank r
    shifts saturation and value by the r-th point of a 2-D low-discrepancy sequence, wrapped inside
    CHILD_SATURATION / CHILD_VALUE, so neighbouring hues of siblings still look different.
    """
    out = np.empty((len(parent_hsv), 3), dtype=np.float64)
    for column, (low, high), step in ((1, CHILD_SATURATION, R2[0]), (2, CHILD_VALUE, R2[1])):
        start = (np.clip(parent_hsv[:, column], low, high) - low) / (high - low)
        out[:, column] = low + ((start + ranks * step) % 1.0) * (high - low)
    return out[:, 1:]


def child_hues(
    parent_hue: np.ndarray, parent_span: np.ndarray, ranks: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Children's hues [N] and hue spans [N]: the k children of a region split its span (at most
    MAX_CHILD_SPAN of the wheel, centred on its hue) into k equal parts, each child at the centre of
    its part, in sibling-rank order. An only child keeps its parent's hue.

    Args: per child, its parent's hue and span, its sibling rank and its number of siblings + 1.
    """
    span = np.minimum(parent_span, MAX_CHILD_SPAN)
    hue = (parent_hue + span * ((ranks + 0.5) / counts - 0.5)) % 1.0
    return hue, span / counts


def hierarchy_colours(parents: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One colour per region of every level, each region a shade of its parent's colour.

    Hue intervals nest like the regions: the coarsest level's n regions split the hue wheel into n
    equal intervals; going down, a region's children split its interval (at most MAX_CHILD_SPAN
    wide, centred on its hue: `child_hues`), and siblings also differ in saturation and lightness
    (`child_shades`). So a child's hue lies near its parent's and inside the family's range, every
    level stays colourful (the children of a region covering the whole image spread over a third
    of the wheel), and an only child keeps its parent's colour: across levels one sees what merged.
    Deterministic: the same tree gives the same colours.

    Args:
        parents: per level l (finest first), [N_l] int parent id of each region at level l + 1;
            the last level's entries are ignored (-1, the top).
    Returns:
        per level, [N_l, 3] uint8 RGB.
    """
    num_top = len(parents[-1])
    hsv = [np.zeros((0, 3))] * len(parents)
    top_hue = (TOP_HUE_OFFSET + (np.arange(num_top) + 0.5) / max(num_top, 1)) % 1.0
    hsv[-1] = np.stack(
        [top_hue, np.full(num_top, TOP_SATURATION), np.full(num_top, TOP_VALUE)], axis=1
    )
    span = np.full(num_top, 1.0 / max(num_top, 1))
    for level in range(len(parents) - 2, -1, -1):
        up = np.asarray(parents[level], dtype=np.int64)
        ranks = sibling_ranks(up)
        counts = np.bincount(up, minlength=len(hsv[level + 1]))[up]
        hue, child_span = child_hues(hsv[level + 1][up, 0], span[up], ranks, counts)
        hsv[level] = np.column_stack([hue, child_shades(hsv[level + 1][up], ranks)])
        span = child_span
    return [hsv_to_rgb(table) for table in hsv]


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


def inner_band(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """[H, W] bool: the pixels of `mask` [H, W] bool within `width` steps (4-neighbours) of a pixel
    outside it, the image's frame counting as outside (a region touching the border, or filling
    the whole image, is outlined there too)."""
    core = np.pad(mask, 1)
    for _ in range(max(int(width), 1)):
        shrunk = core.copy()
        shrunk[1:] &= core[:-1]
        shrunk[:-1] &= core[1:]
        shrunk[:, 1:] &= core[:, :-1]
        shrunk[:, :-1] &= core[:, 1:]
        core = shrunk
    return mask & ~core[1:-1, 1:-1]


def outline_width(shape: tuple[int, ...], per_pixels: int = 256) -> int:
    """Outline width in pixels for an image of `shape` (H, W, ...): 1 per `per_pixels` of its longer
    side, at least 1, so an outline stays visible once the image is shown scaled down."""
    return max(1, round(max(shape[:2]) / per_pixels))


def overlay_regions(
    image: np.ndarray,
    label_map: np.ndarray,
    *,
    alpha: float = 0.45,
    draw_boundaries: bool = True,
    fill: bool = True,
    boundary_colour: tuple[int, int, int] = (255, 255, 255),
    colours: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a colour per region over `image` [H, W, 3] uint8 and draw region boundaries.

    colours: [N, 3] uint8, the colour of each label of `label_map` (a level's table of
        `hierarchy_colours`); None = `palette(N)`.
    """
    out = image.astype(np.float32)
    if fill:
        table = palette(int(label_map.max()) + 1) if colours is None else colours
        out = (1 - alpha) * out + alpha * table[label_map].astype(np.float32)
    if draw_boundaries:
        out[boundaries(label_map)] = boundary_colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def highlight(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    dim: float = 0.55,
    colour: tuple[int, int, int] = (255, 215, 0),
    width: int = 1,
) -> np.ndarray:
    """Dim everything outside `mask` [H, W] bool and outline the mask, `width` pixels inside it
    (`inner_band`), in `colour`."""
    out = image.astype(np.float32)
    out[~mask] *= 1 - dim
    out[inner_band(mask, width)] = colour
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def crop_box(
    box: tuple[int, int, int, int], size: tuple[int, int], margin: float = 0.15
) -> tuple[int, int, int, int]:
    """The crop around a region's `box` (x0, y0, x1, y1; x1/y1 exclusive) in an image of `size`
    (H, W): each side moves out by `margin` times the box's extent on that axis plus 2 pixels
    (so a thin region keeps some context), then is clipped to the image. Same form as `box`."""
    height, width = size
    x0, y0, x1, y1 = (int(v) for v in box)
    mx, my = int((x1 - x0) * margin) + 2, int((y1 - y0) * margin) + 2
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)


def outlined_crop(
    image: np.ndarray,
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    *,
    margin: float = 0.15,
    colour: tuple[int, int, int] = (255, 215, 0),
) -> np.ndarray:
    """[h, w, 3] uint8: `image` [H, W, 3] cropped around `box` by the `crop_box` margin rule, the
    region `mask` [H, W] bool outlined in `colour` and the rest of the crop dimmed."""
    xa, ya, xb, yb = crop_box(box, mask.shape, margin)
    return highlight(image[ya:yb, xa:xb], mask[ya:yb, xa:xb], dim=0.35, colour=colour)
