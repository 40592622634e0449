import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli


def test_segment_writes_pngs_and_json(tiny_checkpoint, tmp_path):
    ckpt, images = tiny_checkpoint
    out = tmp_path / "seg"
    assert (
        cli.main(["segment", str(images / "0.png"), "--checkpoint", str(ckpt), "--out", str(out)])
        == 0
    )
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
        (
            ["segment", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")],
            "bad.jpg: not an image",
        ),
        (
            [
                "segment",
                str(bad),
                "--checkpoint",
                str(tmp_path / "none.pt"),
                "--out",
                str(tmp_path),
            ],
            "none.pt: no such",
        ),
        (["train", "--config", "nope", "--out", str(tmp_path / "r")], "unknown preset 'nope'"),
        (
            [
                "train",
                "--config",
                "tiny",
                "--data",
                str(tmp_path / "empty"),
                "--out",
                str(tmp_path / "r"),
            ],
            "empty: not a folder",
        ),
        (
            ["train", "--config", "tiny", "--set", "model.depth=3", "--out", str(tmp_path / "r")],
            "model.depth",
        ),
        (
            [
                "train",
                "--config",
                "tiny",
                "--data",
                str(images),
                "--out",
                str(tmp_path / "r"),
                "--init-weights",
                str(bad),
            ],
            "bad.jpg: cannot read ResNet weights",
        ),
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
    assert (
        cli.main(["index", "build", str(data), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    )
    capsys.readouterr()
    idx = SegmentIndex.open(out)
    assert sorted(idx.images()) == ["0.png", "1.png"]
    assert idx.num_levels == 3 and idx.dim == 16
    row = idx.metadata.iloc[0]
    hits = idx.search(idx.region_vector(row["image"], int(row["level"]), int(row["region"])), k=1)
    assert hits[0].score > 0.999
    (data / "2.png").write_bytes((images / "2.png").read_bytes())
    assert (
        cli.main(["index", "update", str(data), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    )
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
    assert (
        cli.main(
            [
                "export",
                str(ckpt),
                str(out),
                "--set",
                "grouping.infer_grid=[1,1]",
                "--set",
                "overseg.max_regions=12",
            ]
        )
        == 0
    )
    config = checkpoint_config(read_checkpoint(out), out)
    assert config.grouping.infer_grid == (1, 1) and config.overseg.max_regions == 12
    prediction = load_predictor(out, "cpu", overseg_cache=None).predict_path(
        sorted(images.glob("*.png"))[0]
    )
    assert (
        prediction.levels[0].num_regions <= 12
    )  # level 0 = the oversegments when k-means has one cluster

    for setting, message in (
        ("grouping.level_clusters=[5,2]", "changes the network's parameters"),
        ("model.embedding_dim=8", "changes the network's parameters"),
        ("grouping.colour=1", "unknown config key"),
    ):
        target = tmp_path / "refused.pt"
        assert cli.main(["export", str(ckpt), str(target), "--set", setting]) == 2
        err = capsys.readouterr().err
        assert message in err and str(ckpt) in err and "Traceback" not in err
        assert not target.exists()


def test_export_set_refuses_a_config_whose_weights_would_not_load(tmp_path, capsys):
    """The demo file holds no backbone weights (they come from the fetch): a config that expects them in
    the file would be written but never load, so it is refused."""
    import serve_options

    target = tmp_path / "no_backbone.pt"
    assert (
        cli.main(
            [
                "export",
                str(serve_options.DEFAULT_CHECKPOINT),
                str(target),
                "--set",
                "model.backbone_init=none",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "changes the network's parameters" in err and "missing" in err and not target.exists()


def test_file_names_cannot_forge_lines_or_send_terminal_escapes(tiny_checkpoint, tmp_path, run_hsg):
    """Issue 13 item 9: a newline in a file name forged an `hsg: error:` line; ESC reached the terminal."""
    import logging

    from tests.conftest import assert_one_line_error

    bad = tmp_path / "evil\nhsg: error: forged \x1b[2J\u202e.jpg"
    bad.write_text("not an image")
    code, _, err = run_hsg(
        "segment", bad, "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "o"
    )
    line = assert_one_line_error(
        code, err, "evil\\nhsg: error: forged \\x1b[2J\\u202e.jpg: not an image file"
    )
    assert "\x1b" not in err and "\u202e" not in err and line.count("hsg: error:") == 2
    record = logging.LogRecord(
        "index.dataset", logging.WARNING, __file__, 1, "%s: skipped", (bad.name,), None
    )
    logged = cli.EscapingFormatter("%(levelname)s %(name)s: %(message)s").format(
        record
    )  # how `hsg` logs
    assert logged == "WARNING index.dataset: evil\\nhsg: error: forged \\x1b[2J\\u202e.jpg: skipped"


def test_hsg_segment_reads_only_the_suffixes_index_and_training_read(
    tiny_checkpoint, tmp_path, run_hsg
):
    from tests.conftest import assert_one_line_error

    other = tmp_path / "photo.ppm"  # PIL reads it, but index builds and training would skip it
    Image.new("RGB", (8, 6)).save(other)
    code, _, err = run_hsg(
        "segment", other, "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "o"
    )
    assert_one_line_error(
        code, err, f"{other}: not an image file name (expected .avif, .bmp, .gif,"
    )
    gif = tmp_path / "photo.gif"  # read by all three
    Image.new("RGB", (64, 48), (90, 20, 200)).save(gif)
    code, out, err = run_hsg(
        "segment", gif, "--checkpoint", tiny_checkpoint[0], "--out", tmp_path / "o"
    )
    assert code == 0 and "photo.gif: regions per level" in out, err


def test_factory_is_refused_before_any_model_loads_or_image_is_read(tmp_path, run_hsg, monkeypatch):
    import hsg_core.predictor
    from tests.conftest import assert_one_line_error

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --factory was checked")

    monkeypatch.setattr(hsg_core.predictor, "load_predictor", no_model)
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 6)).save(data / "a.png")
    for factory, reason in (
        ("HNSW32", "use 'Flat' or an 'IVF...' factory"),
        ("IVF16,Flatx", "invalid faiss"),
    ):
        out = tmp_path / "out"
        argv = (
            "index",
            "build",
            data,
            "--checkpoint",
            tmp_path / "none.pt",
            "--out",
            out,
            "--factory",
            factory,
        )
        assert_one_line_error(*run_hsg(*argv)[::2], factory, reason)
        assert not out.exists()
    from index.factory import check_factory

    check_factory(
        "IVF16,PQ48"
    )  # depends on the vectors' dimension: checked when the index is built


def test_hsg_serve_exits_2_with_one_line_on_bad_input(tmp_path, run_hsg, monkeypatch):
    from tests.conftest import assert_one_line_error

    monkeypatch.setenv("HSG_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert_one_line_error(*run_hsg("serve", "--checkpoint", bad)[::2], f"{bad}: ")
    assert_one_line_error(*run_hsg("serve", "--auth-file", tmp_path / "missing")[::2], "missing")


def test_index_build_with_workers_equals_the_default_build(tiny_checkpoint, tmp_path, run_hsg):
    import pytest

    from tests.index.conftest import index_content

    ckpt, images = tiny_checkpoint
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(images.glob("*.png")):
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_text("not an image")
    manifests = []
    for workers in ("0", "2"):
        out = tmp_path / f"idx{workers}"
        argv = ("index", "build", data, "--checkpoint", ckpt, "--out", out, "--workers", workers)
        code, stdout, err = run_hsg(*argv)
        assert code == 0, err
        manifests.append(json.loads(stdout))
    assert manifests[0]["counts"] == manifests[1]["counts"]
    assert manifests[0]["skipped"] == manifests[1]["skipped"]
    assert "not an image" in manifests[1]["skipped"][0]["error"]
    meta_a, vectors_a, _ = index_content(tmp_path / "idx0")
    meta_b, vectors_b, _ = index_content(tmp_path / "idx2")
    assert meta_a.equals(meta_b)
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)
    with pytest.raises(SystemExit):
        cli.main(
            [
                "index",
                "build",
                str(data),
                "--checkpoint",
                str(ckpt),
                "--out",
                "x",
                "--workers",
                "-1",
            ]
        )


def test_train_workers_sets_the_data_loader_workers(tmp_path, monkeypatch, run_hsg):
    import hsg_core.train

    seen = []

    def fake_train(cfg, data, out, **kwargs):
        seen.append(cfg.data.num_workers)
        return tmp_path / "checkpoint.pt"

    monkeypatch.setattr(hsg_core.train, "train", fake_train)
    for extra, want in (((), 0), (("--workers", "2"), 2)):
        argv = ("train", "--config", "tiny", "--data", tmp_path, "--out", tmp_path / "run", *extra)
        code, _, err = run_hsg(*argv)
        assert code == 0, err
        assert seen.pop() == want


@pytest.mark.slow
def test_torchrun_two_ranks_over_gloo_build_the_single_process_index(tiny_checkpoint, tmp_path):
    """Issue 14 item 3: `torchrun --nproc_per_node 2 -m cli index build` (2 CPU ranks, gloo, one
    shared folder; rank 0 merges after the barrier) gives the index a single process builds."""
    import subprocess
    import sys

    from tests.conftest import free_port
    from tests.index.conftest import index_content

    ckpt, images = tiny_checkpoint
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    assert (
        cli.main(["index", "build", str(images), "--checkpoint", str(ckpt), "--out", str(single)])
        == 0
    )
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "-m", "cli", "index", "build", str(images),
         "--checkpoint", str(ckpt), "--out", str(ranks), "--batch-size", "1"],
        capture_output=True, text=True, timeout=600, cwd=Path(cli.__file__).parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    meta_a, vectors_a, _ = index_content(single)
    meta_b, vectors_b, _ = index_content(ranks)
    assert meta_a.equals(meta_b) and len(meta_a) > 0
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)


def test_fit_whitening_writes_a_whitened_copy_and_names_a_bad_folder(
    tiny_checkpoint, tmp_path, run_hsg
):
    from hsg_core.checkpoint import WHITENING_KEY, read_checkpoint
    from tests.conftest import assert_one_line_error, write_shapes_images

    ckpt, _ = tiny_checkpoint
    images = write_shapes_images(tmp_path / "images", [(48, 64)] * 6)
    out = tmp_path / "white.pt"
    code, stdout, _ = run_hsg("fit-whitening", ckpt, out, "--data", images, "--device", "cpu")
    assert code == 0 and "whitening (power -0.25) of " in stdout and "6 images" in stdout
    assert WHITENING_KEY in read_checkpoint(out) and WHITENING_KEY not in read_checkpoint(ckpt)
    (tmp_path / "empty").mkdir()
    code, _, err = run_hsg("fit-whitening", ckpt, tmp_path / "x.pt", "--data", tmp_path / "empty")
    assert_one_line_error(code, err, "empty: no image files in this folder")
    assert not (tmp_path / "x.pt").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "notes.jpg").write_text("not an image")
    code, _, err = run_hsg("fit-whitening", ckpt, tmp_path / "x.pt", "--data", tmp_path / "bad")
    assert_one_line_error(code, err, "no image could be segmented")
    code, _, err = run_hsg(
        "fit-whitening", ckpt, tmp_path / "x.pt", "--data", images, "--power", "0.3"
    )
    assert_one_line_error(code, err, "power must lie in [-0.5, 0], got 0.3")
    assert "descriptors:" not in err  # refused before any image is segmented
    assert not (tmp_path / "x.pt").exists()
