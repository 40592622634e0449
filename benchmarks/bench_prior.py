"""What the oversegmentation prior gives on its own: covering of its watershed hierarchy, per
ordering (dynamics, area, volume) and edge map (HED, weight-free Lab gradient), cut at fixed
region counts on BSDS500 photos, at the predictor's work size (the demo's 320 px).

    python benchmarks/bench_prior.py --bsds ../shared/datasets/BSDS500 --split train --limit 24 \
        --out benchmarks/results/prior_orderings.json

This chose `overseg.ucm_ordering` (on train photos: val stays for the evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.evaluation.datasets import BSDSDataset  # noqa: E402
from hsg_core.evaluation.protocols import LevelScores  # noqa: E402
from hsg_core.hierarchy import resize_nearest  # noqa: E402
from hsg_core.images import downscale_to  # noqa: E402
from hsg_core.overseg import gradient_edges, hed_edges, load_hed  # noqa: E402
from hsg_core.overseg.ucm import HIERARCHIES, UCMHierarchy  # noqa: E402
from hsg_files import atomic_write_text  # noqa: E402

COUNTS = (180, 48, 15, 8, 4)


def edge_maps(work) -> dict:
    """Edge maps [h, w] of one working-size image, by name."""
    return {"hed": hed_edges(work, load_hed()), "gradient": gradient_edges(work)}


def score_orderings(dataset: BSDSDataset, work_side: int, counts=COUNTS) -> dict:
    """{edges: {ordering: LevelScores over `counts`}} of every image in `dataset`."""
    scores: dict = {}
    for sample in dataset:
        work = downscale_to(sample.image, work_side)
        for edges_name, edges in edge_maps(work).items():
            for ordering in HIERARCHIES:
                hierarchy = UCMHierarchy.from_edges(edges, ordering)
                maps = [resize_nearest(hierarchy.cut(n), sample.image.shape[:2]) for n in counts]
                per_edges = scores.setdefault(edges_name, {})
                per_edges.setdefault(ordering, LevelScores()).add(
                    maps, sample.ground_truths, dataset.void, dataset.background
                )
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bsds", required=True, help="BSDS500 folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=24, help="first N images of the split")
    parser.add_argument("--work-side", type=int, default=320, help="longer side the prior runs at")
    parser.add_argument("--out", default="benchmarks/results/prior_orderings.json")
    args = parser.parse_args(argv)
    dataset = BSDSDataset(args.bsds, args.split).limit(args.limit)
    dataset.validate()
    start = time.perf_counter()
    scores = score_orderings(dataset, args.work_side)
    results = {
        edges: {ordering: s.summary() for ordering, s in per.items()}
        for edges, per in scores.items()
    }
    report = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "images": len(dataset),
        "split": args.split,
        "counts": list(COUNTS),
        "seconds": time.perf_counter() - start,
        "covering": results,
    }
    atomic_write_text(args.out, json.dumps(report, indent=1))
    for edges, per in results.items():
        for ordering, s in per.items():
            levels = ", ".join(f"{n}: {lv['covering']:.3f}" for n, lv in zip(COUNTS, s["levels"]))
            print(f"{edges:8s} {ordering:8s} {levels}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
