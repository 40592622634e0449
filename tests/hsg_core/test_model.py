import torch
import torch.nn.functional as F

from hsg_core.config import load_config
from hsg_core.model import HSG, group_positions


def tiny_model(levels=(5, 3, 2)):
    torch.manual_seed(0)
    cfg = load_config("tiny", [f"grouping.level_clusters={list(levels)}", "grouping.dropout=0.0"])
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
