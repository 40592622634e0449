"""`hsg eval retrieval` end to end with a tiny checkpoint trained for 2 steps, and its bad-input errors."""

import json

import numpy as np
from PIL import Image

import cli


def hsg(capsys, *argv):
    """(exit code, stdout, stderr) of the `hsg` console script, run in-process."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_retrieval_writes_a_report(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        hsg(
            capsys,
            "train",
            "--config",
            "tiny",
            "--data",
            image_folder,
            "--out",
            run,
            "--set",
            "train.iterations=2",
            "--device",
            "cpu",
        )[0]
        == 0
    )
    out = tmp_path / "report"
    code, stdout, err = hsg(
        capsys,
        "eval",
        "retrieval",
        "--checkpoint",
        run / "checkpoint.pt",
        "--data",
        image_folder,
        "--out",
        out,
        "--copies",
        2,
        "--seed",
        3,
        "--device",
        "cpu",
    )
    assert code == 0, err
    report = json.loads((out / "retrieval.json").read_text())
    assert report["dataset"]["images"] == 6 + 2 and report["dataset"]["copies"] == 2
    assert "cores" in report["hardware"] and report["wall_seconds"] > 0
    results = report["results"]
    assert [row["level"] for row in results["levels"]] == [0, 1, 2] and results["pairs_used"] == 2
    for row in [*results["levels"], results["all"]]:
        for method in ("hsg", "hsg_all_levels", "colour_histogram", "chance"):
            assert all(v is None or 0 <= v <= 1 for v in row[method].values())
    pairs = json.loads((out / "work" / "retrieval_copies.json").read_text())["pairs"]
    assert all((out / "work" / p["copy"]).is_file() for p in pairs)
    markdown = (out / "retrieval.md").read_text()
    assert markdown.startswith("# HSG retrieval evaluation") and "| all |" in markdown
    assert f"report: {out / 'retrieval.json'}" in stdout


def test_eval_retrieval_bad_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "few").mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(tmp_path / "few" / f"{i}.png")
    cases = (
        (tmp_path / "empty", f"{tmp_path / 'empty'}: no image files"),
        (tmp_path / "few", f"{tmp_path / 'few'}: 2 image(s), fewer than the 3 copies"),
    )
    for data, needle in cases:  # the folder is checked before the (missing) checkpoint is read
        code, _, err = hsg(
            capsys,
            "eval",
            "retrieval",
            "--checkpoint",
            tmp_path / "none.pt",
            "--data",
            data,
            "--out",
            tmp_path / "out",
            "--copies",
            3,
        )
        assert code == 2 and err.startswith("hsg: error: ") and needle in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
