import numpy as np
import pytest
import torch

from hsg_core.checkpoint import FORMAT, atomic_torch_save
from hsg_core.config import load_config
from hsg_core.model import HSG
from hsg_core.predictor import HSGPredictor, load_predictor, with_parent_context
from tests.conftest import make_shapes_image


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return HSGPredictor(HSG(load_config("tiny", ["overseg.cache=false"])), work_side=96)


def test_prediction_on_non_square_image_keeps_xy(predictor):
    image = make_shapes_image(np.random.default_rng(1), 50, 130)  # wide: x up to 129, y up to 49
    pred = predictor.set_image(image)
    assert (
        pred.image_size == (50, 130) and pred.num_levels == 3
    )  # segments + the 4 -> 2 groups of tiny
    for level in pred.levels:
        assert level.label_map.shape == (50, 130)
        assert level.areas.sum() == 50 * 130 and (level.areas > 0).all()
        assert np.allclose(np.linalg.norm(level.embeddings, axis=1), 1, atol=1e-4)
        x0, y0, x1, y1 = level.boxes.T
        assert (x1 <= 130).all() and (y1 <= 50).all() and (x0 < x1).all() and (y0 < y1).all()
    for fine, coarse in zip(pred.levels, pred.levels[1:]):
        assert np.array_equal(coarse.label_map, fine.parents[fine.label_map])
        assert coarse.num_regions <= fine.num_regions
    assert pred.levels[1].num_regions <= 4 and pred.levels[2].num_regions <= 2
    assert predictor.segment_at(0, 129, 3) == pred.levels[0].label_map[3, 129]
    with pytest.raises(ValueError, match="outside the 130x50 image"):
        predictor.segment_at(0, 3, 129)


def test_region_embedding_is_mean_of_its_segments(predictor):
    pred = predictor.predict(make_shapes_image(np.random.default_rng(2), 60, 60))
    fine, coarse = pred.levels[0], pred.levels[1]
    region = int(np.argmax(coarse.areas))
    members = np.flatnonzero(fine.parents == region)
    assert members.size >= 1
    # a coarse region's direction lies in the cone of its segments' embeddings
    assert (fine.embeddings[members] @ coarse.embeddings[region]).max() > 0.5


def test_load_predictor_round_trip_and_nan_weights(tmp_path):
    torch.manual_seed(0)
    cfg = load_config("tiny", ["overseg.cache=false"])
    model = HSG(cfg)
    ckpt = tmp_path / "m.pt"
    atomic_torch_save(
        {"format": FORMAT, "config": cfg.to_dict(), "model": model.state_dict(), "step": 0}, ckpt
    )
    loaded = load_predictor(ckpt, "cpu")
    assert loaded.config == cfg and len(loaded.checkpoint_hash) == 64
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.project.weight"].fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    atomic_torch_save({"format": FORMAT, "config": cfg.to_dict(), "model": state, "step": 0}, bad)
    with pytest.raises(ValueError, match="nan.pt: 1 weight tensor.* hold NaN or inf"):
        load_predictor(bad, "cpu")
    state["head.project.weight"].fill_(3e38)  # finite, but the embeddings overflow
    atomic_torch_save({"format": FORMAT, "config": cfg.to_dict(), "model": state, "step": 0}, bad)
    with pytest.raises(ValueError, match="nan.pt: the model produced non-finite embeddings"):
        load_predictor(bad, "cpu").predict(np.zeros((20, 30, 3), np.uint8))


@pytest.fixture(scope="module")
def contour_predictor():
    torch.manual_seed(0)
    cfg = load_config(
        "tiny",
        [
            "overseg.cache=false",
            "overseg.method=gradient_ucm",
            "grouping.infer_hierarchy=contour",
            "contour.switch_regions=12",
            "contour.level_altitudes=[0.0,1.0,1.2,10.0]",
        ],
    )
    return HSGPredictor(HSG(cfg), work_side=96)


