"""Index build throughput next to the predictor's own throughput, same images, same run.

    python benchmarks/bench_build.py --out benchmarks/results/build.json

forward-bound = images / (time of load_image + predictor.predict over the folder); build = images /
(time of `build_index` with the same predictor into a fresh folder). The oversegmentation cache is
disabled for both, so neither profits from the other.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import explorer as ex  # noqa: E402
import serve_options  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.images import list_images, load_image  # noqa: E402
from hsg_core.predictor import (
    load_predictor,  # noqa: E402
    make_extractor,  # noqa: E402
)
from index import build_index  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=str(serve_options.DEFAULT_CHECKPOINT))
    parser.add_argument("--data", default=str(serve_options.DEFAULT_IMAGES))
    parser.add_argument("--out", default="benchmarks/results/build.json")
    args = parser.parse_args()
    predictor = load_predictor(args.checkpoint, "auto", overseg_cache=None)
    predictor.cache = None
    paths = list_images(args.data)
    predictor.predict(load_image(paths[0], max_side=ex.MAX_SIDE))  # warm-up (weights, threads)
    start = time.perf_counter()
    for path in paths:
        predictor.predict(load_image(path, max_side=ex.MAX_SIDE))
    forward_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        info = build_index(
            Path(args.data),
            Path(tmp) / "idx",
            make_extractor(predictor, ex.MAX_SIDE),
            checkpoint_hash=predictor.checkpoint_hash,
            batch_size=4,
            progress=lambda d, t: None,
        )
        build_s = time.perf_counter() - start
    result = {
        "machine": machine_info(),
        "images": len(paths),
        "device": str(predictor.device),
        "forward_images_per_s": len(paths) / forward_s,
        "build_images_per_s": len(paths) / build_s,
        "build_over_forward": forward_s / build_s,
        "regions": info["counts"]["regions"],
        "regions_per_level": info["counts"]["per_level"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
