"""The HSG training objective for one batch of multiview crops.

L = wE * Lf(G_e) + wF * sum_l Lf(G_l) + w_mod * sum_l (modularity_l + collapse_l)
    + w_cc * sum_l centroid_l                       (the paper's lambda_G L_g split as in the code)

Step 1: pixel embeddings of every crop; oversegment labels voted down to the feature grid.
Step 2: segments = spherical k-means clusters ∩ oversegments; unit prototypes per segment.
Step 3: Lf(G_e): SegSort+ with labels (image, oversegment): the same oversegment in the other
        view (and other k-means pieces of it) are the positives — the cross-view co-segmentation.
Step 4 (stage 2): the segments of both views of an image are the level-0 nodes; clustering
        transformers give P_l; Lf(G_l) with labels (image, hard group), DMoN on a kNN graph of
        the nodes, and centroid contrast.
Labels are packed as image * LABEL_BASE + id, with image ids global across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import HSGConfig
from .distributed import gather_rows, gather_sizes, global_mean
from .losses import (
    LossTerms,
    centroid_contrast_loss,
    collapse_loss,
    combine_losses,
    knn_adjacency,
    modularity_loss,
    segsort_loss,
)
from .model import HSG
from .segments import (
    initial_clusters,
    intersect_segments,
    location_features,
    majority_downsample,
    segment_means,
    spherical_kmeans,
)

LABEL_BASE = 1 << 20  # ids per image when packing (image, id) into one int64 label


@dataclass
class Batch:
    """2B crops of B images, ordered img0-view0, img0-view1, img1-view0, ...

    images: [V, 3, c, c] normalised; superpixels: [V, c, c] int64 (-1 = padding);
    image_ids: [V] int64 local image index 0..B-1; views: [V] int64.
    """

    images: Tensor
    superpixels: Tensor
    image_ids: Tensor
    views: Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.images, self.superpixels, self.image_ids, self.views)
            )
        )


@dataclass
class Segments:
    """Pixels and segments of a batch. P valid pixels, S segments."""

    pixel_embeddings: Tensor  # [P, D] unit
    pixel_segments: Tensor  # [P] segment index
    prototypes: Tensor  # [S, D] unit
    positions: Tensor  # [S, D] mean position embedding
    crops: Tensor  # [S] crop index
    superpixels: Tensor  # [S] oversegment id


def find_segments(
    model: HSG, batch: Batch, grid: tuple[int, int], iterations: int, grid_rule: str = "equal"
) -> Segments:
    """Steps 1-2 of the module docstring; `grid_rule`: the k-means grid cells (`segments.initial_clusters`)."""
    emb = model.embed(batch.images)  # [V, D, h, w]
    v, d, h, w = emb.shape
    sp = majority_downsample(batch.superpixels, (h, w)).reshape(v, h * w)
    flat = emb.flatten(2).transpose(1, 2)  # [V, N, D]
    with torch.no_grad():
        loc = location_features(h, w, emb.device).reshape(2, -1).t()
        feats = F.normalize(torch.cat([flat.detach().float(), loc.expand(v, -1, -1)], -1), dim=-1)
        init, num_clusters = initial_clusters(grid, (h, w), emb.device, grid_rule)
        clusters = spherical_kmeans(feats, init, num_clusters, iterations, valid=sp >= 0)
        seg_ids, keys = intersect_segments(clusters, sp)
    valid = seg_ids >= 0
    pix_emb, pix_seg = flat[valid].float(), seg_ids[valid]
    num = keys.shape[0]
    stride = batch.images.shape[-1] / w
    pos_pix = model.cell_positions(h, w, stride).reshape(h * w, d)[None].expand(v, -1, -1)[valid]
    return Segments(
        pix_emb,
        pix_seg,
        segment_means(pix_emb, pix_seg, num),
        segment_means(pos_pix.float(), pix_seg, num, normalize=False),
        keys[:, 0],
        keys[:, 2],
    )


def contrast(seg: Segments, segment_labels: Tensor, concentration: float) -> Tensor:
    """SegSort+ of local pixels against the prototypes of every process, as a global mean."""
    all_protos, offset = gather_rows(seg.prototypes)
    all_labels, _ = gather_rows(segment_labels)
    loss = segsort_loss(
        seg.pixel_embeddings,
        segment_labels[seg.pixel_segments],
        seg.pixel_segments + offset,
        all_protos,
        all_labels,
        concentration,
    )
    return global_mean(loss, seg.pixel_embeddings.shape[0])


def node_table(seg: Segments, segment_images: Tensor, num_images: int) -> tuple[Tensor, Tensor]:
    """Per image, the indices of its segments (both views), padded.

    Returns:
        index [B, M] int64 segment index (0 where padded), mask [B, M] bool.
    """
    order = torch.argsort(segment_images, stable=True)
    counts = torch.bincount(segment_images, minlength=num_images)
    m = int(counts.max().item()) if counts.numel() else 0
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(order.shape[0], device=order.device) - starts[segment_images[order]]
    index = torch.zeros(num_images, max(m, 1), dtype=torch.long, device=order.device)
    mask = torch.zeros(num_images, max(m, 1), dtype=torch.bool, device=order.device)
    index[segment_images[order], slot] = order
    mask[segment_images[order], slot] = True
    return index, mask


def dmon_graph_groups(node_views: Tensor, graph: str) -> Tensor:
    """Column groups of the DMoN kNN graph: [B, M] node views -> [B, M] group ids.

    "per_view": each node keeps its k nearest in every view (the original's COCO `hsg`, out-degree
    k x views); "joint": one group, k nearest over both views (its Cityscapes `hsg_cs`, out-degree k).
    """
    if graph == "per_view":
        return node_views
    if graph == "joint":
        return torch.zeros_like(node_views)
    raise ValueError(f"unknown DMoN graph {graph!r}; graphs: per_view, joint")


def hierarchy_terms(
    model: HSG, seg: Segments, batch: Batch, images: Tensor, image_offset: int, cfg: HSGConfig
) -> dict[str, Tensor]:
    """Step 4: the level losses for every level of the hierarchy."""
    num_images = int(batch.image_ids.max().item()) + 1
    index, mask = node_table(seg, images, num_images)
    nodes, positions = seg.prototypes[index], seg.positions[index]
    hier = model.group(nodes, positions, mask)
    graph_groups = dmon_graph_groups(batch.views[seg.crops][index], cfg.loss.dmon_graph)
    adjacency = knn_adjacency(nodes.detach(), mask, graph_groups, cfg.loss.dmon_knn)
    terms = {}
    for lv, (assign, groups) in enumerate(zip(hier.assignments, hier.node_groups), start=1):
        seg_groups = torch.zeros_like(seg.crops)
        seg_groups[index[mask]] = groups[mask]
        terms[f"level{lv}"] = contrast(
            seg, (images + image_offset) * LABEL_BASE + seg_groups, cfg.loss.concentration
        )
        s = assign.transpose(1, 2)  # [B, M, K]
        terms[f"modularity{lv}"] = global_mean(modularity_loss(s, adjacency, mask), num_images)
        terms[f"collapse{lv}"] = global_mean(collapse_loss(s, mask), num_images)
        centroids, _ = gather_rows(hier.clusterings[lv - 1].centroids.flatten(0, 1))
        terms[f"centroid{lv}"] = centroid_contrast_loss(centroids.float(), cfg.loss.concentration)
    return terms


def loss_weights(cfg: HSGConfig, num_levels: int) -> dict[str, float]:
    lc = cfg.loss
    weights = {"image": lc.weight_image}
    for lv in range(1, num_levels + 1):
        weights.update(
            {
                f"level{lv}": lc.weight_levels,
                f"modularity{lv}": lc.weight_modularity,
                f"collapse{lv}": lc.weight_modularity,
                f"centroid{lv}": lc.weight_centroid,
            }
        )
    return weights


def training_losses(model: HSG, batch: Batch, cfg: HSGConfig) -> LossTerms:
    """Every loss term of one batch (see the module docstring) and their weighted total."""
    seg = find_segments(
        model,
        batch,
        cfg.grouping.train_grid,
        cfg.grouping.kmeans_iterations,
        cfg.grouping.kmeans_init,
    )
    images = batch.image_ids[seg.crops]
    image_offset = sum(
        gather_sizes(int(batch.image_ids.max().item()) + 1, images.device)[
            : torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        ]
    )
    terms = {
        "image": contrast(
            seg, (images + image_offset) * LABEL_BASE + seg.superpixels, cfg.loss.concentration
        )
    }
    if cfg.train.stage >= 2:
        terms.update(hierarchy_terms(model, seg, batch, images, image_offset, cfg))
    return combine_losses(terms, loss_weights(cfg, len(cfg.grouping.level_clusters)))


class Objective(nn.Module):
    """The model and its objective as one module, so DDP wraps a forward that returns the losses."""

    def __init__(self, model: HSG, cfg: HSGConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(
        self, images: Tensor, superpixels: Tensor, image_ids: Tensor, views: Tensor
    ) -> dict[str, Tensor]:
        """Tensors of a `Batch` -> {"total": weighted sum, <term>: value, ...}."""
        losses = training_losses(self.model, Batch(images, superpixels, image_ids, views), self.cfg)
        return {"total": losses.total, **losses.terms}
