import numpy as np
import pytest
import torch

from hsg_core.semantic_edges import semantic_edges


def halves(rows: int = 6, cols: int = 8, dim: int = 4) -> torch.Tensor:
    """[dim, rows, cols]: e_0 in the left half, e_1 in the right half."""
    grid = torch.zeros(dim, rows, cols)
    grid[0, :, : cols // 2] = 1.0
    grid[1, :, cols // 2 :] = 1.0
    return grid


def test_constant_features_have_no_edges():
    grid = torch.ones(3, 5, 7) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    out = semantic_edges(grid, (5, 7), (50, 70))
    assert out.shape == (50, 70) and out.dtype == np.float32
    assert np.abs(out).max() < 1e-5


def test_a_change_of_features_is_an_edge_where_it_happens():
    out = semantic_edges(halves(), (6, 8), (60, 80), offset=1.0, scale=1.0)
    middle, far = out[30, 36:44], np.concatenate([out[30, :20], out[30, 60:]])
    assert middle.max() > 0.9  # orthogonal features: 1 - cos = 1 across the change
    assert far.max() < 1e-5
    assert out[:, 40].min() > 0.5  # along the whole boundary
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_scale_multiplies_then_clips():
    low = semantic_edges(halves(), (6, 8), (60, 80), scale=0.5)
    high = semantic_edges(halves(), (6, 8), (60, 80), scale=3.0)
    assert low.max() == pytest.approx(0.5, abs=1e-3) and high.max() == pytest.approx(1.0)
    assert np.allclose(np.minimum(low * 6.0, 1.0), high, atol=1e-5)


def test_padded_cells_are_cropped_away():
    grid = torch.zeros(2, 4, 6)
    grid[0, :, :3] = 1.0
    grid[1, :, 3:] = (
        1.0  # a change between patches 2 and 3; patch 5 is padding (a ViT pads to whole patches)
    )
    out = semantic_edges(grid, (4, 5), (40, 50), scale=1.0)  # 5 valid patches -> 10 px each

    def centre(row):
        return float((row * np.arange(row.size)).sum() / row.sum())

    assert abs(centre(out[20]) - 29.5) <= 1  # the change sits 3 patches in: 30 of 50 px
    stretched = semantic_edges(grid, (4, 6), (40, 50), scale=1.0)  # as if the padding were image
    assert abs(centre(stretched[20]) - 24.5) <= 1


def test_bad_grid_is_refused():
    with pytest.raises(ValueError, match=r"\[C, h, w\]"):
        semantic_edges(torch.zeros(2, 3), (2, 3), (10, 10))
