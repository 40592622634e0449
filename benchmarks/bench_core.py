"""Core speed: training step vs the backbone alone (forward + backward, or forward only when the
config freezes it), predictor latency at work side 512 and at the config's shipped work side
(data.max_side) on a real photo and on the 384x512 synthetic shapes image, peak memory.

    python benchmarks/bench_core.py --config demo --checkpoint assets/checkpoint/hsg_demo.pt \
        --out benchmarks/results/core_demo.json
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.machine import machine_info  # noqa: E402
from hsg_core.checkpoint import checkpoint_config, load_model_state, read_checkpoint  # noqa: E402
from hsg_core.config import load_config  # noqa: E402
from hsg_core.images import list_images, load_image  # noqa: E402
from hsg_core.model import HSG  # noqa: E402
from hsg_core.objective import Objective  # noqa: E402
from hsg_core.predictor import HSGPredictor, pick_device  # noqa: E402
from hsg_files import atomic_write_text  # noqa: E402
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
    return (
        images,
        superpixels,
        torch.arange(n, device=device).repeat_interleave(2),
        torch.arange(2, device=device).repeat(n),
    )


def bench_training(cfg, device, repeats: int) -> dict:
    model = HSG(cfg).to(device)
    objective = Objective(model, cfg).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    batch = synthetic_batch(cfg, device)

    def step():
        opt.zero_grad()
        objective(*batch)["total"].backward()
        opt.step()

    frozen = not any(p.requires_grad for p in model.backbone.parameters())

    def backbone_only():  # a frozen backbone has nothing to back-propagate into: forward only
        opt.zero_grad()
        feats = model.backbone(batch[0])
        if not frozen:
            feats.float().pow(2).mean().backward()

    step_s, backbone_s = timed(step, repeats), timed(backbone_only, repeats)
    return {
        "train_step_s_median": statistics.median(step_s),
        "backbone_frozen": frozen,
        f"backbone_{'fwd' if frozen else 'fwd_bwd'}_s_median": statistics.median(backbone_s),
        "step_over_backbone": statistics.median(step_s) / statistics.median(backbone_s),
        "batch_images": cfg.train.batch_size,
        "crop": cfg.data.crop_size,
    }


def bench_predictor(
    cfg, device, photo: Path, repeats: int, state: dict | None = None
) -> list[dict]:
    """Predictor latency (overseg cache off): the photo and the synthetic shapes image at work side
    512 and at the shipped one (data.max_side); for the contour hierarchy, the median time
    of each stage (edges, features, tree, levels) too."""
    cfg.overseg.cache = False
    model = HSG(cfg).to(device)
    if state is not None:
        load_model_state(model, state, "checkpoint", cfg)
    shapes = make_shapes_image(np.random.default_rng(0), 384, 512)
    cases = [
        (str(photo), load_image(photo), 512),
        (str(photo), load_image(photo), None),
        ("synthetic shapes", shapes, 512),
        ("synthetic shapes", shapes, None),
    ]
    rows = []
    for name, image, work_side in cases:
        predictor = HSGPredictor(model, work_side=work_side)
        stages: list[dict] = []
        times = timed(
            lambda stages=stages, predictor=predictor, image=image: stages.append(
                predictor.predict(image).meta.get("seconds", {})
            ),
            repeats,
        )
        row = {
            "image": name,
            "image_size": list(image.shape[:2]),
            "work_side": predictor.work_side,
            "shipped_work_side": work_side is None,
            "s_median": statistics.median(times),
            "s_p95": float(np.percentile(times, 95)),
            "overseg": cfg.overseg.method,
            "hierarchy": cfg.grouping.infer_hierarchy,
        }
        if stages and stages[-1]:
            row["stage_s_median"] = {
                k: statistics.median(s[k] for s in stages[1:]) for k in stages[-1]
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="time this checkpoint's config and weights (default: the preset, random head)",
    )
    parser.add_argument(
        "--image", default=None, help="photo for the predictor (default: first demo image)"
    )
    parser.add_argument("--out", default="benchmarks/results/core.json")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg, state = load_config(args.config), None
    if args.checkpoint:
        data = read_checkpoint(args.checkpoint)
        cfg, state = checkpoint_config(data, args.checkpoint), data["model"]
    photo = Path(args.image) if args.image else list_images(REPO / "assets" / "demo_images")[0]
    result = {
        "machine": machine_info(),
        "config": args.config,
        "device": str(device),
        "training": bench_training(cfg, device, args.repeats),
        "checkpoint": args.checkpoint,
        "predictor": bench_predictor(cfg, device, photo, args.repeats, state),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
