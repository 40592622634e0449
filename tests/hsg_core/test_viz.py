"""hsg_core/viz.py: hierarchy colours (a child is a shade of its parent), outlines, crop margins."""

import colorsys

import numpy as np

from hsg_core.viz import (
    MAX_CHILD_SPAN,
    boundaries,
    crop_box,
    hierarchy_colours,
    highlight,
    inner_band,
    outlined_crop,
    overlay_regions,
    sibling_ranks,
)


def random_tree(seed: int = 0, sizes=(300, 60, 12, 3)) -> list[np.ndarray]:
    """Parent arrays of a random hierarchy (finest first) in which every parent has a child."""
    rng = np.random.default_rng(seed)
    parents = []
    for num, up in zip(sizes[:-1], sizes[1:]):
        ids = rng.integers(0, up, num)
        ids[:up] = np.arange(up)
        parents.append(ids)
    return parents + [np.full(sizes[-1], -1)]


def hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0]


def hue_gap(a: float, b: float) -> float:
    return min(abs(a - b), 1 - abs(a - b))


def min_distance(colours: np.ndarray) -> float:
    c = colours.astype(float)
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    return float(d[~np.eye(len(c), dtype=bool)].min())


def test_children_are_shades_of_their_parents_hue_and_siblings_differ():
    parents = random_tree()
    colours = hierarchy_colours(parents)
    assert [c.shape for c in colours] == [(300, 3), (60, 3), (12, 3), (3, 3)]
    assert all(c.dtype == np.uint8 for c in colours)
    for level in range(3):
        for parent in range(len(parents[level + 1])):
            children = np.flatnonzero(parents[level] == parent)
            for child in children:
                gap = hue_gap(hue(colours[level][child]), hue(colours[level + 1][parent]))
                assert gap <= MAX_CHILD_SPAN / 2 + 0.01, (level, child, gap)
            if len(children) > 1:
                assert min_distance(colours[level][children]) > 15, (level, parent)


def test_a_family_stays_inside_its_top_regions_hue_range():
    parents = random_tree(1)
    colours = hierarchy_colours(parents)
    top = parents[0]
    for up in parents[1:-1]:
        top = up[top]  # the top-level ancestor of every level-0 region
    for region, ancestor in enumerate(top):
        gap = hue_gap(hue(colours[0][region]), hue(colours[-1][ancestor]))
        assert gap <= MAX_CHILD_SPAN / 2 + 0.01, (region, gap)


def test_the_children_of_one_whole_image_region_spread_over_the_hue_wheel():
    """One top region (the whole image): its parts must not all look alike."""
    colours = hierarchy_colours([np.array([0, 0, 0, 0]), np.array([-1])])
    hues = sorted(hue(c) for c in colours[0])
    gaps = [hue_gap(a, b) for a, b in zip(hues, hues[1:])]
    assert min(gaps) >= MAX_CHILD_SPAN / 4 - 0.01, gaps


def test_top_level_hues_are_well_separated():
    top = hierarchy_colours([np.full(6, -1)])[0]
    hues = [hue(c) for c in top]
    assert min(hue_gap(a, b) for i, a in enumerate(hues) for b in hues[i + 1 :]) > 0.08
    assert min_distance(top) > 60


def test_colours_are_deterministic_and_an_only_child_keeps_its_parents_colour():
    parents = random_tree(3)
    first, again = hierarchy_colours(parents), hierarchy_colours([p.copy() for p in parents])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    only = hierarchy_colours([np.array([0, 1, 1]), np.full(2, -1)])
    assert np.array_equal(only[0][0], only[1][0]) and not np.array_equal(only[0][1], only[0][2])


def test_sibling_ranks_count_in_id_order_within_each_parent():
    assert sibling_ranks(np.array([2, 0, 2, 1, 0, 2])).tolist() == [0, 0, 1, 0, 1, 2]


def test_overlay_takes_the_given_colour_table():
    labels = np.array([[0, 0, 1], [2, 2, 1]])
    table = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 0]], np.uint8)
    out = overlay_regions(np.zeros((2, 3, 3), np.uint8), labels, alpha=1.0, colours=table)
    inner = ~boundaries(labels)
    assert np.array_equal(out[inner], table[labels][inner])


def test_inner_band_is_the_outline_inside_the_mask():
    mask = np.zeros((20, 30), bool)
    mask[4:16, 5:25] = True
    assert np.array_equal(inner_band(mask, 1), boundaries(mask) & mask)
    assert inner_band(np.ones((5, 6), bool), 1).sum() == 5 * 6 - 3 * 4  # the frame is outside
    band = inner_band(mask, 3)
    assert band.sum() == 12 * 20 - 6 * 14 and not (band & ~mask).any()
    out = highlight(np.full((20, 30, 3), 100, np.uint8), mask, colour=(1, 2, 3), width=3)
    assert np.array_equal(np.all(out == (1, 2, 3), axis=-1), band)


def test_crop_box_adds_the_margin_and_clips_to_the_image():
    # a 20 x 10 box: 15 % + 2 px = 5 px left/right, 3 px up/down
    assert crop_box((30, 20, 50, 30), (100, 100)) == (25, 17, 55, 33)
    assert crop_box((0, 0, 20, 10), (12, 22)) == (0, 0, 22, 12)  # clipped at every side
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[20:30, 30:50] = True
    assert outlined_crop(image, mask, (30, 20, 50, 30)).shape == (16, 30, 3)
