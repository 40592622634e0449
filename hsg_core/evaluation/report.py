"""Evaluation reports: one JSON record and a markdown summary, each written atomically.

The report is a plain dict: ``{"title", "dataset", "checkpoint", "hardware", "wall_seconds",
"results"}`` where ``results`` is what a protocol returned (`protocols.evaluate_*`). NaN (an
undefined score, e.g. NFCovering without foreground) is written as JSON null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hsg_files import atomic_write_text


def finite(value):
    """A JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def covering_tables(covering: dict) -> list[str]:
    """Markdown: one summary row per method, then one row per (level, method)."""
    lines = [
        _row("method", "ODS-like covering (level)", "OIS-like covering", "best NFCovering (level)"),
        _row(*["---"] * 4),
    ]
    for name, s in covering.items():
        nfc_level = (
            "" if s["nf_covering_best_level"] is None else f" (L{s['nf_covering_best_level']})"
        )
        lines.append(
            _row(
                name,
                f"{_num(s['covering_ods'])} (L{s['ods_level']})",
                _num(s["covering_ois"]),
                _num(s["nf_covering_best"]) + nfc_level,
            )
        )
    lines += [
        "",
        _row("level", "method", "mean regions", "covering", "NFCovering"),
        _row(*["---"] * 5),
    ]
    for lv in range(max(len(s["levels"]) for s in covering.values())):
        for name, s in covering.items():
            if lv >= len(s["levels"]):
                continue  # a compared checkpoint with fewer levels
            row = s["levels"][lv]
            lines.append(
                _row(
                    lv,
                    name,
                    _num(row["mean_regions"], 1),
                    _num(row["covering"]),
                    _num(row["nf_covering"]),
                )
            )
    return lines


CURVE_COLUMNS = (64, 32, 16, 8, 4, 2)  # region counts shown for every hierarchy (ODS/OIS use all)


def curve_table(curves: dict) -> list[str]:
    """Markdown: ODS and OIS over every scale of each hierarchy, the scale ODS was found at, and the
    covering of every hierarchy cut at the same region counts (CURVE_COLUMNS) image by image."""
    lines = [
        _row(
            "method", "scale", "ODS covering (at)", "OIS covering", *map(str, CURVE_COLUMNS), "mean"
        ),
        _row(*["---"] * (5 + len(CURVE_COLUMNS))),
    ]
    for name, c in curves.items():
        at = dict(zip(c["scale"], c["covering"])) if c["unit"] == "regions" else {}
        cells = [at.get(n) for n in CURVE_COLUMNS]
        mean = sum(cells) / len(cells) if None not in cells else None
        lines.append(
            _row(
                name,
                c["unit"],
                f"{_num(c['ods'])} ({c['ods_at']:g})",
                _num(c["ois"]),
                *map(_num, cells),
                _num(mean),
            )
        )
    return lines


def transfer_table(rows: list[dict]) -> list[str]:
    """Markdown: per level, kNN label transfer and Hungarian matching (percent)."""
    lines = [
        _row(
            "level",
            "memory prototypes",
            "kNN mIoU",
            "kNN pixel acc.",
            "Hungarian mIoU",
            "Hungarian pixel acc.",
        ),
        _row(*["---"] * 6),
    ]
    for row in rows:
        knn, hungarian = row["knn"], row["hungarian"]
        lines.append(
            _row(
                row["level"],
                row["memory_prototypes"],
                _num(knn["miou"], 1),
                _num(knn["pixel_accuracy"], 1),
                _num(hungarian["miou"], 1),
                _num(hungarian["pixel_accuracy"], 1),
            )
        )
    return lines


def to_markdown(report: dict) -> str:
    """The human-readable summary of a report (after `finite`: undefined scores are None)."""
    hw = report.get("hardware", {})
    results = report["results"]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in results.get("seconds", {}).items())
    lines = [
        f"# {report['title']}",
        "",
        f"- dataset: {json.dumps(report.get('dataset', {}))}",
        f"- checkpoint: `{report.get('checkpoint', '')}`",
        f"- hardware: {hw.get('cpu', '?')} ({hw.get('cores', '?')} cores), CUDA: {hw.get('cuda', '?')}",
        f"- wall time: {report['wall_seconds']:.1f} s ({seconds})",
        "",
        "## Covering (in [0, 1]; baselines cut at HSG's region count per level and image)",
        "",
    ]
    lines += covering_tables(results["covering"])
    if results.get("curves"):
        lines += [
            "",
            "## Covering over every scale (ODS: one scale for the data set; OIS: per image)",
            "",
        ]
        lines += curve_table(results["curves"])
    if "label_transfer" in results:
        classes, k = results["num_classes"], results["k"]
        lines += ["", f"## Semantic labels (percent; {classes} classes, kNN k = {k})", ""]
        lines += transfer_table(results["label_transfer"])
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.md` into `out_dir` (created); returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = finite(report)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    atomic_write_text(json_path, json.dumps(report, indent=1, allow_nan=False) + "\n")
    atomic_write_text(md_path, to_markdown(report))
    return json_path, md_path
