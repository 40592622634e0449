import numpy as np
import torch
import torch.nn.functional as F

from hsg_core.segments import (IGNORE, grid_initial_labels, intersect_segments, location_features,
                               majority_downsample, segment_means, spherical_kmeans)


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
    assert torch.allclose(segment_means(emb, ids, 2, normalize=False), torch.tensor([[2.0, 0], [0, 2.0]]))
    assert torch.allclose(segment_means(emb, ids, 2), torch.tensor([[1.0, 0], [0, 1.0]]))
