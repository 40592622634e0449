"""torch.distributed helpers for DDP training: rank info, gathers with gradient, global means.

Every function is an identity (or trivial) in a single process, so the training code has one path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .norm import distributed_world


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistInfo(0, 1, 0)


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); nccl on GPUs, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return dist_info()


def gather_sizes(count: int, device: torch.device) -> list[int]:
    """Every process's `count`, in rank order."""
    if distributed_world() == 1:
        return [count]
    local = torch.tensor([count], device=device)
    sizes = [torch.zeros_like(local) for _ in range(distributed_world())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def gather_rows(rows: Tensor) -> tuple[Tensor, int]:
    """Concatenate every process's rows [n_r, ...] (differentiable), and this process's offset.

    Returns:
        all rows [sum n_r, ...] in rank order, and the index of this process's first row.
    """
    world = distributed_world()
    if world == 1:
        return rows, 0
    from torch.distributed.nn.functional import all_gather

    sizes = gather_sizes(rows.shape[0], rows.device)
    pad = max(sizes) - rows.shape[0]
    padded = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))]) if pad else rows
    gathered = all_gather(padded)
    parts = [g[:n] for g, n in zip(gathered, sizes)]
    return torch.cat(parts), sum(sizes[: dist.get_rank()])


def global_mean(local_mean: Tensor, local_count: int) -> Tensor:
    """Rescale a per-process mean so that DDP's gradient averaging yields the joint-batch mean.

    DDP averages gradients over W processes; with per-process means over unequal counts that is
    not the mean over all items. Returning mean * n_local * W / n_total fixes it exactly.
    """
    world = distributed_world()
    if world == 1:
        return local_mean
    total = sum(gather_sizes(local_count, local_mean.device))
    return local_mean * (local_count * world / max(total, 1))
