"""RLE and varint round trips, and the id layout."""

from __future__ import annotations

import numpy as np
import pytest

from index.ids import image_level_range, level_range, region_ids, split_ids
from index.rle import (
    decode_mask,
    decode_region,
    decode_varints,
    encode_mask,
    encode_region,
    encode_varints,
)


def test_varints_round_trip_and_known_bytes():
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**32 + 5, 2**63 - 1], dtype=np.int64)
    assert np.array_equal(decode_varints(encode_varints(values)), values)
    assert encode_varints(np.array([0, 127, 128, 300])) == bytes(
        [0x00, 0x7F, 0x80, 0x01, 0xAC, 0x02]
    )
    assert decode_varints(b"").size == 0


def test_varints_reject_truncated_and_negative():
    with pytest.raises(ValueError, match="truncated"):
        decode_varints(bytes([0x80]))
    with pytest.raises(ValueError, match="non-negative"):
        encode_varints(np.array([-1]))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 31)])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_mask_round_trip(shape, density):
    rng = np.random.default_rng(7)
    mask = rng.random(shape) < density
    assert np.array_equal(decode_mask(encode_mask(mask), shape), mask)


def test_mask_runs_start_outside():
    mask = np.array([[True, True, False, True]])
    assert list(decode_varints(encode_mask(mask))) == [0, 2, 1, 1]


def test_region_round_trip_in_box():
    rng = np.random.default_rng(3)
    label_map = rng.integers(0, 5, (20, 30))
    for region in range(5):
        ys, xs = np.nonzero(label_map == region)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        code, count = encode_region(label_map, region, box)
        assert count == (label_map == region).sum()
        assert np.array_equal(decode_region(code, box, label_map.shape), label_map == region)


def test_decode_rejects_wrong_pixel_count():
    code = encode_mask(np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="corrupt"):
        decode_mask(code, (3, 3))


def test_id_layout_round_trip_and_ranges():
    ids = region_ids(3, 123456, np.array([0, 7, 65535]))
    level, slot, region = split_ids(ids)
    assert (
        level.tolist() == [3, 3, 3]
        and slot.tolist() == [123456] * 3
        and region.tolist() == [0, 7, 65535]
    )
    low, high = level_range(3)
    assert ((ids >= low) & (ids < high)).all()
    low, high = image_level_range(3, 123456)
    assert ((ids >= low) & (ids < high)).all()
    assert not (low <= region_ids(3, 123457, np.array([0]))[0] < high)
    with pytest.raises(ValueError, match="region ids"):
        region_ids(0, 0, np.array([65536]))
