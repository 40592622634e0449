"""The whitening benchmark's exact re-ranking counts a hit as `hsg eval retrieval` does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmarks.bench_whitening import K, recall_per_level


def test_recall_counts_the_target_within_k_among_other_images_of_the_level():
    rng = np.random.default_rng(0)
    # image "a" holds the queries, "b" their copies, 30 distractor images one region each
    names = ["a", "a", "b", "b"] + [f"d{i}" for i in range(30)]
    frame = pd.DataFrame(
        {"image": names, "level": [0, 1, 0, 1] + [0] * 30, "region": [0, 0, 0, 0] + [0] * 30}
    )
    vectors = rng.normal(size=(len(names), 8)).astype(np.float32)
    vectors[2] = vectors[0] + 0.01  # the level-0 copy is the query's nearest neighbour
    vectors[3] = -vectors[1]  # the level-1 copy is as far as can be, but alone at its level
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = [SimpleNamespace(original="a", copy="b")]
    queries = [
        {"pair": 0, "level": 0, "region": 0, "target": 0},
        {"pair": 0, "level": 1, "region": 0, "target": 0},
    ]
    assert recall_per_level(vectors, frame, queries, pairs) == {0: 1.0, 1: 1.0}
    vectors[2] = -vectors[0]  # now every distractor of level 0 ranks before the copy
    assert K < 30 and recall_per_level(vectors, frame, queries, pairs) == {0: 0.0, 1: 1.0}
