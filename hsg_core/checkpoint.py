"""Checkpoints: atomic writes, `weights_only` reads, and the resolved config inside every file.

Layout of a checkpoint (a torch.save'd dict of tensors and plain Python values):
    format: "hsg-checkpoint/1"     config: HSGConfig.to_dict()      step: int
    model: state dict (without the backbone when it is frozen and comes from fetched weights)
    optimizer: optimizer state (training checkpoints only)      torch_rng: RNG state tensor
    descriptor_whitening: optional, `DescriptorWhitening.to_state()` (`hsg fit-whitening`)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hsg_files import atomic_write, remove_stale_parts

from .config import ConfigError, HSGConfig

FORMAT = "hsg-checkpoint/1"
WHITENING_KEY = "descriptor_whitening"
LOG = logging.getLogger(__name__)
# backbone_init values a model built for inference may use: its weights all come from the checkpoint
# (model_state drops the backbone only when it is frozen fetched weights, found in the operator's cache)
INFERENCE_BACKBONE_INITS = ("none", "fetched")
# torch's error text around the unpickler's reason: advice to load unsafely (weights_only=False, or to
# allowlist a global "if you trust" it) and pointers to its docs. None of it is shown to a user.
_TORCH_ADVICE = re.compile(
    r"weights_only|safe_globals|allowlist|trust|Weights only load failed|file an issue|"
    r"documentation|can still be loaded|Alternatively",
    re.IGNORECASE,
)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and why."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through `atomic_write`; temp files left by a killed save are removed first."""
    remove_stale_parts(path)
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint on CPU with weights_only=True (no code execution) and check its layout."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with (
            warnings.catch_warnings()
        ):  # a foreign pickle draws torch warnings; the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = torch_load_reason(err)
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain values "
            f"(weights_only loading){': ' + reason if reason else ''}"
        ) from None
    except Exception as err:  # noqa: BLE001 - garbage makes the unpickler raise KeyError, IndexError, ...
        reason = torch_load_reason(err)
        raise CheckpointError(
            f"{path}: truncated or not a torch checkpoint "
            f"({type(err).__name__}{': ' + reason if reason else ''})"
        ) from None
    check_tensor_storage(data, path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an HSG checkpoint (expected format {FORMAT!r})")
    for key in ("config", "model", "step"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return data


def torch_load_reason(err: BaseException) -> str:
    """The reason a `torch.load` failed, on one line, without torch's advice on loading unsafely.

    torch wraps the unpickler's reason ("Unsupported global: GLOBAL x.Y was not an allowed global by
    default.") in advice to retry without `weights_only` or to allowlist the global: every sentence
    of that kind is dropped, so no message of this project ever suggests loading a file unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    for line in text.splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        kept = [s for s in re.split(r"(?<=\.)\s+", line) if s and not _TORCH_ADVICE.search(s)]
        if kept:
            return " ".join(kept)[:200]
    return ""


def _tensors(obj: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) for every tensor in nested dicts, lists and tuples; iterative, each container
    visited once, so deep nesting or a container holding itself cannot exhaust the stack."""
    stack: list[tuple[str, Any]] = [("", obj)]
    seen: set[int] = set()
    while stack:
        name, item = stack.pop()
        if torch.is_tensor(item):
            yield name, item
        elif isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((f"{name}.{key}" if name else str(key), value) for key, value in pairs)


def check_tensor_storage(data: Any, path: str | os.PathLike) -> None:
    """Refuse any tensor that is not dense, or whose storage holds fewer bytes than its size.

    A stride-0 view (`expand(40000, 40000)` of one number) or an overlapping one costs a few bytes in the
    file but its full size in every computation on it (NaN checks, copies): such views, and sparse
    tensors (which skip their invariant checks), are refused here, before anything reads them."""
    for name, tensor in _tensors(data):
        if tensor.layout != torch.strided:
            raise CheckpointError(
                f"{path}: tensor {name!r} is {tensor.layout} (only dense tensors are accepted)"
            )
        size = tensor.numel() * tensor.element_size()
        stored = tensor.untyped_storage().nbytes()
        if stored < size:
            raise CheckpointError(
                f"{path}: tensor {name!r} of shape {list(tensor.shape)} is a view of "
                f"{stored} stored bytes expanded to {size} (expanded or overlapping views "
                "are refused)"
            )


def inference_config(config: HSGConfig) -> HSGConfig:
    """`config` for building a model whose weights then all come from a checkpoint.

    A `model.backbone_init` naming a file is a training setting: the checkpoint holds the backbone's
    weights (strict loading refuses one that lacks them), so that file is never needed for inference, and
    opening it would let a checkpoint choose a file to read (or a FIFO that blocks for ever). The model is
    built with "none" instead; "none" and "fetched" (the operator's cache) are kept."""
    if config.model.backbone_init in INFERENCE_BACKBONE_INITS:
        return config
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, backbone_init="none")
    )


