"""SGD with the original's learning-rate groups and its warm-up + step schedule.

Groups: weights x1 with weight decay; biases x2 without; clustering transformers and position/query
embeddings x`transformer_lr_mult` (their biases x2 that). Norm weights (BatchNorm/LayerNorm scales)
go with the biases by default (`train.norm_weight_group="bias"`: x2, no decay; ours) or with the
weights (`"weight"`: x1 with decay), as the original, which grouped parameters by name (`*weight` /
`*bias`, spec §2 LR groups and §8.11). torch's SGD puts lr outside the momentum buffer,
unlike the original's lr-in-momentum rule: equal while lr is constant, smoother at lr steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig


def is_bias_like(name: str, param: nn.Parameter, norm_weight_group: str = "bias") -> bool:
    """Whether a parameter goes in the bias group (lr x2, no weight decay).

    "bias": every vector (biases and norm weights; ours); "weight": only names ending in "bias"
    (the original's grouping by name, norm weights then decay like weights).
    """
    if norm_weight_group == "weight":
        return name.endswith("bias")
    return param.dim() <= 1


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """SGD parameter groups: {"params", "lr_mult", "weight_decay", "lr"} per (fast, bias-like) pair."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = name.removeprefix("module.")
        fast = name.startswith(("levels.", "position."))
        flat = is_bias_like(name, param, cfg.norm_weight_group)
        groups.setdefault((fast, flat), []).append(param)
    out = []
    for (fast, flat), params in sorted(groups.items()):
        mult = (cfg.transformer_lr_mult if fast else 1.0) * (2.0 if flat else 1.0)
        out.append(
            {
                "params": params,
                "lr_mult": mult,
                "weight_decay": 0.0 if flat else cfg.weight_decay,
                "lr": cfg.lr * mult,
            }
        )
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(parameter_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up from 0.1 lr over `warmup_iters`, then x0.1 at each fraction in `lr_steps`."""
    if step < cfg.warmup_iters:
        return cfg.lr * (0.1 + 0.9 * step / cfg.warmup_iters)
    drops = sum(step >= int(f * cfg.iterations) for f in cfg.lr_steps)
    return cfg.lr * 0.1**drops


def set_learning_rate(optimizer: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> float:
    lr = learning_rate(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    return lr
