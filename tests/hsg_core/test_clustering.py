import torch

from hsg_core.clustering import ClusteringTransformer, masked_mean_std
from hsg_core.norm import MaskedBatchNorm


def test_masked_batchnorm_ignores_padding():
    torch.manual_seed(0)
    bn = MaskedBatchNorm(4)
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    garbage = x.clone()
    garbage[~mask] = 1e3
    out_a, out_b = bn(x, mask), bn(garbage, mask)
    assert torch.allclose(out_a[mask], out_b[mask])
    valid = x[mask]
    want = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + bn.eps)
    assert torch.allclose(out_a[mask], want, atol=1e-5)
    assert bn.num_batches_tracked == 2


def test_masked_batchnorm_running_stats_from_valid_only():
    bn = MaskedBatchNorm(1, momentum=1.0)
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    bn(x, torch.tensor([[True, True, False]]))
    assert torch.allclose(bn.running_mean, torch.tensor([2.0]))
    assert torch.allclose(bn.running_var, torch.tensor([2.0]))  # unbiased var of (1, 3)
    bn.eval()
    assert torch.allclose(bn(torch.tensor([[[2.0]]])), torch.tensor([[[0.0]]]), atol=1e-6)


def test_masked_mean_std():
    x = torch.tensor([[[1.0], [3.0], [50.0]]])
    mean, std = masked_mean_std(x, torch.tensor([[True, True, False]]))
    assert torch.allclose(mean, torch.tensor([[2.0]])) and torch.allclose(std, torch.tensor([[1.0]]), atol=1e-4)


def test_transformer_shapes_and_softmax():
    torch.manual_seed(0)
    model = ClusteringTransformer(5, 16, heads=2, ffn_dim=32, dropout=0.0)
    nodes, pos = torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    out = model(nodes, pos, mask)
    assert out.assignments.shape == (3, 5, 7) and out.centroids.shape == (3, 5, 16)
    assert out.features.shape == (3, 5, 16)
    sums = out.assignments.sum(1)
    assert torch.allclose(sums[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert (out.assignments[1, :, 4:] == 0).all()


def test_padding_changes_nothing_for_real_nodes():
    """Padded nodes never enter BN statistics, attention, softmax rows or the target mean/std."""
    torch.manual_seed(1)
    model = ClusteringTransformer(4, 16, heads=2, ffn_dim=32, dropout=0.0).train()
    nodes, pos = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    small = model(nodes, pos, mask)
    padded_nodes = torch.cat([nodes, 50 * torch.randn(2, 3, 16)], dim=1)
    padded_pos = torch.cat([pos, 50 * torch.randn(2, 3, 16)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    big = model(padded_nodes, padded_pos, padded_mask)
    assert torch.allclose(big.assignments[:, :, :6], small.assignments, atol=1e-5)
    assert torch.allclose(big.centroids, small.centroids, atol=1e-4)
    big.assignments[:, :, :6].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_queries_in_the_target_break_the_symmetry_of_identical_nodes():
    """All nodes equal: every decoder value is the same, so only query_in_target (our fix) lets
    the K centroids differ; the original's target-only decoder gives K identical centroids.
    (Eval mode: in training mode BatchNorm over identical tokens amplifies rounding noise.)"""
    torch.manual_seed(0)
    nodes = torch.randn(1, 1, 16).expand(2, 7, 16)
    pos = torch.zeros(2, 7, 16)
    spread = {}
    for in_target in (True, False):
        model = ClusteringTransformer(5, 16, heads=2, ffn_dim=32, dropout=0.0, query_in_target=in_target).eval()
        c = model(nodes, pos).centroids
        spread[in_target] = (c - c[:, :1]).abs().max().item()
    assert spread[True] > 0.1 and spread[False] < 1e-5, spread


def test_assignment_logits_kappa_cosine_or_original_dot():
    cent, mem = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    kappa = ClusteringTransformer(3, 8, heads=2, ffn_dim=16, concentration=16.0)
    want = 16.0 * torch.nn.functional.cosine_similarity(cent[:, :, None], mem[:, None], dim=-1)
    assert torch.allclose(kappa.assignment_logits(cent, mem), want, atol=1e-5)
    original = ClusteringTransformer(3, 8, heads=2, ffn_dim=16, concentration=0.0)
    assert torch.allclose(original.assignment_logits(cent, mem), cent @ mem.transpose(1, 2) / 8 ** 0.5)
