"""Crafted checkpoints (issue 13, item 8): no memory bomb, no file chosen by the checkpoint, no advice to
load unsafely."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hsg_core.checkpoint import (
    FORMAT,
    CheckpointError,
    atomic_torch_save,
    export_inference_checkpoint,
    read_checkpoint,
    torch_load_reason,
)
from hsg_core.config import load_config
from hsg_core.model import HSG
from hsg_core.predictor import load_predictor

# what torch appends to a refused load: none of it may reach a user
ADVICE = re.compile(
    r"weights_only=False|set to `False`|trust|safe_globals|allowlist|Re-running|\x1b"
)


class NotAllowed:
    """A class torch's weights_only unpickler does not allow."""


def tiny_checkpoint_data() -> dict[str, Any]:
    """A checkpoint dict of the tiny config (no cache, no fetched weights), weights seeded."""
    torch.manual_seed(0)
    cfg = load_config("tiny", ["overseg.cache=false"])
    return {"format": FORMAT, "config": cfg.to_dict(), "model": HSG(cfg).state_dict(), "step": 0}


def saved(data: dict[str, Any], path: Path) -> Path:
    atomic_torch_save(data, path)
    return path


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_expanded_views_are_refused_on_read_before_any_computation(tmp_path, where):
    """The issue's bomb: one stored number viewed as 40000 x 40000 (6.4 GB as float32). `read_checkpoint`
    does no arithmetic on tensors and every loader starts with it, so nothing ever computes on the view."""
    data = tiny_checkpoint_data()
    bomb = torch.zeros(1).expand(40000, 40000)
    if where == "model":
        data["model"]["bomb"] = bomb
    else:
        data["optimizer"] = {"state": {0: {"exp_avg": bomb}}, "param_groups": []}
    path = saved(data, tmp_path / "bomb.pt")
    assert path.stat().st_size < 2_000_000  # the tiny model: under 1 MB
    key = "model.bomb" if where == "model" else "optimizer.state.0.exp_avg"
    with pytest.raises(
        CheckpointError, match=rf"bomb.pt: tensor '{re.escape(key)}' .*40000, 40000.*expanded"
    ):
        read_checkpoint(path)


def test_a_weight_of_the_right_shape_made_of_one_number_is_refused(tmp_path):
    """An expanded view shaped like a real weight would load silently today; it is refused, as are
    overlapping strides and sparse tensors (whose invariants torch does not check on load)."""
    weight = tiny_checkpoint_data()["model"]["head.project.weight"]
    views = {
        "expanded": torch.ones(1).expand(weight.shape),
        "overlapping": torch.zeros(sum(weight.shape)).as_strided(weight.shape, (1,) * weight.dim()),
        "sparse": weight.to_sparse(),
    }
    for name, view in views.items():
        data = tiny_checkpoint_data()
        data["model"]["head.project.weight"] = view
        with pytest.raises(CheckpointError, match="head.project.weight"):
            load_predictor(saved(data, tmp_path / f"{name}.pt"), "cpu")
    good = tiny_checkpoint_data()
    good["model"]["head.project.weight"] = weight.clone()[
        :, :
    ]  # a plain view of its own storage loads
    load_predictor(saved(good, tmp_path / "good.pt"), "cpu")


def guarded(call: Callable[[], Any], fifo: Path, seconds: float = 30.0) -> Any:
    """`call()` in a thread; if it is still running after `seconds` it is blocked opening `fifo`: a writer
    opens and closes the FIFO (the reader then sees EOF and returns) and the test fails, never hangs."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(
            os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        )  # unblocks the reader waiting in open()
        thread.join(seconds)
        pytest.fail(
            f"blocked opening the FIFO {fifo} named by the checkpoint's model.backbone_init"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_backbone_init_of_a_checkpoint_is_never_opened(tmp_path):
    """A checkpoint whose stored model.backbone_init names a FIFO (or any file) loads without opening it:
    its own weights are used, so it predicts exactly as the same weights with backbone_init 'none'."""
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    reference = saved(tiny_checkpoint_data(), tmp_path / "reference.pt")
    crafted = tiny_checkpoint_data()
    crafted["config"]["model"]["backbone_init"] = str(fifo)
    crafted = saved(crafted, tmp_path / "crafted.pt")

    predictor = guarded(lambda: load_predictor(crafted, "cpu"), fifo)
    exported = guarded(
        lambda: export_inference_checkpoint(
            crafted, tmp_path / "slim.pt", ["grouping.infer_grid=[2,2]"]
        ),
        fifo,
    )
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    expected = load_predictor(reference, "cpu").predict(image)
    got = predictor.predict(image)
    for level, want in zip(got.levels, expected.levels):
        assert np.array_equal(level.label_map, want.label_map)
        assert np.allclose(level.embeddings, want.embeddings, atol=1e-6)
    assert list(read_checkpoint(exported)["config"]["grouping"]["infer_grid"]) == [2, 2]


def test_torch_advice_to_load_unsafely_is_never_passed_on(tmp_path):
    """torch wraps a refusal in advice to retry with weights_only=False or to allowlist the global 'if you
    trust' it (with terminal escapes); the error keeps torch's reason and drops the advice."""
    path = tmp_path / "foreign.pt"
    torch.save({"format": FORMAT, "model": NotAllowed()}, path)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "refused to load" in message and "was not an allowed global" in message, message
    assert not ADVICE.search(message), message
    assert (
        caught.value.__cause__ is None and caught.value.__suppress_context__
    )  # not in a traceback either
    try:
        torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's own text holds the advice...
        assert ADVICE.search(str(err))
        assert not ADVICE.search(torch_load_reason(err))  # ...and the project's reason does not