def test_contour_hierarchy_levels_are_nested_cuts_of_one_tree(contour_predictor):
    image = make_shapes_image(np.random.default_rng(4), 70, 110)
    pred, cut = contour_predictor.predict_tree(image)
    assert (
        contour_predictor.num_levels == pred.num_levels == 4 and pred.meta["hierarchy"] == "contour"
    )
    assert set(pred.meta["seconds"]) == {"edges", "features", "tree", "levels"}
    for level in pred.levels:
        assert level.label_map.shape == (70, 110)
        assert np.allclose(np.linalg.norm(level.embeddings, axis=1), 1, atol=1e-4)
        assert level.areas.sum() == 70 * 110 and (level.areas > 0).all()
        n = level.num_regions
        same = np.unique(np.stack([level.label_map.ravel(), cut(n).ravel()]), axis=1)
        assert same.shape[1] == n == np.unique(cut(n)).size  # the tree's cut with that many regions
    for fine, coarse in zip(pred.levels, pred.levels[1:]):
        assert np.array_equal(coarse.label_map, fine.parents[fine.label_map])
    # altitude 0: every watershed basin; 1.0: the fine stage's hand-over cut (<= 12); 10: one region
    assert (
        pred.levels[0].num_regions > 12 >= pred.levels[1].num_regions
        and pred.levels[-1].num_regions == 1
    )
    again = contour_predictor.predict(image)
    assert all(np.array_equal(a.label_map, b.label_map) for a, b in zip(pred.levels, again.levels))


def test_region_embedding_is_the_mean_of_its_pixels(contour_predictor):
    image = make_shapes_image(np.random.default_rng(5), 60, 60)
    pred = contour_predictor.predict(image)
    fine, coarse = pred.levels[0], pred.levels[1]
    for region in range(
        coarse.num_regions
    ):  # the coarse direction is the area-weighted child mean's
        members = np.flatnonzero(fine.parents == region)
        weighted = (fine.embeddings[members] * fine.areas[members, None]).sum(0)
        assert (fine.embeddings[members] @ coarse.embeddings[region]).max() > 0.3
        assert np.dot(weighted / np.linalg.norm(weighted), coarse.embeddings[region]) > 0.9


def test_contour_hierarchy_needs_an_edge_map():
    cfg = load_config(
        "tiny", ["overseg.cache=false", "grouping.infer_hierarchy=contour"]
    )  # tiny: SLIC
    with pytest.raises(ValueError, match="overseg.method 'slic' has no edge map"):
        HSGPredictor(HSG(cfg), work_side=64).predict(np.zeros((30, 40, 3), np.uint8))
    transformers = HSGPredictor(HSG(load_config("tiny", ["overseg.cache=false"])), work_side=64)
    pred, cut = transformers.predict_tree(make_shapes_image(np.random.default_rng(6), 40, 50))
    assert cut is None and pred.num_levels == 3


def test_backbone_descriptors_append_the_backbone_mean():
    torch.manual_seed(0)
    overrides = [
        "overseg.cache=false",
        "overseg.method=gradient_ucm",
        "grouping.infer_hierarchy=contour",
        "contour.switch_regions=12",
        "contour.level_altitudes=[0.0,1.2]",
    ]
    model = HSG(load_config("tiny", overrides))
    plain = HSGPredictor(model, work_side=96)
    both = HSGPredictor(
        HSG(load_config("tiny", overrides + ["contour.region_descriptor=embedding+backbone"])),
        work_side=96,
    )
    both.model.load_state_dict(model.state_dict())
    image = make_shapes_image(np.random.default_rng(7), 50, 70)
    a, b = plain.predict(image), both.predict(image)
    dim, extra = a.levels[0].embeddings.shape[1], model.backbone.out_channels
    for la, lb in zip(a.levels, b.levels):
        assert np.array_equal(
            la.label_map, lb.label_map
        )  # the descriptor never changes the regions
        assert lb.embeddings.shape == (la.num_regions, dim + extra)
        assert np.allclose(np.linalg.norm(lb.embeddings, axis=1), 1, atol=1e-4)
        head = lb.embeddings[:, :dim] / np.linalg.norm(
            lb.embeddings[:, :dim], axis=1, keepdims=True
        )
        assert np.allclose(head, la.embeddings, atol=1e-4)
    bad = HSGPredictor(
        HSG(load_config("tiny", overrides + ["contour.region_descriptor=colour"])), work_side=96
    )
    with pytest.raises(
        ValueError, match="contour.region_descriptor must be one of embedding, embedding"
    ):
        bad.predict(image)


