r"""README "Quality" tables from the evaluation reports, in one command.

Renders the three tables of the README's Quality section — covering at HSG's levels, covering over
every scale, label-free retrieval — from `hsg eval bsds`'s and `hsg eval retrieval`'s JSON reports
and writes them between the README's `<!-- quality:NAME -->` / `<!-- /quality:NAME -->` markers.
With --run it first runs both evaluations on BSDS500 val with the shipped checkpoint and the
ablation copies (54-66 min + ~4 min on 2 CPU cores):

    python benchmarks/quality_readme.py --run --bsds ../shared/datasets/BSDS500
    python benchmarks/quality_readme.py            # re-render from benchmarks/results/*.json

The prose around the tables is written by hand from the same figures.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hsg_files import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINT = "assets/checkpoint/hsg_demo.pt"
ABLATIONS = {  # `hsg export` overrides of the shipped file, compared by `hsg eval bsds`
    "transformers_as_before": ["grouping.infer_hierarchy=transformers", "data.max_side=320"],
    "no_semantics": [
        "contour.fine_semantic=0.0",
        "contour.coarse_semantic=0.0",
        "contour.region_semantic=0.0",
    ],
    "no_hsg_region_embeddings": ["contour.region_semantic=0.0"],
    "semantic_edges_from_hsg": ["contour.semantic_features=embedding"],
}
HSG = "**HSG demo, contour tree** (shipped)"
GPB = "*gPb-owt-ucm (ships with BSDS500; trained on BSDS)*"
PRIOR = "*HSG's prior alone: HED → watershed by dynamics (HED trained on BSDS train+val)*"
LEVEL_ROWS = [
    ("hsg", HSG),
    ("gpb_ucm", GPB),
    ("hed_ucm", PRIOR),
    ("felzenszwalb", "Felzenszwalb"),
    ("gradient_ucm", "weight-free watershed on a Lab gradient, by dynamics"),
    ("gradient_ucm_area", "the same, by area"),
    ("kmeans", "colour + position k-means"),
    ("slic", "SLIC"),
    (
        "hsg:transformers_as_before",
        "same weights, v0.1 inference (clustering transformers; levels 48/14/8/4)",
    ),
]
SCALE_ROWS = [
    ("hsg", HSG),
    ("gradient_ucm", "weight-free watershed on a Lab gradient, by dynamics"),
    ("gradient_ucm_area", "the same, by area"),
    ("hed_ucm", PRIOR),
    ("gpb_ucm", GPB),
    ("gpb_ucm (thresholds)", "*gPb-owt-ucm over its 99 thresholds*"),
    ("hsg:no_semantics", "ablation: no semantic edges, no region term (= the HED prior's tree)"),
    ("hsg:no_hsg_region_embeddings", "ablation: no HSG region term (DINOv2 semantic edges only)"),
    (
        "hsg:semantic_edges_from_hsg",
        "variant: semantic edges from the HSG head instead of DINOv2",
    ),
]
SCALE_COLUMNS = (64, 32, 16, 8, 4, 2)


def levels_table(report: dict) -> str:
    """Covering per level, best level (ODS-like) and per image (OIS-like), HSG's counts in the header."""
    covering = report["results"]["covering"]
    hsg_levels = covering["hsg"]["levels"]
    head = [f"L{lv['level']} ({lv['mean_regions']:.0f})" for lv in hsg_levels]
    lines = [
        "| method | " + " | ".join(head) + " | best level | per image |",
        "|---|" + "---|" * (len(head) + 2),
    ]
    for key, name in LEVEL_ROWS:
        if key not in covering:
            continue
        row = covering[key]
        cells = [f"{lv['covering']:.3f}" for lv in row["levels"]]
        cells = [f"**{c}**" if key == "hsg" else c for c in cells]
        cells += [""] * (len(head) - len(cells))
        best = f"{row['covering_ods']:.3f} (L{row['ods_level']})"
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {best} | {row['covering_ois']:.3f} |"
        )
    return "\n".join(lines)


