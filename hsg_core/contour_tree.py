"""Contour-aware merge tree: one nested hierarchy of an image's pixels from contours and semantics.

Why: HSG's clustering transformers group regions by similarity alone, so groups ignore adjacency
and boundary strength (a face joins a shirt, a sky is cut in quarters), while the HED contour
prior alone keeps every strong texture edge. Measured on BSDS500 train, contours localise and
semantics decide which contours matter. The tree is built in two stages:

1. Fine stage: a watershed hierarchy by dynamics (higra) of the contour map gated by semantics,
   ``edges * (1 - a_f + a_f * semantic)``: a contour survives where the features change across it.
   Its cut with at most `switch_regions` regions is the partition P0.
2. Coarse stage: the regions of P0 merge on their adjacency graph. An edge (r, s) weighs the
   ultrametric distance, in the watershed hierarchy of ``(1 - a_c) * edges + a_c * semantic``,
   between the deepest pixels of r and s (how strong the weakest path of contours between them
   is, once semantics globalise the contours), plus ``b * (1 - cos)`` of the two regions' mean
   embeddings, recomputed as regions merge. Binary partition tree, lowest weight first.

The two stages are grafted into one higra tree over pixels: fine altitudes stay in [0, 1], coarse
altitudes are shifted by +1 (``COARSE_OFFSET``), so every cut of the tree — by region count or by
altitude — is a partition nested in the coarser ones, and counts above `switch_regions` are cuts of
the fine stage. Shapes: [H, W] maps; N pixels; R regions of P0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import higra as hg
import numpy as np

from .overseg.ucm import check_has_pixel_pairs

COARSE_OFFSET = (
    1.0  # added to coarse-stage altitudes so they sit above every fine one (which are <= 1)
)
PIXEL_EDGES = {"mean": hg.WeightFunction.mean, "max": hg.WeightFunction.max}


@dataclass(frozen=True)
class ContourTreeParams:
    """Weights of the two stages (see the module docstring); `ContourConfig` carries them in checkpoints."""

    fine_semantic: float = 0.9  # a_f: how much semantics gate the contours of the fine stage
    coarse_semantic: float = 0.5  # a_c: weight of semantics in the coarse stage's contour map
    region_semantic: float = 0.5  # b: weight of 1 - cos of region embeddings in coarse merges
    switch_regions: int = 48  # regions of P0, where the fine stage hands over to the coarse one
    # weight of the edge between two pixels: "mean" of their values, or "max" (the UCM prior's). With
    # "max" the four edges of a pixel tie, ties break by edge order, and a flipped image no longer gives
    # the mirrored tree (mirrored-partition covering 0.45 at 30 regions on smooth random maps); "mean"
    # mirrors exactly and covers the same on BSDS train.
    pixel_edges: str = "mean"

    def validate(self) -> None:
        for name in ("fine_semantic", "coarse_semantic"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"contour.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.region_semantic < 0:
            raise ValueError(f"contour.region_semantic must be >= 0, got {self.region_semantic}")
        if self.switch_regions < 1:
            raise ValueError(f"contour.switch_regions must be >= 1, got {self.switch_regions}")
        if self.pixel_edges not in PIXEL_EDGES:
            raise ValueError(
                f"contour.pixel_edges must be one of {', '.join(PIXEL_EDGES)}, got {self.pixel_edges!r}"
            )


def _watershed(graph, edge_map: np.ndarray, pixel_edges: str):
    """Watershed hierarchy by dynamics of a [H, W] map on the 4-adjacency `graph`: (tree, altitudes)."""
    weights = hg.weight_graph(graph, edge_map.astype(np.float64), PIXEL_EDGES[pixel_edges])
    return hg.watershed_hierarchy_by_dynamics(graph, weights)


def region_of_node(tree, cut_nodes: np.ndarray) -> np.ndarray:
    """[V] for every node of `tree`, the cut node it lies under (itself for cut nodes); -1 above the cut."""
    is_cut = np.zeros(tree.num_vertices(), dtype=bool)
    is_cut[cut_nodes] = True
    own = np.where(is_cut, np.arange(tree.num_vertices()), -1)
    inherit = ~is_cut
    inherit[tree.root()] = False
    return hg.propagate_sequential(tree, own, inherit)


def deepest_pixels(labels: np.ndarray, depth: np.ndarray, num_regions: int) -> np.ndarray:
    """[R] flat index of the lowest-`depth` pixel of each region 0..R-1 of `labels` [N] (ties: first)."""
    order = np.lexsort((depth, labels))
    first = np.r_[0, np.flatnonzero(np.diff(labels[order])) + 1]
    out = np.full(num_regions, -1, dtype=np.int64)
    out[labels[order][first]] = order[first]
    return out


def semantic_linkage(rag, base: np.ndarray, region_features: np.ndarray | None, weight: float):
    """Binary partition tree of `rag`: edge weight = single-linkage `base` + weight * (1 - cos) of
    the area-summed region features, updated on every merge. Returns (tree, altitudes), monotone.

    Args:
        base: [E] edge weights of the region adjacency graph (ultrametric distances).
        region_features: [R, D] per-region sums of unit pixel embeddings (None: `base` alone).
    """
    if region_features is None or weight == 0:
        return hg.bpt_canonical(rag, base)[:2]
    n = rag.num_vertices()
    sums = np.zeros((2 * n, region_features.shape[1]))
    sums[:n] = region_features
    units = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    linkage = dict(enumerate(base.tolist()))
    src, dst = rag.edge_list()

    def merged(graph, fusion_edge, new, first, second, neighbours) -> None:
        sums[new] = sums[first] + sums[second]
        units[new] = sums[new] / max(float(np.linalg.norm(sums[new])), 1e-12)
        for nb in neighbours:
            link = linkage[nb.first_edge_index()]
            if nb.num_edges() > 1:
                link = min(link, linkage[nb.second_edge_index()])
            linkage[nb.new_edge_index()] = link
            nb.set_new_edge_weight(
                link + weight * (1.0 - float(units[new] @ units[nb.neighbour_vertex()]))
            )

    start = base + weight * (1.0 - np.einsum("ed,ed->e", units[src], units[dst]))
    tree, altitudes = hg.binary_partition_tree(rag, merged, start)
    return tree, hg.tree_monotonic_regression(tree, altitudes, "max")


def graft(
    fine,
    fine_alt: np.ndarray,
    cut_nodes: np.ndarray,
    vertex_node: np.ndarray,
    coarse,
    coarse_alt: np.ndarray,
):
    """One tree: the fine tree below its cut, the coarse tree (over the cut's regions) above it.

    Args:
        fine, fine_alt: tree over pixels and its altitudes (all <= 1).
        cut_nodes: the fine nodes forming the cut.
        vertex_node: [R] the fine cut node of each coarse leaf (region adjacency vertex).
        coarse, coarse_alt: tree whose leaves are the R regions.
    Returns:
        (tree, altitudes) with coarse altitudes + COARSE_OFFSET, made monotone.
    """
    under = region_of_node(fine, cut_nodes)
    kept = np.flatnonzero(under >= 0)  # ascending: pixels first, children before parents
    new_id = np.full(fine.num_vertices(), -1, dtype=np.int64)
    new_id[kept] = np.arange(kept.size)
    fine_parents = fine.parents()
    parents = new_id[fine_parents[kept]]
    r = coarse.num_leaves()
    coarse_parents = coarse.parents()
    coarse_new = np.concatenate(
        [new_id[vertex_node], kept.size + np.arange(coarse.num_vertices() - r)]
    )
    parents[new_id[vertex_node]] = coarse_new[coarse_parents[:r]]
    parents = np.concatenate([parents, coarse_new[coarse_parents[r:]]])
    altitudes = np.concatenate([fine_alt[kept], coarse_alt[r:] + COARSE_OFFSET])
    tree = hg.Tree(parents)
    return tree, hg.tree_monotonic_regression(tree, altitudes, "max")


class ContourTree:
    """A nested hierarchy of the pixels of one image; every cut is a partition.

    Build with `ContourTree.build`; read partitions with `cut_regions(n)` (the finest cut with at
    most n regions) or `cut_altitude(t)`.
    """

    def __init__(self, tree, altitudes: np.ndarray, graph) -> None:
        """tree over the pixels of `graph` (a 4-adjacency graph with a shape) and its altitudes."""
        self.tree, self.altitudes, self.graph = tree, altitudes, graph
        self.shape = tuple(hg.CptGridGraph.get_shape(graph))
        self._explorer = hg.HorizontalCutExplorer(tree, altitudes)

    @classmethod
    def build(
        cls,
        edges: np.ndarray,
        semantic: np.ndarray,
        params: ContourTreeParams,
        region_features: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> ContourTree:
        """Two-stage tree of an image.

        Args:
            edges: [H, W] contour strength in [0, 1] (HED probability).
            semantic: [H, W] feature change in [0, 1] (`hsg_core.semantic_edges`).
            region_features: maps P0 [H, W] int labels 0..R-1 to [R, D] sums of unit embeddings
                (None: no region term).
        """
        params.validate()
        if edges.shape != semantic.shape or edges.ndim != 2:
            raise ValueError(
                f"edge map {edges.shape} and semantic map {semantic.shape} must be equal [H, W]"
            )
        check_has_pixel_pairs(edges.shape)
        graph = hg.get_4_adjacency_graph(edges.shape)
        gate = 1.0 - params.fine_semantic + params.fine_semantic * semantic
        fine, fine_alt = _watershed(graph, edges * gate, params.pixel_edges)
        cut = hg.HorizontalCutExplorer(fine, fine_alt).horizontal_cut_from_num_regions(
            params.switch_regions, at_least=False
        )
        cut_nodes = np.asarray(cut.nodes())
        node_labels = cut.labelisation_leaves(fine).ravel()
        _, labels = np.unique(node_labels, return_inverse=True)  # 0..R-1 in cut-node order
        labels = labels.reshape(-1)
        rag = hg.make_region_adjacency_graph_from_labelisation(graph, labels.reshape(edges.shape))
        vertex_label = np.empty(rag.num_vertices(), dtype=np.int64)
        vertex_label[np.asarray(rag.vertex_map).ravel()] = labels
        coarse_map = (1.0 - params.coarse_semantic) * edges + params.coarse_semantic * semantic
        contour_tree, contour_alt = _watershed(graph, coarse_map, params.pixel_edges)
        deepest = deepest_pixels(labels, coarse_map.ravel(), int(labels.max()) + 1)[vertex_label]
        src, dst = rag.edge_list()
        base = contour_alt[hg.make_lca_fast(contour_tree).lca(deepest[src], deepest[dst])]
        features = None
        if region_features is not None and params.region_semantic > 0:
            features = region_features(labels.reshape(edges.shape))[vertex_label]
        coarse, coarse_alt = semantic_linkage(rag, base, features, params.region_semantic)
        vertex_node = np.sort(cut_nodes)[vertex_label]
        tree, altitudes = graft(fine, fine_alt, cut_nodes, vertex_node, coarse, coarse_alt)
        return cls(tree, altitudes, graph)

    def cut_regions(self, max_regions: int) -> np.ndarray:
        """[H, W] int32 ids 0..K-1 of the finest cut with K <= max_regions."""
        if max_regions < 1:
            raise ValueError(f"max_regions must be >= 1, got {max_regions}")
        cut = self._explorer.horizontal_cut_from_num_regions(max_regions, at_least=False)
        return self._contiguous(cut.labelisation_leaves(self.tree, self.graph))

    def cut_altitude(self, altitude: float) -> np.ndarray:
        """[H, W] int32 ids of the cut keeping every merge above `altitude` split."""
        cut = self._explorer.horizontal_cut_from_altitude(float(altitude))
        return self._contiguous(cut.labelisation_leaves(self.tree, self.graph))

    def _contiguous(self, labels: np.ndarray) -> np.ndarray:
        _, inverse = np.unique(labels, return_inverse=True)
        return inverse.reshape(self.shape).astype(np.int32)

    @property
    def num_cuts(self) -> int:
        """Distinct partitions of the tree (one per distinct altitude, plus the leaves)."""
        return self._explorer.num_cuts()
