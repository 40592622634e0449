r"""Choosing the descriptor whitening's power on BSDS500 train, without refitting the model.

Reads the index and queries of an `hsg eval retrieval` run made with an *unwhitened* checkpoint,
fits the whitening on the regions of the images outside every (original, copy) pair (held out:
the queries' own images never shape it), and re-ranks every query exactly (numpy), as
`index.retrieval_eval` does: the query's level, its image excluded, recall@10 of its target.

    hsg eval retrieval --data ../shared/datasets/BSDS500/images/train --copies 25 \
        --checkpoint assets/checkpoint/hsg_demo_unwhitened.pt --out runs/ret_train
    python benchmarks/bench_whitening.py runs/ret_train --out benchmarks/results/whitening_train --sheet 8

writes whitening_train.json (machine, settings, recall per level per power) and .md; with
--sheet, also a contact sheet (whitening_train_hits.jpg): for --sheet random level 2-4 regions of
photos outside the pairs, the query and its 6 best hits from other images under no whitening and
powers -0.25 / -0.5 (region kept bright, the rest of its box dimmed), to judge "similar" by eye.
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
from hsg_core.images import load_image  # noqa: E402
from hsg_core.whitening import DescriptorWhitening  # noqa: E402
from hsg_files import atomic_write_text  # noqa: E402
from index import SegmentIndex  # noqa: E402
from index.copies import load_pairs  # noqa: E402

POWERS = (0.0, -0.125, -0.25, -0.35, -0.5)  # 0 = centring only
K = 10
SHEET_POWERS = (None, -0.25, -0.5)  # None = the stored vectors
TILE = 96


def recall_per_level(vectors: np.ndarray, frame, queries: list[dict], pairs) -> dict[int, float]:
    """Recall@K per level of `vectors` [N, D] (unit rows, metadata row order) over the queries."""
    image, level = frame["image"].to_numpy(), frame["level"].to_numpy()
    row = {key: n for n, key in enumerate(zip(image, level, frame["region"].to_numpy()))}
    found: dict[int, list[bool]] = {}
    for q in queries:
        pair, lv = pairs[q["pair"]], q["level"]
        query, target = row[(pair.original, lv, q["region"])], row[(pair.copy, lv, q["target"])]
        scores = vectors[(level == lv) & (image != pair.original)] @ vectors[query]
        better = np.count_nonzero(scores > vectors[target] @ vectors[query])
        found.setdefault(lv, []).append(better < K)
    return {lv: float(np.mean(hits)) for lv, hits in sorted(found.items())}


def region_tile(index: SegmentIndex, row: int) -> np.ndarray:
    """[TILE, TILE, 3] uint8: the region's box, the region bright and the rest dimmed, on white."""
    from PIL import Image

    r = index.metadata.iloc[row]
    image = load_image(index.data_root / r["image"], max_side=max(int(r.height), int(r.width)))
    box = slice(int(r.y0), int(r.y1)), slice(int(r.x0), int(r.x1))
    crop = image[box].copy()
    inside = index.region_mask(int(r["id"]))[box]
    crop[~inside] = crop[~inside] // 3
    thumb = Image.fromarray(crop)
    thumb.thumbnail((TILE, TILE))
    tile = np.full((TILE, TILE, 3), 255, np.uint8)
    tile[: thumb.height, : thumb.width] = np.asarray(thumb)
    return tile


def contact_sheet(
    index: SegmentIndex, spaces: dict, fit_rows: np.ndarray, count: int
) -> np.ndarray:
    """Rows of (query, 6 best hits of other images at its level), one row per space per query."""
    frame = index.metadata
    level, image = frame["level"].to_numpy(), frame["image"].to_numpy()
    big = ((frame["x1"] - frame["x0"]) * (frame["y1"] - frame["y0"])).to_numpy() > 8000
    queries = np.random.default_rng(1).choice(
        np.flatnonzero(fit_rows & big & (level >= 2) & (level <= 4)), count, replace=False
    )
    rows, tiles = [], {}  # a region shown in several rows is drawn once

    def tile(row: int) -> np.ndarray:
        if row not in tiles:
            tiles[row] = region_tile(index, row)
        return tiles[row]

    for query in queries:
        for vectors in spaces.values():
            others = np.flatnonzero((level == level[query]) & (image != image[query]))
            best = others[np.argsort(-(vectors[others] @ vectors[query]), kind="stable")[:6]]
            rows.append(np.concatenate([tile(int(r)) for r in [query, *best]], 1))
    return np.concatenate(rows, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="output folder of `hsg eval retrieval` (index/, work/, .json)")
    parser.add_argument("--out", required=True, help="report path without suffix")
    parser.add_argument("--sheet", type=int, default=0, help="contact sheet of this many queries")
    args = parser.parse_args(argv)
    start, run = time.perf_counter(), Path(args.run)
    index = SegmentIndex.open(run / "index")
    frame, vectors = index.metadata, np.asarray(index.vectors(), dtype=np.float32)
    report = json.loads((run / "retrieval.json").read_text())
    queries, pairs = report["results"]["queries"], load_pairs(run / "work")
    paired = {p.original for p in pairs} | {p.copy for p in pairs}
    held_out = ~frame["image"].isin(paired).to_numpy()
    rows = [{"power": None, "recall@10": recall_per_level(vectors, frame, queries, pairs)}]
    for power in POWERS:
        whitening = DescriptorWhitening.fit(vectors[held_out], power, "benchmark")
        rows.append(
            {
                "power": power,
                "recall@10": recall_per_level(whitening.apply(vectors), frame, queries, pairs),
            }
        )
    result = {
        "machine": machine_info(),
        "command": " ".join(sys.argv),
        "settings": {
            "run": str(run),
            "checkpoint_hash": report.get("checkpoint_hash"),
            "fit_images": int(frame.loc[held_out, "image"].nunique()),
            "fit_regions": int(held_out.sum()),
            "queries": len(queries),
            "k": K,
        },
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out)
    if args.sheet:
        from PIL import Image

        spaces = {}
        for power in SHEET_POWERS:
            fitted = (
                DescriptorWhitening.fit(vectors[held_out], power, "benchmark") if power else None
            )
            spaces[power] = vectors if fitted is None else fitted.apply(vectors)
        sheet = contact_sheet(index, spaces, held_out, args.sheet)
        Image.fromarray(sheet).save(f"{out}_hits.jpg", quality=80)
        result["settings"]["sheet"] = {
            "queries": args.sheet,
            "rows_per_query": "stored, -0.25, -0.5",
        }
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    s = result["settings"]
    levels = sorted({lv for r in result["rows"] for lv in r["recall@10"]}, key=int)
    lines = [
        f"# Descriptor whitening: recall@{s['k']} (%) per level, {s['queries']} queries",
        "",
        f"Fitted on {s['fit_regions']} regions of the {s['fit_images']} images outside every "
        f"pair; run `{s['run']}` (checkpoint {str(s['checkpoint_hash'])[:12]}).",
        "",
        "| whitening | " + " | ".join(f"L{lv}" for lv in levels) + " | min |",
        "|---|" + "---|" * (len(levels) + 1),
    ]
    for r in result["rows"]:
        values = [100 * r["recall@10"][lv] for lv in levels]
        name = "none (stored)" if r["power"] is None else f"power {r['power']:g}"
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {min(values):.1f} |"
        )
    if "sheet" in s:
        lines += [
            "",
            f"Contact sheet: `whitening_train_hits.jpg`, {s['sheet']['queries']} random level 2-4 "
            "regions of photos outside the pairs, each with its 6 best hits from other photos; "
            f"rows per query: {s['sheet']['rows_per_query']}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
