"""Batch normalisation that ignores padded tokens and can synchronise across processes.

The original replaced every LayerNorm of its transformers by BatchNorm1d over tokens x batch and
let padded tokens into the statistics (spec §8.4). `MaskedBatchNorm` takes statistics over the
valid tokens only. When torch.distributed is initialised and `sync` is on, the sums are
all-reduced with autograd (so gradients match one process on the joint batch): this is our
SyncBatchNorm for tokens, and `CPUSyncBatchNorm2d` is the same for feature maps on CPU, where
torch's own SyncBatchNorm refuses to run (it needs a GPU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor


def distributed_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over processes, differentiable; identity in a single process."""
    if distributed_world() == 1:
        return tensor
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor)


def masked_moments(x: Tensor, mask: Tensor | None, sync: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and biased variance over rows of x [N, C] where mask [N] is True; also the count.

    Returns:
        mean [C], var [C], count (0-d float tensor).
    """
    if mask is not None:
        x = x[mask]
    count = torch.tensor(float(x.shape[0]), device=x.device, dtype=x.dtype)
    if sync and distributed_world() > 1:
        sums = all_reduce_sum(torch.cat([x.sum(0), (x * x).sum(0), count.view(1)]))
        c = x.shape[1]
        count = sums[-1].clamp_min(1.0)
        mean = sums[:c] / count
        var = (sums[c : 2 * c] / count - mean * mean).clamp_min(0.0)
        return mean, var, count
    mean = x.mean(0) if x.shape[0] else x.new_zeros(x.shape[1])
    var = x.var(0, unbiased=False) if x.shape[0] else x.new_ones(x.shape[1])
    return mean, var, count


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dim of x [..., C], statistics from entries where mask [...] is True.

    Same parameters and buffers as nn.BatchNorm1d (so state dicts look familiar). Padded entries
    are normalised with the same statistics but never contribute to them.
    """

    def __init__(self, num_features: int, *, sync: bool = True, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.sync = sync

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        flat_mask = None if mask is None else mask.reshape(-1)
        if self.training:
            mean, var, count = masked_moments(flat, flat_mask, self.sync)
            self._update_running(mean, var, count)
        else:
            mean, var = self.running_mean, self.running_var
        out = (flat - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return out.reshape(shape)

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        if count.item() < 2:
            return
        self.num_batches_tracked += 1
        unbiased = var * count / (count - 1)
        m = self.momentum if self.momentum is not None else 0.1
        self.running_mean.lerp_(mean.detach(), m)
        self.running_var.lerp_(unbiased.detach(), m)


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are summed over all processes (gloo/CPU DDP)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or distributed_world() == 1:
            return super().forward(x)
        flat = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        mean, var, count = masked_moments(flat, None, sync=True)
        MaskedBatchNorm._update_running(self, mean, var, count)  # same buffers, same rule
        scale = torch.rsqrt(var + self.eps) * self.weight
        return (x - mean[:, None, None]) * scale[:, None, None] + self.bias[:, None, None]


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """torch's SyncBatchNorm on GPUs; `CPUSyncBatchNorm2d` (same state dict keys) on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CPUSyncBatchNorm2d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module
