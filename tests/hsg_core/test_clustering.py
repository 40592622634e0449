import numpy as np
import pytest
import torch

from hsg_core.clustering import ClusteringTransformer, masked_mean_std, original_mean_std
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
    assert torch.allclose(mean, torch.tensor([[2.0]])) and torch.allclose(
        std, torch.tensor([[1.0]]), atol=1e-4
    )


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


@pytest.mark.parametrize("form", ["hsg_explorer", "original"])
def test_padding_changes_nothing_for_real_nodes(form):
    """Padded nodes never enter BN statistics, attention, softmax rows or the target mean/std (both forms)."""
    torch.manual_seed(1)
    model = ClusteringTransformer(4, 16, heads=2, ffn_dim=32, dropout=0.0, form=form).train()
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
        model = ClusteringTransformer(
            5, 16, heads=2, ffn_dim=32, dropout=0.0, query_in_target=in_target
        ).eval()
        c = model(nodes, pos).centroids
        spread[in_target] = (c - c[:, :1]).abs().max().item()
    assert spread[True] > 0.1 and spread[False] < 1e-5, spread


def test_assignment_logits_kappa_cosine_or_original_dot():
    cent, mem = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    kappa = ClusteringTransformer(3, 8, heads=2, ffn_dim=16, concentration=16.0)
    want = 16.0 * torch.nn.functional.cosine_similarity(cent[:, :, None], mem[:, None], dim=-1)
    assert torch.allclose(kappa.assignment_logits(cent, mem), want, atol=1e-5)
    original = ClusteringTransformer(3, 8, heads=2, ffn_dim=16, concentration=0.0)
    assert torch.allclose(
        original.assignment_logits(cent, mem), cent @ mem.transpose(1, 2) / 8**0.5
    )


# ---- the original's clustering transformer (grouping.form="original"), checked against numpy ----------------
# The reference below is written from the original's formulas (spec §2, TransformerClustering on a DETR
# post-norm Transformer whose LayerNorms are BatchNorm1d over tokens x batch), in float64 numpy, on a tiny
# fixed input: B = 2 images, M = 3 nodes, K = 2 queries, D = 4, 2 heads, FFN 6, 2 encoder + 2 decoder layers,
# every parameter set to fixed values (so no init of the module under test is involved).


def _bn(x: np.ndarray, p: dict, name: str) -> np.ndarray:
    """Training-mode BatchNorm over all tokens: x [..., C] (biased variance, eps 1e-5)."""
    flat = x.reshape(-1, x.shape[-1])
    out = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5) * p[name + ".weight"] + p[
        name + ".bias"
    ]
    return out.reshape(x.shape)


