"""Folders in, report files out: the runner with fake predictors, and `hsg eval` errors."""

import json

import numpy as np
import pytest

import cli
from hsg_core.evaluation.runner import parse_baselines, run_bsds, run_labelled
from tests.fakes import GridPredictor

from .conftest import OraclePredictor


def test_parse_baselines():
    assert parse_baselines("all", ("a", "b")) == ["a", "b"]
    assert parse_baselines("none", ("a",)) == [] and parse_baselines(" slic, kmeans ", ()) == [
        "slic",
        "kmeans",
    ]


def test_run_labelled_writes_json_and_markdown(masks_root, tmp_path):
    from hsg_core.evaluation.datasets import masks_dataset

    oracle = OraclePredictor(masks_dataset(masks_root))
    report, json_path, md_path = run_labelled(
        lambda: oracle, masks_root, masks_root, tmp_path / "out", k=3, hardware={"cores": 2}
    )
    assert json.loads(json_path.read_text())["results"]["label_transfer"][0]["knn"]["miou"] == 100.0
    assert report["checkpoint_hash"] == "oracle" and report["wall_seconds"] > 0
    assert "| 0 | 12 | 100.0 | 100.0 | 100.0 | 100.0 |" in md_path.read_text()


def test_bad_dataset_fails_before_the_model_loads(masks_root, tmp_path):
    (masks_root / "masks" / "s0.png").unlink()

    def never():
        raise AssertionError("the predictor must not load")

    with pytest.raises(ValueError, match="s0.png: no mask"):
        run_labelled(never, masks_root, masks_root, tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        run_bsds(never, tmp_path / "nowhere", tmp_path)


def test_cli_eval_errors_are_one_line(masks_root, tmp_path, capsys):
    data = ["--data", str(masks_root), "--memory", str(masks_root)]
    cases = [
        (["labelled", *data, "--baselines", "foo"], "unknown baseline 'foo'"),
        (["labelled", *data], "none.pt"),  # the data are fine, so the checkpoint is read next
        (["bsds", "--bsds", str(tmp_path / "nowhere")], "nowhere/images/val: no such folder"),
        (["labelled", *data, "--split", "val"], "an images/ + masks/ layout has no splits"),
    ]
    for argv, message in cases:
        code = cli.main(
            ["eval", *argv, "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]
        )
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("hsg: error:") and message in err and "\n" not in err, (
            err
        )


@pytest.mark.bsds
def test_run_bsds_with_a_grid_predictor(bsds_root, tmp_path):
    report, json_path, md_path = run_bsds(
        GridPredictor, bsds_root, tmp_path, limit=1, baselines="gpb_ucm,slic"
    )
    covering = json.loads(json_path.read_text())["results"]["covering"]
    assert set(covering) == {"hsg", "gpb_ucm", "slic"}
    assert [lv["mean_regions"] for lv in covering["hsg"]["levels"]] == [64, 16, 4, 1]
    assert covering["gpb_ucm"]["levels"][0]["mean_regions"] <= 64
    assert (
        covering["gpb_ucm"]["covering_ods"] > covering["hsg"]["covering_ods"]
    )  # a grid is a poor hierarchy
    assert np.isclose(
        covering["hsg"]["levels"][3]["covering"], covering["slic"]["levels"][3]["covering"]
    )
    assert md_path.name == "bsds_val.md"


def test_compared_predictors_are_scored_on_the_same_images(masks_root):
    """`--compare`: each extra predictor is one more method; the baselines stay matched to the first."""
    from hsg_core.evaluation.datasets import masks_dataset
    from hsg_core.evaluation.protocols import evaluate_hierarchy

    dataset = masks_dataset(masks_root)
    results = evaluate_hierarchy(
        GridPredictor(), dataset, ["kmeans"], others={"oracle": OraclePredictor(dataset)}
    )
    covering = results["covering"]
    assert set(covering) == {"hsg", "kmeans", "hsg:oracle"} and "hsg:oracle" in results["seconds"]
    assert covering["hsg:oracle"]["covering_ods"] == pytest.approx(1.0)
    assert covering["hsg"]["covering_ods"] < 1.0
    grid_counts = [lv["mean_regions"] for lv in covering["hsg"]["levels"]]
    assert [lv["mean_regions"] for lv in covering["kmeans"]["levels"]] == pytest.approx(
        grid_counts, rel=0.2
    )


def test_compare_needs_name_and_existing_file(tmp_path):
    with pytest.raises(ValueError, match="expected NAME=CHECKPOINT"):
        cli.parse_named_paths(["nameless.pt"])
    with pytest.raises(ValueError, match="missing.pt: no such checkpoint file"):
        cli.parse_named_paths([f"a={tmp_path / 'missing.pt'}"])
