"""Explorer latency through the HTTP API (gradio_client): slider move (/render) and click-to-gallery
(/click_xy), p50/p95, on the embedded default (real model and demo index) or any checkpoint/index.

    python benchmarks/bench_app.py --out benchmarks/results/app.json [--checkpoint CKPT --data DIR]

Times are client-observed round trips on loopback, so they include gradio's queue and encoding.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import app  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402


def percentiles(samples: list[float]) -> dict:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(samples)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(explorer: app.Explorer, image: Path, repeats: int) -> dict:
    from gradio_client import Client, handle_file

    demo = app.build_demo(explorer)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        allowed_paths=[str(p) for p in explorer.data_roots])
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    start = time.perf_counter()
    client.predict(handle_file(str(image)), 0, 0.45, False, api_name="/load_image")
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    h, w = app.load_image(image, max_side=app.MAX_SIDE).shape[:2]
    top = explorer.predictor.num_levels - 1
    slider, clicks = [], []
    for i in range(repeats):
        start = time.perf_counter()
        client.predict(i % (top + 1), 0.45, False, api_name="/render")
        slider.append(time.perf_counter() - start)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        start = time.perf_counter()
        client.predict(x, y, int(rng.integers(0, top + 1)), 0.45, False, 8, "same level", True, api_name="/click_xy")
        clicks.append(time.perf_counter() - start)
    demo.close()
    return {"load_image_s": load_s, "slider": percentiles(slider), "click_to_gallery": percentiles(clicks),
            "index": explorer.index.info() if explorer.index else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=str(app.DEFAULT_CHECKPOINT))
    parser.add_argument("--data", default=str(app.DEFAULT_IMAGES))
    parser.add_argument("--image", default=None, help="query image (default: first of --data)")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/app.json")
    args = parser.parse_args()
    explorer = app.load_app(app.parse_args(["--checkpoint", args.checkpoint, "--data", args.data]))
    image = Path(args.image) if args.image else explorer.examples[0]
    result = {"machine": machine_info(), "checkpoint": args.checkpoint, **run(explorer, image, args.repeats)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "index"}, indent=1, default=str))


if __name__ == "__main__":
    main()