def _attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, p: dict, name: str, heads: int
) -> np.ndarray:
    """Multi-head attention: q [B, L, D], k, v [B, S, D] -> [B, L, D]."""
    d = q.shape[-1]
    w, b = p[name + ".in_proj_weight"], p[name + ".in_proj_bias"]
    qs, ks, vs = (
        x @ w[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d] for i, x in enumerate((q, k, v))
    )
    split = lambda x: x.reshape(x.shape[0], x.shape[1], heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
    scores = split(qs) @ split(ks).transpose(0, 1, 3, 2) / np.sqrt(d // heads)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ split(vs)).transpose(0, 2, 1, 3).reshape(q.shape)
    return out @ p[name + ".out_proj.weight"].T + p[name + ".out_proj.bias"]


def _ffn(x: np.ndarray, p: dict, name: str) -> np.ndarray:
    hidden = np.maximum(x @ p[name + ".0.weight"].T + p[name + ".0.bias"], 0.0)
    return hidden @ p[name + ".3.weight"].T + p[name + ".3.bias"]


def original_reference(
    p: dict, src: np.ndarray, pos: np.ndarray, masked: bool, heads: int = 2, layers: int = 2
) -> dict[str, np.ndarray]:
    """The original's forward: src, pos [B, M, D] -> centroids, features [B, K, D], logits, P [B, K, M].

    masked: a padding mask was passed (no padding in it): target std over n + 1; else torch.std (n - 1).
    """
    b, m, d = src.shape
    memory = src
    for i in range(layers):  # encoder: q = k = x + pos, v = x; post-norm
        e = f"encoder.{i}"
        memory = _bn(
            memory + _attention(memory + pos, memory + pos, memory, p, e + ".attn", heads),
            p,
            e + ".norm1",
        )
        memory = _bn(memory + _ffn(memory, p, e + ".ffn"), p, e + ".norm2")
    mean = memory.mean(1)
    squares = ((memory - mean[:, None]) ** 2).sum(1)
    std = np.sqrt(squares / (m + 1 if masked else m - 1))
    hidden = (
        np.concatenate([mean, std], 1) @ p["target.fc1.weight"].T
    )  # Linear(2D, ffn) without bias
    hidden = np.maximum(_bn(hidden, p, "target.norm"), 0.0)
    target = hidden @ p["target.fc2.weight"].T + p["target.fc2.bias"]  # [B, D]
    queries = np.broadcast_to(
        p["queries.weight"], (b,) + p["queries.weight"].shape
    )  # query positions only
    tgt = np.repeat(
        target[:, None], queries.shape[1], axis=1
    )  # the same decoder input for every query
    for i in range(layers):
        e = f"decoder.{i}"
        tgt = _bn(
            tgt + _attention(tgt + queries, tgt + queries, tgt, p, e + ".self_attn", heads),
            p,
            e + ".norms.0",
        )
        tgt = _bn(
            tgt + _attention(tgt + queries, memory + pos, memory, p, e + ".cross_attn", heads),
            p,
            e + ".norms.1",
        )
        tgt = _bn(tgt + _ffn(tgt, p, e + ".ffn"), p, e + ".norms.2")
    tgt = _bn(tgt, p, "decoder_norm")
    centroids = _bn(np.maximum(tgt, 0.0) @ p["centroid_head.fc1.weight"].T, p, "centroid_head.norm")
    features = _bn(np.maximum(tgt, 0.0) @ p["feature_head.fc1.weight"].T, p, "feature_head.norm")
    logits = centroids @ memory.transpose(0, 2, 1) / np.sqrt(d)  # c . m / sqrt(D)
    order = np.argsort(
        -logits.max(2), axis=1, kind="stable"
    )  # topk(K) of each cluster's largest logit
    take = lambda x: np.take_along_axis(x, order[..., None], axis=1)  # noqa: E731
    centroids, features, logits = take(centroids), take(features), take(logits)
    soft = np.exp(logits - logits.max(1, keepdims=True))
    return {
        "centroids": centroids,
        "features": features,
        "logits": logits,
        "assignments": soft / soft.sum(1, keepdims=True),
        "order": order,
    }


def fixed_original_transformer() -> tuple[
    ClusteringTransformer, dict[str, np.ndarray], np.ndarray, np.ndarray
]:
    """The module under test with every parameter set to fixed values (2 decimals), and the input."""
    model = (
        ClusteringTransformer(
            2,
            4,
            heads=2,
            encoder_layers=2,
            decoder_layers=2,
            ffn_dim=6,
            dropout=0.0,
            form="original",
        )
        .double()
        .train()
    )
    rng = np.random.default_rng(3)
    params = {}
    for name, param in sorted(model.named_parameters()):
        params[name] = np.round(rng.uniform(-1.0, 1.0, size=tuple(param.shape)), 2)
        with torch.no_grad():
            param.copy_(torch.from_numpy(params[name]))
    src = np.round(rng.uniform(-1.0, 1.0, size=(2, 3, 4)), 2)
    pos = np.round(rng.uniform(0.0, 1.0, size=(2, 3, 4)), 2)
    return model, params, src, pos


# The reference's outputs, written out (numpy above, float64): [B, K, M] assignments and logits.
MASKED_ASSIGNMENTS = [
    [[0.63308000, 0.64362746, 0.57117680], [0.36692000, 0.35637254, 0.42882320]],
    [[0.61210751, 0.66193413, 0.70313795], [0.38789249, 0.33806587, 0.29686205]],
]
MASKED_LOGITS = [
    [[-0.37041957, -0.64495723, 0.34100753], [-0.91587254, -1.23610069, 0.05435345]],
    [[0.53283917, 1.31099305, 0.22229918], [0.07665944, 0.63906774, -0.63998636]],
]
UNMASKED_ASSIGNMENTS = [
    [[0.76447114, 0.79006391, 0.56659667], [0.23552886, 0.20993609, 0.43340333]],
    [[0.53973718, 0.50006204, 0.60159245], [0.46026282, 0.49993796, 0.39840755]],
]


def test_original_form_equals_the_original_formulas_on_a_fixed_input():
    """Every output of form="original" equals the numpy reference (1e-10), and the reference equals the
    numbers written above; the cluster re-ordering by largest logit is exercised (orders [1, 0] and [0, 1])."""
    model, params, src, pos = fixed_original_transformer()
    cases = [
        (True, MASKED_ASSIGNMENTS, [[1, 0], [1, 0]]),
        (False, UNMASKED_ASSIGNMENTS, [[1, 0], [0, 1]]),
    ]
    for masked, written, order in cases:
        ref = original_reference(params, src, pos, masked)
        assert ref["order"].tolist() == order
        assert np.allclose(ref["assignments"], written, atol=1e-8)
        if masked:
            assert np.allclose(ref["logits"], MASKED_LOGITS, atol=1e-8)
        mask = torch.ones(2, 3, dtype=torch.bool) if masked else None
        out = model(torch.from_numpy(src), torch.from_numpy(pos), mask)
        for key in ("centroids", "features", "logits", "assignments"):
            assert np.allclose(getattr(out, key).detach().numpy(), ref[key], atol=1e-10), (
                masked,
                key,
            )


def test_original_form_initialisation_statistics():
    """The original's init at its sizes (D = 128, K = 8, FFN 256): queries N(0, 1) (row norm ~ sqrt(D), about
    8x ours), heads bias-free with torch's default Linear init (std 1/sqrt(3D)), xavier matrices in the encoder,
    decoder and target MLP (std sqrt(2 / (fan_in + fan_out))), zero attention biases, FFN biases shared by the
    layers of a stack; target MLP Linear(2D, 256)."""
    torch.manual_seed(0)
    d, k = 128, 8
    original = ClusteringTransformer(k, d, heads=4, ffn_dim=256, form="original")
    ours = ClusteringTransformer(k, d, heads=4, ffn_dim=256)
    q = original.queries.weight
    assert abs(q.norm(dim=1).mean().item() - d**0.5) < 1.0 and abs(q.std().item() - 1.0) < 0.05
    assert (
        q.norm(dim=1).mean() > 6 * ours.queries.weight.norm(dim=1).mean()
    )  # xavier: sqrt(2D / (K + D)) ~ 1.4
    for head in (original.centroid_head, original.feature_head):
        assert head.fc1.bias is None
        w = head.fc1.weight
        assert abs(w.std().item() - (3 * d) ** -0.5) < 0.003 and w.abs().max() <= d**-0.5
    assert abs(ours.centroid_head.fc1.weight.std().item() - d**-0.5) < 0.003  # xavier, for contrast
    in_proj = original.encoder[0].attn.in_proj_weight  # [3D, D]: xavier fans D and 3D
    assert abs(in_proj.std().item() - (2 / (4 * d)) ** 0.5) < 0.002
    ffn_in = original.decoder[1].ffn[0].weight  # [256, D]
    assert abs(ffn_in.std().item() - (2 / (d + 256)) ** 0.5) < 0.002
    assert original.target.fc1.weight.shape == (256, 2 * d)
    assert abs(original.target.fc1.weight.std().item() - (2 / (2 * d + 256)) ** 0.5) < 0.002
    assert (original.encoder[0].attn.in_proj_bias == 0).all()
    assert (original.decoder[0].cross_attn.in_proj_bias == 0).all()
    for stack in (original.encoder, original.decoder):
        assert torch.equal(stack[0].ffn[0].bias, stack[1].ffn[0].bias) and torch.equal(
            stack[0].ffn[3].bias, stack[1].ffn[3].bias
        )
        assert stack[0].ffn[0].bias.abs().max() <= d**-0.5 and stack[0].ffn[0].bias.abs().max() > 0
    assert not torch.equal(ours.encoder[0].ffn[0].bias, ours.encoder[1].ffn[0].bias)


def test_original_form_takes_no_keys_and_unknown_forms_are_refused():
    model = ClusteringTransformer(2, 4, heads=2, ffn_dim=8, form="original")
    with pytest.raises(ValueError, match="no keys"):
        model(torch.randn(1, 3, 4), torch.randn(1, 3, 4), keys=torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="unknown clustering transformer form"):
        ClusteringTransformer(2, 4, heads=2, ffn_dim=8, form="detr")


def test_original_mean_std_divides_by_n_plus_1_or_n_minus_1():
    x = torch.tensor([[[1.0], [3.0], [5.0], [99.0]]])
    mask = torch.tensor([[True, True, True, False]])
    mean, std = original_mean_std(x, mask, unbiased=False)  # squares 4 + 0 + 4 = 8 over n + 1 = 4
    assert torch.allclose(mean, torch.tensor([[3.0]])) and torch.allclose(
        std, torch.tensor([[2.0**0.5]])
    )
    _, std = original_mean_std(x, mask, unbiased=True)  # over n - 1 = 2
    assert torch.allclose(std, torch.tensor([[2.0]]))
    _, ours = masked_mean_std(x, mask)  # ours: over n = 3
    assert torch.allclose(ours, torch.tensor([[(8 / 3) ** 0.5]]), atol=1e-5)
