import numpy as np
import pytest

from hsg_core.evaluation.transfer import (
    PrototypeMemory,
    RegionClasses,
    hungarian_cluster_scores,
    knn_transfer_scores,
    weighted_spherical_kmeans,
)
from hsg_core.types import Level


def level_of(label_map: np.ndarray, embeddings: np.ndarray) -> Level:
    n = embeddings.shape[0]
    return Level(
        label_map=label_map,
        embeddings=embeddings.astype(np.float32),
        areas=np.bincount(label_map.ravel(), minlength=n),
        boxes=np.zeros((n, 4), np.int32),
        parents=np.full(n, -1, np.int32),
    )


E = np.eye(3)


def test_region_classes_count_void_in_last_column():
    level = level_of(np.array([[0, 0, 1], [1, 1, 1]]), E[:2])
    regions = RegionClasses.from_level(level, np.array([[1, 255, 0], [0, 0, 7]]), num_classes=2)
    assert regions.counts.tolist() == [[0, 1, 1], [3, 0, 1]]  # label 7 >= C counts as void


def test_memory_drops_void_majority_and_votes_by_cosine():
    memory_regions = RegionClasses(
        E[[0, 0, 1, 2]], np.array([[5, 0, 1], [3, 1, 0], [0, 4, 0], [1, 0, 9]])
    )
    memory = PrototypeMemory.from_regions([memory_regions])
    assert len(memory) == 3 and memory.labels.tolist() == [0, 0, 1]  # the void-majority one is gone
    queries = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.6, 0.8, 0]])
    assert memory.vote(queries, k=1).tolist() == [0, 1, 1]
    assert memory.vote(queries, k=3).tolist() == [0, 0, 0]  # 2 votes for class 0 against 1
    assert memory.vote(queries, k=50).tolist() == [0, 0, 0]  # k larger than the memory
    empty = PrototypeMemory(np.zeros((0, 3)), np.zeros(0), 2)
    assert empty.vote(queries).tolist() == [-1, -1, -1]


def test_knn_scores_paint_whole_regions():
    memory = PrototypeMemory(E[:2], np.array([0, 1]), 2)
    test = RegionClasses(E[[0, 1, 1]], np.array([[4, 0, 0], [1, 3, 2], [0, 2, 0]]))
    scores = knn_transfer_scores(memory, [test], k=1)
    # class 0: TP 4, FN 1; class 1: TP 5, FP 1. IoU_0 = 4/5, IoU_1 = 5/6; 9 of 10 valid pixels right.
    assert scores.miou == pytest.approx(100 * (4 / 5 + 5 / 6) / 2)
    assert scores.pixel_accuracy == pytest.approx(90.0)


def test_weighted_kmeans_separates_groups_and_ignores_zero_weight():
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [E[0] + rng.normal(0, 0.05, (10, 3)), E[1] + rng.normal(0, 0.05, (10, 3)), E[[2]]]
    )
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    weights = np.r_[np.ones(20), 0.0]
    clusters = weighted_spherical_kmeans(points, weights, 2)
    assert (
        len(set(clusters[:10])) == 1
        and len(set(clusters[10:20])) == 1
        and clusters[0] != clusters[10]
    )
    assert weighted_spherical_kmeans(points, np.zeros(21), 2).tolist() == [0] * 21


def test_hungarian_clusters_recover_classes():
    regions = RegionClasses(
        E[[0, 1, 2, 0, 2]],
        np.array([[5, 0, 0, 0], [0, 3, 0, 0], [0, 0, 2, 1], [2, 0, 0, 0], [0, 0, 4, 0]]),
    )
    scores = hungarian_cluster_scores([regions])
    assert scores.miou == 100.0 and scores.pixel_accuracy == 100.0