def test_parent_context_appends_the_weighted_parent_descriptor():
    # 3 segments; level 1 groups {0, 1} and {2}; level 2 is one region
    chains = [np.array([0, 1, 2]), np.array([0, 0, 1]), np.array([0, 0, 0])]
    descriptors = [
        np.eye(3, dtype=np.float32)[:, :2] + [[0, 0], [0, 0], [1, 1]],
        np.array([[1, 0], [0, 1]], np.float32),
        np.array([[0.6, 0.8]], np.float32),
    ]
    assert with_parent_context(descriptors, chains, 0.0) is descriptors
    out = with_parent_context(descriptors, chains, 0.5)
    expected_level0 = np.array([[1, 0, 0.5, 0], [0, 1, 0.5, 0], [1, 1, 0, 0.5]])
    expected_level1 = np.array([[1, 0, 0.3, 0.4], [0, 1, 0.3, 0.4]])
    expected_top = np.array([[0.6, 0.8, 0.3, 0.4]])  # the top level is its own parent
    for got, want in zip(out, [expected_level0, expected_level1, expected_top]):
        assert np.allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="contour.parent_context must be >= 0, got -1.0"):
        HSGPredictor(
            HSG(
                load_config(
                    "tiny",
                    [
                        "contour.parent_context=-1.0",
                        "grouping.infer_hierarchy=contour",
                        "overseg.method=gradient_ucm",
                        "overseg.cache=false",
                    ],
                )
            ),
            work_side=64,
        ).predict(np.zeros((30, 40, 3), np.uint8))


def test_resnet_checkpoint_from_before_the_dilation_fix_keeps_its_rule(tmp_path):
    torch.manual_seed(0)
    cfg = load_config("tiny", ["overseg.cache=false"])
    assert cfg.model.dilation_rule == "previous"
    old = load_config("tiny", ["overseg.cache=false", "model.dilation_rule=stage"])
    model = HSG(old)
    stored = old.to_dict()
    del stored["model"]["dilation_rule"]  # written before the field existed
    ckpt = tmp_path / "old.pt"
    atomic_torch_save(
        {"format": FORMAT, "config": stored, "model": model.state_dict(), "step": 0}, ckpt
    )
    loaded = load_predictor(ckpt, "cpu")
    assert (
        loaded.config.model.dilation_rule == "stage"
        and loaded.model.backbone.dilation_rule == "stage"
    )
    image = make_shapes_image(np.random.default_rng(9), 40, 50)
    expected = HSGPredictor(model, work_side=96).predict(image)
    got = loaded.predict(image)
    assert all(
        np.allclose(a.embeddings, b.embeddings, atol=1e-5)
        for a, b in zip(expected.levels, got.levels)
    )


def test_a_checkpoint_without_form_or_kmeans_init_loads_with_our_transformer_and_equal_cells(
    tmp_path, monkeypatch
):
    """Written before grouping.form / grouping.kmeans_init: checkpoint_config fills in what it was trained
    with (not whatever the defaults become), so it loads and predicts as before."""
    from hsg_core.config import HSGConfig

    torch.manual_seed(0)
    cfg = load_config("tiny", ["overseg.cache=false"])
    model = HSG(cfg)
    stored = cfg.to_dict()
    del stored["grouping"]["form"], stored["grouping"]["kmeans_init"]
    ckpt = tmp_path / "old.pt"
    atomic_torch_save(
        {"format": FORMAT, "config": stored, "model": model.state_dict(), "step": 0}, ckpt
    )
    built = []
    real = HSGConfig.from_dict
    monkeypatch.setattr(
        HSGConfig, "from_dict", classmethod(lambda cls, data: built.append(data) or real(data))
    )
    loaded = load_predictor(ckpt, "cpu")
    assert any(
        d.get("grouping", {}).get("form") == "hsg_explorer"
        and d["grouping"].get("kmeans_init") == "equal"
        for d in built
    )
    assert (loaded.config.grouping.form, loaded.config.grouping.kmeans_init) == (
        "hsg_explorer",
        "equal",
    )
    image = make_shapes_image(np.random.default_rng(9), 40, 50)
    expected = HSGPredictor(model, work_side=96).predict(image)
    got = loaded.predict(image)
    assert all(
        np.allclose(a.embeddings, b.embeddings, atol=1e-5)
        for a, b in zip(expected.levels, got.levels)
    )


