import torch
import torch.nn.functional as F

from hsg_core.config import load_config
from hsg_core.model import HSG, group_positions


def tiny_model(levels=(5, 3, 2), form="hsg_explorer"):
    torch.manual_seed(0)
    cfg = load_config(
        "tiny",
        [
            f"grouping.level_clusters={list(levels)}",
            "grouping.dropout=0.0",
            f"grouping.form={form}",
        ],
    )
    return HSG(cfg).eval()


def test_transition_matrices_compose_and_groups_nest():
    model = tiny_model()
    nodes = F.normalize(torch.randn(2, 9, 16), dim=-1)
    pos = torch.randn(2, 9, 16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    out = model.group(nodes, pos, mask)
    assert [a.shape[1] for a in out.assignments] == [5, 3, 2]
    for lv, transition in enumerate(out.transitions):
        # P_{l+1} = C_l^{l+1} P_l (node-major: P_l C), exactly
        assert torch.allclose(out.assignments[lv + 1], transition @ out.assignments[lv])
        assert torch.allclose(transition.sum(1), torch.ones(2, transition.shape[2]), atol=1e-5)
        # every level-l group has exactly one parent, and node groups follow it
        want = out.parents[lv].gather(1, out.node_groups[lv].clamp_min(0))
        assert torch.equal(out.node_groups[lv + 1][mask], want[mask])
    for assign in out.assignments:
        assert torch.allclose(assign.sum(1)[mask], torch.ones(int(mask.sum())), atol=1e-5)
        assert (assign[1, :, 6:] == 0).all()
    assert (out.node_groups[0][1, 6:] == -1).all()


def test_embed_is_unit_norm_and_device_from_buffer():
    model = tiny_model()
    emb = model.embed(model.normalize(torch.rand(2, 3, 40, 56)))
    assert emb.shape[:2] == (2, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones_like(emb[:, 0]), atol=1e-5)
    assert model.device == torch.device("cpu")


def test_group_positions_mean_and_empty():
    pos = torch.tensor([[[1.0, 0], [3.0, 0], [0, 4.0]]])
    groups = torch.tensor([[0, 0, 2]])
    out = group_positions(pos, groups, 3)
    assert torch.allclose(out, torch.tensor([[[2.0, 0], [0, 0], [0, 4.0]]]))


def test_centred_removes_the_masked_mean():
    from hsg_core.model import centred

    x = F.normalize(torch.randn(2, 6, 8) + 3.0, dim=-1)  # a shared direction, as real embeddings
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    out = centred(x, mask)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 6), atol=1e-5)
    want = F.normalize(x[0, :4] - x[0, :4].mean(0), dim=-1)
    assert torch.allclose(out[0, :4], want, atol=1e-6)
    garbage = x.clone()
    garbage[0, 4:] = 100.0
    assert torch.allclose(centred(garbage, mask)[0, :4], want, atol=1e-6)


def test_upper_levels_group_pooled_node_prototypes():
    """Level l+1 takes normalize(P_l nodes): the soft prototype of every level-l cluster."""
    model = tiny_model()
    seen = []
    model.levels[1].register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    nodes = F.normalize(torch.randn(2, 9, 16), dim=-1)
    out = model.group(nodes, torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool))
    assert torch.allclose(seen[0], F.normalize(out.assignments[0] @ nodes, dim=-1), atol=1e-6)


def test_assignments_are_not_uniform_at_initialisation():
    """kappa cos(centroid, centred node) logits: a fresh model already separates nodes (the
    original's c.m / sqrt(D) started near uniform and stayed there in our first demo run)."""
    model = tiny_model()
    nodes = F.normalize(torch.randn(1, 40, 16) * 0.2 + torch.randn(16), dim=-1)  # a narrow cone
    out = model.group(nodes, torch.randn(1, 40, 16), torch.ones(1, 40, dtype=torch.bool))
    assert out.assignments[0].max(1).values.mean() > 2.0 / out.assignments[0].shape[1]
    assert len(torch.unique(out.node_groups[0])) >= 3


def test_original_form_groups_cluster_features_against_the_encoder_memory():
    """grouping.form=original, as the original's _hierarchical_grouping: level 1 on the padded nodes with
    their mask, logits against the encoder memory (no keys); level l+1 on the level-l cluster features with
    no mask, at the mean position of each hard level-l group; P_{l+1} = C P_l. The four per-aspect
    fields (here all at our values) are ignored."""
    model = tiny_model(form="original")
    assert all(
        level.form == "original" and level.centroid_head.fc1.bias is None for level in model.levels
    )
    nodes = F.normalize(torch.randn(2, 9, 16), dim=-1)
    pos = torch.randn(2, 9, 16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    out = model.group(nodes, pos, mask)
    first = model.levels[0](nodes, pos, mask)
    assert torch.allclose(out.assignments[0], first.assignments, atol=1e-6)
    for lv in (1, 2):
        below = out.clusterings[lv - 1]
        upper_pos = group_positions(pos, out.node_groups[lv - 1], below.features.shape[1])
        want = model.levels[lv](below.features, upper_pos, None)
        assert torch.allclose(out.transitions[lv - 1], want.assignments, atol=1e-6)
        assert torch.allclose(
            out.assignments[lv], want.assignments @ out.assignments[lv - 1], atol=1e-6
        )
    ours = tiny_model()  # same seed, our form: different numbers
    assert not torch.allclose(
        ours.group(nodes, pos, mask).assignments[0], out.assignments[0], atol=1e-3
    )
