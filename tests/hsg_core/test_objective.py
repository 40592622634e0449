"""The training objective's options of issue 15: the DMoN graph, the k-means grid rule, unused heads."""

import pytest
import torch
import torch.nn.functional as F

import hsg_core.objective as objective
from hsg_core.config import load_config
from hsg_core.losses import knn_adjacency
from hsg_core.model import HSG
from hsg_core.objective import Batch, dmon_graph_groups, training_losses


def tiny_batch(num_images: int = 2, crop: int = 48) -> Batch:
    """2 views of `num_images` random images, block oversegments (16 per crop)."""
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2 * num_images, 3, crop, crop, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(crop), torch.arange(crop), indexing="ij")
    blocks = (yy // 12) * 4 + xx // 12
    superpixels = torch.stack([(blocks + i) % 16 for i in range(2 * num_images)])
    return Batch(
        images,
        superpixels,
        torch.arange(num_images).repeat_interleave(2),
        torch.arange(2).repeat(num_images),
    )


def test_dmon_graph_per_view_or_joint_out_degree():
    """k = 4, 6 nodes in each of 2 views: per view (the original's COCO graph) every node links to 4 nodes of
    each view, out-degree 8; joint (its Cityscapes graph) 4 over both views."""
    x = F.normalize(torch.randn(1, 12, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    mask = torch.ones(1, 12, dtype=torch.bool)
    views = torch.tensor([[0] * 6 + [1] * 6])
    per_view = knn_adjacency(x, mask, dmon_graph_groups(views, "per_view"), 4)
    joint = knn_adjacency(x, mask, dmon_graph_groups(views, "joint"), 4)
    assert per_view.sum(2).tolist() == [[8.0] * 12] and joint.sum(2).tolist() == [[4.0] * 12]
    sim = (x @ x.transpose(1, 2))[0].fill_diagonal_(-2.0)
    assert torch.equal(
        joint[0].nonzero()[:, 1].reshape(12, 4).sort(1).values,
        sim.topk(4, 1).indices.sort(1).values,
    )
    with pytest.raises(ValueError, match="unknown DMoN graph"):
        dmon_graph_groups(views, "knn")


def test_training_uses_the_configured_grid_rule_and_graph(monkeypatch):
    seen = {}
    real_init, real_groups = objective.initial_clusters, objective.dmon_graph_groups

    def spy_init(grid, size, device, rule):
        seen["rule"] = rule
        return real_init(grid, size, device, rule)

    def spy_groups(views, graph):
        seen["graph"] = graph
        return real_groups(views, graph)

    monkeypatch.setattr(objective, "initial_clusters", spy_init)
    monkeypatch.setattr(objective, "dmon_graph_groups", spy_groups)
    torch.manual_seed(0)
    cfg = load_config(
        "tiny", ["grouping.kmeans_init=original", "loss.dmon_graph=joint", "data.crop_size=48"]
    )
    training_losses(HSG(cfg).train(), tiny_batch(), cfg)
    assert seen == {"rule": "original", "graph": "joint"}


@pytest.mark.parametrize("form, unused", [("hsg_explorer", [0, 1]), ("original", [1])])
def test_feature_heads_that_feed_no_level_get_no_gradient(form, unused):
    """Our form feeds pooled node prototypes to the next level, so no level's feature head is used; the
    original's feeds level l's features to level l+1, so only the top level's is unused (in the original
    too). An unused head gets no gradient, and torch's SGD skips it (no decay): it keeps its init."""
    torch.manual_seed(0)
    cfg = load_config(
        "tiny", [f"grouping.form={form}", "grouping.dropout=0.0", "data.crop_size=48"]
    )
    model = HSG(cfg).train()
    training_losses(model, tiny_batch(), cfg).total.backward()
    for lv, level in enumerate(model.levels):
        grads = [p.grad for p in level.feature_head.parameters()]
        if lv in unused:
            assert all(g is None for g in grads), lv
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), lv
    assert all(p.grad is not None for p in model.levels[-1].centroid_head.parameters())
