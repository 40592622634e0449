"""Training loop: `train(config, data_root, out_dir)` — single process or torchrun DDP.

Every sample is a pure function of (seed, global sample position), and the torch RNG state is
saved, so `resume=True` continues exactly: same step, optimizer, schedule and batches.
Logs every loss term to `log.jsonl` and `log.csv`; writes `checkpoint.pt` atomically, next to the
resolved `config.yaml` and a `data_manifest.json` of the images it trains on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from hsg_files import atomic_write_text

from .checkpoint import (
    FORMAT,
    atomic_torch_save,
    checkpoint_config,
    load_model_state,
    model_state,
    read_checkpoint,
)
from .config import HSGConfig
from .data import MultiviewFolder, collate_views, to_batch
from .distributed import DistInfo, init_from_env
from .model import HSG
from .norm import convert_sync_batchnorm
from .objective import Objective
from .optim import build_optimizer, set_learning_rate

LOG = logging.getLogger(__name__)


class PositionSampler(Sampler[int]):
    """Global sample positions for this process, from `start_step` on (B per step per process)."""

    def __init__(self, batch_size: int, info: DistInfo, start_step: int, iterations: int) -> None:
        self.batch_size, self.info = batch_size, info
        self.start_step, self.iterations = start_step, iterations

    def __iter__(self):
        b, w, r = self.batch_size, self.info.world_size, self.info.rank
        for step in range(self.start_step, self.iterations):
            base = step * b * w + r * b
            yield from range(base, base + b)

    def __len__(self) -> int:
        return (self.iterations - self.start_step) * self.batch_size


def build_model(cfg: HSGConfig, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """HSG wrapped in its `Objective` (and in DDP when distributed); moved to `device`."""
    model = HSG(cfg)
    if cfg.train.init_from:
        data = read_checkpoint(cfg.train.init_from)
        result = model.load_state_dict(data["model"], strict=False)
        LOG.info(
            "initialised from %s (new: %d tensors)", cfg.train.init_from, len(result.missing_keys)
        )
    objective = Objective(model, cfg).to(device)
    if info.world_size > 1:
        objective = convert_sync_batchnorm(objective, device)
        # unused by design: the transformers in stage 1, the top level's feature head always
        objective = DistributedDataParallel(
            objective,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    return objective


def unwrap(objective: torch.nn.Module) -> HSG:
    """The HSG model inside an Objective, DDP-wrapped or not."""
    core = objective.module if isinstance(objective, DistributedDataParallel) else objective
    return core.model


class RunLog:
    """Appends one row per logged step to log.jsonl and log.csv (main process only)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir, self.enabled, self.fields = out_dir, enabled, None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.write_csv(row)

    def rewind(self, step: int) -> None:
        """Keep only the complete rows of steps <= `step` (the run continues from there).

        A resumed run logs the steps after its checkpoint again, and a process killed mid-append
        leaves a partial last line; both files are rewritten atomically from log.jsonl.
        """
        path = self.out_dir / "log.jsonl"
        if not self.enabled or not path.exists():
            return
        rows = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the partial line of a killed write
            if isinstance(row, dict) and row.get("step", step + 1) <= step:
                rows.append(row)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        (self.out_dir / "log.csv").unlink(missing_ok=True)
        self.fields = None
        for row in rows:
            self.write_csv(row)

    def write_csv(self, row: dict) -> None:
        new = not (self.out_dir / "log.csv").exists()
        self.fields = self.fields or list(row)
        with open(self.out_dir / "log.csv", "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def data_manifest(dataset: MultiviewFolder) -> dict:
    """What a run trained on: every image's path relative to the root and its size, and a digest.

    Sizes, not content hashes: listing stays instant on COCO-sized folders; the digest still
    changes when a file is added, removed, renamed or rewritten to another size.
    """
    files = []
    for path in dataset.paths:
        try:
            size = path.stat().st_size
        except OSError:
            size = -1  # unreadable: the dataset skips it at load time
        files.append([path.relative_to(dataset.root).as_posix(), size])
    digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    return {
        "root": str(dataset.root.resolve()),
        "images": len(files),
        "digest": digest,
        "files": files,
    }


def save_training_checkpoint(path: Path, model, optimizer, cfg: HSGConfig, step: int) -> None:
    atomic_torch_save(
        {
            "format": FORMAT,
            "config": cfg.to_dict(),
            "model": model_state(unwrap(model), cfg),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
        },
        path,
    )


def restore(path: Path, model, optimizer, cfg: HSGConfig) -> int:
    """Load model, optimizer and RNG from a training checkpoint; returns the step to continue from."""
    data = read_checkpoint(path)
    if checkpoint_config(data, path) != cfg:
        LOG.warning("%s: resuming with a config that differs from the checkpoint's", path)
    load_model_state(unwrap(model), data["model"], path, cfg)
    optimizer.load_state_dict(data["optimizer"])
    torch.set_rng_state(data["torch_rng"])
    return int(data["step"])


def _loader(cfg: HSGConfig, dataset: MultiviewFolder, info: DistInfo, start: int) -> DataLoader:
    sampler = PositionSampler(cfg.train.batch_size, info, start, cfg.train.iterations)
    # its own generator: drawing the worker seed from the global RNG would shift dropout after a resume
    generator = torch.Generator().manual_seed(cfg.train.seed)
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        collate_fn=collate_views,
        num_workers=cfg.data.num_workers,
        generator=generator,
    )


