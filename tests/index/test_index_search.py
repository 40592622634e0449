"""Search results against numpy brute force, filters, and region helpers."""

from __future__ import annotations

import numpy as np
import pytest

from index import SegmentIndex, build_index
from index.synthetic import SyntheticExtractor, cluster_centers, clustered_unit_vectors


def brute_force(
    index: SegmentIndex,
    query: np.ndarray,
    k: int,
    keep: np.ndarray | None = None,
    one_per_image: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k (ids, scores) with numpy over the stored vectors."""
    frame = index.metadata
    query = query / np.linalg.norm(query)
    scores = np.asarray(index.vectors(), dtype=np.float64) @ query
    order = np.argsort(-scores, kind="stable")
    if keep is not None:
        order = order[keep[order]]
    if one_per_image:
        images = frame["image"].to_numpy()[order]
        order = order[np.sort(np.unique(images, return_index=True)[1])]
    order = order[:k]
    return frame["id"].to_numpy()[order], scores[order]


def queries(count: int, seed: int = 1) -> np.ndarray:
    return clustered_unit_vectors(count, cluster_centers(16, 16), 0.5, np.random.default_rng(seed))


@pytest.mark.parametrize("levels", [None, [0], [1, 2], [2]])
def test_flat_search_equals_brute_force(small_index, levels):
    level_column = small_index.metadata["level"].to_numpy()
    keep = None if levels is None else np.isin(level_column, levels)
    for query in queries(5):
        hits = small_index.search(query, k=10, levels=levels)
        ids, scores = brute_force(small_index, query, 10, keep)
        assert [h.id for h in hits] == ids.tolist()
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)


def test_exclude_image_and_one_per_image_equal_brute_force(small_index):
    frame = small_index.metadata
    image = small_index.images()[3]
    for query in queries(3, seed=2):
        hits = small_index.search(query, k=12, exclude_image=image)
        ids, _ = brute_force(small_index, query, 12, frame["image"].to_numpy() != image)
        assert [h.id for h in hits] == ids.tolist()
        hits = small_index.search(query, k=30, levels=[0], one_per_image=True)
        ids, scores = brute_force(
            small_index, query, 30, frame["level"].to_numpy() == 0, one_per_image=True
        )
        assert [h.id for h in hits] == ids.tolist()
        assert len({h.image for h in hits}) == 30
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)


def test_level_filter_returns_k_hits_of_that_level_only(small_index):
    counts = small_index.metadata["level"].value_counts()
    for level in range(small_index.num_levels):
        k = 100
        hits = small_index.search(queries(1)[0], k=k, levels=[level])
        assert {h.level for h in hits} == {level}
        assert len(hits) == min(k, counts[level])  # level 2 has 120 regions: no starvation


def test_k_larger_than_the_filtered_set(small_index):
    hits = small_index.search(queries(1)[0], k=10_000, levels=[2])
    assert len(hits) == (small_index.metadata["level"] == 2).sum()
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_region_queried_with_its_own_vector_comes_first(small_index):
    frame = small_index.metadata.sample(8, random_state=0)
    for row in frame.itertuples():
        hits = small_index.search_region(row.image, row.level, row.region, k=5, exclude_self=False)
        assert (hits[0].image, hits[0].level, hits[0].region) == (row.image, row.level, row.region)
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].id == row.id and hits[0].parent == row.parent and hits[0].area == row.area


def test_search_region_exclusions_and_default_level(small_index):
    image = small_index.images()[0]
    hits = small_index.search_region(image, 1, 2, k=20)
    assert all(h.level == 1 for h in hits) and len(hits) == 20
    assert all((h.image, h.region) != (image, 2) for h in hits)
    hits = small_index.search_region(image, 1, 2, k=20, exclude_image=True, levels=[0, 1, 2])
    assert len(hits) == 20 and all(h.image != image for h in hits)
    with pytest.raises(ValueError, match="no region 99 at level 1"):
        small_index.search_region(image, 1, 99)
    with pytest.raises(ValueError, match="not in the index"):
        small_index.search_region("missing.png", 0, 0)


def test_search_across_levels_searches_each_level(small_index):
    image = small_index.images()[5]
    chain = small_index.regions_at(image, 10, 20)
    vectors = {
        level: small_index.region_vector(image, level, region) for level, region in chain.items()
    }
    results = small_index.search_across_levels(vectors, k=4, exclude_image=image)
    assert sorted(results) == list(range(small_index.num_levels))
    for level, hits in results.items():
        assert len(hits) == 4 and all(h.level == level and h.image != image for h in hits)
        assert hits == small_index.search(vectors[level], 4, levels=[level], exclude_image=image)


def test_masks_boxes_and_pixel_chain_agree(small_index):
    image = small_index.images()[7]
    x, y = 33, 17
    chain = small_index.regions_at(image, x, y)
    assert sorted(chain) == [0, 1, 2]
    frame = small_index.metadata
    rows = frame[(frame["image"] == image)]
    for level, region in chain.items():
        row = rows[(rows["level"] == level) & (rows["region"] == region)].iloc[0]
        mask = small_index.region_mask(int(row["id"]))
        assert mask.shape == (row["height"], row["width"]) and mask[y, x]
        assert mask.sum() == row["area"]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (
            row["x0"],
            row["y0"],
            row["x1"],
            row["y1"],
        )
        if level + 1 in chain:
            assert row["parent"] == chain[level + 1]


def test_vectors_and_metadata_schema(small_index, checkpoint):
    frame = small_index.metadata
    assert list(frame.columns) == [
        "id",
        "image",
        "image_hash",
        "level",
        "region",
        "parent",
        "area",
        "x0",
        "y0",
        "x1",
        "y1",
        "height",
        "width",
        "rle",
    ]
    vectors = small_index.vectors()
    assert vectors.shape == (len(small_index), small_index.dim) == (40 * 35, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ids = frame["id"].to_numpy()[[5, 100]]
    np.testing.assert_array_equal(small_index.vectors(ids), vectors[[5, 100]])
    info = small_index.info()
    assert (
        info["per_level"] == [960, 320, 120] and info["images"] == 40 and info["factory"] == "Flat"
    )
    assert info["size_bytes"] > 0 and info["checkpoint_hash"] == checkpoint


def test_query_validation(small_index):
    with pytest.raises(ValueError, match="16-d"):
        small_index.search(np.ones(8, np.float32))
    with pytest.raises(ValueError, match="zero"):
        small_index.search(np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="outside"):
        small_index.search(np.ones(16, np.float32), levels=[3])


def test_mmap_open_gives_the_same_results(small_index):
    mapped = SegmentIndex.open(small_index.path, mmap=True)
    query = queries(1, seed=5)[0]
    assert mapped.search(query, 15, levels=[0, 2]) == small_index.search(query, 15, levels=[0, 2])
    np.testing.assert_array_equal(mapped.vectors(), small_index.vectors())


@pytest.mark.parametrize("factory, min_recall", [("IVF32,Flat", 0.95), ("IVF16,SQ4", 0.95)])
def test_ivf_recall_at_10(ivf_root, checkpoint, factory, min_recall):
    out = ivf_root / factory.replace(",", "_")
    build_index(
        ivf_root / "data",
        out,
        SyntheticExtractor(),
        checkpoint_hash=checkpoint,
        factory=factory,
        progress=lambda done, total: None,
    )
    index = SegmentIndex.open(out)
    assert index.info()["factory"] == factory and len(index) == 120 * 35
    level_column = index.metadata["level"].to_numpy()
    found = 0
    for number, query in enumerate(queries(40, seed=9)):
        levels = [0, 1] if number % 2 else None
        hits = index.search(query, 10, levels=levels)
        keep = None if levels is None else np.isin(level_column, levels)
        ids, _ = brute_force(index, query, 10, keep)
        found += len(set(h.id for h in hits) & set(ids.tolist()))
        exact = index.vectors(np.array([h.id for h in hits])) @ (query / np.linalg.norm(query))
        np.testing.assert_allclose([h.score for h in hits], exact, atol=1e-5)
        assert len(hits) == 10 and (levels is None or all(h.level in levels for h in hits))
    assert found / (40 * 10) >= min_recall
    sparse = index.search(
        queries(1)[0], 300, levels=[2]
    )  # 360 regions: needs more lists than nprobe
    assert len(sparse) == 300 and {h.level for h in sparse} == {2}


def test_region_rows_ids_and_hits_read_the_kept_columns_not_the_metadata(small_index):
    """region_rows / has_ids / hits_of (the embedding map's reads) agree with the decoded metadata
    and leave it undecoded: a large index keeps its metadata lazy."""
    index = SegmentIndex.open(small_index.path)
    rows = np.array([0, 3, len(index) - 1])
    got = index.region_rows(rows)
    ids = got["id"]
    assert not index.has_ids([int(ids.max()) + 1, -5]).any() and index.has_ids(ids).all()
    hits = index.hits_of(ids, [0.5, 0.25, 0.0])
    assert index._frame is None  # nothing above decoded the metadata
    frame = index.metadata.iloc[rows]
    assert ids.tolist() == frame["id"].tolist()
    assert got["level"].tolist() == frame["level"].tolist()
    assert got["image"].tolist() == frame["image"].tolist()
    assert [h.id for h in hits] == ids.tolist() and [h.score for h in hits] == [0.5, 0.25, 0.0]
    for hit, row in zip(hits, frame.itertuples(index=False)):
        assert (hit.image, hit.level, hit.region, hit.box, hit.image_size) == (
            row.image,
            row.level,
            row.region,
            (row.x0, row.y0, row.x1, row.y1),
            (row.height, row.width),
        )
    with pytest.raises(ValueError, match="unknown region id"):
        index.hits_of([int(ids.max()) + 1], [0.0])


def test_image_with_hash_finds_the_indexed_file_without_decoding(small_index):
    index = SegmentIndex.open(small_index.path)
    frame = SegmentIndex.open(small_index.path).metadata  # the reference, from another handle
    for digest in frame["image_hash"].unique():  # the first indexed file with those bytes
        first = frame.loc[frame["image_hash"] == digest, "image"].iloc[0]
        assert index.image_with_hash(digest) == first
    assert index.image_with_hash("0" * 64) == "" and index._frame is None
