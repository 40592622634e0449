"""Backbone registry: `create_backbone(name, ...)` like timm's create_model.

Every backbone maps normalised images [B, 3, H, W] to a feature grid [B, C, ceil(H/s), ceil(W/s)]
and carries its input normalisation (`mean`, `std`) and current `output_stride` s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = builder
        return builder

    return wrap


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(
    name: str,
    *,
    init: str = "none",
    freeze: bool = False,
    output_stride: int = 16,
    width: int = 64,
    **options,
) -> nn.Module:
    """Build a registered backbone.

    Args:
        name: one of `list_backbones()`.
        init: "none" (random init, as the paper trains from scratch), "fetched" (weights from
            `hsg weights fetch`, DINOv2 only), or a path to a weight file.
        freeze: no gradients, and the module stays in eval mode.
        output_stride: ResNet only (8, 16 or 32).
        width: ResNet base width (64 = torchvision).
        options: passed to the builder (ResNets: `dilation_rule`).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    model = _REGISTRY[name](init=init, output_stride=output_stride, width=width, **options)
    if freeze:
        model.freeze()
    return model


class FreezableMixin:
    """`freeze()`: parameters without gradients and eval mode that survives parent .train()."""

    frozen: bool = False

    def freeze(self) -> None:
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        nn.Module.train(self, False)

    def train(self, mode: bool = True):  # type: ignore[override]
        return nn.Module.train(self, mode and not self.frozen)
