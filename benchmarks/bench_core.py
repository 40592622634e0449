"""Core speed: training step vs backbone fwd+bwd alone, predictor latency at 512 px, peak memory.

    python benchmarks/bench_core.py --config demo --out benchmarks/results/core_demo.json
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.config import load_config  # noqa: E402
from hsg_core.model import HSG  # noqa: E402
from hsg_core.objective import Objective  # noqa: E402
from hsg_core.predictor import HSGPredictor, pick_device  # noqa: E402
from tests.conftest import make_shapes_image  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def synthetic_batch(cfg, device):
    crop, views = cfg.data.crop_size, 2 * cfg.train.batch_size
    images = torch.randn(views, 3, crop, crop, device=device)
    cell = max(crop // 7, 1)
    yy, xx = torch.meshgrid(torch.arange(crop), torch.arange(crop), indexing="ij")
    superpixels = ((yy // cell) * 8 + xx // cell).expand(views, -1, -1).contiguous().to(device)
    n = cfg.train.batch_size
    return images, superpixels, torch.arange(n, device=device).repeat_interleave(2), torch.arange(2, device=device).repeat(n)


def bench_training(cfg, device, repeats: int) -> dict:
    model = HSG(cfg).to(device)
    objective = Objective(model, cfg).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    batch = synthetic_batch(cfg, device)

    def step():
        opt.zero_grad()
        objective(*batch)["total"].backward()
        opt.step()

    def backbone_only():
        opt.zero_grad()
        feats = model.backbone(batch[0])
        if feats.requires_grad:
            feats.float().pow(2).mean().backward()

    step_s, backbone_s = timed(step, repeats), timed(backbone_only, repeats)
    return {"train_step_s_median": statistics.median(step_s),
            "backbone_fwd_bwd_s_median": statistics.median(backbone_s),
            "step_over_backbone": statistics.median(step_s) / statistics.median(backbone_s),
            "batch_images": cfg.train.batch_size, "crop": cfg.data.crop_size}


def bench_predictor(cfg, device, repeats: int) -> dict:
    predictor = HSGPredictor(HSG(cfg).to(device), work_side=512)
    image = make_shapes_image(np.random.default_rng(0), 384, 512)
    predictor.config.overseg.cache = False
    predictor.cache = None
    times = timed(lambda: predictor.predict(image), repeats)
    return {"predict_512px_s_median": statistics.median(times), "predict_512px_s_p95": float(np.percentile(times, 95)),
            "image": [384, 512], "overseg": cfg.overseg.method}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/core.json")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(args.config)
    result = {"machine": machine_info(), "config": args.config, "device": str(device),
              "training": bench_training(cfg, device, args.repeats),
              "predictor": bench_predictor(cfg, device, args.repeats),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