def scale_table(report: dict) -> str:
    """ODS / OIS over every cut, covering at six region counts and their mean."""
    curves = report["results"]["curves"]
    lines = [
        "| method | ODS (regions) | OIS | "
        + " | ".join(str(n) for n in SCALE_COLUMNS)
        + " | mean of these six |",
        "|---|" + "---|" * (len(SCALE_COLUMNS) + 3),
    ]
    for key, name in SCALE_ROWS:
        if key not in curves:
            continue
        curve = curves[key]
        if curve["unit"] == "threshold":
            ods = f"{curve['ods']:.3f} (t = {curve['ods_at']:g})"
            lines.append(
                f"| {name} | {ods} | {curve['ois']:.3f} |" + " |" * (len(SCALE_COLUMNS) + 1)
            )
            continue
        at = dict(zip(curve["scale"], curve["covering"]))
        values = [at[n] for n in SCALE_COLUMNS]
        cells = [f"{v:.3f}" for v in values] + [f"{sum(values) / len(values):.3f}"]
        ods = f"{curve['ods']:.3f} ({curve['ods_at']})"
        lines.append(f"| {name} | {ods} | {curve['ois']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retrieval_table(report: dict) -> str:
    """Recall per level (and over all) of HSG, the every-level search, colour histograms, chance."""
    results = report["results"]
    lines = [
        "| level | queries | mean target IoU | HSG R@1 | HSG R@10 | every level R@10 "
        "| colour histogram R@10 | chance R@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in [(str(r["level"]), r) for r in results["levels"]] + [("all", results["all"])]:
        pct = {m: 100 * row[m]["recall@10"] for m in ("hsg", "hsg_all_levels", "colour_histogram")}
        lines.append(
            f"| {label} | {row['queries']} | {row['mean_target_iou']:.3f} "
            f"| {100 * row['hsg']['recall@1']:.1f} | **{pct['hsg']:.1f}** "
            f"| {pct['hsg_all_levels']:.1f} | {pct['colour_histogram']:.1f} "
            f"| {100 * row['chance']['recall@10']:.1f} |"
        )
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the lines between `<!-- quality:name -->` and `<!-- /quality:name -->` replaced."""
    pattern = re.compile(
        rf"(<!-- quality:{name} -->\n).*?(\n<!-- /quality:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"README: no <!-- quality:{name} --> ... <!-- /quality:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


def run_evaluations(bsds: Path, work: Path) -> None:
    """`hsg eval bsds` (with the ablation copies) and `hsg eval retrieval` on BSDS500 val."""
    import cli

    compare = []
    for name, overrides in ABLATIONS.items():
        copy = work / f"{name}.pt"
        sets = [arg for o in overrides for arg in ("--set", o)]
        if cli.main(["export", CHECKPOINT, str(copy), *sets]) != 0:
            raise SystemExit(f"hsg export failed for {name}")
        compare += ["--compare", f"{name}={copy}"]
    bsds_args = ["eval", "bsds", "--bsds", str(bsds), "--split", "val", "--checkpoint", CHECKPOINT]
    if cli.main([*bsds_args, *compare, "--out", str(RESULTS)]) != 0:
        raise SystemExit("hsg eval bsds failed")
    retrieval = work / "retrieval_val"
    images = str(bsds / "images" / "val")
    retrieval_args = ["eval", "retrieval", "--checkpoint", CHECKPOINT, "--data", images]
    if cli.main([*retrieval_args, "--copies", "25", "--out", str(retrieval)]) != 0:
        raise SystemExit("hsg eval retrieval failed")
    for suffix in (".json", ".md"):
        shutil.copyfile(retrieval / f"retrieval{suffix}", RESULTS / f"retrieval{suffix}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run both evaluations first")
    parser.add_argument("--bsds", type=Path, default=ROOT.parent / "shared/datasets/BSDS500")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    if args.run:
        args.work.mkdir(parents=True, exist_ok=True)
        run_evaluations(args.bsds, args.work)
    bsds = json.loads((RESULTS / "bsds_val.json").read_text())
    retrieval = json.loads((RESULTS / "retrieval.json").read_text())
    text = args.readme.read_text()
    for name, body in (
        ("levels", levels_table(bsds)),
        ("scales", scale_table(bsds)),
        ("retrieval", retrieval_table(retrieval)),
    ):
        text = replace_block(text, name, body)
    atomic_write_text(args.readme, text)
    print(f"{args.readme}: Quality tables rewritten from {RESULTS}")


if __name__ == "__main__":
    main()
