"""Clustering transformer: group N node tokens into K clusters (one level of the hierarchy).

A DETR-style encoder-decoder (post-norm, every norm a `MaskedBatchNorm` over valid tokens):
the encoder contextualises the nodes, K learned queries (query positions, and added to the
decoder input, which is one target vector made from the mean and std of the valid encoder
tokens) attend to them, and two heads give, per cluster, a centroid c_k and a feature f_k.
Assignment logits are kappa cos(c_k, key_i), where the keys are the encoder memory (the original,
which used c_k . m_i / sqrt(D)) or vectors the caller passes (HSG passes the centred nodes).

`form="original"` is the original's transformer exactly (spec §2, TransformerClustering), init
included: queries N(0, 1) (an nn.Embedding, never xavier-initialised), xavier only for the matrices of
the encoder, decoder and target MLP (FFN biases equal across the layers of a stack: the original's
layers are deep copies of one), heads ReLU -> Linear without bias (torch's default init) -> BN,
target MLP Linear(2D, ffn_dim) -> BN -> ReLU -> Linear(ffn_dim, D) on [mean; std] with
std = sqrt(sum (m - mean)^2 / (n + 1)) when a padding mask is given and torch's unbiased std (n - 1)
when not, decoder input = that target only (queries only as query positions), logits
c_k . m_i / sqrt(D) against the encoder memory, clusters re-ordered by their largest logit (the
original's topk). Padding stays ours in both forms: padded nodes never enter BatchNorm statistics,
attention, softmax rows or the target statistics (the original let them in; spec §8.4).

Shapes: B images, M nodes, K clusters, D model dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import TRANSFORMER_FORMS
from .norm import MaskedBatchNorm


class PositionEmbeddingLearned(nn.Module):
    """Learned [col; row] embedding of a feature-grid cell: D/2 dims each, table cells a side."""

    def __init__(self, dim: int, table: int = 50) -> None:
        super().__init__()
        self.table = table
        self.row = nn.Embedding(table, dim // 2)
        self.col = nn.Embedding(table, dim - dim // 2)
        nn.init.uniform_(self.row.weight)
        nn.init.uniform_(self.col.weight)

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        """rows, cols: integer cell indices [...] (clamped to the table) -> [..., D]."""
        rows = rows.clamp(0, self.table - 1)
        cols = cols.clamp(0, self.table - 1)
        return torch.cat([self.col(cols), self.row(rows)], dim=-1)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )
        self.norm1, self.norm2 = MaskedBatchNorm(dim), MaskedBatchNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        """x, pos [B, M, D]; mask [B, M] True = valid node."""
        q = x + pos
        attended = self.attn(q, q, x, key_padding_mask=~mask, need_weights=False)[0]
        x = self.norm1(x + self.drop1(attended), mask)
        return self.norm2(x + self.drop2(self.ffn(x)), mask)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim)
        )
        self.norms = nn.ModuleList([MaskedBatchNorm(dim) for _ in range(3)])
        self.drops = nn.ModuleList([nn.Dropout(dropout) for _ in range(3)])

    def forward(
        self, tgt: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, mask: Tensor
    ) -> Tensor:
        """tgt, query_pos [B, K, D]; memory, pos [B, M, D]; mask [B, M]."""
        q = tgt + query_pos
        tgt = self.norms[0](tgt + self.drops[0](self.self_attn(q, q, tgt, need_weights=False)[0]))
        attended = self.cross_attn(
            tgt + query_pos, memory + pos, memory, key_padding_mask=~mask, need_weights=False
        )[0]
        tgt = self.norms[1](tgt + self.drops[1](attended))
        return self.norms[2](tgt + self.drops[2](self.ffn(tgt)))


class ProjectionHead(nn.Module):
    """Linear -> BN -> ReLU -> Linear (the target MLP, hidden width `hidden`, default dim_in), or
    ReLU -> Linear (with or without `bias`) -> BN (the output heads)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        target: bool,
        hidden: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.target = target
        if target:
            hidden = dim_in if hidden is None else hidden
            self.fc1 = nn.Linear(dim_in, hidden, bias=False)
            self.norm = MaskedBatchNorm(hidden)
            self.fc2 = nn.Linear(hidden, dim_out)
        else:
            self.fc1 = nn.Linear(dim_in, dim_out, bias=bias)
            self.norm = MaskedBatchNorm(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        if self.target:
            return self.fc2(F.relu(self.norm(self.fc1(x))))
        return self.norm(self.fc1(F.relu(x)))


@dataclass
class Clustering:
    """Output of one clustering transformer.

    logits: [B, K, M] assignment logits (padded node columns are 0).
    assignments: [B, K, M] softmax over K (padded columns 0).
    centroids: [B, K, D] cluster centroids (for the centroid contrast).
    features: [B, K, D] cluster tokens (the nodes of the next level).
    """

    logits: Tensor
    assignments: Tensor
    centroids: Tensor
    features: Tensor


def masked_mean_std(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std over valid nodes only. x [B, M, D], mask [B, M] -> [B, D], [B, D]."""
    w = mask.to(x.dtype)[..., None]
    count = w.sum(1).clamp_min(1.0)
    mean = (x * w).sum(1) / count
    var = (((x - mean[:, None]) ** 2) * w).sum(1) / count
    return mean, torch.sqrt(var + 1e-6)


def original_mean_std(x: Tensor, mask: Tensor, unbiased: bool) -> tuple[Tensor, Tensor]:
    """The original's target statistics over valid nodes. x [B, M, D], mask [B, M] -> [B, D], [B, D].

    std = sqrt(sum_i (x_i - mean)^2 / (n + 1)) (the original with a padding mask: its level 1) or
    / (n - 1) (`unbiased`, torch.std: the original without a mask, its upper levels). Variances below
    1e-12 are clamped so that the square root has a finite gradient; n = 1 with `unbiased` gives 0
    (torch.std gives NaN).
    """
    w = mask.to(x.dtype)[..., None]
    count = w.sum(1)
    mean = (x * w).sum(1) / count.clamp_min(1.0)
    squares = (((x - mean[:, None]) ** 2) * w).sum(1)
    denominator = (count - 1.0 if unbiased else count + 1.0).clamp_min(1.0)
    return mean, (squares / denominator).clamp_min(1e-12).sqrt()


class ClusteringTransformer(nn.Module):
    """Nodes [B, M, D] (+ positions, mask) -> K soft clusters (see module docstring).

    `form` "hsg_explorer" (ours, shaped by the arguments below) or "original" (see the module docstring;
    `concentration` and `query_in_target` are then ignored and `keys` must not be passed).
    Assignment logits are kappa * cos(c_k, key_i) (our choice, `concentration` > 0) or the
    original's c_k . m_i / sqrt(D) (`concentration` = 0). With those logits the network can shrink
    every logit to 0: the uniform soft assignment then scores a perfect 0 on DMoN's collapse term and
    sits at a stationary point of modularity (B 1 = 0). Our first demo run settled there, but with
    our xavier init (queries ~8x smaller than the original's N(0, 1)); on a synthetic task the
    original form collapsed with our init and not with its own (issue 15, docs/fidelity.md).
    `query_in_target` adds the query embedding to the decoder input: the original's input is the
    same vector for all K queries, so self-attention values are identical and only cross-attention
    weights can tell the clusters apart (with dropout on, our centroids then differed mostly by
    dropout noise).
    """

    def assignment_logits(self, centroids: Tensor, memory: Tensor) -> Tensor:
        """centroids [B, K, D], memory [B, M, D] -> logits [B, K, M]."""
        if self.concentration > 0 and self.form != "original":
            return (
                self.concentration
                * F.normalize(centroids, dim=-1)
                @ F.normalize(memory, dim=-1).transpose(1, 2)
            )
        return centroids @ memory.transpose(1, 2) / math.sqrt(self.dim)

    def __init__(
        self,
        num_clusters: int,
        dim: int,
        *,
        heads: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        ffn_dim: int = 256,
        dropout: float = 0.1,
        concentration: float = 16.0,
        query_in_target: bool = True,
        form: str = "hsg_explorer",
    ) -> None:
        super().__init__()
        if form not in TRANSFORMER_FORMS:
            raise ValueError(
                f"unknown clustering transformer form {form!r}; forms: {', '.join(TRANSFORMER_FORMS)}"
            )
        original = form == "original"
        self.num_clusters, self.dim, self.concentration, self.form = (
            num_clusters,
            dim,
            concentration,
            form,
        )
        self.query_in_target = query_in_target and not original
        self.encoder = nn.ModuleList(
            [EncoderLayer(dim, heads, ffn_dim, dropout) for _ in range(encoder_layers)]
        )
        self.decoder = nn.ModuleList(
            [DecoderLayer(dim, heads, ffn_dim, dropout) for _ in range(decoder_layers)]
        )
        self.decoder_norm = MaskedBatchNorm(dim)
        self.queries = nn.Embedding(num_clusters, dim)
        self.target = ProjectionHead(
            2 * dim, dim, target=True, hidden=ffn_dim if original else None
        )
        self.centroid_head = ProjectionHead(dim, dim, target=False, bias=not original)
        self.feature_head = ProjectionHead(dim, dim, target=False, bias=not original)
        if original:
            self._init_as_original()
        else:
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    @torch.no_grad()
    def _init_as_original(self) -> None:
        """Xavier-uniform for the matrices of the encoder, decoder and target MLP only (the original's
        DETR Transformer reset); each stack's FFN biases copied from its first layer (the original's
        layers are deep copies of one layer, and xavier leaves vectors alone); queries keep
        nn.Embedding's N(0, 1) and the heads torch's default Linear init (both outside that reset)."""
        for module in (self.encoder, self.decoder, self.target):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for stack in (self.encoder, self.decoder):
            for layer in stack[1:]:
                for name in ("ffn.0.bias", "ffn.3.bias"):
                    layer.get_parameter(name).copy_(stack[0].get_parameter(name))

    def forward(
        self,
        nodes: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        keys: Tensor | None = None,
    ) -> Clustering:
        """nodes, positions [B, M, D]; mask [B, M] bool (True = real node; None = all, and for the
        original form: no padding mask, so its target std is torch's unbiased one).

        keys [B, M, D]: what the centroids are compared with for the assignment logits (default:
        the encoder memory, as the original; the original form takes no keys).
        """
        original = self.form == "original"
        if original and keys is not None:
            raise ValueError(
                "the original clustering transformer compares centroids with its encoder memory: "
                "pass no keys"
            )
        b, m, _ = nodes.shape
        unmasked = mask is None
        mask = torch.ones(b, m, dtype=torch.bool, device=nodes.device) if mask is None else mask
        memory = nodes
        for layer in self.encoder:
            memory = layer(memory, positions, mask)
        mean, std = (
            original_mean_std(memory, mask, unmasked) if original else masked_mean_std(memory, mask)
        )
        tgt = self.target(torch.cat([mean, std], dim=1))[:, None].expand(
            b, self.num_clusters, self.dim
        )
        query_pos = self.queries.weight[None].expand(b, -1, -1)
        if self.query_in_target:
            tgt = tgt + query_pos
        for layer in self.decoder:
            tgt = layer(tgt, query_pos, memory, positions, mask)
        tgt = self.decoder_norm(tgt)
        centroids, features = self.centroid_head(tgt), self.feature_head(tgt)
        keys = memory if keys is None else keys
        logits = self.assignment_logits(centroids, keys)  # [B, K, M]
        if (
            original
        ):  # clusters sorted by their largest logit over the real nodes (the original's topk)
            largest = logits.masked_fill(~mask[:, None, :], float("-inf")).amax(2)  # [B, K]
            order = largest.argsort(dim=1, descending=True, stable=True)
            centroids, features = (
                t.gather(1, order[..., None].expand_as(t)) for t in (centroids, features)
            )
            logits = logits.gather(1, order[..., None].expand_as(logits))
        logits = logits.masked_fill(~mask[:, None, :], 0.0)  # never -inf: no NaN in backward
        assignments = torch.softmax(logits, dim=1).masked_fill(~mask[:, None, :], 0.0)
        return Clustering(logits, assignments, centroids, features)
