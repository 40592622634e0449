import numpy as np
import pytest

from hsg_core.hierarchy import (
    build_prediction,
    parents_of,
    region_boxes,
    resize_nearest,
    segment_chains,
)


def nested_example():
    segment_map = np.array([[0, 0, 1, 1, 2], [3, 3, 1, 4, 2]])  # 2 x 5, non-square
    groups1 = np.array([7, 2, 7, 2, 5])  # sparse ids -> renumbered
    groups2 = np.array([1, 0, 1, 0, 1])
    emb = [np.eye(5, 3, dtype=np.float32)[:n] for n in (5, 3, 2)]
    return segment_map, [groups1, groups2], emb


def test_chains_are_contiguous():
    chains = segment_chains(nested_example()[1])
    assert [c.tolist() for c in chains] == [[0, 1, 2, 3, 4], [2, 0, 2, 0, 1], [1, 0, 1, 0, 1]]


def test_prediction_levels_nest_and_resize():
    segment_map, groups, emb = nested_example()
    pred = build_prediction(segment_map, groups, emb, (4, 10))
    assert [lv.num_regions for lv in pred.levels] == [5, 3, 2]
    for fine, coarse in zip(pred.levels, pred.levels[1:]):
        assert np.array_equal(coarse.label_map, fine.parents[fine.label_map])
    assert pred.levels[-1].parents.tolist() == [-1, -1]
    assert pred.levels[0].label_map.shape == (4, 10)
    assert pred.levels[0].areas.tolist() == [8, 12, 8, 8, 4] and pred.levels[0].areas.sum() == 40
    # x/y order: pixel column 9, row 0 is segment 2; column 0, row 3 is segment 3
    assert pred.segment_at(0, 9, 0) == 2 and pred.segment_at(0, 0, 3) == 3
    assert pred.chain_at(9, 0) == [2, 2, 1]
    assert pred.ancestors(0, 3) == [3, 0, 0]
    with pytest.raises(ValueError, match="outside the 10x4 image"):
        pred.segment_at(0, 10, 0)
    with pytest.raises(ValueError, match="level 3 out of range"):
        pred.segment_at(3, 0, 0)


def test_parents_refuse_non_nested():
    with pytest.raises(ValueError, match="not nested"):
        parents_of(np.array([0, 0, 1]), np.array([0, 1, 1]))


def test_boxes_and_resize():
    labels = np.array([[0, 0, 1], [2, 0, 1]])
    assert region_boxes(labels, 3).tolist() == [[0, 0, 2, 2], [2, 0, 3, 2], [0, 1, 1, 2]]
    up = resize_nearest(labels, (4, 6))
    assert up.shape == (4, 6) and set(np.unique(up)) == {0, 1, 2}
    assert np.array_equal(resize_nearest(labels, (2, 3)), labels)


def test_hierarchy_json_round_trip():
    import json

    pred = build_prediction(*nested_example()[:3], (2, 5))
    data = json.loads(pred.to_json())
    assert data["image_size"] == [2, 5]
    assert [len(lv["regions"]) for lv in data["levels"]] == [5, 3, 2]
    assert data["levels"][0]["regions"][2] == {"id": 2, "area": 2, "box": [4, 0, 5, 2], "parent": 2}
