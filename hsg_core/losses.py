"""HSG's losses as pure functions (float32 inside, log-sum-exp for every exponential).

Notation: kappa = concentration, e_i unit pixel embeddings, mu_s unit segment prototypes,
S [M, K] soft node-to-cluster assignments, A [M, M] a 0/1 node graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NEG = -1e30  # log of an excluded term


def _full(x: Tensor) -> Tensor:
    """Half precision -> float32 (AMP-safe); float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def segsort_loss(
    pixel_embeddings: Tensor,
    pixel_labels: Tensor,
    pixel_segments: Tensor,
    prototypes: Tensor,
    prototype_labels: Tensor,
    concentration: float = 16.0,
    chunk: int = 4096,
) -> Tensor:
    """SegSort+ pixel-to-segment contrast.

    For pixel i with own segment o_i: a_s = exp(kappa e_i . mu_s);
    P_i = {s != o_i : y_s = y_i} (or {o_i} when that set is empty), N_i = {s : y_s != y_i};
    loss_i = -log( sum_{P_i} a_s / (sum_{P_i} a_s + sum_{N_i} a_s) ), mean over pixels.
    A pixel with no negatives has loss 0.

    Args:
        pixel_embeddings: [N, D] unit.  pixel_labels: [N] int64.  pixel_segments: [N] index of o_i.
        prototypes: [S, D] unit.  prototype_labels: [S] int64.
    """
    losses = []
    for start in range(0, pixel_embeddings.shape[0], chunk):
        sl = slice(start, start + chunk)
        losses.append(
            _segsort_chunk(
                _full(pixel_embeddings[sl]),
                pixel_labels[sl],
                pixel_segments[sl],
                _full(prototypes),
                prototype_labels,
                concentration,
            )
        )
    if not losses:
        return prototypes.sum() * 0.0
    return torch.cat(losses).mean()


def _segsort_chunk(
    emb: Tensor, labels: Tensor, own: Tensor, protos: Tensor, proto_labels: Tensor, kappa: float
) -> Tensor:
    logits = kappa * emb @ protos.t()  # [n, S]
    same = labels[:, None] == proto_labels[None, :]
    rows = torch.arange(emb.shape[0], device=emb.device)
    positive = same.clone()
    positive[rows, own] = False
    no_positive = ~positive.any(1)
    positive[rows[no_positive], own[no_positive]] = True
    log_pos = torch.logsumexp(logits.masked_fill(~positive, NEG), dim=1)
    log_all = torch.logsumexp(logits.masked_fill(~(positive | ~same), NEG), dim=1)
    has_negative = (~same).any(1)
    return torch.where(has_negative, log_all - log_pos, torch.zeros_like(log_pos))


def centroid_contrast_loss(centroids: Tensor, concentration: float = 16.0) -> Tensor:
    """Centroid contrast (each centroid is its own only positive: a repulsion).

    c_j = normalize(centroids_j); L = mean_j log(1 + sum_{j' != j} exp(kappa (c_j.c_j' - c_j.c_j))).
    centroids: [M, D].
    """
    c = F.normalize(_full(centroids), dim=1)
    sim = c @ c.t()
    diff = concentration * (sim - sim.diagonal()[:, None])
    diff = diff.masked_fill(torch.eye(c.shape[0], dtype=torch.bool, device=c.device), NEG)
    zero = diff.new_zeros(c.shape[0], 1)  # the "1 +" inside the log
    return torch.logsumexp(torch.cat([zero, diff], dim=1), dim=1).mean()


def modularity_loss(assignments: Tensor, adjacency: Tensor, node_mask: Tensor) -> Tensor:
    """Negative DMoN modularity with the paper's normalisation, over real nodes only.

    Per graph: d = A 1, m2 = sum_i d_i (= 2|E| for a symmetric graph),
    Q = Tr(S^T A S - S^T d d^T S / m2) / m2 and loss = -Q; mean over graphs.
    Two disjoint equal cliques split perfectly give Q = 0.5 (loss -0.5). The original added a
    constant 1 and divided by 2 m2 (spec §8.3); we do neither.

    Args:
        assignments: [B, M, K] soft (rows sum to 1 on real nodes).  adjacency: [B, M, M] 0/1.
        node_mask: [B, M] bool, False = padding.
    """
    s = _full(assignments)
    w = node_mask.to(s.dtype)
    s = s * w[..., None]
    a = adjacency.to(s.dtype) * w[:, :, None] * w[:, None, :]
    degrees = a.sum(2)  # [B, M]
    m2 = degrees.sum(1).clamp_min(1e-12)  # [B]
    within = torch.einsum("bik,bij,bjk->b", s, a, s)
    expected = (torch.einsum("bi,bik->bk", degrees, s) ** 2).sum(1) / m2
    return (-(within - expected) / m2).mean()


def collapse_loss(assignments: Tensor, node_mask: Tensor) -> Tensor:
    """DMoN collapse regulariser over real nodes: sqrt(K) / n * || sum_i S_i ||_2 - 1, mean over graphs.

    0 for a perfectly balanced assignment, sqrt(K) - 1 when every node sits in one cluster.
    assignments [B, M, K], node_mask [B, M].
    """
    s = _full(assignments)
    w = node_mask.to(s.dtype)
    n = w.sum(1).clamp_min(1.0)
    sizes = (s * w[..., None]).sum(1)  # [B, K]
    k = assignments.shape[2]
    return (math.sqrt(k) / n * sizes.norm(dim=1) - 1.0).mean()


@torch.no_grad()
def knn_adjacency(
    node_embeddings: Tensor, node_mask: Tensor, node_groups: Tensor, k: int
) -> Tensor:
    """Binary kNN graph per image: each node links to its top-k most similar nodes in every group.

    Affinity exp(5 x_i . x_j) ranks neighbours (monotone in x_i . x_j); self and padding are
    excluded; for every group g (a view), node i keeps min(k, |g \\ {i}|) neighbours of g.

    Args:
        node_embeddings: [B, M, D] unit.  node_mask: [B, M].  node_groups: [B, M] int64.
    Returns:
        [B, M, M] float 0/1 (asymmetric), zero rows/cols for padding, zero diagonal.
    """
    b, m, _ = node_embeddings.shape
    sim = node_embeddings.float() @ node_embeddings.float().transpose(1, 2)
    valid_pair = node_mask[:, :, None] & node_mask[:, None, :]
    valid_pair &= ~torch.eye(m, dtype=torch.bool, device=sim.device)
    adjacency = torch.zeros_like(sim)
    for g in torch.unique(node_groups[node_mask]):
        in_group = valid_pair & (node_groups == g)[:, None, :]
        scores = sim.masked_fill(~in_group, float("-inf"))
        top = scores.topk(min(k, m), dim=2)
        keep = torch.isfinite(top.values)
        adjacency.scatter_add_(2, top.indices, keep.float())
    return (adjacency > 0).float()


@dataclass
class LossTerms:
    """total: weighted sum; terms: every named term (with graph)."""

    total: Tensor
    terms: dict[str, Tensor]


def combine_losses(terms: dict[str, Tensor], weights: dict[str, float]) -> LossTerms:
    """total = sum_name weights[name] * terms[name]; a term without a weight is an error."""
    missing = sorted(set(terms) - set(weights))
    if missing:
        raise KeyError(f"no weight for loss term(s) {', '.join(missing)}")
    total = sum(weights[name] * value for name, value in terms.items())
    return LossTerms(total, terms)
