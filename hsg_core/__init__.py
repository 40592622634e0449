"""HSG core: model, training and inference (torch). Never imports faiss or gradio.

Public API (imported lazily, so light modules such as `hsg_core.types` or `hsg_core.images`
do not pull in torch):

    from hsg_core import load_predictor, HSGPredictor, HSG, load_config, train, Prediction
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "HSG": "hsg_core.model",
    "HSGPredictor": "hsg_core.predictor",
    "load_predictor": "hsg_core.predictor",
    "pick_device": "hsg_core.predictor",
    "HSGConfig": "hsg_core.config",
    "load_config": "hsg_core.config",
    "train": "hsg_core.train",
    "Prediction": "hsg_core.types",
    "Level": "hsg_core.types",
    "create_backbone": "hsg_core.backbones",
    "oversegment": "hsg_core.overseg",
    "load_image": "hsg_core.images",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hsg_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
