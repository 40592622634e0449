import numpy as np
import pytest
import torch

from hsg_core.checkpoint import WHITENING_KEY, export_inference_checkpoint, read_checkpoint
from hsg_core.predictor import load_predictor
from hsg_core.whitening import (
    DescriptorWhitening,
    WhiteningError,
    descriptor_setting,
    fit_for_checkpoint,
)
from tests.conftest import write_shapes_images


def anisotropic(rng, n=4000, scales=(10.0, 3.0, 1.0, 0.3, 0.1)):
    """[n, 5] Gaussian with these standard deviations along a random rotation, offset from 0."""
    rotation = np.linalg.qr(rng.normal(size=(len(scales), len(scales))))[0]
    return (rng.normal(size=(n, len(scales))) * scales) @ rotation.T + 5.0


def test_full_whitening_gives_unit_covariance():
    x = anisotropic(np.random.default_rng(0))
    w = DescriptorWhitening.fit(x, -0.5, "setting")
    white = (x - w.mean) @ w.projection
    np.testing.assert_allclose(np.cov(white.T), np.eye(5), atol=1e-3)
    out = w.apply(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_partial_whitening_matches_a_hand_computed_pca():
    x = anisotropic(np.random.default_rng(1), n=500)
    w = DescriptorWhitening.fit(x, -0.25, "setting")
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)  # eigenvalues = s^2 / (n - 1)
    expected = centred @ vt.T * (s**2 / (len(x) - 1)) ** -0.25
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    out = w.apply(x)  # axes may come in another order or sign: compare every cosine
    np.testing.assert_allclose(out @ out.T, expected @ expected.T, atol=1e-4)


