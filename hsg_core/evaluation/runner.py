"""End-to-end evaluation jobs, from folders to report files (what `hsg eval` runs).

Each job checks its inputs first (folders, file pairs, baseline names) and only then calls
`load_predictor`, so a bad dataset fails in seconds, before the model is loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .baselines import BASELINE_NAMES, IMAGE_BASELINES, baseline_factories
from .datasets import BSDSDataset, Dataset, open_labelled
from .protocols import Predictor, evaluate_hierarchy, evaluate_labelled
from .report import write_report

LOG = logging.getLogger(__name__)


def parse_baselines(spec: str, default: Sequence[str]) -> list[str]:
    """ "all" -> `default`; "none" or "" -> []; otherwise a comma-separated list of names."""
    spec = spec.strip()
    if spec == "all":
        return list(default)
    if spec in ("", "none"):
        return []
    return [name.strip() for name in spec.split(",") if name.strip()]


def _report(
    title: str,
    dataset: dict,
    checkpoint: str,
    predictor: Predictor,
    hardware: dict | None,
    start: float,
    results: dict,
) -> dict:
    return {
        "title": title,
        "dataset": dataset,
        "checkpoint": checkpoint,
        "checkpoint_hash": getattr(predictor, "checkpoint_hash", ""),
        "hardware": hardware or {},
        "wall_seconds": time.perf_counter() - start,
        "results": results,
    }


def run_bsds(
    load_predictor: Callable[[], Predictor],
    root: str | Path,
    out: str | Path,
    *,
    split: str = "val",
    limit: int | None = None,
    baselines: str = "all",
    checkpoint: str = "",
    hardware: dict | None = None,
    compare: dict[str, Callable[[], Predictor]] | None = None,
    curves: bool = True,
) -> tuple[dict, Path, Path]:
    """Hierarchy protocol on BSDS500 `split`; writes `bsds_<split>.json` / `.md` into `out`.

    `baselines`: "all" (gpb_ucm included when the split has ucm2 maps), "none", or names.
    `compare`: name -> loader of another predictor, scored as method "hsg:<name>".
    `curves`: also ODS/OIS over every scale (`curves`) of HSG's contour tree and the UCM baselines.
    Returns the report and the two paths.
    """
    start = time.perf_counter()
    dataset = BSDSDataset(root, split).limit(limit)
    dataset.validate()
    names = parse_baselines(
        baselines, BASELINE_NAMES if dataset.has_ucm2() else tuple(IMAGE_BASELINES)
    )
    baseline_factories(names, dataset)  # unknown names / missing ucm2 fail before the model loads
    predictor = load_predictor()
    others = {name: load() for name, load in (compare or {}).items()}
    results = evaluate_hierarchy(predictor, dataset, names, others, curves=curves)
    info = {
        "name": "BSDS500",
        "root": str(root),
        "split": split,
        "images": len(dataset),
        "baselines": names,
        "compared": {name: getattr(p, "checkpoint_hash", "") for name, p in others.items()},
    }
    report = _report(
        f"HSG evaluation: BSDS500 {split} ({len(dataset)} images)",
        info,
        checkpoint,
        predictor,
        hardware,
        start,
        results,
    )
    return (report, *write_report(report, out, f"bsds_{split}"))


def _open(
    root: str | Path, split: str | None, limit: int | None, num_classes: int | None
) -> Dataset:
    dataset = open_labelled(root, split, num_classes).limit(limit)
    dataset.validate()
    return dataset


def run_labelled(
    load_predictor: Callable[[], Predictor],
    data: str | Path,
    memory: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    memory_split: str | None = None,
    limit: int | None = None,
    memory_limit: int | None = None,
    num_classes: int | None = None,
    k: int = 20,
    baselines: str = "none",
    checkpoint: str = "",
    hardware: dict | None = None,
) -> tuple[dict, Path, Path]:
    """Labelled protocol: covering + kNN label transfer (memory from `memory`) + Hungarian.

    `data` and `memory` are VOC-style or images/ + masks/ folders (they may be the same folder
    with different splits). Writes `labelled.json` / `.md` into `out`.
    """
    start = time.perf_counter()
    if k < 1:
        raise ValueError(f"k must be at least 1 nearest prototype, got {k}")
    test = _open(data, split, limit, num_classes)
    prototypes = _open(memory, memory_split, memory_limit, num_classes)
    if set(test.ids) & set(prototypes.ids) and Path(data).resolve() == Path(memory).resolve():
        LOG.warning(
            "the memory shares images with the test set: label-transfer scores are optimistic"
        )
    names = parse_baselines(baselines, tuple(IMAGE_BASELINES))
    baseline_factories(names, test)
    predictor = load_predictor()
    results = evaluate_labelled(predictor, test, prototypes, k, names)
    info = {
        "data": str(data),
        "split": split,
        "images": len(test),
        "memory": str(memory),
        "memory_split": memory_split,
        "memory_images": len(prototypes),
        "baselines": names,
    }
    title = f"HSG evaluation: {Path(data).name}{f' {split}' if split else ''} ({len(test)} images)"
    report = _report(title, info, checkpoint, predictor, hardware, start, results)
    return (report, *write_report(report, out, "labelled"))
