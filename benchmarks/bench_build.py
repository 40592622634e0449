"""Index build throughput: next to the predictor's own throughput, or per stage with --workers.

    python benchmarks/bench_build.py --out benchmarks/results/build.json
    python benchmarks/bench_build.py --data ../shared/datasets/BSDS500/images/val --limit 20 \
        --workers 0 1 2 --repeat 2 --out benchmarks/results/build_pipeline.json

Default mode: forward-bound = images / (time of load_image + predictor.predict over the folder);
build = images / (time of `build_index` with the same predictor into a fresh folder).

--workers mode (issue 14): one fresh `build_index` per setting; 0 is today's path (`make_extractor`,
one image at a time), N > 0 the pipelined extractor (`hsg_core.extract_pipeline`, N DataLoader
workers, --batch-size images per device window). Per stage, the mean seconds per image: decode,
hed (edge map), backbone (+ head), watershed (semantic edge map + the contour tree's watershed
hierarchies and region linkage), grouping (level cuts + region descriptors), write (the index side
alone: `build_index` replaying the predictions from memory). With workers, decode and hed run in
the worker processes, beside the rest. The machine's load average is recorded before each run;
--repeat cycles through the settings (interleaved) and the summary gives the medians. The
oversegmentation cache is disabled throughout, so no run profits from another.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import serve_options  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.extract_pipeline import PipelinedExtractor  # noqa: E402
from hsg_core.images import ImageReadError, list_images, load_image  # noqa: E402
from hsg_core.predictor import HSGPredictor, load_predictor, make_extractor  # noqa: E402
from index import build_index  # noqa: E402

# stage of the table <- key of Prediction.meta["seconds"] (contour hierarchy; transformers: overseg)
STAGES = {
    "decode": ("decode",),
    "hed": ("edges", "overseg"),
    "backbone": ("features",),
    "watershed": ("tree",),
    "grouping": ("levels", "grouping"),
}


def quiet(done: int, total: int) -> None:
    """Progress callback that draws nothing."""


class TimedPerImage:
    """Today's path (`make_extractor`'s work, one image at a time) with decode timed too."""

    def __init__(self, predictor: HSGPredictor, max_side: int) -> None:
        self.predictor, self.max_side = predictor, max_side
        self.stage_seconds: dict[str, float] = {}
        self.images = 0
        self.results: dict[Path, object] = {}  # what each path gave, for `Replay`

    def __call__(self, paths: list[Path]) -> list:
        out = []
        for path in paths:
            start = time.perf_counter()
            try:
                image = load_image(path, max_side=self.max_side)
                decode = time.perf_counter() - start
                prediction = self.predictor.predict(image)
            except (ImageReadError, ValueError) as err:
                out.append(err)
                self.results[path] = err
                continue
            self.images += 1
            for stage, seconds in {"decode": decode, **prediction.meta["seconds"]}.items():
                self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
            out.append(prediction)
            self.results[path] = prediction
        return out


class Replay:
    """The predictions of an earlier run, by path: the index side alone."""

    def __init__(self, results: dict[Path, object]) -> None:
        self.results = results

    def __call__(self, paths: list[Path]) -> list:
        return [self.results[path] for path in paths]


def per_stage(stage_seconds: dict[str, float], images: int) -> dict[str, float]:
    """Mean seconds per image of each stage of STAGES."""
    return {
        stage: round(sum(stage_seconds.get(k, 0.0) for k in keys) / max(images, 1), 4)
        for stage, keys in STAGES.items()
    }


def run_workers(
    predictor: HSGPredictor, data: Path, workers: int, batch_size: int
) -> tuple[dict, dict[Path, object]]:
    """One fresh build with `workers`: (images/s and the per-stage table, results by path when
    today's path ran, else {})."""
    extractor = (
        TimedPerImage(predictor, predictor.input_side)
        if workers == 0
        else PipelinedExtractor(predictor, workers=workers, batch_size=batch_size)
    )
    load = os.getloadavg()
    seconds, info = timed_build(data, extractor, predictor.checkpoint_hash, batch_size)
    run = {
        "workers": workers,
        "extractor": "per image (today)" if workers == 0 else "pipelined",
        "load_average_1_5_15_before": [round(x, 2) for x in load],
        "seconds": round(seconds, 2),
        "images": extractor.images,
        "images_per_s": round(extractor.images / seconds, 4),
        "regions": info["counts"]["regions"],
        "stage_s_per_image": per_stage(extractor.stage_seconds, extractor.images),
    }
    return run, getattr(extractor, "results", {})


def timed_build(data: Path, extract, checkpoint_hash: str, batch_size: int) -> tuple[float, dict]:
    """(seconds, manifest) of a fresh `build_index` of `data` with `extract`."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = build_index(
            data,
            Path(tmp) / "idx",
            extract,
            checkpoint_hash=checkpoint_hash,
            batch_size=batch_size,
            progress=quiet,
        )
        return time.perf_counter() - start, info


def first_images(source: Path, limit: int, folder: Path) -> Path:
    """`folder` holding copies of the first `limit` images of `source` (all when limit <= 0)."""
    paths = list_images(source)
    folder.mkdir(parents=True)
    for path in paths[:limit] if limit > 0 else paths:
        shutil.copy2(path, folder / path.name)
    return folder


def workers_mode(args: argparse.Namespace, predictor: HSGPredictor) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = first_images(Path(args.data), args.limit, Path(tmp) / "images")
        predictor.predict(predictor.read_image(list_images(data)[0]))  # warm-up
        runs, results = [], {}
        for cycle in range(args.repeat):  # interleaved: a drifting load hits every setting alike
            for workers in args.workers:
                run, recorded = run_workers(predictor, data, workers, args.batch_size)
                runs.append({"cycle": cycle, **run})
                results = results or recorded
        if not results:  # no run of today's path to replay: record one
            results = run_workers(predictor, data, 0, args.batch_size)[1]
        seconds, _ = timed_build(data, Replay(results), predictor.checkpoint_hash, args.batch_size)
    for run in runs:
        run["stage_s_per_image"]["write"] = round(seconds / max(len(results), 1), 4)
    return {
        "machine": machine_info(),
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "data": str(args.data),
        "images": runs[0]["images"],
        "device": str(predictor.device),
        "batch_size": args.batch_size,
        "stages": {
            "decode": "load_image (worker processes when workers > 0)",
            "hed": "HED edge map at contour.edge_side (worker processes when workers > 0)",
            "backbone": "backbone + head forward, batched by working size when workers > 0",
            "watershed": "semantic edge map + the contour tree's watershed hierarchies + linkage",
            "grouping": "level cuts + region descriptors + Prediction",
            "write": "index side alone: build_index replaying the same predictions",
        },
        "summary": summarise(runs, args.workers),
        "runs": runs,
    }


def summarise(runs: list[dict], settings: list[int]) -> dict:
    """Per workers setting: median images/s over the cycles, its ratio to the first setting's,
    and the median seconds per image of each stage."""
    out = {}
    for workers in settings:
        mine = [r for r in runs if r["workers"] == workers]
        stages = mine[0]["stage_s_per_image"]
        out[str(workers)] = {
            "images_per_s": round(statistics.median(r["images_per_s"] for r in mine), 4),
            "stage_s_per_image": {
                k: round(statistics.median(r["stage_s_per_image"][k] for r in mine), 4)
                for k in stages
            },
        }
    base = out[str(settings[0])]["images_per_s"]
    for summary in out.values():
        summary["speedup_vs_first"] = round(summary["images_per_s"] / base, 3)
    return out


def forward_mode(args: argparse.Namespace, predictor: HSGPredictor) -> dict:
    paths = list_images(args.data)
    predictor.predict(predictor.read_image(paths[0]))  # warm-up (weights, threads)
    start = time.perf_counter()
    for path in paths:
        predictor.predict(predictor.read_image(path))
    forward_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = build_index(
            Path(args.data),
            Path(tmp) / "idx",
            make_extractor(predictor),
            checkpoint_hash=predictor.checkpoint_hash,
            batch_size=4,
            progress=quiet,
        )
        build_s = time.perf_counter() - start
    return {
        "machine": machine_info(),
        "images": len(paths),
        "device": str(predictor.device),
        "forward_images_per_s": len(paths) / forward_s,
        "build_images_per_s": len(paths) / build_s,
        "build_over_forward": forward_s / build_s,
        "regions": info["counts"]["regions"],
        "regions_per_level": info["counts"]["per_level"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=str(serve_options.DEFAULT_CHECKPOINT))
    parser.add_argument("--data", default=str(serve_options.DEFAULT_IMAGES))
    parser.add_argument("--out", default="benchmarks/results/build.json")
    parser.add_argument("--workers", type=int, nargs="*", help="per-stage runs, e.g. 0 1 2")
    parser.add_argument("--limit", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="cycles over the --workers settings")
    args = parser.parse_args()
    predictor = load_predictor(args.checkpoint, "auto", overseg_cache=None)
    predictor.cache = None
    result = workers_mode(args, predictor) if args.workers else forward_mode(args, predictor)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
