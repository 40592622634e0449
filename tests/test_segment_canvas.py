"""segment_canvas.py: what the page receives to draw every level without the server."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from explorer import level_colours
from segment_canvas import canvas_payload, decode_labels, encode_labels, level_lookup
from tests.fakes import GridPredictor


def prediction_of(height: int = 40, width: int = 56, seed: int = 0):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image, GridPredictor().predict(image)


def test_labels_round_trip_through_the_png_including_ids_above_255():
    labels = np.arange(70 * 9).reshape(70, 9) % 700  # ids up to 629: two bytes
    assert np.array_equal(decode_labels(encode_labels(labels)), labels)


def test_ids_beyond_two_bytes_are_refused():
    with pytest.raises(ValueError, match="65535"):
        encode_labels(np.array([[0, 70000]]))


def test_every_level_follows_from_level_0_and_the_parents():
    _, pred = prediction_of()
    label0 = pred.levels[0].label_map
    for level, table in enumerate(level_lookup(pred)):
        assert np.array_equal(table[label0], pred.levels[level].label_map), level


def test_payload_carries_the_photo_the_labels_and_each_levels_tables():
    image, pred = prediction_of()
    colours = level_colours(pred)
    payload = canvas_payload(image, pred, colours, token="t1", level=9, selected=(1, 3))
    assert (payload["width"], payload["height"], payload["token"]) == (56, 40, "t1")
    assert payload["level"] == pred.num_levels - 1  # clamped to the hierarchy
    assert payload["selected"] == [1, 3]
    assert np.array_equal(decode_labels(payload["labels"]), pred.levels[0].label_map)
    photo = Image.open(io.BytesIO(base64.b64decode(payload["photo"].split(",", 1)[1])))
    assert photo.size == (56, 40) and photo.format == "JPEG"
    assert len(payload["parents"]) == pred.num_levels - 1
    for level, lv in enumerate(pred.levels):
        assert payload["colours"][level] == colours[level].reshape(-1).tolist()
        assert payload["areas"][level] == lv.areas.tolist()
        if level < pred.num_levels - 1:
            assert payload["parents"][level] == lv.parents.tolist()


def test_payload_refuses_a_photo_of_another_size_or_missing_colours():
    image, pred = prediction_of()
    with pytest.raises(ValueError, match="56x40"):
        canvas_payload(image[:, :50], pred, level_colours(pred), token="t")
    with pytest.raises(ValueError, match="colour tables"):
        canvas_payload(image, pred, level_colours(pred)[:2], token="t")
