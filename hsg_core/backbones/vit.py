"""DINOv2 ViT-S/14 in plain torch: patch tokens as a [B, 384, h, w] feature grid.

12 pre-norm blocks (dim 384, 6 heads, MLP 1536, exact GELU, layer-scale), a learned 37x37
position grid (+ cls) resized bicubically to the input's patch grid, final LayerNorm (eps 1e-6).
Inputs whose sides are not multiples of 14 are zero-padded bottom/right.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..checkpoint import torch_load_reason
from .registry import FreezableMixin, register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.scale1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        self.scale2 = nn.Parameter(torch.ones(dim))

    def attention(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (
            lin(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
            for lin in (self.query, self.key, self.value)
        )
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, d/heads]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.scale1 * self.attention(self.norm1(x))
        return x + self.scale2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class DinoViT(FreezableMixin, nn.Module):
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self,
        *,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp: int = 1536,
        patch: int = 14,
        grid: int = 37,
    ) -> None:
        super().__init__()
        self.patch, self.grid = patch, grid
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_channels = dim
        for p in (self.cls_token, self.cls_pos, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    @property
    def output_stride(self) -> int:
        return self.patch

    def set_output_stride(self, stride: int) -> None:
        if stride != self.patch:
            raise ValueError(f"a ViT's output stride is its patch size {self.patch}, not {stride}")

    def positions(self, h: int, w: int) -> Tensor:
        """[1, h*w, D] position embeddings for an h x w patch grid (bicubic, half-pixel)."""
        table = self.pos_embed.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        if (h, w) != (self.grid, self.grid):
            table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)
        return table.flatten(2).transpose(1, 2)

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] normalised -> [B, 384, ceil(H/14), ceil(W/14)]."""
        b, _, height, width = images.shape
        pad_h, pad_w = (-height) % self.patch, (-width) % self.patch
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        tokens = self.patch_embed(images)
        h, w = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2) + self.positions(h, w)
        x = torch.cat([self.cls_token.expand(b, -1, -1) + self.cls_pos, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)[:, 1:]
        return x.transpose(1, 2).reshape(b, -1, h, w)


@register("dinov2_vits14")
def dinov2_vits14(*, init: str = "none", output_stride: int = 14, width: int = 64) -> DinoViT:
    """DINOv2 ViT-S/14; init "fetched" loads the weights of `hsg weights fetch` (an ONNX file)."""
    model = DinoViT()
    if init == "none":
        return model
    from ..weights import weights_path
    from .dinov2_onnx import load_onnx_weights

    path = weights_path("dinov2_vits14") if init == "fetched" else Path(init)
    if path.suffix == ".onnx":
        load_onnx_weights(model, path)
    else:
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:  # noqa: BLE001
            raise ValueError(
                f"{path}: not a DINOv2 ViT-S/14 state dict ({torch_load_reason(err)})"
            ) from None
    return model
