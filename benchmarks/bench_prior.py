"""What the oversegmentation prior gives on its own: covering of its watershed hierarchy, per
ordering (dynamics, area, volume) and edge map (HED, weight-free Lab gradient), cut at fixed
region counts on BSDS500 photos, at the predictor's work size (the demo's 320 px).

    python benchmarks/bench_prior.py --bsds ../shared/datasets/BSDS500 --split train --limit 24 \
        --out benchmarks/results/prior_orderings.json

This chose `overseg.ucm_ordering` (on train photos: val stays for the evaluation).

    python benchmarks/bench_prior.py --bsds ../shared/datasets/BSDS500 --split train --limit 50 \
        --floors 0 0.05 0.1 0.15 0.25 --out benchmarks/results/prior_floor.json

measures the original's UCM floor instead (issue 15): the prior's level 0, the finest cut with at most
48 regions, against the same cut never finer than a given altitude (the original starts its UCM
threshold at 0.25 and raises it until <= 48 regions remain), HED edges, dynamics ordering.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

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


def score_floors(dataset: BSDSDataset, work_side: int, floors: list[float]) -> dict:
    """Per floor: LevelScores of the <= 48-region cut never finer than altitude `floor` (HED,
    dynamics; the region count then varies per photo) and, as its fair reference, of the fixed-count
    cut with that floor's mean region count on every photo (a coarser cut alone raises covering)."""
    samples = [
        (s, UCMHierarchy.from_edges(hed_edges(downscale_to(s.image, work_side), load_hed())))
        for s in dataset
    ]
    report = {}
    for floor in floors:
        floored, counts = LevelScores(), []
        for sample, hierarchy in samples:
            finest = hierarchy._explorer.horizontal_cut_from_num_regions(48, at_least=False)
            cut = hierarchy._explorer.horizontal_cut_from_altitude(max(finest.altitude(), floor))
            labels = cut.labelisation_leaves(hierarchy.tree).reshape(hierarchy.shape)
            counts.append(len(np.unique(labels)))
            maps = [resize_nearest(labels, sample.image.shape[:2])]
            floored.add(maps, sample.ground_truths, dataset.void, dataset.background)
        fixed, count = LevelScores(), max(1, round(float(np.mean(counts))))
        for sample, hierarchy in samples:
            maps = [resize_nearest(hierarchy.cut(count), sample.image.shape[:2])]
            fixed.add(maps, sample.ground_truths, dataset.void, dataset.background)
        report[str(floor)] = {
            "mean_regions": float(np.mean(counts)),
            "covering_floored": floored.summary()["levels"][0]["covering"],
            "covering_fixed_same_mean_count": fixed.summary()["levels"][0]["covering"],
            "fixed_count": count,
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bsds", required=True, help="BSDS500 folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=24, help="first N images of the split")
    parser.add_argument("--work-side", type=int, default=320, help="longer side the prior runs at")
    parser.add_argument("--out", default="benchmarks/results/prior_orderings.json")
    parser.add_argument("--floors", type=float, nargs="*", help="measure UCM floors instead")
    args = parser.parse_args(argv)
    dataset = BSDSDataset(args.bsds, args.split).limit(args.limit)
    dataset.validate()
    start = time.perf_counter()
    if args.floors:
        floors = score_floors(dataset, args.work_side, args.floors)
        report = {"machine": machine_info(), "command": " ".join(sys.argv), "images": len(dataset),
                  "split": args.split, "seconds": time.perf_counter() - start, "floors": floors}  # fmt: skip
        atomic_write_text(args.out, json.dumps(report, indent=1))
        for floor, s in floors.items():
            print(floor, json.dumps(s))
        return
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
