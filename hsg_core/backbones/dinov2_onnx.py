"""Read DINOv2 ViT-S/14 weights out of an ONNX graph (HuggingFace Dinov2 export layout).

Named initialisers hold biases, norms, layer-scales, the patch conv and the cls token; the
projection matrices are anonymous MatMul inputs, identified by the name of the MatMul node that
uses them (e.g. `/backbone/encoder/layer.3/mlp/fc1/MatMul`). MatMul weights are [in, out].
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .vit import DinoViT

LINEARS = {
    "attention/attention/query": "query",
    "attention/attention/key": "key",
    "attention/attention/value": "value",
    "attention/output/dense": "proj",
    "mlp/fc1": "fc1",
    "mlp/fc2": "fc2",
}


def _node_inputs(graph, inits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Anonymous initialisers keyed by our parameter names."""
    found = {}
    pattern = re.compile(r"/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
    for node in graph.node:
        match = pattern.match(node.name)
        if (
            node.op_type == "MatMul"
            and match
            and match.group(2) in LINEARS
            and node.input[1] in inits
        ):
            found[f"blocks.{match.group(1)}.{LINEARS[match.group(2)]}.weight"] = inits[
                node.input[1]
            ].T
        if node.name == "/backbone/embeddings/Reshape_1":
            found["pos_embed"] = inits[node.input[0]].reshape(1, -1, inits[node.input[0]].shape[-1])
        if node.name == "/backbone/embeddings/Concat_6":
            found["cls_pos"] = inits[node.input[0]]
    return found


def _named(inits: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    out = {
        "patch_embed.weight": inits["backbone.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.bias": inits["backbone.embeddings.patch_embeddings.projection.bias"],
        "cls_token": inits["backbone.embeddings.cls_token"],
        "norm.weight": inits["backbone.layernorm.weight"],
        "norm.bias": inits["backbone.layernorm.bias"],
    }
    for i in range(depth):
        src = f"backbone.encoder.layer.{i}."
        for ours, theirs in {"norm1": "norm1", "norm2": "norm2"}.items():
            out[f"blocks.{i}.{ours}.weight"] = inits[f"{src}{theirs}.weight"]
            out[f"blocks.{i}.{ours}.bias"] = inits[f"{src}{theirs}.bias"]
        for ours, theirs in {
            "query": "attention.attention.query",
            "key": "attention.attention.key",
            "value": "attention.attention.value",
            "proj": "attention.output.dense",
            "fc1": "mlp.fc1",
            "fc2": "mlp.fc2",
        }.items():
            out[f"blocks.{i}.{ours}.bias"] = inits[f"{src}{theirs}.bias"]
        out[f"blocks.{i}.scale1"] = inits[f"{src}layer_scale1.lambda1"]
        out[f"blocks.{i}.scale2"] = inits[f"{src}layer_scale2.lambda1"]
    return out


def load_onnx_weights(model: DinoViT, path: str | Path) -> None:
    """Fill `model` from the ONNX file; a clear error when the graph has another layout."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        graph = onnx.load(str(path)).graph
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable ONNX file ({err})") from err
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    try:
        state = {**_named(inits, len(model.blocks)), **_node_inputs(graph, inits)}
    except KeyError as err:
        raise ValueError(f"{path}: not a DINOv2 ViT-S/14 ONNX graph (missing {err})") from err
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    bad = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    if missing or bad:
        raise ValueError(
            f"{path}: ONNX graph does not match DINOv2 ViT-S/14 (missing {missing[:5]}, "
            f"wrong shape {bad[:5]})"
        )
    model.load_state_dict({k: torch.from_numpy(np.array(state[k], dtype=np.float32)) for k in own})
