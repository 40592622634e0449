"""HSG: pixel-embedding network + clustering transformers for every hierarchy level.

`HSG.embed` maps images to unit pixel embeddings; `HSG.group` turns level-0 nodes (segments)
into the levels above: P_1 = softmax(transformer_1(nodes)), and for l >= 1 a transformer over
the level-l clusters gives the transition C_l^{l+1} [K_{l+1}, K_l], so that
P_{l+1} = C_l^{l+1} P_l (node-major: P_{l+1} = P_l C, the paper's form) — consistent by
construction. Hard groups are nested by construction too: a node's level-(l+1) group is the
parent argmax_k C[k, g_l] of its level-l group.

Our choices (config `grouping`, defaults): assignment logits compare centroids with the nodes
themselves, centred on their image mean (`assign_to="nodes"`; the original used the encoder
memory), and the level-(l+1) transformer groups the soft prototypes normalize(P_l nodes) of the
level-l clusters (`upper_nodes="pooled"`; the original used the decoder's cluster features). Both
keep every level in the embedding space where the DMoN graph and the retrieval index live.
`grouping.form="original"` is the original instead: its transformer (hsg_core.clustering), logits
against the encoder memory, and level l+1 grouping the level-l cluster features (no padding mask,
positions = mean node position of each hard group), as `ResnetFcn._hierarchical_grouping` (spec §2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .backbones import create_backbone
from .clustering import Clustering, ClusteringTransformer, PositionEmbeddingLearned
from .config import HSGConfig


class EmbeddingHead(nn.Module):
    """1x1 conv C->hidden (no bias) -> BN -> ReLU -> 1x1 conv hidden->D (the original's conv_out)."""

    def __init__(self, in_channels: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.norm = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, dim, 1)
        for conv in (self.reduce, self.project):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: Tensor) -> Tensor:
        return self.project(F.relu(self.norm(self.reduce(features))))


@dataclass
class HierarchyOutput:
    """Soft and hard groupings of the nodes of B images at every level above the nodes.

    clusterings[l]: transformer output of level l+1 (K_{l+1} clusters).
    assignments[l]: P_{l+1} [B, K_{l+1}, M] node -> level-(l+1) cluster probabilities.
    transitions[l]: C_{l+1}^{l+2} [B, K_{l+2}, K_{l+1}] (one fewer than levels).
    node_groups[l]: [B, M] int64 hard level-(l+1) group of every node (nested).
    parents[l]: [B, K_{l+1}] int64 level-(l+2) parent of every level-(l+1) group.
    """

    clusterings: list[Clustering]
    assignments: list[Tensor]
    transitions: list[Tensor]
    node_groups: list[Tensor]
    parents: list[Tensor]


def group_positions(positions: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """Mean position of the nodes of each group; 0 for empty groups.

    positions [B, M, D], groups [B, M] (IGNORE < 0 skipped) -> [B, K, D].
    """
    valid = (groups >= 0).to(positions.dtype)
    one_hot = F.one_hot(groups.clamp_min(0), num_groups).to(positions.dtype) * valid[..., None]
    sums = one_hot.transpose(1, 2) @ positions
    return sums / one_hot.sum(1)[..., None].clamp_min(1.0)


def centred(vectors: Tensor, mask: Tensor | None = None) -> Tensor:
    """Unit vectors minus their (masked) mean over the set, renormalised: [B, M, D] -> [B, M, D].

    Embeddings of one image share a common direction; cosines to a centroid then differ little
    between nodes and soft assignments stay near uniform. Centring removes that direction.
    """
    w = torch.ones_like(vectors[..., 0]) if mask is None else mask.to(vectors.dtype)
    mean = (vectors * w[..., None]).sum(1, keepdim=True) / w.sum(1).clamp_min(1.0)[:, None, None]
    return F.normalize(vectors - mean, dim=-1)


class HSG(nn.Module):
    def __init__(self, config: HSGConfig) -> None:
        super().__init__()
        self.config = config
        m, g = config.model, config.grouping
        options = {"dilation_rule": m.dilation_rule} if m.backbone.startswith("resnet") else {}
        self.backbone = create_backbone(
            m.backbone,
            init=m.backbone_init,
            freeze=m.freeze_backbone,
            output_stride=m.train_output_stride,
            width=m.resnet_width,
            **options,
        )
        self.head = EmbeddingHead(self.backbone.out_channels, m.head_hidden, m.embedding_dim)
        self.position = PositionEmbeddingLearned(m.embedding_dim, g.position_table)
        self.levels = nn.ModuleList(
            [
                ClusteringTransformer(
                    k,
                    m.embedding_dim,
                    heads=g.num_heads,
                    encoder_layers=g.encoder_layers,
                    decoder_layers=g.decoder_layers,
                    ffn_dim=g.ffn_dim,
                    dropout=g.dropout,
                    concentration=g.assignment_concentration,
                    query_in_target=g.query_in_target,
                    form=g.form,
                )
                for k in g.level_clusters
            ]
        )
        self.register_buffer(
            "pixel_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False
        )
        self.position_stride = (
            self.backbone.output_stride
        )  # cell size of the position table, in pixels

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] RGB in [0, 1] -> normalised input."""
        return (images - self.pixel_mean) / self.pixel_std

    def embed(self, images: Tensor) -> Tensor:
        """Normalised images [B, 3, H, W] -> unit pixel embeddings [B, D, h, w]."""
        return F.normalize(self.head(self.backbone(images)), dim=1)

    def cell_positions(self, height: int, width: int, stride: float) -> Tensor:
        """Position embeddings [h, w, D] of a grid whose cells are `stride` input pixels apart."""
        scale = stride / self.position_stride
        rows = (torch.arange(height, device=self.device) * scale).long()
        cols = (torch.arange(width, device=self.device) * scale).long()
        rr, cc = torch.meshgrid(rows, cols, indexing="ij")
        return self.position(rr, cc)

    def group(self, nodes: Tensor, positions: Tensor, mask: Tensor) -> HierarchyOutput:
        """nodes, positions [B, M, D] (nodes unit), mask [B, M] -> HierarchyOutput."""
        g = self.config.grouping
        original = g.form == "original"
        to_nodes = g.assign_to == "nodes" and not original  # else logits against the encoder memory
        first = self.levels[0](
            nodes, positions, mask, keys=centred(nodes, mask) if to_nodes else None
        )
        groups = torch.where(
            mask, first.assignments.argmax(1), torch.full_like(mask, -1, dtype=torch.long)
        )
        out = HierarchyOutput([first], [first.assignments], [], [groups], [])
        for transformer in self.levels[1:]:
            below = out.clusterings[-1]
            k_below = below.features.shape[1]
            pos = group_positions(positions, out.node_groups[-1], k_below)
            tokens = below.features
            if (
                g.upper_nodes == "pooled" and not original
            ):  # soft prototype of each level-l cluster, in node space
                tokens = F.normalize(out.assignments[-1] @ nodes, dim=-1)
            # no mask: every level-l cluster is a node (the original's upper levels pass none either)
            clustering = transformer(tokens, pos, None, keys=centred(tokens) if to_nodes else None)
            transition = clustering.assignments  # [B, K_{l+1}, K_l]
            parents = transition.argmax(1)  # [B, K_l]
            node_groups = torch.where(
                mask, parents.gather(1, out.node_groups[-1].clamp_min(0)), out.node_groups[-1]
            )
            out.clusterings.append(clustering)
            out.transitions.append(transition)
            out.assignments.append(transition @ out.assignments[-1])
            out.parents.append(parents)
            out.node_groups.append(node_groups)
        return out
