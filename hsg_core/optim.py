"""SGD with the original's learning-rate groups and its warm-up + step schedule.

Groups: weights x1 with weight decay; biases and norm parameters x2 without (the original decayed
norm weights — spec §8.11 — we do not); clustering transformers and position/query embeddings
x`transformer_lr_mult` (their biases x2 that). torch's SGD puts lr outside the momentum buffer,
unlike the original's lr-in-momentum rule: equal while lr is constant, smoother at lr steps.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = name.removeprefix("module.")
        fast = name.startswith(("levels.", "position."))
        flat = param.dim() <= 1
        groups.setdefault((fast, flat), []).append(param)
    out = []
    for (fast, flat), params in sorted(groups.items()):
        mult = (cfg.transformer_lr_mult if fast else 1.0) * (2.0 if flat else 1.0)
        out.append({"params": params, "lr_mult": mult, "weight_decay": 0.0 if flat else cfg.weight_decay,
                    "lr": cfg.lr * mult})
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(parameter_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up from 0.1 lr over `warmup_iters`, then x0.1 at each fraction in `lr_steps`."""
    if step < cfg.warmup_iters:
        return cfg.lr * (0.1 + 0.9 * step / cfg.warmup_iters)
    drops = sum(step >= int(f * cfg.iterations) for f in cfg.lr_steps)
    return cfg.lr * 0.1 ** drops


def set_learning_rate(optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> float:
    lr = learning_rate(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    return lr