def checkpoint_config(data: dict[str, Any], path: str | os.PathLike) -> HSGConfig:
    """The config stored in a checkpoint, with fields added since it was written set to what the
    checkpoint was trained with (a ResNet without `dilation_rule` used the "stage" rule; one without
    `grouping.form` / `grouping.kmeans_init` the "hsg_explorer" transformer and "equal" grid cells)."""
    stored = data["config"]
    model = stored.get("model") if isinstance(stored, dict) else None
    if (
        isinstance(model, dict)
        and "dilation_rule" not in model
        and str(model.get("backbone", "")).startswith("resnet")
    ):
        stored = {**stored, "model": {**model, "dilation_rule": "stage"}}
    grouping = stored.get("grouping") if isinstance(stored, dict) else None
    if isinstance(
        grouping, dict
    ):  # written before grouping.form / kmeans_init: our transformer, equal cells
        stored = {
            **stored,
            "grouping": {"form": "hsg_explorer", "kmeans_init": "equal", **grouping},
        }
    try:
        return HSGConfig.from_dict(stored)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: stored config does not match this version ({err})") from err


def model_state(model: torch.nn.Module, config: HSGConfig) -> dict[str, torch.Tensor]:
    """State dict to save: without backbone weights when they are frozen fetched weights."""
    state = model.state_dict()
    if config.model.freeze_backbone and config.model.backbone_init == "fetched":
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return state


def load_model_state(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: str | os.PathLike,
    config: HSGConfig,
    strict: bool = True,
) -> None:
    """Load `state`, allowing absent backbone keys only when the backbone comes from fetched weights."""
    own = model.state_dict()
    bad_shapes = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad_shapes:
        raise CheckpointError(f"{path}: tensor shapes differ from the model for {bad_shapes[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing = list(result.missing_keys)
    if config.model.freeze_backbone and config.model.backbone_init == "fetched":
        missing = [k for k in missing if not k.startswith("backbone.")]
    if strict and (missing or result.unexpected_keys):
        raise CheckpointError(
            f"{path}: weights do not fit the model of its config; missing "
            f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )


def check_finite(state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse weights holding NaN or inf (a diverged run): they would only produce NaN regions."""
    bad = [
        k
        for k, v in state.items()
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or inf ({', '.join(bad[:3])}); "
            "the run diverged: use an earlier checkpoint"
        )


def export_inference_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, overrides: list[str] | None = None
) -> Path:
    """Copy a training checkpoint without optimizer and RNG state (what the app ships).

    `overrides` ("section.key=value") change the stored config, e.g. inference settings such as
    `grouping.infer_grid`; one that changes the network's parameters is refused.
    """
    from .whitening import descriptor_setting

    data = read_checkpoint(src)
    old = config = checkpoint_config(data, src)
    if overrides:
        config = reconfigured(config, data["model"], overrides, src)
    slim = {k: data[k] for k in ("format", "model", "step")}
    slim["config"] = config.to_dict()
    if WHITENING_KEY in data:  # kept while the descriptors it was fitted on stay the same
        if descriptor_setting(config) == descriptor_setting(old):
            slim[WHITENING_KEY] = data[WHITENING_KEY]
        else:
            LOG.warning(
                "%s: the descriptor whitening is left out of %s: %s changes the descriptors it "
                "was fitted on (fit one for them: hsg fit-whitening)",
                src,
                dst,
                ", ".join(overrides or []),
            )
    return atomic_torch_save(slim, dst)


def reconfigured(
    config: HSGConfig, state: dict[str, torch.Tensor], overrides: list[str], path: str | os.PathLike
) -> HSGConfig:
    """`config` with dotted overrides applied, checked to still fit the stored weights."""
    from .config import apply_overrides
    from .model import HSG

    try:
        new = apply_overrides(config, overrides)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from err
    try:  # the same check as loading: a file whose weights do not fit its config never gets written
        load_model_state(HSG(inference_config(new)), state, path, new)
    except CheckpointError as err:
        detail = str(err).removeprefix(f"{path}: ")
        raise CheckpointError(
            f"{path}: {', '.join(overrides)} changes the network's parameters; only settings "
            f"that keep the weights can change ({detail})"
        ) from err
    return new
