"""DDP with 2 CPU processes (gloo) gives the gradients of one process on the joint batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hsg_core.config import load_config
from hsg_core.model import HSG
from hsg_core.norm import convert_sync_batchnorm
from hsg_core.objective import Objective

OVERRIDES = ["grouping.dropout=0.0", "data.crop_size=48"] + [
    o for o in os.environ.get("DDP_EXTRA", "").split(",") if o
]


def joint_batch(num_images: int = 4, crop: int = 48):
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2 * num_images, 3, crop, crop, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(crop), torch.arange(crop), indexing="ij")
    blocks = (yy // 12) * 4 + xx // 12
    superpixels = torch.stack([(blocks + i) % 16 for i in range(2 * num_images)])
    superpixels[1, :, -8:] = -1  # some padding in one view
    return images, superpixels


def make_objective():
    torch.manual_seed(0)
    cfg = load_config("tiny", OVERRIDES)
    return Objective(HSG(cfg), cfg).train()


def grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def run_rank(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    images, superpixels = joint_batch()
    per = images.shape[0] // world
    sl = slice(rank * per, (rank + 1) * per)
    objective = convert_sync_batchnorm(make_objective(), torch.device("cpu"))
    ddp = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    n_local = per // 2
    terms = ddp(
        images[sl],
        superpixels[sl],
        torch.arange(n_local).repeat_interleave(2),
        torch.arange(2).repeat(n_local),
    )
    terms["total"].backward()
    torch.save({"grads": grads(objective), "total": terms["total"].detach()}, f"{out_file}.{rank}")
    dist.destroy_process_group()


def test_two_process_gradients_equal_joint_batch(tmp_path):
    images, superpixels = joint_batch()
    single = make_objective()
    n = images.shape[0] // 2
    terms = single(
        images, superpixels, torch.arange(n).repeat_interleave(2), torch.arange(2).repeat(n)
    )
    terms["total"].backward()
    want = grads(single)
    out = tmp_path / "rank0.pt"
    mp.spawn(run_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    got = torch.load(f"{out}.0", weights_only=True)["grads"]
    assert set(got) == set(want)
    # relative to each tensor's gradient scale, with a floor for tensors whose gradient is ~0
    floor = 1e-3 * max(w.abs().max().item() for w in want.values())
    worst = max(
        (got[k] - want[k]).abs().max().item() / max(want[k].abs().max().item(), floor) for k in want
    )
    assert worst < 2e-3, worst