def train_step(objective, optimizer, scaler, batch, autocast) -> dict[str, float]:
    """One SGD step; returns every loss term as a float ("loss" = weighted total)."""
    with autocast:
        terms = objective(batch.images, batch.superpixels, batch.image_ids, batch.views)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms["total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return {("loss" if k == "total" else k): float(v.detach()) for k, v in terms.items()}


def train(
    cfg: HSGConfig,
    data_root: str | Path,
    out_dir: str | Path,
    *,
    device: torch.device,
    resume: bool = False,
    max_steps: int | None = None,
) -> Path:
    """Train HSG on the images under `data_root`; returns the checkpoint path.

    Args:
        max_steps: stop after this many steps in this call (the schedule still spans
            cfg.train.iterations), e.g. to test resuming.
    """
    out_dir = Path(out_dir)
    info = init_from_env(device.type)
    dataset = MultiviewFolder(
        data_root, cfg.data, cfg.overseg, seed=cfg.train.seed
    )  # a bad folder fails here
    if info.is_main:
        atomic_write_text(out_dir / "config.yaml", cfg.to_yaml())
        atomic_write_text(
            out_dir / "data_manifest.json", json.dumps(data_manifest(dataset), indent=1)
        )
    torch.manual_seed(cfg.train.seed + info.rank)
    model = build_model(cfg, device, info)
    optimizer = build_optimizer(model, cfg.train)
    ckpt = out_dir / "checkpoint.pt"
    start = restore(ckpt, model, optimizer, cfg) if resume and ckpt.exists() else 0
    use_amp = cfg.train.amp and device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    log = RunLog(out_dir, info.is_main)
    log.rewind(start)
    end = (
        cfg.train.iterations if max_steps is None else min(cfg.train.iterations, start + max_steps)
    )
    model.train()
    loader = _loader(cfg, dataset, info, start)
    bar = tqdm(total=end - start, initial=0, disable=not info.is_main, desc="train", unit="step")
    core = unwrap(model)
    step, tick = start, time.perf_counter()
    for collated in loader:
        if step >= end:
            break
        lr = set_learning_rate(optimizer, cfg.train, step)
        batch = to_batch(collated, core.pixel_mean, core.pixel_std, device)
        row = train_step(model, optimizer, scaler, batch, autocast)
        step += 1
        bar.update(1)
        if step % cfg.train.log_every == 0 or step == end:
            now = time.perf_counter()
            log.write({"step": step, "lr": lr, **row, "seconds": round(now - tick, 3)})
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            tick = now
        if info.is_main and (step % cfg.train.checkpoint_every == 0 or step == end):
            save_training_checkpoint(ckpt, model, optimizer, cfg, step)
    bar.close()
    return ckpt
