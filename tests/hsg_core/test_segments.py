import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsg_core.segments import (
    IGNORE,
    grid_initial_labels,
    initial_clusters,
    intersect_segments,
    location_features,
    majority_downsample,
    original_grid_labels,
    segment_means,
    spherical_kmeans,
)


def kmeans_loop(x: np.ndarray, labels: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Brute-force reference: plain Python loops."""
    labels = labels.copy()
    for _ in range(iters):
        centroids = np.zeros((k, x.shape[1]))
        for i in range(x.shape[0]):
            centroids[labels[i]] += x[i]
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids = np.where(norms > 0, centroids / np.maximum(norms, 1e-12), 0)
        for i in range(x.shape[0]):
            labels[i] = int(np.argmax([x[i] @ centroids[c] for c in range(k)]))
    return labels


def test_kmeans_matches_brute_force_loop():
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(2, 60, 5, generator=gen, dtype=torch.float64), dim=-1)
    init = torch.randint(0, 4, (2, 60), generator=gen)
    got = spherical_kmeans(feats, init, 4, 5)
    for b in range(2):
        want = kmeans_loop(feats[b].numpy(), init[b].numpy(), 4, 5)
        assert np.array_equal(got[b].numpy(), want)


def test_kmeans_ignores_invalid_pixels():
    feats = F.normalize(torch.tensor([[[1.0, 0], [0.9, 0.1], [0, 1.0], [-1.0, 0]]]), dim=-1)
    valid = torch.tensor([[True, True, True, False]])
    out = spherical_kmeans(feats, torch.tensor([0, 0, 1, 1]), 2, 3, valid=valid)
    assert out.tolist() == [[0, 0, 1, IGNORE]]


def test_grid_labels_and_location_features():
    labels = grid_initial_labels((2, 3), (4, 6), torch.device("cpu")).reshape(4, 6)
    assert labels[0].tolist() == [0, 0, 1, 1, 2, 2] and labels[3].tolist() == [3, 3, 4, 4, 5, 5]
    loc = location_features(3, 5, torch.device("cpu"))
    assert loc.shape == (2, 3, 5)
    assert torch.allclose(loc[0, :, 0], torch.tensor([-0.5, 0.0, 0.5]))  # y varies along rows
    assert torch.allclose(loc[1, 0], torch.linspace(-0.5, 0.5, 5))  # x along columns


def test_majority_downsample_keeps_small_regions_that_nearest_drops():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 1:4, 1:4] = 1  # 9 of 16 pixels of cell (0, 0) but not its top-left pixel
    labels[0, 4:, 4:] = IGNORE
    out = majority_downsample(labels, (2, 2))
    assert out.tolist() == [[[1, 0], [0, IGNORE]]]


def test_intersection_numbers_segments_across_crops():
    clusters = torch.tensor([[0, 0, 1, 1], [0, 1, 1, IGNORE]])
    superpixels = torch.tensor([[5, 6, 6, 6], [5, 5, 5, 5]])
    ids, keys = intersect_segments(clusters, superpixels)
    assert ids[1, 3] == IGNORE
    assert keys.tolist() == [[0, 0, 5], [0, 0, 6], [0, 1, 6], [1, 0, 5], [1, 1, 5]]
    assert ids.tolist() == [[0, 1, 2, 2], [3, 4, 4, IGNORE]]


def test_segment_means():
    emb = torch.tensor([[1.0, 0], [3.0, 0], [0, 2.0]])
    ids = torch.tensor([0, 0, 1])
    assert torch.allclose(
        segment_means(emb, ids, 2, normalize=False), torch.tensor([[2.0, 0], [0, 2.0]])
    )
    assert torch.allclose(segment_means(emb, ids, 2), torch.tensor([[1.0, 0], [0, 1.0]]))


CPU = torch.device("cpu")


def test_original_grid_cells_on_28_px_with_a_4x4_grid():
    """round(linspace(0, 3, 28)) by hand: value i/9 rounds to 0 for i <= 4, 1 for 5..13, 2 for 14..22, 3 for
    23..27 -> rows [5, 9, 9, 5] (equal cells: [7, 7, 7, 7]). Ids are y + 4x (column-major)."""
    cells = [0] * 5 + [1] * 9 + [2] * 9 + [3] * 5
    labels = original_grid_labels((4, 4), (28, 28), CPU).reshape(28, 28)
    assert labels[:, 0].tolist() == cells  # rows: cell y, x = 0
    assert labels[0].tolist() == [4 * c for c in cells]  # columns: cell x, y = 0
    assert labels[27, 27].item() == 15
    equal = grid_initial_labels((4, 4), (28, 28), CPU).reshape(28, 28)
    assert (
        equal[:, 0].tolist() == [0] * 7 + [4] * 7 + [8] * 7 + [12] * 7
    )  # ours: equal cells, row-major
    assert initial_clusters((4, 4), (28, 28), CPU, "original")[1] == 16


def test_original_grid_cells_on_other_sizes():
    """14 px, 4 cells: i 3/13 rounds to 0 for i <= 2, 1 for 3..6, 2 for 7..10, 3 for 11..13 -> [3, 4, 4, 3].
    7 px: values 0, .5, 1, 1.5, 2, 2.5, 3 round half to even (torch.round) -> 0 0 1 2 2 2 3.
    A 3x2 grid on 5x4 px: rows round(0, .5, 1, 1.5, 2) = 0 0 1 2 2, cols round(0, 1/3, 2/3, 1) = 0 0 1 1."""
    assert original_grid_labels((4, 1), (14, 1), CPU).tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        2,
        2,
        2,
        2,
        3,
        3,
        3,
    ]
    assert original_grid_labels((4, 1), (7, 1), CPU).tolist() == [0, 0, 1, 2, 2, 2, 3]
    assert original_grid_labels((3, 2), (5, 4), CPU).reshape(5, 4).tolist() == [
        [0, 0, 3, 3],
        [0, 0, 3, 3],
        [1, 1, 4, 4],
        [2, 2, 5, 5],
        [2, 2, 5, 5],
    ]


def test_original_grid_finer_than_the_map_numbers_only_the_cells_that_occur():
    """6x6 cells on 3x3 px: rows round(0, 2.5, 5) = 0, 2, 5 -> 3 cells a side, ids renumbered 0..8."""
    labels, count = initial_clusters((6, 6), (3, 3), CPU, "original")
    assert count == 9 and labels.reshape(3, 3).tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert initial_clusters((6, 6), (3, 3), CPU, "equal")[1] == 36
    with pytest.raises(ValueError, match="unknown k-means grid rule"):
        initial_clusters((2, 2), (4, 4), CPU, "thirds")
