import json

import numpy as np
from PIL import Image

import cli


def test_segment_writes_pngs_and_json(tiny_checkpoint, tmp_path):
    ckpt, images = tiny_checkpoint
    out = tmp_path / "seg"
    assert cli.main(["segment", str(images / "0.png"), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    hierarchy = json.loads((out / "0_hierarchy.json").read_text())
    assert hierarchy["image_size"] == [48, 64] and len(hierarchy["levels"]) == 3
    for lv in range(3):
        labels = np.asarray(Image.open(out / f"0_level{lv}_labels.png"))
        assert labels.shape == (48, 64)
        assert labels.max() + 1 == len(hierarchy["levels"][lv]["regions"])
        assert np.asarray(Image.open(out / f"0_level{lv}_color.png")).shape == (48, 64, 3)
    assert not list(out.glob("*.part"))


def test_bad_input_is_one_line_error(tiny_checkpoint, tmp_path, capsys):
    ckpt, images = tiny_checkpoint
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    cases = [
        (["segment", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")], "bad.jpg: not an image"),
        (["segment", str(bad), "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)], "none.pt: no such"),
        (["train", "--config", "nope", "--out", str(tmp_path / "r")], "unknown preset 'nope'"),
        (["train", "--config", "tiny", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
         "empty: not a folder"),
        (["train", "--config", "tiny", "--set", "model.depth=3", "--out", str(tmp_path / "r")], "model.depth"),
        (["train", "--config", "tiny", "--data", str(images), "--out", str(tmp_path / "r"), "--init-weights",
          str(bad)], "bad.jpg: cannot read ResNet weights"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("hsg: error:") and message in err and "\n" not in err, err


def test_index_build_update_info(tiny_checkpoint, tmp_path, capsys):
    from index import SegmentIndex

    ckpt, images = tiny_checkpoint
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(images.glob("*.png"))[:2]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_text("not an image")
    out = tmp_path / "idx"
    assert cli.main(["index", "build", str(data), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    capsys.readouterr()
    idx = SegmentIndex.open(out)
    assert sorted(idx.images()) == ["0.png", "1.png"]
    assert idx.num_levels == 3 and idx.dim == 16
    row = idx.metadata.iloc[0]
    hits = idx.search(idx.region_vector(row["image"], int(row["level"]), int(row["region"])), k=1)
    assert hits[0].score > 0.999
    (data / "2.png").write_bytes((images / "2.png").read_bytes())
    assert cli.main(["index", "update", str(data), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert sorted(SegmentIndex.open(out).images()) == ["0.png", "1.png", "2.png"]
    capsys.readouterr()
    assert cli.main(["index", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "checkpoint_hash" in json.dumps(info) and "skipped" in json.dumps(info)


def test_export_drops_training_state(tiny_checkpoint, tmp_path):
    import torch

    from hsg_core.checkpoint import read_checkpoint

    ckpt, _ = tiny_checkpoint
    assert cli.main(["export", str(ckpt), str(tmp_path / "slim.pt")]) == 0
    slim, full = read_checkpoint(tmp_path / "slim.pt"), read_checkpoint(ckpt)
    assert "optimizer" in full and "optimizer" not in slim and "torch_rng" not in slim
    assert all(torch.equal(slim["model"][k], v) for k, v in full["model"].items())


def test_export_set_changes_inference_settings_only(tiny_checkpoint, tmp_path, capsys):
    from hsg_core.checkpoint import checkpoint_config, read_checkpoint
    from hsg_core.predictor import load_predictor

    ckpt, images = tiny_checkpoint
    out = tmp_path / "grid1.pt"
    assert cli.main(["export", str(ckpt), str(out), "--set", "grouping.infer_grid=[1,1]",
                     "--set", "overseg.max_regions=12"]) == 0
    config = checkpoint_config(read_checkpoint(out), out)
    assert config.grouping.infer_grid == (1, 1) and config.overseg.max_regions == 12
    prediction = load_predictor(out, "cpu", overseg_cache=None).predict_path(sorted(images.glob("*.png"))[0])
    assert prediction.levels[0].num_regions <= 12  # level 0 = the oversegments when k-means has one cluster

    for setting, message in (("grouping.level_clusters=[5,2]", "changes the network's parameters"),
                             ("model.embedding_dim=8", "changes the network's parameters"),
                             ("grouping.colour=1", "unknown config key")):
        target = tmp_path / "refused.pt"
        assert cli.main(["export", str(ckpt), str(target), "--set", setting]) == 2
        err = capsys.readouterr().err
        assert message in err and str(ckpt) in err and "Traceback" not in err
        assert not target.exists()


def test_export_set_refuses_a_config_whose_weights_would_not_load(tmp_path, capsys):
    """The demo file holds no backbone weights (they come from the fetch): a config that expects them in
    the file would be written but never load, so it is refused."""
    import app

    target = tmp_path / "no_backbone.pt"
    assert cli.main(["export", str(app.DEFAULT_CHECKPOINT), str(target), "--set", "model.backbone_init=none"]) == 2
    err = capsys.readouterr().err
    assert "changes the network's parameters" in err and "missing" in err and not target.exists()
