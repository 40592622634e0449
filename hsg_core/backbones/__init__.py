"""Backbones: `create_backbone(name, init=..., freeze=..., output_stride=..., width=...)`."""

from . import resnet, vit  # noqa: F401  (registers the builders)
from .registry import create_backbone, list_backbones
from .resnet import ResNetFCN
from .vit import DinoViT

Backbone = ResNetFCN | DinoViT

__all__ = ["create_backbone", "list_backbones", "Backbone", "ResNetFCN", "DinoViT"]
