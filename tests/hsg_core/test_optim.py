"""SGD parameter groups: weights x1 with decay, biases x2 without, norm weights by train.norm_weight_group."""

import pytest

from hsg_core.config import load_config
from hsg_core.model import HSG
from hsg_core.optim import parameter_groups


def group_of(model, groups):
    """{parameter name: (lr_mult, weight_decay)}."""
    where = {id(p): (g["lr_mult"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {name: where[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    "rule, norm_weight, fast_norm_weight",
    [("bias", (2.0, 0.0), (20.0, 0.0)), ("weight", (1.0, 1e-4), (10.0, 1e-4))],
)
def test_norm_weights_go_with_biases_or_with_weights(rule, norm_weight, fast_norm_weight):
    """ "bias" (ours): BN weights lr x2 without decay; "weight" (the original's grouping by name): x1 with
    decay. Biases x2 without decay and matrices x1 with decay either way; transformers x10 on top."""
    cfg = load_config("tiny", [f"train.norm_weight_group={rule}", "train.transformer_lr_mult=10"])
    model = HSG(cfg)
    groups = group_of(model, parameter_groups(model, cfg.train))
    assert groups["backbone.bn1.weight"] == norm_weight
    assert groups["head.norm.weight"] == norm_weight
    assert groups["levels.0.encoder.0.norm1.weight"] == fast_norm_weight
    assert groups["backbone.bn1.bias"] == (2.0, 0.0) and groups["head.project.bias"] == (2.0, 0.0)
    assert groups["backbone.conv1.weight"] == (1.0, 1e-4)
    assert groups["levels.0.queries.weight"] == (10.0, 1e-4) and groups["position.row.weight"] == (
        10.0,
        1e-4,
    )
    assert groups["levels.0.encoder.0.attn.in_proj_bias"] == (20.0, 0.0)


def test_original_presets_decay_norm_weights():
    for name in ("coco_stage1", "coco_stage2", "cityscapes"):
        assert load_config(name).train.norm_weight_group == "weight"
    assert load_config("demo").train.norm_weight_group == "bias"


def test_torch_sgd_equals_the_originals_lr_in_buffer_rule_only_while_lr_is_constant():
    """docs/fidelity.md, 'SGD update rule': the original folds lr into the momentum buffer
    (v = 0.9 v + lr (g + wd θ); θ -= v), torch keeps it outside (v = 0.9 v + g + wd θ; θ -= lr v)."""
    import torch

    def original(lrs, theta=1.0, momentum=0.9, wd=1e-4):
        v, path = 0.0, []
        for lr in lrs:
            g = 2 * theta  # d/dθ of θ²
            v = momentum * v + lr * (g + wd * theta)
            theta -= v
            path.append(theta)
        return path

    def ours(lrs):
        theta = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        opt = torch.optim.SGD([theta], lr=lrs[0], momentum=0.9, weight_decay=1e-4)
        path = []
        for lr in lrs:
            opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            (theta**2).backward()
            opt.step()
            path.append(theta.item())
        return path

    constant = [0.01] * 30
    assert ours(constant) == pytest.approx(original(constant), abs=1e-12)
    dropped = [0.01] * 15 + [0.001] * 15  # an lr step: the original's buffer still carries 0.01
    gap = max(abs(a - b) for a, b in zip(ours(dropped), original(dropped)))
    assert gap > 1e-4