def test_inference_uses_the_configured_kmeans_grid_rule(monkeypatch):
    import hsg_core.predictor as predictor_module

    rules = []
    real = predictor_module.initial_clusters

    def spy(grid, size, device, rule):
        rules.append((tuple(grid), rule))
        return real(grid, size, device, rule)

    monkeypatch.setattr(predictor_module, "initial_clusters", spy)
    torch.manual_seed(0)
    cfg = load_config("tiny", ["overseg.cache=false", "grouping.kmeans_init=original"])
    HSGPredictor(HSG(cfg).eval(), work_side=96).predict(
        make_shapes_image(np.random.default_rng(1), 40, 50)
    )
    assert rules == [((3, 3), "original")]


def assert_same_prediction(got, want, atol: float = 1e-5) -> None:
    """Identical hierarchies (label maps, parents, areas, boxes), descriptors equal within atol."""
    assert got.num_levels == want.num_levels and got.image_size == want.image_size
    for a, b in zip(got.levels, want.levels):
        assert np.array_equal(a.label_map, b.label_map) and np.array_equal(a.parents, b.parents)
        assert np.array_equal(a.areas, b.areas) and np.array_equal(a.boxes, b.boxes)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=atol)


BATCH_SIZES = [(50, 130), (90, 120), (72, 60), (90, 120), (120, 160)]  # three of one work size


# ViT and the transformers hierarchy: identical. (A CNN's oneDNN convolutions differ by ~1e-6 with
# the batch size; in the contour tree's finest cut, altitude 0, that can move a few basin pixels.)
@pytest.mark.parametrize("which", ["predictor", "vit_contour_predictor"])
def test_predict_batch_equals_predict_image_by_image(which, request, monkeypatch):
    model = request.getfixturevalue(which)
    rng = np.random.default_rng(11)
    images = [make_shapes_image(rng, h, w) for h, w in BATCH_SIZES]
    forwards = []
    real = model._grids
    monkeypatch.setattr(model, "_grids", lambda works: forwards.append(works.shape) or real(works))
    batched = model.predict_batch(images)
    # one forward per working size (longer side <= 96): 37x96, 72x96 (three images), 72x60
    assert sorted(s[0] for s in forwards) == [1, 1, 3] and len(batched) == len(images)
    for image, got in zip(images, batched):
        assert_same_prediction(got, model.predict(image))
    assert model.predict_batch([]) == []


def test_predict_batch_keeps_the_error_of_a_bad_image_clear(predictor):
    with pytest.raises(ValueError, match="expected an HxWx3 RGB array"):
        predictor.predict_batch([np.zeros((20, 30, 3), np.uint8), np.zeros((5, 5, 2), np.uint8)])


def test_explorer_index_and_segment_read_images_in_one_input_frame(tmp_path):
    """Issue 12: the input-size rule belongs to HSGPredictor (`input_side`), so the CLI's index
    build, the pipelined one, the explorer and `hsg segment` predict on the same pixels."""
    from PIL import Image

    from hsg_core.extract_pipeline import PipelinedExtractor
    from hsg_core.predictor import INPUT_SIDE, make_extractor

    cfg = load_config("tiny", ["overseg.cache=false"])
    predictor = HSGPredictor(HSG(cfg), input_side=128)
    assert HSGPredictor(HSG(cfg)).input_side == INPUT_SIDE == 1024
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((100, 400, 3), 90, np.uint8)).save(path)
    assert predictor.read_image(path).shape == (32, 128, 3)
    assert predictor.fit_input(np.zeros((100, 400, 3), np.uint8)).shape == (32, 128, 3)
    assert predictor.fit_input(np.zeros((20, 40), np.uint8)).shape == (20, 40, 3)  # gray -> RGB
    per_image = make_extractor(predictor)([path])[0]
    pipelined = PipelinedExtractor(predictor, workers=0, batch_size=2)([path])[0]
    assert per_image.image_size == pipelined.image_size == (32, 128)
    assert make_extractor(predictor, max_side=0)([path])[0].image_size == (100, 400)  # explicit
