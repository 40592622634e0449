"""bench_prior: the prior's covering per edge map and ordering equals covering computed by hand."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import bench_prior
from hsg_core.evaluation.datasets import BSDSDataset
from hsg_core.evaluation.metrics import covering_counts
from hsg_core.hierarchy import resize_nearest
from hsg_core.images import downscale_to
from hsg_core.overseg import gradient_edges
from hsg_core.overseg.ucm import UCMHierarchy


def test_scores_match_a_direct_covering_and_the_report_is_written(
    bsds_root, fetched_weights, tmp_path, capsys
):
    fetched_weights("hed")
    dataset = BSDSDataset(bsds_root, "val").limit(1)
    scores = bench_prior.score_orderings(dataset, 96, counts=(12, 3))
    assert set(scores) == {"hed", "gradient"} and set(scores["hed"]) == {
        "dynamics",
        "area",
        "volume",
    }

    sample = next(iter(dataset))
    cut = UCMHierarchy.from_edges(gradient_edges(downscale_to(sample.image, 96)), "area").cut(3)
    labels = resize_nearest(cut, sample.image.shape[:2])
    covered = sum(covering_counts(labels, gt)[0] for gt in sample.ground_truths)
    pixels = sum(covering_counts(labels, gt)[1] for gt in sample.ground_truths)
    summary = scores["gradient"]["area"].summary()
    assert np.isclose(summary["levels"][1]["covering"], covered / pixels)
    assert all(lv["mean_regions"] <= n for lv, n in zip(summary["levels"], (12, 3)))

    out = tmp_path / "prior.json"
    bench_prior.main(
        [
            "--bsds",
            str(bsds_root),
            "--split",
            "val",
            "--limit",
            "1",
            "--work-side",
            "64",
            "--out",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["images"] == 1 and set(report["covering"]["hed"]) == {
        "dynamics",
        "area",
        "volume",
    }
    assert "hed      dynamics" in capsys.readouterr().out
