import math

import pytest
import torch
import torch.nn.functional as F

from hsg_core.losses import (
    centroid_contrast_loss,
    collapse_loss,
    combine_losses,
    knn_adjacency,
    modularity_loss,
    segsort_loss,
)


def unit(*angles):
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)


def test_segsort_against_hand_computation():
    kappa = 2.0
    protos = unit(0.0, 0.5, 2.0, 3.0)
    proto_labels = torch.tensor([7, 7, 8, 9])
    pixels = unit(0.1, 2.1, 2.9)
    labels = torch.tensor([7, 8, 9])
    own = torch.tensor([0, 2, 3])
    a = torch.exp(kappa * pixels @ protos.t()).tolist()
    # pixel 0: other segment of its label (1) is the positive, own (0) excluded; negatives 2, 3
    l0 = -math.log(a[0][1] / (a[0][1] + a[0][2] + a[0][3]))
    # pixels 1 and 2: no other segment shares the label -> own segment is the positive
    l1 = -math.log(a[1][2] / (a[1][2] + a[1][0] + a[1][1] + a[1][3]))
    l2 = -math.log(a[2][3] / (a[2][3] + a[2][0] + a[2][1] + a[2][2]))
    got = segsort_loss(pixels, labels, own, protos, proto_labels, kappa)
    assert got.item() == pytest.approx((l0 + l1 + l2) / 3, rel=1e-6)


def test_segsort_chunked_equals_whole_and_stable_at_kappa_16():
    torch.manual_seed(0)
    pixels = F.normalize(torch.randn(50, 8), dim=1).requires_grad_()
    protos = F.normalize(torch.randn(12, 8), dim=1)
    labels, own = torch.randint(0, 4, (50,)), torch.randint(0, 12, (50,))
    proto_labels = torch.randint(0, 4, (12,))
    whole = segsort_loss(pixels, labels, own, protos, proto_labels, 16.0)
    chunked = segsort_loss(pixels, labels, own, protos, proto_labels, 16.0, chunk=7)
    assert torch.allclose(whole, chunked)
    big = segsort_loss(pixels.half().float() * 1.0, labels, own, protos, proto_labels, 1000.0)
    assert torch.isfinite(big)
    whole.backward()
    assert torch.isfinite(pixels.grad).all()


def test_segsort_gradcheck():
    torch.manual_seed(1)
    pixels = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    protos = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels, own, proto_labels = (
        torch.tensor([0, 1, 1, 2]),
        torch.tensor([0, 1, 2, 4]),
        torch.tensor([0, 1, 1, 0, 2]),
    )

    def fn(p, q):
        return segsort_loss(
            F.normalize(p, dim=1), labels, own, F.normalize(q, dim=1), proto_labels, 3.0
        )

    assert torch.autograd.gradcheck(fn, (pixels, protos))


def test_centroid_contrast_against_loop():
    torch.manual_seed(2)
    c = torch.randn(5, 4)
    u = F.normalize(c, dim=1)
    want = 0.0
    for j in range(5):
        s = sum(math.exp(16 * (u[j] @ u[i] - u[j] @ u[j]).item()) for i in range(5) if i != j)
        want += math.log(1 + s)
    assert centroid_contrast_loss(c).item() == pytest.approx(want / 5, rel=1e-5)


def two_cliques(m=6):
    a = torch.zeros(m, m)
    h = m // 2
    a[:h, :h] = 1
    a[h:, h:] = 1
    a.fill_diagonal_(0)
    s = torch.zeros(m, 2)
    s[:h, 0] = 1
    s[h:, 1] = 1
    return a, s


def test_modularity_two_cliques_is_half():
    a, s = two_cliques()
    loss = modularity_loss(s[None], a[None], torch.ones(1, 6, dtype=torch.bool))
    assert loss.item() == pytest.approx(-0.5)


def test_modularity_matches_textbook_loop_and_ignores_padding():
    torch.manual_seed(3)
    m, k = 7, 3
    a = (torch.rand(m, m) < 0.4).float()
    a = ((a + a.t()) > 0).float()
    a.fill_diagonal_(0)
    cluster = torch.randint(0, k, (m,))
    s = F.one_hot(cluster, k).float()
    d = a.sum(1)
    two_m = d.sum()
    q = sum(
        (a[i, j] - d[i] * d[j] / two_m).item()
        for i in range(m)
        for j in range(m)
        if cluster[i] == cluster[j]
    )
    q /= two_m.item()
    mask = torch.ones(1, m, dtype=torch.bool)
    assert modularity_loss(s[None], a[None], mask).item() == pytest.approx(-q, rel=1e-5)
    pad_a = torch.ones(m + 3, m + 3)
    pad_a[:m, :m] = a
    pad_s = torch.rand(m + 3, k)
    pad_s[:m] = s
    pad_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], 1)
    assert modularity_loss(pad_s[None], pad_a[None], pad_mask).item() == pytest.approx(-q, rel=1e-5)


def test_modularity_gradcheck():
    a, _ = two_cliques(4)
    logits = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda x: modularity_loss(torch.softmax(x, -1), a[None].double(), mask).double(), (logits,)
    )


def test_collapse_balanced_and_collapsed():
    mask = torch.ones(1, 4, dtype=torch.bool)
    balanced = torch.eye(4)[None]
    collapsed = torch.zeros(1, 4, 4)
    collapsed[..., 0] = 1
    assert collapse_loss(balanced, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert collapse_loss(collapsed, mask).item() == pytest.approx(math.sqrt(4) - 1)
    padded = torch.cat([balanced, torch.ones(1, 2, 4)], 1)
    assert collapse_loss(
        padded, torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    ).item() == pytest.approx(0.0, abs=1e-6)


def test_knn_adjacency_against_loop():
    torch.manual_seed(4)
    x = F.normalize(torch.randn(2, 7, 3), dim=-1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    groups = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1, 0]])
    got = knn_adjacency(x, mask, groups, 2)
    for b in range(2):
        for i in range(7):
            want = torch.zeros(7)
            if mask[b, i]:
                for g in (0, 1):
                    cands = [j for j in range(7) if j != i and mask[b, j] and groups[b, j] == g]
                    cands.sort(key=lambda j: -(x[b, i] @ x[b, j]).item())
                    want[cands[:2]] = 1
            assert torch.equal(got[b, i], want), (b, i)
    assert (got[1, :, 5:] == 0).all() and (got.diagonal(dim1=1, dim2=2) == 0).all()


def test_combine_losses():
    terms = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert combine_losses(terms, {"a": 0.5, "b": 2.0, "c": 9.0}).total.item() == 7.0
    with pytest.raises(KeyError, match="no weight for loss term"):
        combine_losses(terms, {"a": 1.0})
