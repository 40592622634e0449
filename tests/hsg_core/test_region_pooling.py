import numpy as np
import torch

from hsg_core.region_pooling import (
    chain_sums,
    grid_to_pixels,
    level_of_segments,
    patch_overlap,
    region_sums,
    unit_rows,
)


def test_grid_to_pixels_is_unit_and_crops_the_padding():
    grid = torch.zeros(2, 3, 4)
    grid[0, :, :3] = 2.0
    grid[1, :, 3] = 1.0  # padding column: the image covers 3 of 4 columns
    pixels = grid_to_pixels(grid, (3, 3), (30, 30)).t().numpy()
    assert pixels.shape == (900, 2) and np.allclose(np.linalg.norm(pixels, axis=1), 1, atol=1e-5)
    assert (
        pixels[:, 1].reshape(30, 30)[:, :20].max() < 1e-6
    )  # the padding bleeds only into the last cell
    stretched = grid_to_pixels(grid, (3, 4), (30, 30)).t().numpy()
    assert (
        stretched[:, 1].reshape(30, 30)[:, -1].min() > 0.9
    )  # counted as image it reaches the border


def test_region_sums_match_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 7))
    pixels = rng.normal(size=(42, 3))
    expected = np.stack([pixels[labels.ravel() == r].sum(0) for r in range(5)])
    assert np.allclose(region_sums(torch.from_numpy(pixels.T.copy()), labels), expected)


def test_chain_sums_and_levels_of_segments():
    segments = np.array([[0, 0, 1], [2, 3, 3]])
    coarse = np.array([[5, 5, 5], [7, 5, 5]])
    groups = level_of_segments(segments, coarse)
    assert groups.tolist() == [5, 5, 7, 5]
    sums = np.array([[1.0, 0], [0, 1], [2, 2], [1, 1]])
    _, chain = np.unique(groups, return_inverse=True)
    assert chain_sums(sums, chain).tolist() == [[2.0, 2.0], [2.0, 2.0]]
    assert np.allclose(np.linalg.norm(unit_rows(sums), axis=1), 1)


def test_patch_overlap_counts_pixels_per_cell():
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = (
        1  # two halves of a 4x6 map over a 2x3 grid (2x2 pixels a cell), last column padding
    )
    overlap = patch_overlap(labels, (2, 4), (2, 3)).toarray()
    assert overlap.shape == (2, 8)
    assert overlap[0].tolist() == [
        4,
        2,
        0,
        0,
        4,
        2,
        0,
        0,
    ]  # region 0: cell 0 and half of cell 1 per row
    assert overlap[1].tolist() == [0, 2, 4, 0, 0, 2, 4, 0] and overlap.sum() == 24
