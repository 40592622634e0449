"""`hsg eval retrieval`: folder in, retrieval.json + retrieval.md out.

    work = out/work      the data folder linked, plus the augmented copies (`index.copies`)
    index = out/index    (or --index) built over the work folder, or brought up to date
    report               recall@1/@10 per level (`index.retrieval_eval`), with references

The model arrives as a callable returning (extractor, checkpoint hash), called only once the
data folder has been checked, so a bad folder fails in seconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from hsg_files import atomic_write_text

from .copies import (
    CROP_SIDE_RANGE,
    FLIP_PROBABILITY,
    HUE_RANGE,
    JITTER_RANGE,
    SCALE_RANGE,
    ImageLoader,
    prepare_copies,
)
from .extraction import Extractor
from .io import MANIFEST_NAME, read_manifest, write_json
from .managed import build_or_update
from .retrieval_eval import (
    GOOD_IOU,
    HISTOGRAM_BINS,
    METHODS,
    MIN_AREA_FRACTION,
    MIN_VISIBLE_FRACTION,
    TOP_K,
    evaluate_retrieval,
)
from .store import SegmentIndex

LOG = logging.getLogger(__name__)

ModelLoader = Callable[[], tuple[Extractor, str]]  # -> (extractor, checkpoint hash)


def run_retrieval(
    data: Path,
    out: Path,
    load_model: ModelLoader,
    load_image: ImageLoader,
    *,
    copies: int = 20,
    seed: int = 0,
    index_dir: Path | None = None,
    batch_size: int = 8,
    checkpoint: str = "",
    hardware: dict | None = None,
) -> tuple[dict, Path, Path]:
    """Copies `copies` seeded images of `data`, indexes the lot, scores retrieval of the copies.

    Args:
        data: image folder (recursive).
        out: report folder; also holds work/ and, by default, index/.
        load_model: called once, after the data checks.
        load_image: the model's image reader (copies and baseline see the model's frames).
        copies: originals to copy (at most the number of images in `data`).
        seed: chooses the originals and their transforms.
        index_dir: index folder over out/work (default out/index); reused when it exists.
        batch_size: images per extractor call.
        checkpoint: shown in the report.
        hardware: machine description for the report.

    Returns:
        (report, path of retrieval.json, path of retrieval.md).
    """
    start = time.perf_counter()
    out = Path(os.path.abspath(out))
    work = out / "work"
    pairs = prepare_copies(Path(data), work, copies, seed, load_image)
    copies_seconds = time.perf_counter() - start
    extract, checkpoint_hash = load_model()
    index_dir = Path(os.path.abspath(index_dir or out / "index"))
    index = _index_work_folder(work, index_dir, extract, checkpoint_hash, batch_size)
    index_seconds = time.perf_counter() - start - copies_seconds
    results = evaluate_retrieval(index, pairs, load_image)
    results["seconds"] = {"copies": copies_seconds, "index": index_seconds, **results["seconds"]}
    images = len(index.images())
    report = {
        "title": f"HSG retrieval evaluation: {copies} copies among {images} images",
        "dataset": {
            "data": os.path.abspath(data),
            "work": str(work),
            "index": str(index_dir),
            "images": images,
            "copies": copies,
            "seed": seed,
        },
        "definitions": definitions(),
        "checkpoint": checkpoint,
        "checkpoint_hash": checkpoint_hash,
        "hardware": hardware or {},
        "wall_seconds": time.perf_counter() - start,
        "results": results,
    }
    return (report, *write_report(report, out))


def definitions() -> dict:
    """The protocol's thresholds and choices, recorded in every report."""
    return {
        "augmentation": {
            "flip_probability": FLIP_PROBABILITY,
            "scale_range": list(SCALE_RANGE),
            "crop_side_range": list(CROP_SIDE_RANGE),
            "brightness_contrast_saturation_range": list(JITTER_RANGE),
            "hue_shift_range": list(HUE_RANGE),
        },
        "min_area_fraction": MIN_AREA_FRACTION,
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "target": "the copy region of the query's level with the highest IoU with the query's "
        "mask mapped into the copy (one target per query)",
        "search": "the query region's stored embedding over the whole index minus the original "
        "image; hsg: at the query's level; hsg_all_levels: at every level",
        "baseline": f"colour_histogram: square-rooted {HISTOGRAM_BINS}^3-bin joint RGB histogram "
        "of the region (cosine = Bhattacharyya coefficient), exact ranking, ties against the "
        "target",
        "chance": "recall@k of a random ranking of the candidate regions of the query's level",
        "top_k": list(TOP_K),
    }


def _index_work_folder(
    work: Path, index_dir: Path, extract: Extractor, checkpoint_hash: str, batch_size: int
) -> SegmentIndex:
    """Builds the index of `work` in `index_dir`, or updates the one already there."""
    if (index_dir / MANIFEST_NAME).exists():
        indexed = Path(read_manifest(index_dir)["data_root"])
        if indexed != work:
            raise ValueError(
                f"{index_dir}: indexes {indexed}, not the work folder {work}; "
                "give another index folder"
            )
    build_or_update(
        work, index_dir, extract, checkpoint_hash=checkpoint_hash, batch_size=batch_size
    )
    return SegmentIndex.open(index_dir, checkpoint_hash=checkpoint_hash)


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """Writes retrieval.json and retrieval.md into `out` (created), each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "retrieval.json", out / "retrieval.md"
    write_json(json_path, report)
    text = to_markdown(report)
    atomic_write_text(md_path, text)
    return json_path, md_path


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def to_markdown(report: dict) -> str:
    """The human-readable summary: settings, then one table row per level (percentages)."""
    results, hw, d = report["results"], report["hardware"], report["definitions"]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in results["seconds"].items())
    lines = [
        f"# {report['title']}",
        "",
        f"- dataset: {json.dumps(report['dataset'])}",
        f"- pairs used: {results['pairs_used']} (left out: {len(results['pairs_skipped'])})",
        f"- queries: original regions >= {100 * d['min_area_fraction']:g}% of the image with "
        f">= {100 * d['min_visible_fraction']:g}% of their pixels inside the copy",
        f"- target: {d['target']}",
        f"- baseline: {d['baseline']}",
        f"- checkpoint: `{report['checkpoint']}` ({report['checkpoint_hash'][:12]})",
        f"- hardware: {hw.get('cpu', '?')} ({hw.get('cores', '?')} cores), "
        f"CUDA: {hw.get('cuda', '?')}",
        f"- wall time: {report['wall_seconds']:.1f} s ({seconds})",
        "",
        "Recall in percent; R@k = the target is among the k best hits.",
        "",
        _row(
            "level",
            "queries",
            "mean target IoU",
            f"IoU >= {GOOD_IOU}",
            *(f"{name} R@{k}" for name in METHODS for k in TOP_K),
            *(f"chance R@{k}" for k in TOP_K),
        ),
        _row(*["---"] * (4 + len(TOP_K) * (len(METHODS) + 1))),
    ]
    rows = [(row["level"], row) for row in results["levels"]] + [("all", results["all"])]
    for name, summary in rows:
        iou = summary["mean_target_iou"]
        lines.append(
            _row(
                name,
                summary["queries"],
                "–" if iou is None else f"{iou:.3f}",
                _percent(summary[f"share_target_iou_ge_{GOOD_IOU}"]),
                *(_percent(summary[m][f"recall@{k}"]) for m in (*METHODS, "chance") for k in TOP_K),
            )
        )
    return "\n".join(lines) + "\n"
