"""Dilated ResNet FCN (18/34/50) in plain torch with torchvision's parameter names.

Output stride 16 (training, as the original: strides [1, 2, 2, 1], dilations [1, 1, 1, 2]) or
8 (inference: strides [1, 2, 1, 1], dilations [1, 1, 2, 4]) from the same weights; the switch
only changes convolution strides, dilations and paddings. ResNet-50's last stage uses the
multigrid [1, 2, 4] on its blocks.

Dilation rule "previous" (torchvision's `replace_stride_with_dilation`, and the original): the first
3x3 convolution of a stage — the one that would stride — keeps the previous stage's dilation and
every later one takes the stage's, so the OS8 network computes, at every other position, exactly
what the OS16 network computes. Rule "stage" gave the first convolution the stage's dilation too:
a different function per output stride; it was this project's rule before December 2026, and
checkpoints trained with it keep it (`ModelConfig.dilation_rule`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from ..checkpoint import torch_load_reason
from .registry import FreezableMixin, register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_LAYOUT = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}
DILATION_RULES = ("previous", "stage")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes))
            if downsample
            else None
        )

    def spatial_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
            )
            if downsample
            else None
        )

    def spatial_convs(self) -> list[nn.Conv2d]:
        return [self.conv2]  # torchvision v1.5: the stride sits on the 3x3 conv

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetFCN(FreezableMixin, nn.Module):
    """ResNet trunk without pooling/fc: [B, 3, H, W] -> [B, C, ceil(H/s), ceil(W/s)]."""

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self,
        block: type,
        depths: tuple[int, ...],
        *,
        width: int = 64,
        output_stride: int = 16,
        dilation_rule: str = "previous",
    ) -> None:
        super().__init__()
        if dilation_rule not in DILATION_RULES:
            raise ValueError(
                f"model.dilation_rule must be one of {', '.join(DILATION_RULES)}, got {dilation_rule!r}"
            )
        self.dilation_rule = dilation_rule
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for i, depth in enumerate(depths):
            planes = width * 2**i
            needs_proj = i > 0 or inplanes != planes * block.expansion
            blocks = [block(inplanes, planes, needs_proj)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, False) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes
        self.multigrid = (1, 2, 4) if block is Bottleneck else (1,) * depths[-1]
        self._init_weights()
        self.set_output_stride(output_stride)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def dilation_table(self, stride: int) -> list[list[list[int]]]:
        """Per stage, per block, the dilation of each 3x3 convolution at output stride `stride`."""
        strides, dilations = STAGE_LAYOUT[stride]
        table, previous = [], 1
        for i, d in enumerate(dilations):
            stage = []
            for j, blk in enumerate(getattr(self, f"layer{i + 1}")):
                rate = d * (self.multigrid[min(j, len(self.multigrid) - 1)] if i == 3 else 1)
                first = previous if (j == 0 and self.dilation_rule == "previous") else rate
                stage.append([first] + [rate] * (len(blk.spatial_convs()) - 1))
            table.append(stage)
            previous = d
        return table

    def set_output_stride(self, stride: int) -> None:
        """Switch between OS 8/16/32 by changing strides and dilations in place (same weights)."""
        if stride not in STAGE_LAYOUT:
            raise ValueError(f"output stride must be one of {sorted(STAGE_LAYOUT)}, got {stride}")
        strides = STAGE_LAYOUT[stride][0]
        for i, (s, stage) in enumerate(zip(strides, self.dilation_table(stride))):
            for j, (blk, rates) in enumerate(zip(getattr(self, f"layer{i + 1}"), stage)):
                for k, (conv, rate) in enumerate(zip(blk.spatial_convs(), rates)):
                    conv.stride = (s, s) if (j == 0 and k == 0) else (1, 1)
                    conv.dilation, conv.padding = (rate, rate), (rate, rate)
                if j == 0 and blk.downsample is not None:
                    blk.downsample[0].stride = (s, s)
        self._output_stride = stride

    def forward(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_torchvision_state(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision/timm-style ResNet state dict; strict on the trunk, `fc.*` ignored."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(
            f"{path}: cannot read ResNet weights ({err.__class__.__name__}: "
            f"{torch_load_reason(err)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    state = {
        k.removeprefix("module."): v
        for k, v in data.items()
        if not k.removeprefix("module.").startswith("fc.")
    }
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: not a matching ResNet state dict (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {shapes[:5]})"
        )
    model.load_state_dict(state)


def _build(
    block: type,
    depths: tuple[int, ...],
    init: str,
    output_stride: int,
    width: int,
    dilation_rule: str,
) -> ResNetFCN:
    model = ResNetFCN(
        block, depths, width=width, output_stride=output_stride, dilation_rule=dilation_rule
    )
    if init == "fetched":
        raise ValueError(
            "no fetched ResNet weights exist: use init 'none' (from scratch, as the paper) "
            "or a path to a torchvision-style state dict"
        )
    if init != "none":
        load_torchvision_state(model, init)
    return model


@register("resnet18_fcn")
def resnet18_fcn(
    *, init: str = "none", output_stride: int = 16, width: int = 64, dilation_rule: str = "previous"
) -> ResNetFCN:
    return _build(BasicBlock, (2, 2, 2, 2), init, output_stride, width, dilation_rule)


@register("resnet34_fcn")
def resnet34_fcn(
    *, init: str = "none", output_stride: int = 16, width: int = 64, dilation_rule: str = "previous"
) -> ResNetFCN:
    return _build(BasicBlock, (3, 4, 6, 3), init, output_stride, width, dilation_rule)


@register("resnet50_fcn")
def resnet50_fcn(
    *, init: str = "none", output_stride: int = 16, width: int = 64, dilation_rule: str = "previous"
) -> ResNetFCN:
    return _build(Bottleneck, (3, 4, 6, 3), init, output_stride, width, dilation_rule)