def test_power_zero_only_centres_and_keeps_every_cosine():
    x = anisotropic(np.random.default_rng(2), n=300)
    w = DescriptorWhitening.fit(x, 0.0, "setting")
    centred = x - x.mean(0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    out = w.apply(x)
    np.testing.assert_allclose(out @ out.T, centred @ centred.T, atol=1e-4)


def test_whitening_finds_the_copy_that_a_dominant_nuisance_direction_hides():
    """Regions differ along weak directions (identity) and vary along a strong one (nuisance: light,
    scale); raw cosine ranks by the nuisance, the whitened one by identity."""
    rng = np.random.default_rng(3)
    identity = rng.normal(size=(200, 16)) * 0.2
    nuisance = np.zeros((200, 16))
    nuisance[:, 0] = rng.normal(size=200) * 3.0
    base = np.ones(16)
    originals = base + identity + nuisance
    copies = base + identity + rng.normal(size=(200, 1)) * 3.0 * np.eye(16)[0]  # new nuisance
    copies += rng.normal(size=copies.shape) * 0.02

    def found(q, db):
        return np.mean((q @ db.T).argmax(1) == np.arange(len(q)))

    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    raw = found(unit(originals), unit(copies))
    w = DescriptorWhitening.fit(np.concatenate([originals, copies]), -0.5, "setting")
    whitened = found(w.apply(originals), w.apply(copies))
    assert raw < 0.5 and whitened > 0.95


def test_fit_and_apply_refuse_bad_input():
    x = anisotropic(np.random.default_rng(4), n=9)
    with pytest.raises(WhiteningError, match="9 descriptors are too few to fit a 5-d whitening"):
        DescriptorWhitening.fit(x, -0.25, "s")
    x = anisotropic(np.random.default_rng(4), n=100)
    with pytest.raises(WhiteningError, match="power must lie in"):
        DescriptorWhitening.fit(x, 0.5, "s")
    x[3, 2] = np.nan
    with pytest.raises(WhiteningError, match="finite"):
        DescriptorWhitening.fit(x, -0.25, "s")
    w = DescriptorWhitening.fit(anisotropic(np.random.default_rng(4), n=100), -0.25, "s")
    with pytest.raises(
        WhiteningError, match="fitted on 5-d descriptors, these are 7-d.*fit-whitening"
    ):
        w.apply(np.ones((3, 7), np.float32))


def test_state_round_trips_through_a_weights_only_file(tmp_path):
    w = DescriptorWhitening.fit(anisotropic(np.random.default_rng(5)), -0.25, "s", "somewhere")
    torch.save({"w": w.to_state()}, tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt", weights_only=True)["w"]
    back = DescriptorWhitening.from_state(state, tmp_path / "w.pt")
    assert (back.power, back.descriptor, back.fitted_on) == (-0.25, "s", "somewhere")
    np.testing.assert_array_equal(back.projection, w.projection)
    state["projection"] = state["projection"][:3]
    with pytest.raises(WhiteningError, match=r"w.pt: descriptor_whitening has mean \[5\]"):
        DescriptorWhitening.from_state(state, tmp_path / "w.pt")
    with pytest.raises(WhiteningError, match="w.pt: malformed descriptor_whitening"):
        DescriptorWhitening.from_state({"mean": 1}, tmp_path / "w.pt")


@pytest.fixture(scope="module")
def whitened_checkpoint(tiny_checkpoint, tmp_path_factory):
    """(tiny checkpoint, the same with a whitening fitted on 8 generated images, those images)."""
    checkpoint, _ = tiny_checkpoint
    root = tmp_path_factory.mktemp("whiten")
    images = write_shapes_images(root / "images", [(48, 64)] * 8)
    out = root / "whitened.pt"
    paths = sorted(images.iterdir())
    fit_for_checkpoint(checkpoint, out, paths, -0.25, "cpu", name="shapes")
    return checkpoint, out, paths


def test_a_whitened_checkpoint_whitens_what_the_plain_one_describes(whitened_checkpoint):
    plain_path, whitened_path, images = whitened_checkpoint
    plain, whitened = load_predictor(plain_path, "cpu"), load_predictor(whitened_path, "cpu")
    stored = read_checkpoint(whitened_path)[WHITENING_KEY]
    assert stored["fitted_on"].startswith("shapes: 8 images, ")
    assert stored["descriptor"] == descriptor_setting(plain.config)
    raw, white = plain.predict_path(images[0]), whitened.predict_path(images[0])
    for a, b in zip(raw.levels, white.levels):
        np.testing.assert_array_equal(a.label_map, b.label_map)  # the regions do not change
        np.testing.assert_allclose(b.embeddings, whitened.whitening.apply(a.embeddings), atol=1e-6)
        assert not np.allclose(a.embeddings, b.embeddings, atol=1e-3)


def test_refitting_replaces_the_whitening_and_does_not_stack(whitened_checkpoint, tmp_path):
    _, whitened_path, images = whitened_checkpoint
    again = tmp_path / "again.pt"
    fit_for_checkpoint(whitened_path, again, images, -0.25, "cpu")
    first = read_checkpoint(whitened_path)[WHITENING_KEY]["projection"]
    torch.testing.assert_close(read_checkpoint(again)[WHITENING_KEY]["projection"], first)


def test_export_keeps_the_whitening_unless_the_descriptors_change(
    whitened_checkpoint, tmp_path, caplog
):
    _, whitened_path, _ = whitened_checkpoint
    kept = export_inference_checkpoint(whitened_path, tmp_path / "kept.pt")
    assert WHITENING_KEY in read_checkpoint(kept)
    dropped = export_inference_checkpoint(
        whitened_path, tmp_path / "dropped.pt", ["contour.parent_context=1.0"]
    )
    assert WHITENING_KEY not in read_checkpoint(dropped)
    assert "whitening is left out" in caplog.text and "parent_context=1.0" in caplog.text


def test_a_whitening_fitted_for_other_descriptors_is_refused_at_load(whitened_checkpoint, tmp_path):
    _, whitened_path, _ = whitened_checkpoint
    data = read_checkpoint(whitened_path)
    data[WHITENING_KEY]["descriptor"] = "hierarchy=contour region_descriptor=embedding+backbone"
    bad = tmp_path / "other.pt"
    torch.save(data, bad)
    with pytest.raises(WhiteningError, match="other.pt: its descriptor whitening was fitted for"):
        load_predictor(bad, "cpu")
