"""How the contour tree's settings were chosen: covering on BSDS500 *train* photos, never val.

Every variant is one set of `hsg_core.contour_tree` parameters plus the semantic edge map's
(features, offset, scale) and the backbone's work side. Each image's HED edges (at its own size,
longer side <= 512) and feature grids (per work side) are computed once; the variants then build
their trees in 2 worker processes. Levels are cut either at fixed region counts (to compare
variants at equal granularity) or at fixed altitudes (what the shipped model does); the HED prior
alone (watershed by dynamics, the old level 0) is cut at the same per-image counts beside them.

    # 1. one setting at a time around the starting point, 50 photos (every 4th)
    python benchmarks/bench_contour.py --bsds ../shared/datasets/BSDS500 --stage sweep --limit 50
    # 2. the best of the sweep and their combinations, all 200 photos
    python benchmarks/bench_contour.py --bsds ../shared/datasets/BSDS500 --stage finalists
    # 3. the level altitudes: medians of the altitudes of the 64/32/16/8/4/2-region cuts; scored
    python benchmarks/bench_contour.py --bsds ../shared/datasets/BSDS500 --stage levels

Results: benchmarks/results/contour_<stage>.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.contour_tree import ContourTree, ContourTreeParams  # noqa: E402
from hsg_core.evaluation.datasets import BSDSDataset  # noqa: E402
from hsg_core.evaluation.protocols import LevelScores  # noqa: E402
from hsg_core.images import downscale_to  # noqa: E402
from hsg_core.overseg import edge_map  # noqa: E402
from hsg_core.overseg.ucm import UCMHierarchy  # noqa: E402
from hsg_core.predictor import load_predictor  # noqa: E402
from hsg_core.region_pooling import grid_to_pixels, region_sums  # noqa: E402
from hsg_core.semantic_edges import semantic_edges  # noqa: E402
from hsg_files import atomic_write_text  # noqa: E402

COUNTS = (64, 32, 16, 8, 4, 2)
START = {
    "fine_semantic": 0.9,
    "coarse_semantic": 0.4,
    "region_semantic": 0.25,
    "switch_regions": 32,
    "scale": 2.0,
    "offset": 1.0,
    "features": "backbone",
    "side": 448,
    "pixel_edges": "max",
}
SWEEP = {
    "fine_semantic": [0.8, 0.95, 1.0],
    "coarse_semantic": [0.3, 0.5],
    "region_semantic": [0.0, 0.5],
    "switch_regions": [24, 48],
    "scale": [1.5, 3.0],
    "offset": [0.75, 1.5],
    "features": ["embedding"],
}
CHOSEN = {
    **START,
    "coarse_semantic": 0.5,
    "region_semantic": 0.5,
    "switch_regions": 48,
    "scale": 1.5,
}
FINALISTS = {
    "start": START,
    "switch 48, scale 1.5": {**START, "switch_regions": 48, "scale": 1.5},
    "switch 64, scale 1.5, region 0.5": {
        **START,
        "switch_regions": 64,
        "scale": 1.5,
        "region_semantic": 0.5,
    },
    "chosen: switch 48, scale 1.5, region 0.5, coarse 0.5": CHOSEN,
    "chosen, pixel edges mean": {**CHOSEN, "pixel_edges": "mean"},
    "chosen, pixel edges mean, work side 336": {**CHOSEN, "pixel_edges": "mean", "side": 336},
    "chosen, pixel edges max, work side 336": {**CHOSEN, "side": 336},
}
SHIPPED = {**CHOSEN, "pixel_edges": "mean", "side": 336}
ABLATIONS = {  # what each part adds, at the shipped levels
    "shipped": SHIPPED,
    "no semantics (HED alone, same tree)": {
        **SHIPPED,
        "fine_semantic": 0.0,
        "coarse_semantic": 0.0,
        "region_semantic": 0.0,
    },
    "no HSG region embeddings": {**SHIPPED, "region_semantic": 0.0},
    "semantic edges from HSG embeddings": {**SHIPPED, "features": "embedding"},
}


def sweep_variants() -> dict[str, dict]:
    variants = {"start": START}
    for key, values in SWEEP.items():
        for value in values:
            variants[f"{key} {value}"] = {**START, key: value}
    return variants


@dataclasses.dataclass
class ImageData:
    """One photo: HED edges [H, W], per work side (valid cells, backbone grid, unit embedding grid)."""

    ground_truths: list
    edges: np.ndarray
    grids: dict


def collect(dataset: BSDSDataset, checkpoint: str, sides: set[int]) -> list[ImageData]:
    predictor = load_predictor(checkpoint, "cpu")
    out = []
    for sample in dataset:
        edge_image = downscale_to(sample.image, predictor.config.contour.edge_side)
        edges = edge_map(edge_image, predictor.config.overseg, cache=predictor.cache)
        grids = {}
        for side in sides:
            work = downscale_to(sample.image, side)
            stride = predictor.model.backbone.output_stride
            with torch.no_grad():
                backbone, embeddings = predictor._features(work)
            grids[side] = (
                (work.shape[0] / stride, work.shape[1] / stride),
                backbone.numpy(),
                embeddings.numpy(),
            )
        out.append(ImageData(sample.ground_truths, edges, grids))
    return out


def build_tree(data: ImageData, variant: dict) -> ContourTree:
    valid, backbone, embeddings = data.grids[variant["side"]]
    grid = torch.from_numpy(backbone if variant["features"] == "backbone" else embeddings)
    semantic = semantic_edges(grid, valid, data.edges.shape, variant["offset"], variant["scale"])
    pixels = grid_to_pixels(torch.from_numpy(embeddings), valid, data.edges.shape)
    params = ContourTreeParams(
        **{f.name: variant[f.name] for f in dataclasses.fields(ContourTreeParams)}
    )
    return ContourTree.build(
        data.edges, semantic, params, lambda labels: region_sums(pixels, labels)
    )


def score_image(job) -> dict:
    """Per variant (and the HED prior at the same counts) this image's LevelScores, or for
    levels="altitudes_of_counts" the altitudes of the cuts with COUNTS regions."""
    data, variants, levels = job
    torch.set_num_threads(1)
    prior = UCMHierarchy.from_edges(data.edges)
    out = {}
    for name, variant in variants.items():
        tree = build_tree(data, variant)
        if levels == "altitudes_of_counts":
            out[name] = [
                tree._explorer.horizontal_cut_from_num_regions(n, at_least=False).altitude()
                for n in COUNTS
            ]
            continue
        if levels == "counts":
            maps = [tree.cut_regions(n) for n in COUNTS]
        else:
            maps = [tree.cut_altitude(a) for a in variant["altitudes"]]
        for key, key_maps in (
            (name, maps),
            (
                f"{name}; HED prior alone at the same counts",
                [prior.cut(int(m.max()) + 1) for m in maps],
            ),
        ):
            out[key] = LevelScores()
            out[key].add(key_maps, data.ground_truths, None, ())
    return out


def score(images: list[ImageData], variants: dict, levels: str) -> dict:
    """{name: LevelScores summary} (or, for levels="altitudes_of_counts", per-count median altitudes)."""
    scores: dict = {}
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for per_image in pool.imap(score_image, [(d, variants, levels) for d in images]):
            for name, value in per_image.items():
                if levels == "altitudes_of_counts":
                    scores.setdefault(name, []).append(value)
                else:
                    scores.setdefault(name, LevelScores()).extend(value)
    if levels == "altitudes_of_counts":
        return {
            name: [round(float(a), 3) for a in np.median(np.array(v), 0)]
            for name, v in scores.items()
        }
    return {name: s.summary() for name, s in scores.items()}


def markdown(report: dict) -> str:
    lines = [
        f"# {report['title']}",
        "",
        f"- images: {report['images']} BSDS500 {report['split']} photos",
        f"- levels: {report['levels']}",
        f"- {report['seconds']:.0f} s on {report['machine'].get('cpu')}",
        "",
        "| variant | " + " | ".join(f"L{i}" for i in range(len(COUNTS))) + " | mean | regions |",
        "|---" * (len(COUNTS) + 3) + "|",
    ]
    for name, s in report["results"].items():
        cov = [lv["covering"] for lv in s["levels"]]
        regions = "/".join(f"{lv['mean_regions']:.0f}" for lv in s["levels"])
        lines.append(
            f"| {name} | "
            + " | ".join(f"{c:.3f}" for c in cov)
            + f" | {np.mean(cov):.4f} | {regions} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bsds", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument(
        "--stage", choices=["sweep", "finalists", "levels", "ablations"], required=True
    )
    parser.add_argument("--limit", type=int, default=None, help="every k-th photo so that N remain")
    parser.add_argument("--checkpoint", default="assets/checkpoint/hsg_demo.pt")
    parser.add_argument(
        "--altitudes", default=None, help="comma list; default: the shipped config's"
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    dataset = BSDSDataset(args.bsds, args.split)
    dataset.validate()
    if args.limit:
        dataset.ids = dataset.ids[:: max(1, len(dataset.ids) // args.limit)][: args.limit]
    images = collect(dataset, args.checkpoint, {448, 336})
    if args.stage == "sweep":
        results = score(images, sweep_variants(), "counts")
    elif args.stage == "finalists":
        results = score(images, FINALISTS, "counts")
    else:
        from hsg_core.config import ContourConfig

        altitudes = (
            [float(a) for a in args.altitudes.split(",")]
            if args.altitudes
            else list(ContourConfig().level_altitudes)
        )
        results = {}
        if args.stage == "levels":
            medians = score(images, {"shipped": SHIPPED}, "altitudes_of_counts")["shipped"]
            results["median altitude of the cuts with 64/32/16/8/4/2 regions"] = medians
            results |= score(images, {"shipped, levels at fixed counts": SHIPPED}, "counts")
        variants = {"shipped": SHIPPED} if args.stage == "levels" else ABLATIONS
        results |= score(
            images,
            {
                f"{k}, levels at altitudes {altitudes}": {**v, "altitudes": altitudes}
                for k, v in variants.items()
            },
            "altitudes",
        )
    report = {
        "title": f"Contour tree settings: {args.stage}",
        "split": args.split,
        "images": len(images),
        "levels": "fixed counts" if args.stage in ("sweep", "finalists") else "see each variant",
        "variants": sweep_variants()
        if args.stage == "sweep"
        else FINALISTS
        if args.stage == "finalists"
        else ABLATIONS,
        "results": results,
        "seconds": time.perf_counter() - start,
        "machine": machine_info(),
    }
    out = Path(args.out)
    atomic_write_text(out / f"contour_{args.stage}.json", json.dumps(report, indent=1))
    tables = {k: v for k, v in results.items() if isinstance(v, dict)}
    atomic_write_text(
        out / f"contour_{args.stage}.md",
        markdown({**report, "results": tables})
        + "".join(f"\n- {k}: {v}" for k, v in results.items() if not isinstance(v, dict))
        + "\n",
    )
    print((out / f"contour_{args.stage}.md").read_text())


if __name__ == "__main__":
    main()
