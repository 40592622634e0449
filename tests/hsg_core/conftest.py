"""Fixtures shared by the hsg_core tests."""

import pytest
import torch

from hsg_core.config import load_config
from hsg_core.model import HSG
from hsg_core.predictor import HSGPredictor


@pytest.fixture(scope="module")
def vit_contour_predictor():
    """The shipped model's design (DINOv2 ViT-S/14, contour tree, embedding+backbone), random."""
    torch.manual_seed(0)
    cfg = load_config(
        "tiny",
        [
            "overseg.cache=false",
            "overseg.method=gradient_ucm",
            "model.backbone=dinov2_vits14",
            "model.backbone_init=none",
            "grouping.infer_hierarchy=contour",
            "contour.region_descriptor=embedding+backbone",
            "contour.switch_regions=12",
            "contour.level_altitudes=[0.0,1.0,1.2,10.0]",
        ],
    )
    return HSGPredictor(HSG(cfg), work_side=96)
