"""The pipelined extractor (issue 14, item 2): DataLoader workers + batched device stage == today's
one-image-at-a-time path, image failures reported per image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hsg_core.extract_pipeline import PipelinedExtractor
from hsg_core.predictor import HSGPredictor, make_extractor
from index import build_index
from tests.conftest import make_shapes_image
from tests.hsg_core.test_predictor import assert_same_prediction
from tests.index.conftest import index_content

SIZES = [(90, 120), (120, 90), (72, 60), (90, 120), (120, 160), (60, 40), (120, 90)]


@pytest.fixture(scope="module")
def predictor(vit_contour_predictor) -> HSGPredictor:
    """The shipped model's design (ViT, contour tree, embedding+backbone), random, no weights
    (tests/hsg_core/conftest.py)."""
    return vit_contour_predictor


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Seven generated photos of five sizes (four working sizes), and four bad files."""
    root = tmp_path_factory.mktemp("pipeline") / "data"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate(SIZES):
        target = root / ("sub" if i % 3 == 0 else "") / f"img{i}.png"
        Image.fromarray(make_shapes_image(rng, h, w)).save(target)
    (root / "broken.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    (root / "sub" / "cut.png").write_bytes((root / "img1.png").read_bytes()[:60])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "dot.png")  # crashed higra
    return root


def build(data, out, extract) -> dict:
    return build_index(
        data,
        out,
        extract,
        checkpoint_hash="pipeline-test",
        batch_size=3,
        shard_images=4,
        progress=lambda done, total: None,
    )


def skipped(manifest: dict) -> dict[str, str]:
    return {r["image"]: r["error"] for r in manifest["skipped"]}


@pytest.fixture(scope="module")
def reference(folder, predictor, tmp_path_factory):
    """(index folder, manifest) of today's path: `make_extractor`, one image at a time."""
    out = tmp_path_factory.mktemp("reference") / "idx"
    return out, build(folder, out, make_extractor(predictor))


@pytest.mark.parametrize("workers", [0, 2])
def test_pipelined_build_equals_the_per_image_build(
    workers, folder, predictor, reference, tmp_path
):
    extractor = PipelinedExtractor(predictor, workers=workers, batch_size=3)
    manifest = build(folder, tmp_path / "idx", extractor)
    meta_a, vectors_a, _ = index_content(reference[0])
    meta_b, vectors_b, _ = index_content(tmp_path / "idx")
    pd.testing.assert_frame_equal(meta_a, meta_b)  # same images, regions, masks, boxes, parents
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)
    assert manifest["counts"] == reference[1]["counts"]
    assert skipped(manifest) == skipped(reference[1])  # the bad files, each with today's message
    assert extractor.images == len(SIZES)
    assert {"decode", "edges", "features", "tree", "levels"} <= set(extractor.stage_seconds)


def test_bad_files_are_reported_per_image(reference):
    errors = skipped(reference[1])
    assert set(errors) == {"broken.jpg", "empty.png", "sub/cut.png", "dot.png"}
    assert errors["dot.png"] == "ValueError: a 1x1 image has no contours"
    assert "not an image" in errors["broken.jpg"] and "empty file" in errors["empty.png"]
    assert "corrupt or truncated" in errors["sub/cut.png"]


def test_stream_yields_in_path_order_and_a_failing_batch_falls_back_image_by_image(
    folder, predictor, monkeypatch
):
    paths = sorted(folder.rglob("*.png"))
    extractor = PipelinedExtractor(predictor, workers=1, batch_size=4)
    results = list(extractor.stream(paths))
    for path, result in zip(paths, results, strict=True):
        if path.name in ("empty.png", "cut.png", "dot.png"):
            assert isinstance(result, ValueError)
        else:
            image = np.asarray(Image.open(path).convert("RGB"))
            assert_same_prediction(result, predictor.predict(image))
    real = predictor.predict_prepared

    def fails_on_tall(prepared):
        if any(p.image_size == (120, 90) for p in prepared):
            raise ValueError("tall images break this model")
        return real(prepared)

    monkeypatch.setattr(predictor, "predict_prepared", fails_on_tall)
    again = extractor(paths)
    for path, result, before in zip(paths, again, results, strict=True):
        if path.name in ("img1.png", "img6.png"):
            assert isinstance(result, ValueError) and "tall images" in str(result)
        else:
            assert type(result) is type(before)


def test_the_preparer_pickles_with_its_cache_for_spawned_workers(predictor, tmp_path):
    import pickle

    from hsg_core.overseg import OversegCache

    preparer = predictor.preparer()
    preparer.cache = OversegCache(tmp_path / "cache")
    image = make_shapes_image(np.random.default_rng(8), 60, 80)
    copy = pickle.loads(pickle.dumps(preparer))
    first, again = copy(image), preparer(image)  # the copy writes the entry, the original reads it
    assert np.array_equal(first.prior, again.prior) and np.array_equal(first.work, again.work)
    assert list(tmp_path.joinpath("cache").rglob("*.npy"))


def test_worker_errors_cross_processes_as_builtin_exceptions_with_their_message():
    import pickle

    from hsg_core.extract_pipeline import portable
    from hsg_core.images import ImageReadError

    class NamedError(ValueError):
        def __init__(self, path, reason):  # two arguments: would not unpickle from str(err)
            super().__init__(f"{path}: {reason}")

    err = portable(NamedError("a.jpg", "not an image"))
    assert type(err) is ValueError and str(err) == "a.jpg: not an image"
    same = OSError(2, "gone")
    assert portable(same) is same
    assert str(pickle.loads(pickle.dumps(err))) == "a.jpg: not an image"
    ours = ImageReadError("b.png: empty file (0 bytes)")  # hsg_core's own: kept, and it pickles
    assert portable(ours) is ours
    back = pickle.loads(pickle.dumps(ours))
    assert type(back) is ImageReadError and str(back) == str(ours)
